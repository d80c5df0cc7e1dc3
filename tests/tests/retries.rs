//! A retried round over real libp2p on 127.0.0.1 (the node libraries as tasks): quorum 2,
//! a 3-second deadline. Hospital B stalls while proving the first attempt and is restarted
//! after the coordinator abandons it; the run must still finish. Both hospitals have to
//! prove the second attempt: hospital A had already submitted in the first, and a
//! participant that only proves "new round numbers" would sit out every retry (a livelock).

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};
use zkfed_air::{CommittedDataset, Statement};
use zkfed_coordinator::event_loop::{CoordinatorTelemetry, StarkVerifier};
use zkfed_coordinator::events::AuditEvent;
use zkfed_participant::participation::{Outcome, Prover, StarkProver};
use zkfed_protocol::{RoundAnnouncement, Submission};

use common::{free_port, participant};

const WAIT: Duration = Duration::from_secs(120);

/// A prover that stalls until it is released (or a long timeout), then gives up.
struct Stalled(std::sync::Mutex<std_mpsc::Receiver<()>>);

impl Prover for Stalled {
    fn submission(
        &self,
        _: &RoundAnnouncement,
        _: &Statement,
        _: &CommittedDataset,
    ) -> anyhow::Result<Submission> {
        let release = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = release.recv_timeout(Duration::from_secs(30));
        anyhow::bail!("stalled prover released")
    }
}

type Run = tokio::task::JoinHandle<anyhow::Result<Option<Outcome>>>;

fn start(
    config: zkfed_participant::config::Config,
    prover: Arc<dyn Prover>,
) -> (oneshot::Sender<()>, Run) {
    let (stop, stopped) = oneshot::channel::<()>();
    let run = zkfed_participant::participation::run(config, None, prover, async move {
        let _ = stopped.await;
    });
    (stop, tokio::spawn(run))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_round_reaches_quorum_after_a_participant_restarts() {
    let dir: PathBuf = std::env::temp_dir().join(format!("zkfed-retry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let coordinator_state = dir.join("coordinator");
    let coordinator_peer: PeerId = zkfed_net::peer_id(&coordinator_state).unwrap();
    let port = free_port();
    let address = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{coordinator_peer}");
    let a = participant(&dir, "a", (0, 4), &address);
    let b = participant(&dir, "b", (1, 4), &address);
    let (a_peer, b_peer) = (a.key.public().to_peer_id(), b.key.public().to_peer_id());

    let mut raw = zkfed_coordinator::starter::bundled_config(
        coordinator_state.clone(),
        vec![a_peer.to_string(), b_peer.to_string()],
        format!("/ip4/127.0.0.1/tcp/{port}"),
        1,
        Some(2),
    );
    raw.round_deadline_secs = 3;
    raw.batch_size = 4;
    raw.linger_secs = 2;
    let federation_id = raw.federation_id.clone();
    let (telemetry, mut observed) = mpsc::unbounded_channel();
    let coordinator = tokio::spawn(zkfed_coordinator::event_loop::run(
        raw.resolve().unwrap(),
        Some(telemetry),
        Arc::new(StarkVerifier),
        std::future::pending(),
    ));

    let (_stop_a, run_a) = start(a, Arc::new(StarkProver));
    let (release, stalled) = std_mpsc::channel();
    let (stop_b, run_b) = start(b, Arc::new(Stalled(std::sync::Mutex::new(stalled))));

    // Attempt 1 closes at its deadline with only A's update: abandoned below quorum.
    let abandoned = tokio::time::timeout(WAIT, async {
        while let Some(event) = observed.recv().await {
            if let CoordinatorTelemetry::Closed {
                round: 1,
                aggregated: false,
                ..
            } = event
            {
                return;
            }
        }
        panic!("the coordinator stopped reporting");
    });
    abandoned
        .await
        .expect("attempt 1 is abandoned at its deadline");

    // B is stopped while it stalls, and restarted with an honest prover.
    let _ = stop_b.send(());
    assert!(run_b.await.unwrap().unwrap().is_none(), "B was stopped");
    drop(release);
    let b = participant(&dir, "b", (1, 4), &address);
    let (_stop_b, run_b) = start(b, Arc::new(StarkProver));

    // A was accepted in attempt 1 and again in the retry that aggregated; B only in that
    // retry (a slow machine may need more than one retry: every attempt counts).
    for (name, run, accepted) in [("A", run_a, 2), ("B", run_b, 1)] {
        let outcome = tokio::time::timeout(WAIT, run)
            .await
            .unwrap_or_else(|_| panic!("{name} did not finish: the retry never reached quorum"))
            .unwrap()
            .unwrap()
            .expect("the run ended, not a shutdown");
        assert_eq!(outcome.rounds, 1, "{name}");
        assert!(outcome.accepted >= accepted, "{name}: {outcome:?}");
        // The final model is written to the run's directory in the hospital's state.
        let state = dir.join(name.to_lowercase());
        let written = std::fs::read(state.join(&federation_id).join("final_model.json")).unwrap();
        let (file, written) = zkfed_protocol::model_file::ModelFile::from_json(&written).unwrap();
        assert_eq!(written, outcome.model, "{name}");
        assert_eq!(file.rounds, 1, "{name}");
    }
    tokio::time::timeout(WAIT, coordinator)
        .await
        .expect("the coordinator finishes after its linger")
        .unwrap()
        .unwrap();

    let store = coordinator_state.join("state.redb");
    let audit =
        zkfed_coordinator::audit::audit_store(&store, Some(&coordinator_peer), None).unwrap();
    assert!(audit.is_ok(), "{audit:?}");
    let records = zkfed_coordinator::log::StoredLog::open(&store)
        .unwrap()
        .records()
        .unwrap();
    let a_attempts: Vec<u32> = records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::Judged {
                attempt,
                peer,
                rejection: None,
                ..
            } if *peer == a_peer.to_bytes() => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(a_attempts.first(), Some(&1), "A was accepted in attempt 1");
    assert!(
        a_attempts.len() >= 2,
        "A proved the retry too: {a_attempts:?}"
    );
    assert!(
        records
            .iter()
            .any(|r| matches!(r.event, AuditEvent::Aggregated { round: 1, .. }))
    );
    std::fs::remove_dir_all(dir).unwrap();
}
