//! The public per-round objects: the model (its spec and parameter vector) and the round
//! parameters.

use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use serde::{Deserialize, Serialize};

use crate::error::ShapeError;
use crate::fixed::{MAX_BATCH, PARAM_BOUND, to_field};
use crate::hash::{Digest, MODEL_DOMAIN, hash_elements};
use crate::network::Layer;
use crate::spec::ModelSpec;

/// A model: its spec, its input width and its parameters in fixed point (scale 2^16), in
/// the spec's layout ([`crate::spec`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// Which model.
    pub spec: ModelSpec,
    /// Features per row (`d`).
    pub num_features: usize,
    /// Every parameter, layer by layer: weights row by row, then biases.
    #[serde(deserialize_with = "crate::bounded::params")]
    pub params: Vec<i64>,
}

impl Model {
    /// The all-zero model of a spec over `num_features` features.
    pub fn zeros(spec: ModelSpec, num_features: usize) -> Self {
        Self {
            spec,
            num_features,
            params: vec![0; spec.num_params(num_features)],
        }
    }

    /// The model a run starts from, which every node and auditor derives from the spec
    /// alone: all zeros, except an MLP's weights. An all-zero MLP never trains its hidden
    /// layer (its hidden values and the second layer's weights are 0, so both layers'
    /// gradients are), so each of its weights, in a layer of `n` inputs and `m` outputs, is
    /// drawn uniformly from `±√(6 / (n + m))` (Glorot's bound) by a fixed generator
    /// (SplitMix64 of the parameter's index); biases start at 0.
    pub fn initial(spec: ModelSpec, num_features: usize) -> Self {
        let mut model = Self::zeros(spec, num_features);
        if let ModelSpec::Mlp { .. } = spec {
            let mut offset = 0;
            for layer in spec.layers(num_features) {
                let weights = layer.inputs * layer.outputs;
                let bound = (6.0 / (layer.inputs + layer.outputs) as f64).sqrt();
                for (j, w) in model.params[offset..offset + weights]
                    .iter_mut()
                    .enumerate()
                {
                    let unit = (splitmix64((offset + j) as u64) >> 11) as f64 / (1u64 << 53) as f64;
                    *w = crate::fixed::quantize(bound * (2.0 * unit - 1.0));
                }
                offset += layer.num_params();
            }
        }
        model
    }

    /// A logistic-regression model: one weight per feature, then the intercept.
    pub fn logistic(weights: Vec<i64>, bias: i64) -> Self {
        let num_features = weights.len();
        let mut params = weights;
        params.push(bias);
        Self {
            spec: ModelSpec::Logistic,
            num_features,
            params,
        }
    }

    /// Number of features the model expects.
    pub fn num_features(&self) -> usize {
        self.num_features
    }

    /// The first layer's weights of its first output: a logistic model's weight vector.
    pub fn weights(&self) -> &[i64] {
        self.params.get(..self.num_features).unwrap_or(&[])
    }

    /// The first layer's first bias: a logistic model's intercept.
    pub fn bias(&self) -> i64 {
        let outputs = self.spec.layers(self.num_features)[0].outputs;
        outputs
            .checked_mul(self.num_features)
            .and_then(|at| self.params.get(at))
            .copied()
            .unwrap_or(0)
    }

    /// The dense layers, once the spec, the width, the parameter count and the parameter
    /// bound check out.
    pub fn layers(&self) -> Result<Vec<Layer<'_>>, ShapeError> {
        crate::network::layers(&self.spec, self.num_features, &self.params)
    }

    /// Checks the spec, the width, the parameter count and the parameter bound the
    /// headroom argument relies on.
    pub fn validate(&self) -> Result<(), ShapeError> {
        self.layers().map(drop)
    }

    /// The model digest bound into every proof of the round: the spec, the width and
    /// every parameter.
    pub fn digest(&self) -> Digest {
        let (kind, hidden, outputs) = match self.spec {
            ModelSpec::Logistic => (0, 0, 1),
            ModelSpec::Softmax { classes } => (1, 0, u64::from(classes)),
            ModelSpec::Mlp { hidden, outputs } => (2, u64::from(hidden), u64::from(outputs)),
        };
        let header = [kind, hidden, outputs, self.num_features as u64].map(Goldilocks::from_u64);
        let elements: Vec<Goldilocks> = header
            .into_iter()
            .chain(self.params.iter().map(|&w| to_field(w)))
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

/// SplitMix64's output for `index` (Steele, Lea and Flood): a fixed, well-mixed sequence.
fn splitmix64(index: u64) -> u64 {
    let mut z = index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixed::{ONE, quantize};

    #[test]
    fn only_an_mlp_starts_away_from_zero_and_always_from_the_same_weights() {
        for spec in [ModelSpec::Logistic, ModelSpec::Softmax { classes: 10 }] {
            assert_eq!(Model::initial(spec, 64), Model::zeros(spec, 64));
        }
        let spec = ModelSpec::Mlp {
            hidden: 32,
            outputs: 10,
        };
        let model = Model::initial(spec, 64);
        assert_eq!(model, Model::initial(spec, 64));
        let layers = spec.layers(64);
        let first = &model.params[..64 * 32];
        let second = &model.params[32 * 65..32 * 65 + 32 * 10];
        for (weights, layer) in [(first, layers[0]), (second, layers[1])] {
            let bound = quantize((6.0 / (layer.inputs + layer.outputs) as f64).sqrt());
            assert!(weights.iter().all(|w| w.abs() <= bound), "{layer:?}");
            let mean = weights.iter().sum::<i64>() as f64 / weights.len() as f64;
            assert!(mean.abs() < bound as f64 / 8.0, "{layer:?}: mean {mean}");
            let distinct: std::collections::BTreeSet<_> = weights.iter().collect();
            assert!(distinct.len() > weights.len() * 9 / 10, "{layer:?}");
        }
        let biases = [
            &model.params[64 * 32..32 * 65],
            &model.params[32 * 65 + 320..],
        ];
        assert!(biases.iter().all(|b| b.iter().all(|&b| b == 0)));
        assert!(first.iter().any(|w| w.abs() > ONE / 8));
        // Pinned: a changed generator would change every MLP run's starting model, and with
        // it what an audit of an existing log recomputes (values checked against an
        // independent SplitMix64 in Python).
        assert_eq!(&model.params[..3], &[12560, -2244, -15518]);
        assert_eq!(&model.params[2080..2083], &[11444, 13887, -21877]);
    }
}
