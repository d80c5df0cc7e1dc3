//! The submission flood (ARCHITECTURE.md, the cheats table): an allow-listed, enrolled participant that sends
//! [`FLOOD_COPIES`] garbage submissions at once every round instead of one proof.
//!
//! It speaks `zkfed_protocol::PROTOCOL` from its own swarm, like any participant; the coordinator must
//! verify at most one submission of it per round and refuse the rest before verifying.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use rand::RngExt;
use zkfed_air::fixed::ONE;
use zkfed_air::{ClippedGradientSum, CommittedDataset};
use zkfed_protocol::{
    Enrolment, Request, Response, RoundAnnouncement, SignedEnrolment, Submission,
};

/// Submissions sent at once per round: as many as one connection may have in flight.
pub const FLOOD_COPIES: usize = zkfed_protocol::MAX_STREAMS;

/// Bytes of garbage behind the proof header in each copy.
const GARBAGE_BYTES: usize = 64 << 10;

/// What the flooder saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FloodTally {
    /// Submissions sent.
    pub sent: usize,
    /// Answers whose reason says the submission was refused or rejected.
    pub refused: usize,
    /// Answers that accepted a copy (must stay zero).
    pub accepted: usize,
    /// Requests that failed on the wire instead of being answered.
    pub unanswered: usize,
}

impl FloodTally {
    /// Adds another flooder's tally to this one.
    pub fn add(&mut self, other: &FloodTally) {
        self.sent += other.sent;
        self.refused += other.refused;
        self.accepted += other.accepted;
        self.unanswered += other.unanswered;
    }
}

/// How long the flooder keeps asking an unreachable coordinator before it gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// Floods every round of the run at `address` until it finishes.
pub async fn flood(
    address: Multiaddr,
    coordinator: PeerId,
    key: Keypair,
    csv: PathBuf,
) -> anyhow::Result<FloodTally> {
    let mut wire = zkfed_net::Client::<zkfed_protocol::ZkfedCodec>::new(
        key.clone(),
        coordinator,
        address,
        zkfed_protocol::participant_behaviour(),
        zkfed_protocol::AGENT_VERSION,
        GIVE_UP_AFTER,
    )?;

    let Response::Parameters(params) = wire.ask(Request::Parameters).await? else {
        bail!("no run parameters");
    };
    let raw = zkfed_air::data::read_csv(
        std::io::BufReader::new(std::fs::File::open(&csv)?),
        &params.schema,
    )?;
    let rows = params.standardization.apply(&raw)?;
    let dataset = CommittedDataset::commit(
        rows,
        raw.labels,
        &mut rand::make_rng::<rand::rngs::StdRng>(),
    )?;
    let sampling_key =
        zkfed_air::sampling::SamplingKey::generate(&mut rand::make_rng::<rand::rngs::StdRng>());
    let enrolment = Enrolment {
        federation_id: params.federation_id,
        commitment: dataset.commitment(),
        schema_hash: params.schema.hash(),
        parameters: params.digest(),
        sampling_key: params.privacy.map(|_| sampling_key.commitment()),
    };
    match wire
        .ask(Request::Enrol(SignedEnrolment::sign(enrolment, &key)))
        .await?
    {
        Response::Enrolled => {}
        other => bail!("the flooder was not enrolled: {other:?}"),
    }

    let mut tally = FloodTally::default();
    let mut last = 0;
    loop {
        match wire.ask(Request::CurrentRound).await? {
            Response::Round(round) if round.round > last => {
                last = round.round;
                let copies = (0..FLOOD_COPIES)
                    .map(|_| Request::Submit(garbage(&round)))
                    .collect();
                for answer in wire.ask_all(copies).await {
                    tally.sent += 1;
                    match answer {
                        Ok(Response::Verdict(v)) if v.accepted() => tally.accepted += 1,
                        Ok(_) => tally.refused += 1,
                        Err(_) => tally.unanswered += 1,
                    }
                }
            }
            Response::Round(_) | Response::Waiting => {
                wire.poll_while(tokio::time::sleep(Duration::from_millis(500)))
                    .await;
            }
            Response::Finished { .. } => return Ok(tally),
            other => bail!("unexpected answer: {other:?}"),
        }
    }
}

/// A submission of the right shape whose proof is random bytes behind a valid header.
fn garbage(round: &RoundAnnouncement) -> Submission {
    let mut rng = rand::make_rng::<rand::rngs::StdRng>();
    let mut proof = zkfed_air::proof::PROOF_MAGIC.to_vec();
    proof.extend_from_slice(&zkfed_air::PROTOCOL_VERSION.to_le_bytes());
    proof.extend((0..GARBAGE_BYTES).map(|_| rng.random::<u8>()));
    Submission {
        round: round.round,
        attempt: round.attempt,
        update: ClippedGradientSum {
            // In range, so the trusting baseline can aggregate it like any update.
            values: (0..round.model.params.len())
                .map(|_| rng.random_range(-ONE..ONE))
                .collect(),
            examples: round.params.batch_size as u64,
        },
        proof,
    }
}
