//! Plain-Rust reference training: the exact function every proof attests to.
//!
//! For one example `(x, y)` under model `(w, b)`, all in fixed point (scale 2^16):
//!
//! 1. logit `z = Σ w_j x_j + b·ONE` (scale 2^32, exact);
//! 2. sigmoid `s = σ(z)` by the table of [`crate::sigmoid`]: 512 linear segments over
//!    `[-16, 16)`, clamped outside, within `2^-13` of the real logistic function;
//! 3. residual `r = s - y·ONE`, so the per-example gradient is `g = r · (x, 1)`;
//! 4. squared norm `N = Σ x_j² + ONE²` (scale 2^32, exact) and `ν = ceil(sqrt(N))`, so
//!    `||g|| = |r|·sqrt(N) ≤ |r|·ν`;
//! 5. DP-SGD clipping `g ← g · min(1, C/||g||)` becomes a scalar: `c = r` when `|r|·ν ≤ C·ONE`,
//!    otherwise `c = sign(r) · floor(C·ONE / ν)`;
//! 6. the clipped gradient is `c · (x, 1)` and the batch update is `Σ_i c_i · (x_i, 1)`
//!    at scale 2^32, exact (no rounding in the sum).
//!
//! Rounding versus real-valued DP-SGD: `ν` rounds the norm up and `c` rounds down, both by
//! less than one unit in the last place (2^-16), so `||c·(x,1)|| ≤ C` always holds exactly:
//! fixed point can only clip slightly harder than real arithmetic, never more loosely.

use crate::error::ShapeError;
use crate::fixed::{ONE, ceil_sqrt, feature_in_range};
use crate::model::Model;
use crate::spec::ModelSpec;

/// Every intermediate of one example's training step.
///
/// Trace generation writes these into the step table's columns, so the proof and the
/// reference cannot drift apart: both are this struct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainingStep {
    /// Logit at scale 2^32.
    pub logit: i64,
    /// The sigmoid and its intermediates.
    pub sigmoid: crate::sigmoid::SigmoidSteps,
    /// `sigmoid - y·ONE`.
    pub residual: i64,
    /// `Σ x_j² + ONE²` at scale 2^32.
    pub norm_sq: i64,
    /// `ceil(sqrt(norm_sq))` at scale 2^16.
    pub norm: i64,
    /// Whether clipping changed the gradient.
    pub clipped: bool,
    /// The clipped coefficient `c` at scale 2^16.
    pub coeff: i64,
}

/// The training step of one example: logit, table sigmoid, residual, norm and clipping.
pub fn example_training_step(model: &Model, x: &[i64], y: u8, clip_norm: i64) -> TrainingStep {
    let logit: i64 = model
        .weights()
        .iter()
        .zip(x)
        .map(|(w, x)| w * x)
        .sum::<i64>()
        + model.bias() * ONE;
    let norm_sq = x.iter().map(|x| x * x).sum::<i64>() + ONE * ONE;
    training_step(logit, norm_sq, y, clip_norm)
}

/// The training step from an example's logit and squared norm, as the step table checks it.
pub fn training_step(logit: i64, norm_sq: i64, y: u8, clip_norm: i64) -> TrainingStep {
    let sigmoid = crate::sigmoid::sigmoid(logit);
    step_from_sigmoid(logit, sigmoid, norm_sq, y, clip_norm)
}

/// The rest of the step once the sigmoid is known: residual, norm and clipping. Forgers
/// call it with a sigmoid of their own making.
pub fn step_from_sigmoid(
    logit: i64,
    sigmoid: crate::sigmoid::SigmoidSteps,
    norm_sq: i64,
    y: u8,
    clip_norm: i64,
) -> TrainingStep {
    let residual = sigmoid.value - i64::from(y) * ONE;
    let norm = ceil_sqrt(norm_sq);
    let bound = clip_norm * ONE;
    let clipped = residual.abs() * norm > bound;
    let magnitude = if clipped {
        bound / norm
    } else {
        residual.abs()
    };
    TrainingStep {
        logit,
        sigmoid,
        residual,
        norm_sq,
        norm,
        clipped,
        coeff: if residual < 0 { -magnitude } else { magnitude },
    }
}

/// The sum of per-example clipped gradients over a batch, at scale 2^32, in the model's
/// parameter layout ([`crate::spec`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClippedGradientSum {
    /// One entry per model parameter.
    #[serde(deserialize_with = "crate::bounded::params")]
    pub values: Vec<i64>,
    /// How many examples were summed; under hidden sampling, the proof's slots (the
    /// sample's size stays hidden), which a private run never divides by.
    pub examples: u64,
}

impl ClippedGradientSum {
    /// The sum of no examples for a model of `num_params` parameters.
    pub fn zero(num_params: usize) -> Self {
        Self {
            values: vec![0; num_params],
            examples: 0,
        }
    }

    /// Adds one logistic example's clipped gradient `coeff · (x, 1)`.
    pub fn add_example(&mut self, coeff: i64, x: &[i64]) {
        let (weights, bias) = self.values.split_at_mut(x.len());
        for (acc, &x) in weights.iter_mut().zip(x) {
            *acc += coeff * x;
        }
        bias[0] += coeff * ONE;
        self.examples += 1;
    }
}

/// Checks a row against the model shape and the feature range.
pub fn validate_row(model: &Model, x: &[i64]) -> Result<(), ShapeError> {
    validate_features(model.num_features(), x)
}

/// Checks a row's width and the range of its features.
pub fn validate_features(num_features: usize, x: &[i64]) -> Result<(), ShapeError> {
    if x.len() != num_features {
        return Err(ShapeError::RowWidth {
            expected: num_features,
            got: x.len(),
        });
    }
    match x.iter().position(|&v| !feature_in_range(v)) {
        Some(feature) => Err(ShapeError::FeatureOutOfRange { feature }),
        None => Ok(()),
    }
}

/// The reference clipped-gradient sum of a batch of `(features, label)` rows: this
/// module's step for logistic regression, [`crate::network`]'s for the other models.
pub fn clipped_gradient_sum<'a>(
    model: &Model,
    rows: impl IntoIterator<Item = (&'a [i64], u8)>,
    clip_norm: i64,
) -> Result<ClippedGradientSum, ShapeError> {
    model.validate()?;
    if model.spec != ModelSpec::Logistic {
        return crate::network::network_gradient_sum(
            &model.spec,
            &model.params,
            model.num_features(),
            rows,
            clip_norm,
        );
    }
    let mut sum = ClippedGradientSum::zero(model.params.len());
    for (x, y) in rows {
        validate_row(model, x)?;
        if y > 1 {
            return Err(ShapeError::LabelOutOfRange { classes: 2 });
        }
        sum.add_example(example_training_step(model, x, y, clip_norm).coeff, x);
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model::logistic(vec![ONE, -2 * ONE], ONE / 2)
    }

    #[test]
    fn sigmoid_follows_the_logistic_function_and_clamps() {
        let m = model();
        // z = 1·1 - 2·0 + 0.5 = 1.5 → σ(1.5) = 0.8176
        let s = example_training_step(&m, &[ONE, 0], 1, 100 * ONE);
        let real = 1.0 / (1.0 + (-1.5f64).exp());
        assert!(
            (s.sigmoid.value as f64 / ONE as f64 - real).abs() < 1e-4,
            "{s:?}"
        );
        let s = example_training_step(&m, &[20 * ONE, 0], 1, 100 * ONE);
        assert!(s.sigmoid.above);
        assert_eq!(s.sigmoid.value, ONE);
        let s = example_training_step(&m, &[0, 20 * ONE], 0, 100 * ONE);
        assert!(s.sigmoid.below);
        assert_eq!(s.sigmoid.value, 0);
    }

    #[test]
    fn clipping_bounds_the_norm_and_keeps_the_sign() {
        let m = model();
        let x = [3 * ONE, 4 * ONE];
        let clip = ONE / 2;
        let s = example_training_step(&m, &x, 1, clip);
        assert!(s.clipped);
        assert!(s.coeff <= 0, "residual is negative for y = 1");
        // ||c·(x,1)|| ≤ C exactly, in integers at scale 2^64.
        let lhs = (s.coeff as i128).pow(2) * s.norm_sq as i128;
        assert!(lhs <= (clip as i128 * ONE as i128).pow(2));
        // and clipping is tight to one unit of c.
        let looser = ((s.coeff.abs() + 1) as i128).pow(2) * (s.norm as i128).pow(2);
        assert!(looser > (clip as i128 * ONE as i128).pow(2));
    }

    #[test]
    fn unclipped_gradient_is_the_residual() {
        let m = model();
        let s = example_training_step(&m, &[ONE / 4, 0], 0, 100 * ONE);
        assert!(!s.clipped);
        assert_eq!(s.coeff, s.residual);
    }

    #[test]
    fn rows_out_of_range_are_rejected() {
        let m = model();
        let err = clipped_gradient_sum(&m, [(&[4_345_678, 0][..], 1)], ONE).unwrap_err();
        assert_eq!(err, ShapeError::FeatureOutOfRange { feature: 0 });
        // The row's value is a patient's: the error names the feature, never the value.
        assert!(!format!("{err} {err:?}").contains("4345678"), "{err:?}");
        let err = clipped_gradient_sum(&m, [(&[0][..], 1)], ONE).unwrap_err();
        assert!(matches!(err, ShapeError::RowWidth { .. }));
    }
}
