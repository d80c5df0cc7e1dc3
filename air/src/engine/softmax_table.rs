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

use std::borrow::Cow;

use p3_air::{Air, AirBuilder, BaseAir, WindowAccess};
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_lookup::{Count, InteractionBuilder};

use super::limbs::{eval_range, limbs_for, limbs_value};
use super::step_table::{GAP_BITS, NORM_BITS};
use super::{
    EXAMPLE_BUS, EXP_BUS, UPDATE_BUS, active_rows, constant, view, view_mut, view_slice,
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
/// Bits of the clip decision's slack (`C - A` or `A - C - 1`, below `2^30`; sign only).
pub const CLIP_SLACK_BITS: usize = 31;

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
    /// `|r_k|·C - |c_k|·A` when clipped.
    pub clip_remainder: [T; limbs_for(BOUND_BITS)],
    /// `A - 1 - clip_remainder` when clipped, else 0.
    pub clip_gap: [T; limbs_for(BOUND_BITS)],
}

/// Width of the per-row part.
pub const NUM_SOFTMAX_COLS: usize = size_of::<SoftmaxCols<u8>>();
/// Width of one class.
pub const NUM_CLASS_COLS: usize = size_of::<ClassCols<u8>>();

/// Width of a row for `classes` classes.
pub const fn softmax_width(classes: usize) -> usize {
    NUM_SOFTMAX_COLS + classes * NUM_CLASS_COLS
}

/// A row split into its per-row part and its classes.
pub fn split_row<T>(row: &[T]) -> (&SoftmaxCols<T>, &[ClassCols<T>]) {
    let (named, classes) = row.split_at(NUM_SOFTMAX_COLS);
    (view(named), view_slice(classes))
}

/// Mutable [`split_row`].
pub fn split_row_mut<T>(row: &mut [T]) -> (&mut SoftmaxCols<T>, &mut [ClassCols<T>]) {
    let (named, classes) = row.split_at_mut(NUM_SOFTMAX_COLS);
    (view_mut(named), view_slice_mut(classes))
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

impl<T> ClassCols<T> {
    /// Every range check of a class: its limbs and bit bound.
    pub fn range_checks(&self) -> [(&[T], usize); 10] {
        [
            (&self.remainder[..], REMAINDER_BITS),
            (&self.below_slack[..], BELOW_SLACK_BITS),
            (&self.exp[..], UNIT_BITS),
            (&self.interpolation_remainder[..], REMAINDER_BITS),
            (&self.probability[..], UNIT_BITS),
            (&self.division_remainder[..], DIVISION_BITS),
            (&self.division_gap[..], DIVISION_BITS),
            (&self.coeff_abs[..], UNIT_BITS),
            (&self.clip_remainder[..], BOUND_BITS),
            (&self.clip_gap[..], BOUND_BITS),
        ]
    }
}

/// The softmax step table of one statement.
#[derive(Clone)]
pub struct SoftmaxStepTableAir {
    num_features: usize,
    classes: usize,
    clip_norm: i64,
    active: Vec<Vec<Goldilocks>>,
}

impl SoftmaxStepTableAir {
    /// The table for `batch` examples of `num_features` features and `classes` classes in
    /// `height` rows.
    pub fn new(
        num_features: usize,
        classes: usize,
        batch: usize,
        clip_norm: i64,
        height: usize,
    ) -> Self {
        Self {
            num_features,
            classes,
            clip_norm,
            active: vec![active_rows(batch, height)],
        }
    }
}

impl BaseAir<Goldilocks> for SoftmaxStepTableAir {
    fn width(&self) -> usize {
        softmax_width(self.classes)
    }

    fn num_periodic_columns(&self) -> usize {
        1
    }

    fn periodic_columns(&self) -> Cow<'_, [Vec<Goldilocks>]> {
        Cow::Borrowed(&self.active)
    }

    fn main_next_row_columns(&self) -> Vec<usize> {
        Vec::new()
    }

    fn max_constraint_degree(&self) -> Option<usize> {
        Some(3)
    }
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
        let (c, classes) = split_row(main.current_slice());
        let active_rows: AB::Expr = builder.periodic_values()[0].into();
        builder.assert_eq(c.active, active_rows);
        let active: AB::Expr = c.active.into();

        for (limbs, bits) in c.range_checks() {
            eval_range(builder, limbs, bits);
        }
        for class in classes {
            for (limbs, bits) in class.range_checks() {
                eval_range(builder, limbs, bits);
            }
            for flag in [class.onehot, class.selected, class.top, class.below] {
                builder.assert_bool(flag);
            }
        }
        builder.assert_bool(c.clipped);
        eval_label_and_max(builder, c, classes, active.clone());
        for class in classes {
            eval_exp(builder, c, class, active.clone());
        }
        eval_division(builder, classes, active.clone());
        eval_norms(builder, c, classes, active.clone());
        eval_clipping(builder, c, classes, active.clone(), self.clip_norm);

        let logits = classes.iter().map(|k| k.logit.into());
        let coeffs = classes.iter().map(|k| k.coeff.into());
        let example: Vec<AB::Expr> = logits
            .chain([c.norm_sq.into(), c.label.into()])
            .chain(coeffs)
            .collect();
        builder.push_interaction(EXAMPLE_BUS, example, Count::bounded(-active.clone(), 1));
        let bias_base = self.classes * self.num_features;
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

    let residual_sq = classes.iter().fold(AB::Expr::ZERO, |s, k| {
        let r = limbs_value::<AB>(&k.probability) - k.onehot.into() * constant::<AB>(ONE);
        s + r.square()
    });
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

/// Clipped when `A > C`: then `|c_k| = floor(|r_k|·C / A)`, else `|c_k| = |r_k|`; `c_k`
/// takes the residual's sign, negative exactly on the label's class.
fn eval_clipping<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &SoftmaxCols<AB::Var>,
    classes: &[ClassCols<AB::Var>],
    active: AB::Expr,
    clip_norm: i64,
) {
    let bound = limbs_value::<AB>(&c.bound);
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
        builder.assert_eq(class.coeff, sign * m);
    }
}
