//! The coordinator's network loop: one swarm, one `select!`, verification on blocking
//! threads.
//!
//! Requests are answered from the [`Ledger`]; submissions are admitted, verified on a bounded
//! pool of blocking threads while other requests keep flowing, and judged (logged) before
//! their verdict is sent. A tick applies the revocations an operator filed
//! ([`crate::revocation`]), starts rounds and closes them at quorum or deadline.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use libp2p::request_response::{self, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{PeerId, Swarm, allow_block_list, connection_limits, identify, ping};
use rand::Rng;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tracing::{info, warn};
use zkfed_air::Statement;
use zkfed_protocol::{Rejection, Request, Response, SignedEnrolment, Submission};

use crate::config::Config;
use crate::events::{AuditEvent, unix_ms};
use crate::ledger::Ledger;
use crate::revocation;
use crate::rounds::RevokeError;

/// Proofs verified at once (each on a blocking thread).
const MAX_CONCURRENT_VERIFICATIONS: usize = 2;
/// Connections in their handshake at once, from all addresses (each address may have
/// [`zkfed_net::MAX_PENDING_PER_IP`]).
const MAX_PENDING_INCOMING: u32 = 256;
/// Connections one peer may hold: each may carry
/// [`zkfed_protocol::INBOUND_BYTES_PER_CONNECTION`] of messages in flight.
const MAX_CONNECTIONS_PER_PEER: u32 = 2;
/// How often rounds are started and deadlines checked.
const TICK: Duration = Duration::from_millis(200);

/// The coordinator's composed behaviour.
#[derive(NetworkBehaviour)]
pub(crate) struct CoordinatorBehaviour {
    /// Refuses every peer not on the allow-list.
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    /// Bounds handshakes per remote address, so one host cannot take every pending slot.
    pending: zkfed_net::PendingPerIp,
    /// Bounds connections.
    limits: connection_limits::Behaviour,
    /// The zkfed protocol.
    zkfed: request_response::Behaviour<zkfed_protocol::ZkfedCodec>,
    /// Peer information exchange.
    identify: identify::Behaviour,
    /// Liveness.
    ping: ping::Behaviour,
}

/// What the coordinator reports to an observer (the simulation).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoordinatorTelemetry {
    /// A submission was verified and judged.
    Judged {
        /// The round.
        round: u64,
        /// The submitter.
        peer: PeerId,
        /// Seconds the verification took.
        verify_seconds: f64,
        /// The failed check, if rejected.
        rejection: Option<Rejection>,
    },
    /// A round closed.
    Closed {
        /// The round.
        round: u64,
        /// Whether it was aggregated (else abandoned below quorum).
        aggregated: bool,
        /// Seconds from opening to closing.
        seconds: f64,
        /// Bytes read from all sockets since the coordinator started.
        bytes_received: u64,
        /// Bytes written to all sockets since the coordinator started.
        bytes_sent: u64,
    },
    /// An enrolment, a request or a submission was refused before any verification.
    Refused {
        /// Who.
        peer: PeerId,
        /// The round of a refused submission.
        round: Option<u64>,
        /// Why.
        rejection: Rejection,
    },
    /// An incoming connection was refused (off the allow-list, over a limit, a failed
    /// handshake). Reported at most once a second; the refusals in between are counted.
    ConnectionRefused {
        /// Who, when known (a connection may fail before the handshake names its peer).
        peer: Option<PeerId>,
        /// The transport's error.
        error: String,
        /// Refusals since the last one reported, not reported one by one.
        #[serde(default)]
        suppressed: u64,
    },
    /// The operator revoked a participant's key; its connections were closed.
    Revoked {
        /// Who.
        peer: PeerId,
        /// The `Revoked` record.
        record: u64,
        /// Whether an update of it accepted in the open attempt was left out of it.
        update_dropped: bool,
    },
}

/// Checks an admitted submission against the statement the coordinator built for it.
///
/// The binary always passes [`StarkVerifier`]; nothing in a configuration file can choose
/// another. The simulation's no-proofs baseline passes its own, from code.
pub trait SubmissionVerifier: Send + Sync + 'static {
    /// `Ok` if the submission's update is proven for `statement`.
    fn verify(&self, statement: &Statement, submission: &Submission) -> Result<(), Rejection>;
}

/// Verifies the submission's STARK proof ([`zkfed_air::verify`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct StarkVerifier;

impl SubmissionVerifier for StarkVerifier {
    fn verify(&self, statement: &Statement, submission: &Submission) -> Result<(), Rejection> {
        zkfed_air::verify(statement, &submission.update, &submission.proof).map_err(Rejection::from)
    }
}

/// Where a coordinator reports [`CoordinatorTelemetry`]s, if anyone listens.
pub type Observer = Option<mpsc::UnboundedSender<CoordinatorTelemetry>>;

/// A finished verification, on its way back to the loop.
struct Verified {
    peer: PeerId,
    /// Shared with the verifying thread: a proof is held once, not copied.
    submission: Arc<Submission>,
    channel: ResponseChannel<Response>,
    outcome: Result<(), Rejection>,
    seconds: f64,
}

/// Runs the coordinator until the run is over (plus the linger time) or `shutdown` fires.
pub async fn run(
    config: Config,
    observer: Observer,
    verifier: Arc<dyn SubmissionVerifier>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    EventLoop::new(config, observer, verifier)?
        .run(shutdown)
        .await
}

/// The coordinator's loop state, after rust-libp2p's file-sharing example: one method per
/// kind of event.
struct EventLoop {
    ledger: Ledger,
    swarm: Swarm<CoordinatorBehaviour>,
    traffic: zkfed_net::Traffic,
    observer: Observer,
    verifier: Arc<dyn SubmissionVerifier>,
    verified_tx: mpsc::Sender<Verified>,
    verified_rx: mpsc::Receiver<Verified>,
    permits: Arc<Semaphore>,
    /// Peers with a submission being verified (at most one each).
    in_flight: BTreeSet<PeerId>,
    finished_at: Option<Instant>,
    linger: Duration,
    /// The state directory, where `zkfed-coordinator revoke` files its requests.
    state_dir: PathBuf,
    connection_refusals: Throttle,
}

/// Refused connections are logged at most this often: a host opening sockets as fast as
/// it can must not grow the log (or the events file) as fast.
const REFUSAL_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Lets one report through per [`REFUSAL_REPORT_INTERVAL`] and counts the rest.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(refusals suppressed since the last report)` if this one is reported.
    fn report(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < REFUSAL_REPORT_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

impl EventLoop {
    fn new(
        config: Config,
        observer: Observer,
        verifier: Arc<dyn SubmissionVerifier>,
    ) -> anyhow::Result<Self> {
        let mut ledger = Ledger::open(&config.store, config.key.clone(), config.run.clone())
            .context("opening the state store")?;
        if let Some(noise) = &config.noise {
            ledger = ledger
                .with_noise_key(noise.clone())
                .context("the state directory's noise.key")?;
        }
        let me = config.key.public().to_peer_id();
        info!(peer = %me, rounds_done = ledger.state().completed_rounds, "coordinator starting");
        let traffic = zkfed_net::Traffic::default();
        // Peers revoked on record stay off the swarm's allow-list across restarts.
        let revoked = ledger.state().revoked.keys().copied().collect();
        let mut swarm = swarm(&config, &traffic, &revoked)?;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .with_context(|| format!("listening on {addr}"))?;
        }
        let (verified_tx, verified_rx) = mpsc::channel::<Verified>(64);
        Ok(Self {
            finished_at: ledger.state().finished().then(Instant::now),
            ledger,
            swarm,
            traffic,
            observer,
            verifier,
            verified_tx,
            verified_rx,
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_VERIFICATIONS)),
            in_flight: BTreeSet::new(),
            linger: Duration::from_secs(config.linger_secs),
            state_dir: config
                .store
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            connection_refusals: Throttle::default(),
        })
    }

    async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let mut shutdown = std::pin::pin!(shutdown);
        // A revocation filed while the coordinator was down applies before anyone is served.
        self.apply_revocations()?;
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    info!("shutdown requested");
                    return Ok(());
                }
                event = self.swarm.select_next_some() => self.on_swarm_event(event)?,
                Some(done) = self.verified_rx.recv() => self.on_verified(done)?,
                _ = tick.tick() => {
                    if !self.on_tick()? {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn emit(&self, event: CoordinatorTelemetry) {
        if let Some(tx) = &self.observer {
            let _ = tx.send(event);
        }
    }

    fn on_swarm_event(
        &mut self,
        event: SwarmEvent<CoordinatorBehaviourEvent>,
    ) -> anyhow::Result<()> {
        match event {
            SwarmEvent::Behaviour(CoordinatorBehaviourEvent::Zkfed(
                request_response::Event::Message {
                    peer,
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                },
            )) => self.on_request(peer, request, channel)?,
            SwarmEvent::NewListenAddr { address, .. } => info!(%address, "listening"),
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                peer_id,
                ..
            } => {
                let Some(suppressed) = self.connection_refusals.report(Instant::now()) else {
                    return Ok(());
                };
                warn!(from = %send_back_addr, peer = ?peer_id, %error, suppressed, "refused an incoming connection");
                let error = error.to_string();
                self.emit(CoordinatorTelemetry::ConnectionRefused {
                    peer: peer_id,
                    error,
                    suppressed,
                });
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                info!(peer = %peer_id, "participant connected");
            }
            _ => {}
        }
        Ok(())
    }

    /// Answers a request now, or starts verifying a submission (answered when it finishes).
    fn on_request(
        &mut self,
        peer: PeerId,
        request: Request,
        channel: ResponseChannel<Response>,
    ) -> anyhow::Result<()> {
        let response = match request {
            Request::Parameters => Response::Parameters(self.ledger.state().config.public.clone()),
            Request::Enrol(signed) => self.on_enrol(peer, &signed)?,
            Request::CurrentRound => self.current_round(peer),
            Request::Submit(submission) => return self.on_submit(peer, submission, channel),
        };
        self.answer(peer, channel, response)
    }

    fn answer(
        &mut self,
        peer: PeerId,
        channel: ResponseChannel<Response>,
        response: Response,
    ) -> anyhow::Result<()> {
        if let Some((round, rejection)) = refusal(&response) {
            self.emit(CoordinatorTelemetry::Refused {
                peer,
                round,
                rejection,
            });
        }
        let _ = self
            .swarm
            .behaviour_mut()
            .zkfed
            .send_response(channel, response);
        Ok(())
    }

    fn on_enrol(&mut self, peer: PeerId, signed: &SignedEnrolment) -> anyhow::Result<Response> {
        Ok(match self.ledger.enrol(&peer, signed)? {
            Ok(()) => {
                info!(%peer, rows = signed.enrolment.commitment.rows, "enrolled");
                Response::Enrolled
            }
            Err(rejection) => {
                warn!(%peer, %rejection, "enrolment refused");
                Response::Refused(rejection)
            }
        })
    }

    fn current_round(&self, peer: PeerId) -> Response {
        let state = self.ledger.state();
        if state.finished() {
            return Response::Finished {
                rounds: state.completed_rounds,
                model: state.model.clone(),
                budget_spent: state.budget_spent,
            };
        }
        if state.revoked.contains_key(&peer) {
            return Response::Refused(Rejection::Revoked);
        }
        if !state.enrolments.contains_key(&peer) {
            return Response::Refused(Rejection::NotEnrolled);
        }
        match &state.open {
            Some(open) => Response::Round(open.announcement.clone()),
            None => Response::Waiting,
        }
    }

    /// Admits a submission and verifies it on a blocking thread behind the permits (it is
    /// answered when verification finishes), or refuses it now.
    fn on_submit(
        &mut self,
        peer: PeerId,
        submission: Submission,
        channel: ResponseChannel<Response>,
    ) -> anyhow::Result<()> {
        if let Some(verdict) = self.ledger.recorded_verdict(&peer, &submission) {
            info!(%peer, round = verdict.round, attempt = verdict.attempt, "a judged submission sent again: its verdict on record");
            let response = Response::Verdict(verdict);
            let _ = self
                .swarm
                .behaviour_mut()
                .zkfed
                .send_response(channel, response);
            return Ok(());
        }
        let admitted = if self.in_flight.contains(&peer) {
            Err(Rejection::Busy)
        } else {
            self.ledger.admit(&peer, &submission)
        };
        let statement = match admitted {
            Ok(statement) => statement,
            Err(rejection) => {
                let (round, attempt) = (submission.round, submission.attempt);
                warn!(%peer, round, attempt, %rejection, "submission refused before verification");
                self.ledger.refuse(&peer, Some(&submission), &rejection)?;
                let verdict = zkfed_protocol::Verdict {
                    round,
                    attempt,
                    rejection: Some(rejection),
                };
                return self.answer(peer, channel, Response::Verdict(verdict));
            }
        };
        self.in_flight.insert(peer);
        let (permits, verified, verifier) = (
            self.permits.clone(),
            self.verified_tx.clone(),
            self.verifier.clone(),
        );
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let submission = Arc::new(submission);
            let checked = Arc::clone(&submission);
            let started = std::time::Instant::now();
            let outcome =
                tokio::task::spawn_blocking(move || verifier.verify(&statement, &checked))
                    .await
                    .unwrap_or(Err(Rejection::VerifierUnavailable));
            let seconds = started.elapsed().as_secs_f64();
            let done = Verified {
                seconds,
                peer,
                submission,
                channel,
                outcome,
            };
            let _ = verified.send(done).await;
        });
        Ok(())
    }

    /// Records a finished verification (judged against the round still open) and answers.
    fn on_verified(&mut self, done: Verified) -> anyhow::Result<()> {
        self.in_flight.remove(&done.peer);
        let verdict = self
            .ledger
            .judge(&done.peer, &done.submission, done.outcome)?;
        self.emit(CoordinatorTelemetry::Judged {
            round: verdict.round,
            peer: done.peer,
            verify_seconds: done.seconds,
            rejection: verdict.rejection.clone(),
        });
        match &verdict.rejection {
            None => info!(peer = %done.peer, round = verdict.round, "accepted"),
            Some(rejection) => {
                warn!(peer = %done.peer, round = verdict.round, %rejection, "rejected");
            }
        }
        let response = Response::Verdict(verdict);
        let _ = self
            .swarm
            .behaviour_mut()
            .zkfed
            .send_response(done.channel, response);
        Ok(())
    }

    /// Closes the open round when due, starts the next; `false` once the run is over and
    /// the linger time has passed.
    fn on_tick(&mut self) -> anyhow::Result<bool> {
        self.apply_revocations()?;
        if self.ledger.state().finished() {
            let at = *self.finished_at.get_or_insert_with(Instant::now);
            if at.elapsed() >= self.linger {
                let state = self.ledger.state();
                if state.failed {
                    warn!(
                        rounds = state.completed_rounds,
                        "run failed: a round used up its attempts"
                    );
                } else {
                    info!(rounds = state.completed_rounds, "run complete");
                }
                return Ok(false);
            }
            return Ok(true);
        }
        // The clock of record: deadlines run from each attempt's recorded opening time.
        let now = unix_ms();
        let opened = self.ledger.state().open.as_ref();
        let opened_at_ms = opened.map_or(now, |o| o.announcement.opened_at_ms);
        if let Some(event) = self.ledger.close_round_if_due(now)? {
            self.on_round_closed(&event, opened_at_ms);
        }
        let mut seed = [0u8; 32];
        rand::make_rng::<rand::rngs::StdRng>().fill_bytes(&mut seed);
        if self.ledger.start_round_if_due(seed, now)? {
            info!(
                round = self.ledger.state().completed_rounds + 1,
                attempt = self.ledger.state().next_attempt,
                "round started"
            );
        }
        Ok(true)
    }

    /// Applies the revocation requests filed in the state directory: each is recorded (a
    /// signed `Revoked`) before it takes effect, then the peer is taken off the swarm's
    /// allow-list and disconnected, and the outcome is written beside the request. Only a
    /// failing store stops the coordinator; a request file that cannot be read or answered
    /// is reported and tried again on the next tick.
    fn apply_revocations(&mut self) -> anyhow::Result<()> {
        let requests = match revocation::pending(&self.state_dir) {
            Ok(requests) => requests,
            Err(error) => {
                warn!(%error, "cannot read the revocation requests");
                return Ok(());
            }
        };
        for pending in requests {
            let outcome = match &pending.request {
                Err(message) => {
                    warn!(file = %pending.path.display(), %message, "revocation request refused");
                    revocation::Outcome {
                        peer: String::new(),
                        filed_at_ms: 0,
                        revoked: false,
                        record: None,
                        message: message.clone(),
                    }
                }
                Ok((peer, request)) => self.revoke(peer, request)?,
            };
            if let Err(error) = revocation::finish(&self.state_dir, &pending, &outcome) {
                warn!(file = %pending.path.display(), %error, "cannot answer a revocation request");
            }
        }
        Ok(())
    }

    /// Revokes `peer` as `request` asks, and says what happened.
    fn revoke(
        &mut self,
        peer: &PeerId,
        request: &revocation::Request,
    ) -> anyhow::Result<revocation::Outcome> {
        let answer = |revoked: bool, record: Option<u64>, message: String| revocation::Outcome {
            peer: request.peer.clone(),
            filed_at_ms: request.filed_at_ms,
            revoked,
            record,
            message,
        };
        let revocation = match self.ledger.revoke(peer, &request.reason, unix_ms())? {
            Ok(revocation) => revocation,
            // Recorded at or after this request was filed: it was this request, applied just
            // before a crash left its file behind.
            Err(RevokeError::AlreadyRevoked { seq, at_ms, .. }) if at_ms >= request.filed_at_ms => {
                self.block(peer);
                return Ok(answer(
                    true,
                    Some(seq),
                    format!("{peer} revoked at audit record {seq}"),
                ));
            }
            Err(refused) => {
                warn!(%peer, %refused, "revocation refused; nothing recorded");
                return Ok(answer(false, None, refused.to_string()));
            }
        };
        self.block(peer);
        let state = self.ledger.state();
        let dropped = state.open.as_ref().filter(|o| o.dropped.contains(peer));
        let mut message = format!("{peer} revoked at audit record {}", revocation.seq);
        if let Some(open) = dropped {
            let (round, attempt) = (open.announcement.round, open.announcement.attempt);
            message.push_str(&format!(
                "; its update accepted in round {round} attempt {attempt} is left out of the \
                 aggregate"
            ));
        }
        if state.quorum_unreachable() {
            message.push_str(&format!(
                "; {} allowed peers remain, below the quorum of {}: the run ends as failed",
                state.allowed_peers(),
                state.config.quorum
            ));
        }
        warn!(%peer, record = revocation.seq, reason = %request.reason, "{message}");
        self.emit(CoordinatorTelemetry::Revoked {
            peer: *peer,
            record: revocation.seq,
            update_dropped: dropped.is_some(),
        });
        Ok(answer(true, Some(revocation.seq), message))
    }

    /// Takes `peer` off the swarm's allow-list, which closes its connections and refuses
    /// new ones.
    fn block(&mut self, peer: &PeerId) {
        self.swarm.behaviour_mut().allow.disallow_peer(*peer);
        let _ = self.swarm.disconnect_peer_id(*peer);
    }

    fn on_round_closed(&mut self, event: &AuditEvent, opened: u64) {
        log_close(event);
        if let AuditEvent::Aggregated { round, at_ms, .. }
        | AuditEvent::Abandoned { round, at_ms, .. } = event
        {
            let seconds = at_ms.saturating_sub(opened) as f64 / 1e3;
            self.emit(CoordinatorTelemetry::Closed {
                round: *round,
                aggregated: matches!(event, AuditEvent::Aggregated { .. }),
                seconds,
                bytes_received: self.traffic.received(),
                bytes_sent: self.traffic.sent(),
            });
        }
    }
}

fn swarm(
    config: &Config,
    traffic: &zkfed_net::Traffic,
    revoked: &BTreeSet<PeerId>,
) -> anyhow::Result<Swarm<CoordinatorBehaviour>> {
    let allow_list: Vec<PeerId> = config
        .allow
        .iter()
        .filter(|p| !revoked.contains(p))
        .copied()
        .collect();
    zkfed_net::build_swarm(config.key.clone(), traffic, move |key| {
        let mut allow = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
        for peer in allow_list {
            allow.allow_peer(peer);
        }
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
            .with_max_established_incoming(Some(1024))
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER));
        CoordinatorBehaviour {
            allow,
            pending: zkfed_net::PendingPerIp::default(),
            limits: connection_limits::Behaviour::new(limits),
            zkfed: zkfed_protocol::request_response_behaviour(),
            identify: identify::Behaviour::new(identify::Config::new(
                zkfed_protocol::AGENT_VERSION.into(),
                key.public(),
            )),
            ping: ping::Behaviour::default(),
        }
    })
    .map_err(|e| anyhow::anyhow!("building the swarm: {e}"))
}

/// The round (for submissions) and rejection of an answer that refuses without verifying.
fn refusal(response: &Response) -> Option<(Option<u64>, Rejection)> {
    match response {
        Response::Refused(rejection) => Some((None, rejection.clone())),
        Response::Verdict(v) => v.rejection.clone().map(|r| (Some(v.round), r)),
        _ => None,
    }
}

fn log_close(event: &AuditEvent) {
    match event {
        AuditEvent::Aggregated { round, .. } => info!(round, "round aggregated"),
        AuditEvent::Abandoned {
            round,
            attempt,
            reason,
            ..
        } => warn!(round, attempt, %reason, "round attempt abandoned"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_reported_once_a_second_with_the_rest_counted() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        assert_eq!(throttle.report(start), Some(0));
        for k in 1..=500 {
            assert_eq!(throttle.report(start + Duration::from_millis(k)), None);
        }
        assert_eq!(throttle.report(start + REFUSAL_REPORT_INTERVAL), Some(500));
        assert_eq!(throttle.report(start + REFUSAL_REPORT_INTERVAL), None);
    }
}
