//! Pure aggregation of verified updates: FedAvg weighted by proven example counts, and
//! the server strategies of [`strategy`].
//!
//! Only updates whose proofs verified reach this crate. It opens no files or sockets.
//! Differential-privacy noise on the aggregate will live here too (a later issue).

pub mod accountant;
pub mod noise;
pub mod private;
pub mod strategy;

use thiserror::Error;
use zkfed_air::fixed::{FRAC_BITS, PARAM_BOUND};
use zkfed_air::{ClippedGradientSum, Model};

/// Why a set of updates could not be aggregated.
#[derive(Debug, Error, PartialEq, Eq)]
#[allow(missing_docs)] // variant fields are named in their messages
pub enum AggregationError {
    /// Nothing to aggregate.
    #[error("no accepted updates to aggregate")]
    Empty,
    /// An update whose length differs from the model's parameter count.
    #[error("update has {got} entries, the model {expected} parameters")]
    Shape { expected: usize, got: usize },
    /// The new model would leave the fixed-point range the proofs support.
    #[error("aggregated model parameter {index} leaves the supported range")]
    OutOfRange { index: usize },
    /// A robust strategy needs more updates than were accepted.
    #[error("the strategy needs at least {need} accepted updates, got {got}")]
    TooFew { need: usize, got: usize },
    /// A robust rule asked to step from a mean gradient (a private run's).
    #[error("the median, the trimmed mean and Krum need each update, not a mean")]
    NotMeanBased,
    /// The noise could not be drawn.
    #[error(transparent)]
    Noise(#[from] noise::NoiseError),
}

/// One FedAvg step over the whole parameter vector:
/// `w ← w - lr · (Σ_k U_k) / (Σ_k n_k)`, rounded to nearest.
///
/// `U_k` are clipped-gradient sums at scale 2^32 and `n_k` their proven example counts, so
/// weighting by example count is exactly dividing the pooled sum by the pooled count.
/// `learning_rate` is fixed point (scale 2^16). Integer arithmetic throughout (i128), so
/// every coordinator and auditor computes the same model bit for bit.
pub fn fedavg_step(
    model: &Model,
    updates: &[ClippedGradientSum],
    learning_rate: i64,
) -> Result<Model, AggregationError> {
    let n = model.params.len();
    let examples: u64 = updates.iter().map(|u| u.examples).sum();
    if updates.is_empty() || examples == 0 {
        return Err(AggregationError::Empty);
    }
    let mut sums = vec![0i128; n];
    for u in updates {
        if u.values.len() != n {
            return Err(AggregationError::Shape {
                expected: n,
                got: u.values.len(),
            });
        }
        for (s, &g) in sums.iter_mut().zip(&u.values) {
            *s += i128::from(g);
        }
    }
    // step = lr · sum / (examples · 2^32) at scale 2^16 = lr · sum / (examples · 2^32)
    let denominator = i128::from(examples) << (2 * FRAC_BITS);
    let mut params = Vec::with_capacity(n);
    for (index, (&w, s)) in model.params.iter().zip(sums).enumerate() {
        let step = div_round(i128::from(learning_rate) * s, denominator);
        let value = i128::from(w) - step;
        if value.unsigned_abs() >= PARAM_BOUND as u128 {
            return Err(AggregationError::OutOfRange { index });
        }
        params.push(value as i64);
    }
    Ok(Model {
        params,
        ..model.clone()
    })
}

/// `a / b` rounded to nearest, ties away from zero (`b > 0`).
pub(crate) fn div_round(a: i128, b: i128) -> i128 {
    if a >= 0 {
        (a + b / 2) / b
    } else {
        -((-a + b / 2) / b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkfed_air::fixed::ONE;
    use zkfed_air::spec::ModelSpec;

    #[test]
    fn weights_by_example_count() {
        let model = Model::zeros(ModelSpec::Logistic, 1);
        // Participant A: 1 example with gradient 1.0; B: 3 examples summing to 3.0 → mean 1.0.
        let a = ClippedGradientSum {
            values: vec![ONE * ONE, 0],
            examples: 1,
        };
        let b = ClippedGradientSum {
            values: vec![3 * ONE * ONE, -4 * ONE * ONE],
            examples: 3,
        };
        let next = fedavg_step(&model, &[a, b], ONE / 2).unwrap();
        assert_eq!(next.params, vec![-ONE / 2, ONE / 2]);
        assert_eq!(next.spec, model.spec);
    }

    #[test]
    fn averages_any_parameter_vector() {
        let spec = ModelSpec::Mlp {
            hidden: 3,
            outputs: 4,
        };
        let model = Model::zeros(spec, 2);
        let n = model.params.len();
        assert_eq!(n, 3 * 3 + 4 * 4);
        let u = ClippedGradientSum {
            values: (0..n as i64).map(|i| i * ONE * ONE).collect(),
            examples: 2,
        };
        let next = fedavg_step(&model, &[u], ONE).unwrap();
        // Each step is lr · i·2^32 / (2 · 2^32) = i/2 at scale 2^16, exactly.
        let expected: Vec<i64> = (0..n as i64).map(|i| -(i * ONE / 2)).collect();
        assert_eq!(next.params, expected);
        assert_eq!((next.spec, next.num_features), (spec, 2));
    }

    #[test]
    fn rejects_empty_and_misshapen_input() {
        let model = Model::zeros(ModelSpec::Logistic, 2);
        assert_eq!(fedavg_step(&model, &[], ONE), Err(AggregationError::Empty));
        let u = ClippedGradientSum {
            values: vec![0, 0],
            examples: 1,
        };
        assert!(matches!(
            fedavg_step(&model, &[u], ONE),
            Err(AggregationError::Shape { .. })
        ));
    }

    #[test]
    fn refuses_to_leave_the_supported_range() {
        let model = Model::logistic(vec![PARAM_BOUND - 1], 0);
        let u = ClippedGradientSum {
            values: vec![-ONE * ONE, 0],
            examples: 1,
        };
        assert_eq!(
            fedavg_step(&model, &[u], ONE),
            Err(AggregationError::OutOfRange { index: 0 })
        );
    }
}
