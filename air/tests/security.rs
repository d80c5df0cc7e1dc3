//! The FRI parameters give at least 110 bits of conjectured security (Plonky3's own
//! estimator, a conjecture about FRI's list-decoding behaviour, not a proof) on every proof
//! shape the statement accepts, from the smallest up to the largest: d = 1024 features,
//! B = 1024 examples over a dataset of 2^32 rows (a trace of 2^18 rows). The proven
//! figure is printed beside it and kept at or above its documented floor.

mod common;

use common::context;
use zkfed_air::commitment::MAX_ROWS;
use zkfed_air::config::{SecurityEstimate, security_estimate};
use zkfed_air::fixed::{MAX_BATCH, MAX_FEATURES, ONE};
use zkfed_air::{ClippedGradientAir, DatasetCommitment, Model, RoundParams, Statement};

/// Conjectured bits ARCHITECTURE.md promises on every accepted shape.
const CONJECTURED_FLOOR: usize = 110;
/// Proven bits ARCHITECTURE.md states on every accepted shape.
const PROVEN_FLOOR: usize = 63;

fn estimate(features: usize, rows: u64, batch: usize) -> SecurityEstimate {
    // The estimate depends on the shape only, so a commitment without data suffices.
    let dataset = DatasetCommitment {
        root: [1, 2, 3, 4],
        rows,
    };
    let params = RoundParams {
        clip_norm: ONE,
        batch_size: batch,
    };
    let statement =
        Statement::new(context(1), Model::zeros(features), params, dataset, [0; 32]).unwrap();
    let estimate = security_estimate(&ClippedGradientAir::new(&statement));
    let log_height = statement.shape().log_height();
    eprintln!(
        "d = {features}, B = {batch}, rows = {rows}, 2^{log_height} trace rows: {estimate:?}"
    );
    estimate
}

#[test]
fn every_accepted_shape_has_at_least_110_conjectured_bits() {
    for (features, rows, batch) in [
        (1, 1, 1),
        (5, 12, 4),
        (30, 1024, 64),
        (256, 1024, 256),
        (256, 1 << 20, 1024),
        (MAX_FEATURES, 1 << 20, MAX_BATCH),
        (1, MAX_ROWS, MAX_BATCH),
        (MAX_FEATURES, MAX_ROWS, 1),
        (MAX_FEATURES, MAX_ROWS, MAX_BATCH),
    ] {
        let e = estimate(features, rows, batch);
        assert!(
            e.conjectured_bits >= CONJECTURED_FLOOR && e.proven_bits >= PROVEN_FLOOR,
            "d = {features}, B = {batch}, rows = {rows}: {e:?}"
        );
    }
}
