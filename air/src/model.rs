//! The public per-round objects: the logistic-regression model and the round parameters.

use p3_goldilocks::Goldilocks;
use serde::{Deserialize, Serialize};

use crate::error::ShapeError;
use crate::fixed::{MAX_BATCH, MAX_FEATURES, PARAM_BOUND, to_field};
use crate::hash::{Digest, MODEL_DOMAIN, hash_elements};

/// Binary logistic-regression parameters in fixed point (scale 2^16).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// One weight per feature.
    #[serde(deserialize_with = "crate::bounded::per_feature")]
    pub weights: Vec<i64>,
    /// The intercept.
    pub bias: i64,
}

impl Model {
    /// The all-zero model with `num_features` weights.
    pub fn zeros(num_features: usize) -> Self {
        Self {
            weights: vec![0; num_features],
            bias: 0,
        }
    }

    /// Number of features the model expects.
    pub fn num_features(&self) -> usize {
        self.weights.len()
    }

    /// Checks the shape and the parameter bound the headroom argument relies on.
    pub fn validate(&self) -> Result<(), ShapeError> {
        let d = self.weights.len();
        if d == 0 || d > MAX_FEATURES {
            return Err(ShapeError::Features {
                got: d,
                max: MAX_FEATURES,
            });
        }
        let bad = self
            .weights
            .iter()
            .chain(std::iter::once(&self.bias))
            .position(|w| w.unsigned_abs() >= PARAM_BOUND as u64);
        match bad {
            Some(index) => Err(ShapeError::ParameterOutOfRange {
                index,
                bound: PARAM_BOUND,
            }),
            None => Ok(()),
        }
    }

    /// The model digest bound into every proof of the round.
    pub fn digest(&self) -> Digest {
        let elements: Vec<Goldilocks> = self
            .weights
            .iter()
            .chain(std::iter::once(&self.bias))
            .map(|&w| to_field(w))
            .collect();
        hash_elements(MODEL_DOMAIN, &elements)
    }
}

/// Parameters of one training round that the proof depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundParams {
    /// Per-example L2 clip bound C (fixed point, scale 2^16).
    pub clip_norm: i64,
    /// Examples per participant per round.
    pub batch_size: usize,
}

impl RoundParams {
    /// Checks the ranges the AIR's headroom argument relies on.
    pub fn validate(&self) -> Result<(), ShapeError> {
        if self.clip_norm <= 0 || self.clip_norm >= PARAM_BOUND {
            return Err(ShapeError::ClipNorm {
                got: self.clip_norm,
                bound: PARAM_BOUND,
            });
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH {
            return Err(ShapeError::Batch {
                got: self.batch_size,
                max: MAX_BATCH,
            });
        }
        Ok(())
    }
}
