//! A client of one server over request-response: each request retried with backoff while
//! the server is unreachable (restarting, or the network dropped), or many sent at once;
//! the swarm is polled whenever the owner waits, so connections stay serviced while it
//! proves or sleeps. Generic over the messages, so it knows nothing of zkfed's protocol.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, allow_block_list, identify, ping};
use thiserror::Error;
use tracing::warn;

use crate::transport::{Traffic, build_swarm};

/// Longest wait between retries of a failed request.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// First wait after a failed request.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// A request-response codec a client can speak: requests are cloned to be retried.
pub trait Wire:
    request_response::Codec<Request: Clone + Debug + Send, Response: Debug + Send>
    + Clone
    + Send
    + 'static
{
}
impl<C> Wire for C where
    C: request_response::Codec<Request: Clone + Debug + Send, Response: Debug + Send>
        + Clone
        + Send
        + 'static
{
}

/// A client's composed behaviour: it talks only to its server.
#[derive(NetworkBehaviour)]
pub(crate) struct ClientBehaviour<C: Wire> {
    /// Only the server may connect or be connected to.
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    /// The request-response protocol (with its limits).
    requests: request_response::Behaviour<C>,
    /// Peer information exchange.
    identify: identify::Behaviour,
    /// Liveness.
    ping: ping::Behaviour,
}

/// Why a client gave up.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The swarm could not be built.
    #[error("building the swarm: {0}")]
    Build(String),
    /// No answer for longer than the client waits.
    #[error("the server has been unreachable for {after:?}: {last}")]
    Unreachable {
        /// How long it tried.
        after: Duration,
        /// The last failure.
        last: OutboundFailure,
    },
}

/// The connection to one server.
pub struct Client<C: Wire> {
    swarm: Swarm<ClientBehaviour<C>>,
    server: PeerId,
    address: Multiaddr,
    traffic: Traffic,
    give_up_after: Duration,
}

/// A request of codec `C`.
type Req<C> = <C as request_response::Codec>::Request;
/// A response of codec `C`.
type Resp<C> = <C as request_response::Codec>::Response;

impl<C: Wire> Client<C> {
    /// A client of `server` at `address` speaking `requests` (the protocol's behaviour,
    /// with its size limits and timeout), announcing `agent` over identify, that gives up
    /// on a request after `give_up_after` without an answer.
    pub fn new(
        key: Keypair,
        server: PeerId,
        address: Multiaddr,
        requests: request_response::Behaviour<C>,
        agent: &str,
        give_up_after: Duration,
    ) -> Result<Self, ClientError> {
        let traffic = Traffic::default();
        let mut swarm = build_swarm(key, &traffic, |key| {
            let mut allow =
                allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
            allow.allow_peer(server);
            ClientBehaviour {
                allow,
                requests,
                identify: identify::Behaviour::new(identify::Config::new(
                    agent.into(),
                    key.public(),
                )),
                ping: ping::Behaviour::default(),
            }
        })
        .map_err(|e| ClientError::Build(e.to_string()))?;
        swarm.add_peer_address(server, address.clone());
        Ok(Self {
            swarm,
            server,
            address,
            traffic,
            give_up_after,
        })
    }

    /// Bytes this client's sockets carried.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Sends `request` until it is answered, backing off while the server is away.
    pub async fn ask(&mut self, request: Req<C>) -> Result<Resp<C>, ClientError> {
        let mut backoff = FIRST_BACKOFF;
        let started = Instant::now();
        loop {
            match self.ask_once(request.clone()).await {
                Ok(response) => return Ok(response),
                Err(last) if started.elapsed() >= self.give_up_after => {
                    return Err(ClientError::Unreachable {
                        after: self.give_up_after,
                        last,
                    });
                }
                Err(failure) => {
                    warn!(%failure, retry_in = ?backoff, "server unreachable");
                    self.poll_while(tokio::time::sleep(backoff)).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Sends `request` once and waits for its answer or its failure.
    pub async fn ask_once(&mut self, request: Req<C>) -> Result<Resp<C>, OutboundFailure> {
        let mut answers = self.ask_all(vec![request]).await;
        answers.pop().expect("one answer per request")
    }

    /// Sends every request at once and waits for each answer or failure, in order.
    pub async fn ask_all(
        &mut self,
        requests: Vec<Req<C>>,
    ) -> Vec<Result<Resp<C>, OutboundFailure>> {
        self.offer_address();
        let ids: Vec<OutboundRequestId> = requests
            .into_iter()
            .map(|r| {
                self.swarm
                    .behaviour_mut()
                    .requests
                    .send_request(&self.server, r)
            })
            .collect();
        let mut answers: Vec<Option<Result<Resp<C>, OutboundFailure>>> =
            (0..ids.len()).map(|_| None).collect();
        while answers.iter().any(Option::is_none) {
            let Some((id, answer)) = self.next_answer().await else {
                continue;
            };
            if let Some(k) = ids.iter().position(|&i| i == id) {
                answers[k] = Some(answer);
            }
        }
        answers.into_iter().flatten().collect()
    }

    /// Runs `work` to completion while servicing the swarm, so connections are kept
    /// alive (pings answered, closes noticed) while the owner proves or sleeps. Answers
    /// arriving meanwhile belong to requests already given up on and are dropped.
    pub async fn poll_while<T>(&mut self, work: impl Future<Output = T>) -> T {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                event = self.swarm.select_next_some() => log_event(&event),
            }
        }
    }

    /// A failed dial drops the address from the behaviours' books: offer it again, so a
    /// client started before its server (or across a restart) keeps dialing.
    fn offer_address(&mut self) {
        if !self.swarm.is_connected(&self.server) {
            self.swarm
                .add_peer_address(self.server, self.address.clone());
        }
    }

    /// The next answer or failure of any request in flight.
    async fn next_answer(
        &mut self,
    ) -> Option<(OutboundRequestId, Result<Resp<C>, OutboundFailure>)> {
        let event = self.swarm.select_next_some().await;
        let SwarmEvent::Behaviour(ClientBehaviourEvent::Requests(event)) = event else {
            log_event(&event);
            return None;
        };
        match event {
            request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => Some((request_id, Ok(response))),
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => Some((request_id, Err(error))),
            _ => None,
        }
    }
}

fn log_event<E: Debug>(event: &SwarmEvent<E>) {
    if let SwarmEvent::OutgoingConnectionError { error, .. } = event {
        warn!(%error, "dial failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::request_response::ProtocolSupport;
    use libp2p::{StreamProtocol, Swarm};

    type Echo = request_response::cbor::Behaviour<String, String>;

    fn echo_behaviour() -> Echo {
        let config =
            request_response::Config::default().with_request_timeout(Duration::from_secs(5));
        request_response::cbor::Behaviour::new(
            [(StreamProtocol::new("/echo/1"), ProtocolSupport::Full)],
            config,
        )
    }

    /// An echo server on a fixed loopback port, answering until dropped.
    async fn serve(key: Keypair, address: Multiaddr) {
        let mut swarm: Swarm<Echo> =
            build_swarm(key, &Traffic::default(), |_| echo_behaviour()).unwrap();
        swarm.listen_on(address).unwrap();
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) = swarm.select_next_some().await
            {
                let _ = swarm.behaviour_mut().send_response(channel, request);
            }
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_started_before_its_server_is_answered_once_it_listens() {
        let server_key = Keypair::generate_ed25519();
        let server = server_key.public().to_peer_id();
        let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", free_port())
            .parse()
            .unwrap();
        let mut client = Client::<request_response::cbor::codec::Codec<String, String>>::new(
            Keypair::generate_ed25519(),
            server,
            address.clone(),
            echo_behaviour(),
            "/test/1",
            Duration::from_secs(60),
        )
        .unwrap();
        let late_server = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            serve(server_key, address).await
        });
        assert_eq!(client.ask("hello".into()).await.unwrap(), "hello");
        let answers = client
            .ask_all(vec!["a".into(), "b".into(), "c".into()])
            .await;
        let answers: Vec<String> = answers.into_iter().map(Result::unwrap).collect();
        assert_eq!(answers, ["a", "b", "c"]);
        assert!(client.traffic().sent() > 0 && client.traffic().received() > 0);
        late_server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_gives_up_on_a_server_that_never_answers() {
        let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", free_port())
            .parse()
            .unwrap();
        let mut client = Client::<request_response::cbor::codec::Codec<String, String>>::new(
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519().public().to_peer_id(),
            address,
            echo_behaviour(),
            "/test/1",
            Duration::from_millis(500),
        )
        .unwrap();
        let err = client.ask("anyone?".into()).await.unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    }
}
