//! One federation run: the coordinator and the participants started as tasks or processes
//! on 127.0.0.1, followed to the end of the run, and everything they reported collected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use libp2p::PeerId;
use rand::Rng;
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use zkfed_air::data::{RawDataset, Standardization};
use zkfed_coordinator::event_loop::CoordinatorTelemetry;
use zkfed_coordinator::event_loop::{StarkVerifier, SubmissionVerifier};
use zkfed_coordinator::events::AuditEvent;
use zkfed_participant::participation::{ParticipantTelemetry, Prover, StarkProver};

use crate::Options;
use crate::adversary::Adversary;
use crate::data::NodeSpec;
use crate::flood::FloodTally;
use crate::processes::{Binaries, EventFollower, NodeProcess};
use crate::progress::RoundProgress;
use crate::report::PeakMemory;
use crate::{adversary, flood, processes, trusting};

/// What the federation reported while it ran, and its log afterwards.
pub(crate) struct Observed {
    pub(crate) log: Vec<AuditEvent>,
    pub(crate) proofs: Vec<(PeerId, ParticipantTelemetry)>,
    pub(crate) coordinator: Vec<CoordinatorTelemetry>,
    pub(crate) peers: BTreeMap<PeerId, usize>,
    pub(crate) floods: Vec<FloodTally>,
    /// The coordinator process's peak resident memory (with `--processes`).
    pub(crate) coordinator_peak: Option<u64>,
}

/// Where a federation runs and whether it proves.
pub(crate) struct Setting<'a> {
    pub(crate) work: &'a Path,
    pub(crate) proofs: bool,
    pub(crate) batch: usize,
    /// The node binaries, to run the coordinator and honest participants as processes.
    pub(crate) binaries: Option<&'a Binaries>,
}

/// The coordinator, running as a task of this process or as its own process.
pub(crate) enum CoordinatorNode {
    Task(tokio::task::JoinHandle<anyhow::Result<()>>),
    Process(Box<NodeProcess>, EventFollower),
}

impl CoordinatorNode {
    /// Completes when the coordinator has finished the run (cancel-safe).
    pub(crate) async fn finished(&mut self) -> anyhow::Result<()> {
        match self {
            CoordinatorNode::Task(task) => task.await.context("the coordinator task failed")?,
            CoordinatorNode::Process(process, _) => process.finished().await,
        }
    }
}

/// An honest or tampering participant, as a task or (honest only) its own process.
pub(crate) enum ParticipantNode {
    Task(ParticipantTask),
    Process(PeerId, Box<NodeProcess>, EventFollower),
}

pub(crate) type ParticipantTask =
    tokio::task::JoinHandle<anyhow::Result<Option<zkfed_participant::participation::Outcome>>>;

/// The nodes started around the coordinator.
#[derive(Default)]
pub(crate) struct Participants {
    pub(crate) running: Vec<ParticipantNode>,
    /// Peers off the allow-list, with what stops them once the run is over.
    pub(crate) strangers: Vec<(tokio::sync::oneshot::Sender<()>, ParticipantTask)>,
    pub(crate) floods: Vec<tokio::task::JoinHandle<anyhow::Result<FloodTally>>>,
}

impl Participants {
    /// New events of the participant processes (tasks report through their channel).
    pub(crate) fn follow(&mut self) -> anyhow::Result<Vec<ParticipantTelemetry>> {
        let mut events = Vec::new();
        for node in &mut self.running {
            if let ParticipantNode::Process(_, process, follower) = node {
                events.extend(follower.poll::<ParticipantTelemetry>(&process.events)?);
            }
        }
        Ok(events)
    }
}

/// Where the coordinator listens and who it is.
pub(crate) struct Endpoint {
    pub(crate) port: u16,
    pub(crate) peer: PeerId,
    pub(crate) store: PathBuf,
}

impl Endpoint {
    pub(crate) fn listen(&self) -> libp2p::Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{}", self.port)
            .parse()
            .expect("a valid multiaddr")
    }

    pub(crate) fn address(&self) -> String {
        format!("{}/p2p/{}", self.listen(), self.peer)
    }
}

/// Runs one federation to its end and collects what it reported and logged.
pub(crate) async fn federate(
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let raw_config =
        coordinator_config(options, raw, stats, &setting, allow_list(specs, &ids), port);
    let (coordinator_tx, mut coordinator_rx) = mpsc::unbounded_channel();
    let (mut coordinator, endpoint) =
        start_coordinator(raw_config, port, &setting, coordinator_tx)?;
    wait_until_listening(port).await?;
    let (participant_tx, mut participant_rx) = mpsc::unbounded_channel();
    let mut nodes = start_participants(specs, &ids, &setting, &endpoint, participant_tx)?;

    let mut reported = Reported::default();
    let provers = specs
        .iter()
        .filter(|s| !matches!(s.adversary, Some(Adversary::Stranger | Adversary::Flood)))
        .count();
    let mut channels = (&mut coordinator_rx, &mut participant_rx);
    reported
        .follow(
            options,
            provers,
            &mut coordinator,
            &mut nodes,
            &mut channels,
        )
        .await?;
    match &coordinator {
        // The file is the record; what was followed was for the progress bar.
        CoordinatorNode::Process(process, _) => reported.coordinator = process.read_events()?,
        CoordinatorNode::Task(_) => {
            while let Ok(event) = coordinator_rx.try_recv() {
                reported.coordinator.push(event);
            }
        }
    }
    let floods = stop_participants(nodes, &mut reported.proofs).await?;
    while let Ok(event) = participant_rx.try_recv() {
        reported.proofs.push(event);
    }
    let log = zkfed_coordinator::log::StoredLog::open(&endpoint.store)?
        .records()?
        .into_iter()
        .map(|r| r.event)
        .collect();
    Ok(Observed {
        log,
        proofs: reported.proofs,
        coordinator: reported.coordinator,
        peers: ids.iter().enumerate().map(|(k, &p)| (p, k)).collect(),
        floods,
        coordinator_peak: reported.coordinator_peak,
    })
}

/// The peer ids the coordinator allows: everyone but the strangers.
fn allow_list(specs: &[NodeSpec], ids: &[PeerId]) -> Vec<String> {
    specs
        .iter()
        .zip(ids)
        .filter(|(spec, _)| spec.adversary != Some(Adversary::Stranger))
        .map(|(_, peer)| peer.to_string())
        .collect()
}

/// The channels node tasks report through.
type Channels<'a> = (
    &'a mut mpsc::UnboundedReceiver<CoordinatorTelemetry>,
    &'a mut mpsc::UnboundedReceiver<(PeerId, ParticipantTelemetry)>,
);

/// What the nodes reported while the run went on.
#[derive(Default)]
struct Reported {
    coordinator: Vec<CoordinatorTelemetry>,
    proofs: Vec<(PeerId, ParticipantTelemetry)>,
    coordinator_peak: Option<u64>,
}

impl Reported {
    /// Follows the nodes, with the progress bar, until the coordinator finishes the run or
    /// the simulation's own deadline passes.
    async fn follow(
        &mut self,
        options: &Options,
        provers: usize,
        coordinator: &mut CoordinatorNode,
        nodes: &mut Participants,
        (coordinator_rx, participant_rx): &mut Channels<'_>,
    ) -> anyhow::Result<()> {
        let mut progress = RoundProgress::new(options, provers);
        let deadline = tokio::time::sleep(Duration::from_secs(180 + 150 * options.rounds));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let outcome = loop {
            let followed = tokio::select! {
                done = coordinator.finished() => break done,
                Some(event) = coordinator_rx.recv() => vec![event],
                Some(event) = participant_rx.recv() => {
                    progress.proved(&event.1);
                    self.proofs.push(event);
                    continue;
                }
                _ = tick.tick() => {
                    for event in nodes.follow()? {
                        progress.proved(&event);
                    }
                    match coordinator {
                        CoordinatorNode::Process(process, follower) => {
                            self.coordinator_peak = process.peak_memory().max(self.coordinator_peak);
                            follower.poll(&process.events)?
                        }
                        CoordinatorNode::Task(_) => continue,
                    }
                }
                () = &mut deadline => bail!("the simulation did not finish in time"),
            };
            for event in followed {
                progress.observe(&event);
                self.coordinator.push(event);
            }
        };
        progress.bar.finish_and_clear();
        outcome
    }
}

pub(crate) fn spec_key(spec: &NodeSpec) -> anyhow::Result<libp2p::identity::Keypair> {
    let path = spec.state.join("node.key");
    zkfed_net::load_or_create_key(&path).with_context(|| format!("loading {}", path.display()))
}

pub(crate) fn coordinator_config(
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
        max_attempts: 5,
        clip_norm: options.clip,
        batch_size: setting.batch,
        learning_rate: options.learning_rate,
        strategy: options.strategy.clone(),
        state_dir: setting.work.join("coordinator"),
        linger_secs: 2,
        schema: raw.schema.clone(),
        model: options.model.clone(),
        standardization: stats.clone(),
        privacy: options.privacy(),
    }
}

pub(crate) fn start_coordinator(
    raw_config: zkfed_coordinator::config::RawConfig,
    port: u16,
    setting: &Setting<'_>,
    events: mpsc::UnboundedSender<CoordinatorTelemetry>,
) -> anyhow::Result<(CoordinatorNode, Endpoint)> {
    let file = setting.work.join("coordinator.toml");
    let config = processes::write_coordinator_config(&raw_config, &file)?;
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
            let args = processes::coordinator_args(&file);
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

pub(crate) fn start_participants(
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
                let args = processes::participant_args(
                    &endpoint.address(),
                    &spec.csv,
                    &spec.state,
                    setting.batch,
                );
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
                let (config, observer) =
                    participant_task_config(spec, setting.batch, endpoint, events.clone())?;
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
pub(crate) fn participant_prover(spec: &NodeSpec, setting: &Setting<'_>) -> Arc<dyn Prover> {
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
pub(crate) fn participant_task_config(
    spec: &NodeSpec,
    min_batch_size: usize,
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
        min_batch_size,
        max_attempts: zkfed_participant::config::default_max_attempts(),
        // The shards hold no row out of range: `data::prepare` left them out.
        skip_out_of_range: false,
        federation_id: None,
        max_trace_cells: zkfed_participant::config::default_max_trace_cells(),
        private_only: false,
        max_epsilon: None,
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
pub(crate) async fn stop_participants(
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
pub(crate) async fn wait_until_listening(port: u16) -> anyhow::Result<()> {
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

/// The coordinator process's peak memory with `--processes`, else the simulation's own.
pub(crate) fn peak_memory(observed: &Observed) -> Option<PeakMemory> {
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
