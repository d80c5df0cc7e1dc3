//! `StepTable`: one row per example, the training step from the example's logit `z`,
//! squared norm `N` and label `y` to its clipped coefficient `c`, exactly as
//! [`crate::reference::training_step`] computes it.
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
use super::{EXAMPLE_BUS, SIGMOID_BUS, UPDATE_BUS, active_rows, constant, view, view_mut};
use crate::fixed::ONE;
use crate::sigmoid::{FIRST_SEGMENT, SEGMENT_BITS, SEGMENTS};

/// Bits of the logit's remainder below a segment (exact).
pub const REMAINDER_BITS: usize = SEGMENT_BITS as usize;
/// Bits of the clamp slack (`-q - 257` or `q - 256`, below 2^28; sign only).
pub const CLAMP_SLACK_BITS: usize = 33;
/// Bits of `|r|` (at most `ONE`; bounds products only).
pub const UNIT_BITS: usize = 22;
/// Bits of `ν = ceil(√N)` (`N < 2^52.1`; exact, so `ν²` cannot wrap).
pub const NORM_BITS: usize = 27;
/// Bits of `ν² - N`, `N - (ν-1)² - 1`, the floor remainder and its gap (each below `2ν`;
/// sign only).
pub const GAP_BITS: usize = 33;
/// Bits of the clip decision's slack (`|C·ONE - |r|·ν| < 2^43`; sign only).
pub const CLIP_SLACK_BITS: usize = 44;

/// The named columns of a step-table row.
#[repr(C)]
pub struct StepCols<T> {
    /// Bus-visible copy of the periodic `ACTIVE`: 1 on the first `B` rows.
    pub active: T,
    /// Received: the logit at scale 2^32.
    pub logit: T,
    /// Received: `Σ x² + ONE²`.
    pub norm_sq: T,
    /// Received: the label.
    pub label: T,
    /// Received: the clipped coefficient this row proves (0 on an unused slot).
    pub coeff: T,
    /// Received: 1 if the slot's row is in the batch (always, with public indices).
    pub sampled: T,
    /// `floor(z / 2^28)`.
    pub quotient: T,
    /// `z - quotient·2^28`.
    pub remainder: [T; limbs_for(REMAINDER_BITS)],
    /// `z < -16`.
    pub below: T,
    /// `z ≥ 16`.
    pub above: T,
    /// `-q - 257` below, `q - 256` above, 0 in the middle.
    pub clamp_slack: [T; limbs_for(CLAMP_SLACK_BITS)],
    /// The segment's start (middle case).
    pub segment_start: T,
    /// The segment's rise (middle case).
    pub segment_rise: T,
    /// The sigmoid at scale 2^16.
    pub sigmoid: T,
    /// The interpolation's floor remainder.
    pub interpolation_remainder: [T; limbs_for(REMAINDER_BITS)],
    /// `|r|` for the residual `r = σ - y·ONE`.
    pub abs_residual: [T; limbs_for(UNIT_BITS)],
    /// `r < 0`.
    pub residual_neg: T,
    /// `ν = ceil(√N)`.
    pub norm: [T; limbs_for(NORM_BITS)],
    /// `ν² - N`.
    pub norm_upper: [T; limbs_for(GAP_BITS)],
    /// `N - (ν - 1)² - 1`.
    pub norm_lower: [T; limbs_for(GAP_BITS)],
    /// `|r| · ν`.
    pub grad_norm: T,
    /// Whether the gradient was clipped.
    pub clipped: T,
    /// `C·ONE - |r|·ν` when kept, `|r|·ν - C·ONE - 1` when clipped.
    pub clip_slack: [T; limbs_for(CLIP_SLACK_BITS)],
    /// `|c|`.
    pub coeff_abs: [T; limbs_for(UNIT_BITS)],
    /// `|c| · ν`.
    pub coeff_norm: T,
    /// `C·ONE - |c|·ν` when clipped.
    pub floor_rem: [T; limbs_for(GAP_BITS)],
    /// `ν - 1 - (C·ONE - |c|·ν)` when clipped.
    pub floor_gap: [T; limbs_for(GAP_BITS)],
}

/// Width of a step-table row.
pub const NUM_STEP_COLS: usize = size_of::<StepCols<u8>>();

impl<T> StepCols<T> {
    /// Views a row by name.
    pub fn from_row(row: &[T]) -> &Self {
        debug_assert_eq!(row.len(), NUM_STEP_COLS);
        view(row)
    }

    /// Mutable [`Self::from_row`].
    pub fn from_row_mut(row: &mut [T]) -> &mut Self {
        debug_assert_eq!(row.len(), NUM_STEP_COLS);
        view_mut(row)
    }

    /// Every range check of the row: its limbs and bit bound.
    pub fn range_checks(&self) -> [(&[T], usize); 11] {
        [
            (&self.remainder[..], REMAINDER_BITS),
            (&self.clamp_slack[..], CLAMP_SLACK_BITS),
            (&self.interpolation_remainder[..], REMAINDER_BITS),
            (&self.abs_residual[..], UNIT_BITS),
            (&self.norm[..], NORM_BITS),
            (&self.norm_upper[..], GAP_BITS),
            (&self.norm_lower[..], GAP_BITS),
            (&self.clip_slack[..], CLIP_SLACK_BITS),
            (&self.coeff_abs[..], UNIT_BITS),
            (&self.floor_rem[..], GAP_BITS),
            (&self.floor_gap[..], GAP_BITS),
        ]
    }
}

/// The step table of one statement.
#[derive(Clone)]
pub struct StepTableAir {
    num_features: usize,
    clip_norm: i64,
    hidden_sampling: bool,
    active: Vec<Vec<Goldilocks>>,
}

impl StepTableAir {
    /// The table for `batch` examples (slots, under `hidden_sampling`) of `num_features`
    /// features in `height` rows.
    pub fn new(
        num_features: usize,
        batch: usize,
        clip_norm: i64,
        hidden_sampling: bool,
        height: usize,
    ) -> Self {
        Self {
            num_features,
            clip_norm,
            hidden_sampling,
            active: vec![active_rows(batch, height)],
        }
    }
}

impl BaseAir<Goldilocks> for StepTableAir {
    fn width(&self) -> usize {
        NUM_STEP_COLS
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

impl<AB: InteractionBuilder<F = Goldilocks>> Air<AB> for StepTableAir {
    fn eval(&self, builder: &mut AB) {
        let main = builder.main();
        let c = StepCols::from_row(main.current_slice());
        let active_rows: AB::Expr = builder.periodic_values()[0].into();
        builder.assert_eq(c.active, active_rows);
        let active: AB::Expr = c.active.into();

        for (limbs, bits) in c.range_checks() {
            eval_range(builder, limbs, bits);
        }
        for flag in [c.label, c.below, c.above, c.residual_neg, c.clipped] {
            builder.assert_bool(flag);
        }
        eval_sampled(builder, c.sampled, active.clone(), self.hidden_sampling);
        eval_sigmoid(builder, c, active.clone());
        eval_norm(builder, c, active.clone());
        eval_clipping(builder, c, active.clone(), self.clip_norm);

        let example = [c.logit, c.norm_sq, c.label, c.coeff, c.sampled].map(Into::into);
        builder.push_interaction(EXAMPLE_BUS, example, Count::bounded(-active.clone(), 1));
        let bias_share = active * c.coeff.into() * constant::<AB>(ONE);
        let bias = AB::Expr::from_usize(self.num_features);
        builder.push_interaction(UPDATE_BUS, [bias], Count::provided(bias_share));
    }
}

/// Every active row is sampled with public indices; under hidden sampling a row is sampled
/// or not, and padding rows never are.
pub(crate) fn eval_sampled<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    sampled: AB::Var,
    active: AB::Expr,
    hidden_sampling: bool,
) {
    match hidden_sampling {
        false => builder.assert_eq(sampled, active),
        true => {
            builder.assert_bool(sampled);
            builder.assert_zero(sampled.into() * (AB::Expr::ONE - active));
        }
    }
}

/// `q`, `rem` and the case; the segment looked up in the middle case and interpolated;
/// the residual and its sign.
fn eval_sigmoid<AB: InteractionBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &StepCols<AB::Var>,
    active: AB::Expr,
) {
    let q: AB::Expr = c.quotient.into();
    let rem = limbs_value::<AB>(&c.remainder);
    let scale = constant::<AB>(1 << SEGMENT_BITS);
    builder.assert_eq(c.logit, q.clone() * scale.clone() + rem.clone());

    let below: AB::Expr = c.below.into();
    let above: AB::Expr = c.above.into();
    let mid = AB::Expr::ONE - below.clone() - above.clone();
    builder.assert_zero(below.clone() * above.clone());
    let first = constant::<AB>(FIRST_SEGMENT);
    let end = constant::<AB>(FIRST_SEGMENT + SEGMENTS as i64);
    let slack = below.clone() * (first.clone() - q.clone() - AB::Expr::ONE)
        + above.clone() * (q.clone() - end);
    builder.assert_eq(slack, limbs_value::<AB>(&c.clamp_slack));

    let segment = [q - first, c.segment_start.into(), c.segment_rise.into()];
    builder.push_interaction(
        SIGMOID_BUS,
        segment,
        Count::bounded(active * mid.clone(), 1),
    );
    let interpolated = c.sigmoid.into() * scale.clone()
        + limbs_value::<AB>(&c.interpolation_remainder)
        - c.segment_start.into() * scale
        - c.segment_rise.into() * rem;
    builder.assert_zero(mid * interpolated);
    builder.assert_zero(below * c.sigmoid.into());
    builder.assert_zero(above * (c.sigmoid.into() - constant::<AB>(ONE)));

    let residual = c.sigmoid.into() - c.label.into() * constant::<AB>(ONE);
    let abs_r = limbs_value::<AB>(&c.abs_residual);
    let neg: AB::Expr = c.residual_neg.into();
    builder.assert_eq(residual, abs_r.clone() - neg * abs_r * AB::Expr::TWO);
}

/// `ν = ceil(√N)`: `ν² ≥ N > (ν - 1)²`.
fn eval_norm<AB: InteractionBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &StepCols<AB::Var>,
    active: AB::Expr,
) {
    let nu = limbs_value::<AB>(&c.norm);
    builder.assert_eq(
        nu.clone().square() - c.norm_sq.into(),
        limbs_value::<AB>(&c.norm_upper),
    );
    let below_sq = (nu - AB::Expr::ONE).square();
    let lower = c.norm_sq.into() - below_sq - AB::Expr::ONE - limbs_value::<AB>(&c.norm_lower);
    builder.assert_zero(active * lower);
}

/// `c = r` when `|r|·ν ≤ C·ONE`, otherwise `c = sign(r)·floor(C·ONE/ν)`; `c = 0` on a slot
/// that is not sampled.
fn eval_clipping<AB: InteractionBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &StepCols<AB::Var>,
    active: AB::Expr,
    clip_norm: i64,
) {
    let nu = limbs_value::<AB>(&c.norm);
    let abs_r = limbs_value::<AB>(&c.abs_residual);
    let bound = constant::<AB>(clip_norm * ONE);
    let clipped: AB::Expr = c.clipped.into();
    let keep = AB::Expr::ONE - clipped.clone();
    builder.assert_eq(c.grad_norm, abs_r.clone() * nu.clone());
    let room = bound.clone() - c.grad_norm.into();
    let decision = keep.clone() * room.clone() + clipped.clone() * (-room - AB::Expr::ONE);
    builder.assert_zero(active * (decision - limbs_value::<AB>(&c.clip_slack)));

    let m = limbs_value::<AB>(&c.coeff_abs);
    builder.assert_zero(keep * (m.clone() - abs_r));
    builder.assert_eq(c.coeff_norm, m.clone() * nu.clone());
    let floor_rem = limbs_value::<AB>(&c.floor_rem);
    builder.assert_zero(clipped.clone() * (bound - c.coeff_norm.into() - floor_rem.clone()));
    builder.assert_eq(
        clipped * (nu - AB::Expr::ONE - floor_rem),
        limbs_value::<AB>(&c.floor_gap),
    );
    let neg: AB::Expr = c.residual_neg.into();
    let signed = m.clone() - neg * m * AB::Expr::TWO;
    builder.assert_eq(c.coeff, c.sampled.into() * signed);
}
