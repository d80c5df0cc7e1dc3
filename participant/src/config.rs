//! Configuration in two stages: [`RawConfig`] (TOML or flags) and the resolved [`Config`].

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use zkfed_air::data::Schema;

/// The participant's TOML file, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The coordinator's multiaddr, ending in `/p2p/<peer id>`.
    pub coordinator: String,
    /// The CSV of this participant's rows (header row first).
    pub dataset: PathBuf,
    /// Directory for the node key, the salts and the commitment.
    pub state_dir: PathBuf,
    /// The columns this node agrees to train on. When set, a run that asks for any other
    /// schema is refused before a single row is read. When not, the node agrees to the
    /// run's schema at its first enrolment and pins it with the other run parameters.
    #[serde(default)]
    pub schema: Option<Schema>,
    /// Smallest batch this node proves over: an update over a tiny batch reveals rows.
    #[serde(default = "default_min_batch_size")]
    pub min_batch_size: usize,
    /// Most attempts at one round this node proves (each is another update on the same
    /// model for the coordinator to compare).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

/// The default [`RawConfig::min_batch_size`].
pub fn default_min_batch_size() -> usize {
    8
}

/// The default [`RawConfig::max_attempts`].
pub fn default_max_attempts() -> u32 {
    5
}

/// A validated, resolved configuration.
pub struct Config {
    /// Where the coordinator listens.
    pub coordinator_addr: Multiaddr,
    /// Who the coordinator is (the only peer this node talks to).
    pub coordinator: PeerId,
    /// The dataset file.
    pub dataset: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The node key.
    pub key: Keypair,
    /// The schema this node agrees to, if restricted.
    pub schema: Option<Schema>,
    /// Smallest batch this node proves over.
    pub min_batch_size: usize,
    /// Most attempts at one round this node proves.
    pub max_attempts: u32,
}

impl RawConfig {
    /// Parses a TOML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Ok(zkfed_net::load_toml(path)?)
    }

    /// Validates and loads (or creates) the node key.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let addr: Multiaddr = self
            .coordinator
            .parse()
            .with_context(|| format!("coordinator address `{}`", self.coordinator))?;
        let Some(Protocol::P2p(coordinator)) = addr.iter().last() else {
            bail!("the coordinator address must end in /p2p/<peer id>");
        };
        std::fs::create_dir_all(&self.state_dir)
            .with_context(|| format!("creating state directory {}", self.state_dir.display()))?;
        let key = zkfed_net::load_or_create_key(&self.state_dir.join("node.key"))
            .context("loading the node key")?;
        Ok(Config {
            coordinator_addr: addr,
            coordinator,
            dataset: self.dataset,
            state_dir: self.state_dir,
            key,
            schema: self.schema,
            min_batch_size: self.min_batch_size,
            max_attempts: self.max_attempts,
        })
    }
}
