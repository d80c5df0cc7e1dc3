//! Each aggregation strategy through [`Ledger`] with real proofs: the coordinator's
//! aggregates and server state are the strategy's over the accepted updates, survive a
//! restart between rounds, and audit clean; a re-signed log that alters the server state,
//! the aggregate or the recorded strategy is caught at the altered record.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{Hospital, bundled_hospitals, resign, run_config};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use zkfed_aggregation::fedavg_step;
use zkfed_aggregation::strategy::{self, ServerState, Strategy};
use zkfed_air::fixed::ONE;
use zkfed_air::{ClippedGradientSum, Model, prove};
use zkfed_coordinator::audit::audit;
use zkfed_coordinator::events::{AuditEvent, RunConfig, unix_ms};
use zkfed_coordinator::ledger::Ledger;
use zkfed_coordinator::log::{AuditRecord, StoredLog};
use zkfed_protocol::{Submission, round_statement};

const HOSPITALS: usize = 5;
const ROUNDS: u64 = 2;

/// Every strategy but FedAvg (which the other tests run), with parameters under which its
/// rule differs from FedAvg on five participants.
const STRATEGIES: [&str; 8] = [
    "fedavgm:beta=0.5",
    "fedadagrad",
    "fedadam",
    "fedyogi",
    "median",
    "trimmed-mean:beta=0.2",
    "krum:f=1",
    "multi-krum:f=1,m=3",
];

/// Proofs by round, announced model and hospital: the first round's statements are the
/// same under every strategy, so each is proven once.
type ProofCache = HashMap<(u64, Vec<i64>, usize), (ClippedGradientSum, Vec<u8>)>;

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zkfed-strategy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `ROUNDS` rounds of `config` among `hospitals`, every one honest, reopening the
/// store before each round as a restarted coordinator would.
fn run(
    store: &Path,
    coordinator: &Keypair,
    config: &RunConfig,
    hospitals: &[Hospital],
    cache: &mut ProofCache,
) {
    {
        let mut ledger = Ledger::open(store, coordinator.clone(), config.clone()).unwrap();
        for h in hospitals {
            ledger
                .enrol(&h.peer(), &h.signed_enrolment(config))
                .unwrap()
                .unwrap();
        }
    }
    for round in 1..=ROUNDS {
        let mut ledger = Ledger::open(store, coordinator.clone(), config.clone()).unwrap();
        assert!(
            ledger
                .start_round_if_due([round as u8; 32], unix_ms())
                .unwrap()
        );
        let announcement = ledger.state().open.as_ref().unwrap().announcement.clone();
        for (k, h) in hospitals.iter().enumerate() {
            let key = (round, announcement.model.params.clone(), k);
            let (update, proof) = cache
                .entry(key)
                .or_insert_with(|| {
                    let statement = round_statement(
                        &config.public,
                        &announcement,
                        &h.peer(),
                        h.dataset.commitment(),
                        None,
                    )
                    .unwrap();
                    prove(&statement, &h.dataset).unwrap()
                })
                .clone();
            let submission = Submission {
                round,
                attempt: announcement.attempt,
                update,
                proof,
            };
            common::judge_accepted(&mut ledger, &h.peer(), &submission);
        }
        let closed = ledger.close_round_if_due(unix_ms()).unwrap();
        assert!(
            matches!(closed, Some(AuditEvent::Aggregated { .. })),
            "{closed:?}"
        );
    }
}

/// The accepted updates of each aggregated round, in the order the log accepted them.
fn accepted_by_round(records: &[AuditRecord]) -> Vec<Vec<ClippedGradientSum>> {
    let mut rounds = vec![Vec::new(); ROUNDS as usize];
    for r in records {
        if let AuditEvent::Judged {
            round,
            update,
            rejection: None,
            ..
        } = &r.event
        {
            rounds[*round as usize - 1].push(update.clone());
        }
    }
    rounds
}

fn audit_records(
    records: &[AuditRecord],
    stored: &StoredLog,
    me: &PeerId,
) -> Result<zkfed_coordinator::audit::AuditSummary, zkfed_coordinator::audit::Divergence> {
    let lookup =
        |round: u64, attempt: u32, peer: &PeerId| stored.proof(round, attempt, peer).ok().flatten();
    audit(records, lookup, Some(me), None)
}

/// Re-signs `records` with `change` applied to the first record `pick` selects, audits
/// them, and returns the divergence, which must be at that record.
fn forged_divergence(
    records: &[AuditRecord],
    stored: &StoredLog,
    coordinator: &Keypair,
    pick: impl Fn(&AuditEvent) -> bool,
    change: impl Fn(&mut AuditEvent),
) -> String {
    let mut forged = records.to_vec();
    let at = forged.iter().position(|r| pick(&r.event)).unwrap();
    change(&mut forged[at].event);
    resign(&mut forged, coordinator);
    let me = coordinator.public().to_peer_id();
    let d = audit_records(&forged, stored, &me).expect_err("a forged log must not audit");
    assert_eq!(d.seq, at as u64, "{d}");
    d.what
}

#[test]
fn every_strategy_aggregates_survives_restarts_audits_and_catches_a_tampered_state() {
    let (hospitals, schema, standardization) = bundled_hospitals(HOSPITALS, 60, 15);
    let coordinator = Keypair::generate_ed25519();
    let me = coordinator.public().to_peer_id();
    let mut cache = ProofCache::new();
    for text in STRATEGIES {
        let strategy = Strategy::parse(text).unwrap();
        let mut config = run_config(
            15,
            ROUNDS,
            (ONE, ONE),
            (&schema, &standardization),
            &coordinator,
            &hospitals,
        );
        config.quorum = HOSPITALS;
        config.public.strategy = strategy;
        let dir = tempdir(text.split(':').next().unwrap());
        let store = dir.join("state.redb");
        run(&store, &coordinator, &config, &hospitals, &mut cache);

        // The coordinator's model and state are the strategy's, folded over the log's
        // accepted updates independently of the coordinator's replay; and the rule matters:
        // FedAvg of the same updates is another model.
        let replayed = Ledger::open(&store, coordinator.clone(), config.clone())
            .unwrap()
            .state()
            .clone();
        // A restart under another rule is refused, not continued with it.
        let mut switched = config.clone();
        switched.public.strategy = Strategy::FedAvg;
        assert!(Ledger::open(&store, coordinator.clone(), switched).is_err());
        let stored = StoredLog::open(&store).unwrap();
        let records = stored.records().unwrap();
        let initial = Model::initial(config.public.model, schema.features.len());
        let (mut model, mut state) = (initial.clone(), ServerState::default());
        let mut averaged = initial;
        for updates in accepted_by_round(&records) {
            assert_eq!(updates.len(), HOSPITALS, "{text}");
            (model, state) = strategy::aggregate(strategy, &model, &state, &updates, ONE).unwrap();
            averaged = fedavg_step(&averaged, &updates, ONE).unwrap();
        }
        assert_eq!(replayed.completed_rounds, ROUNDS, "{text}");
        assert_eq!(replayed.model, model, "{text}");
        assert_eq!(replayed.server_state, state, "{text}");
        assert_ne!(
            model, averaged,
            "{text}: the rule must differ from FedAvg here"
        );
        let params = model.params.len();
        let (momentum, second) = match strategy {
            Strategy::FedAvgM { .. } => (params, 0),
            Strategy::FedAdagrad(_) => (0, params),
            Strategy::FedAdam(_) | Strategy::FedYogi(_) => (params, params),
            _ => (0, 0),
        };
        assert_eq!(
            (state.momentum.len(), state.second.len()),
            (momentum, second),
            "{text}"
        );

        let summary = audit_records(&records, &stored, &me)
            .unwrap_or_else(|d| panic!("{text}: an honest log must audit: {d}"));
        assert_eq!(
            (summary.rounds, summary.proofs_verified),
            (ROUNDS, ROUNDS * HOSPITALS as u64),
            "{text}"
        );

        let aggregated = |e: &AuditEvent| matches!(e, AuditEvent::Aggregated { .. });
        // The first round's server state altered (a stateless rule's given one).
        let what = forged_divergence(&records, &stored, &coordinator, aggregated, |e| {
            if let AuditEvent::Aggregated { state, .. } = e {
                match state.second.first_mut().or(state.momentum.first_mut()) {
                    Some(v) => *v += 1,
                    None => state.momentum.push(1),
                }
            }
        });
        assert!(what.contains("server state differs"), "{text}: {what}");
        // The first round's model altered.
        let what = forged_divergence(&records, &stored, &coordinator, aggregated, |e| {
            if let AuditEvent::Aggregated { model, .. } = e {
                model.params[0] += 1;
            }
        });
        assert!(
            what.contains(&format!("aggregate differs from {strategy}")),
            "{text}: {what}"
        );
        // The log claims FedAvg was the rule: the participants signed the parameters they
        // were told, so the first enrolment gives it away, before any aggregate.
        let started = |e: &AuditEvent| matches!(e, AuditEvent::RunStarted(_));
        let mut claimed = records.clone();
        if let AuditEvent::RunStarted(config) = &mut claimed[0].event {
            config.public.strategy = Strategy::FedAvg;
        }
        resign(&mut claimed, &coordinator);
        let d = audit_records(&claimed, &stored, &me).expect_err("another rule was logged");
        assert_eq!(d.seq, 1, "{text}: {d}");
        assert!(d.what.contains("other run parameters"), "{text}: {d}");
        // A rule that cannot aggregate the quorum would excuse abandoning every attempt.
        let what = forged_divergence(&records, &stored, &coordinator, started, |e| {
            if let AuditEvent::RunStarted(config) = e {
                config.public.strategy = Strategy::MultiKrum {
                    byzantine: 2,
                    select: 1,
                };
            }
        });
        assert!(what.contains("needs at least 7"), "{text}: {what}");
        // A strategy outside its parameters' ranges is refused at the first record.
        let what = forged_divergence(&records, &stored, &coordinator, started, |e| {
            if let AuditEvent::RunStarted(config) = e {
                config.public.strategy = Strategy::TrimmedMean { beta: ONE };
            }
        });
        assert!(what.contains("the run's strategy"), "{text}: {what}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
