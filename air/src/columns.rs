//! Trace layout of [`crate::ClippedGradientAir`].
//!
//! A row is `[Poseidon2 permutation | StepCols | update accumulators (d + 1)]`. Every row
//! carries one Poseidon2 permutation. An example occupies a block of `K + D` rows: `K`
//! absorb rows (the leaf sponge; each absorbs 8 preimage elements, and its feature lanes
//! feed the logit and the norm), then `D ≥ 2` Merkle rows (one compression each). The
//! example's scalar arithmetic sits on its first two Merkle rows, whose bit pools are free:
//! activation (hard sigmoid, residual, norm) on the first, clipping on the second.

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
/// Boolean columns per row, shared by the range checks of whichever row type it is.
pub const POOL_BITS: usize = RATE * X_BITS;

/// The bit pool of a block's first Merkle row: range checks of the activation.
#[repr(C)]
pub struct ActivationBits<T> {
    /// Remainder of `floor(logit / 2^18)`.
    pub logit_rem: [T; LOGIT_REM_BITS],
    /// The slack that proves the clamp case.
    pub clamp: [T; CLAMP_BITS],
    /// `ONE - t` when neither clamp applies.
    pub clamp_mid: [T; CLAMP_MID_BITS],
    /// `|r|`.
    pub abs_residual: [T; UNIT_BITS],
    /// `ν`.
    pub norm: [T; NORM_BITS],
    /// `ν² - N`.
    pub norm_upper: [T; NORM_GAP_BITS],
}

/// The bit pool of a block's second Merkle row: range checks of the clipping.
#[repr(C)]
pub struct ClippingBits<T> {
    /// `N - (ν - 1)² - 1`.
    pub norm_lower: [T; NORM_GAP_BITS],
    /// The slack that proves the clip decision.
    pub clip_slack: [T; CLIP_SLACK_BITS],
    /// `|c|`.
    pub coeff_abs: [T; UNIT_BITS],
    /// `C·ONE - |c|·ν` when clipped.
    pub clip_floor: [T; NORM_BITS],
    /// `ν - 1 - (C·ONE - |c|·ν)` when clipped.
    pub clip_floor_gap: [T; NORM_BITS],
}

const _: () = assert!(size_of::<ActivationBits<u8>>() <= POOL_BITS);
const _: () = assert!(size_of::<ClippingBits<u8>>() <= POOL_BITS);

/// The named non-hash columns of a row.
///
/// Block constants (`coeff`, `label`, `abs_residual`, `residual_neg`, `norm`) hold one
/// value on every row of an example's block, which is how the activation row and the
/// clipping row share them.
#[repr(C)]
pub struct StepCols<T> {
    /// Boolean pool: feature range checks on absorb rows ([`Self::x_bits`]), activation
    /// checks on the first Merkle row, clipping checks on the second.
    pub bits: [T; POOL_BITS],
    /// Running logit of the block, `b·ONE + Σ w_j x_j` over the rows before this one.
    pub logit: T,
    /// Running squared norm of the block, `ONE² + Σ x_j²` over the rows before this one.
    pub norm_sq: T,
    /// This row's own `Σ x_j²` over its feature lanes.
    pub row_norm_sq: T,
    /// Block constant: the example's clipped coefficient `c`.
    pub coeff: T,
    /// Block constant: the example's label.
    pub label: T,
    /// `floor(logit / 2^18)`, the quarter logit at scale 2^16.
    pub quarter_logit: T,
    /// The hard sigmoid clamped at 0.
    pub below: T,
    /// The hard sigmoid clamped at 1.
    pub above: T,
    /// Hard-sigmoid output.
    pub sigmoid: T,
    /// Block constant: `|r|`.
    pub abs_residual: T,
    /// Block constant: whether `r < 0`.
    pub residual_neg: T,
    /// Block constant: `ν = ceil(sqrt(N))`.
    pub norm: T,
    /// `|r| · ν`, the gradient-norm bound.
    pub grad_norm: T,
    /// Whether the gradient was clipped.
    pub clipped: T,
    /// `|c|`.
    pub coeff_abs: T,
    /// `|c| · ν`.
    pub coeff_norm: T,
}

impl<T> StepCols<T> {
    /// The bits of `x + 2^20` for the feature in `lane` (absorb rows).
    pub fn x_bits(&self, lane: usize) -> &[T] {
        &self.bits[lane * X_BITS..(lane + 1) * X_BITS]
    }

    /// Mutable [`Self::x_bits`].
    pub fn x_bits_mut(&mut self, lane: usize) -> &mut [T] {
        &mut self.bits[lane * X_BITS..(lane + 1) * X_BITS]
    }

    /// The pool read as activation range checks.
    pub fn activation(&self) -> &ActivationBits<T> {
        view(&self.bits[..size_of::<ActivationBits<u8>>()])
    }

    /// Mutable [`Self::activation`].
    pub fn activation_mut(&mut self) -> &mut ActivationBits<T> {
        view_mut(&mut self.bits[..size_of::<ActivationBits<u8>>()])
    }

    /// The pool read as clipping range checks.
    pub fn clipping(&self) -> &ClippingBits<T> {
        view(&self.bits[..size_of::<ClippingBits<u8>>()])
    }

    /// Mutable [`Self::clipping`].
    pub fn clipping_mut(&mut self) -> &mut ClippingBits<T> {
        view_mut(&mut self.bits[..size_of::<ClippingBits<u8>>()])
    }
}

fn view<T, V>(cells: &[T]) -> &V {
    // SAFETY: `V` is a `#[repr(C)]` struct of arrays of `T` whose size in `T`s equals
    // `cells.len()` (callers pass `size_of::<V<u8>>()` cells), so it has `T`'s alignment.
    let (prefix, views, suffix) = unsafe { cells.align_to::<V>() };
    debug_assert!(prefix.is_empty() && suffix.is_empty() && views.len() == 1);
    &views[0]
}

fn view_mut<T, V>(cells: &mut [T]) -> &mut V {
    // SAFETY: as in `view`.
    let (prefix, views, suffix) = unsafe { cells.align_to_mut::<V>() };
    debug_assert!(prefix.is_empty() && suffix.is_empty() && views.len() == 1);
    &mut views[0]
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
        view(self)
    }
}

impl<T> BorrowMut<StepCols<T>> for [T] {
    fn borrow_mut(&mut self) -> &mut StepCols<T> {
        debug_assert_eq!(self.len(), NUM_STEP_COLS);
        view_mut(self)
    }
}
