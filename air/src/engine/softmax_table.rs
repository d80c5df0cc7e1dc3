//! `SoftmaxStepTable`: one row per example, the training step of a softmax model from the
//! example's `K` logits, squared norm `N` and label `y` to its `K` clipped coefficients,
//! exactly as [`crate::network::network_step`] computes it (ARCHITECTURE.md, "The softmax
//! step row").
//!
//! Per class `k`: the label as a one-hot bit; the largest logit `m` picked by a one-hot
//! selector; `u_k = z_k - m` split as `q_k·2^27 + rem_k` and proven `≤ 0` by its case (top:
//! `u_k = 0`; below: `q_k < -512`; otherwise the segment `q_k + 512` looked up in the
//! exponential's table); `e_k` interpolated; the division `e_k·ONE = p_k·S + rem` with
//! `0 ≤ rem < S = Σ e`; the residual `r_k = p_k - [y = k]·ONE`, whose sign is the one-hot bit.
//! Per row: `ν_x = ceil(√N)`, `ν_r = ceil(√Σ r²)`, `A = ceil(ν_r·ν_x / ONE)`, and the clip
//! decision `A > C`; per class again: `|c_k| = floor(|r_k|·C / A)` when clipped, else
//! `|r_k|`, with the residual's sign.
//!
//! The first `B` rows (a periodic `ACTIVE` column the verifier builds) receive one example
//! each from the hash table; padding rows are zero and every constraint either holds on
//! zeros or is gated by `ACTIVE`, and nothing a padding row holds reaches a bus.
//!
//! An MLP's step row is the same row for its output layer plus [`MlpCols`]: it receives
//! `(i, N, y)` from the hash table and `(i, z.., r.., c.., ONE² + Σh², Σδ², ν, clipped)`
//! from the hidden table (tagged with the example's position `i`), proves the first
//! layer's bound `A_1` from `N` and `Σ δ²`, the output layer's `A_2` from `ONE² + Σh²`
//! and the residuals, and `ν = ceil(√(A_1² + A_2²))`, which takes `A`'s place in the clip
//! decision and the classes' floors.

use std::borrow::Cow;

use p3_air::{Air, AirBuilder, BaseAir, WindowAccess};
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_lookup::{Count, InteractionBuilder};

use super::limbs::{eval_range, limbs_for, limbs_value};
use super::step_table::{GAP_BITS, NORM_BITS, eval_sampled};
use super::{
    EXAMPLE_BUS, EXP_BUS, HEAD_BUS, UPDATE_BUS, active_rows, constant, view, view_mut, view_slice,
    view_slice_mut,
};
use crate::exp::{FIRST_SEGMENT, SEGMENT_BITS};
use crate::fixed::{FRAC_BITS, ONE};

/// Bits of `u`'s remainder below a segment, and of the interpolation's remainder (exact).
pub const REMAINDER_BITS: usize = SEGMENT_BITS as usize;
/// Bits of the below case's slack `-q - 513` (`|u| < 2^57`, so below `2^30`; sign only).
pub const BELOW_SLACK_BITS: usize = 33;
/// Bits of `e`, `p` and `|c|` (each at most `ONE`).
pub const UNIT_BITS: usize = FRAC_BITS as usize + 1;
/// Bits of the division's remainder and its gap below `S ≤ 64·ONE`.
pub const DIVISION_BITS: usize = 22;
/// Bits of `ν_r = ceil(√Σ r²)`: `Σ |r_k| ≤ 2·ONE`, so `ν_r ≤ 2^17`.
pub const DELTA_NORM_BITS: usize = 18;
/// Bits of `ν_r`'s upper ceiling gap `ν_r² - R` (below `2ν_r`).
pub const DELTA_GAP_BITS: usize = 19;
/// Bits of `ν_r`'s lower gap times `ν_r` (below `2ν_r²`; sign only).
pub const DELTA_LOWER_BITS: usize = 37;
/// Bits of `A`, below [`crate::network::LAYER_BOUND_LIMIT`] (`2^30`).
pub const BOUND_BITS: usize = 30;
/// Bits of `A·ONE - ν_r·ν_x` (exact: below `ONE`).
pub const BOUND_SLACK_BITS: usize = FRAC_BITS as usize;
/// Bits of the clip decision's slack (`C - ν` or `ν - C - 1`, below `2^31`; sign only).
pub const CLIP_SLACK_BITS: usize = 31;
/// Bits of an MLP's `ν` (`ν ≤ ceil(√2·A) < 2^31`), and of its clip floors' remainders and
/// gaps below it (a softmax's are below `A`: [`BOUND_BITS`]).
pub const NU_BITS: usize = 31;
/// Bits of an MLP's `ν_δ = ceil(√Σ δ²)`: at most 256 hidden deltas below `2^24`.
pub const HIDDEN_DELTA_NORM_BITS: usize = 29;

const _: () = assert!(1 << BOUND_BITS == crate::network::LAYER_BOUND_LIMIT);

/// The named columns of a row that are not per class.
#[repr(C)]
pub struct SoftmaxCols<T> {
    /// Bus-visible copy of the periodic `ACTIVE`: 1 on the first `B` rows.
    pub active: T,
    /// Received: `N = Σ x² + ONE²`.
    pub norm_sq: T,
    /// Received: the label.
    pub label: T,
    /// Received: 1 if the slot's row is in the batch (always, with public indices); the
    /// coefficients of a slot that is not are 0.
    pub sampled: T,
    /// `m`, the largest logit.
    pub max_logit: T,
    /// `ν_x = ceil(√N)`.
    pub input_norm: [T; limbs_for(NORM_BITS)],
    /// `ν_x² - N`.
    pub input_upper: [T; limbs_for(GAP_BITS)],
    /// `N - (ν_x - 1)² - 1`.
    pub input_lower: [T; limbs_for(GAP_BITS)],
    /// `ν_r = ceil(√R)`, `R = Σ r_k²` (0 when `R = 0`).
    pub delta_norm: [T; limbs_for(DELTA_NORM_BITS)],
    /// `ν_r² - R`.
    pub delta_upper: [T; limbs_for(DELTA_GAP_BITS)],
    /// `ν_r·(R - (ν_r - 1)² - 1)`: the lower gap, void when `ν_r = 0` (then the upper gap
    /// forces `R = 0`).
    pub delta_lower: [T; limbs_for(DELTA_LOWER_BITS)],
    /// `A = ceil(ν_r·ν_x / ONE)`.
    pub bound: [T; limbs_for(BOUND_BITS)],
    /// `A·ONE - ν_r·ν_x`.
    pub bound_slack: [T; limbs_for(BOUND_SLACK_BITS)],
    /// Whether the gradient was clipped (`A > C`).
    pub clipped: T,
    /// `C - A` when kept, `A - C - 1` when clipped.
    pub clip_slack: [T; limbs_for(CLIP_SLACK_BITS)],
}

/// An MLP's columns: the first layer's bound and the whole vector's `ν`.
#[repr(C)]
pub struct MlpCols<T> {
    /// Bus-visible copy of the periodic `EXAMPLE`: the row's position in the batch.
    pub example: T,
    /// Received from the hash table: `N = Σ x² + ONE²`.
    pub input_sq: T,
    /// Received from the hidden table: `Σ δ²` over the hidden deltas.
    pub delta_sq: T,
    /// `ν_x = ceil(√N)`.
    pub input_norm: [T; limbs_for(NORM_BITS)],
    /// `ν_x² - N`.
    pub input_upper: [T; limbs_for(GAP_BITS)],
    /// `N - (ν_x - 1)² - 1`.
    pub input_lower: [T; limbs_for(GAP_BITS)],
    /// `Σ δ² = 0` (then `ν_δ = 0` and its lower gap is void).
    pub delta_zero: T,
    /// `ν_δ = ceil(√Σ δ²)`.
    pub delta_norm: [T; limbs_for(HIDDEN_DELTA_NORM_BITS)],
    /// `ν_δ² - Σ δ²`.
    pub delta_upper: [T; limbs_for(GAP_BITS)],
    /// `Σ δ² - (ν_δ - 1)² - 1` unless `delta_zero`.
    pub delta_lower: [T; limbs_for(GAP_BITS)],
    /// `A_1 = ceil(ν_δ·ν_x / ONE)`.
    pub bound: [T; limbs_for(BOUND_BITS)],
    /// `A_1·ONE - ν_δ·ν_x`.
    pub bound_slack: [T; limbs_for(BOUND_SLACK_BITS)],
    /// `A_1² + A_2² = 0`.
    pub norm_zero: T,
    /// `ν = ceil(√(A_1² + A_2²))`.
    pub norm: [T; limbs_for(NU_BITS)],
    /// `ν² - A_1² - A_2²`.
    pub norm_upper: [T; limbs_for(GAP_BITS)],
    /// `A_1² + A_2² - (ν - 1)² - 1` unless `norm_zero`.
    pub norm_lower: [T; limbs_for(GAP_BITS)],
}

/// Width of [`MlpCols`].
pub const NUM_MLP_COLS: usize = size_of::<MlpCols<u8>>();

impl<T> MlpCols<T> {
    /// Every range check: its limbs and bit bound.
    pub fn range_checks(&self) -> [(&[T], usize); 11] {
        [
            (&self.input_norm[..], NORM_BITS),
            (&self.input_upper[..], GAP_BITS),
            (&self.input_lower[..], GAP_BITS),
            (&self.delta_norm[..], HIDDEN_DELTA_NORM_BITS),
            (&self.delta_upper[..], GAP_BITS),
            (&self.delta_lower[..], GAP_BITS),
            (&self.bound[..], BOUND_BITS),
            (&self.bound_slack[..], BOUND_SLACK_BITS),
            (&self.norm[..], NU_BITS),
            (&self.norm_upper[..], GAP_BITS),
            (&self.norm_lower[..], GAP_BITS),
        ]
    }
}

/// The columns of one class.
#[repr(C)]
pub struct ClassCols<T> {
    /// Received: the logit `z_k` at scale `2^32`.
    pub logit: T,
    /// Received: the clipped coefficient `c_k` this row proves.
    pub coeff: T,
    /// `[y = k]`.
    pub onehot: T,
    /// Selects the largest logit (one class per row).
    pub selected: T,
    /// `u_k = 0`: `e_k = ONE`.
    pub top: T,
    /// `q_k < -512`: `e_k = 0`.
    pub below: T,
    /// `q_k = floor(u_k / 2^27)`.
    pub quotient: T,
    /// `u_k - q_k·2^27`.
    pub remainder: [T; limbs_for(REMAINDER_BITS)],
    /// `-q_k - 513` below, else 0.
    pub below_slack: [T; limbs_for(BELOW_SLACK_BITS)],
    /// The segment's start (middle case).
    pub segment_start: T,
    /// The segment's rise (middle case).
    pub segment_rise: T,
    /// `e_k` at scale `2^16`.
    pub exp: [T; limbs_for(UNIT_BITS)],
    /// The interpolation's floor remainder (middle case).
    pub interpolation_remainder: [T; limbs_for(REMAINDER_BITS)],
    /// `p_k = floor(e_k·ONE / S)`.
    pub probability: [T; limbs_for(UNIT_BITS)],
    /// `e_k·ONE - p_k·S`.
    pub division_remainder: [T; limbs_for(DIVISION_BITS)],
    /// `S - 1 - division_remainder`.
    pub division_gap: [T; limbs_for(DIVISION_BITS)],
    /// `|c_k|`.
    pub coeff_abs: [T; limbs_for(UNIT_BITS)],
    /// `|r_k|·C - |c_k|·ν` when clipped (`ν = A` for a softmax).
    pub clip_remainder: [T; limbs_for(NU_BITS)],
    /// `ν - 1 - clip_remainder` when clipped, else 0.
    pub clip_gap: [T; limbs_for(NU_BITS)],
}

/// Width of the per-row part.
pub const NUM_SOFTMAX_COLS: usize = size_of::<SoftmaxCols<u8>>();
/// Width of one class.
pub const NUM_CLASS_COLS: usize = size_of::<ClassCols<u8>>();

/// Width of a row for `classes` classes, of an MLP's output layer when `hidden`.
pub const fn softmax_width(classes: usize, hidden: bool) -> usize {
    NUM_SOFTMAX_COLS + hidden as usize * NUM_MLP_COLS + classes * NUM_CLASS_COLS
}

/// A softmax row split into its per-row part and its classes.
pub fn split_row<T>(row: &[T]) -> (&SoftmaxCols<T>, &[ClassCols<T>]) {
    let (named, classes) = row.split_at(NUM_SOFTMAX_COLS);
    (view(named), view_slice(classes))
}

/// Mutable [`split_row`].
pub fn split_row_mut<T>(row: &mut [T]) -> (&mut SoftmaxCols<T>, &mut [ClassCols<T>]) {
    let (named, classes) = row.split_at_mut(NUM_SOFTMAX_COLS);
    (view_mut(named), view_slice_mut(classes))
}

/// An MLP's row split into its per-row part, its MLP part and its classes.
pub fn split_mlp_row<T>(row: &[T]) -> (&SoftmaxCols<T>, &MlpCols<T>, &[ClassCols<T>]) {
    let (named, rest) = row.split_at(NUM_SOFTMAX_COLS);
    let (mlp, classes) = rest.split_at(NUM_MLP_COLS);
    (view(named), view(mlp), view_slice(classes))
}

/// Mutable [`split_mlp_row`].
pub fn split_mlp_row_mut<T>(
    row: &mut [T],
) -> (&mut SoftmaxCols<T>, &mut MlpCols<T>, &mut [ClassCols<T>]) {
    let (named, rest) = row.split_at_mut(NUM_SOFTMAX_COLS);
    let (mlp, classes) = rest.split_at_mut(NUM_MLP_COLS);
    (view_mut(named), view_mut(mlp), view_slice_mut(classes))
}

impl<T> SoftmaxCols<T> {
    /// Every range check of the per-row part: its limbs and bit bound.
    pub fn range_checks(&self) -> [(&[T], usize); 9] {
        [
            (&self.input_norm[..], NORM_BITS),
            (&self.input_upper[..], GAP_BITS),
            (&self.input_lower[..], GAP_BITS),
            (&self.delta_norm[..], DELTA_NORM_BITS),
            (&self.delta_upper[..], DELTA_GAP_BITS),
            (&self.delta_lower[..], DELTA_LOWER_BITS),
            (&self.bound[..], BOUND_BITS),
            (&self.bound_slack[..], BOUND_SLACK_BITS),
            (&self.clip_slack[..], CLIP_SLACK_BITS),
        ]
    }
}

/// Bits of the clip floors' remainders and gaps: below `A` for a softmax, below `ν` for an
/// MLP.
pub const fn clip_floor_bits(hidden: bool) -> usize {
    if hidden { NU_BITS } else { BOUND_BITS }
}

impl<T> ClassCols<T> {
    /// Every range check of a class (its floors' bits from [`clip_floor_bits`]): its limbs
    /// and bit bound.
    pub fn range_checks(&self, floor_bits: usize) -> [(&[T], usize); 10] {
        [
            (&self.remainder[..], REMAINDER_BITS),
            (&self.below_slack[..], BELOW_SLACK_BITS),
            (&self.exp[..], UNIT_BITS),
            (&self.interpolation_remainder[..], REMAINDER_BITS),
            (&self.probability[..], UNIT_BITS),
            (&self.division_remainder[..], DIVISION_BITS),
            (&self.division_gap[..], DIVISION_BITS),
            (&self.coeff_abs[..], UNIT_BITS),
            (&self.clip_remainder[..], floor_bits),
            (&self.clip_gap[..], floor_bits),
        ]
    }
}

/// The softmax step table of one statement.
#[derive(Clone)]
pub struct SoftmaxStepTableAir {
    num_features: usize,
    classes: usize,
    /// An MLP's hidden units.
    hidden: Option<usize>,
    clip_norm: i64,
    /// Whether rows are slots under hidden sampling (some not sampled).
    hidden_sampling: bool,
    /// `ACTIVE`, then an MLP's `EXAMPLE` (the row's position on active rows).
    periodic: Vec<Vec<Goldilocks>>,
}

impl SoftmaxStepTableAir {
    /// The table for `batch` examples of `num_features` features and `classes` classes in
    /// `height` rows (after `hidden` units, for an MLP).
    pub fn new(
        num_features: usize,
        classes: usize,
        hidden: Option<usize>,
        batch: usize,
        clip_norm: i64,
        hidden_sampling: bool,
        height: usize,
    ) -> Self {
        let mut periodic = vec![active_rows(batch, height)];
        if hidden.is_some() {
            let mut position = vec![Goldilocks::ZERO; height];
            for (i, p) in position[..batch].iter_mut().enumerate() {
                *p = Goldilocks::from_usize(i);
            }
            periodic.push(position);
        }
        Self {
            num_features,
            classes,
            hidden,
            clip_norm,
            hidden_sampling,
            periodic,
        }
    }
}

impl BaseAir<Goldilocks> for SoftmaxStepTableAir {
    fn width(&self) -> usize {
        softmax_width(self.classes, self.hidden.is_some())
    }

    fn num_periodic_columns(&self) -> usize {
        self.periodic.len()
    }

    fn periodic_columns(&self) -> Cow<'_, [Vec<Goldilocks>]> {
        Cow::Borrowed(&self.periodic)
    }

    fn main_next_row_columns(&self) -> Vec<usize> {
        Vec::new()
    }

    fn max_constraint_degree(&self) -> Option<usize> {
        Some(3)
    }
}

/// `r_k = p_k - [y = k]·ONE`.
fn residual<AB: AirBuilder<F = Goldilocks>>(class: &ClassCols<AB::Var>) -> AB::Expr {
    limbs_value::<AB>(&class.probability) - class.onehot.into() * constant::<AB>(ONE)
}

/// `|r_k|`: `p_k` off the label's class, `ONE - p_k` on it.
fn abs_residual<AB: AirBuilder<F = Goldilocks>>(class: &ClassCols<AB::Var>) -> AB::Expr {
    let p = limbs_value::<AB>(&class.probability);
    let onehot: AB::Expr = class.onehot.into();
    p.clone() + onehot * (constant::<AB>(ONE) - p * AB::Expr::TWO)
}

impl<AB: InteractionBuilder<F = Goldilocks>> Air<AB> for SoftmaxStepTableAir {
    fn eval(&self, builder: &mut AB) {
        let main = builder.main();
        let row = main.current_slice();
        let (c, mlp, classes) = match self.hidden {
            Some(_) => {
                let (c, mlp, classes) = split_mlp_row(row);
                (c, Some(mlp), classes)
            }
            None => {
                let (c, classes) = split_row(row);
                (c, None, classes)
            }
        };
        let periodic: Vec<AB::Expr> = builder
            .periodic_values()
            .iter()
            .map(|&v| v.into())
            .collect();
        builder.assert_eq(c.active, periodic[0].clone());
        let active: AB::Expr = c.active.into();

        for (limbs, bits) in c.range_checks() {
            eval_range(builder, limbs, bits);
        }
        if let Some(mlp) = mlp {
            builder.assert_eq(mlp.example, periodic[1].clone());
            for (limbs, bits) in mlp.range_checks() {
                eval_range(builder, limbs, bits);
            }
            builder.assert_bool(mlp.delta_zero);
            builder.assert_bool(mlp.norm_zero);
        }
        for class in classes {
            let floor_bits = clip_floor_bits(self.hidden.is_some());
            for (limbs, bits) in class.range_checks(floor_bits) {
                eval_range(builder, limbs, bits);
            }
            for flag in [class.onehot, class.selected, class.top, class.below] {
                builder.assert_bool(flag);
            }
        }
        builder.assert_bool(c.clipped);
        eval_sampled(builder, c.sampled, active.clone(), self.hidden_sampling);
        eval_label_and_max(builder, c, classes, active.clone());
        for class in classes {
            eval_exp(builder, c, class, active.clone());
        }
        eval_division(builder, classes, active.clone());
        eval_norms(builder, c, classes, active.clone());
        let norm = match mlp {
            Some(mlp) => eval_mlp_norm(builder, c, mlp, active.clone()),
            None => limbs_value::<AB>(&c.bound),
        };
        eval_clipping(builder, c, classes, active.clone(), norm, self.clip_norm);

        let received = || Count::bounded(-active.clone(), 1);
        let logits = classes.iter().map(|k| k.logit.into());
        let coeffs = classes.iter().map(|k| k.coeff.into());
        let bias_base = match (self.hidden, mlp) {
            (Some(hidden), Some(mlp)) => {
                let example = [mlp.example, mlp.input_sq, c.label].map(Into::into);
                builder.push_interaction(EXAMPLE_BUS, example, received());
                let residuals = classes.iter().map(|k| residual::<AB>(k));
                let head: Vec<AB::Expr> = [mlp.example.into()]
                    .into_iter()
                    .chain(logits)
                    .chain(residuals)
                    .chain(coeffs)
                    .chain([c.norm_sq.into(), mlp.delta_sq.into()])
                    .chain([limbs_value::<AB>(&mlp.norm), c.clipped.into()])
                    .collect();
                builder.push_interaction(HEAD_BUS, head, received());
                hidden * (self.num_features + 1) + self.classes * hidden
            }
            _ => {
                let example: Vec<AB::Expr> = logits
                    .chain([c.norm_sq.into(), c.label.into()])
                    .chain(coeffs)
                    .chain([c.sampled.into()])
                    .collect();
                builder.push_interaction(EXAMPLE_BUS, example, received());
                self.classes * self.num_features
            }
        };
        for (k, class) in classes.iter().enumerate() {
            let share = active.clone() * class.coeff.into() * constant::<AB>(ONE);
            let bias = AB::Expr::from_usize(bias_base + k);
            builder.push_interaction(UPDATE_BUS, [bias], Count::provided(share));
        }
    }
}

/// The label's one-hot bits spell it (so `y < K`); the selector picks one logit as `m`.
fn eval_label_and_max<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &SoftmaxCols<AB::Var>,
    classes: &[ClassCols<AB::Var>],
    active: AB::Expr,
) {
    let mut onehots = AB::Expr::ZERO;
    let mut spelled = AB::Expr::ZERO;
    let mut selected = AB::Expr::ZERO;
    let mut max = AB::Expr::ZERO;
    for (k, class) in classes.iter().enumerate() {
        onehots += class.onehot.into();
        spelled += class.onehot.into() * AB::Expr::from_usize(k);
        selected += class.selected.into();
        max += class.selected.into() * class.logit.into();
    }
    builder.assert_eq(onehots, active.clone());
    builder.assert_eq(spelled, c.label);
    builder.assert_eq(selected, active);
    builder.assert_eq(max, c.max_logit);
}

/// `u = z - m = q·2^27 + rem` and `e` by case: top `u = 0`, `e = ONE`; below `q < -512`,
/// `e = 0`; otherwise the segment `q + 512` looked up and interpolated. Each case proves
/// `u ≤ 0`, so `m` is the largest logit.
fn eval_exp<AB: InteractionBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &SoftmaxCols<AB::Var>,
    class: &ClassCols<AB::Var>,
    active: AB::Expr,
) {
    let u = class.logit.into() - c.max_logit.into();
    let q: AB::Expr = class.quotient.into();
    let rem = limbs_value::<AB>(&class.remainder);
    let scale = constant::<AB>(1 << SEGMENT_BITS);
    builder.assert_eq(u.clone(), q.clone() * scale.clone() + rem.clone());

    let top: AB::Expr = class.top.into();
    let below: AB::Expr = class.below.into();
    let mid = AB::Expr::ONE - top.clone() - below.clone();
    builder.assert_zero(top.clone() * below.clone());
    builder.assert_zero(top.clone() * u);
    let first = constant::<AB>(FIRST_SEGMENT);
    let slack = below.clone() * (first.clone() - q.clone() - AB::Expr::ONE);
    builder.assert_eq(slack, limbs_value::<AB>(&class.below_slack));

    let segment = [
        q - first,
        class.segment_start.into(),
        class.segment_rise.into(),
    ];
    builder.push_interaction(EXP_BUS, segment, Count::bounded(active * mid.clone(), 1));
    let e = limbs_value::<AB>(&class.exp);
    let interpolated = e.clone() * scale.clone()
        + limbs_value::<AB>(&class.interpolation_remainder)
        - class.segment_start.into() * scale
        - class.segment_rise.into() * rem;
    builder.assert_zero(mid * interpolated);
    builder.assert_zero(top * (e.clone() - constant::<AB>(ONE)));
    builder.assert_zero(below * e);
}

/// `e_k·ONE = p_k·S + rem_k` with `0 ≤ rem_k < S = Σ e`.
fn eval_division<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    classes: &[ClassCols<AB::Var>],
    active: AB::Expr,
) {
    let sum = classes
        .iter()
        .fold(AB::Expr::ZERO, |s, k| s + limbs_value::<AB>(&k.exp));
    for class in classes {
        let e = limbs_value::<AB>(&class.exp);
        let p = limbs_value::<AB>(&class.probability);
        let rem = limbs_value::<AB>(&class.division_remainder);
        builder.assert_eq(e * constant::<AB>(ONE), p * sum.clone() + rem.clone());
        let gap = sum.clone() - AB::Expr::ONE - rem - limbs_value::<AB>(&class.division_gap);
        builder.assert_zero(active.clone() * gap);
    }
}

/// `ν_x = ceil(√N)`, `ν_r = ceil(√Σ r²)` (0 when every residual is), and
/// `A = ceil(ν_r·ν_x / ONE)`. `ν_r`'s lower gap is multiplied by `ν_r`, so it holds at
/// `ν_r = R = 0` (every residual 0, a confident right answer) and on padding rows.
fn eval_norms<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &SoftmaxCols<AB::Var>,
    classes: &[ClassCols<AB::Var>],
    active: AB::Expr,
) {
    let nu_x = limbs_value::<AB>(&c.input_norm);
    builder.assert_eq(
        nu_x.clone().square() - c.norm_sq.into(),
        limbs_value::<AB>(&c.input_upper),
    );
    let below_sq = (nu_x.clone() - AB::Expr::ONE).square();
    let lower = c.norm_sq.into() - below_sq - AB::Expr::ONE - limbs_value::<AB>(&c.input_lower);
    builder.assert_zero(active.clone() * lower);

    let residual_sq = classes
        .iter()
        .fold(AB::Expr::ZERO, |s, k| s + residual::<AB>(k).square());
    let nu_r = limbs_value::<AB>(&c.delta_norm);
    builder.assert_eq(
        nu_r.clone().square() - residual_sq.clone(),
        limbs_value::<AB>(&c.delta_upper),
    );
    let below_sq = (nu_r.clone() - AB::Expr::ONE).square();
    let lower = nu_r.clone() * (residual_sq - below_sq - AB::Expr::ONE);
    builder.assert_eq(lower, limbs_value::<AB>(&c.delta_lower));

    let bound = limbs_value::<AB>(&c.bound);
    builder.assert_eq(
        bound * constant::<AB>(ONE) - nu_r * nu_x,
        limbs_value::<AB>(&c.bound_slack),
    );
}

/// An MLP's first-layer bound `A_1 = ceil(ceil(√Σδ²)·ceil(√N) / ONE)` and
/// `ν = ceil(√(A_1² + A_2²))`, returned. Each ceiling square root `s = ceil(√R)` is
/// `s² - R ≥ 0` and `R - (s - 1)² - 1 ≥ 0`; a zero flag (which forces `s = 0`, and then
/// the first gap forces `R = 0`) voids the second where `R = 0`.
fn eval_mlp_norm<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &SoftmaxCols<AB::Var>,
    mlp: &MlpCols<AB::Var>,
    active: AB::Expr,
) -> AB::Expr {
    let nu_x = limbs_value::<AB>(&mlp.input_norm);
    builder.assert_eq(
        nu_x.clone().square() - mlp.input_sq.into(),
        limbs_value::<AB>(&mlp.input_upper),
    );
    let below_sq = (nu_x.clone() - AB::Expr::ONE).square();
    let lower = mlp.input_sq.into() - below_sq - AB::Expr::ONE;
    builder.assert_zero(active * (lower - limbs_value::<AB>(&mlp.input_lower)));

    let nu_d = eval_ceil_sqrt(
        builder,
        mlp.delta_sq.into(),
        [&mlp.delta_norm[..], &mlp.delta_upper, &mlp.delta_lower],
        mlp.delta_zero,
    );
    let bound = limbs_value::<AB>(&mlp.bound);
    builder.assert_eq(
        bound.clone() * constant::<AB>(ONE) - nu_d * nu_x,
        limbs_value::<AB>(&mlp.bound_slack),
    );
    let output_bound = limbs_value::<AB>(&c.bound);
    let sum = bound.square() + output_bound.square();
    eval_ceil_sqrt(
        builder,
        sum,
        [&mlp.norm[..], &mlp.norm_upper, &mlp.norm_lower],
        mlp.norm_zero,
    )
}

/// `s = ceil(√R)` from the limbs of `s`, `s² - R` and `R - (s - 1)² - 1`, the last void
/// when the zero flag is set (which forces `s = 0`); returns `s`.
fn eval_ceil_sqrt<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    radicand: AB::Expr,
    [root, upper, lower]: [&[AB::Var]; 3],
    zero: AB::Var,
) -> AB::Expr {
    let s = limbs_value::<AB>(root);
    builder.assert_eq(
        s.clone().square() - radicand.clone(),
        limbs_value::<AB>(upper),
    );
    builder.assert_zero(zero.into() * s.clone());
    let below_sq = (s.clone() - AB::Expr::ONE).square();
    let gap = radicand - below_sq - AB::Expr::ONE - limbs_value::<AB>(lower);
    builder.assert_zero((AB::Expr::ONE - zero.into()) * gap);
    s
}

/// Clipped when `ν > C` (`ν = A` for a softmax): then `|c_k| = floor(|r_k|·C / ν)`, else
/// `|c_k| = |r_k|`; `c_k` takes the residual's sign, negative exactly on the label's class,
/// and is 0 on a slot that is not sampled.
fn eval_clipping<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &SoftmaxCols<AB::Var>,
    classes: &[ClassCols<AB::Var>],
    active: AB::Expr,
    bound: AB::Expr,
    clip_norm: i64,
) {
    let clip = constant::<AB>(clip_norm);
    let clipped: AB::Expr = c.clipped.into();
    let keep = AB::Expr::ONE - clipped.clone();
    let decision = keep.clone() * (clip.clone() - bound.clone())
        + clipped.clone() * (bound.clone() - clip.clone() - AB::Expr::ONE);
    builder.assert_zero(active * (decision - limbs_value::<AB>(&c.clip_slack)));

    for class in classes {
        let abs_r = abs_residual::<AB>(class);
        let m = limbs_value::<AB>(&class.coeff_abs);
        builder.assert_zero(keep.clone() * (m.clone() - abs_r.clone()));
        let rem = limbs_value::<AB>(&class.clip_remainder);
        let floor = abs_r * clip.clone() - m.clone() * bound.clone() - rem.clone();
        builder.assert_zero(clipped.clone() * floor);
        builder.assert_eq(
            clipped.clone() * (bound.clone() - AB::Expr::ONE - rem),
            limbs_value::<AB>(&class.clip_gap),
        );
        let sign = AB::Expr::ONE - class.onehot.into() * AB::Expr::TWO;
        builder.assert_eq(class.coeff, c.sampled.into() * sign * m);
    }
}
