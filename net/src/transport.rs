//! The transport stack (TCP + Noise + Yamux on tokio) with socket byte counting.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::Transport;
use libp2p::core::upgrade;
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Swarm, SwarmBuilder, noise, tcp, yamux};

/// Connections with no traffic close after this long; nodes redial when they need to.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection must finish its TCP, Noise and Yamux set-up within this long: a few round
/// trips even across continents, and short enough that a host holding sockets open
/// without speaking cannot keep handshake slots for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Streams one connection may have open at once, counting those still negotiating their
/// protocol: yamux buffers up to 256 KiB for each stream before anyone reads it, so this
/// bounds what a peer can park in a connection's buffers (24 × 256 KiB = 6 MiB) outside
/// the codec's budgets. Above the request-response protocol's 16 streams, with room for
/// identify and ping.
pub const MAX_STREAMS_PER_CONNECTION: usize = 24;

/// Bytes a node has sent and received on all its TCP connections, counted on the socket
/// (Noise and Yamux framing included), since the swarm was built.
#[derive(Debug, Clone, Default)]
pub struct Traffic(Arc<TrafficCounters>);

#[derive(Debug, Default)]
struct TrafficCounters {
    sent: AtomicU64,
    received: AtomicU64,
}

impl Traffic {
    /// Bytes written to sockets so far.
    pub fn sent(&self) -> u64 {
        self.0.sent.load(Ordering::Relaxed)
    }

    /// Bytes read from sockets so far.
    pub fn received(&self) -> u64 {
        self.0.received.load(Ordering::Relaxed)
    }
}

/// A socket that adds what passes through it to a [`Traffic`].
struct Counted<S> {
    inner: S,
    traffic: Traffic,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.traffic
                .0
                .received
                .fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.traffic.0.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(MAX_STREAMS_PER_CONNECTION);
    config
}

/// A swarm over TCP + Noise + Yamux on tokio whose socket bytes are added to `traffic`.
pub fn build_swarm<B: NetworkBehaviour>(
    key: Keypair,
    traffic: &Traffic,
    behaviour: impl FnOnce(&Keypair) -> B,
) -> Result<Swarm<B>, Box<dyn std::error::Error + Send + Sync>> {
    let traffic = traffic.clone();
    Ok(SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| {
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                    .map(move |inner, _| Counted { inner, traffic })
                    .upgrade(upgrade::Version::V1)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux_config()),
            )
        })?
        .with_behaviour(|key| behaviour(key))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(IDLE_TIMEOUT)
                .with_max_negotiating_inbound_streams(MAX_STREAMS_PER_CONNECTION)
        })
        .with_connection_timeout(HANDSHAKE_TIMEOUT)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_sockets_add_what_passes_through_them() {
        use futures::io::{AsyncReadExt, AsyncWriteExt, Cursor};
        let traffic = Traffic::default();
        let mut socket = Counted {
            inner: Cursor::new(vec![7u8; 100]),
            traffic: traffic.clone(),
        };
        futures::executor::block_on(async {
            let mut buf = [0u8; 30];
            socket.read_exact(&mut buf).await.unwrap();
            socket.write_all(&[1u8; 12]).await.unwrap();
        });
        assert_eq!(traffic.received(), 30);
        assert_eq!(traffic.sent(), 12);
    }
}
