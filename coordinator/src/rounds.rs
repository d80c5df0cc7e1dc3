//! Round policy: pure decisions over the [`RunState`], each returning the event to log.
//!
//! The live coordinator and the offline auditor share [`statement_for`], which reads the
//! open round and the peer's enrolment and calls `zkfed_protocol::round_statement`, the
//! same function the participant proves against.

use libp2p::PeerId;
use sha2::{Digest, Sha256};
use thiserror::Error;
use zkfed_aggregation::AggregationError;
use zkfed_aggregation::private::{private_step, sum_digest, unnoised_sum};
use zkfed_aggregation::strategy::{self, ServerState};
use zkfed_air::Statement;
use zkfed_protocol::{
    Rejection, RoundAnnouncement, SignedEnrolment, Submission, Verdict, private_slots,
    round_statement,
};

use crate::events::{AuditEvent, OpenRound, PrivateAggregate, RunState, update_digest};
use crate::privacy::{NoiseKey, PrivacyError, private_round, spent_epsilon};

/// Why a revocation is refused; nothing is appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevokeError {
    /// The peer is not on the run's allow-list: there is nothing to revoke.
    #[error("{peer} is not on the run's allow-list")]
    NotOnAllowList {
        /// The peer named.
        peer: PeerId,
    },
    /// The peer was revoked before.
    #[error("{peer} was already revoked (audit record {seq}, at {at_ms} ms)")]
    AlreadyRevoked {
        /// The peer named.
        peer: PeerId,
        /// The `Revoked` record.
        seq: u64,
        /// When it took effect.
        at_ms: u64,
    },
    /// The run has ended; its log is closed.
    #[error("the run is over: nothing is revoked after its end")]
    RunOver,
    /// An empty, over-long or unprintable reason.
    #[error("revocation reason: {0}")]
    Reason(String),
}

/// The statement a submission from `peer` must prove in the open round.
pub fn statement_for(state: &RunState, peer: &PeerId) -> Result<Statement, Rejection> {
    let open = state.open.as_ref().ok_or(Rejection::NoOpenRound)?;
    let enrolment = state.enrolments.get(peer).ok_or(Rejection::NotEnrolled)?;
    let e = &enrolment.enrolment;
    round_statement(
        &state.config.public,
        &open.announcement,
        peer,
        e.commitment,
        e.sampling_key,
    )
    .map_err(|e| Rejection::Statement(e.to_string()))
}

/// Whether `peer` may enrol `signed`; `Ok(None)` if it already enrolled exactly this.
pub fn judge_enrolment(
    state: &RunState,
    peer: &PeerId,
    signed: &SignedEnrolment,
) -> Result<Option<AuditEvent>, Rejection> {
    if !state.config.allow_list.contains(&peer.to_bytes()) {
        return Err(Rejection::NotAllowed);
    }
    if state.revoked.contains_key(peer) {
        return Err(Rejection::Revoked);
    }
    signed
        .verify(peer)
        .map_err(|e| Rejection::BadEnrolmentSignature(e.to_string()))?;
    let e = &signed.enrolment;
    if e.federation_id != state.config.public.federation_id {
        return Err(Rejection::OtherFederation);
    }
    if e.schema_hash != state.config.public.schema.hash() {
        return Err(Rejection::OtherSchema);
    }
    if e.parameters != state.config.public.digest() {
        return Err(Rejection::OtherParameters);
    }
    e.commitment
        .validate()
        .map_err(|err| Rejection::Statement(err.to_string()))?;
    check_sampling_key(state, e)?;
    let batch = state.config.public.params.batch_size as u64;
    if state.config.public.privacy.is_none() && e.commitment.rows < batch {
        return Err(Rejection::TooFewRows {
            rows: e.commitment.rows,
            batch,
        });
    }
    match state.enrolments.get(peer) {
        Some(existing) if existing.enrolment == *e => Ok(None),
        Some(_) => Err(Rejection::CommitmentChanged),
        None => Ok(Some(AuditEvent::Enrolled {
            peer: peer.to_bytes(),
            enrolment: signed.clone(),
        })),
    }
}

/// A sampling-key commitment exactly in a private run, canonical, over a dataset whose
/// hidden sample the proof covers (at most `MAX_SAMPLED_ROWS` rows and `MAX_BATCH` slots).
fn check_sampling_key(state: &RunState, e: &zkfed_protocol::Enrolment) -> Result<(), Rejection> {
    let refuse = |why: &str| Err(Rejection::SamplingKey(why.into()));
    let privacy = match (&state.config.public.privacy, &e.sampling_key) {
        (None, None) => return Ok(()),
        (None, Some(_)) => return refuse("a run without privacy takes none"),
        (Some(_), None) => return refuse("a private run needs one"),
        (Some(privacy), Some(key)) if key.is_canonical() => privacy,
        (Some(_), Some(_)) => return refuse("the commitment is not canonical"),
    };
    // The verifier's periodic columns grow with the slots and the rows: held to the bound
    // the configuration holds public batches to.
    private_slots(&state.config.public, privacy, e.commitment.rows)
        .map(|_| ())
        .map_err(Rejection::Statement)
}

/// The verdict already on record for exactly this submission (same round, attempt, peer,
/// update and proof bytes), if any: a retried request is answered with it, not refused.
/// A revoked peer has none: it is refused as revoked.
pub fn recorded_verdict(
    state: &RunState,
    peer: &PeerId,
    submission: &Submission,
) -> Option<Verdict> {
    if state.revoked.contains_key(peer) {
        return None;
    }
    let key = (submission.round, submission.attempt, *peer);
    let recorded = state.verdicts.get(&key)?;
    let proof_sha256: [u8; 32] = Sha256::digest(&submission.proof).into();
    let same_update = recorded.update_sha256 == update_digest(&submission.update);
    (recorded.proof_sha256 == proof_sha256 && same_update).then(|| Verdict {
        round: submission.round,
        attempt: submission.attempt,
        rejection: recorded.rejection.clone(),
    })
}

/// The statement of an admissible submission, or why it is refused before verification.
pub fn admit_submission(
    state: &RunState,
    peer: &PeerId,
    submission: &Submission,
) -> Result<Statement, Rejection> {
    if state.revoked.contains_key(peer) {
        return Err(Rejection::Revoked);
    }
    let open = state.open.as_ref().ok_or(Rejection::NoOpenRound)?;
    let (round, attempt) = (open.announcement.round, open.announcement.attempt);
    if (submission.round, submission.attempt) != (round, attempt) {
        return Err(Rejection::WrongRound {
            open: round,
            open_attempt: attempt,
            submitted: submission.round,
            submitted_attempt: submission.attempt,
        });
    }
    if open.judged.contains_key(peer) {
        return Err(Rejection::Duplicate { round });
    }
    let statement = statement_for(state, peer)?;
    check_update_shape(state, &statement, submission)?;
    Ok(statement)
}

/// An update of the model's width and the run's example count, or the refusal: checked
/// before verification, so a malformed update is never verified, logged or kept.
fn check_update_shape(
    state: &RunState,
    statement: &Statement,
    submission: &Submission,
) -> Result<(), Rejection> {
    let params = state.model.params.len() as u64;
    // The statement's: the run's batch, or a private run's slots for this participant.
    let batch = statement.params.batch_size as u64;
    let update = &submission.update;
    let shape = |what: &str, expected: u64, got: u64| Rejection::UpdateShape {
        what: what.into(),
        expected,
        got,
    };
    if update.values.len() as u64 != params {
        return Err(shape("parameters", params, update.values.len() as u64));
    }
    if update.examples != batch {
        return Err(shape("examples", batch, update.examples));
    }
    Ok(())
}

/// The next round attempt's start event, opening at `now_ms`, if one should start now; or
/// the end of the run once a round has used up its attempts or revocations left fewer
/// allowed peers than the quorum. Revoked peers' enrolments do not count.
pub fn start_round(state: &RunState, seed: [u8; 32], now_ms: u64) -> Option<AuditEvent> {
    if state.open.is_some() || state.finished() {
        return None;
    }
    let cannot_finish = state.quorum_unreachable();
    if !cannot_finish && state.enrolments.len() < state.config.quorum {
        return None;
    }
    if cannot_finish || state.next_attempt > state.config.max_attempts {
        return Some(AuditEvent::RunFailed {
            round: state.completed_rounds + 1,
            at_ms: now_ms.max(state.last_closed_ms),
        });
    }
    if let Some(spent) = budget_spent(state, now_ms) {
        return Some(spent);
    }
    Some(AuditEvent::RoundStarted(RoundAnnouncement {
        round: state.completed_rounds + 1,
        attempt: state.next_attempt,
        model: state.model.clone(),
        params: state.config.public.params,
        seed,
        // Recorded times never go backwards, even if this machine's clock steps back.
        opened_at_ms: now_ms.max(state.last_closed_ms),
    }))
}

/// The event that closes the open round attempt, if it should close now: at quorum once
/// every enrolled participant has been judged, or at the deadline. An aggregate that
/// cannot be formed abandons the attempt with the reason recorded; it never stops the run.
/// The deadline runs from the attempt's recorded opening time, so a restart does not
/// extend it.
///
/// A private run's aggregate needs the coordinator's `noise` key.
pub fn close_round(state: &RunState, now_ms: u64, noise: Option<&NoiseKey>) -> Option<AuditEvent> {
    let open = state.open.as_ref()?;
    let now_ms = now_ms.max(open.announcement.opened_at_ms);
    let deadline_passed = now_ms >= deadline_ms(state, open);
    let (round, attempt) = (open.announcement.round, open.announcement.attempt);
    let quorum_met = open.accepted.len() >= state.config.quorum;
    let all_in = all_judged(state, open);
    let abandoned = |reason: String| {
        Some(AuditEvent::Abandoned {
            round,
            attempt,
            at_ms: now_ms,
            reason,
        })
    };
    if state.quorum_unreachable() {
        // Revocations left fewer allowed peers than the quorum: no wait can meet it.
        return abandoned(format!(
            "revocations leave {} allowed peers, below the quorum of {}",
            state.allowed_peers(),
            state.config.quorum
        ));
    }
    if quorum_met && (all_in || deadline_passed) {
        return match aggregate(state, noise) {
            Ok(a) => Some(AuditEvent::Aggregated {
                round,
                at_ms: now_ms,
                model: a.model,
                state: a.state,
                privacy: a.privacy,
            }),
            Err(e) => abandoned(format!("the aggregate cannot be formed: {e}")),
        };
    }
    if deadline_passed || all_in {
        return abandoned(format!(
            "{} accepted updates, quorum is {}",
            open.accepted.len(),
            state.config.quorum
        ));
    }
    None
}

/// The `Revoked` event that revokes `peer` at `now_ms` for `reason`, or why it is refused.
pub fn revoke(
    state: &RunState,
    peer: &PeerId,
    reason: &str,
    now_ms: u64,
) -> Result<AuditEvent, RevokeError> {
    crate::revocation::check_reason(reason).map_err(RevokeError::Reason)?;
    if !state.config.allow_list.contains(&peer.to_bytes()) {
        return Err(RevokeError::NotOnAllowList { peer: *peer });
    }
    // Before the end of the run: a revocation that ended it is still reported as such.
    if let Some(earlier) = state.revoked.get(peer) {
        return Err(RevokeError::AlreadyRevoked {
            peer: *peer,
            seq: earlier.seq,
            at_ms: earlier.at_ms,
        });
    }
    if state.finished() {
        return Err(RevokeError::RunOver);
    }
    // Recorded times never go backwards, even if this machine's clock steps back.
    let opened = state
        .open
        .as_ref()
        .map_or(0, |o| o.announcement.opened_at_ms);
    Ok(AuditEvent::Revoked {
        peer: peer.to_bytes(),
        at_ms: now_ms.max(state.last_closed_ms).max(opened),
        reason: reason.to_string(),
    })
}

/// A private run's end at its budget, if one more attempt would spend more than its ε (or
/// cannot be accounted within its δ). ε is charged per attempt opened ("privacy").
pub fn budget_spent(state: &RunState, now_ms: u64) -> Option<AuditEvent> {
    let public = &state.config.public;
    let privacy = public.privacy.as_ref()?;
    let opened = state.attempts_opened;
    let next = spent_epsilon(public, privacy, opened + 1).ok();
    if next.is_some_and(|e| e <= privacy.epsilon) {
        return None;
    }
    Some(AuditEvent::BudgetSpent {
        rounds: state.completed_rounds,
        epsilon: spent_epsilon(public, privacy, opened).unwrap_or(f64::INFINITY),
        next_epsilon: next,
        at_ms: now_ms.max(state.last_closed_ms),
    })
}

/// When the open attempt's deadline passes (milliseconds since the Unix epoch).
pub fn deadline_ms(state: &RunState, open: &OpenRound) -> u64 {
    let deadline = state.config.round_deadline_secs.saturating_mul(1000);
    open.announcement.opened_at_ms.saturating_add(deadline)
}

/// Whether every enrolled participant has answered the open attempt: judged, or refused
/// for good before verification.
pub fn all_judged(state: &RunState, open: &OpenRound) -> bool {
    state
        .enrolments
        .keys()
        .all(|p| open.judged.contains_key(p) || open.refused.contains(p))
}

/// An attempt's aggregate: the next model and server state, and a private run's record.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// The next model.
    pub model: zkfed_air::Model,
    /// The strategy's next state.
    pub state: ServerState,
    /// A private run's un-noised sum digest and spent ε.
    pub privacy: Option<PrivateAggregate>,
}

/// Why an aggregate cannot be formed.
#[derive(Debug, Error)]
pub enum AggregateError {
    /// The strategy refused the updates (or the model left its range).
    #[error(transparent)]
    Aggregation(#[from] AggregationError),
    /// The noise or the accounting failed.
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
    /// A private run's aggregate without the noise key.
    #[error("a private run's aggregate needs the noise key")]
    NoNoiseKey,
}

/// The run's strategy over the open round's accepted updates (in the order they were
/// accepted): the next model and server state. A private run's is the noised mean over
/// the expected batch with `noise`'s seed for the attempt and its un-noised sum
/// ("privacy").
pub fn aggregate(state: &RunState, noise: Option<&NoiseKey>) -> Result<Aggregate, AggregateError> {
    let open = state.open.as_ref().ok_or(AggregationError::Empty)?;
    let updates: Vec<_> = open.accepted.iter().map(|(_, u)| u.clone()).collect();
    let public = &state.config.public;
    let model = &open.announcement.model;
    let Some(privacy) = &public.privacy else {
        let (model, state) = strategy::aggregate(
            public.strategy,
            model,
            &state.server_state,
            &updates,
            public.learning_rate,
        )?;
        return Ok(Aggregate {
            model,
            state,
            privacy: None,
        });
    };
    let key = noise.ok_or(AggregateError::NoNoiseKey)?;
    let (round, attempt) = (open.announcement.round, open.announcement.attempt);
    let unnoised = sum_digest(&unnoised_sum(&updates, model.params.len())?);
    let inputs = private_round(
        public,
        privacy,
        accepted_rows(state),
        key.seed(&public.federation_id, round, attempt, &unnoised),
    )?;
    let (model, next, digest) = private_step(
        public.strategy,
        model,
        &state.server_state,
        &updates,
        &inputs,
        public.learning_rate,
    )?;
    Ok(Aggregate {
        model,
        state: next,
        privacy: Some(PrivateAggregate {
            unnoised_sum_sha256: digest,
            epsilon: spent_epsilon(public, privacy, state.attempts_opened)
                .map_err(PrivacyError::from)?,
        }),
    })
}

/// The committed rows of the participants whose updates the open attempt accepted: the
/// `N` of a private aggregate's expected batch `q'·N`.
pub fn accepted_rows(state: &RunState) -> u64 {
    let Some(open) = &state.open else { return 0 };
    open.accepted
        .iter()
        .filter_map(|(peer, _)| state.enrolments.get(peer))
        .map(|e| e.enrolment.commitment.rows)
        .sum()
}

/// The digest of the open attempt's un-noised sum (what a reader without the noise key
/// checks a private aggregate's record against).
pub fn unnoised_sum_digest(state: &RunState) -> Result<[u8; 32], AggregationError> {
    let open = state.open.as_ref().ok_or(AggregationError::Empty)?;
    let updates: Vec<_> = open.accepted.iter().map(|(_, u)| u.clone()).collect();
    let sum = unnoised_sum(&updates, open.announcement.model.params.len())?;
    Ok(sum_digest(&sum))
}
