//! A short networked simulation: two honest hospitals, one adversary that cycles through
//! every tampering attack over 11 rounds, one peer off the allow-list and one that floods
//! each round with submissions. Every adversarial submission must be rejected for the reason
//! its attack triggers and never aggregated, and the report files must exist.

use zkfed_sim::partition::Partition;
use zkfed_sim::{Options, run};

#[test]
fn every_attack_is_rejected_for_the_right_reason() {
    let out = std::env::temp_dir().join(format!("zkfed-sim-test-{}", std::process::id()));
    let options = Options {
        participants: 2,
        rounds: 11,
        partition: Partition::Iid,
        adversary: vec!["cycle:1".into(), "stranger".into(), "flood".into()],
        batch: 8,
        clip: 1.0,
        learning_rate: 1.0,
        dataset: None,
        label: None,
        synthetic: None,
        no_proofs: false,
        seed: 5,
        out: out.clone(),
        quiet: true,
    };
    let mut printed = Vec::new();
    let report = run(&options, &mut printed).expect("the simulation runs");
    let text = String::from_utf8(printed).unwrap();
    let a = &report.adversarial;
    assert!(a.all_stopped(), "{text}");
    assert_eq!(a.aggregated, 0, "{text}");
    assert_eq!(a.rejected, a.submitted, "{a:?}");
    assert_eq!(a.rejected_for_the_right_reason, a.submitted, "{a:?}");
    // The cycling adversary and the flooder each had one submission verified per round.
    assert_eq!(a.submitted - a.refused_before_verification, 2 * 11, "{a:?}");
    assert_eq!(
        a.reasons.len(),
        11 + 1,
        "every attack kind was mounted: {a:?}"
    );
    // The flood's other copies were turned away unverified.
    let copies = zkfed_sim::flood::FLOOD_COPIES;
    assert_eq!(a.flood.sent, copies * 11, "{a:?}");
    assert_eq!(a.flood.accepted, 0, "{a:?}");
    assert!(a.refused_before_verification >= (copies - 1) * 11, "{a:?}");
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
    assert_eq!(report.rounds.len(), 11);
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
