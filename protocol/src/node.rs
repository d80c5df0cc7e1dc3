//! Plumbing both nodes share: the persistent node key and the transport stack.

use std::io::Write;
use std::path::Path;
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

/// Loads the node key at `path`, creating it (mode 0600) on first start.
pub fn load_or_create_key(path: &Path) -> std::io::Result<Keypair> {
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("node key {}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().expect("ed25519 keys encode");
            write_durably(path, &bytes, true)?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// The peer id of the node whose state directory is `state` (creating its key if needed).
pub fn peer_id(state: &Path) -> std::io::Result<libp2p::PeerId> {
    Ok(load_or_create_key(&state.join("node.key"))?
        .public()
        .to_peer_id())
}

/// Writes `bytes` to `path` atomically and durably (temp file, fsync, rename, fsync dir).
pub fn write_durably(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

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
                    .multiplex(yamux::Config::default()),
            )
        })?
        .with_behaviour(|key| behaviour(key))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build())
}

/// A node's events written as JSON lines, one per event, flushed as they come, so an
/// observer in another process (the simulation) can follow the node's run.
pub struct EventLog<E> {
    tx: tokio::sync::mpsc::UnboundedSender<E>,
    writer: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl<E: serde::Serialize + Send + 'static> EventLog<E> {
    /// Creates (or truncates) the file at `path`; needs a tokio runtime.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<E>();
        let writer = tokio::task::spawn_blocking(move || {
            while let Some(event) = rx.blocking_recv() {
                serde_json::to_writer(&mut file, &event).map_err(std::io::Error::other)?;
                file.write_all(b"\n")?;
                file.flush()?;
            }
            Ok(())
        });
        Ok(EventLog { tx, writer })
    }

    /// Where the node sends its events.
    pub fn sender(&self) -> tokio::sync::mpsc::UnboundedSender<E> {
        self.tx.clone()
    }

    /// Waits until every event sent so far is written (once the node has dropped its senders).
    pub async fn close(self) -> std::io::Result<()> {
        drop(self.tx);
        self.writer.await.map_err(std::io::Error::other)?
    }

    /// Runs a node with its events logged to `path`, if given: `node` receives the sender
    /// to install, and every event is written before this returns, whatever the run gave.
    pub async fn around<T, F: Future<Output = T>>(
        path: Option<&Path>,
        node: impl FnOnce(Option<tokio::sync::mpsc::UnboundedSender<E>>) -> F,
    ) -> std::io::Result<T> {
        let log = path.map(Self::create).transpose()?;
        let ran = node(log.as_ref().map(Self::sender)).await;
        if let Some(log) = log {
            log.close().await?;
        }
        Ok(ran)
    }
}

/// Logs to stderr (coloured only on a terminal), filtered by `RUST_LOG` or `default`.
pub fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .init();
}

/// A configuration file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why (with line and column).
        source: toml::de::Error,
    },
}

/// Reads and parses a TOML configuration file.
pub fn load_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: shown.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigFileError::Parse {
        path: shown,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_key_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("zkfed-key-{}", std::process::id()));
        let path = dir.join("node.key");
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_create_key(&path).unwrap();
        let second = load_or_create_key(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"garbage").unwrap();
        assert!(load_or_create_key(&path).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

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

    #[test]
    fn event_log_writes_one_json_line_per_event_and_finishes_when_senders_drop() {
        let path = std::env::temp_dir().join(format!("zkfed-events-{}", std::process::id()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ran = runtime.block_on(EventLog::around(Some(&path), |sender| async move {
            let node = sender.expect("a log was asked for");
            node.send((1u64, "one".to_string())).unwrap();
            node.send((2, "two".into())).unwrap();
            "the node's result"
        }));
        assert_eq!(ran.unwrap(), "the node's result");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "[1,\"one\"]\n[2,\"two\"]\n");
        assert!(EventLog::<u64>::create(&path.join("no-such-dir/x")).is_err());
        let unlogged = runtime.block_on(EventLog::<u64>::around(None, |sender| async move {
            sender.is_none()
        }));
        assert!(unlogged.unwrap(), "no path, no sender");
        std::fs::remove_file(path).unwrap();
    }
}
