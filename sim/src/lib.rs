//! The simulation harness: a whole federation on one machine over real libp2p.
//!
//! `run` starts a coordinator and the participants as tasks of one process, each its own
//! libp2p swarm on 127.0.0.1, using the same coordinator and participant libraries as the
//! binaries (no shortcut around the network or the verifier). Rows are split IID or non-IID
//! across hospitals; adversarial participants mount the over-the-wire cheats. Afterwards the
//! per-round models and verdicts are read back from the coordinator's own signed log, and a
//! report compares test accuracy with centralized training of the same fixed-point model.

pub mod adversary;
pub mod flood;
pub mod partition;
pub mod processes;
pub mod report;
pub mod synthetic;
pub mod trusting;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use libp2p::PeerId;
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use tokio::sync::mpsc;
use zkfed_aggregation::fedavg_step;
use zkfed_air::data::{RawDataset, Standardization, breast_cancer};
use zkfed_air::fixed::{ONE, quantize};
use zkfed_air::{Model, clipped_gradient_sum};
use zkfed_coordinator::event_loop::CoordinatorTelemetry;
use zkfed_coordinator::event_loop::{StarkVerifier, SubmissionVerifier};
use zkfed_coordinator::events::AuditEvent;
use zkfed_participant::participation::{ParticipantTelemetry, Prover, StarkProver};
use zkfed_protocol::Rejection;

use crate::adversary::{Adversary, parse_adversary};
use crate::flood::FloodTally;
use crate::partition::{Partition, split};
use crate::processes::{Binaries, EventFollower, NodeProcess};
use crate::report::{AdversarialSummary, PeakMemory, Report, RoundRow, percentile};

/// Command-line options of `zkfed-sim`.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "Simulate a zkfed federation over real libp2p on 127.0.0.1"
)]
pub struct Options {
    /// Honest hospitals.
    #[arg(long, default_value_t = 4)]
    pub participants: usize,
    /// Training rounds.
    #[arg(long, default_value_t = 20)]
    pub rounds: u64,
    /// `iid` or `dirichlet:ALPHA` (label skew; smaller ALPHA is more skewed).
    #[arg(long, default_value = "dirichlet:0.5")]
    pub partition: Partition,
    /// Adversaries: `KIND[:COUNT]`, KIND `cycle` (every tampering attack in turn), an attack
    /// name, `stranger` (not on the allow-list) or `flood` (many submissions at once);
    /// repeatable. `none` for none.
    #[arg(long, default_value = "cycle:1")]
    pub adversary: Vec<String>,
    /// Examples per hospital per round (lowered to the smallest shard if needed).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Per-example L2 clip norm C.
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Learning rate.
    #[arg(long, default_value_t = 1.0)]
    pub learning_rate: f64,
    /// A CSV to use instead of the bundled breast-cancer data (needs --label).
    #[arg(long, requires = "label")]
    pub dataset: Option<PathBuf>,
    /// The 0/1 label column of --dataset; every other column is a feature.
    #[arg(long)]
    pub label: Option<String>,
    /// Generated data instead: `ROWSxFEATURES` (Gaussian features, logistic labels).
    #[arg(long, conflicts_with = "dataset", value_parser = synthetic::parse_shape)]
    pub synthetic: Option<(usize, usize)>,
    /// Seed for the split, the test hold-out and the centralized baseline.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the report, the node state directories and the shards go.
    #[arg(long, default_value = "sim-out")]
    pub out: PathBuf,
    /// Run only the trusting baseline: no proving, no verifying (for the overhead figure).
    #[arg(long)]
    pub no_proofs: bool,
    /// Run the coordinator and the honest hospitals as separate OS processes (the
    /// `zkfed-coordinator` and `zkfed-participant` binaries) instead of tasks. Adversaries
    /// and the no-proofs baseline stay tasks: the shipped binaries cannot cheat or skip proofs.
    #[arg(long, conflicts_with = "no_proofs")]
    pub processes: bool,
    /// Hide the progress bar (for logs and tests).
    #[arg(long)]
    pub quiet: bool,
}

/// One node of the simulation.
struct NodeSpec {
    state: PathBuf,
    csv: PathBuf,
    adversary: Option<Adversary>,
    rows: Vec<usize>,
}

/// Runs the simulation, printing progress and the table to `out`; returns the report.
pub fn run(options: &Options, out: &mut impl Write) -> anyhow::Result<Report> {
    let started = Instant::now();
    ensure!(
        options.participants >= 1,
        "need at least one honest participant"
    );
    ensure!(options.rounds >= 1, "need at least one round");
    let adversaries = adversaries(&options.adversary)?;
    let binaries = options.processes.then(Binaries::find).transpose()?;
    let raw = load_data(options)?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let (train, test) = hold_out(raw.features.len(), &mut rng);
    let stats = standardization(&raw, &train)?;
    let quantized = stats
        .apply(&raw)
        .context("the data does not fit the fixed-point range")?;

    let nodes = options.participants + adversaries.len();
    let shards = split(&train, &raw.labels, nodes, options.partition, &mut rng);
    let smallest = shards.iter().map(Vec::len).min().unwrap_or(0);
    ensure!(
        smallest >= 1,
        "a participant received no rows: use fewer participants or a milder partition"
    );
    let batch = options.batch.min(smallest);
    if batch < options.batch {
        writeln!(
            out,
            "batch lowered to {batch}: the smallest shard has {smallest} rows"
        )?;
    }

    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let mut federations = Vec::new();
    for (dir, proofs) in [("nodes", true), ("nodes-no-proofs", false)] {
        if proofs && options.no_proofs {
            continue;
        }
        let work = options.out.join(dir);
        let _ = std::fs::remove_dir_all(&work);
        let specs = node_specs(&work, shards.clone(), options.participants, &adversaries);
        for spec in &specs {
            write_shard(&raw, &spec.rows, &spec.csv)?;
        }
        federations.push((work, proofs, specs));
    }
    let specs = &federations[0].2;
    writeln!(
        out,
        "{} hospitals ({} honest, {} adversarial), {} training rows ({:?}), {} test rows, batch {batch}, {} rounds",
        specs.len(),
        options.participants,
        adversaries.len(),
        train.len(),
        options.partition,
        test.len(),
        options.rounds
    )?;

    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    let mut runs = Vec::new();
    for (work, proofs, specs) in &federations {
        let setting = Setting {
            work,
            proofs: *proofs,
            batch,
            binaries: binaries.as_ref().filter(|_| *proofs),
        };
        runs.push(runtime.block_on(federate(options, specs, &raw, &stats, setting))?);
    }
    let observed = &runs[0];
    let baseline = runs.last().filter(|_| runs.len() == 2);

    let evaluate = |m: &Model| evaluate(m, &quantized, &raw.labels, &test);
    let honest_rows: Vec<usize> = specs
        .iter()
        .filter(|s| s.adversary.is_none())
        .flat_map(|s| s.rows.clone())
        .collect();
    let central = centralized(
        options,
        &quantized,
        &raw.labels,
        &honest_rows,
        batch * options.participants,
    )?;
    let mut rounds = rows_of(observed, &central, &evaluate);
    if let Some(baseline) = baseline {
        let base = rows_of(baseline, &central, &evaluate);
        for (row, b) in rounds.iter_mut().zip(base) {
            row.baseline_accuracy = Some(b.accuracy);
            row.baseline_wall_seconds = Some(b.wall_seconds);
        }
    }
    let adversarial = adversarial_summary(observed, specs);
    let mean = |f: &dyn Fn(&RoundRow) -> Option<f64>| {
        let v: Vec<f64> = rounds.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let mean_round_seconds = mean(&|r| Some(r.wall_seconds)).unwrap_or(0.0);
    let overhead_ratio =
        mean(&|r| r.baseline_wall_seconds).map(|without| mean_round_seconds / without);
    let report = Report {
        proofs: !options.no_proofs,
        overhead_ratio,
        options: format!("{options:?}"),
        final_accuracy: rounds.last().map_or(0.0, |r| r.accuracy),
        final_centralized_accuracy: rounds.last().map_or(0.0, |r| r.centralized_accuracy),
        rounds,
        adversarial,
        wall_seconds: started.elapsed().as_secs_f64(),
        mean_round_seconds,
        peak_memory: peak_memory(observed),
    };
    report::write(&report, &options.out)?;
    writeln!(out)?;
    report::print_table(&report.rounds, out)?;
    summarize(&report, options, out)?;
    Ok(report)
}

/// The coordinator process's peak memory with `--processes`, else the simulation's own.
fn peak_memory(observed: &Observed) -> Option<PeakMemory> {
    match observed.coordinator_peak {
        Some(bytes) => Some(PeakMemory {
            bytes,
            of: "the coordinator process".into(),
        }),
        None => processes::own_peak_memory().map(|bytes| PeakMemory {
            bytes,
            of: "the simulation process (coordinator and every participant)".into(),
        }),
    }
}

fn adversaries(specs: &[String]) -> anyhow::Result<Vec<Adversary>> {
    let mut adversaries = Vec::new();
    for spec in specs {
        if spec == "none" {
            continue;
        }
        let (adversary, count) = parse_adversary(spec).map_err(anyhow::Error::msg)?;
        adversaries.extend(std::iter::repeat_n(adversary, count));
    }
    Ok(adversaries)
}

fn load_data(options: &Options) -> anyhow::Result<RawDataset> {
    if let Some((rows, features)) = options.synthetic {
        return Ok(synthetic::generate(rows, features, options.seed));
    }
    let (Some(path), Some(label)) = (&options.dataset, &options.label) else {
        return Ok(breast_cancer());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let header = text.lines().next().context("the CSV is empty")?;
    let features: Vec<String> = header
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| c != label)
        .collect();
    ensure!(
        header.split(',').any(|c| c.trim() == label),
        "the CSV has no column `{label}`"
    );
    let schema = zkfed_air::data::Schema {
        features,
        label: label.clone(),
    };
    zkfed_air::data::read_csv(text.as_bytes(), &schema)
        .with_context(|| format!("reading {}", path.display()))
}

/// A seeded 80/20 split into training and test row indices.
fn hold_out(n: usize, rng: &mut StdRng) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let test = order.split_off(n - n / 5);
    (order, test)
}

/// Standardization statistics of the training rows (public run parameters).
fn standardization(raw: &RawDataset, train: &[usize]) -> anyhow::Result<Standardization> {
    let subset = RawDataset {
        schema: raw.schema.clone(),
        features: train.iter().map(|&i| raw.features[i].clone()).collect(),
        labels: train.iter().map(|&i| raw.labels[i]).collect(),
    };
    Standardization::fit(&subset).context("standardizing the training rows")
}

fn node_specs(
    work: &Path,
    shards: Vec<Vec<usize>>,
    honest: usize,
    adversaries: &[Adversary],
) -> Vec<NodeSpec> {
    shards
        .into_iter()
        .enumerate()
        .map(|(k, rows)| {
            let adversary = k.checked_sub(honest).map(|a| adversaries[a]);
            let name = match adversary {
                None => format!("hospital-{k}"),
                Some(a) => format!("{}-{}", a.kind(), k - honest),
            };
            NodeSpec {
                state: work.join(&name),
                csv: work.join(format!("{name}.csv")),
                adversary,
                rows,
            }
        })
        .collect()
}

fn write_shard(raw: &RawDataset, rows: &[usize], path: &Path) -> anyhow::Result<()> {
    let mut text = raw.schema.features.join(",");
    text.push(',');
    text.push_str(&raw.schema.label);
    text.push('\n');
    for &i in rows {
        for v in &raw.features[i] {
            text.push_str(&format!("{v},"));
        }
        text.push_str(&format!("{}\n", raw.labels[i]));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// What the federation reported while it ran, and its log afterwards.
struct Observed {
    log: Vec<AuditEvent>,
    proofs: Vec<(PeerId, ParticipantTelemetry)>,
    coordinator: Vec<CoordinatorTelemetry>,
    peers: BTreeMap<PeerId, usize>,
    floods: Vec<FloodTally>,
    /// The coordinator process's peak resident memory (with `--processes`).
    coordinator_peak: Option<u64>,
}

/// Where a federation runs and whether it proves.
struct Setting<'a> {
    work: &'a Path,
    proofs: bool,
    batch: usize,
    /// The node binaries, to run the coordinator and honest participants as processes.
    binaries: Option<&'a Binaries>,
}

/// The coordinator, running as a task of this process or as its own process.
enum CoordinatorNode {
    Task(tokio::task::JoinHandle<anyhow::Result<()>>),
    Process(Box<NodeProcess>, EventFollower),
}

impl CoordinatorNode {
    /// Completes when the coordinator has finished the run (cancel-safe).
    async fn finished(&mut self) -> anyhow::Result<()> {
        match self {
            CoordinatorNode::Task(task) => task.await.context("the coordinator task failed")?,
            CoordinatorNode::Process(process, _) => process.finished().await,
        }
    }
}

/// An honest or tampering participant, as a task or (honest only) its own process.
enum ParticipantNode {
    Task(ParticipantTask),
    Process(PeerId, Box<NodeProcess>, EventFollower),
}

type ParticipantTask =
    tokio::task::JoinHandle<anyhow::Result<Option<zkfed_participant::participation::Outcome>>>;

/// The nodes started around the coordinator.
#[derive(Default)]
struct Participants {
    running: Vec<ParticipantNode>,
    /// Peers off the allow-list, with what stops them once the run is over.
    strangers: Vec<(tokio::sync::oneshot::Sender<()>, ParticipantTask)>,
    floods: Vec<tokio::task::JoinHandle<anyhow::Result<FloodTally>>>,
}

impl Participants {
    /// New events of the participant processes (tasks report through their channel).
    fn follow(&mut self) -> anyhow::Result<Vec<ParticipantTelemetry>> {
        let mut events = Vec::new();
        for node in &mut self.running {
            if let ParticipantNode::Process(_, process, follower) = node {
                events.extend(follower.poll::<ParticipantTelemetry>(&process.events)?);
            }
        }
        Ok(events)
    }
}

/// The progress bar: rounds closed, and in the open round the proofs made and judged.
struct RoundProgress {
    bar: ProgressBar,
    provers: usize,
    open: u64,
    proved: usize,
    judged: usize,
}

impl RoundProgress {
    fn new(options: &Options, provers: usize) -> Self {
        let bar = if options.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(options.rounds)
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} round {pos}/{len} [{bar:30}] {elapsed} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        let progress = RoundProgress {
            bar,
            provers,
            open: 1,
            proved: 0,
            judged: 0,
        };
        progress.show();
        progress
    }

    fn proved(&mut self, event: &ParticipantTelemetry) {
        if matches!(event, ParticipantTelemetry::Proved { round, .. } if *round == self.open) {
            self.proved += 1;
            self.show();
        }
    }

    fn observe(&mut self, event: &CoordinatorTelemetry) {
        match event {
            CoordinatorTelemetry::Judged { round, .. } if *round == self.open => self.judged += 1,
            CoordinatorTelemetry::Closed { round, .. } => {
                self.bar.set_position(*round);
                self.open = round + 1;
                self.proved = 0;
                self.judged = 0;
            }
            _ => return,
        }
        self.show();
    }

    fn show(&self) {
        self.bar.set_message(format!(
            "round {}: {}/{} proved, {} judged",
            self.open, self.proved, self.provers, self.judged
        ));
    }
}

/// Where the coordinator listens and who it is.
struct Endpoint {
    port: u16,
    peer: PeerId,
    store: PathBuf,
}

impl Endpoint {
    fn listen(&self) -> libp2p::Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{}", self.port)
            .parse()
            .expect("a valid multiaddr")
    }

    fn address(&self) -> String {
        format!("{}/p2p/{}", self.listen(), self.peer)
    }
}

async fn federate(
    options: &Options,
    specs: &[NodeSpec],
    raw: &RawDataset,
    stats: &Standardization,
    setting: Setting<'_>,
) -> anyhow::Result<Observed> {
    let ids = specs
        .iter()
        .map(|spec| Ok(spec_key(spec)?.public().to_peer_id()))
        .collect::<anyhow::Result<Vec<PeerId>>>()?;
    let peers: BTreeMap<PeerId, usize> = ids.iter().enumerate().map(|(k, &p)| (p, k)).collect();
    let allow = specs
        .iter()
        .zip(&ids)
        .filter(|(spec, _)| spec.adversary != Some(Adversary::Stranger))
        .map(|(_, peer)| peer.to_string())
        .collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let raw_config = coordinator_config(options, raw, stats, &setting, allow, port);
    let (coordinator_tx, mut coordinator_rx) = mpsc::unbounded_channel();
    let (mut coordinator, endpoint) =
        start_coordinator(raw_config, port, &setting, coordinator_tx)?;
    wait_until_listening(port).await?;
    let (participant_tx, mut participant_rx) = mpsc::unbounded_channel();
    let mut nodes = start_participants(specs, &ids, &setting, &endpoint, participant_tx)?;

    let provers = specs
        .iter()
        .filter(|s| !matches!(s.adversary, Some(Adversary::Stranger | Adversary::Flood)))
        .count();
    let mut progress = RoundProgress::new(options, provers);
    let mut coordinator_events = Vec::new();
    let mut proofs = Vec::new();
    let mut coordinator_peak = None;
    let deadline = tokio::time::sleep(Duration::from_secs(180 + 150 * options.rounds));
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let outcome = loop {
        let followed = tokio::select! {
            done = coordinator.finished() => break done,
            Some(event) = coordinator_rx.recv() => vec![event],
            Some(event) = participant_rx.recv() => {
                progress.proved(&event.1);
                proofs.push(event);
                continue;
            }
            _ = tick.tick() => {
                for event in nodes.follow()? {
                    progress.proved(&event);
                }
                match &mut coordinator {
                    CoordinatorNode::Process(process, follower) => {
                        coordinator_peak = process.peak_memory().max(coordinator_peak);
                        follower.poll(&process.events)?
                    }
                    CoordinatorNode::Task(_) => continue,
                }
            }
            () = &mut deadline => bail!("the simulation did not finish in time"),
        };
        for event in followed {
            progress.observe(&event);
            coordinator_events.push(event);
        }
    };
    progress.bar.finish_and_clear();
    outcome?;
    match &coordinator {
        // The file is the record; what was followed was for the progress bar.
        CoordinatorNode::Process(process, _) => coordinator_events = process.read_events()?,
        CoordinatorNode::Task(_) => {
            while let Ok(event) = coordinator_rx.try_recv() {
                coordinator_events.push(event);
            }
        }
    }
    let floods = stop_participants(nodes, &mut proofs).await?;
    while let Ok(event) = participant_rx.try_recv() {
        proofs.push(event);
    }
    let log = zkfed_coordinator::log::StoredLog::open(&endpoint.store)?
        .records()?
        .into_iter()
        .map(|r| r.event)
        .collect();
    Ok(Observed {
        log,
        proofs,
        coordinator: coordinator_events,
        peers,
        floods,
        coordinator_peak,
    })
}

fn spec_key(spec: &NodeSpec) -> anyhow::Result<libp2p::identity::Keypair> {
    let path = spec.state.join("node.key");
    zkfed_net::load_or_create_key(&path).with_context(|| format!("loading {}", path.display()))
}

fn coordinator_config(
    options: &Options,
    raw: &RawDataset,
    stats: &Standardization,
    setting: &Setting<'_>,
    allow: Vec<String>,
    port: u16,
) -> zkfed_coordinator::config::RawConfig {
    let mut federation_id = [0u8; 32];
    rand::make_rng::<StdRng>().fill_bytes(&mut federation_id);
    zkfed_coordinator::config::RawConfig {
        listen: vec![format!("/ip4/127.0.0.1/tcp/{port}")],
        allow,
        federation_id: zkfed_coordinator::config::hex32(&federation_id),
        rounds: options.rounds,
        quorum: options.participants,
        round_deadline_secs: 120,
        clip_norm: options.clip,
        batch_size: setting.batch,
        learning_rate: options.learning_rate,
        state_dir: setting.work.join("coordinator"),
        linger_secs: 2,
        schema: raw.schema.clone(),
        standardization: stats.clone(),
    }
}

fn start_coordinator(
    raw_config: zkfed_coordinator::config::RawConfig,
    port: u16,
    setting: &Setting<'_>,
    events: mpsc::UnboundedSender<CoordinatorTelemetry>,
) -> anyhow::Result<(CoordinatorNode, Endpoint)> {
    let file = setting.work.join("coordinator.toml");
    std::fs::write(&file, toml::to_string_pretty(&raw_config)?)
        .with_context(|| format!("writing {}", file.display()))?;
    let config = raw_config.resolve()?;
    let endpoint = Endpoint {
        port,
        peer: config.key.public().to_peer_id(),
        store: config.store.clone(),
    };
    let node = match setting.binaries {
        Some(binaries) => {
            ensure!(
                setting.proofs,
                "the coordinator binary always verifies proofs"
            );
            let args = ["--config", path_str(&file)?];
            let process =
                NodeProcess::start(&binaries.coordinator, &args, setting.work, "coordinator")?;
            CoordinatorNode::Process(Box::new(process), EventFollower::default())
        }
        None => {
            let verifier: Arc<dyn SubmissionVerifier> = if setting.proofs {
                Arc::new(StarkVerifier)
            } else {
                Arc::new(trusting::TrustEveryUpdate)
            };
            CoordinatorNode::Task(tokio::spawn(zkfed_coordinator::event_loop::run(
                config,
                Some(events),
                verifier,
                std::future::pending(),
            )))
        }
    };
    Ok((node, endpoint))
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

fn start_participants(
    specs: &[NodeSpec],
    ids: &[PeerId],
    setting: &Setting<'_>,
    endpoint: &Endpoint,
    events: mpsc::UnboundedSender<(PeerId, ParticipantTelemetry)>,
) -> anyhow::Result<Participants> {
    let mut nodes = Participants::default();
    for (spec, &peer) in specs.iter().zip(ids) {
        match (spec.adversary, setting.binaries) {
            (Some(Adversary::Flood), _) => {
                nodes.floods.push(tokio::spawn(flood::flood(
                    endpoint.listen(),
                    endpoint.peer,
                    spec_key(spec)?,
                    spec.csv.clone(),
                )));
            }
            (None, Some(binaries)) => {
                let address = endpoint.address();
                let args = [
                    "--coordinator",
                    &address,
                    "--dataset",
                    path_str(&spec.csv)?,
                    "--state",
                    path_str(&spec.state)?,
                ];
                let name = spec
                    .state
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("participant");
                let process = NodeProcess::start(&binaries.participant, &args, setting.work, name)?;
                nodes.running.push(ParticipantNode::Process(
                    peer,
                    Box::new(process),
                    EventFollower::default(),
                ));
            }
            (adversary, _) => {
                let (config, observer) = participant_task_config(spec, endpoint, events.clone())?;
                let prover = participant_prover(spec, setting);
                if adversary == Some(Adversary::Stranger) {
                    // Refused at every dial, it would retry forever: stopped once the run is over.
                    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                    let stopped = async move {
                        let _ = stopped.await;
                    };
                    let run =
                        zkfed_participant::participation::run(config, observer, prover, stopped);
                    nodes.strangers.push((stop, tokio::spawn(run)));
                } else {
                    let run = zkfed_participant::participation::run(
                        config,
                        observer,
                        prover,
                        std::future::pending(),
                    );
                    nodes.running.push(ParticipantNode::Task(tokio::spawn(run)));
                }
            }
        }
    }
    Ok(nodes)
}

/// How a participant task makes its submissions: proved or not, honest or cheating.
fn participant_prover(spec: &NodeSpec, setting: &Setting<'_>) -> Arc<dyn Prover> {
    let honest: Arc<dyn Prover> = if setting.proofs {
        Arc::new(StarkProver)
    } else {
        Arc::new(trusting::UnprovenUpdates)
    };
    match spec.adversary.and_then(Adversary::plan) {
        Some(plan) => Arc::new(adversary::TamperingProver::new(honest, plan)),
        None => honest,
    }
}

/// A participant library configuration and an observer whose events are forwarded, tagged
/// with the participant's peer.
fn participant_task_config(
    spec: &NodeSpec,
    endpoint: &Endpoint,
    events: mpsc::UnboundedSender<(PeerId, ParticipantTelemetry)>,
) -> anyhow::Result<(
    zkfed_participant::config::Config,
    zkfed_participant::participation::Observer,
)> {
    let config = zkfed_participant::config::RawConfig {
        coordinator: endpoint.address(),
        dataset: spec.csv.clone(),
        state_dir: spec.state.clone(),
        schema: None,
    }
    .resolve()?;
    let me = config.key.public().to_peer_id();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let _ = events.send((me, event));
        }
    });
    Ok((config, Some(tx)))
}

/// Waits for the participants to see the run finish, stops the strangers, and returns what
/// the flooders saw; a participant process's events are added to `proofs`.
async fn stop_participants(
    nodes: Participants,
    proofs: &mut Vec<(PeerId, ParticipantTelemetry)>,
) -> anyhow::Result<Vec<FloodTally>> {
    let grace = Duration::from_secs(10);
    for node in nodes.running {
        match node {
            ParticipantNode::Task(task) => {
                if let Ok(Ok(Err(e))) = tokio::time::timeout(grace, task).await {
                    bail!("a participant failed: {e:#}");
                }
            }
            ParticipantNode::Process(peer, mut process, _) => {
                if let Ok(exited) = tokio::time::timeout(grace, process.finished()).await {
                    exited?;
                }
                let events: Vec<ParticipantTelemetry> = process.read_events()?;
                proofs.extend(events.into_iter().map(|e| (peer, e)));
            }
        }
    }
    for (stop, task) in nodes.strangers {
        let _ = stop.send(());
        let _ = tokio::time::timeout(grace, task).await;
    }
    let mut tallies = Vec::new();
    for task in nodes.floods {
        match tokio::time::timeout(2 * grace, task).await {
            Ok(Ok(Ok(tally))) => tallies.push(tally),
            Ok(Ok(Err(e))) => bail!("the flooding adversary failed: {e:#}"),
            Ok(Err(e)) => bail!("the flooding adversary's task failed: {e}"),
            Err(_) => bail!("the flooding adversary did not see the run finish"),
        }
    }
    Ok(tallies)
}

/// Waits (at most 10 s) until something accepts TCP connections on the port.
async fn wait_until_listening(port: u16) -> anyhow::Result<()> {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        ensure!(
            start.elapsed() < Duration::from_secs(10),
            "the coordinator did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Test accuracy and mean logistic loss of a fixed-point model.
fn evaluate(model: &Model, rows: &[Vec<i64>], labels: &[u8], test: &[usize]) -> (f64, f64) {
    let (mut right, mut loss) = (0usize, 0.0f64);
    for &i in test {
        let z_raw: i64 = model
            .weights
            .iter()
            .zip(&rows[i])
            .map(|(w, x)| w * x)
            .sum::<i64>()
            + model.bias * ONE;
        let z = z_raw as f64 / (ONE as f64 * ONE as f64);
        let y = f64::from(labels[i]);
        right += usize::from(u8::from(z_raw > 0) == labels[i]);
        let p = 1.0 / (1.0 + (-z).exp());
        loss -= y * p.max(1e-12).ln() + (1.0 - y) * (1.0 - p).max(1e-12).ln();
    }
    let n = test.len().max(1) as f64;
    (right as f64 / n, loss / n)
}

/// Centralized training of the same fixed-point model on the pooled honest rows: each round
/// one clipped step on a random batch as large as the federation's honest batches together.
fn centralized(
    options: &Options,
    rows: &[Vec<i64>],
    labels: &[u8],
    pool: &[usize],
    batch: usize,
) -> anyhow::Result<Vec<Model>> {
    let mut rng = StdRng::seed_from_u64(options.seed ^ 0xce47);
    let mut model = Model::zeros(rows[0].len());
    let mut models = Vec::new();
    for _ in 0..options.rounds {
        let picks: Vec<usize> = (0..batch.min(pool.len()))
            .map(|_| pool[rng.random_range(0..pool.len())])
            .collect();
        let sum = clipped_gradient_sum(
            &model,
            picks.iter().map(|&i| (&rows[i][..], labels[i])),
            quantize(options.clip),
        )?;
        model = fedavg_step(&model, &[sum], quantize(options.learning_rate))?;
        models.push(model.clone());
    }
    Ok(models)
}

fn rows_of(
    observed: &Observed,
    central: &[Model],
    evaluate: &impl Fn(&Model) -> (f64, f64),
) -> Vec<RoundRow> {
    let traffic = traffic_by_round(&observed.coordinator);
    let mut refused: BTreeMap<u64, usize> = BTreeMap::new();
    for event in &observed.coordinator {
        if let CoordinatorTelemetry::Refused {
            round: Some(round), ..
        } = event
        {
            *refused.entry(*round).or_default() += 1;
        }
    }
    let mut rows = Vec::new();
    let mut judged: BTreeMap<u64, (usize, BTreeMap<String, usize>)> = BTreeMap::new();
    for event in &observed.log {
        match event {
            AuditEvent::Judged {
                round, rejection, ..
            } => {
                let entry = judged.entry(*round).or_default();
                match rejection {
                    None => entry.0 += 1,
                    Some(rejection) => *entry.1.entry(rejection.kind().into()).or_default() += 1,
                }
            }
            AuditEvent::Aggregated { round, model } => {
                let (accuracy, loss) = evaluate(model);
                let (accepted, rejected) = judged.remove(round).unwrap_or_default();
                let centralized_accuracy = central
                    .get(*round as usize - 1)
                    .map_or(0.0, |m| evaluate(m).0);
                let prove: Vec<f64> = observed
                    .proofs
                    .iter()
                    .filter_map(|(_, e)| match e {
                        ParticipantTelemetry::Proved {
                            round: r, seconds, ..
                        } if r == round => Some(*seconds),
                        _ => None,
                    })
                    .collect();
                let (bytes_in, bytes_out) = traffic.get(round).copied().unwrap_or_default();
                let verify: Vec<f64> = observed
                    .coordinator
                    .iter()
                    .filter_map(|e| match e {
                        CoordinatorTelemetry::Judged {
                            round: r,
                            verify_seconds,
                            ..
                        } if r == round => Some(verify_seconds * 1e3),
                        _ => None,
                    })
                    .collect();
                let wall_seconds = observed
                    .coordinator
                    .iter()
                    .find_map(|e| match e {
                        CoordinatorTelemetry::Closed {
                            round: r, seconds, ..
                        } if r == round => Some(*seconds),
                        _ => None,
                    })
                    .unwrap_or(0.0);
                rows.push(RoundRow {
                    round: *round,
                    accuracy,
                    loss,
                    centralized_accuracy,
                    accepted,
                    rejected,
                    prove_p50: percentile(&prove, 50.0),
                    prove_p95: percentile(&prove, 95.0),
                    prove_max: percentile(&prove, 100.0),
                    verify_ms_p50: percentile(&verify, 50.0),
                    verify_ms_max: percentile(&verify, 100.0),
                    refused: refused.get(round).copied().unwrap_or_default(),
                    bytes_in,
                    bytes_out,
                    wall_seconds,
                    baseline_accuracy: None,
                    baseline_wall_seconds: None,
                });
            }
            _ => {}
        }
    }
    rows
}

/// Bytes the coordinator read and wrote per round, from the cumulative totals at each close.
fn traffic_by_round(events: &[CoordinatorTelemetry]) -> BTreeMap<u64, (u64, u64)> {
    let mut by_round = BTreeMap::new();
    let mut previous = (0, 0);
    for event in events {
        if let CoordinatorTelemetry::Closed {
            round,
            bytes_received,
            bytes_sent,
            ..
        } = event
        {
            let delta = (
                bytes_received.saturating_sub(previous.0),
                bytes_sent.saturating_sub(previous.1),
            );
            by_round.insert(*round, delta);
            previous = (*bytes_received, *bytes_sent);
        }
    }
    by_round
}

/// A rejection's text cut short enough for a summary line.
fn short_reason(rejection: &Rejection) -> String {
    rejection.to_string().chars().take(60).collect()
}

fn adversarial_summary(observed: &Observed, specs: &[NodeSpec]) -> AdversarialSummary {
    let adversary_of = |peer: &PeerId| observed.peers.get(peer).and_then(|&k| specs[k].adversary);
    let mut summary = AdversarialSummary::default();
    for event in &observed.log {
        let (round, peer, rejection) = match event {
            AuditEvent::Judged {
                round,
                peer,
                rejection,
                ..
            } => (*round, peer, rejection.as_ref()),
            AuditEvent::Enrolled { peer, .. } => (0, peer, None),
            _ => continue,
        };
        let Some(adversary) = PeerId::from_bytes(peer).ok().and_then(|p| adversary_of(&p)) else {
            continue;
        };
        if adversary == Adversary::Stranger {
            summary.stranger_records += 1;
        }
        if !matches!(event, AuditEvent::Judged { .. }) {
            continue;
        }
        summary.submitted += 1;
        match rejection {
            None => summary.aggregated += 1,
            Some(rejection) => {
                summary.rejected += 1;
                if adversary.expected_rejection(round, rejection) {
                    summary.rejected_for_the_right_reason += 1;
                }
                summary
                    .reasons
                    .entry(adversary.label(round).to_string())
                    .or_default()
                    .push(short_reason(rejection));
            }
        }
    }
    for event in &observed.coordinator {
        match event {
            // A submission turned away before verification: rejected, never aggregated.
            CoordinatorTelemetry::Refused {
                peer,
                round: Some(_),
                rejection,
            } => {
                let Some(adversary) = adversary_of(peer) else {
                    continue;
                };
                summary.submitted += 1;
                summary.rejected += 1;
                summary.refused_before_verification += 1;
                if adversary.expected_refusal(rejection) {
                    summary.rejected_for_the_right_reason += 1;
                }
            }
            CoordinatorTelemetry::ConnectionRefused {
                peer: Some(peer), ..
            } if adversary_of(peer) == Some(Adversary::Stranger) => {
                summary.connections_refused += 1;
            }
            _ => {}
        }
    }
    for tally in &observed.floods {
        summary.flood.add(tally);
    }
    summary
}

fn summarize(report: &Report, options: &Options, out: &mut impl Write) -> std::io::Result<()> {
    let a = &report.adversarial;
    let difference = (report.final_accuracy - report.final_centralized_accuracy) * 100.0;
    writeln!(out)?;
    writeln!(
        out,
        "final test accuracy: zkfed {:.1}%, centralized {:.1}% (difference {:+.1} points, {} the 2-point bar)",
        report.final_accuracy * 100.0,
        report.final_centralized_accuracy * 100.0,
        difference,
        if difference.abs() <= 2.0 {
            "within"
        } else {
            "beyond"
        }
    )?;
    writeln!(
        out,
        "adversarial submissions: {} sent, {} rejected ({} for the expected reason, {} refused before verification), {} aggregated",
        a.submitted,
        a.rejected,
        a.rejected_for_the_right_reason,
        a.refused_before_verification,
        a.aggregated
    )?;
    for (attack, reasons) in &a.reasons {
        writeln!(
            out,
            "  {attack}: {}",
            reasons.first().map_or("", String::as_str)
        )?;
    }
    if a.flood.sent > 0 {
        writeln!(
            out,
            "flood: {} copies sent, {} refused or rejected, {} accepted, {} unanswered",
            a.flood.sent, a.flood.refused, a.flood.accepted, a.flood.unanswered
        )?;
    }
    if a.connections_refused > 0 || a.stranger_records > 0 {
        writeln!(
            out,
            "peers off the allow-list: {} connections refused, {} records in the log",
            a.connections_refused, a.stranger_records
        )?;
    }
    writeln!(
        out,
        "mean round {:.2} s; wall time {:.1} s; report in {}",
        report.mean_round_seconds,
        report.wall_seconds,
        options.out.display()
    )?;
    if options.processes {
        writeln!(
            out,
            "the coordinator and the {} honest hospitals ran as their own processes (logs in {}); \
             adversaries and the no-proofs baseline ran as tasks",
            options.participants,
            options.out.join("nodes").display()
        )?;
    }
    if let Some(peak) = &report.peak_memory {
        writeln!(
            out,
            "peak memory {:.1} MiB ({})",
            peak.bytes as f64 / f64::from(1 << 20),
            peak.of
        )?;
    }
    match report.overhead_ratio {
        Some(ratio) => writeln!(
            out,
            "overhead: round wall time with proofs / without = {ratio:.2}"
        ),
        None if !report.proofs => writeln!(
            out,
            "proofs were off (--no-proofs): every update was trusted"
        ),
        None => Ok(()),
    }
}
