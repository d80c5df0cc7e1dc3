//! The synthetic workload the benchmarks share.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_air::fixed::ONE;
use zkfed_air::{CommittedDataset, Model, ProofContext, RoundParams, Statement};

/// Rows of every synthetic dataset (Merkle depth 10).
pub const ROWS: usize = 1024;

/// A `ROWS`-row dataset of `d` features in `[-3, 3]` with random labels, and a model
/// with weights in `[-1/4, 1/4]`; seeded by `(d, batch)`.
pub fn synthetic_dataset(d: usize, batch: usize) -> (CommittedDataset, Model) {
    let mut rng = StdRng::seed_from_u64(d as u64 * 1000 + batch as u64);
    let features: Vec<Vec<i64>> = (0..ROWS)
        .map(|_| {
            (0..d)
                .map(|_| rng.random_range(-3 * ONE..=3 * ONE))
                .collect()
        })
        .collect();
    let labels = (0..ROWS).map(|_| rng.random_range(0..=1u8)).collect();
    let model = Model::logistic(
        (0..d)
            .map(|_| rng.random_range(-ONE / 4..=ONE / 4))
            .collect(),
        0,
    );
    let dataset = CommittedDataset::commit(features, labels, &mut rng).expect("dataset");
    (dataset, model)
}

/// The statement of round `round` over `dataset`: clip norm 1, batch `batch`.
pub fn statement(dataset: &CommittedDataset, model: &Model, batch: usize, round: u64) -> Statement {
    let context = ProofContext {
        federation_id: [1; 32],
        round,
        participant: [2; 32],
    };
    let params = RoundParams {
        clip_norm: ONE,
        batch_size: batch,
    };
    Statement::new(
        context,
        model.clone(),
        params,
        dataset.commitment(),
        [3; 32],
    )
    .expect("statement")
}
