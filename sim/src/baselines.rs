//! What a federation is compared against: test-set evaluation and centralized training of
//! the same fixed-point model on the pooled honest rows.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_aggregation::fedavg_step;
use zkfed_air::fixed::quantize;
use zkfed_air::spec::ModelSpec;
use zkfed_air::{Model, clipped_gradient_sum};

use crate::Options;

/// Test accuracy and mean log loss of a fixed-point model ([`zkfed_air::evaluation`]).
pub(crate) fn evaluate(
    model: &Model,
    rows: &[Vec<i64>],
    labels: &[u8],
    test: &[usize],
) -> (f64, f64) {
    // The sim's test rows are standardized for the model it trains: a misfit is a bug.
    let test = test.iter().map(|&i| (&rows[i][..], labels[i]));
    let e = zkfed_air::evaluation::evaluate(model, test).expect("the test rows fit the model");
    (e.accuracy, e.log_loss)
}

/// Centralized training of the same fixed-point model on the pooled honest rows: each round
/// one clipped step on a random batch as large as the federation's honest batches together.
pub(crate) fn centralized(
    options: &Options,
    rows: &[Vec<i64>],
    labels: &[u8],
    pool: &[usize],
    batch: usize,
    spec: ModelSpec,
) -> anyhow::Result<Vec<Model>> {
    let mut rng = StdRng::seed_from_u64(options.seed ^ 0xce47);
    let mut model = Model::initial(spec, rows[0].len());
    let mut models = Vec::new();
    for _ in 0..options.rounds {
        let picks: Vec<usize> = (0..batch.min(pool.len()))
            .map(|_| pool[rng.random_range(0..pool.len())])
            .collect();
        let sum = clipped_gradient_sum(
            &model,
            picks.iter().map(|&i| (&rows[i][..], labels[i])),
            quantize(options.clip),
        )?;
        model = fedavg_step(&model, &[sum], quantize(options.learning_rate))?;
        models.push(model.clone());
    }
    Ok(models)
}
