//! A private run through [`Ledger`] with real hidden-sampling proofs: each aggregate is the
//! noised mean over the expected batch with the attempt's seed, survives a restart, records
//! its un-noised sum and the ε spent, and the run stops at its budget. The audit checks all
//! of it but the noise without the key, and the noise too with it; forged logs are caught
//! by the check each forgery must meet.

mod common;

use std::path::PathBuf;

use common::{Hospital, bundled_hospitals, judge_accepted, resign, run_config};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use zkfed_aggregation::private::{PrivateRound, private_step};
use zkfed_aggregation::strategy::ServerState;
use zkfed_air::fixed::ONE;
use zkfed_air::sampling::SamplingRate;
use zkfed_air::{ClippedGradientSum, Model};
use zkfed_coordinator::audit::{AuditSummary, Divergence, audit};
use zkfed_coordinator::events::{AuditEvent, RunConfig, unix_ms};
use zkfed_coordinator::ledger::{Ledger, LedgerError};
use zkfed_coordinator::log::{AuditRecord, StoredLog};
use zkfed_coordinator::privacy::{NoiseKey, spent_epsilon, variance};
use zkfed_protocol::{Privacy, Rejection};

const HOSPITALS: usize = 3;
const ROWS: usize = 40;

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zkfed-privacy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn privacy(epsilon: f64) -> Privacy {
    Privacy {
        sampling: SamplingRate::from_probability(0.25).unwrap(),
        noise_multiplier: 1.0,
        epsilon,
        delta: 1e-5,
    }
}

fn private_config(
    rounds: u64,
    epsilon: f64,
    coordinator: &Keypair,
    hospitals: &[Hospital],
    noise: &NoiseKey,
) -> RunConfig {
    let (_, schema, standardization) = bundled_hospitals(0, 0, 0);
    let mut config = run_config(
        41,
        rounds,
        (ONE, ONE),
        (&schema, &standardization),
        coordinator,
        hospitals,
    );
    config.public.privacy = Some(privacy(epsilon));
    config.noise_key_commitment = Some(noise.commitment());
    config
}

/// Enrols everyone, then runs rounds until none starts, reopening the store (with the
/// noise key) before each as a restarted coordinator would. Returns the rounds aggregated.
fn run(
    store: &std::path::Path,
    coordinator: &Keypair,
    config: &RunConfig,
    hospitals: &[Hospital],
    noise: &NoiseKey,
) -> u64 {
    let open = || open_ledger(store, coordinator, config, noise);
    enrol_all(&mut open(), config, hospitals);
    let mut aggregated = 0;
    loop {
        let mut ledger = open();
        let round = ledger.state().completed_rounds + 1;
        if !ledger
            .start_round_if_due([round as u8; 32], unix_ms())
            .unwrap()
        {
            return aggregated;
        }
        for h in hospitals {
            submit_honestly(&mut ledger, h);
        }
        let closed = ledger.close_round_if_due(unix_ms()).unwrap();
        assert!(
            matches!(closed, Some(AuditEvent::Aggregated { .. })),
            "{closed:?}"
        );
        aggregated += 1;
    }
}

/// The ledger in `store`, opened (or reopened, as a restarted coordinator) with the key.
fn open_ledger(
    store: &std::path::Path,
    coordinator: &Keypair,
    config: &RunConfig,
    noise: &NoiseKey,
) -> Ledger {
    Ledger::open(store, coordinator.clone(), config.clone())
        .unwrap()
        .with_noise_key(noise.clone())
        .unwrap()
}

fn enrol_all(ledger: &mut Ledger, config: &RunConfig, hospitals: &[Hospital]) {
    for h in hospitals {
        ledger
            .enrol(&h.peer(), &h.signed_enrolment(config))
            .unwrap()
            .unwrap();
    }
}

/// Proves `h`'s honest hidden-sampling update for the open attempt; it is accepted.
fn submit_honestly(ledger: &mut Ledger, h: &Hospital) {
    let submission = h.honest_submission(ledger);
    let statement = judge_accepted(ledger, &h.peer(), &submission);
    assert!(statement.sampling.is_some());
}

fn audit_with(
    records: &[AuditRecord],
    stored: &StoredLog,
    me: &PeerId,
    noise: Option<&NoiseKey>,
) -> Result<AuditSummary, Divergence> {
    let lookup =
        |round: u64, attempt: u32, peer: &PeerId| stored.proof(round, attempt, peer).ok().flatten();
    audit(records, lookup, Some(me), noise)
}

/// The accepted updates of each round, in the order the log accepted them.
fn accepted(records: &[AuditRecord], round: u64) -> Vec<ClippedGradientSum> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::Judged {
                round: judged,
                update,
                rejection: None,
                ..
            } if *judged == round => Some(update.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn private_aggregates_are_the_noised_mean_and_audit_with_and_without_the_key() {
    let dir = tempdir("run");
    let store = dir.join("state.redb");
    let coordinator = Keypair::generate_ed25519();
    let me = coordinator.public().to_peer_id();
    let (hospitals, _, _) = bundled_hospitals(HOSPITALS, ROWS, 17);
    let noise = NoiseKey::from_raw([3; 32]);
    let config = private_config(2, 50.0, &coordinator, &hospitals, &noise);
    assert_eq!(run(&store, &coordinator, &config, &hospitals, &noise), 2);
    // A restarted coordinator with another noise key is refused.
    assert!(matches!(
        Ledger::open(&store, coordinator.clone(), config.clone())
            .unwrap()
            .with_noise_key(NoiseKey::from_raw([4; 32])),
        Err(LedgerError::NoiseKey)
    ));

    let stored = StoredLog::open(&store).unwrap();
    let records = stored.records().unwrap();
    // Each aggregate is the noised mean with its attempt's seed, recomputed here.
    let public = &config.public;
    let privacy = public.privacy.unwrap();
    let mut model = Model::initial(public.model, public.schema.features.len());
    let mut state = ServerState::default();
    let mut last_epsilon = 0.0;
    for record in &records {
        let AuditEvent::Aggregated {
            round,
            model: logged,
            privacy: Some(recorded),
            ..
        } = &record.event
        else {
            continue;
        };
        let inputs = PrivateRound {
            sigma_sq: variance(public, &privacy).unwrap(),
            threshold: privacy.sampling.threshold,
            rows: (HOSPITALS * ROWS) as u64,
            seed: noise.seed(
                &public.federation_id,
                *round,
                1,
                &recorded.unnoised_sum_sha256,
            ),
        };
        let updates = accepted(&records, *round);
        let (next, next_state, digest) =
            private_step(public.strategy, &model, &state, &updates, &inputs, ONE).unwrap();
        assert_eq!(&next, logged, "round {round}");
        assert_eq!(digest, recorded.unnoised_sum_sha256);
        assert_eq!(
            recorded.epsilon,
            spent_epsilon(public, &privacy, *round).unwrap()
        );
        assert!(recorded.epsilon > last_epsilon);
        last_epsilon = recorded.epsilon;
        // The noise moved the model: without it the step is another.
        let quiet = PrivateRound {
            sigma_sq: 1,
            ..inputs
        };
        let (unnoised, _, _) =
            private_step(public.strategy, &model, &state, &updates, &quiet, ONE).unwrap();
        assert_ne!(unnoised, next);
        (model, state) = (next, next_state);
    }
    assert_eq!(last_epsilon, spent_epsilon(public, &privacy, 2).unwrap());

    let keyless = audit_with(&records, &stored, &me, None).unwrap();
    assert_eq!((keyless.rounds, keyless.unchecked_noise), (2, 2));
    let keyed = audit_with(&records, &stored, &me, Some(&noise)).unwrap();
    assert_eq!((keyed.rounds, keyed.unchecked_noise), (2, 0));
    let wrong = audit_with(&records, &stored, &me, Some(&NoiseKey::from_raw([4; 32])));
    assert_eq!(wrong.unwrap_err().seq, 0);

    // Forgeries, re-signed: the keyed audit catches a model whose noise is not the seed's;
    // everyone catches another un-noised sum or another ε.
    let last = records
        .iter()
        .rposition(|r| matches!(r.event, AuditEvent::Aggregated { .. }))
        .unwrap();
    let forge = |edit: &dyn Fn(&mut AuditEvent)| {
        let mut forged = records.clone();
        edit(&mut forged[last].event);
        resign(&mut forged, &coordinator);
        forged
    };
    let other_noise = forge(&|e| {
        if let AuditEvent::Aggregated { model, .. } = e {
            model.params[0] += 3;
        }
    });
    assert!(audit_with(&other_noise, &stored, &me, None).is_ok());
    let d = audit_with(&other_noise, &stored, &me, Some(&noise)).unwrap_err();
    assert_eq!(d.seq, last as u64, "{d}");
    let other_sum = forge(&|e| {
        if let AuditEvent::Aggregated {
            privacy: Some(p), ..
        } = e
        {
            p.unnoised_sum_sha256[0] ^= 1;
        }
    });
    let d = audit_with(&other_sum, &stored, &me, None).unwrap_err();
    assert!(d.seq == last as u64 && d.what.contains("un-noised"), "{d}");
    let understated = forge(&|e| {
        if let AuditEvent::Aggregated {
            privacy: Some(p), ..
        } = e
        {
            p.epsilon /= 2.0;
        }
    });
    let d = audit_with(&understated, &stored, &me, None).unwrap_err();
    assert!(d.seq == last as u64 && d.what.contains('ε'), "{d}");
    let misshapen = forge(&|e| {
        if let AuditEvent::Aggregated { model, .. } = e {
            model.params.push(0);
        }
    });
    let d = audit_with(&misshapen, &stored, &me, None).unwrap_err();
    assert_eq!(d.seq, last as u64, "{d}");
    let out_of_range = forge(&|e| {
        if let AuditEvent::Aggregated { model, .. } = e {
            model.params[0] = zkfed_air::fixed::PARAM_BOUND;
        }
    });
    let d = audit_with(&out_of_range, &stored, &me, None).unwrap_err();
    assert!(d.seq == last as u64 && d.what.contains("range"), "{d}");
    // A second attempt's seed that the PRF reads as the first's: every sample repeats.
    let mut reseeded = records.clone();
    let first_seed = reseeded
        .iter()
        .find_map(|r| match &r.event {
            AuditEvent::RoundStarted(a) => Some(a.seed),
            _ => None,
        })
        .unwrap();
    let second = reseeded
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.event, AuditEvent::RoundStarted(_)))
        .nth(1)
        .map(|(i, _)| i)
        .unwrap();
    if let AuditEvent::RoundStarted(a) = &mut reseeded[second].event {
        a.seed = first_seed;
    }
    resign(&mut reseeded, &coordinator);
    let d = audit_with(&reseeded, &stored, &me, None).unwrap_err();
    assert!(d.seq == second as u64 && d.what.contains("seed"), "{d}");
    let unnoised = forge(&|e| {
        if let AuditEvent::Aggregated { privacy, .. } = e {
            *privacy = None;
        }
    });
    assert_eq!(
        audit_with(&unnoised, &stored, &me, None).unwrap_err().seq,
        last as u64
    );
}

#[test]
fn the_budget_ends_the_run_and_the_audit_holds_it_to_that() {
    let dir = tempdir("budget");
    let store = dir.join("state.redb");
    let coordinator = Keypair::generate_ed25519();
    let me = coordinator.public().to_peer_id();
    let (hospitals, _, _) = bundled_hospitals(HOSPITALS, ROWS, 18);
    let noise = NoiseKey::from_raw([5; 32]);
    // A budget between one round's ε and two rounds'.
    let probe = private_config(3, 50.0, &coordinator, &hospitals, &noise);
    let one = spent_epsilon(&probe.public, &privacy(50.0), 1).unwrap();
    let two = spent_epsilon(&probe.public, &privacy(50.0), 2).unwrap();
    assert!(two > one);
    let config = private_config(3, (one + two) / 2.0, &coordinator, &hospitals, &noise);
    assert_eq!(run(&store, &coordinator, &config, &hospitals, &noise), 1);
    {
        let reopened = Ledger::open(&store, coordinator.clone(), config.clone()).unwrap();
        assert!(reopened.state().finished());
    }

    let stored = StoredLog::open(&store).unwrap();
    let records = stored.records().unwrap();
    let end = records.last().unwrap();
    match &end.event {
        AuditEvent::BudgetSpent {
            rounds,
            epsilon,
            next_epsilon,
            ..
        } => {
            assert_eq!((*rounds, *epsilon, *next_epsilon), (1, one, Some(two)));
        }
        other => panic!("the run ended with {other:?}"),
    }
    let summary = audit_with(&records, &stored, &me, Some(&noise)).unwrap();
    assert_eq!(summary.rounds, 1);

    // A log that claims the budget ran out when it had not (a run with a larger budget).
    let mut generous = records.clone();
    if let AuditEvent::RunStarted(c) = &mut generous[0].event {
        c.public.privacy = Some(privacy(50.0));
    }
    // Every enrolment signed the real parameters: re-sign them under the altered ones.
    let altered = match &generous[0].event {
        AuditEvent::RunStarted(c) => c.clone(),
        _ => unreachable!(),
    };
    for r in generous.iter_mut() {
        if let AuditEvent::Enrolled { peer, enrolment } = &mut r.event {
            let h = hospitals
                .iter()
                .find(|h| h.peer().to_bytes() == *peer)
                .unwrap();
            *enrolment = h.signed_enrolment(&altered);
        }
    }
    resign(&mut generous, &coordinator);
    let d = audit_with(&generous, &stored, &me, None).unwrap_err();
    assert_eq!(d.seq, generous.len() as u64 - 1, "{d}");
}

#[test]
fn enrolments_carry_a_sampling_key_exactly_in_private_runs() {
    let dir = tempdir("enrol");
    let coordinator = Keypair::generate_ed25519();
    let (hospitals, _, _) = bundled_hospitals(2, ROWS, 19);
    let noise = NoiseKey::from_raw([6; 32]);
    let private = private_config(1, 50.0, &coordinator, &hospitals, &noise);
    let mut ledger =
        Ledger::open(&dir.join("a.redb"), coordinator.clone(), private.clone()).unwrap();
    let mut keyless = hospitals[0].signed_enrolment(&private);
    keyless.enrolment.sampling_key = None;
    let keyless = zkfed_protocol::SignedEnrolment::sign(keyless.enrolment, &hospitals[0].key);
    assert!(matches!(
        ledger.enrol(&hospitals[0].peer(), &keyless).unwrap(),
        Err(Rejection::SamplingKey(_))
    ));
    let mut aliased = hospitals[1].signed_enrolment(&private);
    aliased.enrolment.sampling_key.as_mut().unwrap().0[0] = u64::MAX;
    let aliased = zkfed_protocol::SignedEnrolment::sign(aliased.enrolment, &hospitals[1].key);
    assert!(matches!(
        ledger.enrol(&hospitals[1].peer(), &aliased).unwrap(),
        Err(Rejection::SamplingKey(_))
    ));

    let (schema, standardization) = {
        let (_, s, st) = bundled_hospitals(0, 0, 0);
        (s, st)
    };
    let public = run_config(
        42,
        1,
        (ONE, ONE),
        (&schema, &standardization),
        &coordinator,
        &hospitals,
    );
    let mut ledger =
        Ledger::open(&dir.join("b.redb"), coordinator.clone(), public.clone()).unwrap();
    let mut keyed = hospitals[0].signed_enrolment(&public);
    keyed.enrolment.sampling_key = hospitals[0].sampling_key();
    let keyed = zkfed_protocol::SignedEnrolment::sign(keyed.enrolment, &hospitals[0].key);
    assert!(matches!(
        ledger.enrol(&hospitals[0].peer(), &keyed).unwrap(),
        Err(Rejection::SamplingKey(_))
    ));
}

#[test]
fn an_abandoned_private_attempt_is_charged_and_its_successor_uses_a_fresh_seed() {
    // Attempt 1 of round 1 gets one submission of the quorum's two and is abandoned at its
    // deadline; attempt 2 aggregates. The sample and the noise of attempt 1 were drawn, so the
    // aggregate records ε of two attempts and its noise comes from attempt 2's seed.
    let dir = tempdir("abandoned");
    let store = dir.join("state.redb");
    let coordinator = Keypair::generate_ed25519();
    let me = coordinator.public().to_peer_id();
    let (hospitals, _, _) = bundled_hospitals(HOSPITALS, ROWS, 20);
    let noise = NoiseKey::from_raw([7; 32]);
    let config = private_config(1, 50.0, &coordinator, &hospitals, &noise);
    let public = &config.public;
    let privacy = public.privacy.unwrap();
    let mut ledger = open_ledger(&store, &coordinator, &config, &noise);
    enrol_all(&mut ledger, &config, &hospitals);
    assert!(ledger.start_round_if_due([1; 32], unix_ms()).unwrap());
    submit_honestly(&mut ledger, &hospitals[0]);
    let past_the_deadline = unix_ms() + 61_000;
    assert!(matches!(
        ledger.close_round_if_due(past_the_deadline).unwrap(),
        Some(AuditEvent::Abandoned { attempt: 1, .. })
    ));
    assert_eq!(ledger.state().attempts_opened, 1);
    drop(ledger);
    // A restarted coordinator opens attempt 2 with the charge of attempt 1 replayed.
    let mut ledger = open_ledger(&store, &coordinator, &config, &noise);
    assert_eq!(ledger.state().attempts_opened, 1);
    assert!(ledger.start_round_if_due([2; 32], unix_ms()).unwrap());
    assert_eq!(
        ledger.state().open.as_ref().unwrap().announcement.attempt,
        2
    );
    assert_eq!(ledger.state().attempts_opened, 2);
    for h in &hospitals {
        submit_honestly(&mut ledger, h);
    }
    assert!(matches!(
        ledger.close_round_if_due(unix_ms()).unwrap(),
        Some(AuditEvent::Aggregated { round: 1, .. })
    ));
    drop(ledger);

    let stored = StoredLog::open(&store).unwrap();
    let records = stored.records().unwrap();
    let (at, logged, recorded) = records
        .iter()
        .enumerate()
        .find_map(|(i, r)| match &r.event {
            AuditEvent::Aggregated {
                model,
                privacy: Some(p),
                ..
            } => Some((i, model.clone(), *p)),
            _ => None,
        })
        .unwrap();
    let two_attempts = spent_epsilon(public, &privacy, 2).unwrap();
    assert_eq!(recorded.epsilon, two_attempts);
    let inputs = |attempt| PrivateRound {
        sigma_sq: variance(public, &privacy).unwrap(),
        threshold: privacy.sampling.threshold,
        rows: (HOSPITALS * ROWS) as u64,
        seed: noise.seed(
            &public.federation_id,
            1,
            attempt,
            &recorded.unnoised_sum_sha256,
        ),
    };
    let start = Model::initial(public.model, public.schema.features.len());
    let updates = accepted(&records, 1);
    assert_eq!(updates.len(), 1 + HOSPITALS);
    // Only attempt 2's updates are aggregated, with attempt 2's noise.
    let attempt_two = &updates[1..];
    let step = |attempt| {
        private_step(
            public.strategy,
            &start,
            &ServerState::default(),
            attempt_two,
            &inputs(attempt),
            ONE,
        )
        .unwrap()
        .0
    };
    assert_eq!(step(2), logged);
    assert_ne!(step(1), logged);
    let keyed = audit_with(&records, &stored, &me, Some(&noise)).unwrap();
    assert_eq!((keyed.rounds, keyed.unchecked_noise), (1, 0));
    assert_eq!(
        audit_with(&records, &stored, &me, None)
            .unwrap()
            .unchecked_noise,
        1
    );

    // A log that leaves the abandoned attempt uncharged is caught by every auditor.
    let mut uncharged = records.clone();
    if let AuditEvent::Aggregated {
        privacy: Some(p), ..
    } = &mut uncharged[at].event
    {
        p.epsilon = spent_epsilon(public, &privacy, 1).unwrap();
    }
    resign(&mut uncharged, &coordinator);
    let d = audit_with(&uncharged, &stored, &me, None).unwrap_err();
    assert!(d.seq == at as u64 && d.what.contains('ε'), "{d}");
    std::fs::remove_dir_all(dir).unwrap();
}
