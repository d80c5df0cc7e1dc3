//! Pure aggregation of verified updates: FedAvg weighted by proven example counts.
//!
//! Only updates whose proofs verified reach this crate. It opens no files or sockets.
//! Differential-privacy noise on the aggregate will live here too (a later issue).

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
    /// An update whose width differs from the model's.
    #[error("update has {got} features, the model {expected}")]
    Shape { expected: usize, got: usize },
    /// The new model would leave the fixed-point range the proofs support.
    #[error("aggregated model parameter {index} leaves the supported range")]
    OutOfRange { index: usize },
}

/// One FedAvg step: `w ← w - lr · (Σ_k U_k) / (Σ_k n_k)`, rounded to nearest.
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
    let d = model.num_features();
    let examples: u64 = updates.iter().map(|u| u.examples).sum();
    if updates.is_empty() || examples == 0 {
        return Err(AggregationError::Empty);
    }
    let mut sums = vec![0i128; d + 1];
    for u in updates {
        if u.weights.len() != d {
            return Err(AggregationError::Shape {
                expected: d,
                got: u.weights.len(),
            });
        }
        for (s, &g) in sums.iter_mut().zip(u.weights.iter().chain([&u.bias])) {
            *s += i128::from(g);
        }
    }
    // step = lr · sum / (examples · 2^32) at scale 2^16 = lr · sum / (examples · 2^32)
    let denominator = i128::from(examples) << (2 * FRAC_BITS);
    let mut next = Vec::with_capacity(d + 1);
    for (index, (&w, s)) in model
        .weights
        .iter()
        .chain([&model.bias])
        .zip(sums)
        .enumerate()
    {
        let step = div_round(i128::from(learning_rate) * s, denominator);
        let value = i128::from(w) - step;
        if value.unsigned_abs() >= PARAM_BOUND as u128 {
            return Err(AggregationError::OutOfRange { index });
        }
        next.push(value as i64);
    }
    let bias = next.pop().expect("d + 1 entries");
    Ok(Model {
        weights: next,
        bias,
    })
}

/// `a / b` rounded to nearest, ties away from zero (`b > 0`).
fn div_round(a: i128, b: i128) -> i128 {
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

    #[test]
    fn weights_by_example_count() {
        let model = Model::zeros(1);
        // Participant A: 1 example with gradient 1.0; B: 3 examples summing to 3.0 → mean 1.0.
        let a = ClippedGradientSum {
            weights: vec![ONE * ONE],
            bias: 0,
            examples: 1,
        };
        let b = ClippedGradientSum {
            weights: vec![3 * ONE * ONE],
            bias: -4 * ONE * ONE,
            examples: 3,
        };
        let next = fedavg_step(&model, &[a, b], ONE / 2).unwrap();
        assert_eq!(next.weights, vec![-ONE / 2]);
        assert_eq!(next.bias, ONE / 2);
    }

    #[test]
    fn rejects_empty_and_misshapen_input() {
        let model = Model::zeros(2);
        assert_eq!(fedavg_step(&model, &[], ONE), Err(AggregationError::Empty));
        let u = ClippedGradientSum {
            weights: vec![0],
            bias: 0,
            examples: 1,
        };
        assert!(matches!(
            fedavg_step(&model, &[u], ONE),
            Err(AggregationError::Shape { .. })
        ));
    }

    #[test]
    fn refuses_to_leave_the_supported_range() {
        let model = Model {
            weights: vec![PARAM_BOUND - 1],
            bias: 0,
        };
        let u = ClippedGradientSum {
            weights: vec![-ONE * ONE],
            bias: 0,
            examples: 1,
        };
        assert_eq!(
            fedavg_step(&model, &[u], ONE),
            Err(AggregationError::OutOfRange { index: 0 })
        );
    }
}
