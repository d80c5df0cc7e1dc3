//! Plain-Rust reference training of the softmax and MLP models: the exact fixed-point
//! function their proofs are to attest to (ARCHITECTURE.md, "Models beyond logistic
//! regression"). Binary logistic regression keeps its own definition in
//! [`crate::reference`].
//!
//! All values are integers at the scale given; `ONE = 2^16`. For one example `(x, y)`:
//!
//! **Forward.** A dense layer with inputs `v` (scale `2^16`) gives
//! `a_k = Σ_j W_kj v_j + b_k·ONE` (scale `2^32`, exact). An MLP's hidden unit takes
//! `q = floor(a / 2^16)` and is a ReLU capped at [`HIDDEN_CAP`] (just under 32.0):
//! `h = 0` when `q < 0`, `h = q` when `0 ≤ q ≤ HIDDEN_CAP`, `h = HIDDEN_CAP` above, so
//! hidden values lie in the features' range and the second layer reads them like features.
//!
//! **Head.** A sigmoid head takes the table sigmoid of [`crate::sigmoid`]. A softmax head
//! subtracts the largest logit `m` (`u_k = z_k - m ≤ 0`), takes the table exponential of
//! [`crate::exp`] (`e_k = ONE` for every logit equal to `m`), sums `S = Σ e_k ≥ ONE` and
//! divides: `p_k = floor(e_k·ONE / S)`.
//!
//! **Backward.** The output deltas are the residuals `r_k = p_k - [y = k]·ONE` (sigmoid:
//! `r = σ - y·ONE`), scale `2^16`, `|r_k| ≤ ONE`. An MLP's hidden delta is
//! `δ_m = floor(Σ_k W2_km r_k / 2^16)` for a unit in its linear range and 0 otherwise,
//! and must stay below [`DELTA_BOUND`] in magnitude.
//!
//! **Norm.** Each layer's per-example gradient is `δ ⊗ (v, 1)`, of norm
//! `||δ||·||(v, 1)||`. With `ν_v = ceil(√(Σ v² + ONE²))` and `ν_δ = ceil(√(Σ δ²))` (scale
//! `2^16`), the layer's bound is `A = ceil(ν_δ·ν_v / ONE)`, below [`LAYER_BOUND_LIMIT`], and
//! the whole vector's bound is `ν = ceil(√(Σ_layers A²))`. Every rounding is upward, so `ν`
//! is at least the true norm of the whole per-example gradient.
//!
//! **Clipping.** If `ν ≤ C` every delta is kept; otherwise each becomes
//! `c = sign(δ)·floor(|δ|·C / ν)`, so `||c-gradient|| ≤ C·||g||/ν ≤ C` exactly.
//!
//! **Update.** Each layer adds `c_k·v_j` to weight `(k, j)` and `c_k·ONE` to bias `k`,
//! scale `2^32`, exact, in the parameter vector's layout ([`crate::spec`]).
//!
//! The two bounds ([`DELTA_BOUND`], [`LAYER_BOUND_LIMIT`]) keep every intermediate of the
//! proof below `2^62` for every accepted shape; an example that breaks one (a hidden delta
//! of 256, a layer gradient norm of 16384: only an absurd model produces them) cannot be
//! proven, and the reference refuses it with [`ShapeError::Intermediate`].

use crate::error::ShapeError;
use crate::exp::{ExpSteps, exp};
use crate::fixed::{ONE, PARAM_BOUND, X_OFFSET, ceil_sqrt};
use crate::reference::{ClippedGradientSum, validate_features};
use crate::sigmoid::{SigmoidSteps, sigmoid};
use crate::spec::{Head, LayerShape, ModelSpec};

/// The largest hidden activation, just under 32.0: hidden values share the features'
/// range `[-2^21, 2^21)`.
pub const HIDDEN_CAP: i64 = X_OFFSET - 1;
/// Exclusive bound on a hidden delta's magnitude (256.0).
pub const DELTA_BOUND: i64 = 1 << 24;
/// Exclusive bound on a layer's gradient-norm bound `A` (16384.0).
pub const LAYER_BOUND_LIMIT: i64 = 1 << 30;

/// One dense layer of a parameter vector.
#[derive(Clone, Copy, Debug)]
pub struct Layer<'a> {
    /// Its shape.
    pub shape: LayerShape,
    /// `outputs × inputs` weights, row by row.
    pub weights: &'a [i64],
    /// `outputs` biases.
    pub bias: &'a [i64],
}

impl Layer<'_> {
    /// The row of weights of output `k`.
    pub fn row(&self, k: usize) -> &[i64] {
        &self.weights[k * self.shape.inputs..(k + 1) * self.shape.inputs]
    }

    /// `a_k = Σ_j W_kj v_j + b_k·ONE` at scale `2^32`.
    pub fn forward(&self, v: &[i64]) -> Vec<i64> {
        (0..self.shape.outputs)
            .map(|k| dot(self.row(k), v) + self.bias[k] * ONE)
            .collect()
    }
}

fn dot(a: &[i64], b: &[i64]) -> i64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// Splits a parameter vector into its layers, after checking the spec and the width, the
/// vector's length and its range.
pub fn layers<'a>(
    spec: &ModelSpec,
    num_features: usize,
    params: &'a [i64],
) -> Result<Vec<Layer<'a>>, ShapeError> {
    spec.validate(num_features, spec.classes())?;
    let expected = spec.num_params(num_features);
    if params.len() != expected {
        return Err(ShapeError::ParameterCount {
            expected,
            got: params.len(),
        });
    }
    if let Some(index) = params
        .iter()
        .position(|w| w.unsigned_abs() >= PARAM_BOUND as u64)
    {
        return Err(ShapeError::ParameterOutOfRange {
            index,
            bound: PARAM_BOUND,
        });
    }
    let mut rest = params;
    let mut out = Vec::new();
    for shape in spec.layers(num_features) {
        let (weights, tail) = rest.split_at(shape.outputs * shape.inputs);
        let (bias, tail) = tail.split_at(shape.outputs);
        out.push(Layer {
            shape,
            weights,
            bias,
        });
        rest = tail;
    }
    Ok(out)
}

/// Which piece of the capped ReLU a hidden unit is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReluCase {
    /// `q < 0`: output 0, derivative 0.
    Negative,
    /// `0 ≤ q ≤ HIDDEN_CAP`: output `q`, derivative 1.
    Linear,
    /// `q > HIDDEN_CAP`: output `HIDDEN_CAP`, derivative 0.
    Capped,
}

/// One hidden unit's forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HiddenUnit {
    /// `a` at scale `2^32`.
    pub pre_activation: i64,
    /// `floor(a / 2^16)`.
    pub quotient: i64,
    /// `a - quotient·2^16`, in `[0, 2^16)`.
    pub remainder: i64,
    /// The ReLU's piece.
    pub case: ReluCase,
    /// `h` at scale `2^16`, in `[0, HIDDEN_CAP]`.
    pub value: i64,
}

/// The capped ReLU of a pre-activation at scale `2^32`.
pub fn relu(pre_activation: i64) -> HiddenUnit {
    let quotient = pre_activation >> 16;
    let (case, value) = if quotient < 0 {
        (ReluCase::Negative, 0)
    } else if quotient > HIDDEN_CAP {
        (ReluCase::Capped, HIDDEN_CAP)
    } else {
        (ReluCase::Linear, quotient)
    };
    HiddenUnit {
        pre_activation,
        quotient,
        remainder: pre_activation - (quotient << 16),
        case,
        value,
    }
}

/// A softmax head's intermediates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoftmaxSteps {
    /// The first output whose logit is the largest.
    pub top: usize,
    /// The largest logit, scale `2^32`.
    pub max: i64,
    /// `exp(z_k - max)` per output.
    pub exps: Vec<ExpSteps>,
    /// `S = Σ e_k`, scale `2^16`, at least `ONE`.
    pub sum: i64,
    /// `p_k = floor(e_k·ONE / S)`, scale `2^16`.
    pub probabilities: Vec<i64>,
    /// `e_k·ONE - p_k·S`, in `[0, S)`.
    pub remainders: Vec<i64>,
}

/// The softmax of logits at scale `2^32`.
pub fn softmax(logits: &[i64]) -> SoftmaxSteps {
    let max = *logits.iter().max().expect("a softmax has outputs");
    let top = logits.iter().position(|&z| z == max).unwrap_or(0);
    let exps: Vec<ExpSteps> = logits.iter().map(|&z| exp(z - max)).collect();
    let sum: i64 = exps.iter().map(|e| e.value).sum();
    let probabilities: Vec<i64> = exps.iter().map(|e| e.value * ONE / sum).collect();
    let remainders = exps
        .iter()
        .zip(&probabilities)
        .map(|(e, p)| e.value * ONE - p * sum)
        .collect();
    SoftmaxSteps {
        top,
        max,
        exps,
        sum,
        probabilities,
        remainders,
    }
}

/// The head's intermediates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadSteps {
    /// A sigmoid head.
    Sigmoid(SigmoidSteps),
    /// A softmax head.
    Softmax(SoftmaxSteps),
}

/// One hidden unit's backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HiddenBack {
    /// `t = Σ_k W2_km r_k`, scale `2^32`.
    pub back: i64,
    /// `δ`: `floor(t / 2^16)` in the linear range, else 0; scale `2^16`.
    pub delta: i64,
    /// `t - δ·2^16` in the linear range, else 0.
    pub remainder: i64,
}

/// One layer's gradient-norm bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerNorm {
    /// `Σ v² + ONE²`, scale `2^32`.
    pub input_sq: i64,
    /// `ceil(√input_sq)`, scale `2^16`.
    pub input_norm: i64,
    /// `Σ δ²`, scale `2^32`.
    pub delta_sq: i64,
    /// `ceil(√delta_sq)`, scale `2^16`.
    pub delta_norm: i64,
    /// `A = ceil(delta_norm·input_norm / ONE)`, scale `2^16`.
    pub bound: i64,
}

impl LayerNorm {
    fn of(inputs: &[i64], deltas: &[i64]) -> Result<Self, ShapeError> {
        let input_sq = inputs.iter().map(|v| v * v).sum::<i64>() + ONE * ONE;
        let delta_sq = deltas.iter().map(|d| d * d).sum::<i64>();
        Self::from_squares(input_sq, delta_sq)
    }

    /// The bound from `Σ v² + ONE²` and `Σ δ²`.
    pub fn from_squares(input_sq: i64, delta_sq: i64) -> Result<Self, ShapeError> {
        let input_norm = ceil_sqrt(input_sq);
        let delta_norm = ceil_sqrt(delta_sq);
        let bound = (delta_norm * input_norm + ONE - 1) / ONE;
        if bound >= LAYER_BOUND_LIMIT {
            return Err(ShapeError::Intermediate {
                what: "layer gradient norm",
            });
        }
        Ok(Self {
            input_sq,
            input_norm,
            delta_sq,
            delta_norm,
            bound,
        })
    }
}

/// Every intermediate of one example's training step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkStep {
    /// Hidden units (an MLP's), else empty.
    pub hidden: Vec<HiddenUnit>,
    /// Output logits, scale `2^32`.
    pub logits: Vec<i64>,
    /// The head.
    pub head: HeadSteps,
    /// Output deltas (residuals), scale `2^16`.
    pub residuals: Vec<i64>,
    /// Hidden units' backward pass (an MLP's), else empty.
    pub hidden_back: Vec<HiddenBack>,
    /// Each layer's norm bound, input layer first.
    pub norms: Vec<LayerNorm>,
    /// `ν = ceil(√(Σ A²))`, scale `2^16`.
    pub norm: i64,
    /// Whether `ν > C`.
    pub clipped: bool,
    /// Each layer's clipped deltas, input layer first.
    pub coefficients: Vec<Vec<i64>>,
}

/// One example's training step.
pub fn network_step(
    layers: &[Layer<'_>],
    head: Head,
    x: &[i64],
    label: u8,
    clip_norm: i64,
) -> Result<NetworkStep, ShapeError> {
    let hidden: Vec<HiddenUnit> = match layers {
        [hidden, _] => hidden.forward(x).into_iter().map(relu).collect(),
        _ => Vec::new(),
    };
    step_from_hidden(layers, head, x, hidden, label, clip_norm)
}

/// One example's training step from its hidden units on (none without a hidden layer):
/// [`network_step`] after the ReLU. Forgers use it to re-witness an example whose hidden
/// units they changed.
pub fn step_from_hidden(
    layers: &[Layer<'_>],
    head: Head,
    x: &[i64],
    hidden: Vec<HiddenUnit>,
    label: u8,
    clip_norm: i64,
) -> Result<NetworkStep, ShapeError> {
    let (hidden_layer, output_layer) = match layers {
        [output] => (None, output),
        [hidden, output] => (Some(hidden), output),
        _ => unreachable!("specs have one or two layers"),
    };
    let hidden_values: Vec<i64> = hidden.iter().map(|h| h.value).collect();
    let output_inputs = if hidden_layer.is_some() {
        &hidden_values[..]
    } else {
        x
    };
    let logits = output_layer.forward(output_inputs);

    let (head, residuals) = head_step(head, &logits, label)?;

    let hidden_back: Vec<HiddenBack> = hidden
        .iter()
        .enumerate()
        .map(|(m, unit)| {
            let back: i64 = residuals
                .iter()
                .enumerate()
                .map(|(k, r)| output_layer.row(k)[m] * r)
                .sum();
            if unit.case != ReluCase::Linear {
                return Ok(HiddenBack {
                    back,
                    delta: 0,
                    remainder: 0,
                });
            }
            let delta = back >> 16;
            if delta.abs() >= DELTA_BOUND {
                return Err(ShapeError::Intermediate {
                    what: "hidden delta",
                });
            }
            Ok(HiddenBack {
                back,
                delta,
                remainder: back - (delta << 16),
            })
        })
        .collect::<Result<_, _>>()?;

    let mut deltas: Vec<Vec<i64>> = Vec::new();
    let mut inputs: Vec<&[i64]> = Vec::new();
    if hidden_layer.is_some() {
        deltas.push(hidden_back.iter().map(|b| b.delta).collect());
        inputs.push(x);
    }
    deltas.push(residuals.clone());
    inputs.push(output_inputs);
    let norms = inputs
        .iter()
        .zip(&deltas)
        .map(|(v, d)| LayerNorm::of(v, d))
        .collect::<Result<Vec<_>, _>>()?;
    let (norm, clipped, coefficients) = clip(&norms, &deltas, clip_norm);
    Ok(NetworkStep {
        hidden,
        logits,
        head,
        residuals,
        hidden_back,
        norms,
        norm,
        clipped,
        coefficients,
    })
}

/// The head's intermediates and the output deltas (residuals) of one example's logits.
fn head_step(head: Head, logits: &[i64], label: u8) -> Result<(HeadSteps, Vec<i64>), ShapeError> {
    match head {
        Head::Sigmoid => {
            if label > 1 {
                return Err(ShapeError::LabelOutOfRange { classes: 2 });
            }
            let s = sigmoid(logits[0]);
            let r = s.value - i64::from(label) * ONE;
            Ok((HeadSteps::Sigmoid(s), vec![r]))
        }
        Head::Softmax { classes } => {
            if usize::from(label) >= classes {
                return Err(ShapeError::LabelOutOfRange {
                    classes: classes as u8,
                });
            }
            let s = softmax(logits);
            let r = s
                .probabilities
                .iter()
                .enumerate()
                .map(|(k, p)| p - i64::from(k == usize::from(label)) * ONE)
                .collect();
            Ok((HeadSteps::Softmax(s), r))
        }
    }
}

impl NetworkStep {
    /// Each layer's deltas, input layer first.
    pub fn deltas(&self) -> Vec<Vec<i64>> {
        let hidden = self.hidden_back.iter().map(|b| b.delta).collect::<Vec<_>>();
        let hidden = (!hidden.is_empty()).then_some(hidden);
        hidden.into_iter().chain([self.residuals.clone()]).collect()
    }

    /// Recomputes `ν`, the clip decision and the coefficients from [`Self::norms`] (a
    /// forger's, after changing a bound).
    pub fn reclip(&mut self, clip_norm: i64) {
        (self.norm, self.clipped, self.coefficients) = clip(&self.norms, &self.deltas(), clip_norm);
    }
}

/// `ν` from the layers' bounds, whether it exceeds `C`, and each layer's clipped deltas.
fn clip(norms: &[LayerNorm], deltas: &[Vec<i64>], clip_norm: i64) -> (i64, bool, Vec<Vec<i64>>) {
    let norm = ceil_sqrt(norms.iter().map(|n| n.bound * n.bound).sum());
    let clipped = norm > clip_norm;
    let coefficients = deltas
        .iter()
        .map(|layer| {
            layer
                .iter()
                .map(|&d| {
                    if clipped {
                        d.signum() * (d.abs() * clip_norm / norm)
                    } else {
                        d
                    }
                })
                .collect()
        })
        .collect();
    (norm, clipped, coefficients)
}

/// A softmax model's training step from what its step table receives: the logits and the
/// input's `Σ x² + ONE²`. Equals [`network_step`] on a row with these sums; forgers use it
/// to re-witness an example whose sums they changed.
pub fn softmax_layer_step(
    logits: Vec<i64>,
    input_sq: i64,
    label: u8,
    clip_norm: i64,
) -> Result<NetworkStep, ShapeError> {
    let head = Head::Softmax {
        classes: logits.len(),
    };
    let (head, residuals) = head_step(head, &logits, label)?;
    let delta_sq = residuals.iter().map(|r| r * r).sum();
    let norms = vec![LayerNorm::from_squares(input_sq, delta_sq)?];
    let deltas = vec![residuals.clone()];
    let (norm, clipped, coefficients) = clip(&norms, &deltas, clip_norm);
    Ok(NetworkStep {
        hidden: Vec::new(),
        logits,
        head,
        residuals,
        hidden_back: Vec::new(),
        norms,
        norm,
        clipped,
        coefficients,
    })
}

/// An MLP's training step from what its tables receive: the hidden pre-activations and the
/// input's `Σ x² + ONE²`. Equals [`network_step`] on a row with these sums; forgers use it
/// to re-witness an example whose sums they changed.
pub fn mlp_step_from_sums(
    layers: &[Layer<'_>],
    pre_activations: &[i64],
    input_sq: i64,
    label: u8,
    clip_norm: i64,
) -> Result<NetworkStep, ShapeError> {
    let head = Head::Softmax {
        classes: layers[layers.len() - 1].shape.outputs,
    };
    let hidden = pre_activations.iter().map(|&a| relu(a)).collect();
    // The input enters the step only through its squared norm, replaced below.
    let mut step = step_from_hidden(layers, head, &[], hidden, label, clip_norm)?;
    step.norms[0] = LayerNorm::from_squares(input_sq, step.norms[0].delta_sq)?;
    step.reclip(clip_norm);
    Ok(step)
}

impl ClippedGradientSum {
    /// Adds one example's clipped gradient: `c_k·v_j` per weight, `c_k·ONE` per bias.
    pub(crate) fn add_step(&mut self, layers: &[Layer<'_>], x: &[i64], step: &NetworkStep) {
        let hidden: Vec<i64> = step.hidden.iter().map(|h| h.value).collect();
        let mut offset = 0;
        for (i, (layer, coeffs)) in layers.iter().zip(&step.coefficients).enumerate() {
            let inputs = if i == 0 { x } else { &hidden[..] };
            let n = layer.shape.inputs;
            for (k, c) in coeffs.iter().enumerate() {
                for (acc, v) in self.values[offset + k * n..][..n].iter_mut().zip(inputs) {
                    *acc += c * v;
                }
            }
            offset += layer.shape.outputs * n;
            for (acc, c) in self.values[offset..][..coeffs.len()].iter_mut().zip(coeffs) {
                *acc += c * ONE;
            }
            offset += coeffs.len();
        }
        self.examples += 1;
    }
}

/// The reference clipped-gradient sum of a batch of `(features, label)` rows under a
/// softmax or MLP model, in the parameter vector's layout.
pub fn network_gradient_sum<'a>(
    spec: &ModelSpec,
    params: &[i64],
    num_features: usize,
    rows: impl IntoIterator<Item = (&'a [i64], u8)>,
    clip_norm: i64,
) -> Result<ClippedGradientSum, ShapeError> {
    let layers = layers(spec, num_features, params)?;
    let mut sum = ClippedGradientSum::zero(params.len());
    for (x, y) in rows {
        validate_features(num_features, x)?;
        let step = network_step(&layers, spec.head(), x, y, clip_norm)?;
        sum.add_step(&layers, x, &step);
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax_params(rows: &[[i64; 3]]) -> Vec<i64> {
        // d = 2: each row is (w0, w1, b) of one class; weights first, then biases.
        let mut p: Vec<i64> = rows.iter().flat_map(|r| [r[0], r[1]]).collect();
        p.extend(rows.iter().map(|r| r[2]));
        p
    }

    #[test]
    fn softmax_probabilities_sum_to_one_within_rounding_and_ties_share_the_top() {
        let s = softmax(&[3 << 32, 3 << 32, -(40i64 << 32)]);
        assert_eq!(s.top, 0);
        assert!(s.exps[0].top && s.exps[1].top && s.exps[2].below);
        assert_eq!(s.sum, 2 * ONE);
        assert_eq!(s.probabilities, vec![ONE / 2, ONE / 2, 0]);
        let s = softmax(&[0, 1 << 32, -(1i64 << 31)]);
        let total: i64 = s.probabilities.iter().sum();
        assert!((ONE - 3..=ONE).contains(&total), "{total}");
        let real = [0.0f64, 1.0, -0.5].map(f64::exp);
        let z: f64 = real.iter().sum();
        for (p, e) in s.probabilities.iter().zip(real) {
            assert!((*p as f64 / ONE as f64 - e / z).abs() < 3e-4, "{s:?}");
        }
        for (k, (e, p)) in s.exps.iter().zip(&s.probabilities).enumerate() {
            assert_eq!(e.value * ONE, p * s.sum + s.remainders[k]);
            assert!((0..s.sum).contains(&s.remainders[k]));
        }
    }

    #[test]
    fn the_step_from_the_step_tables_inputs_equals_the_step_from_the_row() {
        // What the softmax step table receives (logits, Σx² + ONE², label) determines the
        // whole step, clipped or kept.
        let spec = ModelSpec::Softmax { classes: 3 };
        let params = softmax_params(&[[ONE, 0, 0], [0, ONE, ONE], [-ONE, -ONE, ONE / 2]]);
        let layers = layers(&spec, 2, &params).unwrap();
        let x = [3 * ONE, -ONE / 2];
        for (label, clip) in [(0, ONE / 4), (2, 1000 * ONE)] {
            let step = network_step(&layers, spec.head(), &x, label, clip).unwrap();
            let input_sq = x.iter().map(|v| v * v).sum::<i64>() + ONE * ONE;
            let from_sums = softmax_layer_step(step.logits.clone(), input_sq, label, clip);
            assert_eq!(from_sums, Ok(step));
        }
    }

    #[test]
    fn relu_pieces_meet_at_zero_and_the_cap() {
        assert_eq!(relu(-1).case, ReluCase::Negative);
        assert_eq!(relu(0).case, ReluCase::Linear);
        assert_eq!(relu(HIDDEN_CAP << 16).value, HIDDEN_CAP);
        assert_eq!(relu(HIDDEN_CAP << 16).case, ReluCase::Linear);
        assert_eq!(relu((HIDDEN_CAP + 1) << 16).case, ReluCase::Capped);
        assert_eq!(relu((HIDDEN_CAP + 1) << 16).value, HIDDEN_CAP);
        let h = relu(-12345 * ONE - 7);
        assert_eq!(h.quotient * ONE + h.remainder, h.pre_activation);
        assert!((0..ONE).contains(&h.remainder));
    }

    #[test]
    fn softmax_clipping_bounds_the_whole_gradient() {
        let spec = ModelSpec::Softmax { classes: 3 };
        let params = softmax_params(&[[ONE, 0, 0], [0, ONE, 0], [-ONE, -ONE, ONE / 2]]);
        let layers = layers(&spec, 2, &params).unwrap();
        let x = [3 * ONE, -4 * ONE];
        let clip = ONE / 2;
        let step = network_step(&layers, spec.head(), &x, 1, clip).unwrap();
        assert!(step.clipped);
        // ||c ⊗ (x, 1)||² ≤ C² exactly, at scale 2^64.
        let c_sq: i128 = step.coefficients[0]
            .iter()
            .map(|&c| (c as i128).pow(2))
            .sum();
        let x_sq: i128 = x.iter().map(|&v| (v as i128).pow(2)).sum::<i128>() + (ONE as i128).pow(2);
        assert!(c_sq * x_sq <= (clip as i128 * ONE as i128).pow(2) * (ONE as i128).pow(2));
        // signs follow the residuals: negative only for the label's class.
        for (k, (&c, &r)) in step.coefficients[0].iter().zip(&step.residuals).enumerate() {
            assert_eq!(c.signum(), r.signum(), "class {k}");
        }
        assert!(step.residuals[1] < 0);
        let kept = network_step(&layers, spec.head(), &x, 1, 1000 * ONE).unwrap();
        assert!(!kept.clipped);
        assert_eq!(kept.coefficients[0], kept.residuals);
    }

    #[test]
    fn mlp_backpropagates_through_linear_units_only() {
        let spec = ModelSpec::Mlp {
            hidden: 2,
            outputs: 2,
        };
        // Hidden: h0 = relu(x0), h1 = relu(-x0); output: z0 = h0 - h1, z1 = 0.
        let params = vec![ONE, 0, -ONE, 0, 0, 0, ONE, -ONE, 0, 0, 0, 0];
        let layers = layers(&spec, 2, &params).unwrap();
        let step = network_step(&layers, spec.head(), &[2 * ONE, 5 * ONE], 0, 1000 * ONE).unwrap();
        assert_eq!(step.hidden[0].case, ReluCase::Linear);
        assert_eq!(step.hidden[1].case, ReluCase::Negative);
        assert_eq!(step.hidden[0].value, 2 * ONE);
        assert_eq!(step.hidden_back[1].delta, 0);
        // δ0 = W2[0][0]·r0 + W2[1][0]·r1 = r0 (scale 2^16).
        assert_eq!(step.hidden_back[0].delta, step.residuals[0]);
        assert_eq!(step.coefficients.len(), 2);
        assert!(!step.clipped);
        assert_eq!(step.norm, {
            let a: Vec<i64> = step.norms.iter().map(|n| n.bound).collect();
            ceil_sqrt(a.iter().map(|a| a * a).sum())
        });
    }

    #[test]
    fn gradient_sum_follows_the_parameter_layout() {
        let spec = ModelSpec::Softmax { classes: 2 };
        let params = softmax_params(&[[ONE, 0, 0], [0, 0, 0]]);
        let x = [ONE, 2 * ONE];
        let sum = network_gradient_sum(&spec, &params, 2, [(&x[..], 0)], 1000 * ONE).unwrap();
        let layers = layers(&spec, 2, &params).unwrap();
        let step = network_step(&layers, spec.head(), &x, 0, 1000 * ONE).unwrap();
        let c = &step.coefficients[0];
        assert_eq!(
            sum.values,
            vec![
                c[0] * ONE,
                c[0] * 2 * ONE,
                c[1] * ONE,
                c[1] * 2 * ONE,
                c[0] * ONE,
                c[1] * ONE
            ]
        );
        assert_eq!(sum.examples, 1);
    }

    #[test]
    fn bad_inputs_are_refused_without_their_values() {
        let spec = ModelSpec::Softmax { classes: 3 };
        let params = vec![0; 9];
        let err = network_gradient_sum(&spec, &params, 2, [(&[0, 0][..], 3)], ONE).unwrap_err();
        assert_eq!(err, ShapeError::LabelOutOfRange { classes: 3 });
        let err = network_gradient_sum(&spec, &params[..8], 2, [], ONE).unwrap_err();
        assert!(matches!(err, ShapeError::ParameterCount { .. }));
        let mut big = params.clone();
        big[4] = PARAM_BOUND;
        let err = network_gradient_sum(&spec, &big, 2, [], ONE).unwrap_err();
        assert!(matches!(
            err,
            ShapeError::ParameterOutOfRange { index: 4, .. }
        ));
        let err =
            network_gradient_sum(&spec, &params, 2, [(&[4_345_678, 0][..], 1)], ONE).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("4345678"), "{err:?}");
    }

    #[test]
    fn absurd_hidden_deltas_are_beyond_the_proof() {
        let spec = ModelSpec::Mlp {
            hidden: 1,
            outputs: 2,
        };
        // h = relu(x0) in its linear range; W2 = ±(2^24 - 1) makes δ ≈ 2^24·r.
        let w = PARAM_BOUND - 1;
        let params = vec![ONE, 0, w, -w, 0, 0];
        let err = network_gradient_sum(&spec, &params, 1, [(&[ONE][..], 1)], ONE).unwrap_err();
        assert_eq!(
            err,
            ShapeError::Intermediate {
                what: "hidden delta"
            }
        );
    }
}
