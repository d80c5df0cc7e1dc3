//! Hostile hosts against the coordinator process (the `zkfed-coordinator` binary, so its
//! memory is its own): an allow-listed peer sends the largest requests the limits allow on
//! every stream of every connection it may open, over and over, and a host that is not on
//! the allow-list keeps 64 TCP sockets open without ever speaking, re-opening each one as
//! it is closed. Two honest hospitals (the participant library, as tasks) must still
//! finish the run, and the coordinator's peak resident memory (VmHWM) must stay under
//! [`PEAK_RSS_LIMIT_MIB`] (ARCHITECTURE.md, "Bounded memory").
//!
//! Needs the release binaries, which `cargo test --release --workspace` builds.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use tokio::sync::oneshot;
use zkfed_air::ClippedGradientSum;
use zkfed_participant::participation::{Outcome, StarkProver};
use zkfed_protocol::{MAX_REQUEST_BYTES, Request, Submission};

use common::{bin, free_port, participant};

/// The documented bound on the coordinator's peak resident memory under this attack
/// (ARCHITECTURE.md, "Bounded memory"; BENCH.md has the measured figure).
const PEAK_RSS_LIMIT_MIB: u64 = 160;
const WAIT: Duration = Duration::from_secs(240);
/// Sockets the silent host keeps open.
const SILENT_SOCKETS: usize = 64;

/// Requests and responses as raw bytes: the hostile peer writes what it likes.
#[derive(Debug, Clone, Default)]
struct RawBytes;

impl request_response::Codec for RawBytes {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        let mut bytes = Vec::new();
        io.take(1 << 20).read_to_end(&mut bytes).await?;
        Ok(bytes)
    }

    async fn read_response<T>(&mut self, p: &StreamProtocol, io: &mut T) -> std::io::Result<Vec<u8>>
    where
        T: futures::AsyncRead + Unpin + Send,
    {
        self.read_request(p, io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        io.write_all(&bytes).await
    }

    async fn write_response<T>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        bytes: Vec<u8>,
    ) -> std::io::Result<()>
    where
        T: futures::AsyncWrite + Unpin + Send,
    {
        self.write_request(p, io, bytes).await
    }
}

/// The three worst requests: a submission whose proof fills the request; one whose update
/// is an array of ~3 million one-byte integers (26 MiB as `i64`s if decoded); and the
/// longest update the decoder accepts, `MAX_WIRE_PARAMS` one-byte integers (128 KiB on the
/// wire, 1 MiB decoded).
fn worst_requests(features: usize) -> [Vec<u8>; 3] {
    let framing = 4 << 10;
    let full = Submission {
        round: 1,
        attempt: 1,
        update: ClippedGradientSum::zero(features),
        proof: vec![0xA5; MAX_REQUEST_BYTES as usize - framing],
    };
    let full = zkfed_protocol::encode_request(&Request::Submit(full));
    assert!(full.len() as u64 <= MAX_REQUEST_BYTES);
    let small = Submission {
        round: 1,
        attempt: 1,
        update: ClippedGradientSum::zero(2),
        proof: vec![7; 8],
    };
    let small = zkfed_protocol::encode_request(&Request::Submit(small));
    let two_zeros = [0x82, 0x00, 0x00];
    let at = small
        .windows(3)
        .position(|w| w == two_zeros)
        .expect("the weights array");
    let with_update_of = |entries: usize| {
        let mut request = small[..at].to_vec();
        request.push(0x9a);
        request.extend((entries as u32).to_be_bytes());
        request.resize(request.len() + entries, 0x00);
        request.extend(&small[at + 3..]);
        request
    };
    let bomb = with_update_of(MAX_REQUEST_BYTES as usize - framing);
    let widest = with_update_of(zkfed_air::fixed::MAX_WIRE_PARAMS);
    [full, bomb, widest]
}

/// What the hostile peer got back.
#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
}

/// Opens two connections to the coordinator (its per-peer limit) and keeps 16 worst-case
/// requests in flight on each (its per-connection stream limit), until `stop` is set.
async fn hostile_peer(
    key: Keypair,
    coordinator: PeerId,
    address: Multiaddr,
    features: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let behaviour = |_: &Keypair| {
        request_response::Behaviour::with_codec(
            RawBytes,
            [(zkfed_protocol::PROTOCOL, ProtocolSupport::Outbound)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(30))
                .with_max_concurrent_streams(64),
        )
    };
    let mut swarm = zkfed_net::build_swarm(key, &zkfed_net::Traffic::default(), behaviour).unwrap();
    let dial = || {
        DialOpts::peer_id(coordinator)
            .condition(PeerCondition::Always)
            .addresses(vec![address.clone()])
            .build()
    };
    for _ in 0..2 {
        swarm.dial(dial()).unwrap();
    }
    let requests = worst_requests(features);
    let streams = 2 * zkfed_protocol::MAX_STREAMS;
    let mut in_flight = 0usize;
    let mut connected = 0usize;
    while !stop.load(Ordering::Relaxed) {
        while connected > 0 && in_flight < streams {
            let bytes = requests[in_flight % requests.len()].clone();
            swarm.behaviour_mut().send_request(&coordinator, bytes);
            tally.sent.fetch_add(1, Ordering::Relaxed);
            in_flight += 1;
        }
        let event = tokio::time::timeout(Duration::from_millis(500), swarm.select_next_some());
        let Ok(event) = event.await else { continue };
        match event {
            SwarmEvent::ConnectionEstablished { .. } => connected += 1,
            SwarmEvent::ConnectionClosed { .. } => {
                connected = connected.saturating_sub(1);
                let _ = swarm.dial(dial());
            }
            SwarmEvent::OutgoingConnectionError { .. } => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = swarm.dial(dial());
            }
            SwarmEvent::Behaviour(request_response::Event::Message { .. }) => {
                tally.answered.fetch_add(1, Ordering::Relaxed);
                in_flight -= 1;
            }
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                in_flight -= 1;
            }
            _ => {}
        }
    }
}

/// Keeps [`SILENT_SOCKETS`] sockets from 127.0.0.2 open to `target` without sending a
/// byte, re-opening each one as soon as the coordinator closes it; returns how many
/// sockets it opened in all.
async fn silent_host(target: SocketAddr, stop: Arc<AtomicBool>) -> u64 {
    let opened = Arc::new(AtomicU64::new(0));
    let holders: Vec<_> = (0..SILENT_SOCKETS)
        .map(|_| {
            let (stop, opened) = (stop.clone(), opened.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                    let Ok(stream) = socket.connect(target).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    // Hold it until the coordinator closes it (or the test ends).
                    let mut byte = [0u8; 1024];
                    while !stop.load(Ordering::Relaxed) {
                        let ready =
                            tokio::time::timeout(Duration::from_millis(200), stream.readable());
                        match ready.await {
                            Err(_) => continue,
                            Ok(Err(_)) => break,
                            Ok(Ok(())) => match stream.try_read(&mut byte) {
                                Ok(0) => break,
                                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break,
                                _ => {}
                            },
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
        .collect();
    for holder in holders {
        let _ = holder.await;
    }
    opened.load(Ordering::Relaxed)
}

/// The highest VmHWM (peak resident set, KiB) read from `/proc/PID/status` until the
/// process exits.
fn watch_peak_rss(pid: u32) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        let path = format!("/proc/{pid}/status");
        while let Ok(status) = std::fs::read_to_string(&path) {
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            match hwm {
                Some(kib) => peak = peak.max(kib),
                None => break, // a zombie has no memory lines left
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    })
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < WAIT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills the child when dropped (a failed assertion must not leave it running).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_hospitals_finish_while_hostile_hosts_do_their_worst() {
    let dir = std::env::temp_dir().join(format!("zkfed-hostile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let coordinator_state = dir.join("coordinator");
    let coordinator_peer = zkfed_net::peer_id(&coordinator_state).unwrap();
    let port = free_port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let address = format!("{listen}/p2p/{coordinator_peer}");
    let a = participant(&dir, "a", (0, 2), &address);
    let b = participant(&dir, "b", (1, 2), &address);
    let hostile_key = Keypair::generate_ed25519();
    let allow = [&a.key, &b.key, &hostile_key]
        .map(|k| k.public().to_peer_id().to_string())
        .to_vec();
    let mut raw = zkfed_coordinator::starter::bundled_config(
        coordinator_state,
        allow,
        listen.clone(),
        2,
        Some(2),
    );
    raw.round_deadline_secs = 60;
    raw.batch_size = 8;
    raw.linger_secs = 3;
    let features = raw.schema.features.len();
    let config_path = dir.join("coordinator.toml");
    std::fs::write(&config_path, toml::to_string(&raw).unwrap()).unwrap();
    let log = std::fs::File::create(dir.join("coordinator.log")).unwrap();
    let child = Command::new(bin("zkfed-coordinator"))
        .args(["run", "--config", config_path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let peak = watch_peak_rss(child.id());
    let mut coordinator = Reaped(child);
    wait_until("the coordinator listens", || {
        std::fs::read_to_string(dir.join("coordinator.log")).is_ok_and(|l| l.contains("listening"))
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let silent = tokio::spawn(silent_host(target, stop.clone()));
    let hostile = tokio::spawn(hostile_peer(
        hostile_key,
        coordinator_peer,
        listen.parse().unwrap(),
        features,
        stop.clone(),
        tally.clone(),
    ));
    // Both attackers are at work before the hospitals connect.
    wait_until("the hostile peer has every stream busy", || {
        tally.sent.load(Ordering::Relaxed) >= 2 * zkfed_protocol::MAX_STREAMS as u64
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let runs: Vec<_> = [a, b]
        .into_iter()
        .map(|config| {
            let (_stop, stopped) = oneshot::channel::<()>();
            let run = zkfed_participant::participation::run(
                config,
                None,
                Arc::new(StarkProver),
                async move {
                    let _ = stopped.await;
                },
            );
            (_stop, tokio::spawn(run))
        })
        .collect();
    for (name, (_stop, run)) in ["A", "B"].into_iter().zip(runs) {
        let outcome: Outcome = tokio::time::timeout(WAIT, run)
            .await
            .unwrap_or_else(|_| panic!("hospital {name} did not finish under attack"))
            .unwrap()
            .unwrap()
            .expect("the run ended, not a shutdown");
        assert_eq!(outcome.rounds, 2, "hospital {name}");
        assert_eq!(outcome.accepted, 2, "hospital {name}: {outcome:?}");
    }
    stop.store(true, Ordering::Relaxed);
    let opened = silent.await.unwrap();
    hostile.await.unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let status = coordinator.0.wait();
        (coordinator, status)
    })
    .await
    .unwrap()
    .1
    .unwrap();
    assert!(status.success(), "the coordinator exited with {status}");
    let peak_mib = peak.join().unwrap() / 1024;

    let sent = tally.sent.load(Ordering::Relaxed);
    println!(
        "hostile peer: {sent} worst-case requests sent, {} answered, {} failed; silent host \
         opened {opened} sockets; coordinator peak RSS {peak_mib} MiB",
        tally.answered.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    assert!(sent >= 64, "the hostile peer kept its streams busy: {sent}");
    assert!(
        opened > SILENT_SOCKETS as u64,
        "the silent host's sockets were closed and re-opened: {opened}"
    );
    assert!(
        peak_mib < PEAK_RSS_LIMIT_MIB,
        "coordinator peak RSS {peak_mib} MiB, documented bound {PEAK_RSS_LIMIT_MIB} MiB"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The codec's per-connection budget on real libp2p connections: the behaviour clones its
/// codec once per connection and the connection's once per stream, so four whole
/// submissions sent at once on one connection cannot all be held; once the held ones
/// are answered, the connection reads a whole submission again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_cannot_hold_more_than_its_budget() {
    let server_key = Keypair::generate_ed25519();
    let server = server_key.public().to_peer_id();
    let mut swarm = zkfed_net::build_swarm(server_key, &zkfed_net::Traffic::default(), |_| {
        zkfed_protocol::request_response_behaviour()
    })
    .unwrap();
    let listen: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", free_port())
        .parse()
        .unwrap();
    swarm.listen_on(listen.clone()).unwrap();
    let (held_tx, mut held_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let (answer_tx, mut answer_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // The server holds every request it reads until told to answer them all.
    let serving = tokio::spawn(async move {
        let mut channels = Vec::new();
        loop {
            tokio::select! {
                event = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Request { channel, .. },
                        ..
                    }) = event
                    {
                        channels.push(channel);
                        let _ = held_tx.send(channels.len());
                    }
                }
                Some(()) = answer_rx.recv() => {
                    for channel in channels.drain(..) {
                        let _ = swarm
                            .behaviour_mut()
                            .send_response(channel, zkfed_protocol::Response::Waiting);
                    }
                }
            }
        }
    });

    let mut client = zkfed_net::build_swarm(
        Keypair::generate_ed25519(),
        &zkfed_net::Traffic::default(),
        |_| {
            request_response::Behaviour::with_codec(
                RawBytes,
                [(zkfed_protocol::PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(10))
                    .with_max_concurrent_streams(16),
            )
        },
    )
    .unwrap();
    client.add_peer_address(server, listen);
    let [whole, _, _] = worst_requests(30);
    let outcomes = |n: usize| {
        for _ in 0..n {
            client.behaviour_mut().send_request(&server, whole.clone());
        }
        async move {
            let (mut answered, mut failed) = (0, 0);
            while answered + failed < n {
                match client.select_next_some().await {
                    SwarmEvent::Behaviour(request_response::Event::Message { .. }) => answered += 1,
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
                        failed += 1
                    }
                    _ => {}
                }
            }
            (client, answered, failed)
        }
    };
    let first = tokio::spawn(outcomes(4));
    // Let every stream be read (or refused) before answering the held ones.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut held = 0;
    while let Ok(n) = held_rx.try_recv() {
        held = n;
    }
    assert!(
        held <= 2,
        "one connection held {held} whole submissions at once"
    );
    answer_tx.send(()).unwrap();
    let (mut client, answered, failed) = tokio::time::timeout(WAIT, first).await.unwrap().unwrap();
    assert_eq!(answered, held);
    assert_eq!(failed, 4 - held, "the others failed on the wire");

    client
        .behaviour_mut()
        .send_request(&server, worst_requests(30)[0].clone());
    let polling = tokio::spawn(async move {
        loop {
            client.select_next_some().await;
        }
    });
    let next = tokio::time::timeout(WAIT, held_rx.recv()).await.unwrap();
    assert_eq!(
        next,
        Some(1),
        "the budget came back: a whole submission is read again"
    );
    serving.abort();
    polling.abort();
}
