//! `zkfed-chaos`: kill -9 anywhere.
//!
//! A coordinator and participants run as the real binaries (the pieces of
//! [`crate::processes`]), each its own OS process on 127.0.0.1. A seeded plan kills the
//! coordinator with SIGKILL right after chosen moments of the run (an enrolment recorded,
//! participants proving, a submission arriving to be verified, a round's quorum reached
//! before its aggregate, and within 100 ms of its own restart), and participants while they
//! prove or submit; every killed node is restarted at once on the same state directory (and,
//! for the coordinator, the same port). The moments are read from the nodes' own log lines.
//!
//! Afterwards the run is checked from its record: every node's last process exited
//! successfully, `zkfed-coordinator audit verify` passes, and the signed log (read through
//! the coordinator crate's public API) aggregated every round exactly once, each aggregate
//! is the run's strategy over its attempt's accepted updates, each once (recomputed with
//! `zkfed_aggregation`), no attempt started twice, no `(round, attempt, peer)` judged
//! twice, and every update anyone was told was accepted is on record.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use clap::Parser;
use libp2p::PeerId;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use zkfed_air::{ClippedGradientSum, Model};
use zkfed_coordinator::event_loop::CoordinatorTelemetry;
use zkfed_coordinator::events::{AuditEvent, RunState};
use zkfed_coordinator::log::StoredLog;
use zkfed_participant::participation::ParticipantTelemetry;
use zkfed_protocol::RoundAnnouncement;

use crate::federation::wait_until_listening;
use crate::processes::{
    Binaries, LineFollower, NodeProcess, coordinator_args, parse_event_lines, participant_args,
    write_coordinator_config,
};

/// Command-line options of `zkfed-chaos`.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "Kill the coordinator and participants with SIGKILL across a run, restart them, \
             and check the run's record"
)]
pub struct ChaosOptions {
    /// Participants, each a `zkfed-participant` process; the quorum is all of them.
    #[arg(long, default_value_t = 3)]
    pub participants: usize,
    /// Training rounds.
    #[arg(long, default_value_t = 20)]
    pub rounds: u64,
    /// SIGKILLs of the coordinator.
    #[arg(long, default_value_t = 20)]
    pub coordinator_kills: usize,
    /// SIGKILLs of participants.
    #[arg(long, default_value_t = 6)]
    pub participant_kills: usize,
    /// Churn: this fraction of the participants (rounded up) is also killed and restarted
    /// in every round but the last, mid-proof or mid-submit (0.1: one in ten per round).
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// Examples per participant per round.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Seed of the kill plan (random if not given; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Work directory (node state, logs, event files); emptied first.
    #[arg(long, default_value = "chaos-out")]
    pub out: PathBuf,
}

/// Seconds a round attempt stays open: long enough that a restart never costs an attempt,
/// short enough that a lost participant does not stall the run.
const ROUND_DEADLINE_SECS: u64 = 30;
/// Seconds the coordinator stays up after the run, for participants to learn the end.
const LINGER_SECS: u64 = 5;
/// How often the nodes' logs are read.
const LOOK: Duration = Duration::from_millis(10);

/// The moment a kill follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// The coordinator, right after it recorded an enrolment (others may still be enrolling).
    Enrolment,
    /// The coordinator, while participants prove.
    Proving,
    /// The coordinator, as a submission arrives and is verified.
    Verification,
    /// The coordinator, between a round's quorum of accepted updates and its aggregate.
    Aggregation,
    /// The coordinator, within 100 ms of its own restart.
    Restart,
    /// A participant, while it proves.
    MidProof,
    /// A participant, as it submits.
    MidSubmit,
    /// A participant dropped at a random moment of a round (`--churn`), not planned.
    Churn,
}

impl Phase {
    /// Whether the coordinator is the one killed.
    pub fn of_coordinator(self) -> bool {
        !matches!(self, Phase::MidProof | Phase::MidSubmit | Phase::Churn)
    }

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Enrolment => "enrolment",
            Phase::Proving => "proving",
            Phase::Verification => "verification",
            Phase::Aggregation => "aggregation",
            Phase::Restart => "restart",
            Phase::MidProof => "mid-proof",
            Phase::MidSubmit => "mid-submit",
            Phase::Churn => "churn",
        }
    }

    /// The event the kill follows.
    fn after(self) -> &'static str {
        match self {
            Phase::Enrolment => "after it recorded an enrolment",
            Phase::Proving => "after a participant started proving",
            Phase::Verification => "after a participant sent its submission",
            Phase::Aggregation => "after the round's quorum was accepted",
            Phase::Restart => "after its restart",
            Phase::MidProof => "after it started proving",
            Phase::MidSubmit => "after it sent its submission",
            Phase::Churn => "at a random moment of the round (churn)",
        }
    }

    /// The longest wait from the event to the kill, in milliseconds.
    fn max_delay_ms(self) -> u64 {
        match self {
            Phase::Enrolment => 30,
            Phase::Proving => 300,
            Phase::Verification => 50,
            // The coordinator closes rounds on a 200 ms tick.
            Phase::Aggregation => 200,
            Phase::Restart => 100,
            Phase::MidProof => 250,
            Phase::MidSubmit => 20,
            Phase::Churn => CHURN_WINDOW_MS,
        }
    }
}

/// A kill the plan asks for: its phase, from which round on (0: enrolment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedKill {
    /// What the kill follows.
    pub phase: Phase,
    /// The earliest round it may happen in.
    pub round: u64,
}

/// A kill that was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Kill {
    /// What it followed.
    pub phase: Phase,
    /// The node killed (`coordinator` or `p<k>`) and which of its processes.
    pub victim: String,
    /// The latest round started when it was made.
    pub round: u64,
    /// Milliseconds from the event to the kill.
    pub delay_ms: u64,
    /// When, from the start of the run.
    pub at: Duration,
}

/// What the signed log shows (see [`check_log`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogCheck {
    /// Records in the log.
    pub records: usize,
    /// Distinct rounds aggregated.
    pub rounds: u64,
    /// Round attempts started.
    pub attempts: u64,
    /// Attempts abandoned.
    pub abandoned: u64,
    /// Accepted verdicts.
    pub accepted: u64,
    /// Accepted updates counted in an aggregate.
    pub aggregated_updates: u64,
    /// Refusals before verification.
    pub refused: u64,
    /// Verifications discarded (their attempt had closed).
    pub discarded: u64,
    /// Every accepted verdict: round and peer-id bytes.
    pub accepted_on_record: BTreeSet<(u64, Vec<u8>)>,
    /// Every round aggregated.
    pub aggregated_rounds: BTreeSet<u64>,
    /// Everything that does not check out.
    pub violations: Vec<String>,
}

/// What a chaos run did and found.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    /// The plan's seed.
    pub seed: u64,
    /// The kills planned.
    pub planned: Vec<PlannedKill>,
    /// The kills made, in order.
    pub kills: Vec<Kill>,
    /// Coordinator processes started after a kill.
    pub coordinator_restarts: usize,
    /// Participant processes started after a kill.
    pub participant_restarts: usize,
    /// From a coordinator restart to its listening again (restarts not killed first).
    pub restart_to_listening: Vec<Duration>,
    /// The whole run, from the first process started to the last exit.
    pub wall: Duration,
    /// What the signed log shows.
    pub log: LogCheck,
    /// The audit's verdict line.
    pub audit: String,
    /// Every broken guarantee (a process that failed, a stuck run, a failed check).
    pub violations: Vec<String>,
}

impl ChaosReport {
    /// Kills made, by phase.
    pub fn by_phase(&self) -> BTreeMap<Phase, usize> {
        let mut counts = BTreeMap::new();
        for kill in &self.kills {
            *counts.entry(kill.phase).or_insert(0) += 1;
        }
        counts
    }

    /// Kills made of the coordinator (`true`) or of participants.
    pub fn kills_of(&self, coordinator: bool) -> usize {
        let made = self.kills.iter();
        made.filter(|k| k.phase.of_coordinator() == coordinator)
            .count()
    }

    /// Whether every planned kill was made (churn kills are drawn, not planned).
    pub fn all_kills_made(&self) -> bool {
        let made = self
            .kills
            .iter()
            .filter(|k| k.phase != Phase::Churn)
            .count();
        made == self.planned.len()
    }
}

/// Runs the chaos plan, printing each kill and the figures to `out`.
pub fn run(options: &ChaosOptions, out: &mut impl Write) -> anyhow::Result<ChaosReport> {
    ensure!(options.participants >= 1, "need at least one participant");
    ensure!(options.rounds >= 1, "need at least one round");
    ensure!(
        (0.0..=1.0).contains(&options.churn),
        "--churn is a fraction of the participants, from 0 to 1"
    );
    let binaries = Binaries::find()?;
    let seed = options
        .seed
        .unwrap_or_else(|| rand::make_rng::<StdRng>().random());
    writeln!(out, "zkfed-chaos: seed {seed} (again with --seed {seed})")?;
    let mut rng = StdRng::seed_from_u64(seed);
    let planned = plan(options, &mut rng);
    writeln!(
        out,
        "{} participants, {} rounds, batch {}; {} coordinator kills and {} participant kills planned: {}",
        options.participants,
        options.rounds,
        options.batch,
        planned.iter().filter(|k| k.phase.of_coordinator()).count(),
        planned.iter().filter(|k| !k.phase.of_coordinator()).count(),
        planned
            .iter()
            .map(|k| format!("{}@{}", k.phase.name(), k.round))
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    let mut chaos = runtime.block_on(Chaos::start(options, &binaries, rng))?;
    let started = chaos.started;
    runtime.block_on(chaos.drive(planned.clone(), options, out))?;
    let wall = started.elapsed();

    let mut violations = std::mem::take(&mut chaos.violations);
    let audit = audit_verify(&binaries, &chaos.state_dir, &chaos.coordinator_peer)?;
    if !audit.0 {
        violations.push(format!("audit verify failed: {}", audit.1));
    }
    let records = StoredLog::open(&chaos.state_dir.join("state.redb"))
        .context("opening the coordinator's log")?
        .records()
        .context("reading the coordinator's log")?;
    let events: Vec<AuditEvent> = records.into_iter().map(|r| r.event).collect();
    let log = check_log(&events, options.rounds);
    violations.extend(log.violations.iter().cloned());
    violations.extend(chaos.told_but_not_recorded(&log)?);

    let report = ChaosReport {
        seed,
        planned,
        kills: chaos.kills,
        coordinator_restarts: chaos.coordinator.incarnation - 1,
        participant_restarts: chaos.participants.iter().map(|p| p.incarnation - 1).sum(),
        restart_to_listening: chaos.restart_to_listening,
        wall,
        log,
        audit: audit.1,
        violations,
    };
    print_figures(&report, options, out)?;
    Ok(report)
}

/// The kills to make, in order: each coordinator phase at least once when there are five
/// or more kills (else a random choice, with a restart kill from two on); a restart kill
/// always directly after another coordinator kill; the rest spread over the rounds but the
/// last, which is left for the run to finish in.
pub fn plan(options: &ChaosOptions, rng: &mut StdRng) -> Vec<PlannedKill> {
    use Phase::*;
    let k = options.coordinator_kills;
    let mut coordinator = Vec::new();
    if k >= 5 {
        coordinator.extend([Enrolment, Proving, Verification, Aggregation, Restart]);
    } else {
        if k >= 2 {
            coordinator.push(Restart);
        }
        let mut others = vec![Enrolment, Proving, Verification, Aggregation];
        others.shuffle(rng);
        let more = k - coordinator.len();
        coordinator.extend(others.into_iter().take(more));
    }
    while coordinator.len() < k {
        let extra = [Proving, Verification, Aggregation, Restart];
        coordinator.push(*extra.choose(rng).expect("not empty"));
    }
    let mut phases: Vec<Phase> = coordinator
        .iter()
        .copied()
        .filter(|&p| p != Restart && p != Enrolment)
        .collect();
    let first = rng.random_range(0..2usize);
    phases.extend((0..options.participant_kills).map(|i| [MidProof, MidSubmit][(first + i) % 2]));
    phases.shuffle(rng);
    // Spread evenly over rounds 1..=last, each at a random point of its share: kills bunched
    // in a few rounds would push the later ones past the end of the run.
    let last = options.rounds.saturating_sub(1).max(1);
    let share = last as f64 / phases.len().max(1) as f64;
    let mut kills: Vec<PlannedKill> = Vec::new();
    if coordinator.contains(&Enrolment) {
        kills.push(PlannedKill {
            phase: Enrolment,
            round: 0,
        });
    }
    for (i, phase) in phases.into_iter().enumerate() {
        let at = (i as f64 + rng.random::<f64>()) * share;
        let round = (1 + at as u64).min(last);
        kills.push(PlannedKill { phase, round });
    }
    for _ in coordinator.iter().filter(|&&p| p == Restart) {
        let spots: Vec<usize> = (0..kills.len())
            .filter(|&i| kills[i].phase.of_coordinator())
            .collect();
        let &at = spots
            .choose(rng)
            .expect("a restart kill has another before it");
        let round = kills[at].round;
        kills.insert(
            at + 1,
            PlannedKill {
                phase: Restart,
                round,
            },
        );
    }
    kills
}

/// Participants `--churn` drops in each round but the last.
fn churn_per_round(options: &ChaosOptions) -> usize {
    (options.churn * options.participants as f64).ceil() as usize
}

/// Milliseconds from a round's start within which its churn kills fall (the proving
/// window of a large federation on two cores).
const CHURN_WINDOW_MS: u64 = 3_000;

/// `count` different participants among `running`, and when after now each is killed.
fn draw_churn(rng: &mut StdRng, running: &[usize], count: usize) -> Vec<(Duration, usize)> {
    let mut victims = running.to_vec();
    victims.shuffle(rng);
    victims.truncate(count);
    victims
        .into_iter()
        .map(|k| {
            (
                Duration::from_millis(rng.random_range(0..CHURN_WINDOW_MS)),
                k,
            )
        })
        .collect()
}

/// A node and its successive processes.
struct Node {
    name: String,
    binary: PathBuf,
    args: Vec<OsString>,
    dir: PathBuf,
    process: NodeProcess,
    follower: LineFollower,
    /// Which process this is (from 1).
    incarnation: usize,
    spawned: Instant,
    /// Every process's event file.
    events: Vec<PathBuf>,
    /// The last process's exit, once it has exited.
    exit: Option<ExitStatus>,
    peer: PeerId,
}

impl Node {
    fn start(
        name: &str,
        binary: &Path,
        args: Vec<OsString>,
        dir: &Path,
        peer: PeerId,
    ) -> anyhow::Result<Self> {
        let process = Self::spawn(name, 1, binary, &args, dir)?;
        Ok(Node {
            name: name.into(),
            binary: binary.into(),
            args,
            dir: dir.into(),
            events: vec![process.events.clone()],
            process,
            follower: LineFollower::default(),
            incarnation: 1,
            spawned: Instant::now(),
            exit: None,
            peer,
        })
    }

    fn spawn(
        name: &str,
        incarnation: usize,
        binary: &Path,
        args: &[OsString],
        dir: &Path,
    ) -> anyhow::Result<NodeProcess> {
        // The driver follows the nodes' info lines, whatever RUST_LOG says.
        let name = format!("{name}-{incarnation}");
        NodeProcess::start_logging(binary, args, dir, &name, Some("info"))
    }

    /// Starts the node's next process on the same state (its last one was killed).
    fn restart(&mut self) -> anyhow::Result<()> {
        self.incarnation += 1;
        self.process = Self::spawn(
            &self.name,
            self.incarnation,
            &self.binary,
            &self.args,
            &self.dir,
        )?;
        self.events.push(self.process.events.clone());
        self.follower = LineFollower::default();
        self.spawned = Instant::now();
        Ok(())
    }

    fn label(&self) -> String {
        format!("{} (process {})", self.name, self.incarnation)
    }

    /// The last lines of its current log, for a failure message.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.process.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n    ");
        format!("{}:\n    {tail}", self.process.log.display())
    }
}

/// Whether a node's log line (`<time> <level> <target>: <message> <key>=<value>...`) has
/// `message`.
fn says(line: &str, message: &str) -> bool {
    line.split_once(": ").is_some_and(|(_, rest)| {
        rest.strip_prefix(message)
            .is_some_and(|after| after.is_empty() || after.starts_with(' '))
    })
}

/// The value of `key=` in a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn round_of(line: &str) -> Option<u64> {
    field(line, "round")?.parse().ok()
}

/// The lines each node logged since the last look.
struct Fresh {
    coordinator: Vec<String>,
    participants: Vec<Vec<String>>,
}

/// Who a kill is for.
#[derive(Debug, Clone, Copy)]
enum Victim {
    Coordinator,
    Participant(usize),
}

/// The driver: the nodes, what their logs showed, and what it did to them.
struct Chaos {
    coordinator: Node,
    participants: Vec<Node>,
    coordinator_peer: PeerId,
    state_dir: PathBuf,
    quorum: usize,
    /// Whether the coordinator's current process has logged that it listens.
    listening: bool,
    /// The latest round started.
    round_now: u64,
    aggregated: BTreeSet<u64>,
    /// Peers with an accepted update, by round (cleared when an attempt is abandoned).
    accepted: BTreeMap<u64, BTreeSet<String>>,
    started: Instant,
    kills: Vec<Kill>,
    restart_to_listening: Vec<Duration>,
    violations: Vec<String>,
    rng: StdRng,
    /// The last round whose churn was drawn.
    churned_round: u64,
    /// Churn kills drawn and not yet made: when, and which participant.
    churn_due: Vec<(Instant, usize)>,
}

impl Chaos {
    /// Writes the configurations and the shards, starts the coordinator and, once it
    /// listens, the participants.
    async fn start(
        options: &ChaosOptions,
        binaries: &Binaries,
        rng: StdRng,
    ) -> anyhow::Result<Self> {
        let dir = &options.out;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = std::path::absolute(dir)?;
        let n = options.participants;
        let mut hospitals = Vec::new();
        for k in 0..n {
            let csv = dir.join(format!("h{k}.csv"));
            std::fs::write(&csv, zkfed_participant::bundled_shard_csv(k, n))
                .with_context(|| format!("writing {}", csv.display()))?;
            let state = dir.join(format!("p{k}"));
            let peer = zkfed_net::peer_id(&state)
                .with_context(|| format!("creating the key in {}", state.display()))?;
            hospitals.push((csv, state, peer));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let listen = format!("/ip4/127.0.0.1/tcp/{port}");
        let allow = hospitals.iter().map(|(_, _, p)| p.to_string()).collect();
        let state_dir = dir.join("coordinator");
        let mut raw = zkfed_coordinator::starter::bundled_config(
            state_dir.clone(),
            allow,
            listen.clone(),
            options.rounds,
            Some(n),
        );
        raw.batch_size = options.batch;
        raw.round_deadline_secs = ROUND_DEADLINE_SECS;
        raw.linger_secs = LINGER_SECS;
        let file = dir.join("coordinator.toml");
        let config = write_coordinator_config(&raw, &file)?;
        let coordinator_peer = config.key.public().to_peer_id();
        let coordinator = Node::start(
            "coordinator",
            &binaries.coordinator,
            coordinator_args(&file),
            &dir,
            coordinator_peer,
        )?;
        let started = Instant::now();
        wait_until_listening(port).await?;
        let address = format!("{listen}/p2p/{coordinator_peer}");
        let mut participants = Vec::new();
        for (k, (csv, state, peer)) in hospitals.into_iter().enumerate() {
            let args = participant_args(&address, &csv, &state, options.batch);
            let name = format!("p{k}");
            participants.push(Node::start(&name, &binaries.participant, args, &dir, peer)?);
        }
        Ok(Chaos {
            coordinator,
            participants,
            coordinator_peer,
            state_dir,
            quorum: n,
            listening: false,
            round_now: 0,
            aggregated: BTreeSet::new(),
            accepted: BTreeMap::new(),
            started,
            kills: Vec::new(),
            restart_to_listening: Vec::new(),
            violations: Vec::new(),
            rng,
            churned_round: 0,
            churn_due: Vec::new(),
        })
    }

    /// Follows the run to its end, making each planned kill when it is due.
    async fn drive(
        &mut self,
        planned: Vec<PlannedKill>,
        options: &ChaosOptions,
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        let limit = Duration::from_secs(300 + 30 * options.rounds);
        let mut plan = VecDeque::from(planned);
        let mut coordinator_done: Option<Instant> = None;
        loop {
            let fresh = self.observe()?;
            self.check_exits()?;
            let running: Vec<usize> = (0..self.participants.len())
                .filter(|&k| self.participants[k].exit.is_none())
                .collect();
            if let Some(status) = self.coordinator.exit {
                if running.is_empty() {
                    break;
                }
                if !status.success() {
                    self.stop_all().await?;
                    break;
                }
                let since = *coordinator_done.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(60) {
                    self.violations.push(format!(
                        "stuck: the coordinator finished, but participants {:?} were still running a minute later",
                        running.iter().map(|&k| &self.participants[k].name).collect::<Vec<_>>()
                    ));
                    self.stop_all().await?;
                    break;
                }
            }
            if self
                .participants
                .iter()
                .any(|p| p.exit.is_some_and(|s| !s.success()))
            {
                self.stop_all().await?;
                break;
            }
            if self.started.elapsed() > limit {
                self.violations.push(format!(
                    "stuck: the run had not finished after {} s (round {} started, rounds {:?} aggregated)",
                    limit.as_secs(),
                    self.round_now,
                    self.aggregated
                ));
                self.stop_all().await?;
                break;
            }
            if self.churn(options, out).await? {
                continue;
            }
            if let Some(&next) = plan.front()
                && let Some((victim, delay)) = self.due(next, &fresh)
            {
                if self.kill(next, victim, delay, out).await? {
                    plan.pop_front();
                    // What was logged up to now came before the kill: no trigger for the next.
                    self.observe()?;
                }
                continue;
            }
            tokio::time::sleep(LOOK).await;
        }
        for kill in &plan {
            writeln!(
                out,
                "not made: {} kill from round {} (the run ended first)",
                kill.phase.name(),
                kill.round
            )?;
        }
        Ok(())
    }

    /// Reads the nodes' new log lines and updates what the run has shown.
    fn observe(&mut self) -> anyhow::Result<Fresh> {
        let coordinator = self
            .coordinator
            .follower
            .poll(&self.coordinator.process.log)?;
        self.note(&coordinator);
        let mut participants = Vec::new();
        for node in &mut self.participants {
            participants.push(node.follower.poll(&node.process.log)?);
        }
        Ok(Fresh {
            coordinator,
            participants,
        })
    }

    /// Updates what the run has shown from the coordinator's log lines.
    fn note(&mut self, coordinator: &[String]) {
        for line in coordinator {
            if says(line, "listening") && !self.listening {
                self.listening = true;
                if self.coordinator.incarnation > 1 {
                    self.restart_to_listening
                        .push(self.coordinator.spawned.elapsed());
                }
            } else if says(line, "round started") {
                self.round_now = self.round_now.max(round_of(line).unwrap_or(0));
            } else if says(line, "accepted") {
                if let (Some(round), Some(peer)) = (round_of(line), field(line, "peer")) {
                    self.accepted
                        .entry(round)
                        .or_default()
                        .insert(peer.to_string());
                }
            } else if says(line, "round aggregated") {
                self.aggregated.extend(round_of(line));
            } else if says(line, "round attempt abandoned")
                && let Some(round) = round_of(line)
            {
                self.accepted.remove(&round);
            }
        }
    }

    /// Notes nodes whose current process has exited; a failure is a violation.
    fn check_exits(&mut self) -> anyhow::Result<()> {
        for node in std::iter::once(&mut self.coordinator).chain(&mut self.participants) {
            if node.exit.is_some() {
                continue;
            }
            if let Some(status) = node.process.exited()? {
                node.exit = Some(status);
                if !status.success() {
                    self.violations.push(format!(
                        "{} exited with {status}; its log {}",
                        node.label(),
                        node.tail()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Kills every node still running (the run is stuck or has failed).
    async fn stop_all(&mut self) -> anyhow::Result<()> {
        for node in std::iter::once(&mut self.coordinator).chain(&mut self.participants) {
            if node.exit.is_none() {
                node.process.kill().await?;
                node.exit = node.process.exited()?;
            }
        }
        Ok(())
    }

    /// The node to kill for `kill` and how long to wait first, if its moment has come.
    fn due(&mut self, kill: PlannedKill, fresh: &Fresh) -> Option<(Victim, Duration)> {
        if self.coordinator.exit.is_some() {
            return None; // the run is over (or the coordinator failed)
        }
        let phase = kill.phase;
        if !matches!(phase, Phase::Enrolment | Phase::Restart) && kill.round > self.round_now {
            return None;
        }
        // The running participants that just logged `message`.
        let logged = |message: &str| -> Vec<usize> {
            let lines = fresh.participants.iter().enumerate();
            lines
                .filter(|(k, lines)| {
                    self.participants[*k].exit.is_none() && lines.iter().any(|l| says(l, message))
                })
                .map(|(k, _)| k)
                .collect()
        };
        let victims = match phase {
            Phase::Enrolment => {
                let enrolled = fresh.coordinator.iter().any(|l| says(l, "enrolled"));
                if enrolled {
                    vec![Victim::Coordinator]
                } else {
                    vec![]
                }
            }
            Phase::Restart => vec![Victim::Coordinator],
            Phase::Proving | Phase::Verification => {
                let message = if phase == Phase::Proving {
                    "proving"
                } else {
                    "proved"
                };
                if self.listening && !logged(message).is_empty() {
                    vec![Victim::Coordinator]
                } else {
                    vec![]
                }
            }
            Phase::Aggregation => {
                let round = self.round_now;
                let met = self
                    .accepted
                    .get(&round)
                    .is_some_and(|peers| peers.len() >= self.quorum);
                if self.listening && met && !self.aggregated.contains(&round) {
                    vec![Victim::Coordinator]
                } else {
                    vec![]
                }
            }
            Phase::MidProof => logged("proving")
                .into_iter()
                .map(Victim::Participant)
                .collect(),
            Phase::MidSubmit => logged("proved")
                .into_iter()
                .map(Victim::Participant)
                .collect(),
            // Drawn per round by `drive`, never planned.
            Phase::Churn => vec![],
        };
        let &victim = victims.choose(&mut self.rng)?;
        let delay = Duration::from_millis(self.rng.random_range(0..=phase.max_delay_ms()));
        if phase == Phase::Restart {
            // Counted from the restart itself.
            return Some((
                victim,
                delay.saturating_sub(self.coordinator.spawned.elapsed()),
            ));
        }
        Some((victim, delay))
    }

    /// Draws the churn of a round that just started, and makes a churn kill that is due;
    /// `true` if it killed.
    async fn churn(
        &mut self,
        options: &ChaosOptions,
        out: &mut impl Write,
    ) -> anyhow::Result<bool> {
        if options.churn > 0.0
            && self.round_now > self.churned_round
            && self.round_now < options.rounds
            && self.coordinator.exit.is_none()
        {
            self.churned_round = self.round_now;
            let running: Vec<usize> = (0..self.participants.len())
                .filter(|&k| self.participants[k].exit.is_none())
                .collect();
            let now = Instant::now();
            let drawn = draw_churn(&mut self.rng, &running, churn_per_round(options));
            self.churn_due
                .extend(drawn.into_iter().map(|(after, k)| (now + after, k)));
        }
        let Some(i) = self
            .churn_due
            .iter()
            .position(|(at, _)| *at <= Instant::now())
        else {
            return Ok(false);
        };
        let (_, k) = self.churn_due.swap_remove(i);
        let churn = PlannedKill {
            phase: Phase::Churn,
            round: self.round_now,
        };
        self.kill(churn, Victim::Participant(k), Duration::ZERO, out)
            .await
    }

    /// Waits `delay`, kills the victim with SIGKILL and restarts it; `false` if it had
    /// exited by then.
    async fn kill(
        &mut self,
        planned: PlannedKill,
        victim: Victim,
        delay: Duration,
        out: &mut impl Write,
    ) -> anyhow::Result<bool> {
        tokio::time::sleep(delay).await;
        let node = match victim {
            Victim::Coordinator => &mut self.coordinator,
            Victim::Participant(k) => &mut self.participants[k],
        };
        // A restart kill is timed from the restart, the others from their event.
        let delay = match planned.phase {
            Phase::Restart => node.spawned.elapsed(),
            _ => delay,
        };
        if !node.process.kill().await? {
            return Ok(false);
        }
        let kill = Kill {
            phase: planned.phase,
            victim: node.label(),
            round: self.round_now,
            delay_ms: delay.as_millis() as u64,
            at: self.started.elapsed(),
        };
        writeln!(
            out,
            "kill {:>2}: {} {} (+{} ms), round {}, at {:.1} s",
            self.kills.len() + 1,
            kill.victim,
            planned.phase.after(),
            kill.delay_ms,
            kill.round,
            kill.at.as_secs_f64()
        )?;
        self.kills.push(kill);
        // What the killed process logged since the last look still counts.
        let last_lines = node.follower.poll(&node.process.log)?;
        if matches!(victim, Victim::Coordinator) {
            self.note(&last_lines);
            self.listening = false;
        }
        match victim {
            Victim::Coordinator => self.coordinator.restart()?,
            Victim::Participant(k) => self.participants[k].restart()?,
        }
        Ok(true)
    }

    /// Every update some node reported as accepted (the coordinator's judgement, a
    /// participant's verdict) that is not an accepted verdict of the log: what a crash
    /// must never lose.
    fn told_but_not_recorded(&self, log: &LogCheck) -> anyhow::Result<Vec<String>> {
        let mut missing = Vec::new();
        let mut told: Vec<(&str, u64, PeerId)> = Vec::new();
        for path in &self.coordinator.events {
            for event in read_events::<CoordinatorTelemetry>(path)? {
                match event {
                    CoordinatorTelemetry::Judged {
                        round,
                        peer,
                        rejection: None,
                        ..
                    } => told.push(("the coordinator", round, peer)),
                    CoordinatorTelemetry::Closed {
                        round,
                        aggregated: true,
                        ..
                    } if !log.aggregated_rounds.contains(&round) => {
                        missing.push(format!(
                            "the coordinator reported round {round} aggregated, but the log \
                             has no aggregate for it"
                        ));
                    }
                    _ => {}
                }
            }
        }
        for node in &self.participants {
            for path in &node.events {
                for event in read_events::<ParticipantTelemetry>(path)? {
                    if let ParticipantTelemetry::Judged {
                        round,
                        rejection: None,
                    } = event
                    {
                        told.push((&node.name, round, node.peer));
                    }
                }
            }
        }
        for (who, round, peer) in told {
            if !log.accepted_on_record.contains(&(round, peer.to_bytes())) {
                missing.push(format!(
                    "{who} reported {peer}'s round-{round} update accepted, but the log has no \
                     such verdict"
                ));
            }
        }
        Ok(missing)
    }
}

/// The complete events of a (possibly killed) process's event file; none if it never
/// created the file.
fn read_events<E: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Vec<E>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            // A process killed mid-line leaves an incomplete last line, which is not read.
            let text = String::from_utf8_lossy(&bytes);
            let (events, _) =
                parse_event_lines(&text).with_context(|| format!("reading {}", path.display()))?;
            Ok(events)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Runs `zkfed-coordinator audit verify` on the state; whether it passed, and its verdict.
fn audit_verify(
    binaries: &Binaries,
    state: &Path,
    coordinator: &PeerId,
) -> anyhow::Result<(bool, String)> {
    let output = std::process::Command::new(&binaries.coordinator)
        .args(["audit", "verify", "--state"])
        .arg(state)
        .args(["--coordinator", &coordinator.to_string()])
        .output()
        .context("running zkfed-coordinator audit verify")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let passed = output.status.success() && stdout.contains("audit passed");
    let verdict = if passed {
        stdout.trim().to_string()
    } else {
        format!(
            "{} {}{}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )
    };
    Ok((passed, verdict))
}

fn show(peer: &[u8]) -> String {
    PeerId::from_bytes(peer).map_or_else(|_| format!("{peer:02x?}"), |p| p.to_string())
}

/// An accepted update and its peer's id bytes.
type Accepted = (Vec<u8>, ClippedGradientSum);

/// Checks a coordinator's log of a run of `rounds` rounds, independently of the
/// coordinator's own replay (which it also runs): every round `1..=rounds` aggregated
/// exactly once and nothing else aggregated; no round attempt started twice; no
/// `(round, attempt, peer)` judged twice; every verdict inside its open attempt; each
/// attempt announcing the last aggregate as its model; each aggregate at least the quorum
/// and exactly the run's strategy (`zkfed_aggregation::strategy::aggregate`, FedAvg by
/// default) over its attempt's accepted updates, each counted once, in the order they were
/// accepted, with the server state it logged; no failed run.
pub fn check_log(events: &[AuditEvent], rounds: u64) -> LogCheck {
    let mut violations = Vec::new();
    let mut violation = |what: String| violations.push(what);
    let Some(AuditEvent::RunStarted(config)) = events.first() else {
        return LogCheck {
            records: events.len(),
            violations: vec!["the log does not start with RunStarted".into()],
            ..LogCheck::default()
        };
    };
    let (learning_rate, strategy) = (config.public.learning_rate, config.public.strategy);
    let mut model = Model::initial(config.public.model, config.public.schema.features.len());
    let mut server_state = zkfed_aggregation::strategy::ServerState::default();
    // The open attempt and its accepted updates by peer-id bytes, in the order accepted.
    let mut open: Option<(RoundAnnouncement, Vec<Accepted>)> = None;
    let mut judged = BTreeSet::new();
    let mut started = BTreeSet::new();
    let mut aggregated: BTreeMap<u64, usize> = BTreeMap::new();
    let mut counts = LogCheck::default();
    for (seq, event) in events.iter().enumerate().skip(1) {
        match event {
            AuditEvent::RunStarted(_) => violation(format!("record {seq}: a second RunStarted")),
            AuditEvent::Enrolled { .. } => {}
            AuditEvent::RoundStarted(announced) => {
                let (round, attempt) = (announced.round, announced.attempt);
                counts.attempts += 1;
                if !started.insert((round, attempt)) {
                    violation(format!(
                        "record {seq}: round {round} attempt {attempt} started twice"
                    ));
                }
                if open.is_some() {
                    violation(format!(
                        "record {seq}: round {round} attempt {attempt} started while another \
                         attempt was open"
                    ));
                }
                if announced.model != model {
                    violation(format!(
                        "record {seq}: round {round} attempt {attempt} announced a model other \
                         than the last aggregate"
                    ));
                }
                open = Some((announced.clone(), Vec::new()));
            }
            AuditEvent::Judged {
                round,
                attempt,
                peer,
                update,
                rejection,
                ..
            } => {
                if !judged.insert((*round, *attempt, peer.clone())) {
                    violation(format!(
                        "record {seq}: round {round} attempt {attempt}: {} judged twice",
                        show(peer)
                    ));
                }
                match &mut open {
                    Some((announced, accepted))
                        if (announced.round, announced.attempt) == (*round, *attempt) =>
                    {
                        if rejection.is_none() {
                            accepted.push((peer.clone(), update.clone()));
                        }
                    }
                    _ => violation(format!(
                        "record {seq}: a verdict for round {round} attempt {attempt}, which is \
                         not open"
                    )),
                }
                if rejection.is_none() {
                    counts.accepted += 1;
                    counts.accepted_on_record.insert((*round, peer.clone()));
                }
            }
            AuditEvent::Aggregated {
                round,
                model: logged,
                state: logged_state,
                ..
            } => {
                *aggregated.entry(*round).or_insert(0) += 1;
                match open.take() {
                    Some((announced, accepted)) if announced.round == *round => {
                        let peers: BTreeSet<&Vec<u8>> = accepted.iter().map(|(p, _)| p).collect();
                        if peers.len() != accepted.len() {
                            violation(format!(
                                "record {seq}: round {round}: a peer's update counted twice in \
                                 the aggregate"
                            ));
                        }
                        if accepted.len() < config.quorum {
                            violation(format!(
                                "record {seq}: round {round} aggregated {} updates, below the \
                                 quorum of {}",
                                accepted.len(),
                                config.quorum
                            ));
                        }
                        let updates: Vec<ClippedGradientSum> =
                            accepted.iter().map(|(_, u)| u.clone()).collect();
                        match zkfed_aggregation::strategy::aggregate(
                            strategy,
                            &announced.model,
                            &server_state,
                            &updates,
                            learning_rate,
                        ) {
                            Ok(recomputed)
                                if recomputed == (logged.clone(), logged_state.clone()) => {}
                            Ok(_) => violation(format!(
                                "record {seq}: round {round}'s aggregate or server state is not \
                                 {strategy} of the {} accepted updates of attempt {}, each \
                                 counted once",
                                updates.len(),
                                announced.attempt
                            )),
                            Err(e) => violation(format!(
                                "record {seq}: round {round}'s aggregate cannot be recomputed: {e}"
                            )),
                        }
                        counts.aggregated_updates += accepted.len() as u64;
                    }
                    _ => violation(format!(
                        "record {seq}: round {round} aggregated while it was not open"
                    )),
                }
                model = logged.clone();
                server_state = logged_state.clone();
            }
            AuditEvent::Abandoned { round, attempt, .. } => {
                counts.abandoned += 1;
                match open.take() {
                    Some((announced, _))
                        if (announced.round, announced.attempt) == (*round, *attempt) => {}
                    _ => violation(format!(
                        "record {seq}: round {round} attempt {attempt} abandoned while not open"
                    )),
                }
            }
            AuditEvent::RunFailed { round, .. } => {
                violation(format!("record {seq}: the run failed at round {round}"));
            }
            // The chaos run has no privacy budget.
            AuditEvent::BudgetSpent { rounds, .. } => {
                violation(format!("record {seq}: a budget end after round {rounds}"));
            }
            AuditEvent::Refused { .. } => counts.refused += 1,
            AuditEvent::Discarded { .. } => counts.discarded += 1,
            // The chaos run revokes nobody: a revocation would change what is aggregated.
            AuditEvent::Revoked { .. } => violation(format!("record {seq}: a key revoked")),
        }
    }
    for (&round, &times) in &aggregated {
        if times != 1 {
            violation(format!("round {round} aggregated {times} times"));
        }
        if round == 0 || round > rounds {
            violation(format!(
                "round {round} aggregated, outside the run's 1..={rounds}"
            ));
        }
    }
    let missing: Vec<u64> = (1..=rounds)
        .filter(|r| !aggregated.contains_key(r))
        .collect();
    if !missing.is_empty() {
        violation(format!(
            "the run did not complete: rounds {missing:?} never aggregated"
        ));
    }
    match RunState::replay(events) {
        Ok(state) if state.completed_rounds == rounds && !state.failed => {}
        Ok(state) => violation(format!(
            "the coordinator's replay ends with {} rounds completed{}",
            state.completed_rounds,
            if state.failed {
                " and the run failed"
            } else {
                ""
            }
        )),
        Err(e) => violation(format!("the log does not replay: {e}")),
    }
    LogCheck {
        records: events.len(),
        rounds: aggregated.len() as u64,
        aggregated_rounds: aggregated.keys().copied().collect(),
        violations,
        ..counts
    }
}

/// Prints the run's figures and every violation.
fn print_figures(
    report: &ChaosReport,
    options: &ChaosOptions,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let phases = report.by_phase();
    let listed = |coordinator: bool| {
        let counts: Vec<String> = phases
            .iter()
            .filter(|(p, _)| p.of_coordinator() == coordinator && **p != Phase::Churn)
            .map(|(p, n)| format!("{} {n}", p.name()))
            .collect();
        if counts.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts.join(", "))
        }
    };
    let planned = |coordinator: bool| {
        report
            .planned
            .iter()
            .filter(|k| k.phase.of_coordinator() == coordinator)
            .count()
    };
    writeln!(out)?;
    writeln!(
        out,
        "kills of the coordinator: {} of {} planned{}",
        report.kills_of(true),
        planned(true),
        listed(true)
    )?;
    writeln!(
        out,
        "kills of participants: {} of {} planned{}",
        report.kills_of(false) - report.by_phase().get(&Phase::Churn).unwrap_or(&0),
        planned(false),
        listed(false)
    )?;
    let mut churn_rounds: BTreeMap<u64, usize> = BTreeMap::new();
    for kill in report.kills.iter().filter(|k| k.phase == Phase::Churn) {
        *churn_rounds.entry(kill.round).or_insert(0) += 1;
    }
    if !churn_rounds.is_empty() {
        writeln!(
            out,
            "churn: {} participants dropped (SIGKILL) and restarted, by round: {}",
            churn_rounds.values().sum::<usize>(),
            churn_rounds
                .iter()
                .map(|(round, n)| format!("{round}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    let mut back: Vec<f64> = report
        .restart_to_listening
        .iter()
        .map(Duration::as_secs_f64)
        .collect();
    back.sort_by(f64::total_cmp);
    let back = match (back.get(back.len() / 2), back.last()) {
        (Some(median), Some(max)) => {
            format!("; restart to listening: median {median:.2} s, max {max:.2} s")
        }
        _ => String::new(),
    };
    writeln!(
        out,
        "restarts: coordinator {}, participants {}{back}",
        report.coordinator_restarts, report.participant_restarts
    )?;
    let log = &report.log;
    writeln!(
        out,
        "run: {} of {} rounds aggregated, {} attempts ({} abandoned), {} updates accepted ({} in \
         aggregates), {} refusals before verification, {} verifications discarded, {} records",
        log.rounds,
        options.rounds,
        log.attempts,
        log.abandoned,
        log.accepted,
        log.aggregated_updates,
        log.refused,
        log.discarded,
        log.records
    )?;
    writeln!(out, "audit: {}", report.audit)?;
    writeln!(out, "wall time: {:.1} s", report.wall.as_secs_f64())?;
    if report.violations.is_empty() {
        writeln!(
            out,
            "checks passed: every process exited successfully, every round aggregated exactly \
             once, every aggregate is FedAvg of its accepted updates each counted once, no \
             attempt judged a peer twice, every update reported accepted is on record, the \
             audit passed"
        )?;
    } else {
        writeln!(out, "{} VIOLATIONS:", report.violations.len())?;
        for violation in &report.violations {
            writeln!(out, "  - {violation}")?;
        }
    }
    if !report.all_kills_made() {
        writeln!(
            out,
            "only {} of the {} planned kills were made (the run ended first)",
            report.kills.len(),
            report.planned.len()
        )?;
    }
    writeln!(out, "seed {}", report.seed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkfed_air::data::{Standardization, breast_cancer};
    use zkfed_air::spec::ModelSpec;
    use zkfed_coordinator::events::RunConfig;
    use zkfed_protocol::RunParameters;

    fn options(coordinator_kills: usize, participant_kills: usize) -> ChaosOptions {
        ChaosOptions {
            participants: 3,
            rounds: 3,
            coordinator_kills,
            participant_kills,
            churn: 0.0,
            batch: 16,
            seed: None,
            out: "unused".into(),
        }
    }

    #[test]
    fn a_plan_covers_the_phases_and_puts_restart_kills_after_coordinator_kills() {
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let full = plan(&options(20, 6), &mut rng);
            assert_eq!(full.len(), 26);
            for phase in [
                Phase::Enrolment,
                Phase::Proving,
                Phase::Verification,
                Phase::Aggregation,
                Phase::Restart,
            ] {
                assert!(full.iter().any(|k| k.phase == phase), "{phase:?}: {full:?}");
            }
            assert_eq!(full[0].phase, Phase::Enrolment, "{full:?}");
            let short = plan(&options(3, 1), &mut rng);
            assert_eq!(short.iter().filter(|k| k.phase.of_coordinator()).count(), 3);
            assert!(short.iter().any(|k| k.phase == Phase::Restart));
            for list in [&full, &short] {
                assert!(
                    list.windows(2).all(|w| w[0].round <= w[1].round),
                    "{list:?}"
                );
                for (i, kill) in list.iter().enumerate() {
                    if kill.phase == Phase::Restart {
                        assert!(i > 0 && list[i - 1].phase.of_coordinator(), "{list:?}");
                    }
                    // The last round is left for the run to finish in.
                    assert!(kill.round <= 2, "{list:?}");
                }
            }
        }
    }

    #[test]
    fn churn_drops_its_share_of_different_participants_within_the_window() {
        let options = ChaosOptions {
            participants: 64,
            churn: 0.1,
            ..options(0, 0)
        };
        assert_eq!(churn_per_round(&options), 7);
        assert!(
            plan(&options, &mut StdRng::seed_from_u64(1)).is_empty(),
            "churn is drawn, not planned"
        );
        let running: Vec<usize> = (0..64).filter(|k| k % 5 != 0).collect();
        let drawn = draw_churn(&mut StdRng::seed_from_u64(2), &running, 7);
        let victims: BTreeSet<usize> = drawn.iter().map(|&(_, k)| k).collect();
        assert_eq!(victims.len(), 7, "seven different participants");
        assert!(
            victims.iter().all(|k| running.contains(k)),
            "only running ones"
        );
        assert!(
            drawn
                .iter()
                .all(|(after, _)| after.as_millis() < u128::from(CHURN_WINDOW_MS))
        );
        assert_eq!(
            draw_churn(&mut StdRng::seed_from_u64(2), &running[..3], 7).len(),
            3
        );
    }

    #[test]
    fn log_lines_are_matched_by_message_and_fields() {
        let line = "2026-12-03T10:00:00.123456Z  INFO zkfed_coordinator::event_loop: accepted \
                    peer=12D3KooW round=2";
        assert!(says(line, "accepted"));
        assert!(!says(line, "accept"));
        assert!(!says(line, "round aggregated"));
        assert_eq!(round_of(line), Some(2));
        assert_eq!(field(line, "peer"), Some("12D3KooW"));
        let line =
            "2026-12-03T10:00:00Z  INFO zkfed_participant::participation: proving round=3 batch=16";
        assert!(says(line, "proving") && !says(line, "proved"));
        assert!(says(
            "x  INFO t: listening address=/ip4/127.0.0.1/tcp/1",
            "listening"
        ));
    }

    /// A run of `rounds` rounds by two peers, as a coordinator would log it (no proofs:
    /// the check reads verdicts and models, not proof bytes).
    fn honest_log(rounds: u64) -> Vec<AuditEvent> {
        let raw = breast_cancer();
        let d = raw.schema.features.len();
        let peers: Vec<Vec<u8>> = (0..2).map(|_| PeerId::random().to_bytes()).collect();
        let public = RunParameters {
            federation_id: [7; 32],
            schema: raw.schema.clone(),
            model: ModelSpec::Logistic,
            standardization: Standardization::fit(&raw).unwrap(),
            rounds,
            params: zkfed_air::RoundParams {
                clip_norm: zkfed_air::fixed::ONE,
                batch_size: 16,
            },
            learning_rate: zkfed_air::fixed::ONE,
            strategy: Default::default(),
            privacy: None,
        };
        let config = RunConfig {
            public: public.clone(),
            coordinator_key: Vec::new(),
            allow_list: peers.clone(),
            quorum: 2,
            round_deadline_secs: 30,
            max_attempts: 5,
            noise_key_commitment: None,
        };
        let mut events = vec![AuditEvent::RunStarted(config)];
        let mut model = Model::zeros(ModelSpec::Logistic, d);
        for round in 1..=rounds {
            let announced = RoundAnnouncement {
                round,
                attempt: 1,
                model: model.clone(),
                params: public.params,
                seed: [round as u8; 32],
                opened_at_ms: round * 1000,
            };
            events.push(AuditEvent::RoundStarted(announced));
            let mut updates = Vec::new();
            for (k, peer) in peers.iter().enumerate() {
                let update = ClippedGradientSum {
                    values: (0..=d)
                        .map(|j| {
                            if j < d {
                                (k as i64 + 1) << 20
                            } else {
                                -((round as i64) << 20)
                            }
                        })
                        .collect(),
                    examples: 16,
                };
                updates.push(update.clone());
                events.push(AuditEvent::Judged {
                    round,
                    attempt: 1,
                    peer: peer.clone(),
                    update,
                    proof_sha256: [0; 32],
                    rejection: None,
                });
            }
            model = zkfed_aggregation::fedavg_step(&model, &updates, public.learning_rate).unwrap();
            events.push(AuditEvent::Aggregated {
                round,
                at_ms: round * 1000 + 500,
                model: model.clone(),
                state: Default::default(),
                privacy: None,
            });
        }
        events
    }

    #[test]
    fn an_honest_log_passes() {
        let events = honest_log(2);
        let check = check_log(&events, 2);
        assert_eq!(check.violations, Vec::<String>::new());
        assert_eq!((check.rounds, check.attempts, check.accepted), (2, 2, 4));
        assert_eq!(check.aggregated_updates, 4);
        assert_eq!(check.accepted_on_record.len(), 4);
    }

    #[test]
    fn a_round_aggregated_twice_a_peer_judged_twice_or_counted_twice_and_a_missing_round_are_caught()
     {
        // Round 2 aggregated a second time (as a replay after a lost write might).
        let mut events = honest_log(2);
        let last = events.last().unwrap().clone();
        let restart = match &events[events.len() - 4] {
            AuditEvent::RoundStarted(a) => a.clone(),
            _ => unreachable!(),
        };
        events.push(AuditEvent::RoundStarted(restart));
        events.push(last);
        let check = check_log(&events, 2);
        assert!(
            check
                .violations
                .iter()
                .any(|v| v.contains("round 2 aggregated 2 times")),
            "{:?}",
            check.violations
        );
        assert!(
            check.violations.iter().any(|v| v.contains("started twice")),
            "{:?}",
            check.violations
        );

        // One peer's update judged twice in an attempt and counted twice in its aggregate.
        let mut events = honest_log(1);
        let judged = events[2].clone();
        events.insert(3, judged);
        let check = check_log(&events, 1);
        for expected in ["judged twice", "counted twice", "is not fedavg"] {
            assert!(
                check.violations.iter().any(|v| v.contains(expected)),
                "{expected}: {:?}",
                check.violations
            );
        }

        // An aggregate that leaves out an accepted update.
        let mut events = honest_log(1);
        if let AuditEvent::Aggregated { model, .. } = events.last_mut().unwrap() {
            *model = Model::zeros(model.spec, model.num_features());
        }
        let check = check_log(&events, 1);
        assert!(
            check.violations.iter().any(|v| v.contains("is not fedavg")),
            "{:?}",
            check.violations
        );

        // A run that stopped a round short.
        let mut events = honest_log(2);
        events.truncate(events.len() - 1);
        let check = check_log(&events, 2);
        assert!(
            check
                .violations
                .iter()
                .any(|v| v.contains("never aggregated")),
            "{:?}",
            check.violations
        );
    }
}
