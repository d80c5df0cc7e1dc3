//! Offline audit: re-verify a coordinator's log from its store alone.
//!
//! Checks, record by record: the hash chain, the coordinator's signature, that the event is
//! possible in the replayed state, every enrolment signature, every accepted proof
//! (re-verified from the stored bytes against the statement rebuilt from the log), and
//! every aggregate and server state (recomputed bit for bit with the run's strategy, without
//! the updates of peers revoked before it).
//! The first divergence is reported.
//!
//! A private run's aggregates add noise from the coordinator's secret noise key. Without
//! it, the audit checks each aggregate's un-noised sum digest, the ε it records and the
//! budget, but not the noise (counted in [`AuditSummary::unchecked_noise`]); with an
//! escrowed copy of the key, whose commitment the run's first record holds, it recomputes
//! every aggregate bit for bit (README, "Privacy": who can check what).

use libp2p::PeerId;
use libp2p::identity::PublicKey;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::events::{AuditEvent, RunConfig, RunState};
use crate::log::{AuditRecord, LogError, StoredLog};
use crate::privacy::{NoiseKey, spent_epsilon, variance};
use crate::rounds::{
    aggregate, all_judged, budget_spent, deadline_ms, judge_enrolment, statement_for,
    unnoised_sum_digest,
};

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
    /// A private run's aggregates (and abandoned attempts that met the quorum) whose noise
    /// was not checked: the audit had no noise key.
    pub unchecked_noise: u64,
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

/// A stored proof by round, attempt and peer: `Ok(None)` if none is stored, `Err` with why
/// if the store holds one that cannot be read.
pub type ProofLookup<'a> = dyn Fn(u64, u32, &PeerId) -> Result<Option<Vec<u8>>, String> + 'a;

/// Audits `records`; `proof` looks up the stored proof of an accepted submission by round,
/// attempt and peer.
pub fn audit(
    records: &[AuditRecord],
    proof: impl Fn(u64, u32, &PeerId) -> Option<Vec<u8>>,
    expected_coordinator: Option<&PeerId>,
    noise: Option<&NoiseKey>,
) -> Result<AuditSummary, Divergence> {
    let (first, rest) = records.split_first().ok_or_else(empty_log)?;
    let lookup = |round, attempt, peer: &PeerId| Ok(proof(round, attempt, peer));
    let mut auditor = Auditor::start(first, expected_coordinator, noise)?;
    for record in rest {
        auditor.check(record, &lookup)?;
    }
    Ok(auditor.finish().0)
}

fn empty_log() -> Divergence {
    Divergence {
        seq: 0,
        what: "the log is empty".into(),
    }
}

/// An audit in progress, fed one record at a time: it holds the state the log folds into
/// (which grows by a small entry per verdict, per distinct refusal and per private seed,
/// never by a record's size), not the log.
pub struct Auditor<'a> {
    key: PublicKey,
    noise: Option<&'a NoiseKey>,
    state: RunState,
    summary: AuditSummary,
    prev: [u8; 32],
    private: bool,
    /// Every attempt's seed as the PRF reads it (words reduced into the field): a private
    /// run's samples are independent only if no seed comes back.
    seeds: std::collections::BTreeSet<[u64; 4]>,
}

impl<'a> Auditor<'a> {
    /// Starts an audit from the log's first record, which must open the run; checks it as
    /// record 0.
    pub fn start(
        first: &AuditRecord,
        expected_coordinator: Option<&PeerId>,
        noise: Option<&'a NoiseKey>,
    ) -> Result<Self, Divergence> {
        let diverge = |what: String| Divergence { seq: 0, what };
        let AuditEvent::RunStarted(config) = &first.event else {
            return Err(diverge("the log does not start with RunStarted".into()));
        };
        let key = PublicKey::try_decode_protobuf(&config.coordinator_key)
            .map_err(|_| diverge("coordinator key does not decode".into()))?;
        let coordinator = key.to_peer_id();
        if let Some(expected) = expected_coordinator
            && *expected != coordinator
        {
            return Err(diverge(format!(
                "log is signed by {coordinator}, expected {expected}"
            )));
        }
        check_run(config, noise).map_err(diverge)?;
        let mut auditor = Self {
            key,
            noise,
            state: RunState::new(config.clone()),
            summary: AuditSummary {
                records: 0,
                coordinator,
                rounds: 0,
                proofs_verified: 0,
                rejections: 0,
                revocations: 0,
                unchecked_noise: 0,
            },
            prev: [0u8; 32],
            private: config.public.privacy.is_some(),
            seeds: std::collections::BTreeSet::new(),
        };
        auditor.check(first, &|_, _, _| Ok(None))?;
        Ok(auditor)
    }

    /// Checks the next record: its place in the chain, the signature, and (after the first)
    /// that its event is possible in the replayed state, then applies it.
    pub fn check(
        &mut self,
        record: &AuditRecord,
        proof: &ProofLookup<'_>,
    ) -> Result<(), Divergence> {
        let seq = self.summary.records;
        let diverge = |what: String| Divergence { seq, what };
        if record.seq != seq || record.prev != self.prev {
            return Err(diverge(
                "hash chain broken (record missing, reordered or altered)".into(),
            ));
        }
        if !record.signed_by(&self.key) {
            return Err(diverge("coordinator signature does not verify".into()));
        }
        self.prev = record.hash();
        if let AuditEvent::RoundStarted(announced) = &record.event
            && self.private
            && !self
                .seeds
                .insert(zkfed_air::sampling::seed_words(&announced.seed))
        {
            return Err(diverge(format!(
                "round {} attempt {} reuses an earlier attempt's seed",
                announced.round, announced.attempt
            )));
        }
        if seq > 0 {
            let context = Context {
                proof,
                noise: self.noise,
            };
            check_event(&self.state, seq, &record.event, &context, &mut self.summary)?;
            self.state
                .apply(seq, &record.event)
                .map_err(|e| diverge(e.to_string()))?;
        }
        self.summary.records += 1;
        Ok(())
    }

    /// What the audit found, and the state the log replays to.
    pub fn finish(mut self) -> (AuditSummary, RunState) {
        self.summary.rounds = self.state.completed_rounds;
        (self.summary, self.state)
    }
}

/// The run's first record checked as the coordinator's configuration checks it: its model
/// against its schema, its strategy against its quorum, its privacy and noise key.
fn check_run(config: &RunConfig, noise: Option<&NoiseKey>) -> Result<(), String> {
    // Also before `RunState::new` sizes a model from it.
    zkfed_protocol::check_model(&config.public.model, &config.public.schema)
        .map_err(|e| format!("the run's model: {e}"))?;
    // Otherwise a strategy that cannot aggregate the quorum would excuse abandoning every
    // attempt.
    let strategy = config.public.strategy;
    strategy
        .validate()
        .map_err(|e| format!("the run's strategy: {e}"))?;
    strategy
        .admits_from(config.quorum, config.allow_list.len())
        .map_err(|e| {
            format!(
                "the run's strategy {strategy} with a quorum of {} and {} allowed peers: {e}",
                config.quorum,
                config.allow_list.len()
            )
        })?;
    // Also before the shape below multiplies the batch size.
    config
        .public
        .params
        .validate()
        .map_err(|e| format!("the run's round parameters: {e}"))?;
    let features = config.public.schema.features.len();
    let batch = config.public.params.batch_size;
    zkfed_protocol::check_verifier_memory(config.public.model, features, batch).map_err(
        |cells| {
            format!(
                "the run's model and batch: verifying one proof could build {cells} periodic \
                 cells, above {}",
                zkfed_air::engine::MAX_PERIODIC_CELLS
            )
        },
    )?;
    check_privacy(config, noise)
}

/// A private run's parameters as the coordinator's configuration checks them, its noise
/// key committed, and an escrowed key the committed one; a run without privacy commits none.
fn check_privacy(config: &RunConfig, noise: Option<&NoiseKey>) -> Result<(), String> {
    let public = &config.public;
    let Some(privacy) = &public.privacy else {
        return match config.noise_key_commitment {
            None => Ok(()),
            Some(_) => Err("a run without privacy commits to a noise key".into()),
        };
    };
    privacy
        .validate()
        .map_err(|e| format!("the run's privacy: {e}"))?;
    if !zkfed_aggregation::strategy::is_mean_based(public.strategy) {
        return Err(format!(
            "a private run's strategy {} is not mean-based",
            public.strategy
        ));
    }
    variance(public, privacy).map_err(|e| format!("the run's noise: {e}"))?;
    let committed = config
        .noise_key_commitment
        .ok_or("a private run without a noise-key commitment")?;
    match noise {
        Some(key) if key.commitment() != committed => {
            Err("the noise key given is not the one the run committed to".into())
        }
        _ => Ok(()),
    }
}

/// What every record's check may need besides the state.
struct Context<'a, 'b> {
    proof: &'a ProofLookup<'b>,
    noise: Option<&'a NoiseKey>,
}

fn check_event(
    state: &RunState,
    seq: u64,
    event: &AuditEvent,
    context: &Context<'_, '_>,
    summary: &mut AuditSummary,
) -> Result<(), Divergence> {
    let diverge = |what: String| Divergence { seq, what };
    let proof = context.proof;
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
                .map_err(|e| diverge(format!("judged proof of {peer} cannot be read: {e}")))?
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
            privacy,
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
            if let Some(recorded) = privacy {
                check_private_record(state, recorded).map_err(diverge)?;
                if context.noise.is_none() {
                    check_private_model(state, model, server_state).map_err(diverge)?;
                    summary.unchecked_noise += 1;
                    return Ok(());
                }
            }
            let recomputed =
                aggregate(state, context.noise).map_err(|e| diverge(format!("aggregate: {e}")))?;
            let (next_state, recomputed) = (recomputed.state, recomputed.model);
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
            let private = state.config.public.privacy.is_some();
            if accepted >= state.config.quorum && private && context.noise.is_none() {
                // Whether the noised aggregate left the model's range needs the noise.
                summary.unchecked_noise += 1;
            } else if accepted >= state.config.quorum && aggregate(state, context.noise).is_ok() {
                return Err(diverge(format!(
                    "abandoned an attempt with {accepted} accepted updates, which met the quorum"
                )));
            }
        }
        AuditEvent::RoundStarted(announcement) => {
            if budget_spent(state, announcement.opened_at_ms).is_some() {
                return Err(diverge(format!(
                    "round {} started beyond the run's privacy budget",
                    announcement.round
                )));
            }
        }
        AuditEvent::BudgetSpent { at_ms, .. } => {
            if budget_spent(state, *at_ms).as_ref() != Some(event) {
                return Err(diverge(
                    "the run ended at its privacy budget, which one more round would not exceed \
                     (or with other figures)"
                        .into(),
                ));
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
        AuditEvent::RunStarted(_) | AuditEvent::Refused { .. } | AuditEvent::RunFailed { .. } => {}
    }
    Ok(())
}

/// A private aggregate's record: the un-noised sum's digest and the ε spent, recomputed.
fn check_private_record(
    state: &RunState,
    recorded: &crate::events::PrivateAggregate,
) -> Result<(), String> {
    let digest = unnoised_sum_digest(state).map_err(|e| format!("un-noised sum: {e}"))?;
    if digest != recorded.unnoised_sum_sha256 {
        return Err("the un-noised sum's digest differs from the accepted updates'".into());
    }
    let public = &state.config.public;
    let privacy = public.privacy.as_ref().ok_or("no privacy in the run")?;
    let attempts = state.attempts_opened;
    let spent = spent_epsilon(public, privacy, attempts).map_err(|e| e.to_string())?;
    if spent.to_bits() != recorded.epsilon.to_bits() {
        return Err(format!(
            "records ε = {} after {attempts} attempts, the accountant gives {spent}",
            recorded.epsilon
        ));
    }
    Ok(())
}

/// What a private aggregate's model and state must be even unseen noise aside: the
/// announced model's spec and width, every parameter in range, and a state of the shape the
/// strategy keeps.
fn check_private_model(
    state: &RunState,
    model: &zkfed_air::Model,
    server_state: &zkfed_aggregation::strategy::ServerState,
) -> Result<(), String> {
    let announced = &state
        .open
        .as_ref()
        .ok_or("no attempt is open")?
        .announcement
        .model;
    if model.spec != announced.spec || model.params.len() != announced.params.len() {
        return Err("the aggregate is not a model of the run's spec and width".into());
    }
    model
        .validate()
        .map_err(|e| format!("the aggregate is out of range: {e}"))?;
    let width = |v: &Vec<i64>| v.is_empty() || v.len() == announced.params.len();
    if !width(&server_state.momentum) || !width(&server_state.second) {
        return Err("the server state is not of the model's width".into());
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
    noise: Option<&NoiseKey>,
) -> Result<Result<AuditSummary, Divergence>, LogError> {
    let stored = StoredLog::open(path)?;
    let audited = audit_stored(&stored, expected_coordinator, noise)?;
    Ok(audited.map(|(summary, _)| summary))
}

/// Audits an open store record by record, reading each proof when its record needs it;
/// also returns the state the log replays to. `Ok(Err(_))` is a divergence.
pub fn audit_stored(
    stored: &StoredLog,
    expected_coordinator: Option<&PeerId>,
    noise: Option<&NoiseKey>,
) -> Result<Result<(AuditSummary, RunState), Divergence>, LogError> {
    enum Stop {
        Store(LogError),
        Diverged(Divergence),
    }
    impl From<LogError> for Stop {
        fn from(e: LogError) -> Self {
            Stop::Store(e)
        }
    }
    let lookup = |round, attempt, peer: &PeerId| {
        stored
            .proof(round, attempt, peer)
            .map_err(|e| e.to_string())
    };
    let mut auditor: Option<Auditor> = None;
    let walked = stored.for_each_record(|record| {
        match &mut auditor {
            None => {
                let started = Auditor::start(&record, expected_coordinator, noise);
                auditor = Some(started.map_err(Stop::Diverged)?);
            }
            Some(started) => started.check(&record, &lookup).map_err(Stop::Diverged)?,
        }
        Ok(())
    });
    match (walked, auditor) {
        (Err(Stop::Store(e)), _) => Err(e),
        (Err(Stop::Diverged(d)), _) => Ok(Err(d)),
        (Ok(()), Some(auditor)) => Ok(Ok(auditor.finish())),
        (Ok(()), None) => Ok(Err(empty_log())),
    }
}
