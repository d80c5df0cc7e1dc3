//! Revoking a participant's key during a run, through the [`Ledger`] with real proofs and
//! through the running event loop: the revocation is a signed record appended before it
//! takes effect; the peer's submissions are refused as revoked, its update accepted in the
//! open attempt is left out of the aggregate, the run completes with the others, a restart
//! replays it, a second revocation or one of an unknown peer appends nothing, revocations
//! that leave fewer peers than the quorum end the run, and the audit checks all of it.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{Hospital, bundled_hospitals, refusals, resign, run_config};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use zkfed_aggregation::fedavg_step;
use zkfed_air::fixed::ONE;
use zkfed_air::{ClippedGradientSum, DatasetCommitment};
use zkfed_coordinator::audit::{audit, audit_store};
use zkfed_coordinator::event_loop::{CoordinatorTelemetry, StarkVerifier};
use zkfed_coordinator::events::{AuditEvent, RunConfig, unix_ms};
use zkfed_coordinator::ledger::Ledger;
use zkfed_coordinator::log::{AuditRecord, StoredLog};
use zkfed_coordinator::revocation;
use zkfed_coordinator::rounds::RevokeError;
use zkfed_protocol::{Enrolment, Rejection, Request, Response, SignedEnrolment, Submission};

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zkfed-revoke-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn store(dir: &Path) -> PathBuf {
    dir.join("state.redb")
}

/// A run of `rounds` rounds, quorum 2, among `hospitals` with 40 committed rows each.
fn federation(hospitals: usize, rounds: u64, coordinator: &Keypair) -> (RunConfig, Vec<Hospital>) {
    let (hospitals, schema, standardization) = bundled_hospitals(hospitals, 40, 12);
    let config = run_config(
        12,
        rounds,
        (ONE, ONE),
        (&schema, &standardization),
        coordinator,
        &hospitals,
    );
    (config, hospitals)
}

fn signed_enrolment(
    config: &RunConfig,
    key: &Keypair,
    commitment: DatasetCommitment,
) -> SignedEnrolment {
    let enrolment = Enrolment {
        federation_id: config.public.federation_id,
        commitment,
        schema_hash: config.public.schema.hash(),
        parameters: config.public.digest(),
        sampling_key: None,
    };
    SignedEnrolment::sign(enrolment, key)
}

fn enrol(ledger: &mut Ledger, config: &RunConfig, h: &Hospital) -> Result<(), Rejection> {
    let signed = signed_enrolment(config, &h.key, h.dataset.commitment());
    ledger.enrol(&h.peer(), &signed).unwrap()
}

/// Admits, verifies and judges a submission, as the event loop does; `true` if accepted.
fn submit(ledger: &mut Ledger, h: &Hospital, submission: &Submission) -> bool {
    let statement = ledger.admit(&h.peer(), submission).unwrap();
    let outcome = zkfed_air::verify(&statement, &submission.update, &submission.proof)
        .map_err(Rejection::from);
    ledger
        .judge(&h.peer(), submission, outcome)
        .unwrap()
        .accepted()
}

fn revoked_records(records: &[AuditRecord]) -> usize {
    records
        .iter()
        .filter(|r| matches!(r.event, AuditEvent::Revoked { .. }))
        .count()
}

#[test]
fn a_revoked_peer_is_refused_left_out_of_the_open_aggregate_and_the_run_completes() {
    let dir = tempdir("ledger");
    let coordinator = Keypair::generate_ed25519();
    let (config, hospitals) = federation(3, 2, &coordinator);
    let mut ledger = Ledger::open(&store(&dir), coordinator.clone(), config.clone()).unwrap();
    for h in &hospitals {
        enrol(&mut ledger, &config, h).unwrap();
    }
    let compromised = &hospitals[0];
    let peer = compromised.peer();

    // Round 1: the compromised key's update is accepted, then the key is revoked.
    assert!(ledger.start_round_if_due([1; 32], unix_ms()).unwrap());
    let start_model = ledger.state().model.clone();
    let first = compromised.honest_submission(&ledger);
    assert!(submit(&mut ledger, compromised, &first));
    let revocation = ledger
        .revoke(&peer, "key found on a public file share", unix_ms())
        .unwrap()
        .unwrap();
    let state = ledger.state();
    let open = state.open.as_ref().unwrap();
    assert!(open.accepted.is_empty(), "the accepted update is taken out");
    assert!(open.dropped.contains(&peer));
    assert!(!state.enrolments.contains_key(&peer));
    assert_eq!(state.revoked.get(&peer), Some(&revocation));
    // Its submission sent again gets no recorded verdict, only the typed refusal.
    assert_eq!(ledger.recorded_verdict(&peer, &first), None);
    assert!(matches!(
        ledger.admit(&peer, &first),
        Err(Rejection::Revoked)
    ));
    let mut updates: Vec<ClippedGradientSum> = Vec::new();
    for h in &hospitals[1..] {
        let submission = h.honest_submission(&ledger);
        assert!(submit(&mut ledger, h, &submission));
        updates.push(submission.update);
    }
    // Every allowed, non-revoked peer is in: the attempt closes before its deadline.
    let closed = ledger.close_round_if_due(unix_ms()).unwrap();
    let Some(AuditEvent::Aggregated {
        round: 1, model, ..
    }) = closed
    else {
        panic!("round 1 not aggregated: {closed:?}");
    };
    assert_eq!(model, fedavg_step(&start_model, &updates, ONE).unwrap());
    assert_ne!(
        model,
        fedavg_step(
            &start_model,
            &[first.update.clone(), updates[0].clone(), updates[1].clone()],
            ONE
        )
        .unwrap()
    );

    // Round 2: the revoked key can neither enrol again nor submit.
    assert!(ledger.start_round_if_due([2; 32], unix_ms()).unwrap());
    assert_eq!(
        enrol(&mut ledger, &config, compromised),
        Err(Rejection::Revoked)
    );
    let mut stale = first.clone();
    stale.round = 2;
    assert!(matches!(
        ledger.admit(&peer, &stale),
        Err(Rejection::Revoked)
    ));
    // Revoking it again, an unknown peer, or without a reason: refused, nothing appended.
    let before = ledger.state().clone();
    assert_eq!(
        ledger.revoke(&peer, "again", unix_ms()).unwrap(),
        Err(RevokeError::AlreadyRevoked {
            peer,
            seq: revocation.seq,
            at_ms: revocation.at_ms
        })
    );
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    assert_eq!(
        ledger.revoke(&stranger, "unknown", unix_ms()).unwrap(),
        Err(RevokeError::NotOnAllowList { peer: stranger })
    );
    let other = hospitals[1].peer();
    for reason in ["", "two\nlines"] {
        let refused = ledger.revoke(&other, reason, unix_ms()).unwrap();
        assert!(
            matches!(refused, Err(RevokeError::Reason(_))),
            "{refused:?}"
        );
    }
    assert_eq!(ledger.state(), &before);
    for h in &hospitals[1..] {
        let submission = h.honest_submission(&ledger);
        assert!(submit(&mut ledger, h, &submission));
    }
    assert!(matches!(
        ledger.close_round_if_due(unix_ms()).unwrap(),
        Some(AuditEvent::Aggregated { round: 2, .. })
    ));
    assert!(ledger.state().finished() && !ledger.state().failed);
    assert_eq!(
        ledger.revoke(&other, "too late", unix_ms()).unwrap(),
        Err(RevokeError::RunOver)
    );

    // A restart replays the revocation: the same state, and still revoked.
    let before = ledger.state().clone();
    drop(ledger);
    let mut ledger = Ledger::open(&store(&dir), coordinator.clone(), config.clone()).unwrap();
    assert_eq!(ledger.state(), &before);
    assert!(matches!(
        ledger.admit(&peer, &stale),
        Err(Rejection::Revoked)
    ));
    assert!(matches!(
        ledger.revoke(&peer, "again", unix_ms()).unwrap(),
        Err(RevokeError::AlreadyRevoked { .. })
    ));
    drop(ledger);

    // The revocation is on the signed record, and the audit passes.
    let me = coordinator.public().to_peer_id();
    let summary = audit_store(&store(&dir), Some(&me), None).unwrap().unwrap();
    assert_eq!(
        (summary.rounds, summary.proofs_verified, summary.revocations),
        (2, 5, 1)
    );
    let stored = StoredLog::open(&store(&dir)).unwrap();
    let records = stored.records().unwrap();
    assert_eq!(revoked_records(&records), 1);
    let at = records
        .iter()
        .position(|r| matches!(r.event, AuditEvent::Revoked { .. }))
        .unwrap();
    assert_eq!(at as u64, revocation.seq);
    match &records[at].event {
        AuditEvent::Revoked {
            peer: p,
            reason,
            at_ms,
        } => {
            assert_eq!(p, &peer.to_bytes());
            assert_eq!(reason, "key found on a public file share");
            assert_eq!(*at_ms, revocation.at_ms);
        }
        other => panic!("{other:?}"),
    }
    assert!(records[at].signed_by(&coordinator.public()));
    // The only refusal on record is the revoked key's enrolment, once.
    let refusals = refusals(&records);
    assert_eq!(refusals, [Rejection::Revoked]);

    // A coordinator re-signing its log: each forgery around the revocation is caught.
    let lookup =
        |round: u64, attempt: u32, peer: &PeerId| stored.proof(round, attempt, peer).ok().flatten();
    let caught = |forged: &mut Vec<AuditRecord>, at: usize, what: &str| {
        resign(forged, &coordinator);
        let d = audit(forged, lookup, Some(&me), None).unwrap_err();
        assert_eq!(d.seq, at as u64, "{d}");
        assert!(d.what.contains(what), "{d}");
    };
    // The revoked key's update aggregated anyway.
    let mut forged = records.clone();
    let first_aggregate = forged
        .iter()
        .position(|r| matches!(r.event, AuditEvent::Aggregated { round: 1, .. }))
        .unwrap();
    let with_it = fedavg_step(
        &start_model,
        &[first.update.clone(), updates[0].clone(), updates[1].clone()],
        ONE,
    )
    .unwrap();
    if let AuditEvent::Aggregated { model, .. } = &mut forged[first_aggregate].event {
        *model = with_it;
    }
    caught(&mut forged, first_aggregate, "updates of the revoked");
    // Its submission judged after the revocation (the record moved before the verdict).
    let mut forged = records.clone();
    let judged = forged
        .iter()
        .position(
            |r| matches!(&r.event, AuditEvent::Judged { peer: p, .. } if *p == peer.to_bytes()),
        )
        .unwrap();
    let moved = forged.remove(at);
    forged.insert(judged, moved);
    caught(&mut forged, judged + 1, "judged after its key was revoked");
    // Its enrolment recorded after the revocation.
    let mut forged = records.clone();
    let enrolled = forged
        .iter()
        .position(
            |r| matches!(&r.event, AuditEvent::Enrolled { peer: p, .. } if *p == peer.to_bytes()),
        )
        .unwrap();
    let moved = forged.remove(at);
    forged.insert(enrolled, moved);
    caught(&mut forged, enrolled + 1, "should have been refused");
    // Revoked twice.
    let mut forged = records.clone();
    let again = forged[at].clone();
    forged.insert(at + 1, again);
    caught(&mut forged, at + 1, "revoked twice");
    // A peer off the allow-list "revoked".
    let mut forged = records.clone();
    if let AuditEvent::Revoked { peer: p, .. } = &mut forged[at].event {
        *p = stranger.to_bytes();
    }
    caught(&mut forged, at, "not on the allow-list");
    // An honest, never revoked peer "refused as revoked".
    let mut forged = records.clone();
    let honest = hospitals[1].peer();
    assert_ne!(honest, peer);
    forged.insert(
        at,
        AuditRecord {
            seq: 0,
            prev: [0; 32],
            event: AuditEvent::Refused {
                peer: honest.to_bytes(),
                submission: None,
                proof_sha256: None,
                rejection: Rejection::Revoked,
            },
            signature: Vec::new(), // `resign` signs it
        },
    );
    caught(&mut forged, at, "refused as revoked, never revoked");
    drop(stored);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn revocations_below_the_quorum_end_the_run_and_a_revoked_peer_never_counts() {
    let dir = tempdir("quorum");
    let coordinator = Keypair::generate_ed25519();
    let (config, hospitals) = federation(3, 2, &coordinator);
    let mut ledger = Ledger::open(&store(&dir), coordinator.clone(), config.clone()).unwrap();
    let commitment = |rows| DatasetCommitment {
        root: [1, 2, 3, 4],
        rows,
    };
    let enrol = |ledger: &mut Ledger, h: &Hospital| {
        let signed = signed_enrolment(&config, &h.key, commitment(40));
        ledger.enrol(&h.peer(), &signed).unwrap()
    };
    enrol(&mut ledger, &hospitals[0]).unwrap();
    // Hospital 1 is revoked before it ever enrolled: it cannot, and does not count.
    ledger
        .revoke(&hospitals[1].peer(), "laptop stolen", unix_ms())
        .unwrap()
        .unwrap();
    assert_eq!(enrol(&mut ledger, &hospitals[1]), Err(Rejection::Revoked));
    assert!(!ledger.start_round_if_due([1; 32], unix_ms()).unwrap());
    enrol(&mut ledger, &hospitals[2]).unwrap();
    assert!(ledger.start_round_if_due([1; 32], unix_ms()).unwrap());
    // Hospital 2's submission is being verified when its key is revoked: the finished
    // verification is discarded with the typed reason, not judged.
    let submission = Submission {
        round: 1,
        attempt: 1,
        update: ClippedGradientSum {
            values: vec![0; config.public.schema.features.len() + 1],
            examples: 4,
        },
        proof: vec![1, 2, 3],
    };
    let in_flight = hospitals[2].peer();
    assert!(ledger.admit(&in_flight, &submission).is_ok());
    // Revoking hospital 2 leaves one allowed peer for a quorum of 2: the open attempt is
    // abandoned at once, and the run ends as failed instead of waiting forever.
    ledger
        .revoke(&in_flight, "key leaked", unix_ms())
        .unwrap()
        .unwrap();
    let verdict = ledger.judge(&in_flight, &submission, Ok(())).unwrap();
    assert_eq!(verdict.rejection, Some(Rejection::Revoked));
    assert!(ledger.state().open.as_ref().unwrap().judged.is_empty());
    assert!(ledger.state().quorum_unreachable());
    let closed = ledger.close_round_if_due(unix_ms()).unwrap();
    match &closed {
        Some(AuditEvent::Abandoned { reason, .. }) => {
            assert!(
                reason.contains("revocations leave 1 allowed peers"),
                "{reason}"
            )
        }
        other => panic!("expected the attempt abandoned, got {other:?}"),
    }
    assert!(!ledger.start_round_if_due([2; 32], unix_ms()).unwrap());
    assert!(ledger.state().failed && ledger.state().finished());
    drop(ledger);
    let me = coordinator.public().to_peer_id();
    let summary = audit_store(&store(&dir), Some(&me), None).unwrap().unwrap();
    assert_eq!(summary.revocations, 2);
    let records = StoredLog::open(&store(&dir)).unwrap().records().unwrap();
    assert!(matches!(
        records.last().unwrap().event,
        AuditEvent::RunFailed { round: 1, .. }
    ));
    let discarded = records.iter().any(|r| {
        matches!(&r.event, AuditEvent::Discarded { peer, rejection: Rejection::Revoked, .. }
            if *peer == in_flight.to_bytes())
    });
    assert!(
        discarded,
        "the in-flight verification is discarded on record"
    );
    // Without the second revocation on record, the discarded verification, the early close
    // and the failure are each caught.
    let second = records
        .iter()
        .rposition(|r| matches!(r.event, AuditEvent::Revoked { .. }))
        .unwrap();
    let none = |_: u64, _: u32, _: &PeerId| None;
    let mut forged = records.clone();
    forged.remove(second);
    resign(&mut forged, &coordinator);
    let d = audit(&forged, none, Some(&me), None).unwrap_err();
    assert_eq!(d.seq, second as u64, "{d}");
    assert!(d.what.contains("discarded instead of judged"), "{d}");
    // ... with the discard gone too, the early close ...
    let mut forged = records.clone();
    forged.remove(second);
    forged.remove(second);
    resign(&mut forged, &coordinator);
    let d = audit(&forged, none, Some(&me), None).unwrap_err();
    assert!(d.what.contains("before its deadline"), "{d}");
    // ... and with the attempt closed at its deadline instead, the failure.
    let mut forged = records.clone();
    forged.remove(second);
    forged.remove(second);
    let abandoned = forged.len() - 2;
    if let AuditEvent::Abandoned { at_ms, .. } = &mut forged[abandoned].event {
        *at_ms += 3_600_000;
    }
    resign(&mut forged, &coordinator);
    let d = audit(&forged, none, Some(&me), None).unwrap_err();
    assert_eq!(d.seq, forged.len() as u64 - 1, "{d}");
    assert!(d.what.contains("quorum could still be met"), "{d}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Waits up to 20 s for the outcome of `peer`'s request filed at `filed_at_ms`.
async fn outcome(state: &Path, peer: &PeerId, filed_at_ms: u64) -> revocation::Outcome {
    for _ in 0..200 {
        if let Some(outcome) = revocation::read_outcome(state, peer, filed_at_ms).unwrap() {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no outcome for {peer}");
}

fn client(
    key: &Keypair,
    coordinator: PeerId,
    address: &Multiaddr,
) -> zkfed_net::Client<zkfed_protocol::ZkfedCodec> {
    zkfed_net::Client::new(
        key.clone(),
        coordinator,
        address.clone(),
        zkfed_protocol::participant_behaviour(),
        zkfed_protocol::AGENT_VERSION,
        Duration::from_secs(5),
    )
    .unwrap()
}

/// The operator's path on a running coordinator: requests filed in the state directory,
/// one while it was down, applied from the loop; the revoked peer is disconnected and
/// refused at the connection while others are served; refused requests append nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_coordinator_applies_filed_revocations_and_drops_the_peer() {
    let dir = tempdir("loop");
    let state = dir.join("state");
    let keys: Vec<Keypair> = (0..4).map(|_| Keypair::generate_ed25519()).collect();
    let peers: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let mut raw = zkfed_coordinator::starter::bundled_config(
        state.clone(),
        peers.iter().map(ToString::to_string).collect(),
        listen.clone(),
        1,
        Some(2),
    );
    raw.linger_secs = 0;
    let config = raw.clone().resolve().unwrap();
    let me = config.key.public().to_peer_id();
    let address: Multiaddr = listen.parse().unwrap();

    // Filed while the coordinator is down: applied when it starts.
    let (_, down) =
        revocation::file_request(&state, &peers[2], "revoked while down", unix_ms()).unwrap();
    let (observer, mut telemetry) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let coordinator = tokio::spawn(zkfed_coordinator::event_loop::run(
        config,
        Some(observer),
        Arc::new(StarkVerifier),
        async {
            let _ = stopped.await;
        },
    ));
    let applied = outcome(&state, &peers[2], down.filed_at_ms).await;
    assert!(applied.revoked, "{applied:?}");

    // Peer 0 is connected and served, then revoked while connected.
    let mut zero = client(&keys[0], me, &address);
    let asked = zero.ask_once(Request::Parameters).await;
    assert!(matches!(asked, Ok(Response::Parameters(_))), "{asked:?}");
    let (_, filed) = revocation::file_request(&state, &peers[0], "key leaked", unix_ms()).unwrap();
    let applied = outcome(&state, &peers[0], filed.filed_at_ms).await;
    assert!(applied.revoked && applied.record.is_some(), "{applied:?}");
    let revoked = loop {
        match telemetry.recv().await.unwrap() {
            CoordinatorTelemetry::Revoked { peer, .. } if peer == peers[0] => break peer,
            _ => {}
        }
    };
    assert_eq!(revoked, peers[0]);
    let asked =
        tokio::time::timeout(Duration::from_secs(30), zero.ask_once(Request::Parameters)).await;
    assert!(
        !matches!(asked, Ok(Ok(_))),
        "a revoked peer was served: {asked:?}"
    );
    let mut one = client(&keys[1], me, &address);
    let asked = one.ask_once(Request::Parameters).await;
    assert!(matches!(asked, Ok(Response::Parameters(_))), "{asked:?}");

    // Refused requests: the same peer again, a peer off the allow-list, a broken file.
    let (_, again) = revocation::file_request(&state, &peers[0], "again", unix_ms()).unwrap();
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    let (_, unknown) = revocation::file_request(&state, &stranger, "who?", unix_ms()).unwrap();
    std::fs::write(
        revocation::directory(&state).join("request-broken.toml"),
        "peer = [",
    )
    .unwrap();
    let refused = outcome(&state, &peers[0], again.filed_at_ms).await;
    assert!(
        !refused.revoked && refused.message.contains("already revoked"),
        "{refused:?}"
    );
    let refused = outcome(&state, &stranger, unknown.filed_at_ms).await;
    assert!(
        !refused.revoked && refused.message.contains("allow-list"),
        "{refused:?}"
    );
    // The applied request's file left behind (a crash before it was removed): answered as
    // applied, with the same record, and nothing appended.
    let text = toml::to_string(&filed).unwrap();
    zkfed_net::write_durably(
        &revocation::request_path(&state, &peers[0]),
        text.as_bytes(),
        true,
    )
    .unwrap();
    let replayed = outcome(&state, &peers[0], filed.filed_at_ms).await;
    assert!(replayed.revoked, "{replayed:?}");
    assert_eq!(replayed.record, applied.record);
    let broken = revocation::directory(&state).join("outcome-broken.toml");
    for _ in 0..100 {
        if broken.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        std::fs::read_to_string(&broken)
            .unwrap()
            .contains("not a revocation request")
    );
    let requests_left = || {
        std::fs::read_dir(revocation::directory(&state))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("request-"))
            .count()
    };
    for _ in 0..100 {
        if requests_left() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(requests_left(), 0, "every request answered and removed");

    // Revoking peer 3 leaves one allowed peer for a quorum of 2: the run ends as failed
    // and, with no linger, the coordinator stops by itself.
    let (_, last) =
        revocation::file_request(&state, &peers[3], "key leaked too", unix_ms()).unwrap();
    let applied = outcome(&state, &peers[3], last.filed_at_ms).await;
    assert!(
        applied.message.contains("below the quorum of 2"),
        "{applied:?}"
    );
    tokio::time::timeout(Duration::from_secs(30), coordinator)
        .await
        .expect("the coordinator stops once the run failed")
        .unwrap()
        .unwrap();
    drop(stop);

    let summary = audit_store(&store(&state), Some(&me), None)
        .unwrap()
        .unwrap();
    assert_eq!(summary.revocations, 3);
    let events: Vec<AuditEvent> = StoredLog::open(&store(&state))
        .unwrap()
        .records()
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    let revoked: Vec<Vec<u8>> = events
        .iter()
        .filter_map(|e| match e {
            AuditEvent::Revoked { peer, .. } => Some(peer.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        revoked,
        [
            peers[2].to_bytes(),
            peers[0].to_bytes(),
            peers[3].to_bytes()
        ]
    );
    // Nothing else was appended: no record for the refused requests.
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(matches!(events[4], AuditEvent::RunFailed { round: 1, .. }));
    std::fs::remove_dir_all(dir).unwrap();
}
