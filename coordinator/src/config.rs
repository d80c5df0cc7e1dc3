//! Configuration in two stages: [`RawConfig`] is only parsed (TOML); [`Config`] is
//! validated and resolved (addresses parsed, key loaded, run configuration built).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use zkfed_aggregation::strategy::{Strategy, is_mean_based};
use zkfed_air::RoundParams;
use zkfed_air::data::{Schema, Standardization};
use zkfed_air::fixed::{MAX_BATCH, ONE, PARAM_BOUND, dequantize, quantize};
use zkfed_air::sampling::SamplingRate;
use zkfed_air::spec::ModelSpec;
use zkfed_protocol::check_model;
use zkfed_protocol::{Privacy, RunParameters};

use crate::events::RunConfig;
use crate::privacy::{NoiseKey, affordable_rounds};

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
    /// Learning rate of every strategy but the adaptive ones (which take `eta`).
    pub learning_rate: f64,
    /// How accepted updates become the next model: `fedavg` (the default), `fedavgm`,
    /// `fedadagrad`, `fedadam`, `fedyogi`, `median`, `trimmed-mean`, `krum` or
    /// `multi-krum`, with `:KEY=VALUE,...` hyper-parameters (README, "Aggregation
    /// strategies").
    #[serde(default = "default_strategy")]
    pub strategy: String,
    /// Directory for the node key and the state store.
    pub state_dir: PathBuf,
    /// Seconds to keep answering after the last round, so participants learn the run ended.
    #[serde(default = "default_linger")]
    pub linger_secs: u64,
    /// Feature and label columns.
    pub schema: Schema,
    /// The model: `logistic` (the default), `softmax`, or `mlp:H`; its outputs follow the
    /// schema's label classes.
    #[serde(default = "default_model")]
    pub model: String,
    /// Public standardization statistics (one mean and std per feature).
    pub standardization: Standardization,
    /// Differential privacy (README, "Privacy"): hidden Poisson sampling, noise and a
    /// budget; absent for a run with public batches and no noise.
    #[serde(default)]
    pub privacy: Option<RawPrivacy>,
}

/// The `[privacy]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivacy {
    /// `z`: the noise's standard deviation over the clip norm.
    pub noise_multiplier: f64,
    /// Each committed row's probability of being in a round's batch (rounded down to a
    /// multiple of 2^-32).
    pub sampling_rate: f64,
    /// The run's target ε: no round starts that would spend more.
    pub epsilon: f64,
    /// The run's δ.
    #[serde(default = "default_delta")]
    pub delta: f64,
}

fn default_delta() -> f64 {
    1e-5
}

fn default_max_attempts() -> u32 {
    5
}

fn default_linger() -> u64 {
    20
}

fn default_model() -> String {
    "logistic".into()
}

fn default_strategy() -> String {
    "fedavg".into()
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
    /// A private run's secret noise key (`noise.key` in the state directory).
    pub noise: Option<NoiseKey>,
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
        // Every check runs before anything is written, and each error names its key.
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = allow.iter().find(|p| !seen.insert(**p)) {
            bail!("allow-list entry `{twice}` is listed twice (the quorum counts peers)");
        }
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
        let (params, learning_rate) = self.round_parameters()?;
        let strategy = self.strategy(allow.len())?;
        let model = self.model_spec()?;
        self.check_verifier_memory(model, params.batch_size)?;
        self.check_standardization()?;
        let federation_id = parse_hex32(&self.federation_id).context("`federation_id`")?;
        let privacy = self.privacy(&params, model, strategy)?;
        std::fs::create_dir_all(&self.state_dir)
            .with_context(|| format!("creating state directory {}", self.state_dir.display()))?;
        let key = zkfed_net::load_or_create_key(&self.state_dir.join("node.key"))
            .context("loading the node key")?;
        let noise = match privacy {
            Some(_) => Some(NoiseKey::load_or_create(&self.state_dir.join("noise.key"))?),
            None => None,
        };
        let run = RunConfig {
            public: RunParameters {
                federation_id,
                schema: self.schema,
                model,
                standardization: self.standardization,
                rounds: self.rounds,
                params,
                learning_rate,
                strategy,
                privacy,
            },
            coordinator_key: key.public().encode_protobuf(),
            allow_list: allow.iter().map(|p| p.to_bytes()).collect(),
            quorum: self.quorum,
            round_deadline_secs: self.round_deadline_secs,
            max_attempts: self.max_attempts,
            noise_key_commitment: noise.as_ref().map(NoiseKey::commitment),
        };
        Ok(Config {
            listen,
            allow,
            key,
            store: self.state_dir.join("state.redb"),
            run,
            linger_secs: self.linger_secs,
            noise,
        })
    }
}

impl RawConfig {
    /// The `[privacy]` table checked against the run: its ranges, a mean-based strategy,
    /// noise the sampler takes, and a budget that allows at least one round.
    fn privacy(
        &self,
        params: &RoundParams,
        model: ModelSpec,
        strategy: Strategy,
    ) -> anyhow::Result<Option<Privacy>> {
        let Some(raw) = &self.privacy else {
            return Ok(None);
        };
        let sampling =
            SamplingRate::from_probability(raw.sampling_rate).context("`privacy.sampling_rate`")?;
        let privacy = Privacy {
            sampling,
            noise_multiplier: raw.noise_multiplier,
            epsilon: raw.epsilon,
            delta: raw.delta,
        };
        privacy.validate().context("`[privacy]`")?;
        ensure!(
            is_mean_based(strategy),
            "`strategy` {strategy} needs each participant's update; a private run adds noise \
             to the sum, so it takes fedavg, fedavgm, fedadagrad, fedadam or fedyogi"
        );
        let public = RunParameters {
            federation_id: [0; 32],
            schema: self.schema.clone(),
            model,
            standardization: self.standardization.clone(),
            rounds: self.rounds,
            params: *params,
            learning_rate: 0,
            strategy,
            privacy: Some(privacy),
        };
        crate::privacy::variance(&public, &privacy).with_context(|| {
            format!(
                "`privacy.noise_multiplier` × `clip_norm` is above {} (the sampler's limit)",
                zkfed_aggregation::noise::MAX_SIGMA as f64 / ONE as f64
            )
        })?;
        let affordable = affordable_rounds(&public, &privacy, privacy.epsilon, self.rounds)
            .context("accounting the `[privacy]` budget")?;
        ensure!(
            affordable >= 1,
            "the privacy budget ε = {} allows no round at this noise and sampling rate \
             (`zkfed-coordinator dp plan` gives the noise a budget needs)",
            raw.epsilon
        );
        if affordable < self.rounds {
            tracing::warn!(
                affordable,
                rounds = self.rounds,
                "the privacy budget ends the run before its last round"
            );
        }
        Ok(Some(privacy))
    }

    /// The round parameters and the learning rate in fixed point, within what the proof
    /// and the model's range accept.
    fn round_parameters(&self) -> anyhow::Result<(RoundParams, i64)> {
        let bound = dequantize(PARAM_BOUND);
        let smallest = dequantize(1);
        // Fixed point rounds to 2^-16: a positive value below half of that would be zero.
        ensure!(
            self.clip_norm.is_finite() && quantize(self.clip_norm) >= 1 && self.clip_norm < bound,
            "`clip_norm` is {}; it must be at least {smallest} (2^-16) and below {bound}",
            self.clip_norm
        );
        ensure!(
            (1..=MAX_BATCH).contains(&self.batch_size),
            "`batch_size` is {}; it must be 1 to {MAX_BATCH}",
            self.batch_size
        );
        ensure!(
            self.learning_rate.is_finite()
                && quantize(self.learning_rate) >= 1
                && self.learning_rate < bound,
            "`learning_rate` is {}; it must be at least {smallest} (2^-16) and below {bound}",
            self.learning_rate
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
        Ok((params, quantize(self.learning_rate)))
    }

    /// The strategy, able to aggregate any count of accepted updates from the quorum to the
    /// whole allow-list (`peers`), and with steps within [`MAX_STEP`].
    fn strategy(&self, peers: usize) -> anyhow::Result<Strategy> {
        let strategy = Strategy::parse(&self.strategy)
            .map_err(anyhow::Error::msg)
            .context("`strategy`")?;
        if let Err(e) = strategy.admits_from(self.quorum, peers) {
            bail!(
                "`strategy` {strategy} with `quorum` {} and {peers} allowed peers: {e}; raise the \
                 quorum or change the strategy's parameters",
                self.quorum
            );
        }
        let step = strategy.largest_step(quantize(self.learning_rate), quantize(self.clip_norm));
        ensure!(
            step <= MAX_STEP,
            "`strategy` {strategy}: one round may move a parameter by up to {step:.2} (with \
             `learning_rate` and `clip_norm`), at most {MAX_STEP} is allowed"
        );
        Ok(strategy)
    }

    /// Between 1 and `MAX_FEATURES` distinct feature columns and a label column apart from
    /// them (a name is matched against the CSV header with surrounding spaces trimmed), and
    /// a model that predicts the label's classes and that the proof covers.
    fn model_spec(&self) -> anyhow::Result<ModelSpec> {
        self.schema.validate().context("`schema`")?;
        let spec = ModelSpec::parse(&self.model, self.schema.classes)
            .map_err(anyhow::Error::msg)
            .context("`model`")?;
        check_model(&spec, &self.schema).context("`model`")?;
        Ok(spec)
    }

    /// The periodic columns a proof of this run makes the verifier build, at the deepest
    /// tree a participant may declare (`MAX_ROWS` rows), within `MAX_PERIODIC_CELLS`.
    fn check_verifier_memory(&self, model: ModelSpec, batch: usize) -> anyhow::Result<()> {
        use zkfed_air::engine::MAX_PERIODIC_CELLS;
        let d = self.schema.features.len();
        zkfed_protocol::check_verifier_memory(model, d, batch).map_err(|cells| {
            anyhow::anyhow!(
                "`model` and `batch_size`: verifying one proof could build {cells} periodic \
                 cells (participants may declare up to 2^32 rows), above {MAX_PERIODIC_CELLS}; \
                 use a smaller batch, fewer classes or fewer hidden units"
            )
        })
    }

    /// One finite mean and one finite, positive standard deviation per feature: a
    /// participant divides by the deviation, and every row it commits is measured by them.
    fn check_standardization(&self) -> anyhow::Result<()> {
        self.standardization
            .check(&self.schema)
            .context("`standardization`")
    }
}

pub use zkfed_aggregation::strategy::MAX_STEP;

pub use zkfed_net::hex::{hex32, parse_hex32};

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
        assert_eq!(parse_hex32(&"AB".repeat(32)).unwrap(), bytes);
        assert!(parse_hex32("abc").is_err());
        assert!(parse_hex32(&"zz".repeat(32)).is_err());
        assert!(parse_hex32("").is_err());
        // 64 bytes with multi-byte characters: slicing at byte 2i used to panic here.
        let odd = format!("é{}", "a".repeat(62));
        assert_eq!(odd.len(), 64);
        let err = parse_hex32(&odd).unwrap_err().to_string();
        assert!(err.contains("63 characters"), "{err}");
        assert!(parse_hex32(&format!("a{}", "€".repeat(21))).is_err());
        assert!(parse_hex32(&"🦀".repeat(16)).is_err());
        // from_str_radix takes a sign: "+a" is not two hex digits.
        let err = parse_hex32(&"+a".repeat(32)).unwrap_err().to_string();
        assert!(err.contains("character 1 is not a hex digit"), "{err}");
        assert!(parse_hex32(&format!("{} ", "a".repeat(63))).is_err());
    }

    /// Each rule of `resolve`, broken alone on an otherwise valid configuration: refused,
    /// the error names the key, and nothing is written (not even the state directory).
    #[test]
    fn every_rule_is_checked_before_anything_is_written() {
        let dir = std::env::temp_dir().join(format!("zkfed-cfg-rules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let peers: Vec<String> = (0..2)
            .map(|_| {
                Keypair::generate_ed25519()
                    .public()
                    .to_peer_id()
                    .to_string()
            })
            .collect();
        let base = crate::starter::bundled_config(
            dir.clone(),
            peers.clone(),
            "/ip4/127.0.0.1/tcp/0".into(),
            3,
            None,
        );
        let d = base.schema.features.len();
        type Rule = (&'static str, Box<dyn Fn(&mut RawConfig)>);
        let rules: Vec<Rule> = vec![
            ("`listen`", Box::new(|c| c.listen.clear())),
            (
                "listen address",
                Box::new(|c| c.listen = vec!["/ip4/é".into()]),
            ),
            (
                "not a peer id",
                Box::new(|c| c.allow[0] = "12D3Koo€".into()),
            ),
            ("listed twice", {
                let p = peers[0].clone();
                Box::new(move |c| c.allow[1] = p.clone())
            }),
            ("`rounds`", Box::new(|c| c.rounds = 0)),
            ("`quorum` must", Box::new(|c| c.quorum = 0)),
            ("exceeds the allow-list", Box::new(|c| c.quorum = 3)),
            ("`max_attempts`", Box::new(|c| c.max_attempts = 0)),
            (
                "`round_deadline_secs`",
                Box::new(|c| c.round_deadline_secs = 0),
            ),
            ("`clip_norm` is", Box::new(|c| c.clip_norm = f64::NAN)),
            ("`clip_norm` is", Box::new(|c| c.clip_norm = 0.0)),
            ("`clip_norm` is", Box::new(|c| c.clip_norm = -1.0)),
            ("`clip_norm` is", Box::new(|c| c.clip_norm = 1e-6)),
            ("`clip_norm` is", Box::new(|c| c.clip_norm = f64::INFINITY)),
            ("`batch_size`", Box::new(|c| c.batch_size = 0)),
            ("`batch_size`", Box::new(|c| c.batch_size = 1025)),
            (
                "`learning_rate` is",
                Box::new(|c| c.learning_rate = f64::NAN),
            ),
            ("`learning_rate` is", Box::new(|c| c.learning_rate = 0.0)),
            ("`learning_rate` is", Box::new(|c| c.learning_rate = 1e-6)),
            ("`learning_rate` is", Box::new(|c| c.learning_rate = 300.0)),
            ("× `clip_norm`", Box::new(|c| c.learning_rate = 20.0)),
            (
                "`strategy`: unknown",
                Box::new(|c| c.strategy = "fedsgd".into()),
            ),
            ("takes no `m`", Box::new(|c| c.strategy = "krum:m=2".into())),
            (
                "krum:f=1 with `quorum` 2 and 2 allowed peers: the strategy needs at least 5",
                Box::new(|c| c.strategy = "krum".into()),
            ),
            (
                "with `quorum` 1 and 2 allowed peers: the strategy needs at least 3 accepted \
                 updates, got 2",
                Box::new(|c| {
                    c.strategy = "trimmed-mean:beta=0.49".into();
                    c.quorum = 1;
                }),
            ),
            (
                "fedavgm:beta=0.9: one round may move a parameter by up to 20.00",
                Box::new(|c| {
                    c.learning_rate = 2.0;
                    c.strategy = "fedavgm:beta=0.9".into();
                }),
            ),
            (
                "by up to inf",
                Box::new(|c| c.strategy = "fedadam:beta1=0.9,beta2=0.5".into()),
            ),
            (
                "by up to 20.96",
                Box::new(|c| c.strategy = "fedadam:eta=2".into()),
            ),
            ("`schema`", Box::new(|c| c.schema.features.clear())),
            (
                "`schema`",
                Box::new(|c| c.schema.features = (0..=1024).map(|i| format!("f{i}")).collect()),
            ),
            (
                "twice",
                Box::new(|c| c.schema.features[1] = c.schema.features[0].clone()),
            ),
            (
                "twice",
                Box::new(|c| c.schema.label = c.schema.features[2].clone()),
            ),
            (
                "surrounding spaces",
                Box::new(|c| c.schema.label = " y".into()),
            ),
            (
                "predicts 2 classes, the label has 10",
                Box::new(|c| c.schema.classes = 10),
            ),
            (
                "the model has 156426 parameters; at most 131072",
                Box::new(|c| {
                    c.schema.features = (0..600).map(|i| format!("f{i}")).collect();
                    c.schema.classes = 10;
                    c.model = "mlp:256".into();
                }),
            ),
            (
                "expected logistic, softmax or mlp:H",
                Box::new(|c| c.model = "mlp:".into()),
            ),
            (
                "periodic cells",
                Box::new(|c| {
                    c.schema.features.truncate(15);
                    c.schema.classes = 64;
                    c.model = "softmax".into();
                    c.batch_size = 1024;
                }),
            ),
            ("`schema`", Box::new(|c| c.schema.classes = 1)),
            (
                "surrounding spaces",
                Box::new(|c| c.schema.features[0].clear()),
            ),
            (
                "`standardization`",
                Box::new(|c| {
                    c.standardization.mean.pop();
                }),
            ),
            (
                "`standardization`",
                Box::new(|c| c.standardization.std.push(1.0)),
            ),
            (
                "`standardization`",
                Box::new(|c| c.standardization.mean[3] = f64::NAN),
            ),
            (
                "`standardization`",
                Box::new(|c| c.standardization.mean[0] = f64::INFINITY),
            ),
            (
                "`standardization`",
                Box::new(|c| c.standardization.std[1] = 0.0),
            ),
            (
                "`standardization`",
                Box::new(|c| c.standardization.std[1] = -2.0),
            ),
            (
                "`standardization`",
                Box::new(|c| c.standardization.std[1] = f64::NAN),
            ),
            (
                "`standardization`",
                Box::new(move |c| c.standardization.std[d - 1] = f64::INFINITY),
            ),
            (
                "`federation_id`",
                Box::new(|c| c.federation_id = format!("é{}", "0".repeat(62))),
            ),
            (
                "`federation_id`",
                Box::new(|c| c.federation_id = "+0".repeat(32)),
            ),
        ];
        for (key, break_it) in &rules {
            let mut raw = base.clone();
            break_it(&mut raw);
            let err = match raw.resolve() {
                Ok(_) => panic!("accepted with {key} broken"),
                Err(e) => format!("{e:#}"),
            };
            assert!(err.contains(key), "{key}: {err}");
            assert!(
                !dir.exists(),
                "{key}: nothing is written before the checks pass"
            );
        }
        base.resolve().expect("the unbroken configuration");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
