//! Configuration in two stages: [`RawConfig`] (TOML or flags) and the resolved [`Config`].

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
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
    /// Directory for the node key (shared) and, one directory per federation, each run's
    /// salts, commitment, pinned parameters and progress.
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
    /// Leave data rows whose standardized values fall outside the range the proof covers
    /// (±32 standard deviations under the run's statistics) out of the commitment, with
    /// their count logged. When not set, such rows stop the node with an error naming them.
    #[serde(default)]
    pub skip_out_of_range: bool,
    /// The federation (64 hex digits, from the coordinator's `init`) this node takes part
    /// in. When set, any other run is refused before a row is read. When not, the node
    /// takes part in the first federation it enrols in and refuses every other: a
    /// coordinator that announced fresh federations would otherwise get fresh pins, fresh
    /// commitments and fresh proof budgets at will. Set it to run a second federation
    /// from the same state directory.
    #[serde(default)]
    pub federation_id: Option<String>,
    /// Largest proof trace (rows × columns) this node builds: bounds the memory a run's
    /// parameters can make it use, in committed main cells over all tables (2^22 cells ≈
    /// 2.3 GiB at peak for logistic regression, about 560 bytes per cell at blowup 16;
    /// d = 256, B = 256 needs 3.0 M; an MLP's tables carry more LogUp columns, about 1 KiB
    /// per cell, so up to about 4 GiB: the 784 → 128 → 10 MLP's 2.27 M cells took 2.3 GiB,
    /// BENCH.md).
    #[serde(default = "default_max_trace_cells")]
    pub max_trace_cells: u64,
    /// Take part in private runs only (hidden sampling, noise, a budget: README,
    /// "Privacy"): a run without them is refused before a row is read.
    #[serde(default)]
    pub private_only: bool,
    /// This node's own privacy budget: a private run whose target ε is higher is refused at
    /// enrolment and at every start. In the runs it takes part in, the node stops letting its
    /// rows be sampled once one more attempt would spend more than the run's ε, counting
    /// the attempts itself.
    #[serde(default)]
    pub max_epsilon: Option<f64>,
}

/// The default [`RawConfig::max_trace_cells`].
pub fn default_max_trace_cells() -> u64 {
    1 << 22
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
    /// Leave rows out of range out of the commitment instead of refusing to start.
    pub skip_out_of_range: bool,
    /// The only federation this node takes part in, if named.
    pub federation_id: Option<[u8; 32]>,
    /// Largest proof trace this node builds.
    pub max_trace_cells: u64,
    /// Take part in private runs only.
    pub private_only: bool,
    /// This node's own privacy budget, if any.
    pub max_epsilon: Option<f64>,
}

impl Config {
    /// Where this node keeps one federation's files (pinned run parameters, salts and
    /// commitment, progress, final model): a directory named by the federation id in hex,
    /// so one state directory can serve several runs. The node key stays at the top, shared.
    pub fn run_dir(&self, federation_id: &[u8; 32]) -> PathBuf {
        self.state_dir.join(zkfed_net::hex::hex32(federation_id))
    }
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
        // Zero would refuse every attempt of every round while still enrolling.
        ensure!(self.max_attempts >= 1, "`max_attempts` must be at least 1");
        if let Some(e) = self.max_epsilon {
            ensure!(
                e.is_finite() && e > 0.0,
                "`max_epsilon` must be positive and finite, not {e}"
            );
        }
        let federation_id = self
            .federation_id
            .as_deref()
            .map(zkfed_net::hex::parse_hex32)
            .transpose()
            .context("`federation_id`")?;
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
            skip_out_of_range: self.skip_out_of_range,
            federation_id,
            max_trace_cells: self.max_trace_cells,
            private_only: self.private_only,
            max_epsilon: self.max_epsilon,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(dir: &Path) -> RawConfig {
        let peer = Keypair::generate_ed25519().public().to_peer_id();
        RawConfig {
            coordinator: format!("/ip4/127.0.0.1/tcp/7000/p2p/{peer}"),
            dataset: dir.join("rows.csv"),
            state_dir: dir.join("state"),
            schema: None,
            min_batch_size: default_min_batch_size(),
            max_attempts: default_max_attempts(),
            skip_out_of_range: false,
            federation_id: None,
            max_trace_cells: default_max_trace_cells(),
            private_only: false,
            max_epsilon: None,
        }
    }

    #[test]
    fn odd_input_is_an_error_never_a_panic() {
        let dir = std::env::temp_dir().join(format!("zkfed-pcfg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for address in [
            "",
            "é",
            "/ip4/127.0.0.1/tcp/7000/p2p/12D3KooW€€€",
            "/ip4/127.0.0.1/tcp/7000/p2p/",
            "/ip4/127.0.0.1/tcp/7000",
            "/ip4/1.2.3.4.5/tcp/1",
            "/ip4/127.0.0.1/tcp/99999/p2p/x",
        ] {
            let config = RawConfig {
                coordinator: address.into(),
                ..raw(&dir)
            };
            assert!(config.resolve().is_err(), "`{address}` accepted");
        }
        let err = RawConfig {
            max_attempts: 0,
            ..raw(&dir)
        }
        .resolve()
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("`max_attempts`"), "{err}");
        for e in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = RawConfig {
                max_epsilon: Some(e),
                ..raw(&dir)
            }
            .resolve()
            .err()
            .unwrap()
            .to_string();
            assert!(err.contains("`max_epsilon`"), "{err}");
        }
        for id in ["abc", "é", &"zz".repeat(32)] {
            let err = RawConfig {
                federation_id: Some(id.into()),
                ..raw(&dir)
            }
            .resolve()
            .err()
            .unwrap()
            .to_string();
            assert!(err.contains("`federation_id`"), "{err}");
        }
        assert!(
            !dir.exists(),
            "nothing is written for a refused configuration"
        );
        let config = raw(&dir).resolve().unwrap();
        assert!(!config.skip_out_of_range);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn skipping_out_of_range_rows_is_a_configuration_key() {
        let dir = std::env::temp_dir().join(format!("zkfed-pcfg-toml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("participant.toml");
        let text = "coordinator = \"/ip4/127.0.0.1/tcp/1\"\ndataset = \"a.csv\"\n\
                    state_dir = \"s\"\nskip_out_of_range = true\n";
        std::fs::write(&file, text).unwrap();
        assert!(RawConfig::load(&file).unwrap().skip_out_of_range);
        std::fs::write(&file, text.replace("skip_out_of_range = true\n", "")).unwrap();
        assert!(
            !RawConfig::load(&file).unwrap().skip_out_of_range,
            "off unless asked for"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
