//! What a federation is compared against: test-set evaluation and centralized training of
//! the same fixed-point model on the pooled honest rows.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_aggregation::fedavg_step;
use zkfed_air::fixed::{ONE, quantize};
use zkfed_air::spec::ModelSpec;
use zkfed_air::{Model, clipped_gradient_sum};

use crate::Options;

/// Test accuracy and mean logistic loss of a fixed-point model.
pub(crate) fn evaluate(
    model: &Model,
    rows: &[Vec<i64>],
    labels: &[u8],
    test: &[usize],
) -> (f64, f64) {
    let (mut right, mut loss) = (0usize, 0.0f64);
    for &i in test {
        let z_raw: i64 = model
            .weights()
            .iter()
            .zip(&rows[i])
            .map(|(w, x)| w * x)
            .sum::<i64>()
            + model.bias() * ONE;
        let z = z_raw as f64 / (ONE as f64 * ONE as f64);
        let y = f64::from(labels[i]);
        right += usize::from(u8::from(z_raw > 0) == labels[i]);
        let p = 1.0 / (1.0 + (-z).exp());
        loss -= y * p.max(1e-12).ln() + (1.0 - y) * (1.0 - p).max(1e-12).ln();
    }
    let n = test.len().max(1) as f64;
    (right as f64 / n, loss / n)
}

/// Centralized training of the same fixed-point model on the pooled honest rows: each round
/// one clipped step on a random batch as large as the federation's honest batches together.
pub(crate) fn centralized(
    options: &Options,
    rows: &[Vec<i64>],
    labels: &[u8],
    pool: &[usize],
    batch: usize,
) -> anyhow::Result<Vec<Model>> {
    let mut rng = StdRng::seed_from_u64(options.seed ^ 0xce47);
    let mut model = Model::zeros(ModelSpec::Logistic, rows[0].len());
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
