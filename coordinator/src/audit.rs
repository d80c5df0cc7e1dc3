//! Offline audit: re-verify a coordinator's log from its store alone.
//!
//! Checks, record by record: the hash chain, the coordinator's signature, that the event is
//! possible in the replayed state, every enrolment signature, every accepted proof
//! (re-verified from the stored bytes against the statement rebuilt from the log), and
//! every aggregate and server state (recomputed bit for bit with the run's strategy, without
//! the updates of peers revoked before it).
//! The first divergence is reported.

use libp2p::PeerId;
use libp2p::identity::PublicKey;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::events::{AuditEvent, RunState};
use crate::log::AuditRecord;
use crate::rounds::{aggregate, all_judged, deadline_ms, judge_enrolment, statement_for};

/// What an audit of a consistent log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    /// Records checked.
    pub records: u64,
    /// The coordinator whose signatures were checked.
    pub coordinator: PeerId,
    /// Rounds aggregated.
    pub rounds: u64,
    /// Proofs re-verified.
    pub proofs_verified: u64,
    /// Rejections on record.
    pub rejections: u64,
    /// Participants' keys revoked during the run (signed `Revoked` records).
    pub revocations: u64,
}

/// The first place a log stops being consistent.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("record {seq}: {what}")]
pub struct Divergence {
    /// The record.
    pub seq: u64,
    /// What does not check out.
    pub what: String,
}

/// Audits `records`; `proof` looks up the stored proof of an accepted submission by round,
/// attempt and peer.
pub fn audit(
    records: &[AuditRecord],
    proof: impl Fn(u64, u32, &PeerId) -> Option<Vec<u8>>,
    expected_coordinator: Option<&PeerId>,
) -> Result<AuditSummary, Divergence> {
    let diverge = |seq: u64, what: String| Divergence { seq, what };
    let first = records
        .first()
        .ok_or_else(|| diverge(0, "the log is empty".into()))?;
    let AuditEvent::RunStarted(config) = &first.event else {
        return Err(diverge(0, "the log does not start with RunStarted".into()));
    };
    let key = PublicKey::try_decode_protobuf(&config.coordinator_key)
        .map_err(|_| diverge(0, "coordinator key does not decode".into()))?;
    let coordinator = key.to_peer_id();
    if let Some(expected) = expected_coordinator
        && *expected != coordinator
    {
        return Err(diverge(
            0,
            format!("log is signed by {coordinator}, expected {expected}"),
        ));
    }

    // The run's model against its schema, as the coordinator's configuration checks it;
    // also before `RunState::new` sizes a model from it.
    zkfed_protocol::check_model(&config.public.model, &config.public.schema)
        .map_err(|e| diverge(0, format!("the run's model: {e}")))?;
    // Checked as the coordinator's configuration checks it: otherwise a strategy that cannot
    // aggregate the quorum would excuse abandoning every attempt.
    let strategy = config.public.strategy;
    strategy
        .validate()
        .map_err(|e| diverge(0, format!("the run's strategy: {e}")))?;
    strategy
        .admits_from(config.quorum, config.allow_list.len())
        .map_err(|e| {
            diverge(
                0,
                format!(
                    "the run's strategy {strategy} with a quorum of {} and {} allowed peers: {e}",
                    config.quorum,
                    config.allow_list.len()
                ),
            )
        })?;
    let mut state = RunState::new(config.clone());
    let mut summary = AuditSummary {
        records: 0,
        coordinator,
        rounds: 0,
        proofs_verified: 0,
        rejections: 0,
        revocations: 0,
    };
    let mut prev = [0u8; 32];
    for (i, record) in records.iter().enumerate() {
        let seq = i as u64;
        if record.seq != seq || record.prev != prev {
            return Err(diverge(
                seq,
                "hash chain broken (record missing, reordered or altered)".into(),
            ));
        }
        if !record.signed_by(&key) {
            return Err(diverge(seq, "coordinator signature does not verify".into()));
        }
        prev = record.hash();
        if seq > 0 {
            check_event(&state, seq, &record.event, &proof, &mut summary)?;
            state
                .apply(seq, &record.event)
                .map_err(|e| diverge(seq, e.to_string()))?;
        }
        summary.records += 1;
    }
    summary.rounds = state.completed_rounds;
    Ok(summary)
}

fn check_event(
    state: &RunState,
    seq: u64,
    event: &AuditEvent,
    proof: &impl Fn(u64, u32, &PeerId) -> Option<Vec<u8>>,
    summary: &mut AuditSummary,
) -> Result<(), Divergence> {
    let diverge = |what: String| Divergence { seq, what };
    match event {
        AuditEvent::Enrolled { peer, enrolment } => {
            let peer =
                PeerId::from_bytes(peer).map_err(|e| diverge(format!("bad peer id: {e}")))?;
            // The coordinator's own enrolment policy, replayed: the allow-list, the run, the
            // schema, the row count and the signature.
            judge_enrolment(state, &peer, enrolment).map_err(|e| {
                diverge(format!("enrolment of {peer} should have been refused: {e}"))
            })?;
        }
        AuditEvent::Judged {
            round,
            attempt,
            peer,
            update,
            proof_sha256,
            rejection,
        } => {
            let peer =
                PeerId::from_bytes(peer).map_err(|e| diverge(format!("bad peer id: {e}")))?;
            if let Some(revoked) = state.revoked.get(&peer) {
                return Err(diverge(format!(
                    "coordinator misbehaviour: a submission of {peer} was judged after its key \
                     was revoked at record {}",
                    revoked.seq
                )));
            }
            let bytes = proof(*round, *attempt, &peer)
                .ok_or_else(|| diverge(format!("judged proof of {peer} is missing")))?;
            if Sha256::digest(&bytes).as_slice() != proof_sha256 {
                return Err(diverge(format!(
                    "stored proof of {peer} is not the one judged"
                )));
            }
            let statement =
                statement_for(state, &peer).map_err(|e| diverge(format!("{peer}: {e}")))?;
            let verified = zkfed_air::verify(&statement, update, &bytes);
            match (rejection, verified) {
                (None, Ok(())) => summary.proofs_verified += 1,
                (None, Err(e)) => {
                    return Err(diverge(format!(
                        "accepted proof of {peer} does not verify: {e}"
                    )));
                }
                (Some(_), Err(_)) => summary.rejections += 1,
                (Some(recorded), Ok(())) => {
                    return Err(diverge(format!(
                        "coordinator misbehaviour: a valid proof of {peer} was recorded as \
                         rejected ({recorded})"
                    )));
                }
            }
        }
        AuditEvent::Aggregated {
            model,
            at_ms,
            state: server_state,
            ..
        } => {
            closed_in_time(state, *at_ms).map_err(diverge)?;
            let accepted = state.open.as_ref().map_or(0, |o| o.accepted.len());
            if accepted < state.config.quorum {
                return Err(diverge(format!(
                    "aggregated {accepted} updates, below the quorum of {}",
                    state.config.quorum
                )));
            }
            let (recomputed, next_state) =
                aggregate(state).map_err(|e| diverge(format!("aggregate: {e}")))?;
            let strategy = state.config.public.strategy;
            if next_state != *server_state {
                return Err(diverge(format!(
                    "server state differs from {strategy}'s over the accepted updates"
                )));
            }
            if recomputed != *model {
                let dropped = state.open.as_ref().map(|o| &o.dropped);
                let revoked: Vec<String> = dropped
                    .into_iter()
                    .flatten()
                    .map(ToString::to_string)
                    .collect();
                return Err(diverge(if revoked.is_empty() {
                    format!("aggregate differs from {strategy} of the accepted updates")
                } else {
                    format!(
                        "aggregate differs from {strategy} of the accepted updates, which leaves \
                         out the updates of the revoked {}",
                        revoked.join(", ")
                    )
                }));
            }
        }
        AuditEvent::Abandoned { at_ms, .. } => {
            closed_in_time(state, *at_ms).map_err(diverge)?;
            // A round that met its quorum is aggregated; it may be abandoned only if its
            // aggregate cannot be formed.
            let accepted = state.open.as_ref().map_or(0, |o| o.accepted.len());
            if accepted >= state.config.quorum && aggregate(state).is_ok() {
                return Err(diverge(format!(
                    "abandoned an attempt with {accepted} accepted updates, which met the quorum"
                )));
            }
        }
        AuditEvent::Discarded {
            round,
            attempt,
            peer,
            ..
        } => {
            // Honestly, a verification is discarded only when its attempt is no longer
            // open or the peer was judged meanwhile: never to drop an admissible submission.
            let peer =
                PeerId::from_bytes(peer).map_err(|e| diverge(format!("bad peer id: {e}")))?;
            if let Some(open) = &state.open
                && (open.announcement.round, open.announcement.attempt) == (*round, *attempt)
                && state.enrolments.contains_key(&peer)
                && !open.judged.contains_key(&peer)
            {
                return Err(diverge(format!(
                    "coordinator misbehaviour: a submission of {peer} to the open attempt was \
                     discarded instead of judged"
                )));
            }
        }
        AuditEvent::Revoked { .. } => {
            // The replay checks the peer is on the allow-list, not revoked before, the run
            // not over and the time not earlier than the last recorded; whether the
            // revocation was justified is the operator's word (ARCHITECTURE.md, Invariants).
            summary.revocations += 1;
        }
        AuditEvent::RunStarted(_)
        | AuditEvent::RoundStarted(_)
        | AuditEvent::Refused { .. }
        | AuditEvent::RunFailed { .. } => {}
    }
    Ok(())
}

/// An attempt may close before its deadline only once every enrolled participant has been
/// judged, or once revocations left fewer allowed peers than the quorum: closing early would
/// otherwise shut out stragglers the run promised to wait for.
fn closed_in_time(state: &RunState, at_ms: u64) -> Result<(), String> {
    let Some(open) = &state.open else {
        return Ok(()); // replay reports a close with no open attempt
    };
    let deadline = deadline_ms(state, open);
    if at_ms < deadline && !all_judged(state, open) && !state.quorum_unreachable() {
        return Err(format!(
            "closed at {at_ms} ms, before its deadline at {deadline} ms, with participants not yet judged"
        ));
    }
    Ok(())
}

/// Audits the store at `path`: `Ok(Err(_))` is a divergence, `Err(_)` an unreadable store.
pub fn audit_store(
    path: &std::path::Path,
    expected_coordinator: Option<&PeerId>,
) -> Result<Result<AuditSummary, Divergence>, crate::log::LogError> {
    let stored = crate::log::StoredLog::open(path)?;
    let records = stored.records()?;
    let lookup =
        |round: u64, attempt: u32, peer: &PeerId| stored.proof(round, attempt, peer).ok().flatten();
    Ok(audit(&records, lookup, expected_coordinator))
}
