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
    let model = Model {
        weights: (0..spec.features)
            .map(|_| rng.random_range(-spec.weight_scale..=spec.weight_scale))
            .collect(),
        bias: rng.random_range(-spec.weight_scale..=spec.weight_scale),
    };
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

use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_matrix::dense::RowMajorMatrix;
use zkfed_air::ClippedGradientSum;
use zkfed_air::columns::{PermCols, StepCols, split_row_mut};

/// Row of block `i` that holds the example's activation arithmetic (first Merkle row).
pub fn activation_row(f: &Fixture, i: usize) -> usize {
    let shape = f.statement.shape();
    i * shape.block_len() + shape.chunks()
}

/// Row of block `i` that holds the example's clipping arithmetic (second Merkle row).
pub fn clipping_row(f: &Fixture, i: usize) -> usize {
    activation_row(f, i) + 1
}

/// Applies `change` to the step columns of every row of block `i` (for block constants).
pub fn set_block(
    f: &Fixture,
    trace: &mut RowMajorMatrix<Goldilocks>,
    i: usize,
    change: impl Fn(&mut StepCols<Goldilocks>),
) {
    let block = f.statement.shape().block_len();
    for row in i * block..(i + 1) * block {
        change(row_mut(trace, row).1);
    }
}

/// Mutable named views of one trace row.
pub fn row_mut(
    trace: &mut RowMajorMatrix<Goldilocks>,
    row: usize,
) -> (
    &mut PermCols<Goldilocks>,
    &mut StepCols<Goldilocks>,
    &mut [Goldilocks],
) {
    let w = trace.width;
    split_row_mut(&mut trace.values[row * w..(row + 1) * w])
}

/// Writes little-endian bits of `v` modulo 2^len (a forger writes the best it can).
pub fn set_bits(bits: &mut [Goldilocks], v: i64) {
    for (i, b) in bits.iter_mut().enumerate() {
        *b = Goldilocks::from_bool((v >> i.min(63)) & 1 == 1);
    }
}

/// Sets the coefficient of block `i` on every row of the block.
pub fn set_block_coeff(f: &Fixture, trace: &mut RowMajorMatrix<Goldilocks>, i: usize, coeff: i64) {
    set_block(f, trace, i, |s| s.coeff = zkfed_air::fixed::to_field(coeff));
}

/// Recomputes the update accumulators of a forged trace and returns the update it claims.
pub fn recompute_accumulators(
    f: &Fixture,
    trace: &mut RowMajorMatrix<Goldilocks>,
) -> ClippedGradientSum {
    zkfed_air::forgery::recompute_accumulators(&f.statement, trace).expect("small accumulators")
}
