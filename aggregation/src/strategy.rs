//! Server strategies over verified updates, in integer arithmetic so that every
//! coordinator and auditor computes the same model bit for bit.
//!
//! Every strategy starts from the updates' pseudo-gradients. An update `U_k` is a
//! clipped-gradient sum over `n_k` proven examples at scale `2^32`; participant `k`'s mean
//! gradient is `g_k = round(U_k / (n_k·2^16))` and the pooled one
//! `ḡ = round(Σ U_k / (Σ n_k·2^16))`, both at scale `2^16` (rounded to nearest, ties away
//! from zero). With one local step per round a client's model delta is `-lr·g_k`, so the
//! server rules of Reddi et al. ("Adaptive Federated Optimization", 2021) apply to `ḡ`:
//!
//! | strategy | state | step |
//! |---|---|---|
//! | FedAvg | none | `w ← w - lr·ḡ` ([`crate::fedavg_step`], one rounding) |
//! | FedAvgM (β) | `m` | `m ← β·m + ḡ`, `w ← w - lr·m` |
//! | FedAdagrad (η, τ) | `v` | `v ← v + ḡ²`, `w ← w - η·ḡ / (√v + τ)` |
//! | FedAdam (η, β1, β2, τ) | `m`, `v` | `m ← β1·m + (1-β1)·ḡ`, `v ← β2·v + (1-β2)·ḡ²`, `w ← w - η·m / (√v + τ)` |
//! | FedYogi (η, β1, β2, τ) | `m`, `v` | as Adam but `v ← v - (1-β2)·ḡ²·sign(v - ḡ²)` |
//! | median | none | `w ← w - lr·median_k(g_k)` per coordinate |
//! | trimmed mean (β) | none | `w ← w - lr·mean(g_k)` over the `K - 2·round(βK)` middle values per coordinate |
//! | Krum (f), Multi-Krum (f, m) | none | the `m` updates with the smallest Krum scores (the sum of squared distances to their `K - f - 2` nearest), then FedAvg over them (Krum: `m = 1`) |
//!
//! Hyper-parameters are fixed point at scale `2^16` (so `τ` is at least `2^-16`: Reddi et
//! al.'s `10^-3` for Yogi is 66 units, Flower's `10^-9` becomes `2^-16`). `m` and `v` are
//! kept at scale `2^32` (so `ḡ²` is exact, and `m` resolves `(1-β1)·ḡ` for the smallest
//! `ḡ`); products are taken in `i128`. The momentum's terms (`β·m`, `(1-β1)·ḡ`) are
//! truncated toward zero, so a momentum that gets no new gradient reaches zero as the real
//! one tends to it (rounded to nearest, `0.9·4` would stay 4 and step forever). In the adaptive rules every other rounding errs toward
//! the smaller step: `v`'s terms rounded up where they raise it and down where they lower
//! it (so Adam's `v` is never below the real one) and `√v` rounded up; the step
//! `η·m / (√v + τ)` is rounded to nearest.
//! Krum with `m` selected needs `K ≥ max(2f + 3, m + f)` ([`Strategy::admits`]).
//!
//! FedProx is not here: with one local step the proximal term is zero where the gradient is
//! taken (the client's model is the global one), so FedProx equals FedAvg.

use std::fmt;

use serde::{Deserialize, Serialize};
use zkfed_air::fixed::{FRAC_BITS, ONE, PARAM_BOUND};
use zkfed_air::{ClippedGradientSum, Model};

use crate::{AggregationError, div_round, fedavg_step};

/// The most one round may move a parameter ([`Strategy::largest_step`]), so that one honest
/// round stays a small part of the model's ±256 range: the coordinator's configuration and
/// the participants refuse runs beyond it.
pub const MAX_STEP: f64 = 16.0;

/// A server strategy and its hyper-parameters (fixed point at scale `2^16`).
///
/// It is public (in the run parameters and the audit log's first record), so values
/// decoded from bytes are checked with [`Strategy::validate`] before use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Federated averaging weighted by proven example counts.
    #[default]
    FedAvg,
    /// FedAvg with server momentum `beta`.
    FedAvgM {
        /// Momentum.
        beta: i64,
    },
    /// Adaptive server step with a running sum of squares.
    FedAdagrad(Adaptive),
    /// Adam on the server.
    FedAdam(Adaptive),
    /// Yogi on the server.
    FedYogi(Adaptive),
    /// Coordinate-wise median of the participants' mean gradients.
    Median,
    /// Coordinate-wise mean after dropping the `round(β·K)` largest and smallest values.
    TrimmedMean {
        /// Fraction trimmed at each end, below one half.
        beta: i64,
    },
    /// FedAvg over the `select` updates with the smallest Krum scores (`select = 1`:
    /// Krum) for at most `byzantine` Byzantine participants.
    MultiKrum {
        /// Assumed Byzantine participants `f`.
        byzantine: u32,
        /// Updates averaged `m`.
        select: u32,
    },
}

/// The hyper-parameters of the adaptive strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adaptive {
    /// Server learning rate `η`.
    pub eta: i64,
    /// First-moment decay `β1` (unused by Adagrad).
    pub beta1: i64,
    /// Second-moment decay `β2` (unused by Adagrad).
    pub beta2: i64,
    /// Adaptivity `τ`, at least `2^-16`.
    pub tau: i64,
}

impl Adaptive {
    /// Reddi et al.'s and Flower's defaults: `η = 0.1`, `β1 = 0.9`, `β2 = 0.99`, and `τ`
    /// `10^-9` (Adagrad, Adam: `2^-16` here) or `10^-3` (Yogi, with `η = 0.01`).
    pub fn defaults_for(yogi: bool) -> Self {
        Self {
            eta: if yogi { fixed(0.01) } else { fixed(0.1) },
            beta1: fixed(0.9),
            beta2: fixed(0.99),
            tau: if yogi { fixed(1e-3) } else { 1 },
        }
    }
}

fn fixed(v: f64) -> i64 {
    zkfed_air::fixed::quantize(v)
}

impl Strategy {
    /// The strategy named `NAME[:KEY=VALUE,...]` on a command line or in a configuration:
    /// `fedavg`, `fedavgm` (`beta`, default 0.9), `fedadagrad`, `fedadam` and `fedyogi`
    /// (`eta`, `beta1`, `beta2`, `tau`; defaults [`Adaptive::defaults_for`]), `median`,
    /// `trimmed-mean` (`beta`, default 0.2), `krum` (`f`, default 1) and `multi-krum` (`f`,
    /// default 1, and `m`, default 2).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, args) = text.split_once(':').unwrap_or((text, ""));
        let mut params = Params::parse(args)?;
        let strategy = match name {
            "fedavg" => Self::FedAvg,
            "fedavgm" => Self::FedAvgM {
                beta: params.fraction("beta", 0.9, 1.0)?,
            },
            "fedadagrad" | "fedadam" | "fedyogi" => {
                let d = Adaptive::defaults_for(name == "fedyogi");
                let a = Adaptive {
                    eta: params.positive("eta", d.eta)?,
                    beta1: params.fraction("beta1", real(d.beta1), 1.0)?,
                    beta2: params.fraction("beta2", real(d.beta2), 1.0)?,
                    tau: params.positive("tau", d.tau)?,
                };
                match name {
                    "fedadagrad" => Self::FedAdagrad(a),
                    "fedadam" => Self::FedAdam(a),
                    _ => Self::FedYogi(a),
                }
            }
            "median" => Self::Median,
            "trimmed-mean" => Self::TrimmedMean {
                beta: params.fraction("beta", 0.2, 0.5)?,
            },
            "krum" | "multi-krum" => Self::MultiKrum {
                byzantine: params.count("f", 1)?,
                select: match name {
                    "krum" => 1,
                    _ => params.count("m", 2)?.max(1),
                },
            },
            _ => {
                return Err(format!(
                    "unknown strategy `{name}`: expected fedavg, fedavgm, fedadagrad, fedadam, \
                     fedyogi, median, trimmed-mean, krum or multi-krum"
                ));
            }
        };
        params.finish(name)?;
        // The ranges were checked on the reals; quantizing may reach a bound (0.999995 → 1).
        strategy.validate()?;
        Ok(strategy)
    }
}

impl Strategy {
    /// Whether the rule can aggregate `k` accepted updates; if not, how many it needs.
    /// Krum's guarantee (Blanchard et al., 2017) holds for `K ≥ 2f + 3`, and Multi-Krum's
    /// `m` must leave `f` out (`K ≥ m + f`), so fewer are refused rather than aggregated
    /// without the guarantee.
    pub fn admits(&self, k: usize) -> Result<(), AggregationError> {
        let need = match *self {
            Self::TrimmedMean { beta } => 2 * trimmed(beta, k) + 1,
            // Blanchard et al.'s K > 2f + 2; and the m selected must leave out f updates, or
            // a Byzantine one is always among them.
            Self::MultiKrum { byzantine, select } => {
                (2 * byzantine as usize + 3).max(select as usize + byzantine as usize)
            }
            _ => 1,
        };
        match k >= need {
            true => Ok(()),
            false => Err(AggregationError::TooFew { need, got: k }),
        }
    }

    /// The most one round may move a parameter, for updates clipped to `clip_norm` (both
    /// arguments fixed point): `lr·C` for FedAvg, the median, the trimmed mean and Krum
    /// (each steps by `lr` times a value within the clipped gradients' range); `lr·C/(1-β)`
    /// for FedAvgM (its momentum sums a geometric series); `η` for Adagrad (`v ≥ ḡ²`); and
    /// `η·(1-β1) / (√(1-β2)·(1-β1/√β2))` for Adam and for Yogi with `β2 ≥ 1/2` (`v` keeps
    /// at least `(1-β2)·β2^t·ḡ_s²` of every past gradient, which bounds `|m|/√v`), unbounded
    /// when `β1 ≥ √β2`. Infinite for anything that is not a finite, non-negative bound (a
    /// negative learning rate, say).
    pub fn largest_step(&self, learning_rate: i64, clip_norm: i64) -> f64 {
        let step = self.step_bound(real(learning_rate), real(clip_norm));
        match step.is_finite() && step >= 0.0 {
            true => step,
            false => f64::INFINITY,
        }
    }

    fn step_bound(&self, lr: f64, c: f64) -> f64 {
        match *self {
            Self::FedAvgM { beta } => lr * c / (1.0 - real(beta)),
            Self::FedAdagrad(a) => real(a.eta),
            Self::FedAdam(a) | Self::FedYogi(a) => {
                let (b1, b2) = (real(a.beta1), real(a.beta2));
                // Yogi keeps a round's own share `(1-β2)·ḡ²` in `v` only for β2 ≥ 1/2 (when
                // `v > ḡ²` it falls to at least `β2·ḡ²`); below, the bound is not shown.
                let unshown = matches!(self, Self::FedYogi(_)) && b2 < 0.5;
                match b1 < b2.sqrt() && !unshown {
                    true => real(a.eta) * (1.0 - b1) / ((1.0 - b2).sqrt() * (1.0 - b1 / b2.sqrt())),
                    false => f64::INFINITY,
                }
            }
            _ => lr * c,
        }
    }

    /// Whether the rule can aggregate every count of updates from `quorum` to `peers` (the
    /// allow-list): then an attempt that met its quorum can always be aggregated.
    pub fn admits_from(&self, quorum: usize, peers: usize) -> Result<(), AggregationError> {
        (quorum..=peers).try_for_each(|k| self.admits(k))
    }

    /// Hyper-parameters in the ranges [`Strategy::parse`] produces: fractions in `[0, 1)`
    /// (`[0, 1/2)` for the trimmed mean), `η` and `τ` in `[2^-16, 256)`, `1 ≤ m < 2^16`
    /// and `f < 2^16`. Bytes from a log or the network may say anything else.
    pub fn validate(&self) -> Result<(), String> {
        let fraction = |key: &str, v: i64, below: i64| match (0..below).contains(&v) {
            true => Ok(()),
            false => Err(format!(
                "`{key}` must be at least 0 and below {}",
                real(below)
            )),
        };
        let positive = |key: &str, v: i64| match (1..256 * ONE).contains(&v) {
            true => Ok(()),
            false => Err(format!("`{key}` must be at least 2^-16 and below 256")),
        };
        match *self {
            Self::FedAvg | Self::Median => Ok(()),
            Self::FedAvgM { beta } => fraction("beta", beta, ONE),
            Self::FedAdagrad(a) | Self::FedAdam(a) | Self::FedYogi(a) => {
                positive("eta", a.eta)?;
                fraction("beta1", a.beta1, ONE)?;
                fraction("beta2", a.beta2, ONE)?;
                positive("tau", a.tau)
            }
            Self::TrimmedMean { beta } => fraction("beta", beta, ONE / 2),
            Self::MultiKrum { byzantine, select } => {
                match byzantine < 1 << 16 && (1..1 << 16).contains(&select) {
                    true => Ok(()),
                    false => Err("`f` must be below 65536 and `m` from 1 to 65535".into()),
                }
            }
        }
    }
}

/// The canonical `NAME:KEY=VALUE,...` form, which [`Strategy::parse`] reads back to the
/// same strategy.
impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::FedAvg => write!(f, "fedavg"),
            Self::FedAvgM { beta } => write!(f, "fedavgm:beta={}", Short(beta)),
            Self::FedAdagrad(a) | Self::FedAdam(a) | Self::FedYogi(a) => {
                let name = match self {
                    Self::FedAdagrad(_) => "fedadagrad",
                    Self::FedAdam(_) => "fedadam",
                    _ => "fedyogi",
                };
                write!(
                    f,
                    "{name}:eta={},beta1={},beta2={},tau={}",
                    Short(a.eta),
                    Short(a.beta1),
                    Short(a.beta2),
                    Short(a.tau)
                )
            }
            Self::Median => write!(f, "median"),
            Self::TrimmedMean { beta } => write!(f, "trimmed-mean:beta={}", Short(beta)),
            Self::MultiKrum {
                byzantine,
                select: 1,
            } => write!(f, "krum:f={byzantine}"),
            Self::MultiKrum { byzantine, select } => {
                write!(f, "multi-krum:f={byzantine},m={select}")
            }
        }
    }
}

/// A fixed-point value as the shortest decimal that quantizes back to it (0.1, not
/// 0.100006103515625).
struct Short(i64);

impl fmt::Display for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exact = real(self.0);
        let text = (1..=16)
            .map(|digits| format!("{exact:.digits$}"))
            .find(|t| t.parse().is_ok_and(|v: f64| fixed(v) == self.0))
            // k/2^16 has at most 16 decimals, so 16 always parses back.
            .unwrap_or_else(|| format!("{exact:.16}"));
        let trimmed = text.trim_end_matches('0').trim_end_matches('.');
        f.write_str(if trimmed.is_empty() { "0" } else { trimmed })
    }
}

/// Values cut at each end by the trimmed mean: `βK` rounded to nearest, since `β` is
/// quantized to `2^-16` (0.2 is 13107/65536) and a floor would cut nothing where
/// `0.2·5 = 1` means one.
fn trimmed(beta: i64, k: usize) -> usize {
    div_round(i128::from(beta) * k as i128, i128::from(ONE)).max(0) as usize
}

fn real(v: i64) -> f64 {
    zkfed_air::fixed::dequantize(v)
}

/// `KEY=VALUE` pairs, taken one by one; what is left over is an error.
struct Params(Vec<(String, f64)>);

impl Params {
    fn parse(args: &str) -> Result<Self, String> {
        let pairs = args
            .split(',')
            .filter(|a| !a.is_empty())
            .map(|pair| {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("`{pair}` is not KEY=VALUE"))?;
                let v: f64 = value
                    .parse()
                    .map_err(|_| format!("`{key}` is not a number"))?;
                match v.is_finite() {
                    true => Ok((key.to_string(), v)),
                    false => Err(format!("`{key}` is not finite")),
                }
            })
            .collect::<Result<_, String>>()?;
        Ok(Self(pairs))
    }

    fn take(&mut self, key: &str) -> Option<f64> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }

    /// A value in `[0, below)`, at scale `2^16`.
    fn fraction(&mut self, key: &str, default: f64, below: f64) -> Result<i64, String> {
        let v = self.take(key).unwrap_or(default);
        match (0.0..below).contains(&v) {
            true => Ok(fixed(v)),
            false => Err(format!("`{key}` must be at least 0 and below {below}")),
        }
    }

    /// A positive value of at least `2^-16` and below 256, at scale `2^16` (a fixed-point
    /// `default` as is).
    fn positive(&mut self, key: &str, default: i64) -> Result<i64, String> {
        let Some(v) = self.take(key) else {
            return Ok(default);
        };
        match v > 0.0 && v < 256.0 {
            true => Ok(fixed(v).max(1)),
            false => Err(format!("`{key}` must be above 0 and below 256")),
        }
    }

    /// A whole number below 2^16.
    fn count(&mut self, key: &str, default: u32) -> Result<u32, String> {
        let Some(v) = self.take(key) else {
            return Ok(default);
        };
        match v.fract() == 0.0 && (0.0..65536.0).contains(&v) {
            true => Ok(v as u32),
            false => Err(format!("`{key}` must be a whole number below 65536")),
        }
    }

    fn finish(self, name: &str) -> Result<(), String> {
        match self.0.first() {
            Some((key, _)) => Err(format!("`{name}` takes no `{key}`")),
            None => Ok(()),
        }
    }
}

/// A strategy's state between rounds: moments at scale `2^32`, empty for the strategies
/// that keep none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerState {
    /// First moment (momentum), scale `2^32`.
    #[serde(deserialize_with = "zkfed_air::bounded::params")]
    pub momentum: Vec<i64>,
    /// Second moment, scale `2^32`.
    #[serde(deserialize_with = "zkfed_air::bounded::params")]
    pub second: Vec<i64>,
}

/// One server step: the next model and state from the verified updates.
pub fn aggregate(
    strategy: Strategy,
    model: &Model,
    state: &ServerState,
    updates: &[ClippedGradientSum],
    learning_rate: i64,
) -> Result<(Model, ServerState), AggregationError> {
    if let Strategy::FedAvg = strategy {
        return Ok((fedavg_step(model, updates, learning_rate)?, state.clone()));
    }
    let n = model.params.len();
    check_updates(updates, n)?;
    strategy.admits(updates.len())?;
    let (steps, state): (Vec<i64>, ServerState) = match strategy {
        Strategy::FedAvg
        | Strategy::FedAvgM { .. }
        | Strategy::FedAdagrad(_)
        | Strategy::FedAdam(_)
        | Strategy::FedYogi(_) => {
            let g = pooled_gradient(updates, n);
            return gradient_step(strategy, model, state, &g, learning_rate);
        }
        Strategy::Median => {
            let per = participant_gradients(updates);
            let steps = (0..n)
                .map(|j| scale(learning_rate, median(per.iter().map(|g| g[j]).collect())))
                .collect();
            (steps, ServerState::default())
        }
        Strategy::TrimmedMean { beta } => {
            let per = participant_gradients(updates);
            let cut = trimmed(beta, per.len());
            let steps = (0..n)
                .map(|j| {
                    let mut column: Vec<i64> = per.iter().map(|g| g[j]).collect();
                    column.sort_unstable();
                    let kept = &column[cut..column.len() - cut];
                    let sum: i128 = kept.iter().map(|&v| i128::from(v)).sum();
                    scale(learning_rate, div_round(sum, kept.len() as i128) as i64)
                })
                .collect();
            (steps, ServerState::default())
        }
        Strategy::MultiKrum { byzantine, select } => {
            let chosen = krum_selection(updates, byzantine as usize, select as usize)?;
            let picked: Vec<ClippedGradientSum> =
                chosen.iter().map(|&k| updates[k].clone()).collect();
            return Ok((fedavg_step(model, &picked, learning_rate)?, state.clone()));
        }
    };
    Ok((apply(model, &steps)?, state))
}

/// Whether the rule steps from the mean gradient alone (so it can take a private run's
/// noised mean); the robust rules need each participant's update.
pub fn is_mean_based(strategy: Strategy) -> bool {
    matches!(
        strategy,
        Strategy::FedAvg
            | Strategy::FedAvgM { .. }
            | Strategy::FedAdagrad(_)
            | Strategy::FedAdam(_)
            | Strategy::FedYogi(_)
    )
}

/// One server step of a mean-based rule from the mean gradient `g` (scale 2^16): FedAvg's
/// `w − lr·g`, or the momentum and adaptive rules' steps and moments.
pub fn gradient_step(
    strategy: Strategy,
    model: &Model,
    state: &ServerState,
    g: &[i64],
    learning_rate: i64,
) -> Result<(Model, ServerState), AggregationError> {
    let n = model.params.len();
    if g.len() != n {
        return Err(AggregationError::Shape {
            expected: n,
            got: g.len(),
        });
    }
    let (steps, state) = match strategy {
        Strategy::FedAvg => {
            let steps = g.iter().map(|&g| scale(learning_rate, g)).collect();
            (steps, state.clone())
        }
        Strategy::FedAvgM { beta } => {
            let momentum: Vec<i64> = moment(&state.momentum, n)
                .zip(g)
                .map(|(m, &g)| decay(beta, m) + (g << FRAC_BITS))
                .collect();
            let steps = momentum
                .iter()
                .map(|&m| {
                    let step = i128::from(learning_rate) * i128::from(m);
                    div_round(step, i128::from(ONE) << FRAC_BITS) as i64
                })
                .collect();
            let state = ServerState {
                momentum,
                second: Vec::new(),
            };
            (steps, state)
        }
        Strategy::FedAdagrad(a) | Strategy::FedAdam(a) | Strategy::FedYogi(a) => {
            adaptive(strategy, a, state, g)
        }
        Strategy::Median | Strategy::TrimmedMean { .. } | Strategy::MultiKrum { .. } => {
            return Err(AggregationError::NotMeanBased);
        }
    };
    Ok((apply(model, &steps)?, state))
}

/// The adaptive rules: returns each parameter's step and the new moments.
fn adaptive(
    strategy: Strategy,
    a: Adaptive,
    state: &ServerState,
    g: &[i64],
) -> (Vec<i64>, ServerState) {
    let n = g.len();
    let one = i128::from(ONE);
    let second: Vec<i64> = moment(&state.second, n)
        .zip(g)
        .map(|(v, &g)| {
            let sq = i128::from(g) * i128::from(g);
            let v = i128::from(v);
            // Every term rounded so that `v` errs large and the step small: Adam's `v` is
            // then never below the real one. A `v` that stops decaying at a few units only
            // damps the step; the momentum is what must reach zero.
            let share = (one - i128::from(a.beta2)) * sq;
            let next = match strategy {
                Strategy::FedAdagrad(_) => v + sq,
                Strategy::FedAdam(_) => {
                    ceil_div(i128::from(a.beta2) * v, one) + ceil_div(share, one)
                }
                _ if v < sq => v + ceil_div(share, one),
                _ if v > sq => v - share / one,
                _ => v,
            };
            next.clamp(0, i128::from(i64::MAX)) as i64
        })
        .collect();
    let momentum: Vec<i64> = match strategy {
        Strategy::FedAdagrad(_) => g.iter().map(|&g| g << FRAC_BITS).collect(),
        _ => moment(&state.momentum, n)
            .zip(g)
            .map(|(m, &g)| decay(a.beta1, m) + decay(ONE - a.beta1, g << FRAC_BITS))
            .collect(),
    };
    let steps = momentum
        .iter()
        .zip(&second)
        .map(|(&m, &v)| {
            // `√v` rounded up: the step errs small.
            let root = i128::from(isqrt(v));
            let root = root + i128::from(root * root < i128::from(v));
            let denominator = (root + i128::from(a.tau.max(1))) << FRAC_BITS;
            div_round(i128::from(a.eta) * i128::from(m), denominator) as i64
        })
        .collect();
    let state = ServerState {
        momentum: match strategy {
            Strategy::FedAdagrad(_) => Vec::new(),
            _ => momentum,
        },
        second,
    };
    (steps, state)
}

/// The stored moment, or zeros for the first round.
fn moment(stored: &[i64], n: usize) -> impl Iterator<Item = i64> + '_ {
    stored.iter().copied().chain(std::iter::repeat(0)).take(n)
}

/// `β·m` for a fraction `β < 1`, truncated toward zero: a moment that gets no new gradient
/// shrinks every round until it is zero, as the real one tends to zero. Rounded to nearest
/// it would stick (0.9·4 rounds to 4) and keep stepping forever.
fn decay(beta: i64, m: i64) -> i64 {
    (i128::from(beta) * i128::from(m) / i128::from(ONE)) as i64
}

/// `⌈a / b⌉` for `a ≥ 0`, `b > 0`.
fn ceil_div(a: i128, b: i128) -> i128 {
    (a + b - 1) / b
}

/// `round(a·b / 2^16)` for fixed-point `a` and `b`.
fn scale(a: i64, b: i64) -> i64 {
    div_round(i128::from(a) * i128::from(b), i128::from(ONE)) as i64
}

/// `floor(√v)`, exact (`v ≥ 0`).
pub fn isqrt(v: i64) -> i64 {
    if v <= 0 {
        return 0;
    }
    // The f64 estimate is within a few units; the squares are compared in i128, since
    // `(r + 1)²` may pass `i64::MAX` near the top of the range.
    let (v, mut r) = (i128::from(v), (v as f64).sqrt() as i128);
    while r * r > v {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= v {
        r += 1;
    }
    r as i64
}

fn check_updates(updates: &[ClippedGradientSum], n: usize) -> Result<(), AggregationError> {
    if updates.is_empty() || updates.iter().any(|u| u.examples == 0) {
        return Err(AggregationError::Empty);
    }
    match updates.iter().find(|u| u.values.len() != n) {
        Some(u) => Err(AggregationError::Shape {
            expected: n,
            got: u.values.len(),
        }),
        None => Ok(()),
    }
}

/// `ḡ = round(Σ U_k / (Σ n_k·2^16))` per parameter.
fn pooled_gradient(updates: &[ClippedGradientSum], n: usize) -> Vec<i64> {
    let examples: i128 = updates.iter().map(|u| i128::from(u.examples)).sum();
    (0..n)
        .map(|j| {
            let sum: i128 = updates.iter().map(|u| i128::from(u.values[j])).sum();
            div_round(sum, examples << FRAC_BITS) as i64
        })
        .collect()
}

/// Each participant's `g_k = round(U_k / (n_k·2^16))`.
fn participant_gradients(updates: &[ClippedGradientSum]) -> Vec<Vec<i64>> {
    updates
        .iter()
        .map(|u| pooled_gradient(std::slice::from_ref(u), u.values.len()))
        .collect()
}

/// The median; for an even count the rounded mean of the two middle values.
fn median(mut values: Vec<i64>) -> i64 {
    values.sort_unstable();
    let k = values.len();
    match k % 2 {
        1 => values[k / 2],
        _ => div_round(i128::from(values[k / 2 - 1]) + i128::from(values[k / 2]), 2) as i64,
    }
}

/// The indices of the `select` updates with the smallest Krum scores (ties: the lower
/// index), each score the sum of squared distances from `g_k` to its `K - f - 2` nearest
/// other gradients.
fn krum_selection(
    updates: &[ClippedGradientSum],
    byzantine: usize,
    select: usize,
) -> Result<Vec<usize>, AggregationError> {
    let per = participant_gradients(updates);
    let k = per.len();
    let distance = |a: &[i64], b: &[i64]| -> i128 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (i128::from(x) - i128::from(y)).pow(2))
            .sum()
    };
    let neighbours = k - byzantine - 2;
    let mut scores: Vec<(i128, usize)> = (0..k)
        .map(|i| {
            let mut d: Vec<i128> = (0..k)
                .filter(|&j| j != i)
                .map(|j| distance(&per[i], &per[j]))
                .collect();
            d.sort_unstable();
            (d[..neighbours].iter().sum(), i)
        })
        .collect();
    scores.sort_unstable();
    Ok(scores[..select].iter().map(|&(_, i)| i).collect())
}

/// `w - step` per parameter, within the range the proofs support.
fn apply(model: &Model, steps: &[i64]) -> Result<Model, AggregationError> {
    let params = model
        .params
        .iter()
        .zip(steps)
        .enumerate()
        .map(|(index, (&w, &s))| {
            let value = i128::from(w) - i128::from(s);
            if value.unsigned_abs() >= PARAM_BOUND as u128 {
                return Err(AggregationError::OutOfRange { index });
            }
            Ok(value as i64)
        })
        .collect::<Result<_, _>>()?;
    Ok(Model {
        params,
        ..model.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    use zkfed_air::spec::ModelSpec;

    const N: usize = 21;

    fn model() -> Model {
        Model::zeros(ModelSpec::Logistic, N - 1)
    }

    fn rules(texts: &[&str]) -> Vec<Strategy> {
        texts.iter().map(|t| Strategy::parse(t).unwrap()).collect()
    }

    /// `K` updates whose per-example mean gradients are the given reals.
    fn updates_of(gradients: &[Vec<f64>], examples: &[u64]) -> Vec<ClippedGradientSum> {
        gradients
            .iter()
            .zip(examples)
            .map(|(g, &n)| ClippedGradientSum {
                values: g
                    .iter()
                    .map(|&v| (v * n as f64 * (1u64 << 32) as f64).round() as i64)
                    .collect(),
                examples: n,
            })
            .collect()
    }

    fn random_round(rng: &mut StdRng, k: usize) -> (Vec<Vec<f64>>, Vec<u64>) {
        let gradients = (0..k)
            .map(|_| (0..N).map(|_| rng.random_range(-1.0..1.0)).collect())
            .collect();
        let examples = (0..k).map(|_| rng.random_range(8..33)).collect();
        (gradients, examples)
    }

    /// The f64 rule of each strategy over the participants' real mean gradients.
    struct Reference {
        w: Vec<f64>,
        m: Vec<f64>,
        v: Vec<f64>,
    }

    impl Reference {
        fn new() -> Self {
            Self {
                w: vec![0.0; N],
                m: vec![0.0; N],
                v: vec![0.0; N],
            }
        }

        // `j` indexes the model, both moments and every participant's gradient at once.
        #[allow(clippy::needless_range_loop)]
        fn step(&mut self, strategy: Strategy, g: &[Vec<f64>], n: &[u64], lr: f64) {
            let chosen: Vec<usize> = match strategy {
                Strategy::MultiKrum { byzantine, select } => {
                    krum_f64(g, byzantine as usize, select as usize)
                }
                _ => (0..g.len()).collect(),
            };
            let total: f64 = chosen.iter().map(|&k| n[k] as f64).sum();
            let pooled: Vec<f64> = (0..N)
                .map(|j| chosen.iter().map(|&k| g[k][j] * n[k] as f64).sum::<f64>() / total)
                .collect();
            let column = |j: usize| {
                let mut c: Vec<f64> = g.iter().map(|g| g[j]).collect();
                c.sort_by(f64::total_cmp);
                c
            };
            for j in 0..N {
                let step = match strategy {
                    Strategy::FedAvg | Strategy::MultiKrum { .. } => lr * pooled[j],
                    Strategy::FedAvgM { beta } => {
                        self.m[j] = real(beta) * self.m[j] + pooled[j];
                        lr * self.m[j]
                    }
                    Strategy::FedAdagrad(a) | Strategy::FedAdam(a) | Strategy::FedYogi(a) => {
                        let (b1, b2, g) = (real(a.beta1), real(a.beta2), pooled[j]);
                        let v = self.v[j];
                        self.v[j] = match strategy {
                            Strategy::FedAdagrad(_) => v + g * g,
                            Strategy::FedAdam(_) => b2 * v + (1.0 - b2) * g * g,
                            _ => v - (1.0 - b2) * g * g * (v - g * g).signum(),
                        };
                        let m = match strategy {
                            Strategy::FedAdagrad(_) => g,
                            _ => {
                                self.m[j] = b1 * self.m[j] + (1.0 - b1) * g;
                                self.m[j]
                            }
                        };
                        real(a.eta) * m / (self.v[j].sqrt() + real(a.tau))
                    }
                    Strategy::Median => {
                        let c = column(j);
                        let k = c.len();
                        lr * if k % 2 == 1 {
                            c[k / 2]
                        } else {
                            (c[k / 2 - 1] + c[k / 2]) / 2.0
                        }
                    }
                    Strategy::TrimmedMean { beta } => {
                        let c = column(j);
                        let cut = (real(beta) * c.len() as f64).round() as usize;
                        let kept = &c[cut..c.len() - cut];
                        lr * kept.iter().sum::<f64>() / kept.len() as f64
                    }
                };
                self.w[j] -= step;
            }
        }
    }

    /// Krum's selection in f64.
    fn krum_f64(g: &[Vec<f64>], byzantine: usize, select: usize) -> Vec<usize> {
        let distance =
            |a: &[f64], b: &[f64]| -> f64 { a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum() };
        let mut scores: Vec<(f64, usize)> = (0..g.len())
            .map(|i| {
                let mut d: Vec<f64> = (0..g.len())
                    .filter(|&j| j != i)
                    .map(|j| distance(&g[i], &g[j]))
                    .collect();
                d.sort_by(f64::total_cmp);
                (d[..g.len() - byzantine - 2].iter().sum(), i)
            })
            .collect();
        scores.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scores[..select].iter().map(|&(_, i)| i).collect()
    }

    #[test]
    fn each_strategy_follows_its_f64_rule_on_random_updates() {
        // Each with its defaults (parse's tests pin them).
        for strategy in rules(&[
            "fedavg",
            "fedavgm",
            "fedadagrad",
            "fedadam",
            "fedyogi",
            "median",
            "trimmed-mean",
            "krum",
            "multi-krum",
        ]) {
            let mut rng = StdRng::seed_from_u64(15);
            let lr = fixed(0.5);
            let (mut w, mut state) = (model(), ServerState::default());
            let mut reference = Reference::new();
            for round in 0..10 {
                let k = 5 + round % 3;
                let (g, n) = random_round(&mut rng, k);
                let updates = updates_of(&g, &n);
                (w, state) = aggregate(strategy, &w, &state, &updates, lr).unwrap();
                reference.step(strategy, &g, &n, real(lr));
            }
            let error: f64 = w
                .params
                .iter()
                .zip(&reference.w)
                .map(|(&a, b)| (real(a) - b).powi(2))
                .sum::<f64>()
                .sqrt();
            let norm: f64 = reference.w.iter().map(|b| b * b).sum::<f64>().sqrt();
            eprintln!(
                "{strategy}: relative error {:.2e} after 10 rounds",
                error / norm
            );
            assert!(error / norm < 1e-3, "{strategy}: {}", error / norm);
        }
    }

    #[test]
    fn strategies_parse_with_their_defaults_and_refuse_bad_parameters() {
        assert_eq!(Strategy::parse("fedavg"), Ok(Strategy::FedAvg));
        assert_eq!(
            Strategy::parse("fedavgm"),
            Ok(Strategy::FedAvgM { beta: fixed(0.9) })
        );
        assert_eq!(
            Strategy::parse("fedadam"),
            Ok(Strategy::FedAdam(Adaptive::defaults_for(false)))
        );
        let yogi = Strategy::parse("fedyogi:eta=0.05,tau=0.001").unwrap();
        assert_eq!(
            yogi,
            Strategy::FedYogi(Adaptive {
                eta: fixed(0.05),
                ..Adaptive::defaults_for(true)
            })
        );
        assert_eq!(
            Strategy::parse("trimmed-mean:beta=0.1"),
            Ok(Strategy::TrimmedMean { beta: fixed(0.1) })
        );
        assert_eq!(
            Strategy::parse("krum:f=2"),
            Ok(Strategy::MultiKrum {
                byzantine: 2,
                select: 1
            })
        );
        assert_eq!(
            Strategy::parse("multi-krum:m=3"),
            Ok(Strategy::MultiKrum {
                byzantine: 1,
                select: 3
            })
        );
        for (bad, why) in [
            ("fedsgd", "unknown strategy"),
            ("fedavgm:beta=1", "below 1"),
            ("fedadam:eta=0", "above 0"),
            ("fedadam:eta=nan", "not finite"),
            ("trimmed-mean:beta=0.5", "below 0.5"),
            ("krum:f=1.5", "whole number"),
            ("median:beta=0.1", "takes no `beta`"),
            ("fedadam:eta", "KEY=VALUE"),
            ("fedadam:eta=x", "not a number"),
            // In range as reals, at the bound once quantized.
            (
                "fedadam:beta1=0.999995",
                "`beta1` must be at least 0 and below 1",
            ),
            (
                "fedyogi:eta=255.999995",
                "`eta` must be at least 2^-16 and below 256",
            ),
            (
                "fedavgm:beta=0.999995",
                "`beta` must be at least 0 and below 1",
            ),
        ] {
            let err = Strategy::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn fedavg_is_the_single_rounding_step_and_keeps_no_state() {
        let mut rng = StdRng::seed_from_u64(1);
        let (g, n) = random_round(&mut rng, 3);
        let updates = updates_of(&g, &n);
        let (next, state) = aggregate(
            Strategy::FedAvg,
            &model(),
            &ServerState::default(),
            &updates,
            ONE,
        )
        .unwrap();
        assert_eq!(next, fedavg_step(&model(), &updates, ONE).unwrap());
        assert_eq!(state, ServerState::default());
    }

    #[test]
    fn adaptive_rules_at_their_edges() {
        // A zero gradient from a fresh state: v = 0, √v = 0, the step is 0 (τ keeps the
        // denominator positive).
        let zero = updates_of(&[vec![0.0; N]], &[4]);
        for strategy in [
            Strategy::FedAdagrad(Adaptive::defaults_for(false)),
            Strategy::FedAdam(Adaptive::defaults_for(false)),
            Strategy::FedYogi(Adaptive::defaults_for(true)),
        ] {
            let (next, state) =
                aggregate(strategy, &model(), &ServerState::default(), &zero, ONE).unwrap();
            assert_eq!(next, model(), "{strategy:?}");
            assert!(state.second.iter().all(|&v| v == 0), "{strategy:?}");
        }
        // Yogi leaves v unchanged where v = ḡ² (sign 0), and moves it toward ḡ² otherwise.
        let g = ONE / 4;
        let sq = g * g;
        let yogi = Strategy::FedYogi(Adaptive::defaults_for(true));
        let one = updates_of(&[vec![0.25; N]], &[1]);
        let mut state = ServerState {
            momentum: vec![0; N],
            second: vec![sq; N],
        };
        state.second[1] = 0;
        state.second[2] = 4 * sq;
        let (_, next) = aggregate(yogi, &model(), &state, &one, ONE).unwrap();
        assert_eq!(next.second[0], sq);
        assert!(next.second[1] > 0 && next.second[1] < sq);
        assert!(next.second[2] < 4 * sq && next.second[2] > sq);
        // √ is exact at squares and just below them.
        for r in [0i64, 1, 2, 65535, 65536, 1 << 24, 3_037_000_498] {
            assert_eq!(isqrt(r * r), r);
            if r > 0 {
                assert_eq!(isqrt(r * r - 1), r - 1);
                assert_eq!(isqrt(r * r + 2 * r), r);
            }
        }
        assert_eq!(isqrt(i64::MAX), 3_037_000_499);
        assert_eq!(isqrt(-5), 0);
        // τ is at least 2^-16 whatever was configured.
        let no_tau = Adaptive {
            tau: 0,
            ..Adaptive::defaults_for(false)
        };
        let (next, _) = aggregate(
            Strategy::FedAdam(no_tau),
            &model(),
            &ServerState::default(),
            &zero,
            ONE,
        )
        .unwrap();
        assert_eq!(next, model());
    }

    #[test]
    fn momentum_carries_over_rounds() {
        let updates = updates_of(&[vec![0.5; N]], &[2]);
        let m = Strategy::FedAvgM { beta: fixed(0.5) };
        let (w1, s1) = aggregate(m, &model(), &ServerState::default(), &updates, ONE).unwrap();
        assert_eq!(s1.momentum, vec![(ONE / 2) << 16; N]);
        let (w2, s2) = aggregate(m, &w1, &s1, &updates, ONE).unwrap();
        assert_eq!(s2.momentum, vec![(3 * ONE / 4) << 16; N]);
        assert_eq!(w2.params[0], -(ONE / 2) - 3 * ONE / 4);
    }

    #[test]
    fn robust_rules_ignore_one_outlier() {
        // Four honest participants near 0.1 and one at 50 (a clipped update cannot be
        // that large, but the rules must not care): median, trimmed mean and Krum stay
        // near 0.1; FedAvg does not.
        let mut g: Vec<Vec<f64>> = (0..4).map(|k| vec![0.1 + 0.01 * k as f64; N]).collect();
        g.push(vec![50.0; N]);
        let updates = updates_of(&g, &[10; 5]);
        let state = ServerState::default();
        for strategy in rules(&["median", "trimmed-mean", "krum", "multi-krum:m=3"]) {
            let (next, _) = aggregate(strategy, &model(), &state, &updates, ONE).unwrap();
            let w = real(next.params[0]);
            assert!((-0.14..=-0.1).contains(&w), "{strategy:?}: {w}");
        }
        let (avg, _) = aggregate(Strategy::FedAvg, &model(), &state, &updates, ONE).unwrap();
        assert!(real(avg.params[0]) < -10.0);
    }

    #[test]
    fn robust_rules_refuse_too_few_updates() {
        let updates = updates_of(&[vec![0.1; N], vec![0.2; N]], &[4, 4]);
        let state = ServerState::default();
        let krum = Strategy::MultiKrum {
            byzantine: 1,
            select: 1,
        };
        assert_eq!(
            aggregate(krum, &model(), &state, &updates, ONE),
            Err(AggregationError::TooFew { need: 5, got: 2 })
        );
        let trimmed = Strategy::TrimmedMean { beta: fixed(0.5) };
        assert_eq!(
            aggregate(trimmed, &model(), &state, &updates, ONE),
            Err(AggregationError::TooFew { need: 3, got: 2 })
        );
        // An even count's median is the mean of the middle two.
        let (next, _) = aggregate(Strategy::Median, &model(), &state, &updates, ONE).unwrap();
        let (a, b) = (fixed(0.1), fixed(0.2));
        assert_eq!(next.params[0], -((a + b + 1) / 2), "ties away from zero");
        assert_eq!(
            aggregate(Strategy::Median, &model(), &state, &[], ONE),
            Err(AggregationError::Empty)
        );
    }

    #[test]
    fn the_canonical_form_parses_back_and_decoded_values_are_validated() {
        for text in [
            "fedavg",
            "fedavgm",
            "fedavgm:beta=0.5",
            "fedadagrad",
            "fedadam:eta=0.3,tau=0.01",
            "fedyogi",
            "median",
            "trimmed-mean:beta=0.1",
            "krum:f=2",
            "multi-krum:f=1,m=3",
        ] {
            let strategy = Strategy::parse(text).unwrap();
            assert_eq!(strategy.validate(), Ok(()), "{text}");
            let canonical = strategy.to_string();
            assert_eq!(
                Strategy::parse(&canonical),
                Ok(strategy),
                "{text} → {canonical}"
            );
        }
        // Each value is the shortest decimal that quantizes back to it.
        assert_eq!(
            Strategy::parse("fedadam").unwrap().to_string(),
            "fedadam:eta=0.1,beta1=0.9,beta2=0.99,tau=0.00002"
        );
        assert_eq!(
            Strategy::parse("fedavgm:beta=0").unwrap().to_string(),
            "fedavgm:beta=0"
        );
        let adaptive = Adaptive::defaults_for(false);
        for (bad, complaint) in [
            (Strategy::FedAvgM { beta: ONE }, "`beta`"),
            (Strategy::FedAvgM { beta: -1 }, "`beta`"),
            (Strategy::FedAdam(Adaptive { tau: 0, ..adaptive }), "`tau`"),
            (
                Strategy::FedYogi(Adaptive {
                    eta: 256 * ONE,
                    ..adaptive
                }),
                "`eta`",
            ),
            (
                Strategy::FedAdagrad(Adaptive {
                    beta2: ONE,
                    ..adaptive
                }),
                "`beta2`",
            ),
            (Strategy::TrimmedMean { beta: ONE / 2 }, "`beta`"),
            (
                Strategy::MultiKrum {
                    byzantine: 1,
                    select: 0,
                },
                "`m`",
            ),
            (
                Strategy::MultiKrum {
                    byzantine: 1 << 16,
                    select: 1,
                },
                "`f`",
            ),
        ] {
            let e = bad.validate().unwrap_err();
            assert!(e.contains(complaint), "{bad:?}: {e}");
        }
    }

    #[test]
    fn each_rule_admits_the_counts_it_can_aggregate() {
        // (f, m, K, the least K the rule needs): Krum's 2f + 3; and m + f, or the m selected
        // would always include a Byzantine update.
        for (byzantine, select, k, need) in [(2, 1, 6, 7), (0, 4, 3, 4), (1, 5, 5, 6)] {
            let rule = Strategy::MultiKrum { byzantine, select };
            assert_eq!(
                rule.admits(k),
                Err(AggregationError::TooFew { need, got: k })
            );
            assert_eq!(rule.admits(need), Ok(()));
        }
        // β = 0.49 cuts round(0.98) = 1 of two, leaving none, but round(1.47) = 1 of three.
        let trimmed = Strategy::TrimmedMean { beta: fixed(0.49) };
        assert!(trimmed.admits(1).is_ok());
        assert_eq!(
            trimmed.admits(2),
            Err(AggregationError::TooFew { need: 3, got: 2 })
        );
        assert!(trimmed.admits(3).is_ok());
        for plain in [
            Strategy::FedAvg,
            Strategy::Median,
            Strategy::parse("fedadam").unwrap(),
        ] {
            assert_eq!(
                plain.admits(0),
                Err(AggregationError::TooFew { need: 1, got: 0 })
            );
            assert!(plain.admits(1).is_ok());
        }
    }

    /// One round with a gradient, then none: the moments decay to zero and the model
    /// stops, having moved about as far as the real rule moves it, and never farther (a
    /// moment rounded to nearest would stick at a few units and step forever, 0.08 a round
    /// for Adam).
    #[test]
    fn moments_without_new_gradients_decay_to_zero_and_the_model_stops() {
        let adaptive = Adaptive::defaults_for(false);
        for strategy in [
            Strategy::FedAvgM { beta: fixed(0.9) },
            Strategy::FedAdam(adaptive),
            Strategy::FedYogi(Adaptive::defaults_for(true)),
        ] {
            // 40 units (6·10^-4), as small as one participant's nudge might be, and 0.05.
            for push in [40.0 / ONE as f64, 0.05] {
                let lr = fixed(0.5);
                let (mut w, mut state) = (model(), ServerState::default());
                let mut reference = Reference::new();
                let n = [16; 5];
                let mut g = vec![vec![push; N]; 5];
                let mut history = Vec::new();
                for _ in 0..300 {
                    (w, state) = aggregate(strategy, &w, &state, &updates_of(&g, &n), lr).unwrap();
                    reference.step(strategy, &g, &n, real(lr));
                    history.push(w.params[0]);
                    g = vec![vec![0.0; N]; 5];
                }
                assert!(state.momentum.iter().all(|&m| m == 0), "{strategy}");
                let settled = &history[200..];
                assert!(settled.iter().all(|&p| p == history[299]), "{strategy}");
                let (moved, real_moved) = (-real(history[299]), -reference.w[0]);
                let error = (moved - real_moved).abs() / real_moved;
                eprintln!("{strategy}, push {push:.1e}: moved {moved:.4}, real {real_moved:.4}");
                // Near the format's resolution the moments reach zero sooner than the real
                // ones (Adam's `m` starts at 4 units): the rule moves less, never more.
                match push > 0.01 {
                    true => assert!(error < 0.1, "{strategy}: {moved} against {real_moved}"),
                    false => assert!(
                        moved > 0.0 && moved <= real_moved,
                        "{strategy}: {moved} against {real_moved}"
                    ),
                }
            }
        }
    }

    /// Mean gradients of a few units of `2^-16`, alternating in sign about a small mean:
    /// where the format cannot resolve them, the rule must move the model no farther than
    /// the real one (rounded to nearest, `+5, -4, +5, ...` made Adam walk `η` every other
    /// round).
    #[test]
    fn adaptive_rules_move_no_farther_than_the_real_ones_at_the_resolution() {
        for beta1 in [0.0, 0.9] {
            for yogi in [false, true] {
                let a = Adaptive {
                    beta1: fixed(beta1),
                    ..Adaptive::defaults_for(yogi)
                };
                let strategy = match yogi {
                    true => Strategy::FedYogi(a),
                    false => Strategy::FedAdam(a),
                };
                let mut rng = StdRng::seed_from_u64(16);
                let (mut w, mut state) = (model(), ServerState::default());
                let mut reference = Reference::new();
                let n = [16; 5];
                for round in 0..200 {
                    let units: Vec<f64> = (0..N)
                        .map(|j| match (round + j) % 2 {
                            0 => rng.random_range(1..8) as f64,
                            _ => -(rng.random_range(1..8) as f64),
                        })
                        .collect();
                    let g = vec![units.iter().map(|u| u / ONE as f64).collect(); 5];
                    (w, state) = aggregate(strategy, &w, &state, &updates_of(&g, &n), ONE).unwrap();
                    reference.step(strategy, &g, &n, 1.0);
                }
                let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
                let moved = norm(&mut w.params.iter().map(|&p| real(p)));
                let real_moved = norm(&mut reference.w.iter().copied());
                eprintln!("{strategy}: moved {moved:.4}, real {real_moved:.4}");
                assert!(
                    moved <= real_moved,
                    "{strategy}: {moved} against {real_moved}"
                );
            }
        }
    }
}
