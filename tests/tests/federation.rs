//! End to end over real processes on 127.0.0.1: a coordinator and three participants run
//! three rounds on the bundled data. A participant is killed while proving round 2, the
//! coordinator is killed (SIGKILL) after accepting a round-2 update and restarted; the run
//! still completes, no accepted update is lost, no round is aggregated twice, the offline
//! audit passes, and a peer that is not on the allow-list is refused.
//!
//! Needs the release binaries, which `cargo test --release --workspace` builds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use zkfed_coordinator::config::RawConfig;
use zkfed_coordinator::events::AuditEvent;
use zkfed_coordinator::log::StoredLog;

use common::{bin, free_port};

const WAIT: Duration = Duration::from_secs(120);

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A child process whose stderr goes to a log file; killed (SIGKILL) when dropped.
struct Node {
    child: Child,
    log: PathBuf,
}

impl Node {
    fn spawn(dir: &Path, name: &str, program: &Path, args: &[&str]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawns");
        Self { child, log }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains a line with every one of `parts`.
    fn wait_for(&self, parts: &[&str]) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self
                .text()
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return line.to_string();
            }
            assert!(
                start.elapsed() < WAIT,
                "{} never logged {parts:?}:\n{}",
                self.log.display(),
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for a clean exit.
    fn finish(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "{} exited with {status}:\n{}",
                    self.log.display(),
                    self.text()
                );
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "{} did not finish:\n{}",
                self.log.display(),
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn federation_survives_a_dead_participant_and_a_killed_coordinator() {
    let dir = std::env::temp_dir().join(format!("zkfed-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (coordinator_bin, participant_bin) = (bin("zkfed-coordinator"), bin("zkfed-participant"));
    let d = |p: &str| dir.join(p).to_str().unwrap().to_string();

    let mut peers = Vec::new();
    for k in 0..3 {
        output(Command::new(&participant_bin).args([
            "export-bundled",
            "--shard",
            &k.to_string(),
            "--of",
            "3",
            "--out",
            &d(&format!("h{k}.csv")),
        ]));
        peers.push(output(Command::new(&participant_bin).args([
            "peer-id",
            "--state",
            &d(&format!("p{k}")),
        ])));
    }
    let port = free_port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let mut init = Command::new(&coordinator_bin);
    init.args([
        "init",
        "--out",
        &d("coordinator.toml"),
        "--state",
        &d("coordinator"),
        "--listen",
        &listen,
    ]);
    init.args(["--rounds", "3", "--quorum", "2", "--allow"])
        .args(&peers);
    output(&mut init);
    // Short deadlines and small batches keep the test quick.
    let mut config = RawConfig::load(&dir.join("coordinator.toml")).unwrap();
    config.round_deadline_secs = 8;
    config.linger_secs = 3;
    config.batch_size = 16;
    std::fs::write(
        dir.join("coordinator.toml"),
        toml::to_string(&config).unwrap(),
    )
    .unwrap();
    let coordinator_peer =
        output(Command::new(&coordinator_bin).args(["peer-id", "--state", &d("coordinator")]));
    let address = format!("{listen}/p2p/{coordinator_peer}");

    let run_coordinator = |name: &str| {
        Node::spawn(
            &dir,
            name,
            &coordinator_bin,
            &["run", "--config", &d("coordinator.toml")],
        )
    };
    let run_participant = |name: &str, csv: &str, state: &str| {
        Node::spawn(
            &dir,
            name,
            &participant_bin,
            &[
                "run",
                "--coordinator",
                &address,
                "--dataset",
                &d(csv),
                "--state",
                &d(state),
            ],
        )
    };

    let mut coordinator = run_coordinator("coordinator-1");
    coordinator.wait_for(&["listening"]);
    let mut participants: Vec<Node> = (0..3)
        .map(|k| run_participant(&format!("p{k}"), &format!("h{k}.csv"), &format!("p{k}")))
        .collect();

    coordinator.wait_for(&["round aggregated", "round=1"]);
    participants[2].wait_for(&["proving", "round=2"]);
    participants[2].kill();
    let line = coordinator.wait_for(&["accepted", "round=2"]);
    let survivor = peers
        .iter()
        .find(|p| line.contains(p.as_str()))
        .expect("accepted peer named")
        .clone();
    coordinator.kill(); // SIGKILL, mid-round

    let mut coordinator = run_coordinator("coordinator-2");
    coordinator.wait_for(&["listening"]);
    let mut stranger = run_participant("stranger", "h0.csv", "stranger");
    coordinator.wait_for(&["refused an incoming connection"]);
    stranger.kill();

    for p in &mut participants[..2] {
        p.finish();
        p.wait_for(&["run finished", "rounds=3"]);
    }
    coordinator.finish();

    let audit = Command::new(&coordinator_bin)
        .args([
            "audit",
            "verify",
            "--state",
            &d("coordinator"),
            "--coordinator",
            &coordinator_peer,
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.status.success() && report.contains("audit passed") && report.contains("3 rounds"),
        "{report}"
    );

    let records = StoredLog::open(&dir.join("coordinator/state.redb"))
        .unwrap()
        .records()
        .unwrap();
    let aggregated: Vec<u64> = records
        .iter()
        .filter_map(|r| match r.event {
            AuditEvent::Aggregated { round, .. } => Some(round),
            _ => None,
        })
        .collect();
    assert_eq!(
        aggregated,
        vec![1, 2, 3],
        "each round aggregated exactly once"
    );
    let survivor: PeerId = survivor.parse().unwrap();
    let kept = records.iter().any(|r| {
        matches!(&r.event, AuditEvent::Judged { round: 2, peer, rejection: None, .. } if *peer == survivor.to_bytes())
    });
    assert!(
        kept,
        "the update accepted before the kill is still on record"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
