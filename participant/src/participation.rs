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
/// How many times a submission refused as busy is sent again (one poll apart).
const MAX_BUSY_RETRIES: u32 = 240;
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
    // What this node has proven survives restarts: it never proves an attempt twice, and
    // never more proofs than the run's rounds times its attempt limit.
    let progress_path = config.state_dir.join("progress.bin");
    let mut progress = Progress::load(&progress_path)?;
    let mut accepted = 0;
    loop {
        match link.ask(Request::CurrentRound).await? {
            Response::Round(round) if (round.round, round.attempt) > progress.last => {
                let limits = (config.max_attempts, progress.proofs);
                if let Some(reason) = refusal(&params, &round, limits) {
                    warn!(round = round.round, attempt = round.attempt, %reason, "refusing to prove this round");
                    progress.last = (round.round, round.attempt);
                    continue;
                }
                // The swarm is serviced while proving: pings answered, the connection kept.
                let proved = prove_round(&prover, &params, &round, &me, &dataset);
                let (submission, seconds) = link.poll_while(proved).await?;
                let bytes = submission.proof.len() + 8 * (submission.update.weights.len() + 3);
                let attempt = (round.round, round.attempt);
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
                // Recorded once sent: a crash before this only makes the node prove the
                // same attempt again, over the same seed-chosen batch, so the same update.
                progress.last = attempt;
                progress.proofs += 1;
                progress.save(&progress_path)?;
            }
            Response::Round(_) | Response::Waiting => {
                link.poll_while(tokio::time::sleep(POLL)).await
            }
            Response::Finished { rounds, model } => {
                let text = serde_json::to_vec_pretty(&model).expect("a model serializes");
                write_durably(&config.state_dir.join("final_model.json"), &text)?;
                if rounds < params.rounds {
                    bail!(
                        "the run failed after {rounds} of its {} rounds (a round used up its \
                         attempts); the last model is in final_model.json",
                        params.rounds
                    );
                }
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
    pin_run(config, &params)?;
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

/// Holds the run to what this node enrolled under: its minimum batch size, and the run
/// parameters written to the state directory at the first enrolment (schema,
/// standardization, clip norm, batch size, learning rate, rounds), which may never change.
fn pin_run(config: &Config, params: &RunParameters) -> anyhow::Result<()> {
    if params.params.batch_size < config.min_batch_size {
        bail!(
            "the run's batch size {} is below this node's minimum {}: an update over so few \
             rows reveals too much about them",
            params.params.batch_size,
            config.min_batch_size
        );
    }
    let path = config.state_dir.join("run.bin");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let pinned: RunParameters =
                postcard::from_bytes(&bytes).context("the pinned run parameters are corrupt")?;
            if pinned != *params {
                bail!(
                    "the run's parameters differ from those this node enrolled under \
                     (pinned in {}); refusing to take part",
                    path.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            info!(columns = ?params.schema.features, label = %params.schema.label, batch = params.params.batch_size, "pinning the run's parameters");
            write_durably(
                &path,
                &postcard::to_allocvec(params).expect("plain data serializes"),
            )
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The last attempt this node proved and how many proofs it has made, kept durably.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Progress {
    last: (u64, u32),
    proofs: u64,
}

impl Progress {
    fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => postcard::from_bytes(&bytes)
                .with_context(|| format!("{} is corrupt", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        write_durably(
            path,
            &postcard::to_allocvec(self).expect("plain data serializes"),
        )
    }
}

/// Why this node will not prove an announced round attempt, if it will not: parameters
/// other than the pinned run's, a round past the run's last, more attempts than it allows,
/// its proof budget (rounds × attempts) spent, or a model outside the range the proof
/// covers. A coordinator gets at most that many proofs from it, however it numbers rounds.
fn refusal(
    params: &RunParameters,
    round: &RoundAnnouncement,
    (max_attempts, proofs): (u32, u64),
) -> Option<String> {
    if round.round > params.rounds {
        return Some(format!(
            "round {} is past the run's {} rounds",
            round.round, params.rounds
        ));
    }
    if proofs >= params.rounds.saturating_mul(u64::from(max_attempts)) {
        return Some(format!(
            "this node has made {proofs} proofs, its budget for {} rounds of at most \
             {max_attempts} attempts",
            params.rounds
        ));
    }
    if round.params != params.params {
        return Some(format!(
            "the round announces {:?}, the run this node enrolled in has {:?}",
            round.params, params.params
        ));
    }
    if round.attempt > max_attempts {
        return Some(format!(
            "attempt {} exceeds this node's limit of {max_attempts} attempts per round",
            round.attempt
        ));
    }
    round
        .model
        .validate()
        .err()
        .map(|e| format!("the announced model cannot be proven: {e}"))
}

/// Sends a submission and reports its verdict; `true` if it was accepted.
async fn submit(
    link: &mut Link,
    submission: Submission,
    observer: &Observer,
) -> anyhow::Result<bool> {
    let mut busy = 0;
    let v = loop {
        let Response::Verdict(v) = link.ask(Request::Submit(submission.clone())).await? else {
            warn!("unexpected answer to a submission");
            return Ok(false);
        };
        // An earlier submission of this node is still being verified (a retried attempt
        // right after the last one closed): a passing state, so ask again.
        if matches!(v.rejection, Some(Rejection::Busy)) && busy < MAX_BUSY_RETRIES {
            busy += 1;
            link.poll_while(tokio::time::sleep(POLL)).await;
            continue;
        }
        break v;
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
    use std::path::PathBuf;

    use super::*;
    use zkfed_air::data::{Standardization, breast_cancer};

    fn run_parameters() -> RunParameters {
        let raw = breast_cancer();
        RunParameters {
            federation_id: [1; 32],
            schema: raw.schema.clone(),
            standardization: Standardization::fit(&raw).unwrap(),
            rounds: 1,
            params: zkfed_air::RoundParams {
                clip_norm: zkfed_air::fixed::ONE,
                batch_size: 16,
            },
            learning_rate: zkfed_air::fixed::ONE,
        }
    }

    fn config(dir: &Path) -> Config {
        Config {
            coordinator_addr: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            coordinator: libp2p::identity::Keypair::generate_ed25519()
                .public()
                .to_peer_id(),
            dataset: dir.join("rows.csv"),
            state_dir: dir.join("state"),
            key: libp2p::identity::Keypair::generate_ed25519(),
            schema: None,
            min_batch_size: 8,
            max_attempts: 3,
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zkfed-part-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        dir
    }

    #[test]
    fn commitment_is_reused_and_an_edited_csv_is_caught() {
        let dir = tempdir("commit");
        let csv = dir.join("rows.csv");
        std::fs::write(&csv, crate::bundled_shard_csv(0, 5)).unwrap();
        let params = run_parameters();
        let first = commit_dataset(&config(&dir), &params).unwrap().commitment();
        let again = commit_dataset(&config(&dir), &params).unwrap().commitment();
        assert_eq!(first, again, "salts are reused, so the root is stable");
        let edited = crate::bundled_shard_csv(0, 5).replacen(",1\n", ",0\n", 1);
        std::fs::write(&csv, edited).unwrap();
        let err = commit_dataset(&config(&dir), &params).unwrap_err();
        assert!(
            format!("{err:#}").contains("changed since this node committed"),
            "{err:#}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_run_is_pinned_at_enrolment_and_small_batches_are_refused() {
        let dir = tempdir("pin");
        let params = run_parameters();
        pin_run(&config(&dir), &params).unwrap();
        pin_run(&config(&dir), &params).expect("the same run again");
        // A coordinator that changes the run after enrolment (here: its schema) is refused.
        let mut changed = params.clone();
        changed.schema.features.pop();
        let err = pin_run(&config(&dir), &changed).unwrap_err();
        assert!(format!("{err:#}").contains("enrolled under"), "{err:#}");
        let mut faster = params.clone();
        faster.learning_rate *= 2;
        assert!(pin_run(&config(&dir), &faster).is_err());
        // A run whose batch is below the node's minimum is refused before anything is pinned.
        let fresh = tempdir("pin-small");
        let mut small = params;
        small.params.batch_size = 4;
        let err = pin_run(&config(&fresh), &small).unwrap_err();
        assert!(
            format!("{err:#}").contains("below this node's minimum"),
            "{err:#}"
        );
        assert!(!fresh.join("state/run.bin").exists());
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(fresh).unwrap();
    }

    #[test]
    fn rounds_off_the_pinned_parameters_or_past_the_attempt_limit_are_refused() {
        let params = run_parameters();
        let round = RoundAnnouncement {
            round: 1,
            attempt: 1,
            model: zkfed_air::Model::zeros(params.schema.features.len()),
            params: params.params,
            seed: [0; 32],
            opened_at_ms: 0,
        };
        let fresh = (3, 0);
        assert_eq!(refusal(&params, &round, fresh), None);
        let mut batch_of_one = round.clone();
        batch_of_one.params.batch_size = 1;
        assert!(refusal(&params, &batch_of_one, fresh).is_some());
        let mut looser = round.clone();
        looser.params.clip_norm *= 4;
        assert!(refusal(&params, &looser, fresh).is_some());
        let mut fourth = round.clone();
        fourth.attempt = 4;
        assert!(
            refusal(&params, &fourth, fresh)
                .unwrap()
                .contains("limit of 3")
        );
        // A round past the run's last, or a spent budget (1 round × 3 attempts).
        let mut later = round.clone();
        later.round = 2;
        assert!(
            refusal(&params, &later, fresh)
                .unwrap()
                .contains("past the run")
        );
        assert!(refusal(&params, &round, (3, 3)).unwrap().contains("budget"));
        let mut wild = round;
        wild.model.bias = zkfed_air::fixed::PARAM_BOUND;
        assert!(
            refusal(&params, &wild, fresh)
                .unwrap()
                .contains("cannot be proven")
        );
    }
}
