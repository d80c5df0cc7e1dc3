//! A short networked simulation: two honest hospitals, one adversary that cycles through
//! every tampering attack (one round each), one peer off the allow-list and one that floods
//! each round with submissions. Every adversarial submission must be rejected for the reason
//! its attack triggers and never aggregated, and the report files must exist.

use std::path::PathBuf;

use zkfed_sim::adversary::Attack;
use zkfed_sim::partition::Partition;
use zkfed_sim::{DatasetChoice, Options, run};

/// One round per tampering attack.
const ROUNDS: u64 = Attack::ALL.len() as u64;

fn small_run(name: &str) -> Options {
    Options {
        participants: 2,
        rounds: ROUNDS,
        partition: Partition::Iid,
        adversary: vec!["cycle:1".into(), "stranger".into(), "flood".into()],
        batch: 8,
        clip: 1.0,
        learning_rate: 1.0,
        strategy: "fedavg".into(),
        noise_multiplier: None,
        sampling_rate: None,
        dp_epsilon: None,
        dp_delta: 1e-5,
        model: "logistic".into(),
        dataset: DatasetChoice::BreastCancer,
        label: None,
        synthetic: None,
        no_proofs: false,
        processes: false,
        seed: 5,
        out: std::env::temp_dir().join(format!("zkfed-sim-{name}-{}", std::process::id())),
        quiet: true,
    }
}

#[test]
fn every_attack_is_rejected_for_the_right_reason() {
    let options = small_run("attacks");
    let out = options.out.clone();
    let mut printed = Vec::new();
    let report = run(&options, &mut printed).expect("the simulation runs");
    let text = String::from_utf8(printed).unwrap();
    let a = &report.adversarial;
    assert!(a.all_stopped(), "{text}");
    assert_eq!(a.aggregated, 0, "{text}");
    assert_eq!(a.rejected, a.submitted, "{a:?}");
    assert_eq!(a.rejected_for_the_right_reason, a.submitted, "{a:?}");
    // The cycling adversary and the flooder each had one submission verified per round,
    // except the inflated example count, refused for its shape before verification.
    let rounds = ROUNDS as usize;
    assert_eq!(
        a.submitted - a.refused_before_verification,
        2 * rounds - 1,
        "{a:?}"
    );
    assert_eq!(
        a.reasons.len(),
        Attack::ALL.len() + 1,
        "every attack kind was mounted: {a:?}"
    );
    // The flood's other copies were turned away unverified.
    let copies = zkfed_sim::flood::FLOOD_COPIES;
    assert_eq!(a.flood.sent, copies * rounds, "{a:?}");
    assert_eq!(a.flood.accepted, 0, "{a:?}");
    assert!(
        a.refused_before_verification >= (copies - 1) * rounds,
        "{a:?}"
    );
    // The stranger was kept out at the connection and left no trace in the log.
    assert!(a.connections_refused > 0, "{a:?}");
    assert_eq!(a.stranger_records, 0, "{a:?}");
    assert!(
        report
            .rounds
            .iter()
            .all(|r| r.refused >= copies - 1 && r.bytes_in > 0 && r.bytes_out > 0),
        "{text}"
    );
    assert_eq!(report.rounds.len(), rounds);
    assert!(report.rounds.iter().all(|r| r.accepted == 2), "{text}");
    assert!(report.final_accuracy > 0.85, "{text}");
    // The trusting baseline ran too: it accepts the cheats, and proving costs time.
    assert!(
        report.rounds.iter().all(|r| r.baseline_accuracy.is_some()),
        "{text}"
    );
    assert!(report.overhead_ratio.is_some_and(|r| r > 1.0), "{text}");
    for file in ["report.json", "rounds.csv", "accuracy.svg"] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    std::fs::remove_dir_all(out).unwrap();
}

/// The same federation with the coordinator and honest hospitals as the real binaries,
/// each its own process (built by `cargo test --release --workspace` next to this test).
#[test]
fn honest_hospitals_and_the_coordinator_run_as_processes() {
    let options = Options {
        rounds: 3,
        adversary: vec!["cycle:1".into(), "stranger".into()],
        processes: true,
        ..small_run("processes")
    };
    let out: PathBuf = options.out.clone();
    let mut printed = Vec::new();
    let report = run(&options, &mut printed).expect("the simulation runs");
    let text = String::from_utf8(printed).unwrap();
    assert_eq!(report.rounds.len(), 3, "{text}");
    assert!(report.adversarial.all_stopped(), "{text}");
    assert_eq!(report.adversarial.submitted, 3, "{text}");
    assert!(report.adversarial.connections_refused > 0, "{text}");
    for row in &report.rounds {
        assert_eq!(row.accepted, 2, "{text}");
        // Proving times came from the participant processes' event logs.
        assert!(row.prove_p50 > 0.0 && row.bytes_in > 0, "{text}");
    }
    let peak = report.peak_memory.as_ref().expect("Linux reports VmHWM");
    assert_eq!(peak.of, "the coordinator process");
    assert!(peak.bytes > 1 << 20, "{peak:?}");
    for file in [
        "coordinator.log",
        "coordinator.events.jsonl",
        "hospital-0.events.jsonl",
    ] {
        assert!(out.join("nodes").join(file).exists(), "{file} missing");
    }
    std::fs::remove_dir_all(out).unwrap();
}

/// A softmax federation on the bundled digits: two honest hospitals and an adversary that
/// mounts every tampering attack once (the taller trace included); each is rejected for
/// its reason, the model file names the softmax, and training moves the accuracy well
/// above chance (10%).
#[test]
fn every_attack_on_a_softmax_run_over_digits_is_rejected() {
    let options = Options {
        model: "softmax".into(),
        dataset: DatasetChoice::Digits,
        adversary: vec!["cycle:1".into()],
        learning_rate: 4.0,
        ..small_run("digits")
    };
    let out = options.out.clone();
    let mut printed = Vec::new();
    let report = run(&options, &mut printed).expect("the simulation runs");
    let text = String::from_utf8(printed).unwrap();
    assert!(
        report
            .model
            .starts_with("softmax (10 classes), 650 parameters"),
        "{text}"
    );
    let a = &report.adversarial;
    assert!(a.all_stopped(), "{text}");
    assert_eq!(a.rejected_for_the_right_reason, a.submitted, "{a:?}");
    assert_eq!(
        a.reasons.len(),
        Attack::ALL.len(),
        "every attack was mounted: {a:?}"
    );
    assert!(report.rounds.iter().all(|r| r.accepted == 2), "{text}");
    assert!(report.final_accuracy > 0.5, "{text}");
    let model = report.final_model.as_ref().expect("a final model");
    assert_eq!(
        model.spec,
        zkfed_air::spec::ModelSpec::Softmax { classes: 10 }
    );
    std::fs::remove_dir_all(out).unwrap();
}

/// Federations under a server optimizer and under a robust rule, with an adversary whose
/// cheats are all rejected: every round aggregates the honest updates, the coordinator's
/// store audits (which recomputes each aggregate and server state with the chosen rule),
/// and the model learns.
#[test]
fn federations_under_fedadam_and_multi_krum_aggregate_every_round_and_learn() {
    for (strategy, canonical) in [
        (
            "fedadam:eta=0.05",
            "fedadam:eta=0.05,beta1=0.9,beta2=0.99,tau=0.00002",
        ),
        ("multi-krum:f=1,m=3", "multi-krum:f=1,m=3"),
    ] {
        let name = strategy.split(':').next().unwrap();
        let options = Options {
            participants: 5,
            rounds: 3,
            adversary: vec!["cycle:1".into()],
            strategy: strategy.into(),
            ..small_run(name)
        };
        let out = options.out.clone();
        let mut printed = Vec::new();
        let report = run(&options, &mut printed).expect("the simulation runs");
        let text = String::from_utf8(printed).unwrap();
        assert_eq!(report.strategy, canonical, "{text}");
        assert!(
            text.contains(&format!("aggregation: {canonical}")),
            "{text}"
        );
        assert_eq!(report.rounds.len(), 3, "{text}");
        assert!(report.rounds.iter().all(|r| r.accepted == 5), "{text}");
        let a = &report.adversarial;
        assert_eq!(a.rejected_for_the_right_reason, a.submitted, "{a:?}");
        assert!(report.final_accuracy > 0.8, "{strategy}: {text}");
        let store = out.join("nodes").join("coordinator").join("state.redb");
        let summary = zkfed_coordinator::audit::audit_store(&store, None, None)
            .unwrap()
            .unwrap_or_else(|d| panic!("{strategy}: the store does not audit: {d}"));
        assert_eq!(summary.rounds, 3, "{strategy}");
        std::fs::remove_dir_all(out).unwrap();
    }
}

/// A private federation over libp2p: hidden-sampling proofs verify, every aggregate records
/// the ε spent (increasing, in the table and the CSV), the budget ends the run before its
/// last round, and the store audits with the escrowed noise key (noise recomputed) and
/// without it (noise counted as unchecked).
#[test]
fn a_private_federation_spends_its_budget_and_audits() {
    let options = Options {
        participants: 3,
        rounds: 6,
        adversary: vec!["none".into()],
        noise_multiplier: Some(2.0),
        sampling_rate: Some(0.2),
        // Room for some rounds of z = 2 at q = 0.2 (ε ≈ 0.91 after one), not for six
        // (ε ≈ 1.58).
        dp_epsilon: Some(1.3),
        ..small_run("private")
    };
    let out = options.out.clone();
    let mut printed = Vec::new();
    let report = run(&options, &mut printed).expect("the simulation runs");
    let text = String::from_utf8(printed).unwrap();
    let rounds = report.rounds.len();
    assert!((1..6).contains(&rounds), "{text}");
    let spent: Vec<f64> = report.rounds.iter().map(|r| r.epsilon.unwrap()).collect();
    assert!(
        spent.windows(2).all(|w| w[0] < w[1]) && spent[rounds - 1] <= 1.3,
        "{text}"
    );
    assert!(report.rounds.iter().all(|r| r.accepted == 3), "{text}");
    let privacy = report.privacy.as_deref().unwrap();
    assert!(
        privacy.contains(&format!("the budget ended the run after round {rounds}")),
        "{text}"
    );
    assert!(text.contains(&format!("privacy: {privacy}")), "{text}");
    let csv = std::fs::read_to_string(out.join("rounds.csv")).unwrap();
    assert!(csv.lines().next().unwrap().ends_with(",epsilon"));
    let coordinator = out.join("nodes").join("coordinator");
    let store = coordinator.join("state.redb");
    let keyless = zkfed_coordinator::audit::audit_store(&store, None, None)
        .unwrap()
        .unwrap_or_else(|d| panic!("the store does not audit: {d}"));
    assert_eq!(keyless.unchecked_noise, rounds as u64);
    let key = zkfed_coordinator::privacy::NoiseKey::load(&coordinator.join("noise.key")).unwrap();
    let keyed = zkfed_coordinator::audit::audit_store(&store, None, Some(&key))
        .unwrap()
        .unwrap_or_else(|d| panic!("the store does not audit with its noise key: {d}"));
    assert_eq!((keyed.rounds, keyed.unchecked_noise), (rounds as u64, 0));
    std::fs::remove_dir_all(out).unwrap();
}
