//! The ground floor the node binaries and the simulation stand on, below the wire
//! protocol: the persistent node key and durable file writes ([`key`]), the transport stack
//! with socket byte counting ([`transport`]), a request client that rides out an
//! unreachable server ([`client`]), JSON-lines event logs ([`events`]) and the binaries'
//! logging and configuration-file set-up ([`setup`]). Nothing here knows zkfed's messages:
//! the client is generic over them.

pub mod client;
pub mod events;
pub mod hex;
pub mod key;
pub mod pending;
pub mod setup;
pub mod transport;

pub use client::{Client, ClientError, Wire};
pub use events::EventLog;
pub use key::{load_or_create_key, peer_id, write_durably};
pub use pending::{MAX_PENDING_PER_IP, PendingPerIp};
pub use setup::{ConfigFileError, init_logging, load_toml};
pub use transport::{
    HANDSHAKE_TIMEOUT, IDLE_TIMEOUT, MAX_STREAMS_PER_CONNECTION, Traffic, build_swarm,
};
