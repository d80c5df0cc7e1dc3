//! The coordinator's events and the run state they fold into.
//!
//! Every decision the coordinator makes is an [`AuditEvent`], appended to the signed log
//! before anyone is told. [`RunState::apply`] folds events into the state, so a restart is
//! a replay of the log and an auditor's replay sees exactly what the coordinator saw.

use std::collections::{BTreeMap, BTreeSet};

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zkfed_aggregation::strategy::ServerState;
use zkfed_air::{ClippedGradientSum, Model};
use zkfed_protocol::{Rejection, RoundAnnouncement, RunParameters, SignedEnrolment};

/// Parameters fixed when the run starts (the first event of every log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// What participants are told.
    pub public: RunParameters,
    /// The coordinator's public key (libp2p protobuf encoding): it signs every record.
    #[serde(with = "serde_bytes")]
    pub coordinator_key: Vec<u8>,
    /// Peers allowed to take part (their peer-id bytes).
    pub allow_list: Vec<Vec<u8>>,
    /// Minimum accepted updates for a round to be aggregated.
    pub quorum: usize,
    /// Seconds a round stays open.
    pub round_deadline_secs: u64,
    /// Attempts at one round before the run ends as failed (participants refuse more than
    /// their own limit, so retrying past it could never reach quorum).
    pub max_attempts: u32,
    /// A private run's: the SHA-256 commitment to the coordinator's secret noise key
    /// (`privacy::NoiseKey::commitment`), against which an auditor's escrowed copy is checked.
    pub noise_key_commitment: Option<[u8; 32]>,
}

/// What a private run's aggregate publishes besides the model: every reader can check the
/// un-noised sum and the privacy spent; only the noise key's holder, the noise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrivateAggregate {
    /// SHA-256 of the accepted updates' sum on the gradient lattice
    /// (`zkfed_aggregation::private::sum_digest`).
    pub unnoised_sum_sha256: [u8; 32],
    /// ε spent by the attempts opened up to this round's (at the run's δ).
    pub epsilon: f64,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AuditEvent {
    /// The run began with this configuration.
    RunStarted(RunConfig),
    /// A participant enrolled this signed commitment.
    Enrolled {
        /// Peer-id bytes of the participant.
        #[serde(with = "serde_bytes")]
        peer: Vec<u8>,
        /// The commitment, signed by the participant.
        enrolment: SignedEnrolment,
    },
    /// A round opened.
    RoundStarted(RoundAnnouncement),
    /// A submission was judged. Accepted proofs are stored beside the log under
    /// `(round, attempt, peer)`; their SHA-256 is recorded here.
    Judged {
        /// The round.
        round: u64,
        /// The attempt at the round.
        attempt: u32,
        /// Peer-id bytes of the submitter.
        #[serde(with = "serde_bytes")]
        peer: Vec<u8>,
        /// The update (kept for rejected ones too, for the record).
        update: ClippedGradientSum,
        /// SHA-256 of the proof bytes.
        proof_sha256: [u8; 32],
        /// `None` if accepted, else the failed check.
        rejection: Option<Rejection>,
    },
    /// A round closed with enough accepted updates: the new model and the strategy's new
    /// state, both recomputed by the audit.
    Aggregated {
        /// The round.
        round: u64,
        /// When it closed (milliseconds since the Unix epoch).
        at_ms: u64,
        /// `w_{r+1}`.
        model: Model,
        /// The server optimizer's state after this round (empty for the stateless
        /// strategies), persisted and replayed like the model.
        state: ServerState,
        /// A private run's un-noised sum digest and spent ε.
        privacy: Option<PrivateAggregate>,
    },
    /// A private run ended because one more round attempt would spend more than its
    /// budget. Nothing follows it.
    BudgetSpent {
        /// Rounds aggregated.
        rounds: u64,
        /// ε spent by the attempts opened.
        epsilon: f64,
        /// ε after one more attempt (`None`: it cannot be accounted within δ).
        next_epsilon: Option<f64>,
        /// When (milliseconds since the Unix epoch).
        at_ms: u64,
    },
    /// A round attempt closed without an aggregate (below quorum, or an aggregate outside
    /// the model's range); the next attempt starts with a fresh seed.
    Abandoned {
        /// The round.
        round: u64,
        /// The attempt that closed.
        attempt: u32,
        /// When it closed (milliseconds since the Unix epoch).
        at_ms: u64,
        /// Why.
        reason: String,
    },
    /// An enrolment or a submission refused before any verification, with the reason, so
    /// the log shows every refusal, not only the verdicts.
    Refused {
        /// Peer-id bytes of the sender.
        #[serde(with = "serde_bytes")]
        peer: Vec<u8>,
        /// The round and attempt a refused submission named (`None` for an enrolment).
        submission: Option<(u64, u32)>,
        /// SHA-256 of the refused submission's proof bytes (`None` for an enrolment).
        proof_sha256: Option<[u8; 32]>,
        /// Why.
        rejection: Rejection,
    },
    /// The run ended without completing its rounds: a round was abandoned `max_attempts`
    /// times. Nothing follows it.
    RunFailed {
        /// The round that could not be completed.
        round: u64,
        /// When (milliseconds since the Unix epoch).
        at_ms: u64,
    },
    /// A verification finished after its attempt had closed (or was otherwise no longer
    /// admissible): its outcome is not judged, and this records why.
    Discarded {
        /// The round the submission named.
        round: u64,
        /// The attempt the submission named.
        attempt: u32,
        /// Peer-id bytes of the submitter.
        #[serde(with = "serde_bytes")]
        peer: Vec<u8>,
        /// Why it could not be judged.
        rejection: Rejection,
    },
    /// The operator revoked a participant's key (a compromised key, say): from this record
    /// on the peer is off the allow-list, its enrolment no longer counts toward the quorum
    /// or a round's start, nothing of it is judged, and an update of it already accepted in
    /// the open attempt is left out of that attempt's aggregate.
    Revoked {
        /// Peer-id bytes of the revoked participant.
        #[serde(with = "serde_bytes")]
        peer: Vec<u8>,
        /// When it took effect (milliseconds since the Unix epoch).
        at_ms: u64,
        /// The operator's reason, as given (at most `revocation::MAX_REASON_BYTES`).
        reason: String,
    },
}

/// The round currently open.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenRound {
    /// What was announced.
    pub announcement: RoundAnnouncement,
    /// Every judged submission, by peer.
    pub judged: BTreeMap<PeerId, Option<Rejection>>,
    /// Accepted updates in the order they were accepted.
    pub accepted: Vec<(PeerId, ClippedGradientSum)>,
    /// Peers whose submission for this attempt was refused for good before verification
    /// (a malformed update): they have answered, and the attempt need not wait for them.
    pub refused: BTreeSet<PeerId>,
    /// Peers with a refusal on record in this attempt: one record each is enough, so a
    /// peer repeating refused requests cannot grow the log.
    pub refusals_recorded: BTreeSet<PeerId>,
    /// Peers revoked during this attempt after their update was accepted: the update was
    /// taken out of `accepted` and is not aggregated.
    pub dropped: BTreeSet<PeerId>,
}

/// Everything the coordinator knows, derived from the log alone.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    /// The run's configuration.
    pub config: RunConfig,
    /// Enrolled participants that are not revoked: the ones that count toward the quorum.
    pub enrolments: BTreeMap<PeerId, SignedEnrolment>,
    /// Revoked participants ([`AuditEvent::Revoked`]), never enrolled or judged again.
    pub revoked: BTreeMap<PeerId, Revocation>,
    /// The current global model.
    pub model: Model,
    /// The aggregation strategy's state (moments of the adaptive and momentum rules).
    pub server_state: ServerState,
    /// Rounds aggregated so far.
    pub completed_rounds: u64,
    /// The open round, if any.
    pub open: Option<OpenRound>,
    /// The attempt the next `RoundStarted` must carry.
    pub next_attempt: u32,
    /// Enrolment refusals on record, by peer and kind of rejection (one record each keeps
    /// the log bounded while every distinct reason stays on record).
    pub enrolment_refusals: BTreeSet<(PeerId, &'static str)>,
    /// Whether the run ended as failed ([`AuditEvent::RunFailed`]).
    pub failed: bool,
    /// Whether a private run ended at its budget ([`AuditEvent::BudgetSpent`]).
    pub budget_spent: bool,
    /// Round attempts opened so far (`RoundStarted` records): what a private run's ε
    /// is charged for.
    pub attempts_opened: u64,
    /// When the last attempt closed (milliseconds since the Unix epoch): recorded times never
    /// go backwards.
    pub last_closed_ms: u64,
    /// Every verdict on record, by round, attempt and peer, with what was judged, so the
    /// same submission sent again (a retry after a timeout or a restart) gets it back.
    pub verdicts: BTreeMap<(u64, u32, PeerId), RecordedVerdict>,
}

/// Where and when a peer was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// The `Revoked` record.
    pub seq: u64,
    /// When it took effect (milliseconds since the Unix epoch).
    pub at_ms: u64,
}

/// A verdict on record and the submission it was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedVerdict {
    /// SHA-256 of the judged proof bytes.
    pub proof_sha256: [u8; 32],
    /// SHA-256 of the judged update's encoding (a hash, so the state stays small).
    pub update_sha256: [u8; 32],
    /// `None` if accepted.
    pub rejection: Option<Rejection>,
}

/// A log that does not describe a possible run.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReplayError {
    /// The log does not start with `RunStarted`, or has it twice.
    #[error("record {seq}: the log must start with exactly one RunStarted")]
    NotStarted {
        /// Offending record.
        seq: u64,
    },
    /// An event that cannot happen in the current state.
    #[error("record {seq}: {what}")]
    Impossible {
        /// Offending record.
        seq: u64,
        /// What is wrong.
        what: String,
    },
}

/// SHA-256 of an update's canonical encoding.
pub fn update_digest(update: &ClippedGradientSum) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let bytes = postcard::to_allocvec(update).expect("plain data serializes");
    Sha256::digest(bytes).into()
}

/// Milliseconds since the Unix epoch on this machine's clock.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RunState {
    /// The state right after `RunStarted`.
    pub fn new(config: RunConfig) -> Self {
        let model = Model::initial(config.public.model, config.public.schema.features.len());
        Self {
            config,
            enrolments: BTreeMap::new(),
            revoked: BTreeMap::new(),
            model,
            server_state: ServerState::default(),
            completed_rounds: 0,
            open: None,
            next_attempt: 1,
            last_closed_ms: 0,
            failed: false,
            budget_spent: false,
            attempts_opened: 0,
            enrolment_refusals: BTreeSet::new(),
            verdicts: BTreeMap::new(),
        }
    }

    /// Rebuilds the state from a whole log.
    pub fn replay<'a>(
        events: impl IntoIterator<Item = &'a AuditEvent>,
    ) -> Result<Self, ReplayError> {
        let mut events = events.into_iter();
        let mut state = match events.next() {
            Some(AuditEvent::RunStarted(config)) => Self::new(config.clone()),
            _ => return Err(ReplayError::NotStarted { seq: 0 }),
        };
        for (i, event) in events.enumerate() {
            state.apply(i as u64 + 1, event)?;
        }
        Ok(state)
    }

    /// Whether the run has completed all its rounds, failed, or spent its privacy budget.
    pub fn finished(&self) -> bool {
        self.completed_rounds >= self.config.public.rounds || self.failed || self.budget_spent
    }

    /// Peers on the run's allow-list that are not revoked: the most updates an attempt can
    /// still gather.
    pub fn allowed_peers(&self) -> usize {
        self.config
            .allow_list
            .iter()
            .filter(|p| PeerId::from_bytes(p).is_ok_and(|p| !self.revoked.contains_key(&p)))
            .count()
    }

    /// Whether revocations left fewer allowed peers than the quorum: then no attempt can be
    /// aggregated again, and the run ends as failed.
    pub fn quorum_unreachable(&self) -> bool {
        self.allowed_peers() < self.config.quorum
    }

    /// Folds one event (record number `seq`) into the state.
    pub fn apply(&mut self, seq: u64, event: &AuditEvent) -> Result<(), ReplayError> {
        let impossible = |what: String| ReplayError::Impossible { seq, what };
        match event {
            AuditEvent::RunStarted(_) => return Err(ReplayError::NotStarted { seq }),
            AuditEvent::Enrolled { peer, enrolment } => {
                let peer = PeerId::from_bytes(peer)
                    .map_err(|e| impossible(format!("bad peer id: {e}")))?;
                if self.enrolments.contains_key(&peer) {
                    return Err(impossible(format!("{peer} enrolled twice")));
                }
                if let Some(revoked) = self.revoked.get(&peer) {
                    return Err(impossible(format!(
                        "{peer} enrolled after its revocation at record {}",
                        revoked.seq
                    )));
                }
                self.enrolments.insert(peer, enrolment.clone());
            }
            AuditEvent::RoundStarted(announcement) => {
                if self.open.is_some() || self.finished() {
                    return Err(impossible(
                        "a round started while another was open or the run was over".into(),
                    ));
                }
                if announcement.round != self.completed_rounds + 1
                    || announcement.attempt != self.next_attempt
                    || announcement.model != self.model
                {
                    return Err(impossible(format!(
                        "round {} does not follow the current state",
                        announcement.round
                    )));
                }
                // Parameters are the run's: a coordinator may not weaken clipping or shrink
                // the batch for one round (the audit replays this check).
                if announcement.opened_at_ms < self.last_closed_ms {
                    return Err(impossible(format!(
                        "round {} opens at {} ms, before the previous close at {} ms",
                        announcement.round, announcement.opened_at_ms, self.last_closed_ms
                    )));
                }
                if announcement.params != self.config.public.params {
                    return Err(impossible(format!(
                        "round {} announces parameters {:?}, the run's are {:?}",
                        announcement.round, announcement.params, self.config.public.params
                    )));
                }
                self.open = Some(OpenRound {
                    announcement: announcement.clone(),
                    judged: BTreeMap::new(),
                    refused: BTreeSet::new(),
                    refusals_recorded: BTreeSet::new(),
                    accepted: Vec::new(),
                    dropped: BTreeSet::new(),
                });
                self.attempts_opened += 1;
            }
            AuditEvent::Judged {
                round,
                attempt,
                peer,
                update,
                proof_sha256,
                rejection,
            } => {
                let peer = PeerId::from_bytes(peer)
                    .map_err(|e| impossible(format!("bad peer id: {e}")))?;
                if let Some(revoked) = self.revoked.get(&peer) {
                    return Err(impossible(format!(
                        "a submission of {peer} judged after its revocation at record {}",
                        revoked.seq
                    )));
                }
                let open = self
                    .open
                    .as_mut()
                    .ok_or_else(|| impossible("verdict with no open round".into()))?;
                let here = (open.announcement.round, open.announcement.attempt);
                if here != (*round, *attempt) || open.judged.contains_key(&peer) {
                    return Err(impossible(format!(
                        "verdict for round {round} attempt {attempt} from {peer} out of place"
                    )));
                }
                // Texts kept bounded, live and in replay alike: a log of long rejection texts
                // costs whoever replays it a bounded amount per verdict.
                let rejection = rejection.as_ref().map(Rejection::bounded);
                open.judged.insert(peer, rejection.clone());
                let recorded = RecordedVerdict {
                    proof_sha256: *proof_sha256,
                    update_sha256: update_digest(update),
                    rejection: rejection.clone(),
                };
                self.verdicts.insert((*round, *attempt, peer), recorded);
                if rejection.is_none() {
                    open.accepted.push((peer, update.clone()));
                }
            }
            AuditEvent::Aggregated {
                round,
                model,
                at_ms,
                state,
                privacy,
            } => {
                if privacy.is_some() != self.config.public.privacy.is_some() {
                    return Err(impossible(format!(
                        "aggregate for round {round} with privacy {} in a run with privacy {}",
                        privacy.is_some(),
                        self.config.public.privacy.is_some()
                    )));
                }
                match &self.open {
                    Some(open)
                        if open.announcement.round == *round
                            && *at_ms >= open.announcement.opened_at_ms => {}
                    _ => {
                        return Err(impossible(format!(
                            "aggregate for round {round}, which is not open"
                        )));
                    }
                }
                self.model = model.clone();
                self.server_state = state.clone();
                self.completed_rounds = *round;
                self.open = None;
                self.next_attempt = 1;
                self.last_closed_ms = *at_ms;
            }
            AuditEvent::Abandoned {
                round,
                attempt,
                at_ms,
                ..
            } => {
                match &self.open {
                    Some(open)
                        if (open.announcement.round, open.announcement.attempt)
                            == (*round, *attempt)
                            && *at_ms >= open.announcement.opened_at_ms => {}
                    _ => {
                        return Err(impossible(format!(
                            "round {round} attempt {attempt} abandoned but not open"
                        )));
                    }
                }
                self.open = None;
                self.next_attempt = attempt.saturating_add(1);
                self.last_closed_ms = *at_ms;
            }
            AuditEvent::RunFailed { round, at_ms } => {
                // Its two causes: a round used up its attempts, or revocations left fewer
                // allowed peers than the quorum.
                let exhausted = self.next_attempt > self.config.max_attempts;
                if self.open.is_some()
                    || self.finished()
                    || !(exhausted || self.quorum_unreachable())
                    || *round != self.completed_rounds + 1
                    || *at_ms < self.last_closed_ms
                {
                    return Err(impossible(format!(
                        "the run failed at round {round} before its attempts were exhausted \
                         and while the quorum could still be met"
                    )));
                }
                self.failed = true;
            }
            AuditEvent::BudgetSpent { rounds, at_ms, .. } => {
                if self.open.is_some()
                    || self.finished()
                    || self.config.public.privacy.is_none()
                    || *rounds != self.completed_rounds
                    || *at_ms < self.last_closed_ms
                {
                    return Err(impossible(format!(
                        "a budget end after {rounds} rounds while a round is open, the run is \
                         over, it has no privacy, or {} rounds were aggregated",
                        self.completed_rounds
                    )));
                }
                self.budget_spent = true;
            }
            AuditEvent::Revoked {
                peer,
                at_ms,
                reason,
            } => {
                let peer = PeerId::from_bytes(peer)
                    .map_err(|e| impossible(format!("bad peer id: {e}")))?;
                if self.finished() {
                    return Err(impossible(format!("{peer} revoked after the run ended")));
                }
                if !self.config.allow_list.contains(&peer.to_bytes()) {
                    return Err(impossible(format!(
                        "{peer} revoked, but it is not on the allow-list"
                    )));
                }
                if let Some(earlier) = self.revoked.get(&peer) {
                    return Err(impossible(format!(
                        "{peer} revoked twice (first at record {})",
                        earlier.seq
                    )));
                }
                let opened = self.open.as_ref().map(|o| o.announcement.opened_at_ms);
                if *at_ms < self.last_closed_ms.max(opened.unwrap_or(0)) {
                    return Err(impossible(format!(
                        "{peer} revoked at {at_ms} ms, before the last recorded time"
                    )));
                }
                crate::revocation::check_reason(reason)
                    .map_err(|e| impossible(format!("the revocation of {peer}: {e}")))?;
                self.enrolments.remove(&peer);
                self.revoked.insert(peer, Revocation { seq, at_ms: *at_ms });
                // A compromised key's update is not aggregated, even if it was accepted in
                // the open attempt before the revocation.
                if let Some(open) = &mut self.open
                    && let Some(at) = open.accepted.iter().position(|(p, _)| *p == peer)
                {
                    open.accepted.remove(at);
                    open.dropped.insert(peer);
                }
            }
            AuditEvent::Discarded { peer, .. } => {
                PeerId::from_bytes(peer).map_err(|e| impossible(format!("bad peer id: {e}")))?;
            }
            AuditEvent::Refused {
                peer,
                submission,
                rejection,
                ..
            } => {
                let peer = PeerId::from_bytes(peer)
                    .map_err(|e| impossible(format!("bad peer id: {e}")))?;
                // A refusal for revocation names a peer revoked on record, never another.
                if *rejection == Rejection::Revoked && !self.revoked.contains_key(&peer) {
                    return Err(impossible(format!(
                        "{peer} refused as revoked, never revoked"
                    )));
                }
                if submission.is_none() {
                    self.enrolment_refusals.insert((peer, rejection.kind()));
                }
                if let (Some(open), Some(named)) = (&mut self.open, submission)
                    && (open.announcement.round, open.announcement.attempt) == *named
                {
                    open.refusals_recorded.insert(peer);
                    if matches!(rejection, Rejection::UpdateShape { .. }) {
                        open.refused.insert(peer);
                    }
                }
            }
        }
        Ok(())
    }
}
