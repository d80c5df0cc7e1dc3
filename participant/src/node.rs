//! The participant's loop: parameters, commitment, enrolment, then rounds until the run ends.
//!
//! The participant only ever asks; each request is retried with exponential backoff when
//! the coordinator is unreachable (restarting, or the network dropped), so a participant
//! rides out a coordinator restart and rejoins the round in progress.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use libp2p::request_response::{self, OutboundFailure};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{PeerId, Swarm, allow_block_list, identify, ping};
use tokio::sync::mpsc;
use tracing::{info, warn};
use zkfed_air::commitment::{salts_from_bytes, salts_to_bytes};
use zkfed_air::data::read_csv;
use zkfed_air::{CommittedDataset, DatasetCommitment, Model, Statement};
use zkfed_protocol::{
    Enrolment, Rejection, Request, Response, RoundAnnouncement, RunParameters, SignedEnrolment,
    Submission, round_statement,
};

use crate::config::Config;

/// Pause between polls while no new round is open.
const POLL: Duration = Duration::from_millis(500);
/// How long the coordinator may stay unreachable before the participant gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(15 * 60);
/// Longest wait between retries of a failed request.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The participant's composed behaviour.
#[derive(NetworkBehaviour)]
pub(crate) struct ParticipantBehaviour {
    /// Talks only to the coordinator.
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    /// The zkfed protocol.
    zkfed: request_response::cbor::Behaviour<Request, Response>,
    /// Peer information exchange.
    identify: identify::Behaviour,
    /// Liveness.
    ping: ping::Behaviour,
}

/// What a participant reports to an observer (the simulation), at most two per round.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantEvent {
    /// A proof was made.
    Proved {
        /// The round.
        round: u64,
        /// Seconds spent proving.
        seconds: f64,
        /// Bytes of the submission sent (proof and update).
        bytes: usize,
    },
    /// The coordinator's verdict arrived.
    Judged {
        /// The round.
        round: u64,
        /// `None` if the update was accepted, else why not.
        rejection: Option<Rejection>,
    },
}

/// What a tampering hook sees: the honest submission and what it was made from.
pub struct TamperInput<'a> {
    /// The honest submission.
    pub honest: &'a Submission,
    /// The statement it proves.
    pub statement: &'a Statement,
    /// The committed rows.
    pub dataset: &'a CommittedDataset,
    /// This node's previous submission, if any.
    pub previous: Option<&'a Submission>,
}

/// Rewrites a submission before it is sent (the simulation's adversaries).
pub type Tamper = Arc<dyn Fn(&TamperInput<'_>) -> Submission + Send + Sync>;

/// Code-only extensions of a participant; the binary leaves them empty.
#[derive(Clone, Default)]
pub struct Hooks {
    /// Receives [`ParticipantEvent`]s.
    pub events: Option<mpsc::UnboundedSender<ParticipantEvent>>,
    /// Replaces the honest submission.
    pub tamper: Option<Tamper>,
    /// Send the reference update with no proof (the simulation's trusting baseline only).
    pub skip_proving: bool,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("events", &self.events.is_some())
            .field("tamper", &self.tamper.is_some())
            .field("skip_proving", &self.skip_proving)
            .finish()
    }
}

impl Hooks {
    fn emit(&self, event: ParticipantEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }
}

/// How a run ended for this participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Rounds the run completed.
    pub rounds: u64,
    /// The final model.
    pub model: Model,
    /// Rounds in which this participant's update was accepted.
    pub accepted: u64,
}

/// Runs the participant until the run is over or `shutdown` fires (then `Ok(None)`).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Option<Outcome>> {
    tokio::select! {
        outcome = participate(config) => outcome.map(Some),
        () = shutdown => {
            info!("shutdown requested");
            Ok(None)
        }
    }
}

async fn participate(config: Config) -> anyhow::Result<Outcome> {
    let me = config.key.public().to_peer_id();
    info!(peer = %me, coordinator = %config.coordinator, "participant starting");
    let mut link = Link::new(&config)?;

    let Response::Parameters(params) = link.ask(Request::Parameters).await? else {
        bail!("the coordinator did not answer with the run parameters");
    };
    if let Some(agreed) = &config.schema
        && *agreed != params.schema
    {
        bail!(
            "the run asks for columns {:?} (label `{}`), but this node agreed to {:?} (label `{}`)",
            params.schema.features,
            params.schema.label,
            agreed.features,
            agreed.label
        );
    }
    let dataset = commit_dataset(&config, &params)?;
    let enrolment = Enrolment {
        federation_id: params.federation_id,
        commitment: dataset.commitment(),
        schema_hash: params.schema.hash(),
    };
    match link
        .ask(Request::Enrol(SignedEnrolment::sign(
            enrolment,
            &config.key,
        )))
        .await?
    {
        Response::Enrolled => info!(rows = dataset.commitment().rows, "enrolled"),
        Response::Refused(rejection) => bail!("enrolment refused: {rejection}"),
        other => bail!("unexpected answer to enrolment: {other:?}"),
    }

    let mut last_submitted = 0;
    let mut previous: Option<Submission> = None;
    let mut accepted = 0;
    loop {
        match link.ask(Request::CurrentRound).await? {
            Response::Round(round) if round.round > last_submitted => {
                let skip = config.hooks.skip_proving;
                let (honest, statement, seconds) =
                    prove_round(&params, &round, &me, &dataset, skip).await?;
                let submission = match &config.hooks.tamper {
                    Some(tamper) => {
                        tampered(tamper, &honest, statement, &dataset, previous.clone()).await?
                    }
                    None => honest.clone(),
                };
                let bytes = submission.proof.len() + 8 * (submission.update.weights.len() + 3);
                config.hooks.emit(ParticipantEvent::Proved {
                    round: round.round,
                    seconds,
                    bytes,
                });
                previous = Some(honest);
                last_submitted = round.round;
                match link.ask(Request::Submit(submission)).await? {
                    Response::Verdict(v) => {
                        match &v.rejection {
                            None => {
                                accepted += 1;
                                info!(round = v.round, "update accepted");
                            }
                            Some(rejection) => {
                                warn!(round = v.round, %rejection, "update rejected")
                            }
                        }
                        config.hooks.emit(ParticipantEvent::Judged {
                            round: v.round,
                            rejection: v.rejection,
                        });
                    }
                    other => warn!(?other, "unexpected answer to a submission"),
                }
            }
            Response::Round(_) | Response::Waiting => tokio::time::sleep(POLL).await,
            Response::Finished { rounds, model } => {
                info!(
                    rounds,
                    accepted,
                    bytes_sent = link.traffic.sent(),
                    bytes_received = link.traffic.received(),
                    "run finished"
                );
                return Ok(Outcome {
                    rounds,
                    model,
                    accepted,
                });
            }
            Response::Refused(rejection) => bail!("coordinator refused: {rejection}"),
            other => bail!("unexpected answer: {other:?}"),
        }
    }
}

/// Loads the CSV under the run's schema and commits to it, reusing persisted salts.
///
/// Fresh salts and the commitment are written durably before the commitment is used:
/// without the salts it could never be opened again. On later starts the stored
/// commitment must match the file, so an edited CSV is caught here, not at enrolment.
fn commit_dataset(config: &Config, params: &RunParameters) -> anyhow::Result<CommittedDataset> {
    let file = std::fs::File::open(&config.dataset)
        .with_context(|| format!("opening {}", config.dataset.display()))?;
    let raw = read_csv(std::io::BufReader::new(file), &params.schema)
        .with_context(|| format!("reading {}", config.dataset.display()))?;
    let rows = params
        .standardization
        .apply(&raw)
        .context("standardizing the dataset with the run's statistics")?;
    let salts_path = config.state_dir.join("salts.bin");
    let commitment_path = config.state_dir.join("commitment.bin");
    match std::fs::read(&salts_path) {
        Ok(bytes) => {
            let salts = salts_from_bytes(&bytes, rows.len())
                .context("the stored salts do not fit the dataset")?;
            let dataset = CommittedDataset::with_salts(rows, raw.labels, salts)?;
            let stored = std::fs::read(&commitment_path)
                .with_context(|| format!("reading {}", commitment_path.display()))?;
            let stored: DatasetCommitment =
                postcard::from_bytes(&stored).context("the stored commitment is corrupt")?;
            if stored != dataset.commitment() {
                bail!(
                    "{} changed since this node committed to it; the enrolled root cannot change",
                    config.dataset.display()
                );
            }
            Ok(dataset)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut rng = rand::make_rng::<rand::rngs::StdRng>();
            let dataset = CommittedDataset::commit(rows, raw.labels, &mut rng)?;
            write_durably(&salts_path, &salts_to_bytes(dataset.salts()))?;
            let commitment =
                postcard::to_allocvec(&dataset.commitment()).expect("plain data serializes");
            write_durably(&commitment_path, &commitment)?;
            Ok(dataset)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", salts_path.display())),
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    zkfed_protocol::node::write_durably(path, bytes, true)
        .with_context(|| format!("writing {}", path.display()))
}

/// Proves this round's update on a blocking thread.
async fn prove_round(
    params: &RunParameters,
    round: &RoundAnnouncement,
    me: &PeerId,
    dataset: &CommittedDataset,
    skip_proving: bool,
) -> anyhow::Result<(Submission, Statement, f64)> {
    let statement = round_statement(params, round, me, dataset.commitment())
        .context("forming the round's statement")?;
    let (for_prover, rows) = (statement.clone(), dataset.clone());
    info!(
        round = round.round,
        batch = round.params.batch_size,
        "proving"
    );
    let started = std::time::Instant::now();
    let (update, proof) = tokio::task::spawn_blocking(move || {
        if skip_proving {
            let batch = for_prover.batch_indices.iter().map(|&i| {
                let (x, y, _) = rows.row(i as usize);
                (x, y)
            });
            let update = zkfed_air::clipped_gradient_sum(
                &for_prover.model,
                batch,
                for_prover.params.clip_norm,
            )?;
            return Ok((update, Vec::new()));
        }
        zkfed_air::prove(&for_prover, &rows).map_err(anyhow::Error::from)
    })
    .await
    .context("the proving task failed")?
    .context("proving")?;
    let seconds = started.elapsed().as_secs_f64();
    info!(round = round.round, seconds, bytes = proof.len(), "proved");
    Ok((
        Submission {
            round: round.round,
            update,
            proof,
        },
        statement,
        seconds,
    ))
}

/// Runs a tampering hook on a blocking thread (it may prove again).
async fn tampered(
    tamper: &Tamper,
    honest: &Submission,
    statement: Statement,
    dataset: &CommittedDataset,
    previous: Option<Submission>,
) -> anyhow::Result<Submission> {
    let (tamper, honest, dataset) = (tamper.clone(), honest.clone(), dataset.clone());
    tokio::task::spawn_blocking(move || {
        tamper(&TamperInput {
            honest: &honest,
            statement: &statement,
            dataset: &dataset,
            previous: previous.as_ref(),
        })
    })
    .await
    .context("the tampering task failed")
}

/// The connection to the coordinator: one request at a time, retried with backoff.
struct Link {
    swarm: Swarm<ParticipantBehaviour>,
    coordinator: PeerId,
    address: libp2p::Multiaddr,
    traffic: zkfed_protocol::node::Traffic,
}

impl Link {
    fn new(config: &Config) -> anyhow::Result<Self> {
        let coordinator = config.coordinator;
        let traffic = zkfed_protocol::node::Traffic::default();
        let swarm = zkfed_protocol::node::build_swarm(config.key.clone(), &traffic, |key| {
            let mut allow =
                allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
            allow.allow_peer(coordinator);
            ParticipantBehaviour {
                allow,
                zkfed: zkfed_protocol::request_response_behaviour(),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/zkfed/3.0.0".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::default(),
            }
        })
        .map_err(|e| anyhow::anyhow!("building the swarm: {e}"))?;
        Ok(Self {
            swarm,
            coordinator,
            address: config.coordinator_addr.clone(),
            traffic,
        })
    }

    /// Sends `request` until it is answered, backing off while the coordinator is away;
    /// gives up after [`GIVE_UP_AFTER`] without an answer.
    async fn ask(&mut self, request: Request) -> anyhow::Result<Response> {
        let mut backoff = Duration::from_millis(250);
        let started = std::time::Instant::now();
        loop {
            match self.once(request.clone()).await {
                Ok(response) => return Ok(response),
                Err(failure) if started.elapsed() >= GIVE_UP_AFTER => {
                    bail!("the coordinator has been unreachable for {GIVE_UP_AFTER:?}: {failure}");
                }
                Err(failure) => {
                    warn!(%failure, retry_in = ?backoff, "coordinator unreachable");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn once(&mut self, request: Request) -> Result<Response, OutboundFailure> {
        // A failed dial drops the address from the behaviours' books: offer it again, so a
        // participant started before its coordinator (or across a restart) keeps dialing.
        if !self.swarm.is_connected(&self.coordinator) {
            self.swarm
                .add_peer_address(self.coordinator, self.address.clone());
        }
        let id = self
            .swarm
            .behaviour_mut()
            .zkfed
            .send_request(&self.coordinator, request);
        loop {
            match self.swarm.select_next_some().await {
                SwarmEvent::Behaviour(ParticipantBehaviourEvent::Zkfed(event)) => match event {
                    request_response::Event::Message {
                        message:
                            request_response::Message::Response {
                                request_id,
                                response,
                            },
                        ..
                    } if request_id == id => return Ok(response),
                    request_response::Event::OutboundFailure {
                        request_id, error, ..
                    } if request_id == id => {
                        return Err(error);
                    }
                    _ => {}
                },
                SwarmEvent::OutgoingConnectionError { error, .. } => warn!(%error, "dial failed"),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkfed_air::data::{Standardization, breast_cancer};

    #[test]
    fn commitment_is_reused_and_an_edited_csv_is_caught() {
        let dir = std::env::temp_dir().join(format!("zkfed-part-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("rows.csv");
        std::fs::write(&csv, crate::bundled_shard_csv(0, 5)).unwrap();
        let raw = breast_cancer();
        let params = RunParameters {
            federation_id: [1; 32],
            schema: raw.schema.clone(),
            standardization: Standardization::fit(&raw).unwrap(),
            rounds: 1,
        };
        let config = || Config {
            coordinator_addr: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            coordinator: libp2p::identity::Keypair::generate_ed25519()
                .public()
                .to_peer_id(),
            dataset: csv.clone(),
            state_dir: dir.join("state"),
            key: libp2p::identity::Keypair::generate_ed25519(),
            schema: None,
            hooks: Hooks::default(),
        };
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let first = commit_dataset(&config(), &params).unwrap().commitment();
        let again = commit_dataset(&config(), &params).unwrap().commitment();
        assert_eq!(first, again, "salts are reused, so the root is stable");
        let edited = crate::bundled_shard_csv(0, 5).replacen(",1\n", ",0\n", 1);
        std::fs::write(&csv, edited).unwrap();
        let err = commit_dataset(&config(), &params).unwrap_err();
        assert!(
            format!("{err:#}").contains("changed since this node committed"),
            "{err:#}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
