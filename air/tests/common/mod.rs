//! Shared fixtures: small random datasets, committed, with statements over them.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_air::fixed::{ONE, X_OFFSET};
use zkfed_air::{CommittedDataset, Model, ProofContext, RoundParams, Statement};

/// A committed dataset with a statement for one round over it.
pub struct Fixture {
    pub dataset: CommittedDataset,
    pub statement: Statement,
}

/// Options for [`fixture`].
#[derive(Clone, Copy)]
pub struct Spec {
    pub features: usize,
    pub rows: usize,
    pub batch: usize,
    pub clip: i64,
    /// Largest |feature| (raw).
    pub feature_scale: i64,
    /// Largest |weight| (raw).
    pub weight_scale: i64,
    pub seed: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            features: 5,
            rows: 12,
            batch: 4,
            clip: ONE,
            feature_scale: 3 * ONE,
            weight_scale: ONE,
            seed: 7,
        }
    }
}

pub fn context(round: u64) -> ProofContext {
    ProofContext {
        federation_id: [0xfe; 32],
        round,
        participant: [0x11; 32],
    }
}

pub fn fixture(spec: Spec) -> Fixture {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let fs = spec.feature_scale.min(X_OFFSET - 1);
    let features: Vec<Vec<i64>> = (0..spec.rows)
        .map(|_| {
            (0..spec.features)
                .map(|_| rng.random_range(-fs..=fs))
                .collect()
        })
        .collect();
    let labels: Vec<u8> = (0..spec.rows).map(|_| rng.random_range(0..=1u8)).collect();
    let model = Model::logistic(
        (0..spec.features)
            .map(|_| rng.random_range(-spec.weight_scale..=spec.weight_scale))
            .collect(),
        rng.random_range(-spec.weight_scale..=spec.weight_scale),
    );
    fixture_with(features, labels, model, spec)
}

pub fn fixture_with(features: Vec<Vec<i64>>, labels: Vec<u8>, model: Model, spec: Spec) -> Fixture {
    let mut rng = StdRng::seed_from_u64(spec.seed ^ 0x5a17);
    let dataset = CommittedDataset::commit(features, labels, &mut rng).expect("valid dataset");
    let params = RoundParams {
        clip_norm: spec.clip,
        batch_size: spec.batch,
    };
    let statement = Statement::new(
        context(3),
        model,
        params,
        dataset.commitment(),
        [spec.seed as u8; 32],
    )
    .expect("valid statement");
    Fixture { dataset, statement }
}
