//! The FRI parameters give at least 100 bits of conjectured security (Plonky3's own
//! estimator) on every proof shape, from the smallest up to d = 256, B = 1024 over 2^20 rows.

mod common;

use common::context;
use zkfed_air::config::security_estimate;
use zkfed_air::fixed::ONE;
use zkfed_air::{ClippedGradientAir, DatasetCommitment, Model, RoundParams, Statement};

#[test]
fn conjectured_security_is_at_least_100_bits() {
    for (features, rows, batch) in [
        (1, 1, 1),
        (5, 12, 4),
        (30, 1024, 64),
        (256, 1024, 256),
        (256, 1 << 20, 1024),
    ] {
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
        eprintln!("d = {features}, B = {batch}, rows = {rows}: {estimate:?}");
        assert!(
            estimate.conjectured_bits >= 100,
            "d = {features}, B = {batch}: {estimate:?}"
        );
    }
}
