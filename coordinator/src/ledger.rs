//! [`Ledger`]: the log and the state it folds into, advanced only by recording events.
//!
//! The network loop drives it; tests drive it directly. Every method that changes anything
//! appends the event durably first and applies it second, so the state in memory is always
//! the replay of the log on disk.

use std::path::Path;

use libp2p::PeerId;
use libp2p::identity::Keypair;
use sha2::{Digest, Sha256};
use thiserror::Error;
use zkfed_air::Statement;
use zkfed_protocol::{Rejection, SignedEnrolment, Submission, Verdict};

use crate::events::{AuditEvent, ReplayError, Revocation, RunConfig, RunState};
use crate::log::{AuditLog, LogError};
use crate::privacy::NoiseKey;
use crate::rounds::{self, RevokeError};

/// A failure that stops the coordinator (never a participant's fault).
#[derive(Debug, Error)]
pub enum LedgerError {
    /// The store failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The stored log does not replay.
    #[error("the stored log does not replay: {0}")]
    Replay(#[from] ReplayError),
    /// The state directory belongs to a run with another configuration.
    #[error("the state directory holds a run with a different configuration")]
    ConfigMismatch,
    /// A private run's noise key other than the one its configuration commits to.
    #[error("the noise key is not the one the run's configuration commits to")]
    NoiseKey,
}

/// The coordinator's durable state machine.
pub struct Ledger {
    log: AuditLog,
    state: RunState,
    /// A private run's noise key.
    noise: Option<NoiseKey>,
}

impl Ledger {
    /// Opens the store, starting the run with `config` or resuming the run it holds.
    pub fn open(path: &Path, key: Keypair, config: RunConfig) -> Result<Self, LedgerError> {
        let mut log = AuditLog::open(path, key)?;
        let mut replayed: Option<RunState> = None;
        log.for_each_record(|record| {
            match &mut replayed {
                None => replayed = Some(RunState::replay([&record.event])?),
                Some(state) => state.apply(record.seq, &record.event)?,
            }
            Ok::<_, LedgerError>(())
        })?;
        let state = match replayed {
            Some(state) if state.config != config => return Err(LedgerError::ConfigMismatch),
            Some(state) => state,
            None => {
                let record = log.append(AuditEvent::RunStarted(config), None)?;
                match record.event {
                    AuditEvent::RunStarted(config) => RunState::new(config),
                    _ => unreachable!("just appended RunStarted"),
                }
            }
        };
        Ok(Self {
            log,
            state,
            noise: None,
        })
    }

    /// The ledger of a private run, which aggregates with `noise`: the key the run's
    /// configuration commits to, or an error.
    pub fn with_noise_key(self, noise: NoiseKey) -> Result<Self, LedgerError> {
        if self.state.config.noise_key_commitment != Some(noise.commitment()) {
            return Err(LedgerError::NoiseKey);
        }
        Ok(Self {
            noise: Some(noise),
            ..self
        })
    }

    /// The current state.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// The stored proof of an accepted submission.
    pub fn proof(
        &self,
        round: u64,
        attempt: u32,
        peer: &PeerId,
    ) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.log.proof(round, attempt, peer)?)
    }

    /// Appends `event` durably, then applies it; returns its record number.
    fn record(
        &mut self,
        event: AuditEvent,
        proof: Option<(u64, u32, &PeerId, &[u8])>,
    ) -> Result<u64, LedgerError> {
        let record = self.log.append(event, proof)?;
        self.state.apply(record.seq, &record.event)?;
        Ok(record.seq)
    }

    /// Handles an enrolment: `Err(reason)` refuses it.
    pub fn enrol(
        &mut self,
        peer: &PeerId,
        signed: &SignedEnrolment,
    ) -> Result<Result<(), Rejection>, LedgerError> {
        match rounds::judge_enrolment(&self.state, peer, signed) {
            Ok(Some(event)) => self.record(event, None).map(|_| Ok(())),
            Ok(None) => Ok(Ok(())),
            Err(rejection) => {
                self.refuse(peer, None, &rejection)?;
                Ok(Err(rejection))
            }
        }
    }

    /// Records a refusal before verification: of an enrolment (`submission` `None`) or of a
    /// submission. A submission refused as busy is not recorded (it is a passing state the
    /// participant retries), nor is one to another attempt than the open one, nor a second
    /// refusal of the same peer in an attempt, nor a second enrolment refusal of a peer for
    /// the same kind of reason: the log stays bounded by (allow-listed) peers × attempts.
    pub fn refuse(
        &mut self,
        peer: &PeerId,
        submission: Option<&Submission>,
        rejection: &Rejection,
    ) -> Result<(), LedgerError> {
        if let Some(s) = submission {
            let open = self.state.open.as_ref();
            let recordable = open.is_some_and(|o| {
                (o.announcement.round, o.announcement.attempt) == (s.round, s.attempt)
                    && !o.refusals_recorded.contains(peer)
            });
            if !recordable || matches!(rejection, Rejection::Busy) {
                return Ok(());
            }
        } else if self
            .state
            .enrolment_refusals
            .contains(&(*peer, rejection.kind()))
        {
            return Ok(());
        }
        let event = AuditEvent::Refused {
            peer: peer.to_bytes(),
            submission: submission.map(|s| (s.round, s.attempt)),
            proof_sha256: submission.map(|s| Sha256::digest(&s.proof).into()),
            rejection: rejection.clone(),
        };
        self.record(event, None)?;
        Ok(())
    }

    /// Revokes `peer`'s key for `reason` (the operator's `zkfed-coordinator revoke`): the
    /// signed `Revoked` record is appended before it takes effect. From then on the peer's
    /// enrolment does not count, its submissions are refused (`Rejection::Revoked`), and an
    /// update of it accepted in the open attempt is left out of the aggregate. `Err` refuses
    /// the revocation (a peer off the allow-list, one already revoked, a run that is over,
    /// a bad reason) with nothing appended.
    pub fn revoke(
        &mut self,
        peer: &PeerId,
        reason: &str,
        now_ms: u64,
    ) -> Result<Result<Revocation, RevokeError>, LedgerError> {
        let event = match rounds::revoke(&self.state, peer, reason, now_ms) {
            Ok(event) => event,
            Err(refused) => return Ok(Err(refused)),
        };
        self.record(event, None)?;
        let revocation = self.state.revoked.get(peer).copied();
        Ok(Ok(revocation.expect("the Revoked record was just applied")))
    }

    /// Starts the next round with `seed` if one should start; returns whether it did.
    pub fn start_round_if_due(&mut self, seed: [u8; 32], now_ms: u64) -> Result<bool, LedgerError> {
        match rounds::start_round(&self.state, seed, now_ms) {
            Some(event) => {
                let started = matches!(event, AuditEvent::RoundStarted(_));
                self.record(event, None)?;
                Ok(started)
            }
            None => Ok(false),
        }
    }

    /// The verdict on record for exactly this submission, if it was judged before.
    pub fn recorded_verdict(&self, peer: &PeerId, submission: &Submission) -> Option<Verdict> {
        rounds::recorded_verdict(&self.state, peer, submission)
    }

    /// Checks a submission before verification: the statement to verify it against.
    pub fn admit(&self, peer: &PeerId, submission: &Submission) -> Result<Statement, Rejection> {
        rounds::admit_submission(&self.state, peer, submission)
    }

    /// Records the verification outcome of an admitted submission and returns the verdict.
    ///
    /// Re-admits first: the attempt the submission was verified for may have closed, or
    /// another submission from the same peer may have been judged, while this one was
    /// being verified. Such an outcome is discarded, with the reason recorded: it is judged
    /// only against the attempt it was verified for.
    pub fn judge(
        &mut self,
        peer: &PeerId,
        submission: &Submission,
        outcome: Result<(), Rejection>,
    ) -> Result<Verdict, LedgerError> {
        let (round, attempt) = (submission.round, submission.attempt);
        if let Err(rejection) = self.admit(peer, submission) {
            let event = AuditEvent::Discarded {
                round,
                attempt,
                peer: peer.to_bytes(),
                rejection: rejection.clone(),
            };
            self.record(event, None)?;
            return Ok(Verdict {
                round,
                attempt,
                rejection: Some(rejection),
            });
        }
        let proof_sha256: [u8; 32] = Sha256::digest(&submission.proof).into();
        let rejection = outcome.err();
        let event = AuditEvent::Judged {
            round,
            attempt,
            peer: peer.to_bytes(),
            update: submission.update.clone(),
            proof_sha256,
            rejection: rejection.clone(),
        };
        // Every judged proof is kept, rejected ones included, so an auditor can check
        // that no valid proof was recorded as rejected.
        let proof = Some((round, attempt, peer, submission.proof.as_slice()));
        self.record(event, proof)?;
        Ok(Verdict {
            round,
            attempt,
            rejection,
        })
    }

    /// Closes the open round if it is due; returns the closing event.
    pub fn close_round_if_due(&mut self, now_ms: u64) -> Result<Option<AuditEvent>, LedgerError> {
        match rounds::close_round(&self.state, now_ms, self.noise.as_ref()) {
            Some(event) => {
                self.record(event.clone(), None)?;
                Ok(Some(event))
            }
            None => Ok(None),
        }
    }
}
