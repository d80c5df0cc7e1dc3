//! Configuration in two stages: [`RawConfig`] is only parsed (TOML); [`Config`] is
//! validated and resolved (addresses parsed, key loaded, run configuration built).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use zkfed_air::RoundParams;
use zkfed_air::data::{Schema, Standardization};
use zkfed_air::fixed::quantize;
use zkfed_protocol::RunParameters;

use crate::events::RunConfig;

/// The coordinator's TOML file, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/7000`.
    pub listen: Vec<String>,
    /// Peer ids of the participants allowed to connect.
    pub allow: Vec<String>,
    /// Run identifier, 64 hex digits (`zkfed-coordinator init` generates one).
    pub federation_id: String,
    /// Rounds to complete.
    pub rounds: u64,
    /// Minimum accepted updates for a round to be aggregated.
    pub quorum: usize,
    /// Seconds a round stays open.
    pub round_deadline_secs: u64,
    /// Attempts at one round before the run ends as failed (participants refuse more than
    /// their own limit, 5 by default).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Per-example L2 clip norm.
    pub clip_norm: f64,
    /// Examples per participant per round.
    pub batch_size: usize,
    /// FedAvg learning rate.
    pub learning_rate: f64,
    /// Directory for the node key and the state store.
    pub state_dir: PathBuf,
    /// Seconds to keep answering after the last round, so participants learn the run ended.
    #[serde(default = "default_linger")]
    pub linger_secs: u64,
    /// Feature and label columns.
    pub schema: Schema,
    /// Public standardization statistics (one mean and std per feature).
    pub standardization: Standardization,
}

fn default_max_attempts() -> u32 {
    5
}

fn default_linger() -> u64 {
    20
}

/// A validated, resolved configuration.
pub struct Config {
    /// Where to listen.
    pub listen: Vec<Multiaddr>,
    /// Who may connect.
    pub allow: Vec<PeerId>,
    /// The node key.
    pub key: Keypair,
    /// The state store file.
    pub store: PathBuf,
    /// What the run is.
    pub run: RunConfig,
    /// Seconds to keep answering after the run.
    pub linger_secs: u64,
}

impl RawConfig {
    /// Parses a TOML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Ok(zkfed_net::load_toml(path)?)
    }

    /// Validates every field and loads (or creates) the node key.
    pub fn resolve(self) -> anyhow::Result<Config> {
        ensure!(
            !self.listen.is_empty(),
            "`listen` needs at least one address"
        );
        let listen = self
            .listen
            .iter()
            .map(|a| a.parse().with_context(|| format!("listen address `{a}`")))
            .collect::<anyhow::Result<Vec<Multiaddr>>>()?;
        let allow = self
            .allow
            .iter()
            .map(|p| {
                p.parse()
                    .with_context(|| format!("allow-list entry `{p}` is not a peer id"))
            })
            .collect::<anyhow::Result<Vec<PeerId>>>()?;
        ensure!(self.rounds >= 1, "`rounds` must be at least 1");
        ensure!(self.quorum >= 1, "`quorum` must be at least 1");
        ensure!(
            self.quorum <= allow.len(),
            "`quorum` ({}) exceeds the allow-list ({} peers)",
            self.quorum,
            allow.len()
        );
        ensure!(self.max_attempts >= 1, "`max_attempts` must be at least 1");
        ensure!(
            self.round_deadline_secs >= 1,
            "`round_deadline_secs` must be at least 1"
        );
        ensure!(
            self.learning_rate > 0.0 && self.learning_rate < 256.0,
            "`learning_rate` must be in (0, 256)"
        );
        // A FedAvg step moves each parameter by at most learning_rate × clip_norm (the mean
        // of clipped gradients has norm ≤ C), so this keeps one honest round a small part
        // of the model's ±256 range; a run that still drifts out has the attempt abandoned
        // with its reason, never the coordinator stopped (ARCHITECTURE.md, rounds).
        ensure!(
            self.learning_rate * self.clip_norm <= MAX_STEP,
            "`learning_rate` × `clip_norm` is {}, at most {MAX_STEP} is allowed",
            self.learning_rate * self.clip_norm
        );
        let params = RoundParams {
            clip_norm: quantize(self.clip_norm),
            batch_size: self.batch_size,
        };
        params.validate().context("round parameters")?;
        let d = self.schema.features.len();
        ensure!(d >= 1, "the schema needs at least one feature column");
        ensure!(
            self.standardization.mean.len() == d && self.standardization.std.len() == d,
            "standardization must give one mean and one std per feature ({d})"
        );
        let federation_id = parse_hex32(&self.federation_id).context("`federation_id`")?;
        std::fs::create_dir_all(&self.state_dir)
            .with_context(|| format!("creating state directory {}", self.state_dir.display()))?;
        let key = zkfed_net::load_or_create_key(&self.state_dir.join("node.key"))
            .context("loading the node key")?;
        let run = RunConfig {
            public: RunParameters {
                federation_id,
                schema: self.schema,
                standardization: self.standardization,
                rounds: self.rounds,
                params,
                learning_rate: quantize(self.learning_rate),
            },
            coordinator_key: key.public().encode_protobuf(),
            allow_list: allow.iter().map(|p| p.to_bytes()).collect(),
            quorum: self.quorum,
            round_deadline_secs: self.round_deadline_secs,
            max_attempts: self.max_attempts,
        };
        Ok(Config {
            listen,
            allow,
            key,
            store: self.state_dir.join("state.redb"),
            run,
            linger_secs: self.linger_secs,
        })
    }
}

/// Largest `learning_rate × clip_norm`: the most one FedAvg step may move a parameter.
pub const MAX_STEP: f64 = 16.0;

/// Parses 64 hex digits.
pub fn parse_hex32(s: &str) -> anyhow::Result<[u8; 32]> {
    if s.len() != 64 {
        bail!("expected 64 hex digits, got {} characters", s.len());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).context("not hexadecimal")?;
    }
    Ok(out)
}

/// Formats 32 bytes as 64 hex digits.
pub fn hex32(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_that_could_leave_the_model_range_is_refused() {
        let dir = std::env::temp_dir().join(format!("zkfed-cfg-{}", std::process::id()));
        let peer = Keypair::generate_ed25519()
            .public()
            .to_peer_id()
            .to_string();
        let mut raw = crate::starter::bundled_config(
            dir.clone(),
            vec![peer],
            "/ip4/127.0.0.1/tcp/0".into(),
            1,
            None,
        );
        raw.learning_rate = 8.0;
        raw.clip_norm = 2.0;
        assert!(raw.clone().resolve().is_ok());
        raw.clip_norm = 2.5;
        let err = raw.resolve().err().unwrap().to_string();
        assert!(err.contains("clip_norm"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let bytes = [0xab; 32];
        assert_eq!(parse_hex32(&hex32(&bytes)).unwrap(), bytes);
        assert!(parse_hex32("abc").is_err());
        assert!(parse_hex32(&"zz".repeat(32)).is_err());
    }
}
