//! Round attempts through the [`Ledger`] with real proofs: an attempt abandoned at its
//! deadline is retried under the next attempt number with a fresh seed; a peer accepted in
//! both attempts keeps both proofs; a verification that finishes after its attempt closed
//! is discarded with its reason on record; an aggregate outside the model's range abandons
//! the attempt instead of stopping the coordinator, also after a restart. The audit passes
//! on every log.

mod common;

use std::path::{Path, PathBuf};

use common::{Hospital, bundled_hospitals, refusals, resign, run_config};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use zkfed_air::fixed::ONE;
use zkfed_coordinator::audit::{audit, audit_store};
use zkfed_coordinator::events::{AuditEvent, RunConfig, unix_ms};
use zkfed_coordinator::ledger::Ledger;
use zkfed_coordinator::log::StoredLog;
use zkfed_protocol::{Rejection, Submission, Verdict};

/// A store in a fresh directory, two enrolled hospitals, quorum 2, and its configuration.
struct Federation {
    dir: PathBuf,
    coordinator: Keypair,
    config: RunConfig,
    hospitals: Vec<Hospital>,
    ledger: Ledger,
}

impl Federation {
    fn new(name: &str, learning_rate: i64, clip_norm: i64) -> Self {
        let dir = std::env::temp_dir().join(format!("zkfed-retries-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (hospitals, schema, standardization) = bundled_hospitals(2, 40, 11);
        let coordinator = Keypair::generate_ed25519();
        let config = run_config(
            9,
            1,
            (clip_norm, learning_rate),
            (&schema, &standardization),
            &coordinator,
            &hospitals,
        );
        let mut ledger = Ledger::open(&store(&dir), coordinator.clone(), config.clone()).unwrap();
        for h in &hospitals {
            let signed = h.signed_enrolment(&config);
            ledger.enrol(&h.peer(), &signed).unwrap().unwrap();
        }
        Self {
            dir,
            coordinator,
            config,
            hospitals,
            ledger,
        }
    }

    /// Hospital `k`'s honest submission for the attempt now open.
    fn prove(&self, k: usize) -> Submission {
        self.hospitals[k].honest_submission(&self.ledger)
    }

    /// Admits, verifies and judges a submission of hospital `k`, as the event loop does.
    fn submit(&mut self, k: usize, submission: &Submission) -> Verdict {
        let peer = self.hospitals[k].peer();
        let statement = self.ledger.admit(&peer, submission).unwrap();
        let outcome = zkfed_air::verify(&statement, &submission.update, &submission.proof)
            .map_err(Rejection::from);
        self.ledger.judge(&peer, submission, outcome).unwrap()
    }

    fn start(&mut self, seed: u8) {
        assert!(
            self.ledger
                .start_round_if_due([seed; 32], unix_ms())
                .unwrap()
        );
    }

    /// The offline audit of the store (with the ledger closed, as an auditor reads it).
    fn audit(self) -> (Vec<AuditEvent>, PathBuf) {
        let Federation {
            dir,
            coordinator,
            ledger,
            ..
        } = self;
        drop(ledger);
        let me = coordinator.public().to_peer_id();
        let verdict = audit_store(&store(&dir), Some(&me), None).unwrap();
        assert!(verdict.is_ok(), "{verdict:?}");
        let stored = StoredLog::open(&store(&dir)).unwrap();
        let events = stored
            .records()
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect();
        (events, dir)
    }
}

/// A moment after the 60-second deadline of an attempt opened now.
fn past_the_deadline() -> u64 {
    unix_ms() + 61_000
}

fn store(dir: &Path) -> PathBuf {
    dir.join("state.redb")
}

#[test]
fn an_abandoned_attempt_is_retried_and_a_peer_accepted_in_both_keeps_both_proofs() {
    let mut f = Federation::new("both", ONE, ONE);
    f.start(1);
    let first = f.prove(0);
    assert_eq!((first.round, first.attempt), (1, 1));
    assert!(f.submit(0, &first).accepted());
    // Hospital 1 never answers: the deadline abandons attempt 1 below quorum.
    let closed = f.ledger.close_round_if_due(past_the_deadline()).unwrap();
    assert!(matches!(
        closed,
        Some(AuditEvent::Abandoned {
            round: 1,
            attempt: 1,
            ..
        })
    ));
    f.start(2);
    let open = &f.ledger.state().open.as_ref().unwrap().announcement;
    assert_eq!((open.round, open.attempt, open.seed), (1, 2, [2; 32]));
    // The same peer proves the new attempt and is accepted again, not refused as a
    // duplicate; the old attempt's submission is refused.
    let second = f.prove(0);
    assert_eq!(second.attempt, 2);
    let peer = f.hospitals[0].peer();
    assert!(matches!(
        f.ledger.admit(&peer, &first),
        Err(Rejection::WrongRound {
            open_attempt: 2,
            submitted_attempt: 1,
            ..
        })
    ));
    // A malformed update is refused before verification, and never kept.
    let mut wide = second.clone();
    wide.update.values.extend(vec![0; 1 << 16]);
    assert!(matches!(
        f.ledger.admit(&peer, &wide),
        Err(Rejection::UpdateShape { what, .. }) if what == "parameters"
    ));
    let mut inflated = second.clone();
    inflated.update.examples *= 2;
    assert!(matches!(
        f.ledger.admit(&peer, &inflated),
        Err(Rejection::UpdateShape { what, .. }) if what == "examples"
    ));
    assert!(f.submit(0, &second).accepted());
    let other = f.prove(1);
    assert!(f.submit(1, &other).accepted());
    assert!(matches!(
        f.ledger.close_round_if_due(unix_ms()).unwrap(),
        Some(AuditEvent::Aggregated { round: 1, .. })
    ));
    // Both of hospital 0's accepted proofs are kept, each under its own attempt.
    assert_eq!(
        f.ledger.proof(1, 1, &peer).unwrap(),
        Some(first.proof.clone())
    );
    assert_eq!(
        f.ledger.proof(1, 2, &peer).unwrap(),
        Some(second.proof.clone())
    );
    assert_ne!(first.proof, second.proof);
    let (events, dir) = f.audit();
    let judged_attempts: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            AuditEvent::Judged { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(judged_attempts, [1, 2, 2]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_verification_finishing_after_its_attempt_closed_is_discarded_with_its_reason() {
    let mut f = Federation::new("late", ONE, ONE);
    f.start(1);
    let late = f.prove(0);
    let peer = f.hospitals[0].peer();
    let statement = f.ledger.admit(&peer, &late).unwrap();
    // While it is being verified, attempt 1 is abandoned and attempt 2 opens.
    f.ledger.close_round_if_due(past_the_deadline()).unwrap();
    f.start(2);
    let outcome = zkfed_air::verify(&statement, &late.update, &late.proof);
    assert_eq!(outcome, Ok(()), "the proof itself is valid for attempt 1");
    let verdict = f.ledger.judge(&peer, &late, Ok(())).unwrap();
    assert!(!verdict.accepted(), "{verdict:?}");
    assert!(matches!(
        verdict.rejection,
        Some(Rejection::WrongRound {
            open_attempt: 2,
            submitted_attempt: 1,
            ..
        })
    ));
    // Nothing was judged in attempt 2 on its account.
    let open = f.ledger.state().open.as_ref().unwrap();
    assert!(open.judged.is_empty() && open.accepted.is_empty());
    // The hospital proves attempt 2 and is judged normally.
    let retry = f.prove(0);
    assert!(f.submit(0, &retry).accepted());
    // The discard is on the signed record.
    let (events, dir) = f.audit();
    let discarded = events.into_iter().any(|e| {
        matches!(
            e,
            AuditEvent::Discarded {
                round: 1,
                attempt: 1,
                rejection: Rejection::WrongRound { .. },
                ..
            }
        )
    });
    assert!(discarded, "the discarded verification is recorded");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_aggregate_outside_the_range_abandons_the_attempt_and_a_restart_keeps_running() {
    // A learning rate × clip norm far beyond what a configuration file accepts, so one
    // FedAvg step leaves the fixed-point range of the model.
    let mut f = Federation::new("range", 4096 * ONE, ONE);
    f.start(1);
    for k in 0..2 {
        let submission = f.prove(k);
        assert!(f.submit(k, &submission).accepted());
    }
    let closed = f.ledger.close_round_if_due(unix_ms()).unwrap();
    match &closed {
        Some(AuditEvent::Abandoned {
            round: 1,
            attempt: 1,
            reason,
            ..
        }) => assert!(reason.contains("aggregate cannot be formed"), "{reason}"),
        other => panic!("expected the attempt to be abandoned, got {other:?}"),
    }
    // A restart replays the abandonment and goes on with attempt 2.
    let Federation {
        dir,
        coordinator,
        config,
        hospitals,
        ledger,
    } = f;
    drop(ledger);
    let ledger = Ledger::open(&store(&dir), coordinator.clone(), config.clone()).unwrap();
    assert_eq!(ledger.state().next_attempt, 2);
    let mut f = Federation {
        dir,
        coordinator,
        config,
        hospitals,
        ledger,
    };
    f.start(2);
    assert_eq!(
        f.ledger.state().open.as_ref().unwrap().announcement.attempt,
        2
    );
    let (_, dir) = f.audit();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_same_submission_sent_again_gets_its_recorded_verdict_also_after_a_restart() {
    let mut f = Federation::new("again", ONE, ONE);
    f.start(1);
    let peer = f.hospitals[0].peer();
    let sent = f.prove(0);
    assert_eq!(
        f.ledger.recorded_verdict(&peer, &sent),
        None,
        "not judged yet"
    );
    let verdict = f.submit(0, &sent);
    assert!(verdict.accepted());
    // The same request again (a timeout, say): the verdict on record, not "duplicate".
    assert_eq!(
        f.ledger.recorded_verdict(&peer, &sent),
        Some(verdict.clone())
    );
    // Another submission from the same peer in the same attempt is still a duplicate.
    let mut other = sent.clone();
    other.update.values[0] += 1;
    assert_eq!(f.ledger.recorded_verdict(&peer, &other), None);
    assert!(matches!(
        f.ledger.admit(&peer, &other),
        Err(Rejection::Duplicate { round: 1 })
    ));
    // Refusals are recorded once per peer and attempt, and a busy one not at all.
    let duplicate = Rejection::Duplicate { round: 1 };
    for _ in 0..3 {
        f.ledger.refuse(&peer, Some(&other), &duplicate).unwrap();
        f.ledger
            .refuse(&peer, Some(&other), &Rejection::Busy)
            .unwrap();
    }
    // After the round closes and the coordinator restarts, the verdict is still on record.
    let second = f.prove(1);
    assert!(f.submit(1, &second).accepted());
    assert!(matches!(
        f.ledger.close_round_if_due(unix_ms()).unwrap(),
        Some(AuditEvent::Aggregated { round: 1, .. })
    ));
    let Federation {
        dir,
        coordinator,
        config,
        ledger,
        ..
    } = f;
    drop(ledger);
    let ledger = Ledger::open(&store(&dir), coordinator, config).unwrap();
    assert_eq!(ledger.recorded_verdict(&peer, &sent), Some(verdict));
    drop(ledger);
    let records = StoredLog::open(&store(&dir)).unwrap().records().unwrap();
    let refusals = refusals(&records);
    assert_eq!(refusals, [duplicate]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_deadline_runs_from_the_recorded_opening_across_a_restart_and_an_early_close_is_caught() {
    let mut f = Federation::new("deadline", ONE, ONE);
    let opened = unix_ms();
    assert!(f.ledger.start_round_if_due([1; 32], opened).unwrap());
    let first = f.prove(0);
    assert!(f.submit(0, &first).accepted());
    // Hospital 1 is still out: nothing closes before the 60-second deadline.
    assert_eq!(f.ledger.close_round_if_due(opened + 59_000).unwrap(), None);
    // The coordinator restarts: the deadline still runs from the recorded opening, it is
    // not reset by the restart.
    let Federation {
        dir,
        coordinator,
        config,
        ledger,
        ..
    } = f;
    drop(ledger);
    let mut ledger = Ledger::open(&store(&dir), coordinator.clone(), config.clone()).unwrap();
    let announced = &ledger.state().open.as_ref().unwrap().announcement;
    assert_eq!(announced.opened_at_ms, opened);
    assert_eq!(ledger.close_round_if_due(opened + 59_999).unwrap(), None);
    let closed = ledger.close_round_if_due(opened + 60_000).unwrap();
    assert!(
        matches!(closed, Some(AuditEvent::Abandoned { at_ms, .. }) if at_ms == opened + 60_000)
    );
    drop(ledger);
    let me = coordinator.public().to_peer_id();
    assert!(audit_store(&store(&dir), Some(&me), None).unwrap().is_ok());

    // A coordinator that closes the attempt early (re-signing its log) is caught.
    let stored = StoredLog::open(&store(&dir)).unwrap();
    let mut records = stored.records().unwrap();
    let lookup =
        |round: u64, attempt: u32, peer: &PeerId| stored.proof(round, attempt, peer).ok().flatten();
    let last = records.len() - 1;
    if let AuditEvent::Abandoned { at_ms, .. } = &mut records[last].event {
        *at_ms = opened + 1_000;
    }
    resign(&mut records, &coordinator);
    let d = audit(&records, lookup, Some(&me), None).unwrap_err();
    assert_eq!(d.seq, last as u64, "{d}");
    assert!(d.what.contains("before its deadline"), "{d}");
    drop(stored);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_discarded_admissible_submission_and_time_running_backwards_are_caught() {
    let mut f = Federation::new("forged", ONE, ONE);
    f.start(1);
    let first = f.prove(0);
    assert!(f.submit(0, &first).accepted());
    f.ledger.close_round_if_due(past_the_deadline()).unwrap();
    f.start(2);
    let Federation {
        dir,
        coordinator,
        hospitals,
        ledger,
        ..
    } = f;
    drop(ledger);
    let me = coordinator.public().to_peer_id();
    let stored = StoredLog::open(&store(&dir)).unwrap();
    let records = stored.records().unwrap();
    let lookup =
        |round: u64, attempt: u32, peer: &PeerId| stored.proof(round, attempt, peer).ok().flatten();
    assert!(audit(&records, lookup, Some(&me), None).is_ok());

    // Hospital 1's submission to the open attempt 2 "discarded" instead of judged.
    let mut forged = records.clone();
    let mut discarded = forged.last().unwrap().clone();
    discarded.event = AuditEvent::Discarded {
        round: 1,
        attempt: 2,
        peer: hospitals[1].peer().to_bytes(),
        rejection: Rejection::NoOpenRound,
    };
    forged.push(discarded);
    resign(&mut forged, &coordinator);
    let d = audit(&forged, lookup, Some(&me), None).unwrap_err();
    assert!(d.what.contains("discarded instead of judged"), "{d}");

    // Attempt 2 back-dated before attempt 1 closed.
    let mut forged = records.clone();
    let last = forged.len() - 1;
    if let AuditEvent::RoundStarted(announcement) = &mut forged[last].event {
        announcement.opened_at_ms = 0;
    }
    resign(&mut forged, &coordinator);
    let d = audit(&forged, lookup, Some(&me), None).unwrap_err();
    assert!(d.what.contains("before the previous close"), "{d}");
    drop(stored);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_round_that_uses_up_its_attempts_ends_the_run_as_failed_and_not_before() {
    let mut f = Federation::new("failed", ONE, ONE);
    let mut now = unix_ms();
    for attempt in 1..=3u8 {
        assert!(f.ledger.start_round_if_due([attempt; 32], now).unwrap());
        now += 61_000;
        let closed = f.ledger.close_round_if_due(now).unwrap();
        assert!(
            matches!(closed, Some(AuditEvent::Abandoned { .. })),
            "{closed:?}"
        );
    }
    // A fourth attempt would be refused by participants (their limit): the run ends.
    assert!(!f.ledger.start_round_if_due([4; 32], now).unwrap());
    assert!(f.ledger.state().failed && f.ledger.state().finished());
    assert!(!f.ledger.start_round_if_due([5; 32], now).unwrap());
    let Federation {
        dir,
        coordinator,
        ledger,
        ..
    } = f;
    drop(ledger);
    let me = coordinator.public().to_peer_id();
    assert!(audit_store(&store(&dir), Some(&me), None).unwrap().is_ok());
    let stored = StoredLog::open(&store(&dir)).unwrap();
    let records = stored.records().unwrap();
    assert!(matches!(
        records.last().unwrap().event,
        AuditEvent::RunFailed { round: 1, .. }
    ));
    // A coordinator that ends the run after one abandoned attempt is caught.
    let first_abandon = records
        .iter()
        .position(|r| matches!(r.event, AuditEvent::Abandoned { .. }))
        .unwrap();
    let mut forged = records[..=first_abandon].to_vec();
    let mut failed = records.last().unwrap().clone();
    failed.seq = forged.len() as u64;
    forged.push(failed);
    resign(&mut forged, &coordinator);
    let lookup = |_: u64, _: u32, _: &PeerId| None;
    let d = audit(&forged, lookup, Some(&me), None).unwrap_err();
    assert!(d.what.contains("before its attempts were exhausted"), "{d}");
    drop(stored);
    std::fs::remove_dir_all(dir).unwrap();
}
