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
use libp2p::PeerId;
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

/// What a participant reports to an observer (the simulation), at most two per round.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantTelemetry {
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

/// Makes this node's submission for a round, on a blocking thread.
///
/// The binary always uses [`StarkProver`]; nothing in a configuration file can choose
/// another. The simulation passes its own from code: adversaries that tamper with what
/// they send, and the no-proofs baseline that sends the reference update unproven.
pub trait Prover: Send + Sync + 'static {
    /// The submission for the announced `round` that answers `statement` over `dataset`.
    fn submission(
        &self,
        round: &RoundAnnouncement,
        statement: &Statement,
        dataset: &CommittedDataset,
    ) -> anyhow::Result<Submission>;
}

/// Proves the reference update with a zero-knowledge STARK ([`zkfed_air::prove`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct StarkProver;

impl Prover for StarkProver {
    fn submission(
        &self,
        round: &RoundAnnouncement,
        statement: &Statement,
        dataset: &CommittedDataset,
    ) -> anyhow::Result<Submission> {
        let (update, proof) = zkfed_air::prove(statement, dataset)?;
        Ok(Submission {
            round: round.round,
            attempt: round.attempt,
            update,
            proof,
        })
    }
}

/// Where a participant reports [`ParticipantTelemetry`]s, if anyone listens.
pub type Observer = Option<mpsc::UnboundedSender<ParticipantTelemetry>>;

fn emit(observer: &Observer, event: ParticipantTelemetry) {
    if let Some(tx) = observer {
        let _ = tx.send(event);
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
    observer: Observer,
    prover: Arc<dyn Prover>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Option<Outcome>> {
    tokio::select! {
        outcome = participate(config, observer, prover) => outcome.map(Some),
        () = shutdown => {
            info!("shutdown requested");
            Ok(None)
        }
    }
}

async fn participate(
    config: Config,
    observer: Observer,
    prover: Arc<dyn Prover>,
) -> anyhow::Result<Outcome> {
    let me = config.key.public().to_peer_id();
    info!(peer = %me, coordinator = %config.coordinator, "participant starting");
    let mut link = link(&config)?;
    let (params, dataset) = enrol(&config, &mut link).await?;
    // Every new attempt is proven: a round abandoned below quorum is retried with the same
    // number, and a node that stayed silent because it had "already submitted" would keep
    // the retry below quorum too.
    let mut last_submitted = (0, 0);
    let mut accepted = 0;
    loop {
        match link.ask(Request::CurrentRound).await? {
            Response::Round(round) if (round.round, round.attempt) > last_submitted => {
                // The swarm is serviced while proving: pings answered, the connection kept.
                let proved = prove_round(&prover, &params, &round, &me, &dataset);
                let (submission, seconds) = link.poll_while(proved).await?;
                let bytes = submission.proof.len() + 8 * (submission.update.weights.len() + 3);
                last_submitted = (round.round, round.attempt);
                let round = round.round;
                emit(
                    &observer,
                    ParticipantTelemetry::Proved {
                        round,
                        seconds,
                        bytes,
                    },
                );
                if submit(&mut link, submission, &observer).await? {
                    accepted += 1;
                }
            }
            Response::Round(_) | Response::Waiting => {
                link.poll_while(tokio::time::sleep(POLL)).await
            }
            Response::Finished { rounds, model } => {
                info!(
                    rounds,
                    accepted,
                    bytes_sent = link.traffic().sent(),
                    bytes_received = link.traffic().received(),
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

/// Fetches the run parameters, checks the schema this node agreed to, commits to the
/// dataset and enrols the commitment.
async fn enrol(
    config: &Config,
    link: &mut Link,
) -> anyhow::Result<(RunParameters, CommittedDataset)> {
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
    let dataset = commit_dataset(config, &params)?;
    let enrolment = Enrolment {
        federation_id: params.federation_id,
        commitment: dataset.commitment(),
        schema_hash: params.schema.hash(),
    };
    let signed = SignedEnrolment::sign(enrolment, &config.key);
    match link.ask(Request::Enrol(signed)).await? {
        Response::Enrolled => info!(rows = dataset.commitment().rows, "enrolled"),
        Response::Refused(rejection) => bail!("enrolment refused: {rejection}"),
        other => bail!("unexpected answer to enrolment: {other:?}"),
    }
    Ok((params, dataset))
}

/// Sends a submission and reports its verdict; `true` if it was accepted.
async fn submit(
    link: &mut Link,
    submission: Submission,
    observer: &Observer,
) -> anyhow::Result<bool> {
    let Response::Verdict(v) = link.ask(Request::Submit(submission)).await? else {
        warn!("unexpected answer to a submission");
        return Ok(false);
    };
    match &v.rejection {
        None => info!(round = v.round, "update accepted"),
        Some(rejection) => warn!(round = v.round, %rejection, "update rejected"),
    }
    let accepted = v.accepted();
    let judged = ParticipantTelemetry::Judged {
        round: v.round,
        rejection: v.rejection,
    };
    emit(observer, judged);
    Ok(accepted)
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
    zkfed_net::write_durably(path, bytes, true)
        .with_context(|| format!("writing {}", path.display()))
}

/// Makes this round's submission on a blocking thread; returns it and the seconds taken.
async fn prove_round(
    prover: &Arc<dyn Prover>,
    params: &RunParameters,
    round: &RoundAnnouncement,
    me: &PeerId,
    dataset: &CommittedDataset,
) -> anyhow::Result<(Submission, f64)> {
    let statement = round_statement(params, round, me, dataset.commitment())
        .context("forming the round's statement")?;
    let (prover, rows, announced) = (prover.clone(), dataset.clone(), round.clone());
    let number = round.round;
    info!(round = number, batch = round.params.batch_size, "proving");
    let started = std::time::Instant::now();
    let submission =
        tokio::task::spawn_blocking(move || prover.submission(&announced, &statement, &rows))
            .await
            .context("the proving task failed")?
            .context("proving")?;
    let seconds = started.elapsed().as_secs_f64();
    info!(
        round = number,
        seconds,
        bytes = submission.proof.len(),
        "proved"
    );
    Ok((submission, seconds))
}

/// The connection to the coordinator: one request at a time, retried with backoff.
type Link = zkfed_net::Client<Request, Response>;

fn link(config: &Config) -> anyhow::Result<Link> {
    Ok(zkfed_net::Client::new(
        config.key.clone(),
        config.coordinator,
        config.coordinator_addr.clone(),
        zkfed_protocol::request_response_behaviour(),
        zkfed_protocol::AGENT_VERSION,
        GIVE_UP_AFTER,
    )?)
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
