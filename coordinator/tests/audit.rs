//! A run through [`Ledger`] with real proofs, then an offline audit of its store: it passes,
//! and a tampered record, proof, update or aggregate is each caught.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{Hospital, bundled_hospitals, resign, run_config};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use zkfed_air::data::{Standardization, breast_cancer};
use zkfed_air::fixed::ONE;
use zkfed_air::forgery::stacked_traces;
use zkfed_air::proof::prove_traces;
use zkfed_air::{RoundParams, prove};
use zkfed_coordinator::audit::audit;
use zkfed_coordinator::events::{AuditEvent, RunConfig, unix_ms};
use zkfed_coordinator::ledger::Ledger;
use zkfed_coordinator::log::StoredLog;
use zkfed_protocol::{
    Enrolment, Rejection, RunParameters, SignedEnrolment, Submission, round_statement,
};

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "zkfed-audit-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Two rounds, three hospitals; hospital 2 scales its update in round 1 and, in round 2,
/// proves over its trace stacked twice (a proof of the wrong height, about twice the update).
fn run(dir: &Path, coordinator: &Keypair) -> (RunConfig, Vec<Hospital>) {
    run_with(dir, coordinator, zkfed_air::spec::ModelSpec::Logistic)
}

/// [`run`] training a model of `spec`.
fn run_with(
    dir: &Path,
    coordinator: &Keypair,
    spec: zkfed_air::spec::ModelSpec,
) -> (RunConfig, Vec<Hospital>) {
    let (hospitals, schema, standardization) = bundled_hospitals(3, 60, 8);
    let mut config = run_config(
        7,
        2,
        (ONE, ONE),
        (&schema, &standardization),
        coordinator,
        &hospitals,
    );
    config.public.model = spec;
    let mut core =
        Ledger::open(&dir.join("state.redb"), coordinator.clone(), config.clone()).unwrap();
    for h in &hospitals {
        core.enrol(&h.peer(), &h.signed_enrolment(&config))
            .unwrap()
            .unwrap();
    }
    for round in 1..=2u64 {
        assert!(
            core.start_round_if_due([round as u8; 32], unix_ms())
                .unwrap()
        );
        for (k, h) in hospitals.iter().enumerate() {
            // The hospital proves against the statement it builds from what it was told;
            // the coordinator verifies against the one it builds from its own state.
            let announcement = &core.state().open.as_ref().unwrap().announcement;
            let statement = round_statement(
                &config.public,
                announcement,
                &h.peer(),
                h.dataset.commitment(),
                None,
            )
            .unwrap();
            let attempt = announcement.attempt;
            let (mut update, mut proof) = prove(&statement, &h.dataset).unwrap();
            if round == 1 && k == 2 {
                update.values.iter_mut().for_each(|w| *w *= 3);
            }
            if round == 2 && k == 2 {
                let (traces, stacked) = stacked_traces(&statement, &h.dataset, 2).unwrap();
                proof = prove_traces(&statement, &traces, &stacked).unwrap();
                update = stacked;
            }
            let submission = Submission {
                round,
                attempt,
                update,
                proof,
            };
            let admitted = core.admit(&h.peer(), &submission).unwrap();
            let outcome = zkfed_air::verify(&admitted, &submission.update, &submission.proof)
                .map_err(Rejection::from);
            let verdict = core.judge(&h.peer(), &submission, outcome).unwrap();
            assert_eq!(
                verdict.accepted(),
                k != 2,
                "round {round} hospital {k}: {verdict:?}"
            );
            if round == 2 && k == 2 {
                assert!(
                    matches!(&verdict.rejection, Some(Rejection::ProofShape { field, .. }) if field.ends_with("degree_bits")),
                    "{verdict:?}"
                );
            }
            // A second submission in the same round is refused without touching the log.
            assert!(core.admit(&h.peer(), &submission).is_err());
        }
        assert!(matches!(
            core.close_round_if_due(unix_ms()).unwrap(),
            Some(AuditEvent::Aggregated { .. })
        ));
    }
    assert!(core.state().finished());
    (config, hospitals)
}

/// Every judged proof in the store (accepted or rejected), by round, attempt and peer.
type Proofs = BTreeMap<(u64, u32, PeerId), Vec<u8>>;

fn proofs(dir: &Path) -> Proofs {
    let stored = StoredLog::open(&dir.join("state.redb")).unwrap();
    let mut map = BTreeMap::new();
    for r in stored.records().unwrap() {
        if let AuditEvent::Judged {
            round,
            attempt,
            peer,
            ..
        } = r.event
        {
            let peer = PeerId::from_bytes(&peer).unwrap();
            let proof = stored.proof(round, attempt, &peer).unwrap().unwrap();
            map.insert((round, attempt, peer), proof);
        }
    }
    map
}

#[test]
fn audit_passes_on_a_real_run_and_catches_each_tampering() {
    let dir = tempdir();
    let coordinator = Keypair::generate_ed25519();
    let (config, _) = run(&dir, &coordinator);

    // Restart: the same store replays to the same state.
    let reopened =
        Ledger::open(&dir.join("state.redb"), coordinator.clone(), config.clone()).unwrap();
    assert_eq!(reopened.state().completed_rounds, 2);
    drop(reopened);

    let records = StoredLog::open(&dir.join("state.redb"))
        .unwrap()
        .records()
        .unwrap();
    let proofs = proofs(&dir);
    let lookup = |m: &Proofs| {
        let m = m.clone();
        move |round: u64, attempt: u32, peer: &PeerId| m.get(&(round, attempt, *peer)).cloned()
    };
    let me = coordinator.public().to_peer_id();
    let summary =
        audit(&records, lookup(&proofs), Some(&me), None).expect("honest log audits clean");
    assert_eq!(
        (summary.rounds, summary.proofs_verified, summary.rejections),
        (2, 4, 2)
    );
    // The stacked trace's rejection is in the signed log with its shape reason.
    let shape_rejections = records.iter().filter(|r| {
        matches!(&r.event, AuditEvent::Judged { round: 2, rejection: Some(reason), .. }
            if matches!(reason, Rejection::ProofShape { field, .. } if field.ends_with("degree_bits")))
    });
    assert_eq!(shape_rejections.count(), 1);

    // Another coordinator's key.
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    assert!(audit(&records, lookup(&proofs), Some(&stranger), None).is_err());

    // A record altered without re-signing.
    let mut altered = records.clone();
    let last = altered.len() - 1;
    if let AuditEvent::Aggregated { model, .. } = &mut altered[last].event {
        *model.params.last_mut().unwrap() += 1;
    }
    let d = audit(&altered, lookup(&proofs), None, None).unwrap_err();
    assert_eq!(d.seq, last as u64, "{d}");

    // A record removed.
    let mut removed = records.clone();
    removed.remove(3);
    assert_eq!(
        audit(&removed, lookup(&proofs), None, None)
            .unwrap_err()
            .seq,
        3
    );

    // A stored proof swapped for another accepted one.
    let mut swapped = proofs.clone();
    let keys: Vec<_> = swapped.keys().cloned().collect();
    let other = swapped[&keys[1]].clone();
    swapped.insert(keys[0], other);
    let d = audit(&records, lookup(&swapped), None, None).unwrap_err();
    assert!(d.what.contains("not the one judged"), "{d}");

    // The coordinator itself re-signs its log: each forgery is caught at the forged record.
    let forge = |pick: fn(&AuditEvent) -> bool, change: &dyn Fn(&mut AuditEvent), what: &str| {
        let mut forged = records.clone();
        let at = forged.iter().position(|r| pick(&r.event)).unwrap();
        change(&mut forged[at].event);
        resign(&mut forged, &coordinator);
        let d = audit(&forged, lookup(&proofs), Some(&me), None).unwrap_err();
        assert_eq!(d.seq, at as u64, "{d}");
        assert!(d.what.contains(what), "{d}");
    };
    let accepted = |e: &AuditEvent| {
        matches!(
            e,
            AuditEvent::Judged {
                rejection: None,
                ..
            }
        )
    };
    let aggregated = |e: &AuditEvent| matches!(e, AuditEvent::Aggregated { .. });
    // A valid proof recorded as rejected.
    let reject = |e: &mut AuditEvent| {
        if let AuditEvent::Judged { rejection, .. } = e {
            *rejection = Some(Rejection::ProofRejected("OodEvaluationMismatch".into()));
        }
    };
    forge(accepted, &reject, "valid proof");
    // An inflated accepted update.
    let inflate = |e: &mut AuditEvent| {
        if let AuditEvent::Judged { update, .. } = e {
            *update.values.last_mut().unwrap() += 1;
        }
    };
    forge(accepted, &inflate, "does not verify");
    // An aggregate that is not FedAvg of the accepted updates.
    let shift = |e: &mut AuditEvent| {
        if let AuditEvent::Aggregated { model, .. } = e {
            model.params[0] += 1;
        }
    };
    forge(aggregated, &shift, "aggregate differs");

    // A round whose parameters are not the run's (batch size 1 reveals a row).
    let one_row = |e: &mut AuditEvent| {
        if let AuditEvent::RoundStarted(announcement) = e {
            announcement.params.batch_size = 1;
        }
    };
    forge(
        |e| matches!(e, AuditEvent::RoundStarted(_)),
        &one_row,
        "the run's are",
    );
    // A peer off the allow-list enrolled.
    let outsider = Keypair::generate_ed25519();
    let enrol_outsider = |e: &mut AuditEvent| {
        if let AuditEvent::Enrolled { peer, enrolment } = e {
            *peer = outsider.public().to_peer_id().to_bytes();
            *enrolment = SignedEnrolment::sign(enrolment.enrolment.clone(), &outsider);
        }
    };
    forge(
        |e| matches!(e, AuditEvent::Enrolled { .. }),
        &enrol_outsider,
        "allow-list",
    );

    // ... or that aggregates below the quorum (one accepted verdict dropped from round 2).
    let mut forged = records.clone();
    let last_accepted = forged
        .iter()
        .rposition(|r| {
            matches!(
                r.event,
                AuditEvent::Judged {
                    rejection: None,
                    ..
                }
            )
        })
        .unwrap();
    forged.remove(last_accepted);
    for (seq, r) in forged.iter_mut().enumerate() {
        r.seq = seq as u64;
        // Closed after the deadline, so only the quorum is wrong.
        if let AuditEvent::Aggregated {
            round: 2, at_ms, ..
        } = &mut r.event
        {
            *at_ms = unix_ms() + 3_600_000;
        }
    }
    resign(&mut forged, &coordinator);
    let d = audit(&forged, lookup(&proofs), Some(&me), None).unwrap_err();
    assert!(d.what.contains("below the quorum"), "{d}");

    // ... or that abandons a round that met its quorum (dropping the hospitals' updates).
    let mut forged = records.clone();
    let agg = forged
        .iter()
        .position(|r| matches!(r.event, AuditEvent::Aggregated { .. }))
        .unwrap();
    forged[agg].event = AuditEvent::Abandoned {
        round: 1,
        attempt: 1,
        at_ms: unix_ms() + 3_600_000,
        reason: "deadline".into(),
    };
    forged.truncate(agg + 1);
    resign(&mut forged, &coordinator);
    let d = audit(&forged, lookup(&proofs), Some(&me), None).unwrap_err();
    assert_eq!(d.seq, agg as u64, "{d}");
    assert!(d.what.contains("met the quorum"), "{d}");

    // Reopening with another configuration is refused rather than silently mixing runs.
    let mut other_config = config;
    other_config.quorum = 3;
    assert!(Ledger::open(&dir.join("state.redb"), coordinator, other_config).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn enrolment_policy_refuses_strangers_other_runs_and_changed_roots() {
    let dir = tempdir().join("policy");
    std::fs::create_dir_all(&dir).unwrap();
    let raw = breast_cancer();
    let coordinator = Keypair::generate_ed25519();
    let member = Keypair::generate_ed25519();
    let stranger = Keypair::generate_ed25519();
    let config = RunConfig {
        public: RunParameters {
            federation_id: [7; 32],
            schema: raw.schema.clone(),
            model: zkfed_air::spec::ModelSpec::Logistic,
            standardization: Standardization::fit(&raw).unwrap(),
            rounds: 1,
            params: RoundParams {
                clip_norm: ONE,
                batch_size: 4,
            },
            learning_rate: ONE,
            strategy: zkfed_aggregation::strategy::Strategy::FedAvg,
            privacy: None,
        },
        coordinator_key: coordinator.public().encode_protobuf(),
        allow_list: vec![member.public().to_peer_id().to_bytes()],
        quorum: 1,
        round_deadline_secs: 60,
        max_attempts: 3,
        noise_key_commitment: None,
    };
    let mut core = Ledger::open(&dir.join("state.redb"), coordinator, config.clone()).unwrap();
    let enrolment = |rows: u64, federation_id: [u8; 32]| Enrolment {
        federation_id,
        commitment: zkfed_air::DatasetCommitment {
            root: [1, 2, 3, 4],
            rows,
        },
        schema_hash: config.public.schema.hash(),
        parameters: config.public.digest(),
        sampling_key: None,
    };
    let member_peer = member.public().to_peer_id();
    let stranger_peer = stranger.public().to_peer_id();
    let signed = SignedEnrolment::sign(enrolment(50, [7; 32]), &stranger);
    assert!(matches!(
        core.enrol(&stranger_peer, &signed).unwrap(),
        Err(Rejection::NotAllowed)
    ));
    let signed = SignedEnrolment::sign(enrolment(50, [8; 32]), &member);
    assert!(matches!(
        core.enrol(&member_peer, &signed).unwrap(),
        Err(Rejection::OtherFederation)
    ));
    let signed = SignedEnrolment::sign(enrolment(2, [7; 32]), &member);
    assert!(matches!(
        core.enrol(&member_peer, &signed).unwrap(),
        Err(Rejection::TooFewRows { rows: 2, .. })
    ));
    // Signed over parameters the run does not have (as a coordinator telling participants
    // another strategy or learning rate than it logged would have them sign).
    let mut told = config.public.clone();
    told.strategy = zkfed_aggregation::strategy::Strategy::Median;
    let mut elsewhere = enrolment(50, [7; 32]);
    elsewhere.parameters = told.digest();
    let signed = SignedEnrolment::sign(elsewhere, &member);
    assert!(matches!(
        core.enrol(&member_peer, &signed).unwrap(),
        Err(Rejection::OtherParameters)
    ));
    // A root limb at or above the field modulus would be a second encoding of the root.
    let mut aliased = enrolment(50, [7; 32]);
    aliased.commitment.root[0] = u64::MAX;
    let signed = SignedEnrolment::sign(aliased, &member);
    assert!(matches!(
        core.enrol(&member_peer, &signed).unwrap(),
        Err(Rejection::Statement(reason)) if reason.contains("root limb 0")
    ));
    // Signed by someone else on the member's behalf.
    let signed = SignedEnrolment::sign(enrolment(50, [7; 32]), &stranger);
    assert!(matches!(
        core.enrol(&member_peer, &signed).unwrap(),
        Err(Rejection::BadEnrolmentSignature(_))
    ));
    let signed = SignedEnrolment::sign(enrolment(50, [7; 32]), &member);
    core.enrol(&member_peer, &signed).unwrap().unwrap();
    core.enrol(&member_peer, &signed)
        .unwrap()
        .expect("re-enrolling the same root is idempotent");
    let changed = SignedEnrolment::sign(enrolment(51, [7; 32]), &member);
    assert!(matches!(
        core.enrol(&member_peer, &changed).unwrap(),
        Err(Rejection::CommitmentChanged)
    ));
    assert_eq!(core.state().enrolments.len(), 1);
    // The same refusal again adds no record: a peer cannot grow the log by repeating it.
    let stranger_again = SignedEnrolment::sign(enrolment(50, [7; 32]), &stranger);
    assert!(
        core.enrol(&stranger_peer, &stranger_again)
            .unwrap()
            .is_err()
    );
    drop(core);
    // Every refusal is on the signed record with its reason.
    let refused: Vec<Rejection> = StoredLog::open(&dir.join("state.redb"))
        .unwrap()
        .records()
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event {
            AuditEvent::Refused {
                submission: None,
                rejection,
                ..
            } => Some(rejection),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 7, "{refused:?}");
    assert!(matches!(refused[0], Rejection::NotAllowed));
    assert!(matches!(refused[3], Rejection::OtherParameters));
    assert!(matches!(refused[4], Rejection::Statement(_)));
    assert!(matches!(refused[6], Rejection::CommitmentChanged));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_exported_model_is_the_last_aggregate_and_evaluates_on_labelled_rows() {
    use zkfed_coordinator::export::{evaluate_model_file, evaluation_report, export_model};
    use zkfed_protocol::model_file::ModelFile;

    let dir = tempdir();
    let coordinator = Keypair::generate_ed25519();
    let (config, _) = run(&dir, &coordinator);
    let store = dir.join("state.redb");
    let last = Ledger::open(&store, coordinator, config.clone())
        .unwrap()
        .state()
        .model
        .clone();
    let file = export_model(&store).unwrap();
    assert_eq!(file.rounds, 2);
    let (read, model) = ModelFile::from_json(&file.to_json()).unwrap();
    assert_eq!((read.schema, model), (config.public.schema.clone(), last));

    // The bundled rows as a hospital's CSV: every row fits the run's standardization.
    let raw = breast_cancer();
    std::fs::write(
        dir.join("rows.csv"),
        zkfed_participant::bundled_shard_csv(0, 1),
    )
    .unwrap();
    let model_path = dir.join("model.json");
    std::fs::write(&model_path, file.to_json()).unwrap();
    let (_, evaluation, left_out) =
        evaluate_model_file(&model_path, &dir.join("rows.csv")).unwrap();
    assert_eq!(evaluation.rows + left_out, raw.features.len());
    let counted: u64 = evaluation.confusion.iter().flatten().sum();
    assert_eq!(counted as usize, evaluation.rows);
    assert!(
        evaluation.accuracy > 0.8,
        "two rounds of training separate the classes: {evaluation:?}"
    );
    let report = evaluation_report(&file, &evaluation, left_out);
    assert!(
        report.contains("accuracy: 0.") && report.contains("recall"),
        "{report}"
    );

    // A tampered file and a missing store are errors that say what is wrong.
    let mut tampered = file.clone();
    tampered.params_fixed[0] += 1;
    std::fs::write(&model_path, tampered.to_json()).unwrap();
    let err = format!(
        "{:#}",
        evaluate_model_file(&model_path, &dir.join("rows.csv")).unwrap_err()
    );
    assert!(err.contains("inconsistent"), "{err}");
    let err = format!("{:#}", export_model(&dir.join("missing.redb")).unwrap_err());
    assert!(err.contains("opening the state store"), "{err}");
}

/// A softmax run (two classes over the bundled data) goes through the same ledger, the
/// same cheats are rejected, and the store audits, replays and exports a softmax model.
#[test]
fn softmax_and_mlp_runs_audit_and_export_their_models() {
    use zkfed_air::spec::ModelSpec;
    use zkfed_coordinator::audit::audit_store;
    use zkfed_coordinator::export::export_model;

    let mlp = ModelSpec::Mlp {
        hidden: 4,
        outputs: 2,
    };
    for spec in [ModelSpec::Softmax { classes: 2 }, mlp] {
        let dir = tempdir();
        let coordinator = Keypair::generate_ed25519();
        let (config, _) = run_with(&dir, &coordinator, spec);
        let store = dir.join("state.redb");
        let me = coordinator.public().to_peer_id();
        let summary = audit_store(&store, Some(&me), None)
            .unwrap()
            .unwrap_or_else(|d| panic!("the {spec} run does not audit: {d}"));
        assert_eq!(
            (summary.rounds, summary.proofs_verified, summary.rejections),
            (2, 4, 2),
            "{spec}"
        );
        let state = Ledger::open(&store, coordinator, config)
            .unwrap()
            .state()
            .clone();
        assert_eq!(state.model.spec, spec);
        let initial = zkfed_air::Model::initial(spec, state.model.num_features());
        assert_ne!(state.model, initial, "{spec}: two rounds trained it");
        let file = export_model(&store).unwrap();
        assert_eq!((file.spec, file.rounds), (spec, 2));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// Copies the store at `honest` into a new store at `to`, signed with `coordinator`'s key,
/// passing the last record's event through `edit_last` and each stored proof through
/// `edit_proof`.
fn rewrite_store(
    honest: &Path,
    to: &Path,
    coordinator: Keypair,
    edit_last: impl Fn(&mut AuditEvent),
    edit_proof: impl Fn(Vec<u8>) -> Vec<u8>,
) {
    use zkfed_coordinator::log::AuditLog;

    let honest = StoredLog::open(honest).unwrap();
    let records = honest.records().unwrap();
    let mut forged = AuditLog::open(to, coordinator).unwrap();
    let last = records.len() - 1;
    for (i, record) in records.into_iter().enumerate() {
        let mut event = record.event;
        if i == last {
            edit_last(&mut event);
        }
        let proof = match &event {
            AuditEvent::Judged {
                round,
                attempt,
                peer,
                ..
            } => {
                let peer = PeerId::from_bytes(peer).unwrap();
                let bytes = honest.proof(*round, *attempt, &peer).unwrap();
                bytes.map(|b| (*round, *attempt, peer, edit_proof(b)))
            }
            _ => None,
        };
        let proof = proof.as_ref().map(|(r, a, p, b)| (*r, *a, p, &b[..]));
        forged.append(event, proof).unwrap();
    }
}

/// An aggregate edited in the store and signed again with the coordinator's own key still
/// does not audit (the aggregate is recomputed), so it is not exported.
#[test]
fn a_store_with_a_forged_aggregate_is_not_exported() {
    use zkfed_coordinator::export::export_model;

    let dir = tempdir();
    let coordinator = Keypair::generate_ed25519();
    run(&dir, &coordinator);
    let forged_path = dir.join("forged.redb");
    let edit_last = |event: &mut AuditEvent| {
        if let AuditEvent::Aggregated { model, .. } = event {
            model.params[0] += 1;
        }
    };
    rewrite_store(
        &dir.join("state.redb"),
        &forged_path,
        coordinator,
        edit_last,
        |proof| proof,
    );
    export_model(&dir.join("state.redb")).expect("the honest store exports");
    let err = format!("{:#}", export_model(&forged_path).unwrap_err());
    assert!(
        err.contains("does not audit") && err.contains("aggregate differs from fedavg"),
        "{err}"
    );
}

/// A store is untrusted input to its auditor: stored proofs longer than any the coordinator
/// accepts are refused before they are read into the audit, and named as what diverges.
#[test]
fn a_store_with_an_oversized_proof_does_not_audit() {
    use zkfed_coordinator::audit::audit_store;

    let dir = tempdir();
    let coordinator = Keypair::generate_ed25519();
    run(&dir, &coordinator);
    let me = coordinator.public().to_peer_id();
    let forged_path = dir.join("forged.redb");
    let pad = |mut proof: Vec<u8>| {
        proof.resize(zkfed_air::proof::MAX_PROOF_BYTES + 1, 0);
        proof
    };
    rewrite_store(
        &dir.join("state.redb"),
        &forged_path,
        coordinator,
        |_| {},
        pad,
    );
    let d = audit_store(&forged_path, Some(&me), None)
        .expect("the store opens")
        .expect_err("an oversized proof does not audit");
    assert!(
        d.what.contains("cannot be read") && d.what.contains("more than a proof may"),
        "{d}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A run whose model does not fit its schema (or is not proven) does not audit, whatever
/// follows: the coordinator's configuration would have refused it.
#[test]
fn a_run_started_with_a_model_the_schema_or_the_proof_rejects_does_not_audit() {
    let dir = tempdir();
    let coordinator = Keypair::generate_ed25519();
    run(&dir, &coordinator);
    let records = StoredLog::open(&dir.join("state.redb"))
        .unwrap()
        .records()
        .unwrap();
    let proofs = proofs(&dir);
    let lookup =
        |round: u64, attempt: u32, peer: &PeerId| proofs.get(&(round, attempt, *peer)).cloned();
    for (spec, reason) in [
        (
            zkfed_air::spec::ModelSpec::Mlp {
                hidden: 4,
                outputs: 1,
            },
            "not proven yet",
        ),
        (
            zkfed_air::spec::ModelSpec::Softmax { classes: 10 },
            "the label has 2",
        ),
    ] {
        let mut altered = records.clone();
        if let AuditEvent::RunStarted(config) = &mut altered[0].event {
            config.public.model = spec;
        }
        resign(&mut altered, &coordinator);
        let d = audit(&altered, lookup, None, None).unwrap_err();
        assert_eq!(d.seq, 0, "{d}");
        assert!(d.to_string().contains(reason), "{d}");
    }
    // A run whose every judged proof would make the auditor build more periodic cells than
    // a verifier may (the coordinator's configuration refuses it too).
    let mut altered = records.clone();
    if let AuditEvent::RunStarted(config) = &mut altered[0].event {
        config.public.model = zkfed_air::spec::ModelSpec::Mlp {
            hidden: 256,
            outputs: 2,
        };
        config.public.params.batch_size = 1024;
    }
    resign(&mut altered, &coordinator);
    let d = audit(&altered, lookup, None, None).unwrap_err();
    assert_eq!(d.seq, 0, "{d}");
    assert!(d.to_string().contains("periodic cells"), "{d}");
    // A batch size no run may have is refused before any shape is computed from it.
    let mut altered = records.clone();
    if let AuditEvent::RunStarted(config) = &mut altered[0].event {
        config.public.params.batch_size = 1 << 62;
    }
    resign(&mut altered, &coordinator);
    let d = audit(&altered, lookup, None, None).unwrap_err();
    assert_eq!(d.seq, 0, "{d}");
    assert!(d.to_string().contains("round parameters"), "{d}");
}

/// A store is untrusted input to its auditor: a verdict's rejection text, as long as a
/// record allows, costs the audit's replayed state at most `MAX_KEPT_TEXT_BYTES`.
#[test]
fn the_audit_keeps_a_bounded_text_of_each_rejection() {
    use zkfed_coordinator::audit::Auditor;
    use zkfed_protocol::MAX_KEPT_TEXT_BYTES;

    let dir = tempdir();
    let coordinator = Keypair::generate_ed25519();
    run(&dir, &coordinator);
    let mut records = StoredLog::open(&dir.join("state.redb"))
        .unwrap()
        .records()
        .unwrap();
    let proofs = proofs(&dir);
    let rejected = records
        .iter_mut()
        .find_map(|r| match &mut r.event {
            AuditEvent::Judged {
                round,
                attempt,
                peer,
                rejection: Some(rejection),
                ..
            } => {
                *rejection = Rejection::ProofRejected("x".repeat(1 << 20));
                Some((*round, *attempt, PeerId::from_bytes(peer).unwrap()))
            }
            _ => None,
        })
        .expect("the run rejects a cheater");
    resign(&mut records, &coordinator);
    let lookup =
        |round: u64, attempt: u32, peer: &PeerId| Ok(proofs.get(&(round, attempt, *peer)).cloned());
    let mut auditor = Auditor::start(&records[0], Some(&coordinator.public().to_peer_id()), None)
        .expect("the run starts");
    for record in &records[1..] {
        auditor.check(record, &lookup).expect("the log audits");
    }
    let (_, state) = auditor.finish();
    let kept = &state.verdicts[&rejected].rejection;
    assert!(
        matches!(kept, Some(Rejection::ProofRejected(text)) if text.len() == MAX_KEPT_TEXT_BYTES),
        "{kept:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
