//! Starter configurations.

use std::path::PathBuf;

use rand::Rng;
use zkfed_air::data::{Standardization, breast_cancer};

use crate::config::{RawConfig, hex32};

/// A configuration for the bundled breast-cancer data with a fresh federation id.
pub fn bundled_config(
    state_dir: PathBuf,
    allow: Vec<String>,
    listen: String,
    rounds: u64,
    quorum: Option<usize>,
) -> RawConfig {
    let raw = breast_cancer();
    let standardization = Standardization::fit(&raw).expect("the bundled data standardizes");
    let mut federation_id = [0u8; 32];
    rand::make_rng::<rand::rngs::StdRng>().fill_bytes(&mut federation_id);
    let quorum = quorum.unwrap_or(allow.len().max(1));
    RawConfig {
        listen: vec![listen],
        allow,
        federation_id: hex32(&federation_id),
        rounds,
        quorum,
        round_deadline_secs: 120,
        max_attempts: 5,
        clip_norm: 1.0,
        batch_size: 32,
        learning_rate: 1.0,
        strategy: "fedavg".into(),
        state_dir,
        linger_secs: 20,
        schema: raw.schema,
        model: "logistic".into(),
        standardization,
        privacy: None,
    }
}
