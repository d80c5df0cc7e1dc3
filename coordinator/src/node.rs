//! The coordinator's network loop: one swarm, one `select!`, verification on blocking
//! threads.
//!
//! Requests are answered from the [`Core`]; submissions are admitted, verified on a bounded
//! pool of blocking threads while other requests keep flowing, and judged (logged) before
//! their verdict is sent. A tick starts rounds and closes them at quorum or deadline.

use std::collections::BTreeSet;
use std::future::Future;
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
use zkfed_protocol::{Rejection, Request, Response, Submission};

use crate::config::Config;
use crate::core::Core;
use crate::events::AuditEvent;

/// Proofs verified at once (each on a blocking thread).
const MAX_CONCURRENT_VERIFICATIONS: usize = 2;
/// How often rounds are started and deadlines checked.
const TICK: Duration = Duration::from_millis(200);

/// The coordinator's composed behaviour.
#[derive(NetworkBehaviour)]
pub(crate) struct CoordinatorBehaviour {
    /// Refuses every peer not on the allow-list.
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    /// Bounds connections.
    limits: connection_limits::Behaviour,
    /// The zkfed protocol.
    zkfed: request_response::cbor::Behaviour<Request, Response>,
    /// Peer information exchange.
    identify: identify::Behaviour,
    /// Liveness.
    ping: ping::Behaviour,
}

/// What the coordinator reports to an observer (the simulation).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoordinatorEvent {
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
    /// handshake).
    ConnectionRefused {
        /// Who, when known (a connection may fail before the handshake names its peer).
        peer: Option<PeerId>,
        /// The transport's error.
        error: String,
    },
}

fn emit(config: &Config, event: CoordinatorEvent) {
    if let Some(tx) = &config.events {
        let _ = tx.send(event);
    }
}

/// A finished verification, on its way back to the loop.
struct Verified {
    peer: PeerId,
    submission: Submission,
    channel: ResponseChannel<Response>,
    outcome: Result<(), Rejection>,
    seconds: f64,
}

/// Runs the coordinator until the run is over (plus the linger time) or `shutdown` fires.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let mut core = Core::open(&config.store, config.key.clone(), config.run.clone())
        .context("opening the state store")?;
    let me = config.key.public().to_peer_id();
    info!(peer = %me, rounds_done = core.state().completed_rounds, "coordinator starting");
    if !config.verify_proofs {
        warn!("proof verification is OFF: every update is trusted (simulation baseline only)");
    }
    let traffic = zkfed_net::Traffic::default();
    let mut swarm = swarm(&config, &traffic)?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .with_context(|| format!("listening on {addr}"))?;
    }

    let (verified_tx, mut verified_rx) = mpsc::channel::<Verified>(64);
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_VERIFICATIONS));
    let mut in_flight: BTreeSet<PeerId> = BTreeSet::new();
    let mut round_opened_at = core.state().open.as_ref().map(|_| Instant::now());
    let mut finished_at = core.state().finished().then(Instant::now);
    let mut tick = tokio::time::interval(TICK);
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => {
                info!("shutdown requested");
                break;
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(CoordinatorBehaviourEvent::Zkfed(request_response::Event::Message {
                    peer,
                    message: request_response::Message::Request { request, channel, .. },
                    ..
                })) => {
                    let verifier = Verifier { tx: &verified_tx, permits: &permits, enabled: config.verify_proofs };
                    if let Some(response) = handle_request(&mut core, peer, request, channel, &mut in_flight, &verifier)? {
                        let (channel, response) = response;
                        if let Some((round, rejection)) = refusal(&response) {
                            emit(&config, CoordinatorEvent::Refused { peer, round, rejection });
                        }
                        let _ = swarm.behaviour_mut().zkfed.send_response(channel, response);
                    }
                }
                SwarmEvent::NewListenAddr { address, .. } => info!(%address, "listening"),
                SwarmEvent::IncomingConnectionError { send_back_addr, error, peer_id, .. } => {
                    warn!(from = %send_back_addr, peer = ?peer_id, %error, "refused an incoming connection");
                    let error = error.to_string();
                    emit(&config, CoordinatorEvent::ConnectionRefused { peer: peer_id, error });
                }
                SwarmEvent::ConnectionEstablished { peer_id, .. } => info!(peer = %peer_id, "participant connected"),
                _ => {}
            },
            Some(done) = verified_rx.recv() => {
                in_flight.remove(&done.peer);
                let verdict = core.judge(&done.peer, &done.submission, done.outcome)?;
                emit(&config, CoordinatorEvent::Judged {
                    round: verdict.round,
                    peer: done.peer,
                    verify_seconds: done.seconds,
                    rejection: verdict.rejection.clone(),
                });
                match &verdict.rejection {
                    None => info!(peer = %done.peer, round = verdict.round, "accepted"),
                    Some(rejection) => warn!(peer = %done.peer, round = verdict.round, %rejection, "rejected"),
                }
                let _ = swarm.behaviour_mut().zkfed.send_response(done.channel, Response::Verdict(verdict));
            }
            _ = tick.tick() => {
                if core.state().finished() {
                    let at = *finished_at.get_or_insert_with(Instant::now);
                    if at.elapsed() >= Duration::from_secs(config.linger_secs) {
                        info!(rounds = core.state().completed_rounds, "run complete");
                        break;
                    }
                    continue;
                }
                let deadline = Duration::from_secs(config.run.round_deadline_secs);
                let passed = round_opened_at.is_some_and(|t| t.elapsed() >= deadline);
                if let Some(event) = core.close_round_if_due(passed)? {
                    log_close(&event);
                    if let AuditEvent::Aggregated { round, .. } | AuditEvent::Abandoned { round, .. } = event {
                        let seconds = round_opened_at.map_or(0.0, |t| t.elapsed().as_secs_f64());
                        let aggregated = matches!(event, AuditEvent::Aggregated { .. });
                        emit(&config, CoordinatorEvent::Closed {
                            round,
                            aggregated,
                            seconds,
                            bytes_received: traffic.received(),
                            bytes_sent: traffic.sent(),
                        });
                    }
                    round_opened_at = None;
                }
                let mut seed = [0u8; 32];
                rand::make_rng::<rand::rngs::StdRng>().fill_bytes(&mut seed);
                if core.start_round_if_due(seed)? {
                    round_opened_at = Some(Instant::now());
                    info!(round = core.state().completed_rounds + 1, "round started");
                }
            }
        }
    }
    Ok(())
}

fn swarm(
    config: &Config,
    traffic: &zkfed_net::Traffic,
) -> anyhow::Result<Swarm<CoordinatorBehaviour>> {
    let allow_list = config.allow.clone();
    zkfed_net::build_swarm(config.key.clone(), traffic, move |key| {
        let mut allow = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
        for peer in allow_list {
            allow.allow_peer(peer);
        }
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(64))
            .with_max_established_incoming(Some(1024))
            .with_max_established_per_peer(Some(4));
        CoordinatorBehaviour {
            allow,
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

type Reply = (ResponseChannel<Response>, Response);

/// The round (for submissions) and rejection of an answer that refuses without verifying.
fn refusal(response: &Response) -> Option<(Option<u64>, Rejection)> {
    match response {
        Response::Refused(rejection) => Some((None, rejection.clone())),
        Response::Verdict(v) => v.rejection.clone().map(|r| (Some(v.round), r)),
        _ => None,
    }
}

/// Where admitted submissions go to be verified.
struct Verifier<'a> {
    tx: &'a mpsc::Sender<Verified>,
    permits: &'a Arc<Semaphore>,
    /// False only in the simulation's trusting baseline.
    enabled: bool,
}

/// Answers a request now, or starts verifying a submission (answered when it finishes).
fn handle_request(
    core: &mut Core,
    peer: PeerId,
    request: Request,
    channel: ResponseChannel<Response>,
    in_flight: &mut BTreeSet<PeerId>,
    verifier: &Verifier<'_>,
) -> anyhow::Result<Option<Reply>> {
    let response = match request {
        Request::Parameters => Response::Parameters(core.state().config.public.clone()),
        Request::Enrol(signed) => match core.enrol(&peer, &signed)? {
            Ok(()) => {
                info!(%peer, rows = signed.enrolment.commitment.rows, "enrolled");
                Response::Enrolled
            }
            Err(rejection) => {
                warn!(%peer, %rejection, "enrolment refused");
                Response::Refused(rejection)
            }
        },
        Request::CurrentRound => {
            let state = core.state();
            if state.finished() {
                Response::Finished {
                    rounds: state.completed_rounds,
                    model: state.model.clone(),
                }
            } else if !state.enrolments.contains_key(&peer) {
                Response::Refused(Rejection::NotEnrolled)
            } else {
                match &state.open {
                    Some(open) => Response::Round(open.announcement.clone()),
                    None => Response::Waiting,
                }
            }
        }
        Request::Submit(submission) => {
            let round = submission.round;
            let refuse = |rejection: Rejection| {
                warn!(%peer, round, %rejection, "submission refused before verification");
                Response::Verdict(zkfed_protocol::Verdict {
                    round,
                    rejection: Some(rejection),
                })
            };
            if in_flight.contains(&peer) {
                refuse(Rejection::Busy)
            } else {
                match core.admit(&peer, &submission) {
                    Err(rejection) => refuse(rejection),
                    Ok(statement) => {
                        in_flight.insert(peer);
                        let permits = verifier.permits.clone();
                        let verified = verifier.tx.clone();
                        let enabled = verifier.enabled;
                        tokio::spawn(async move {
                            let Ok(_permit) = permits.acquire_owned().await else {
                                return;
                            };
                            let checked = submission.clone();
                            let started = std::time::Instant::now();
                            let outcome = tokio::task::spawn_blocking(move || {
                                if !enabled {
                                    return Ok(());
                                }
                                zkfed_air::verify(&statement, &checked.update, &checked.proof)
                                    .map_err(Rejection::from)
                            })
                            .await
                            .unwrap_or(Err(Rejection::VerifierUnavailable));
                            let seconds = started.elapsed().as_secs_f64();
                            let _ = verified
                                .send(Verified {
                                    seconds,
                                    peer,
                                    submission,
                                    channel,
                                    outcome,
                                })
                                .await;
                        });
                        return Ok(None);
                    }
                }
            }
        }
    };
    Ok(Some((channel, response)))
}

fn log_close(event: &AuditEvent) {
    match event {
        AuditEvent::Aggregated { round, .. } => info!(round, "round aggregated"),
        AuditEvent::Abandoned { round, reason } => warn!(round, %reason, "round abandoned"),
        _ => {}
    }
}
