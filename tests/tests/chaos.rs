//! Kill -9 anywhere, the short version: the real coordinator and three participant
//! processes on 127.0.0.1 run three rounds while `zkfed_sim::chaos` (the library behind
//! `zkfed-chaos`) kills the coordinator three times with SIGKILL (one kill within 100 ms
//! of its restart) and a participant once, mid-proof or mid-submit, and drops one
//! participant at a random moment of each round but the last (`--churn`), restarting each
//! at once. The run must finish: every process exits successfully, every round is aggregated
//! exactly once, each aggregate is FedAvg of its accepted updates each counted once, no
//! peer is judged twice in an attempt, every update reported accepted is on record, and
//! `zkfed-coordinator audit verify` passes. No timing is asserted.
//!
//! Needs the release binaries: `cargo build --release -p zkfed-coordinator -p
//! zkfed-participant` (or `cargo test --release --workspace`, which builds them).

use zkfed_sim::chaos::{ChaosOptions, Phase, run};

#[test]
fn a_run_survives_sigkills_of_the_coordinator_and_a_participant() {
    let out = std::env::temp_dir().join(format!("zkfed-chaos-{}", std::process::id()));
    let options = ChaosOptions {
        participants: 3,
        rounds: 3,
        coordinator_kills: 3,
        participant_kills: 1,
        churn: 0.3,
        batch: 16,
        seed: Some(3),
        out: out.clone(),
    };
    let mut printed = Vec::new();
    let report = run(&options, &mut printed);
    let printed = String::from_utf8_lossy(&printed);
    let report = report.unwrap_or_else(|e| panic!("the chaos run failed: {e:#}\n{printed}"));
    println!("{printed}");
    assert!(report.violations.is_empty(), "{printed}");
    assert!(report.all_kills_made(), "{printed}");
    assert_eq!(report.kills_of(true), 3, "{printed}");
    let churned = report.by_phase().get(&Phase::Churn).copied().unwrap_or(0);
    assert_eq!(report.kills_of(false) - churned, 1, "{printed}");
    assert!(churned >= 1, "a participant dropped by churn: {printed}");
    assert!(
        report.kills.iter().any(|k| k.phase == Phase::Restart),
        "{printed}"
    );
    assert_eq!(report.coordinator_restarts, 3, "{printed}");
    assert_eq!(report.participant_restarts, 1 + churned, "{printed}");
    assert_eq!(report.log.rounds, 3, "{printed}");
    assert!(report.audit.contains("audit passed"), "{printed}");
    std::fs::remove_dir_all(out).unwrap();
}
