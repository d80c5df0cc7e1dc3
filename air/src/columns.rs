//! Trace layout of [`crate::ClippedGradientAir`].
//!
//! A row is `[Poseidon2 permutation | StepCols | update accumulators (d + 1)]`. Every row
//! carries one Poseidon2 permutation. An example occupies a block of `K + D` rows: `K`
//! absorb rows (the leaf sponge; each absorbs 8 preimage elements, and its feature lanes
//! feed the logit and the norm), then `D` Merkle rows (one compression each). The example's
//! scalar arithmetic (sigmoid, residual, norm, clipping) sits on its last absorb row.

use core::borrow::{Borrow, BorrowMut};
use core::mem::size_of;

use p3_goldilocks::{
    GOLDILOCKS_POSEIDON2_HALF_FULL_ROUNDS, GOLDILOCKS_POSEIDON2_PARTIAL_ROUNDS_12,
};
use p3_poseidon2_air::{Poseidon2Cols, num_cols};

use crate::fixed::X_BITS;
use crate::hash::{RATE, WIDTH};

/// Goldilocks' S-box is x^7.
pub const SBOX_DEGREE: u64 = 7;
/// One committed x^3 per S-box keeps constraints at degree 3.
pub const SBOX_REGISTERS: usize = 1;
/// Full rounds at each end.
pub const HALF_FULL_ROUNDS: usize = GOLDILOCKS_POSEIDON2_HALF_FULL_ROUNDS;
/// Partial rounds in the middle.
pub const PARTIAL_ROUNDS: usize = GOLDILOCKS_POSEIDON2_PARTIAL_ROUNDS_12;

/// Columns of the embedded Poseidon2 permutation.
pub type PermCols<T> =
    Poseidon2Cols<T, WIDTH, SBOX_DEGREE, SBOX_REGISTERS, HALF_FULL_ROUNDS, PARTIAL_ROUNDS>;
/// Width of the permutation columns.
pub const NUM_PERM_COLS: usize =
    num_cols::<WIDTH, SBOX_DEGREE, SBOX_REGISTERS, HALF_FULL_ROUNDS, PARTIAL_ROUNDS>();

/// Bits of `floor(z / 2^18)`'s remainder.
pub const LOGIT_REM_BITS: usize = 18;
/// Bits of the hard-sigmoid case witness (|t| < 2^37).
pub const CLAMP_BITS: usize = 38;
/// Bits of `ONE - t` in the unclamped case.
pub const CLAMP_MID_BITS: usize = 17;
/// Bits of `|r|` and of `|c|` (both at most ONE = 2^16).
pub const UNIT_BITS: usize = 17;
/// Bits of `ν = ceil(sqrt(N))` (N < 2^51).
pub const NORM_BITS: usize = 26;
/// Bits of the two gaps that pin `ν` (each below 2ν).
pub const NORM_GAP_BITS: usize = 27;
/// Bits of the clip-decision slack (|C·ONE - |r|·ν| < 2^44).
pub const CLIP_SLACK_BITS: usize = 45;

/// The named non-hash columns of a row.
#[repr(C)]
pub struct StepCols<T> {
    /// Bits of `x + 2^20` for each absorbed lane that holds a feature.
    pub x_bits: [[T; X_BITS]; RATE],
    /// Running logit of the block, `b·ONE + Σ w_j x_j` over the rows before this one.
    pub logit: T,
    /// Running squared norm of the block, `ONE² + Σ x_j²` over the rows before this one.
    pub norm_sq: T,
    /// This row's own `Σ x_j²` over its feature lanes.
    pub row_norm_sq: T,
    /// The example's clipped coefficient `c`, constant over its block.
    pub coeff: T,
    /// `floor(logit / 2^18)`, the quarter logit at scale 2^16.
    pub quarter_logit: T,
    /// Remainder bits of that division.
    pub logit_rem_bits: [T; LOGIT_REM_BITS],
    /// The hard sigmoid clamped at 0.
    pub below: T,
    /// The hard sigmoid clamped at 1.
    pub above: T,
    /// Bits of the slack that proves the clamp case.
    pub clamp_bits: [T; CLAMP_BITS],
    /// Bits of `ONE - t` when neither clamp applies.
    pub clamp_mid_bits: [T; CLAMP_MID_BITS],
    /// Hard-sigmoid output.
    pub sigmoid: T,
    /// `|r|`.
    pub abs_residual: T,
    /// Whether `r < 0`.
    pub residual_neg: T,
    /// Bits of `|r|`.
    pub abs_residual_bits: [T; UNIT_BITS],
    /// `ν = ceil(sqrt(norm_sq))`.
    pub norm: T,
    /// Bits of `ν`.
    pub norm_bits: [T; NORM_BITS],
    /// Bits of `ν² - N`.
    pub norm_upper_bits: [T; NORM_GAP_BITS],
    /// Bits of `N - (ν - 1)² - 1`.
    pub norm_lower_bits: [T; NORM_GAP_BITS],
    /// `|r| · ν`, the gradient-norm bound.
    pub grad_norm: T,
    /// Whether the gradient was clipped.
    pub clipped: T,
    /// Bits of the slack that proves the clip decision.
    pub clip_slack_bits: [T; CLIP_SLACK_BITS],
    /// `|c|`.
    pub coeff_abs: T,
    /// Bits of `|c|`.
    pub coeff_abs_bits: [T; UNIT_BITS],
    /// `|c| · ν`.
    pub coeff_norm: T,
    /// Bits of `C·ONE - |c|·ν` when clipped.
    pub clip_floor_bits: [T; NORM_BITS],
    /// Bits of `ν - 1 - (C·ONE - |c|·ν)` when clipped.
    pub clip_floor_gap_bits: [T; NORM_BITS],
}

/// Width of [`StepCols`].
pub const NUM_STEP_COLS: usize = size_of::<StepCols<u8>>();
/// First column of [`StepCols`].
pub const STEP_START: usize = NUM_PERM_COLS;
/// First update accumulator column.
pub const ACC_START: usize = NUM_PERM_COLS + NUM_STEP_COLS;

/// Total trace width for `d` features.
pub const fn trace_width(num_features: usize) -> usize {
    ACC_START + num_features + 1
}

/// Views the parts of one row by name.
pub fn split_row<T>(row: &[T]) -> (&PermCols<T>, &StepCols<T>, &[T]) {
    let (perm, rest) = row.split_at(NUM_PERM_COLS);
    let (step, acc) = rest.split_at(NUM_STEP_COLS);
    (perm.borrow(), step.borrow(), acc)
}

/// Mutable view of the parts of one row.
pub fn split_row_mut<T>(row: &mut [T]) -> (&mut PermCols<T>, &mut StepCols<T>, &mut [T]) {
    let (perm, rest) = row.split_at_mut(NUM_PERM_COLS);
    let (step, acc) = rest.split_at_mut(NUM_STEP_COLS);
    (perm.borrow_mut(), step.borrow_mut(), acc)
}

impl<T> Borrow<StepCols<T>> for [T] {
    fn borrow(&self) -> &StepCols<T> {
        debug_assert_eq!(self.len(), NUM_STEP_COLS);
        let (prefix, shorts, suffix) = unsafe { self.align_to::<StepCols<T>>() };
        debug_assert!(prefix.is_empty(), "alignment should match");
        debug_assert!(suffix.is_empty(), "alignment should match");
        debug_assert_eq!(shorts.len(), 1);
        &shorts[0]
    }
}

impl<T> BorrowMut<StepCols<T>> for [T] {
    fn borrow_mut(&mut self) -> &mut StepCols<T> {
        debug_assert_eq!(self.len(), NUM_STEP_COLS);
        let (prefix, shorts, suffix) = unsafe { self.align_to_mut::<StepCols<T>>() };
        debug_assert!(prefix.is_empty(), "alignment should match");
        debug_assert!(suffix.is_empty(), "alignment should match");
        debug_assert_eq!(shorts.len(), 1);
        &mut shorts[0]
    }
}
