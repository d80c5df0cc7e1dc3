//! Plumbing both nodes share: the persistent node key and the transport stack.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

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

/// A swarm over TCP + Noise + Yamux on tokio.
pub fn build_swarm<B: NetworkBehaviour>(
    key: Keypair,
    behaviour: impl FnOnce(&Keypair) -> B,
) -> Result<Swarm<B>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| behaviour(key))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build())
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
}
