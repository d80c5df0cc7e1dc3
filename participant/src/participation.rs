//! The participant's loop: parameters, commitment, enrolment, then rounds until the run ends.
//!
//! The participant only ever asks; each request is retried with exponential backoff when
//! the coordinator is unreachable (restarting, or the network dropped), so a participant
//! rides out a coordinator restart and rejoins the round in progress.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use libp2p::PeerId;
use tokio::sync::mpsc;
use tracing::{info, warn};
use zkfed_air::commitment::{salts_from_bytes, salts_to_bytes};
use zkfed_air::data::{LISTED_ROWS, list_rows, read_csv};
use zkfed_air::sampling::{KeyCommitment, SamplingKey};
use zkfed_air::{CommittedDataset, DatasetCommitment, Model, Statement, WitnessError};
use zkfed_protocol::model_file::ModelFile;
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
    let _lock = lock_state_dir(&config.state_dir)?;
    check_node_key(&config)?;
    info!(peer = %me, coordinator = %config.coordinator, "participant starting");
    let mut link = link(&config)?;
    let (params, dataset) = enrol(&config, &mut link).await?;
    let run_dir = config.run_dir(&params.federation_id);
    // Every new attempt is proven: a round abandoned below quorum is retried with the same
    // number, and a node that stayed silent because it had "already submitted" would keep
    // the retry below quorum too.
    // What this node has set out to prove survives restarts, written before it proves: it
    // never proves more attempts than the run's rounds times its attempt limit, nor (in a
    // private run) more than its budget, however the coordinator answers or numbers them.
    let progress_path = run_dir.join("progress.bin");
    let mut progress = Progress::load(&progress_path)?;
    let mut accepted = 0;
    loop {
        match link.ask(Request::CurrentRound).await? {
            Response::Round(round) => {
                let take = progress.takes(&round);
                if take == Take::Skip {
                    link.poll_while(tokio::time::sleep(POLL)).await;
                    continue;
                }
                // A resumed attempt was counted when it began; its announcement is the
                // same bytes, checked again all the same.
                let counted = match take {
                    Take::Resume => progress.proofs.saturating_sub(1),
                    _ => progress.proofs,
                };
                let refused = refusal(&params, &round, (config.max_attempts, counted))
                    .or_else(|| {
                        (take == Take::New)
                            .then(|| reused_seed(&params, &progress, &round))
                            .flatten()
                    })
                    .or_else(|| budget_refusal(&params, config.max_epsilon, counted));
                if let Some(reason) = refused {
                    warn!(round = round.round, attempt = round.attempt, %reason, "refusing to prove this round");
                    // Kept in memory only: a refusal draws no sample, and one absurd
                    // announcement must not shut this node out of the rest of the run.
                    progress.refuse(&round);
                    link.poll_while(tokio::time::sleep(POLL)).await;
                    continue;
                }
                if take == Take::New {
                    progress.begin(&round);
                    progress.save(&progress_path)?;
                }
                // The swarm is serviced while proving: pings answered, the connection kept.
                let proved = prove_round(&prover, &params, &round, &me, &dataset);
                let (submission, seconds) = match link.poll_while(proved).await {
                    Ok(proved) => proved,
                    Err(e) if abstains(&e) => {
                        // Probability below 10^-9 per attempt (README, "Privacy").
                        warn!(round = round.round, attempt = round.attempt, error = %e, "abstaining from this attempt");
                        progress.unfinished = None;
                        progress.save(&progress_path)?;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let bytes = submission.proof.len() + 8 * (submission.update.values.len() + 1);
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
                // A crash before this makes the node prove the same attempt again only if it
                // is announced in the same bytes: the same sample, so the same update,
                // counted once.
                progress.unfinished = None;
                progress.save(&progress_path)?;
            }
            Response::Waiting => link.poll_while(tokio::time::sleep(POLL)).await,
            Response::Finished {
                rounds,
                model,
                budget_spent,
            } => {
                write_final_model(&run_dir, &params, &model, rounds)?;
                if rounds < params.rounds && budget_spent && params.privacy.is_some() {
                    // Its log's `BudgetSpent` record says why, and the audit checks that the
                    // budget called for it.
                    info!(
                        rounds,
                        planned = params.rounds,
                        "the private run ended at its privacy budget"
                    );
                } else if rounds < params.rounds {
                    bail!(
                        "the run failed after {rounds} of its {} rounds (a round used up its \
                         attempts); the last model is in {}",
                        params.rounds,
                        run_dir.join(FINAL_MODEL).display()
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
            Response::Refused(rejection) => bail!("coordinator refused: {}", shown(&rejection)),
            other => bail!("unexpected answer: {}", shown(&format!("{other:?}"))),
        }
    }
}

/// Holds `lock` in the state directory exclusively while this node runs (released when the
/// file is dropped or the process dies): two processes on one state directory would each
/// count their own proofs and overwrite each other's progress and commitments.
fn lock_state_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("lock");
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another participant is running on the state directory {}",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// The configuration's key is the one on disk: two first starts may each have created one
/// before either held the lock, and the one on disk is the node's.
fn check_node_key(config: &Config) -> anyhow::Result<()> {
    let on_disk = zkfed_net::load_or_create_key(&config.state_dir.join("node.key"))
        .context("reading the node key")?;
    ensure!(
        on_disk.public() == config.key.public(),
        "another process replaced this node's key in {}: start it again",
        config.state_dir.display()
    );
    Ok(())
}

/// Most characters of a coordinator's text a participant's error shows.
const SHOWN_CHARS: usize = 300;

/// The coordinator's text as this node's final error prints it: control characters
/// escaped (a terminal must not take orders from it) and cut to [`SHOWN_CHARS`].
fn shown(text: &impl std::fmt::Display) -> String {
    let text = text.to_string();
    let mut out: String = text
        .chars()
        .take(SHOWN_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(SHOWN_CHARS).is_some() {
        out.push('…');
    }
    out
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
    let dataset = prepare(config, &params)?;
    let enrolment = Enrolment {
        federation_id: params.federation_id,
        commitment: dataset.commitment(),
        schema_hash: params.schema.hash(),
        parameters: params.digest(),
        sampling_key: sampling_key(&params, &dataset),
    };
    let signed = SignedEnrolment::sign(enrolment, &config.key);
    match link.ask(Request::Enrol(signed)).await? {
        Response::Enrolled => info!(rows = dataset.commitment().rows, "enrolled"),
        Response::Refused(rejection) => bail!("enrolment refused: {}", shown(&rejection)),
        other => bail!(
            "unexpected answer to enrolment: {}",
            shown(&format!("{other:?}"))
        ),
    }
    Ok((params, dataset))
}

/// Everything before enrolment that touches the state directory: an earlier release's
/// files adopted, the run pinned, the dataset committed (the commitment enrolled).
///
/// Every check runs before anything is written: a run this node refuses leaves no pin,
/// no salts and no commitment behind.
fn prepare(config: &Config, params: &RunParameters) -> anyhow::Result<CommittedDataset> {
    check_run(config, params)?;
    let first_federation = check_federation(config, &params.federation_id)?;
    let rows = load_rows(config, params)?;
    check_trace_size(config, params, rows.features.len() as u64)?;
    adopt_legacy_files(config, params)?;
    if let Some(path) = first_federation {
        let federation = zkfed_net::hex::hex32(&params.federation_id);
        info!(%federation, "pinning the federation this node takes part in");
        write_durably(&path, &params.federation_id)?;
    }
    pin_run(config, params)?;
    commit_dataset(config, params, rows)
}

/// A strategy in its ranges whose rounds cannot move a parameter by more than the
/// coordinator's own configuration allows: one that could would abandon attempts out of
/// range and spend this node's proofs on a run that cannot finish.
fn check_strategy(params: &RunParameters) -> anyhow::Result<()> {
    use zkfed_aggregation::strategy::MAX_STEP;
    let strategy = params.strategy;
    strategy
        .validate()
        .map_err(anyhow::Error::msg)
        .context("the run's strategy")?;
    // A negative or huge learning rate or clip norm gives an infinite bound.
    let step = strategy.largest_step(params.learning_rate, params.params.clip_norm);
    ensure!(
        step <= MAX_STEP,
        "the run's strategy {strategy} may move a parameter by up to {step:.2} in one round, \
         above {MAX_STEP}"
    );
    Ok(())
}

/// What a run must be for this node to take part, checked before anything is written:
/// the coordinator's schema and statistics as sound as the coordinator checks its own,
/// and batches no smaller than this node's minimum.
fn check_run(config: &Config, params: &RunParameters) -> anyhow::Result<()> {
    params.schema.validate().context("the run's schema")?;
    zkfed_protocol::check_model(&params.model, &params.schema).context("the run's model")?;
    check_strategy(params)?;
    params
        .standardization
        .check(&params.schema)
        .context("the run's standardization")?;
    if let Some(privacy) = &params.privacy {
        // A private run's batch is this node's hidden sample: its noise and budget, not a
        // batch size, protect the rows.
        privacy.validate().context("the run's privacy")?;
        ensure!(
            zkfed_aggregation::strategy::is_mean_based(params.strategy),
            "the run's strategy {} needs each update, which a private run does not give it",
            params.strategy
        );
        if let Some(mine) = config.max_epsilon {
            ensure!(
                privacy.epsilon <= mine,
                "the run's privacy budget ε = {} is above this node's `max_epsilon` {mine}",
                privacy.epsilon
            );
        }
        if let Some(reason) = budget_refusal(params, config.max_epsilon, 0) {
            bail!("the run could not use this node's rows even once: {reason}");
        }
        return Ok(());
    }
    ensure!(
        !config.private_only,
        "the run is not private (public batches, no noise, no budget), and this node takes \
         part in private runs only (`private_only`)"
    );
    if params.params.batch_size < config.min_batch_size {
        bail!(
            "the run's batch size {} is below this node's minimum {}: an update over so few \
             rows reveals too much about them",
            params.params.batch_size,
            config.min_batch_size
        );
    }
    Ok(())
}

/// Takes part in the configured federation only, or else in the one this state directory
/// first took part in: per-federation directories must not let a coordinator start afresh,
/// with fresh pins, salts and proof budget, by announcing a new federation. Writes
/// nothing; `Some(path)` when `federation.bin` at `path` does not pin it yet and should.
fn check_federation(config: &Config, id: &[u8; 32]) -> anyhow::Result<Option<PathBuf>> {
    let theirs = zkfed_net::hex::hex32(id);
    if let Some(named) = config.federation_id {
        if named != *id {
            bail!(
                "the coordinator runs federation {theirs}, but this node takes part only in {} \
                 (`federation_id`)",
                zkfed_net::hex::hex32(&named)
            );
        }
        return Ok(None);
    }
    let path = config.state_dir.join("federation.bin");
    match pinned_federation(config, &path)? {
        Some(pinned) if pinned != *id => bail!(
            "this state directory takes part in federation {}, and the coordinator runs \
             {theirs}: set `federation_id` (or --federation) to take part in another",
            zkfed_net::hex::hex32(&pinned)
        ),
        // The pin is written once every check has passed, also when it was derived.
        _ if path.exists() => Ok(None),
        _ => Ok(Some(path)),
    }
}

/// The federation this state directory took part in: `federation.bin`, or else (a state
/// directory from before it, or one whose pin was lost) an earlier release's `run.bin`
/// at the top, or the one run directory there is.
fn pinned_federation(config: &Config, path: &Path) -> anyhow::Result<Option<[u8; 32]>> {
    if let Some(bytes) = read_if_present(path)? {
        return <[u8; 32]>::try_from(bytes.as_slice())
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{} is corrupt", path.display()));
    }
    let legacy = config.state_dir.join("run.bin");
    if let Some(bytes) = read_if_present(&legacy)? {
        let run: RunParameters = postcard::from_bytes(&bytes)
            .with_context(|| format!("{} is corrupt", legacy.display()))?;
        return Ok(Some(run.federation_id));
    }
    let mut runs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&config.state_dir) {
        for entry in entries {
            let name = entry?.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| zkfed_net::hex::parse_hex32(n).ok())
            {
                runs.push(id);
            }
        }
    }
    match runs.as_slice() {
        [] => Ok(None),
        [only] => Ok(Some(*only)),
        _ => bail!(
            "{} holds several runs and no `federation.bin`: set `federation_id` (or \
             --federation) to the one to take part in",
            config.state_dir.display()
        ),
    }
}

/// Refuses a run whose proofs would need a larger trace than this node builds.
fn check_trace_size(config: &Config, params: &RunParameters, rows: u64) -> anyhow::Result<()> {
    let d = params.schema.features.len();
    // A private run's proofs have the sample's slots and a sampling table over every row,
    // held to the coordinator's own bounds.
    let (batch, sampled_from) = match &params.privacy {
        Some(privacy) => {
            let slots = zkfed_protocol::private_slots(params, privacy, rows)
                .map_err(anyhow::Error::msg)
                .context("this dataset in the run's private proofs")?;
            (slots, Some(rows))
        }
        None => (params.params.batch_size, None),
    };
    let shape = zkfed_air::statement::ProofShape {
        sampled_from,
        ..zkfed_air::statement::ProofShape::new(params.model, d, batch, rows)
    };
    let cells = shape.committed_cells();
    if cells > config.max_trace_cells {
        let table = match sampled_from {
            Some(rows) => format!(", a sampling table over {rows} rows"),
            None => String::new(),
        };
        bail!(
            "the run's proofs need {cells} committed trace cells ({d} features, batch \
             {batch}{table}), above this node's limit of {} (`max_trace_cells`)",
            config.max_trace_cells
        );
    }
    if let Some(privacy) = &params.privacy {
        // An expected batch below this node's minimum would send updates over so few rows
        // that the coordinator (who sees them un-noised) learns too much about them.
        let expected = privacy.sampling.probability() * rows as f64;
        ensure!(
            expected >= config.min_batch_size as f64,
            "the run samples {:.1} of this node's {rows} rows a round on average, below its \
             minimum batch of {}",
            expected,
            config.min_batch_size
        );
    }
    Ok(())
}

/// Holds the run to what this node enrolled under: the run parameters written to the
/// run's directory at the first enrolment (schema, standardization, clip norm, batch size,
/// learning rate, rounds), which may never change.
fn pin_run(config: &Config, params: &RunParameters) -> anyhow::Result<()> {
    let path = config.run_dir(&params.federation_id).join("run.bin");
    match read_if_present(&path)? {
        Some(bytes) => {
            let pinned: RunParameters = postcard::from_bytes(&bytes).with_context(|| {
                format!(
                    "the pinned run parameters in {} do not decode: corrupt, or pinned by an \
                     earlier release for a run this release cannot join",
                    path.display()
                )
            })?;
            if pinned != *params {
                bail!(
                    "the run's parameters differ from those this node enrolled under \
                     (pinned in {}); refusing to take part",
                    path.display()
                );
            }
            Ok(())
        }
        None => {
            info!(columns = ?params.schema.features, label = %params.schema.label, batch = params.params.batch_size, strategy = %params.strategy, "pinning the run's parameters");
            write_durably(
                &path,
                &postcard::to_allocvec(params).expect("plain data serializes"),
            )
        }
    }
}

/// What this node has set out to prove, kept durably and written before it proves.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Progress {
    /// The last attempt announced to it that it proved, began to prove or refused.
    last: (u64, u32),
    /// The attempts it has set out to prove: its proof budget's count and, in a private
    /// run, the attempts its rows were sampled in (each proof, each abstention, and each
    /// attempt a crash interrupted).
    proofs: u64,
    /// While the proof of `last` may not have reached the coordinator, the SHA-256 of its
    /// announcement: only the same announcement resumes it.
    unfinished: Option<[u8; 32]>,
    /// The seeds of the attempts of round `last.0` it set out to prove, the last one
    /// `last`'s.
    seeds: Vec<[u8; 32]>,
}

/// What a node does with an announced attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Take {
    /// An attempt after [`Progress::last`]: checked, counted and proven.
    New,
    /// The unfinished `last`, announced in the same bytes: the same sample again, proven
    /// uncounted.
    Resume,
    /// Anything else, among them `last` announced otherwise.
    Skip,
}

/// [`Progress`] as releases before private runs wrote it.
#[derive(serde::Deserialize)]
struct ProgressV1 {
    last: (u64, u32),
    proofs: u64,
}

impl Progress {
    fn load(path: &Path) -> anyhow::Result<Self> {
        let Some(bytes) = read_if_present(path)? else {
            return Ok(Self::default());
        };
        if let Ok(progress) = postcard::from_bytes(&bytes) {
            return Ok(progress);
        }
        // Releases before private runs counted proofs once sent; nothing was unfinished.
        let v1: ProgressV1 = postcard::from_bytes(&bytes)
            .with_context(|| format!("{} is corrupt", path.display()))?;
        info!(path = %path.display(), "reading progress written by an earlier release");
        Ok(Self {
            last: v1.last,
            proofs: v1.proofs,
            ..Self::default()
        })
    }

    /// What to do with `round`.
    fn takes(&self, round: &RoundAnnouncement) -> Take {
        let attempt = (round.round, round.attempt);
        if attempt > self.last {
            Take::New
        } else if attempt == self.last && self.unfinished == Some(announcement_digest(round)) {
            Take::Resume
        } else {
            Take::Skip
        }
    }

    /// Counts `round` as set out to prove, before proving it.
    fn begin(&mut self, round: &RoundAnnouncement) {
        if round.round != self.last.0 {
            self.seeds.clear();
        }
        self.last = (round.round, round.attempt);
        self.proofs += 1;
        self.unfinished = Some(announcement_digest(round));
        self.seeds.push(round.seed);
    }

    /// Skips `round` (a resumed attempt refused is no longer resumed).
    fn refuse(&mut self, round: &RoundAnnouncement) {
        if round.round != self.last.0 {
            self.seeds.clear();
        }
        self.last = (round.round, round.attempt);
        self.unfinished = None;
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
    model_misfit(params, &round.model).map(|e| format!("the announced model {e}"))
}

/// This node's privacy budget: the lower of the run's target ε and its own
/// `max_epsilon` (none in a run without privacy).
fn privacy_cap(params: &RunParameters, max_epsilon: Option<f64>) -> Option<f64> {
    let target = params.privacy?.epsilon;
    Some(max_epsilon.map_or(target, |mine| mine.min(target)))
}

/// SHA-256 of an announcement's encoding.
fn announcement_digest(round: &RoundAnnouncement) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let bytes = postcard::to_allocvec(round).expect("plain data serializes");
    Sha256::digest(bytes).into()
}

/// Why this node will not prove `round` of a private run, if its seed is one the PRF reads
/// as that of an attempt of the same round it set out to prove: the same rows sampled
/// again, which the accountant (independent samples) does not cover.
fn reused_seed(
    params: &RunParameters,
    progress: &Progress,
    round: &RoundAnnouncement,
) -> Option<String> {
    use zkfed_air::sampling::seed_words;
    params.privacy?;
    let words = seed_words(&round.seed);
    let reused = round.round == progress.last.0
        && progress.seeds.iter().any(|seed| seed_words(seed) == words);
    reused.then(|| {
        format!(
            "attempt {} repeats the sampling seed of an earlier attempt of round {}",
            round.attempt, round.round
        )
    })
}

/// Why this node will not let its rows be sampled once more in a private run, if it will
/// not: one more sampled attempt would spend more than its budget ([`privacy_cap`]). It
/// counts the attempts itself, so a coordinator that opens attempts past the budget gets no
/// more of its updates.
fn budget_refusal(
    params: &RunParameters,
    max_epsilon: Option<f64>,
    sampled: u64,
) -> Option<String> {
    let (privacy, cap) = (params.privacy?, privacy_cap(params, max_epsilon)?);
    let next = sampled.saturating_add(1);
    match zkfed_protocol::budget::spent_epsilon(params, &privacy, next) {
        Ok(epsilon) if epsilon <= cap => None,
        Ok(epsilon) => Some(format!(
            "this node's rows were sampled in {sampled} attempts; one more would spend ε = \
             {epsilon:.4}, above its budget of {cap}"
        )),
        Err(e) => Some(format!(
            "this node's rows were sampled in {sampled} attempts; one more cannot be \
             accounted: {e}"
        )),
    }
}

/// Why a model the coordinator sent does not fit the run this node enrolled in: another
/// spec, another width, or parameters the proof cannot take.
fn model_misfit(params: &RunParameters, model: &Model) -> Option<String> {
    let d = params.schema.features.len();
    if model.spec != params.model || model.num_features != d {
        return Some(format!(
            "is {} over {} features; the run's is {} over {d}",
            model.spec, model.num_features, params.model
        ));
    }
    model
        .validate()
        .err()
        .map(|e| format!("cannot be proven: {e}"))
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

/// The final model's file in the run's directory.
const FINAL_MODEL: &str = "final_model.json";
/// The salts and the commitment, in the run's directory.
const DATASET_FILE: &str = "dataset.bin";
/// Files an earlier release kept at the top of the state directory, for one run only.
/// `run.bin` comes last: while it is still at the top, a move cut short is resumed.
const LEGACY_FILES: [&str; 5] = [
    "salts.bin",
    "commitment.bin",
    "progress.bin",
    FINAL_MODEL,
    "run.bin",
];

/// The model the run ended with, as a model file (the format `zkfed-coordinator model
/// evaluate` reads); a model that does not fit the run is refused, not written.
fn write_final_model(
    run_dir: &Path,
    params: &RunParameters,
    model: &Model,
    rounds: u64,
) -> anyhow::Result<()> {
    if let Some(misfit) = model_misfit(params, model) {
        bail!("the coordinator's final model {misfit}; it is not written");
    }
    let file = ModelFile::new(model, &params.schema, &params.standardization, rounds);
    write_durably(&run_dir.join(FINAL_MODEL), &file.to_json())
}

/// Moves an earlier release's files (one run's, at the top of the state directory) into
/// this run's directory, if they belong to this run: its salts must survive the upgrade,
/// or its enrolled commitment could never be opened again. Another run's are left alone.
fn adopt_legacy_files(config: &Config, params: &RunParameters) -> anyhow::Result<()> {
    let top = &config.state_dir;
    let legacy_run = top.join("run.bin");
    let Some(bytes) = read_if_present(&legacy_run)? else {
        return Ok(());
    };
    match postcard::from_bytes::<RunParameters>(&bytes) {
        Ok(pinned) if pinned.federation_id == params.federation_id => {}
        Ok(_) => return Ok(()),
        Err(e) => {
            let file = legacy_run.display();
            warn!(%file, error = %e, "not a run this release can read; left in place");
            return Ok(());
        }
    }
    let dir = config.run_dir(&params.federation_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for name in LEGACY_FILES {
        let (from, to) = (top.join(name), dir.join(name));
        if !from.exists() {
            continue;
        }
        if to.exists() {
            bail!(
                "{} and {} both exist (an earlier release's and this one's files for the same \
                 run); keep the one this node enrolled with and remove the other",
                from.display(),
                to.display()
            );
        }
        std::fs::rename(&from, &to)
            .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
    }
    for synced in [&dir, top] {
        std::fs::File::open(synced)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", synced.display()))?;
    }
    info!(dir = %dir.display(), "moved this run's files from an earlier release's layout");
    Ok(())
}

/// The salts, the sampling key and the commitment over them, in one file written
/// atomically (temp file, fsync, rename, fsync of the directory), so no crash leaves one
/// without the others.
// No `Debug`: the salts keep the committed rows hidden, the key the sampled ones.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredDataset {
    commitment: DatasetCommitment,
    /// The salts (`salts_to_bytes`), one per committed row.
    salts: Vec<u8>,
    /// The data rows (from 1) left out as out of range, so a restart that would leave out
    /// others is explained, not just refused.
    left_out: Vec<u64>,
    /// The hidden-sampling key (`SamplingKey::to_bytes`), drawn with the salts.
    sampling_key: Vec<u8>,
}

/// [`StoredDataset`] as the release before hidden sampling wrote it: read, given a fresh
/// key and written again in the current layout.
#[derive(serde::Deserialize)]
struct StoredDatasetV1 {
    commitment: DatasetCommitment,
    salts: Vec<u8>,
    left_out: Vec<u64>,
}

/// The stored dataset, and whether it was an earlier release's (then it is given a fresh
/// sampling key, which the caller writes back before using it: no run has enrolled one).
fn decode_stored_dataset(bytes: &[u8]) -> anyhow::Result<(StoredDataset, bool)> {
    if let Ok(stored) = postcard::from_bytes::<StoredDataset>(bytes) {
        return Ok((stored, false));
    }
    let old: StoredDatasetV1 = postcard::from_bytes(bytes)?;
    let key = SamplingKey::generate(&mut rand::make_rng::<rand::rngs::StdRng>());
    let stored = StoredDataset {
        commitment: old.commitment,
        salts: old.salts,
        left_out: old.left_out,
        sampling_key: key.to_bytes().to_vec(),
    };
    Ok((stored, true))
}

/// Loads the CSV under the run's schema and commits to it, reusing persisted salts.
///
/// Fresh salts and the commitment are written durably, together, before the commitment is
/// used: without the salts it could never be opened again. On later starts the stored
/// commitment must match the file, so an edited CSV is caught here, not at enrolment.
fn commit_dataset(
    config: &Config,
    params: &RunParameters,
    Rows {
        features: rows,
        labels,
        left_out,
    }: Rows,
) -> anyhow::Result<CommittedDataset> {
    let dir = config.run_dir(&params.federation_id);
    let path = dir.join(DATASET_FILE);
    let changed = || {
        format!(
            "{} changed since this node committed to it; the enrolled root cannot change",
            config.dataset.display()
        )
    };
    if let Some(bytes) = read_if_present(&path)? {
        let (stored, upgraded) = decode_stored_dataset(&bytes)
            .with_context(|| format!("{} is corrupt", path.display()))?;
        if stored.left_out != left_out {
            bail!(
                "{}: the commitment left out {} out-of-range rows, this start would leave \
                 out {}; the enrolled root cannot change: restore the CSV and the \
                 --skip-out-of-range setting of the first start",
                config.dataset.display(),
                stored.left_out.len(),
                left_out.len()
            );
        }
        let salts = salts_from_bytes(&stored.salts, rows.len()).with_context(changed)?;
        let key = SamplingKey::from_bytes(&stored.sampling_key)
            .with_context(|| format!("{}: the sampling key", path.display()))?;
        let dataset = CommittedDataset::with_salts(rows, labels, salts)?.with_sampling_key(key);
        if stored.commitment != dataset.commitment() {
            bail!(changed());
        }
        if upgraded {
            write_durably(
                &path,
                &postcard::to_allocvec(&stored).expect("plain data serializes"),
            )?;
        }
        return Ok(dataset);
    }
    // An earlier release wrote the salts, then the commitment, as two files: a crash
    // between them left salts alone. The commitment is recomputed from them.
    let (legacy_salts, legacy_commitment) = (dir.join("salts.bin"), dir.join("commitment.bin"));
    let dataset = match read_if_present(&legacy_salts)? {
        Some(bytes) => {
            let salts = salts_from_bytes(&bytes, rows.len()).with_context(changed)?;
            let dataset = CommittedDataset::with_salts(rows, labels, salts)?;
            if let Some(bytes) = read_if_present(&legacy_commitment)? {
                let stored: DatasetCommitment = postcard::from_bytes(&bytes)
                    .with_context(|| format!("{} is corrupt", legacy_commitment.display()))?;
                if stored != dataset.commitment() {
                    bail!(changed());
                }
            }
            dataset
        }
        None => {
            let mut rng = rand::make_rng::<rand::rngs::StdRng>();
            CommittedDataset::commit(rows, labels, &mut rng)?
        }
    };
    let key = SamplingKey::generate(&mut rand::make_rng::<rand::rngs::StdRng>());
    let dataset = dataset.with_sampling_key(key.clone());
    let stored = StoredDataset {
        commitment: dataset.commitment(),
        salts: salts_to_bytes(dataset.salts()),
        left_out,
        sampling_key: key.to_bytes().to_vec(),
    };
    write_durably(
        &path,
        &postcard::to_allocvec(&stored).expect("plain data serializes"),
    )?;
    for old in [legacy_salts, legacy_commitment] {
        if old.exists() {
            std::fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
        }
    }
    Ok(dataset)
}

/// The rows a node commits to.
struct Rows {
    /// In fixed point under the run's statistics.
    features: Vec<Vec<i64>>,
    labels: Vec<u8>,
    /// The data rows (from 1) left out as out of range, which only `skip_out_of_range`
    /// allows.
    left_out: Vec<u64>,
}

/// The CSV's rows under the run's schema and statistics.
fn load_rows(config: &Config, params: &RunParameters) -> anyhow::Result<Rows> {
    let file = std::fs::File::open(&config.dataset)
        .with_context(|| format!("opening {}", config.dataset.display()))?;
    let raw = read_csv(std::io::BufReader::new(file), &params.schema)
        .with_context(|| format!("reading {}", config.dataset.display()))?;
    let standardized = params
        .standardization
        .standardize(&raw)
        .context("standardizing the dataset with the run's statistics")?;
    let left_out: Vec<u64> = standardized
        .out_of_range
        .iter()
        .map(|r| r.row as u64)
        .collect();
    if let Err(e) = standardized.check_in_range() {
        // Rows and columns only: the values are patients'.
        if !config.skip_out_of_range {
            bail!(
                "{}: {e}. Fix or remove these rows, or start the participant with \
                 --skip-out-of-range (`skip_out_of_range = true` in its configuration) to \
                 leave them out of the commitment",
                config.dataset.display()
            );
        }
        let first = &standardized.out_of_range[..left_out.len().min(LISTED_ROWS)];
        warn!(
            rows = left_out.len(),
            first = %list_rows(first, left_out.len()),
            "leaving data rows out of range of the run's standardization out of the commitment"
        );
    }
    if standardized.rows.is_empty() {
        bail!(
            "{}: every data row is out of range of the run's standardization",
            config.dataset.display()
        );
    }
    Ok(Rows {
        features: standardized.rows,
        labels: standardized.labels,
        left_out,
    })
}

/// The file's bytes, or `None` if it does not exist.
fn read_if_present(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    zkfed_net::write_durably(path, bytes, true)
        .with_context(|| format!("writing {}", path.display()))
}

/// The commitment to this node's sampling key, enrolled in a private run only.
fn sampling_key(params: &RunParameters, dataset: &CommittedDataset) -> Option<KeyCommitment> {
    params.privacy?;
    dataset.sampling_key().map(SamplingKey::commitment)
}

/// Whether a proving error is a hidden sample the proof cannot take (more rows than its
/// slots, or an unsplittable value): the node abstains from that attempt, as the overflow
/// rule says, instead of stopping.
pub fn abstains(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<zkfed_air::ProveError>(),
        Some(zkfed_air::ProveError::Witness(
            WitnessError::SampleOverflow { .. } | WitnessError::UnsplittableSample
        ))
    )
}

/// Makes this round's submission on a blocking thread; returns it and the seconds taken.
async fn prove_round(
    prover: &Arc<dyn Prover>,
    params: &RunParameters,
    round: &RoundAnnouncement,
    me: &PeerId,
    dataset: &CommittedDataset,
) -> anyhow::Result<(Submission, f64)> {
    let key = sampling_key(params, dataset);
    let statement = round_statement(params, round, me, dataset.commitment(), key)
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
type Link = zkfed_net::Client<zkfed_protocol::ZkfedCodec>;

fn link(config: &Config) -> anyhow::Result<Link> {
    Ok(zkfed_net::Client::new(
        config.key.clone(),
        config.coordinator,
        config.coordinator_addr.clone(),
        zkfed_protocol::participant_behaviour(),
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
            model: zkfed_air::spec::ModelSpec::Logistic,
            standardization: Standardization::fit(&raw).unwrap(),
            rounds: 1,
            params: zkfed_air::RoundParams {
                clip_norm: zkfed_air::fixed::ONE,
                batch_size: 16,
            },
            learning_rate: zkfed_air::fixed::ONE,
            strategy: Default::default(),
            privacy: None,
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
            skip_out_of_range: false,
            federation_id: None,
            max_trace_cells: crate::config::default_max_trace_cells(),
            private_only: false,
            max_epsilon: None,
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zkfed-part-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        dir
    }

    #[test]
    fn private_runs_are_held_to_the_expected_batch_and_the_trace_budget() {
        let dir = tempdir("private-size");
        let config = config(&dir);
        let mut params = run_parameters();
        params.strategy = zkfed_aggregation::strategy::Strategy::FedAvg;
        params.privacy = Some(zkfed_protocol::Privacy {
            sampling: zkfed_air::sampling::SamplingRate::from_probability(0.1).unwrap(),
            noise_multiplier: 1.0,
            epsilon: 4.0,
            delta: 1e-5,
        });
        // 0.1 × 200 = 20 expected rows: enough for a minimum of 8; 0.1 × 50 = 5 is not.
        check_trace_size(&config, &params, 200).unwrap();
        let few = check_trace_size(&config, &params, 50)
            .unwrap_err()
            .to_string();
        assert!(few.contains("minimum batch of 8"), "{few}");
        // The slots and the sampling table count against the trace budget: more than the
        // public batch of 16 would.
        let tight = Config {
            max_trace_cells: zkfed_air::statement::ProofShape::new(params.model, 30, 16, 200)
                .committed_cells(),
            ..config
        };
        let big = check_trace_size(&tight, &params, 200)
            .unwrap_err()
            .to_string();
        assert!(big.contains("max_trace_cells"), "{big}");
        // A run whose privacy does not validate, or whose rule needs each update, is refused.
        let mut median = params.clone();
        median.strategy = zkfed_aggregation::strategy::Strategy::Median;
        assert!(check_run(&tight, &median).is_err());
        let mut unbounded = params.clone();
        unbounded.privacy.as_mut().unwrap().noise_multiplier = f64::NAN;
        assert!(check_run(&tight, &unbounded).is_err());
        std::fs::remove_dir_all(dir).ok();
    }

    fn private_run_parameters(epsilon: f64) -> RunParameters {
        RunParameters {
            strategy: zkfed_aggregation::strategy::Strategy::FedAvg,
            privacy: Some(zkfed_protocol::Privacy {
                sampling: zkfed_air::sampling::SamplingRate::from_probability(0.1).unwrap(),
                noise_multiplier: 1.0,
                epsilon,
                delta: 1e-5,
            }),
            rounds: 1000,
            ..run_parameters()
        }
    }

    #[test]
    fn the_node_counts_its_own_sampled_attempts_and_stops_at_its_budget() {
        use zkfed_protocol::budget::{affordable_rounds, spent_epsilon};
        let params = private_run_parameters(4.5);
        let privacy = params.privacy.unwrap();
        let fits = |cap| affordable_rounds(&params, &privacy, cap, 1000).unwrap();
        let run_allows = fits(4.5);
        assert!(run_allows > 1 && run_allows < 1000, "{run_allows}");
        // The run's target: the last attempt it affords is proven, the next refused.
        assert_eq!(budget_refusal(&params, None, run_allows - 1), None);
        let refused = budget_refusal(&params, None, run_allows).unwrap();
        assert!(
            refused.contains(&format!("sampled in {run_allows} attempts")),
            "{refused}"
        );
        assert!(spent_epsilon(&params, &privacy, run_allows + 1).unwrap() > 4.5);
        // This node's own lower budget stops it earlier; a higher one does not raise the run's.
        let mine = fits(2.5);
        assert!(mine >= 1 && mine < run_allows, "{mine}");
        assert_eq!(budget_refusal(&params, Some(2.5), mine - 1), None);
        assert!(budget_refusal(&params, Some(2.5), mine).is_some());
        assert!(budget_refusal(&params, Some(60.0), run_allows).is_some());
        // An attempt past what δ can account for is refused too, never proven.
        assert!(budget_refusal(&params, None, u64::MAX).is_some());
        // A run without privacy has no budget here.
        assert_eq!(budget_refusal(&run_parameters(), Some(0.1), 10_000), None);
    }

    #[test]
    fn runs_outside_this_nodes_privacy_policy_are_refused_before_committing() {
        let dir = tempdir("policy");
        let strict = Config {
            private_only: true,
            max_epsilon: Some(4.0),
            ..config(&dir)
        };
        let public = check_run(&strict, &run_parameters())
            .unwrap_err()
            .to_string();
        assert!(public.contains("`private_only`"), "{public}");
        let generous = check_run(&strict, &private_run_parameters(8.0))
            .unwrap_err()
            .to_string();
        assert!(generous.contains("`max_epsilon` 4"), "{generous}");
        check_run(&strict, &private_run_parameters(4.0)).unwrap();
        // A budget below one sampled attempt's ε could never use the rows.
        let futile = check_run(&strict, &private_run_parameters(1e-3))
            .unwrap_err()
            .to_string();
        assert!(futile.contains("even once"), "{futile}");
        // Without the policy, a public run is taken part in as before.
        check_run(&config(&dir), &run_parameters()).unwrap();
        std::fs::remove_dir_all(dir).ok();
    }

    fn announcement(round: u64, attempt: u32, seed: u8) -> RoundAnnouncement {
        let params = run_parameters();
        RoundAnnouncement {
            round,
            attempt,
            model: zkfed_air::Model::zeros(params.model, params.schema.features.len()),
            params: params.params,
            seed: [seed; 32],
            opened_at_ms: 0,
        }
    }

    #[test]
    fn an_attempt_is_counted_before_it_is_proven_and_resumed_only_under_its_seed() {
        // The node counts an attempt and saves the count before proving, so a coordinator
        // that withholds its verdict, or a crash mid-proof, cannot get an uncounted update:
        // after a restart the same attempt is proven again only under the same seed (the
        // same sample), uncounted, and under another seed not at all.
        let dir = tempdir("write-ahead");
        let path = dir.join("progress.bin");
        let mut progress = Progress::default();
        let first = announcement(1, 1, 7);
        assert_eq!(progress.takes(&first), Take::New);
        progress.begin(&first);
        progress.save(&path).unwrap();
        // Killed here, before any verdict.
        let restarted = Progress::load(&path).unwrap();
        assert_eq!(restarted.proofs, 1);
        assert!(restarted.unfinished.is_some());
        assert_eq!(restarted.takes(&first), Take::Resume);
        assert_eq!(restarted.takes(&announcement(1, 1, 8)), Take::Skip);
        // The same seed with another model (or clip, or batch) is another statement.
        let mut remodelled = first.clone();
        remodelled.model.params[0] += 1;
        assert_eq!(restarted.takes(&remodelled), Take::Skip);
        assert_eq!(restarted.takes(&announcement(1, 2, 8)), Take::New);
        // Once the submission is answered, the attempt is never proven again.
        let mut finished = restarted.clone();
        finished.unfinished = None;
        assert_eq!(finished.takes(&first), Take::Skip);
        assert_eq!(finished.takes(&announcement(1, 0, 7)), Take::Skip);
        // A refused attempt is not counted, and skipped until a restart checks it again.
        let mut refused = finished.clone();
        refused.refuse(&announcement(1, 2, 9));
        assert_eq!((refused.proofs, refused.last), (1, (1, 2)));
        assert_eq!(refused.takes(&announcement(1, 2, 9)), Take::Skip);
        // A resumed attempt refused on its recheck is not resumed again.
        let mut resumed = restarted.clone();
        resumed.refuse(&first);
        assert_eq!(resumed.takes(&first), Take::Skip);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_private_attempt_under_a_seed_of_the_same_round_is_refused() {
        let private = private_run_parameters(4.5);
        let mut progress = Progress::default();
        progress.begin(&announcement(3, 1, 7));
        progress.unfinished = None;
        let again = announcement(3, 2, 7);
        let refused = reused_seed(&private, &progress, &again).unwrap();
        assert!(refused.contains("repeats the sampling seed"), "{refused}");
        // A seed the PRF reads alike (its first word p, read as 0) is refused after zeros.
        let mut zeros = Progress::default();
        zeros.begin(&announcement(3, 1, 0));
        let mut alias = announcement(3, 2, 0);
        alias.seed[..8].copy_from_slice(&0xffff_ffff_0000_0001u64.to_le_bytes());
        assert_ne!(alias.seed, [0; 32]);
        assert!(reused_seed(&private, &zeros, &alias).is_some());
        // Refused attempts keep the round's seeds; a new round starts afresh (the PRF
        // reads the round too), and public runs have no hidden sample to repeat.
        progress.refuse(&announcement(3, 2, 8));
        assert!(reused_seed(&private, &progress, &announcement(3, 3, 7)).is_some());
        assert_eq!(
            reused_seed(&private, &progress, &announcement(3, 3, 9)),
            None
        );
        assert_eq!(
            reused_seed(&private, &progress, &announcement(4, 1, 7)),
            None
        );
        assert_eq!(reused_seed(&run_parameters(), &progress, &again), None);
        progress.begin(&announcement(4, 1, 7));
        assert_eq!(progress.seeds, [[7; 32]]);
    }

    #[test]
    fn one_state_directory_serves_one_node_at_a_time() {
        let dir = tempdir("lock");
        let held = lock_state_dir(&dir).unwrap();
        let second = lock_state_dir(&dir).unwrap_err().to_string();
        assert!(second.contains("another participant"), "{second}");
        drop(held);
        lock_state_dir(&dir).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("lock"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A key another first start wrote after this configuration loaded its own.
        let config = Config {
            state_dir: dir.clone(),
            ..config(&dir)
        };
        let write_key = |key: &libp2p::identity::Keypair| {
            let bytes = key.to_protobuf_encoding().unwrap();
            zkfed_net::write_durably(&dir.join("node.key"), &bytes, true).unwrap();
        };
        write_key(&config.key);
        check_node_key(&config).unwrap();
        write_key(&libp2p::identity::Keypair::generate_ed25519());
        let replaced = check_node_key(&config).unwrap_err().to_string();
        assert!(replaced.contains("replaced this node's key"), "{replaced}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn progress_from_before_private_runs_keeps_its_count() {
        let dir = tempdir("progress-v1");
        let path = dir.join("progress.bin");
        #[derive(serde::Serialize)]
        struct V1 {
            last: (u64, u32),
            proofs: u64,
        }
        let v1 = V1 {
            last: (4, 2),
            proofs: 5,
        };
        std::fs::write(&path, postcard::to_allocvec(&v1).unwrap()).unwrap();
        let loaded = Progress::load(&path).unwrap();
        assert_eq!((loaded.last, loaded.proofs), ((4, 2), 5));
        assert!(loaded.unfinished.is_none() && loaded.seeds.is_empty());
        let mut now = loaded.clone();
        now.begin(&announcement(5, 1, 3));
        now.save(&path).unwrap();
        assert_eq!(Progress::load(&path).unwrap(), now);
        std::fs::write(&path, [0xff; 3]).unwrap();
        let corrupt = Progress::load(&path).unwrap_err().to_string();
        assert!(corrupt.contains("corrupt"), "{corrupt}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn commitment_is_reused_and_an_edited_csv_is_caught() {
        let dir = tempdir("commit");
        let csv = dir.join("rows.csv");
        std::fs::write(&csv, crate::bundled_shard_csv(0, 5)).unwrap();
        let params = run_parameters();
        let first = prepare(&config(&dir), &params).unwrap().commitment();
        let again = prepare(&config(&dir), &params).unwrap().commitment();
        assert_eq!(first, again, "salts are reused, so the root is stable");
        let edited = crate::bundled_shard_csv(0, 5).replacen(",1\n", ",0\n", 1);
        std::fs::write(&csv, edited).unwrap();
        let err = prepare(&config(&dir), &params).unwrap_err();
        assert!(
            format!("{err:#}").contains("changed since this node committed"),
            "{err:#}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The bundled shard with one cell of data row `row` (from 1) set to `value`.
    fn csv_with(row: usize, column: usize, value: &str) -> String {
        let text = crate::bundled_shard_csv(0, 5);
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut cells: Vec<&str> = lines[row].split(',').collect();
        cells[column] = value;
        lines[row] = cells.join(",");
        lines.join("\n") + "\n"
    }

    #[test]
    fn out_of_range_rows_stop_the_node_unless_it_is_told_to_leave_them_out() {
        let dir = tempdir("range");
        std::fs::write(dir.join("rows.csv"), csv_with(7, 2, "987654.321")).unwrap();
        let params = run_parameters();
        let column = &params.schema.features[2];
        let err = format!("{:#}", prepare(&config(&dir), &params).unwrap_err());
        for part in [
            "1 data row(s) have standardized values outside ±32",
            &format!("data row 7 (`{column}`)"),
            "Fix or remove these rows",
            "--skip-out-of-range",
            "skip_out_of_range = true",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
        assert!(!err.contains("987654"), "{err}");
        assert!(!config(&dir).run_dir(&[1; 32]).join(DATASET_FILE).exists());

        let skipping = Config {
            skip_out_of_range: true,
            ..config(&dir)
        };
        let rows = crate::bundled_shard_csv(0, 5).lines().count() - 1;
        let committed = prepare(&skipping, &params).unwrap().commitment();
        assert_eq!(committed.rows, rows as u64 - 1, "the row is left out");
        let again = prepare(&skipping, &params).unwrap().commitment();
        assert_eq!(again, committed);
        // A start without the flag refuses again rather than commit to other rows.
        assert!(prepare(&config(&dir), &params).is_err());
        // The out-of-range row fixed: the rows differ from those committed, and it says why.
        std::fs::write(dir.join("rows.csv"), crate::bundled_shard_csv(0, 5)).unwrap();
        let err = format!("{:#}", prepare(&skipping, &params).unwrap_err());
        assert!(err.contains("left out 1 out-of-range rows"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn one_state_directory_serves_two_federations() {
        let dir = tempdir("two-runs");
        std::fs::write(dir.join("rows.csv"), crate::bundled_shard_csv(0, 5)).unwrap();
        let first = run_parameters();
        let mut second = run_parameters();
        second.federation_id = [2; 32];
        second.params.batch_size = 32;
        let naming = |params: &RunParameters| Config {
            federation_id: Some(params.federation_id),
            ..config(&dir)
        };
        let root_1 = prepare(&config(&dir), &first).unwrap().commitment();
        // The first federation is pinned: another is refused unless the node names it.
        let err = prepare(&config(&dir), &second).unwrap_err().to_string();
        assert!(err.contains("set `federation_id`"), "{err}");
        let err = prepare(&naming(&first), &second).unwrap_err().to_string();
        assert!(err.contains("takes part only in"), "{err}");
        let root_2 = prepare(&naming(&second), &second).unwrap().commitment();
        assert_ne!(root_1.root, root_2.root, "each run has its own salts");
        for (params, root) in [(&first, root_1), (&second, root_2)] {
            let config = naming(params);
            let run_dir = config.run_dir(&params.federation_id);
            assert_eq!(run_dir.parent().unwrap(), config.state_dir);
            assert!(run_dir.join(DATASET_FILE).exists() && run_dir.join("run.bin").exists());
            assert_eq!(prepare(&config, params).unwrap().commitment(), root);
        }
        let config = config(&dir);
        assert!(!config.state_dir.join("salts.bin").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_coordinators_text_is_escaped_and_cut_before_it_is_shown() {
        let hostile = format!("\u{1b}[2J{}", "x".repeat(1 << 20));
        let out = shown(&hostile);
        assert!(!out.contains('\u{1b}'), "control characters are escaped");
        assert!(out.chars().count() < SHOWN_CHARS * 2 + 10, "cut");
        assert_eq!(shown(&"refused: busy"), "refused: busy");
    }

    /// A state directory from before `federation.bin` (an earlier release's `run.bin` at the
    /// top, or a run directory whose pin was lost) is pinned to the run it already took
    /// part in: a coordinator announcing another federation gets no fresh start.
    #[test]
    fn an_upgraded_or_unpinned_state_directory_keeps_its_federation() {
        let dir = tempdir("upgrade-pin");
        std::fs::write(dir.join("rows.csv"), crate::bundled_shard_csv(0, 5)).unwrap();
        let first = run_parameters();
        let mut other = run_parameters();
        other.federation_id = [3; 32];
        let top = config(&dir).state_dir;
        std::fs::create_dir_all(&top).unwrap();
        std::fs::write(top.join("run.bin"), postcard::to_allocvec(&first).unwrap()).unwrap();
        let err = prepare(&config(&dir), &other).unwrap_err().to_string();
        assert!(err.contains("set `federation_id`"), "{err}");
        assert!(!config(&dir).run_dir(&other.federation_id).exists());
        prepare(&config(&dir), &first).expect("the run it took part in");
        // The pin file lost: the one run directory still pins the federation.
        std::fs::remove_file(top.join("federation.bin")).unwrap();
        let err = prepare(&config(&dir), &other).unwrap_err().to_string();
        assert!(err.contains("set `federation_id`"), "{err}");
        prepare(&config(&dir), &first).expect("the run it took part in");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_run_this_node_could_not_prove_or_should_not_trust_is_refused_before_committing() {
        let dir = tempdir("hostile-run");
        std::fs::write(dir.join("rows.csv"), crate::bundled_shard_csv(0, 5)).unwrap();
        let mut twice = run_parameters();
        twice.schema.features[1] = twice.schema.features[0].clone();
        let err = format!("{:#}", prepare(&config(&dir), &twice).unwrap_err());
        assert!(err.contains("twice"), "{err}");
        let mut nan = run_parameters();
        nan.standardization.mean[2] = f64::NAN;
        let err = format!("{:#}", prepare(&config(&dir), &nan).unwrap_err());
        assert!(err.contains("not a finite number"), "{err}");
        let mut classes = run_parameters();
        classes.schema.classes = 10;
        let err = format!("{:#}", prepare(&config(&dir), &classes).unwrap_err());
        assert!(
            err.contains("predicts 2 classes, the label has 10"),
            "{err}"
        );
        let mut mlp = run_parameters();
        mlp.model = zkfed_air::spec::ModelSpec::Mlp {
            hidden: 8,
            outputs: 1,
        };
        let err = format!("{:#}", prepare(&config(&dir), &mlp).unwrap_err());
        assert!(err.contains("not proven yet"), "{err}");
        let small = Config {
            max_trace_cells: 1 << 10,
            ..config(&dir)
        };
        let err = prepare(&small, &run_parameters()).unwrap_err().to_string();
        assert!(err.contains("`max_trace_cells`"), "{err}");
        // Nothing is written for a refused run: no pin, no salts, no commitment.
        let state = &config(&dir).state_dir;
        assert!(
            !state.join("federation.bin").exists(),
            "no federation pinned"
        );
        assert!(!config(&dir).run_dir(&[1; 32]).exists(), "no run directory");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// An earlier release wrote `salts.bin`, then `commitment.bin`, at the top of the state
    /// directory: a crash between the two left salts without a commitment, and the node
    /// could not start. It now adopts the files and recomputes the same root.
    #[test]
    fn salts_left_without_their_commitment_give_the_same_root() {
        let dir = tempdir("legacy");
        std::fs::write(dir.join("rows.csv"), crate::bundled_shard_csv(0, 5)).unwrap();
        let params = run_parameters();
        let config = config(&dir);
        let Rows {
            features, labels, ..
        } = load_rows(&config, &params).unwrap();
        let mut rng = rand::make_rng::<rand::rngs::StdRng>();
        let crashed = CommittedDataset::commit(features, labels, &mut rng).unwrap();
        let top = &config.state_dir;
        std::fs::write(top.join("run.bin"), postcard::to_allocvec(&params).unwrap()).unwrap();
        std::fs::write(top.join("salts.bin"), salts_to_bytes(crashed.salts())).unwrap();
        assert_eq!(
            prepare(&config, &params).unwrap().commitment(),
            crashed.commitment()
        );
        let run_dir = config.run_dir(&params.federation_id);
        assert!(run_dir.join(DATASET_FILE).exists());
        for name in LEGACY_FILES {
            assert!(!top.join(name).exists(), "{name} moved");
        }
        assert!(!run_dir.join("salts.bin").exists());
        assert_eq!(
            prepare(&config, &params).unwrap().commitment(),
            crashed.commitment()
        );

        // Another run's files at the top are left alone.
        let mut other = params.clone();
        other.federation_id = [3; 32];
        std::fs::write(top.join("run.bin"), postcard::to_allocvec(&other).unwrap()).unwrap();
        std::fs::write(top.join("salts.bin"), b"another run's").unwrap();
        assert_eq!(
            prepare(&config, &params).unwrap().commitment(),
            crashed.commitment()
        );
        assert!(top.join("salts.bin").exists() && top.join("run.bin").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A crash while writing the salts and commitment leaves at most a truncated temp file
    /// beside them (or instead of them): the node starts, and keeps the root it enrolled.
    #[test]
    fn a_truncated_temp_file_does_not_block_restart() {
        let dir = tempdir("torn");
        std::fs::write(dir.join("rows.csv"), crate::bundled_shard_csv(0, 5)).unwrap();
        let params = run_parameters();
        let config = config(&dir);
        let run_dir = config.run_dir(&params.federation_id);
        let tmp = run_dir.join(DATASET_FILE).with_extension("tmp");
        // Crashed before the first rename: only a torn temp file, nothing enrolled yet.
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::write(&tmp, b"\x01\x02").unwrap();
        let root = prepare(&config, &params).unwrap().commitment();
        // Crashed while rewriting: the stored file is whole, the temp file torn.
        let stored = std::fs::read(run_dir.join(DATASET_FILE)).unwrap();
        std::fs::write(&tmp, &stored[..stored.len() / 2]).unwrap();
        assert_eq!(prepare(&config, &params).unwrap().commitment(), root);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Every file holding salts, a commitment, run parameters, progress or a model is
    /// readable by its owner only.
    #[cfg(unix)]
    #[test]
    fn state_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir("modes");
        std::fs::write(dir.join("rows.csv"), crate::bundled_shard_csv(0, 5)).unwrap();
        let params = run_parameters();
        let config = config(&dir);
        prepare(&config, &params).unwrap();
        let run_dir = config.run_dir(&params.federation_id);
        let progress = Progress {
            last: (1, 1),
            proofs: 1,
            ..Progress::default()
        };
        progress.save(&run_dir.join("progress.bin")).unwrap();
        let params = run_parameters();
        let model = Model::zeros(params.model, 30);
        write_final_model(&run_dir, &params, &model, 1).unwrap();
        for name in ["run.bin", DATASET_FILE, "progress.bin", FINAL_MODEL] {
            let mode = std::fs::metadata(run_dir.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
        }
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
        changed.standardization.mean.pop();
        changed.standardization.std.pop();
        let err = pin_run(&config(&dir), &changed).unwrap_err();
        assert!(format!("{err:#}").contains("enrolled under"), "{err:#}");
        let mut faster = params.clone();
        faster.learning_rate *= 2;
        assert!(pin_run(&config(&dir), &faster).is_err());
        // ... or that switches to another aggregation rule.
        let mut switched = params.clone();
        switched.strategy = zkfed_aggregation::strategy::Strategy::Median;
        assert!(pin_run(&config(&dir), &switched).is_err());
        // A run whose batch is below the node's minimum is refused before anything is pinned.
        let fresh = tempdir("pin-small");
        let mut small = params;
        small.params.batch_size = 4;
        let err = prepare(&config(&fresh), &small).unwrap_err();
        assert!(
            format!("{err:#}").contains("below this node's minimum"),
            "{err:#}"
        );
        // So is a strategy outside its ranges (decoded from the coordinator's answer) or one
        // whose rounds could leave the model's range.
        let mut unbounded = small.clone();
        unbounded.params.batch_size = 8;
        unbounded.strategy = zkfed_aggregation::strategy::Strategy::FedAvgM { beta: 65535 };
        let err = format!("{:#}", prepare(&config(&fresh), &unbounded).unwrap_err());
        assert!(err.contains("by up to 65536.00 in one round"), "{err}");
        unbounded.strategy = zkfed_aggregation::strategy::Strategy::FedAvgM { beta: -1 };
        let err = format!("{:#}", prepare(&config(&fresh), &unbounded).unwrap_err());
        assert!(err.contains("the run's strategy: `beta`"), "{err}");
        // A negative learning rate would make `lr·C` pass any bound.
        unbounded.strategy = zkfed_aggregation::strategy::Strategy::Median;
        unbounded.learning_rate = -100 * zkfed_air::fixed::ONE;
        let err = format!("{:#}", prepare(&config(&fresh), &unbounded).unwrap_err());
        assert!(err.contains("by up to inf"), "{err}");
        assert!(!config(&fresh).run_dir(&[1; 32]).join("run.bin").exists());
        assert!(!config(&fresh).state_dir.join("federation.bin").exists());
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(fresh).unwrap();
    }

    #[test]
    fn rounds_off_the_pinned_parameters_or_past_the_attempt_limit_are_refused() {
        let params = run_parameters();
        let round = RoundAnnouncement {
            round: 1,
            attempt: 1,
            model: zkfed_air::Model::zeros(params.model, params.schema.features.len()),
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
        let mut wild = round.clone();
        *wild.model.params.last_mut().unwrap() = zkfed_air::fixed::PARAM_BOUND;
        assert!(
            refusal(&params, &wild, fresh)
                .unwrap()
                .contains("cannot be proven")
        );
        // Another spec or another width: the round is skipped, not the run ended.
        let mut other = round.clone();
        other.model = Model::zeros(zkfed_air::spec::ModelSpec::Softmax { classes: 2 }, 30);
        let why = refusal(&params, &other, fresh).unwrap();
        assert!(
            why.contains("softmax (2 classes) over 30 features"),
            "{why}"
        );
        let mut narrow = round;
        narrow.model = Model::zeros(params.model, 29);
        let why = refusal(&params, &narrow, fresh).unwrap();
        assert!(
            why.contains("over 29 features; the run's is logistic over 30"),
            "{why}"
        );
    }

    #[test]
    fn a_final_model_that_does_not_fit_the_run_is_not_written() {
        let dir = tempdir("final-misfit");
        let params = run_parameters();
        let huge = Model {
            spec: params.model,
            num_features: usize::MAX,
            params: vec![0; 31],
        };
        let err = write_final_model(&dir, &params, &huge, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not written"), "{err}");
        let other = Model::zeros(zkfed_air::spec::ModelSpec::Softmax { classes: 2 }, 30);
        assert!(write_final_model(&dir, &params, &other, 1).is_err());
        assert!(!dir.join(FINAL_MODEL).exists());
        write_final_model(&dir, &params, &Model::zeros(params.model, 30), 1).unwrap();
        assert!(dir.join(FINAL_MODEL).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
