//! `HiddenTable`: an MLP's hidden units and second layer, one row per example and hidden
//! unit (ARCHITECTURE.md, "The MLP proof"), exactly as [`crate::network::network_step`]
//! computes them.
//!
//! Row `i·H + m` is unit `m` of example `i`. It receives `(i, m, a_m, c_m)` from the hash
//! table (the pre-activation the hash table summed, and the clipped hidden coefficient
//! whose shares the hash table sends), and proves:
//!
//! - the capped ReLU: `a = 2^16·q + rem` with `q` on one piece, spelled by one 40-bit
//!   `w` (negative: `q = -1 - w < 0`, `h = 0`; linear: `q = w < 2^21`, `h = q`; capped:
//!   `q = 2^21 + w`, `h = 2^21 - 1`);
//! - the second layer's running logits `z_k = b_k·ONE + Σ_m W2_km h_m` (weights periodic);
//! - the backward sum `t = Σ_k W2_km r_k` and the hidden delta `δ = floor(t / 2^16)` on the
//!   linear piece, 0 elsewhere, `|δ| < 2^24`;
//! - the running sums `ONE² + Σ h²` and `Σ δ²`;
//! - the clipped coefficient: `c = δ` when kept, else `sign(δ)·floor(|δ|·C / ν)`.
//!
//! The example's residuals `r_k`, output coefficients `c2_k`, `ν` and the clip decision are
//! block constants, proven by the step table: the block's last row sends
//! `(i, z.., r.., c2.., ONE² + Σh², Σδ², ν, clipped)` to it on the `head` bus. Each row
//! sends the update shares `c2_k·h` of the second layer's weights and `c·ONE` of its own
//! unit's bias. Rows past the batch hold zeros in every column a bus reads.

use std::borrow::Cow;

use p3_air::{Air, AirBuilder, BaseAir, WindowAccess};
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_lookup::{Count, InteractionBuilder};

use super::limbs::{eval_range, limbs_for, limbs_value};
use super::{HEAD_BUS, HIDDEN_BUS, RANGE_BUS, UPDATE_BUS, constant, view, view_mut};
use crate::fixed::{ONE, X_OFFSET, to_field};
use crate::network::HIDDEN_CAP;
use crate::statement::Statement;

/// Bits of a pre-activation's remainder below `2^16`.
pub const PRE_REMAINDER_BITS: usize = 16;
/// Bits of a linear unit's value (`h < 2^21`).
pub const VALUE_BITS: usize = 21;
/// Bits of the ReLU's `w`: `-q - 1` (negative), `q - 2^21` (capped) or `q` (linear, then
/// below `2^21`). `|a| < 2^56` for every accepted shape (`d ≤ 1024` features below `2^21`,
/// weights below `2^24`), so `|q| < 2^40`.
pub const RELU_BITS: usize = 40;
/// Bits of `|δ|`, below [`crate::network::DELTA_BOUND`].
pub const DELTA_BITS: usize = 24;
/// Bits of the backward floor's remainder.
pub const BACK_REMAINDER_BITS: usize = 16;
/// Bits of `ν` and of the clip floor's remainder and gap below it.
pub const NU_BITS: usize = 31;

const _: () = assert!(1 << DELTA_BITS == crate::network::DELTA_BOUND);
const _: () = assert!(HIDDEN_CAP + 1 == 1 << VALUE_BITS);
/// Limbs of `w` a linear value may use.
pub const VALUE_LIMBS: usize = limbs_for(VALUE_BITS);
/// The shift that bounds a linear value's top limb (see [`super::limbs::top_shift`]).
pub const VALUE_TOP_SHIFT: usize = super::limbs::top_shift(VALUE_BITS);
const _: () = assert!(VALUE_TOP_SHIFT > 0 && VALUE_LIMBS < limbs_for(RELU_BITS));

/// The named columns of a hidden-table row (the class columns follow).
#[repr(C)]
pub struct HiddenCols<T> {
    /// Bus-visible copy of the periodic `ACTIVE`.
    pub active: T,
    /// Bus-visible copy of the periodic `LAST` (the block's last row sends the head).
    pub last: T,
    /// Bus-visible copy of the periodic `EXAMPLE`: the example's position in the batch.
    pub example: T,
    /// Bus-visible copy of the periodic `UNIT`: the hidden unit `m`.
    pub unit: T,
    /// Received: the pre-activation `a` at scale `2^32`.
    pub pre: T,
    /// Received: the clipped coefficient `c` this row proves.
    pub coeff: T,
    /// `q < 0`.
    pub negative: T,
    /// `q ≥ 2^21`.
    pub capped: T,
    /// `a - 2^16·q`.
    pub pre_remainder: [T; limbs_for(PRE_REMAINDER_BITS)],
    /// `q` (linear), `-q - 1` (negative) or `q - 2^21` (capped).
    pub relu: [T; limbs_for(RELU_BITS)],
    /// The hidden value `h`.
    pub value: T,
    /// `ONE² + Σ h²` over the block up to this row.
    pub value_sq: T,
    /// `|δ|`.
    pub delta_abs: [T; limbs_for(DELTA_BITS)],
    /// `δ < 0`.
    pub delta_neg: T,
    /// `t - 2^16·δ` on the linear piece.
    pub back_remainder: [T; limbs_for(BACK_REMAINDER_BITS)],
    /// `Σ δ²` over the block up to this row.
    pub delta_sq: T,
    /// Block constant: `ν`.
    pub norm: T,
    /// Block constant: whether the example's gradient was clipped.
    pub clipped: T,
    /// `|c|`.
    pub coeff_abs: [T; limbs_for(DELTA_BITS)],
    /// `|δ|·C - |c|·ν` when clipped.
    pub clip_remainder: [T; limbs_for(NU_BITS)],
    /// `ν - 1 - clip_remainder` when clipped, else 0.
    pub clip_gap: [T; limbs_for(NU_BITS)],
}

/// The columns of one output class.
#[repr(C)]
pub struct HiddenClassCols<T> {
    /// `b_k·ONE + Σ W2_km h_m` over the block up to this row.
    pub logit: T,
    /// Block constant: the residual `r_k`.
    pub residual: T,
    /// Block constant: the clipped output coefficient `c2_k`.
    pub coeff: T,
}

/// Width of the named part.
pub const NUM_HIDDEN_COLS: usize = size_of::<HiddenCols<u8>>();
/// Width of one class.
pub const NUM_HIDDEN_CLASS_COLS: usize = size_of::<HiddenClassCols<u8>>();

/// Width of a row for `classes` output classes.
pub const fn hidden_width(classes: usize) -> usize {
    NUM_HIDDEN_COLS + classes * NUM_HIDDEN_CLASS_COLS
}

/// A row split into its named part and its classes.
pub fn split_row<T>(row: &[T]) -> (&HiddenCols<T>, &[HiddenClassCols<T>]) {
    let (named, classes) = row.split_at(NUM_HIDDEN_COLS);
    (view(named), super::view_slice(classes))
}

/// Mutable [`split_row`].
pub fn split_row_mut<T>(row: &mut [T]) -> (&mut HiddenCols<T>, &mut [HiddenClassCols<T>]) {
    let (named, classes) = row.split_at_mut(NUM_HIDDEN_COLS);
    (view_mut(named), super::view_slice_mut(classes))
}

impl<T> HiddenCols<T> {
    /// Every range check of a row: its limbs and bit bound.
    pub fn range_checks(&self) -> [(&[T], usize); 7] {
        [
            (&self.pre_remainder[..], PRE_REMAINDER_BITS),
            (&self.relu[..], RELU_BITS),
            (&self.delta_abs[..], DELTA_BITS),
            (&self.back_remainder[..], BACK_REMAINDER_BITS),
            (&self.coeff_abs[..], DELTA_BITS),
            (&self.clip_remainder[..], NU_BITS),
            (&self.clip_gap[..], NU_BITS),
        ]
    }
}

/// Indices of the periodic columns.
pub mod periodic {
    /// 1 on the first `B·H` rows.
    pub const ACTIVE: usize = 0;
    /// 1 on a block's first row.
    pub const FIRST: usize = 1;
    /// 1 on a block's last row.
    pub const LAST: usize = 2;
    /// 1 when the next row is of the same block.
    pub const KEEP: usize = 3;
    /// The example's position in the batch.
    pub const EXAMPLE: usize = 4;
    /// The hidden unit.
    pub const UNIT: usize = 5;
    /// Then per class `k`: `W2_km` of this row's unit, and of the next row's unit.
    pub const COUNT: usize = 6;

    /// The column of class `k`'s weight on this row.
    pub const fn weight(k: usize) -> usize {
        COUNT + 2 * k
    }

    /// The column of class `k`'s weight on the next row (0 past the block).
    pub const fn next_weight(k: usize) -> usize {
        COUNT + 2 * k + 1
    }
}

/// The hidden table of one MLP statement.
#[derive(Clone)]
pub struct HiddenTableAir {
    num_features: usize,
    hidden: usize,
    clip_norm: i64,
    /// The second layer's biases.
    biases: Vec<i64>,
    periodic: Vec<Vec<Goldilocks>>,
}

impl HiddenTableAir {
    /// The table of an MLP statement in `height` rows.
    pub fn new(statement: &Statement, height: usize) -> Self {
        let shape = statement.shape();
        let (d, hidden, classes) = (shape.num_features, shape.outputs, shape.classes);
        let params = &statement.model.params;
        let second = hidden * (d + 1);
        let weight = |k: usize, m: usize| to_field(params[second + k * hidden + m]);
        let mut periodic = vec![vec![Goldilocks::ZERO; height]; periodic::COUNT + 2 * classes];
        let one = Goldilocks::ONE;
        for i in 0..shape.batch {
            for m in 0..hidden {
                let row = i * hidden + m;
                periodic[periodic::ACTIVE][row] = one;
                periodic[periodic::FIRST][row] = Goldilocks::from_bool(m == 0);
                periodic[periodic::LAST][row] = Goldilocks::from_bool(m + 1 == hidden);
                periodic[periodic::KEEP][row] = Goldilocks::from_bool(m + 1 < hidden);
                periodic[periodic::EXAMPLE][row] = Goldilocks::from_usize(i);
                periodic[periodic::UNIT][row] = Goldilocks::from_usize(m);
                for k in 0..classes {
                    periodic[periodic::weight(k)][row] = weight(k, m);
                    if m + 1 < hidden {
                        periodic[periodic::next_weight(k)][row] = weight(k, m + 1);
                    }
                }
            }
        }
        Self {
            num_features: d,
            hidden,
            clip_norm: statement.params.clip_norm,
            biases: params[second + classes * hidden..].to_vec(),
            periodic,
        }
    }

    /// The periodic columns (forgers rebuild rows from them).
    pub fn periodic(&self) -> &[Vec<Goldilocks>] {
        &self.periodic
    }
}

impl BaseAir<Goldilocks> for HiddenTableAir {
    fn width(&self) -> usize {
        hidden_width(self.biases.len())
    }

    fn num_periodic_columns(&self) -> usize {
        self.periodic.len()
    }

    fn periodic_columns(&self) -> Cow<'_, [Vec<Goldilocks>]> {
        Cow::Borrowed(&self.periodic)
    }

    fn max_constraint_degree(&self) -> Option<usize> {
        Some(3)
    }
}

/// A row and the next, by name.
struct Rows<'a, T> {
    local: &'a HiddenCols<T>,
    local_classes: &'a [HiddenClassCols<T>],
    next: &'a HiddenCols<T>,
    next_classes: &'a [HiddenClassCols<T>],
}

impl<AB: InteractionBuilder<F = Goldilocks>> Air<AB> for HiddenTableAir {
    fn eval(&self, builder: &mut AB) {
        let main = builder.main();
        let (local, local_classes) = split_row(main.current_slice());
        let (next, next_classes) = split_row(main.next_slice());
        let rows = Rows {
            local,
            local_classes,
            next,
            next_classes,
        };
        let p: Vec<AB::Expr> = builder
            .periodic_values()
            .iter()
            .map(|&v| v.into())
            .collect();
        let c = local;
        for (copy, column) in [
            (c.active, periodic::ACTIVE),
            (c.last, periodic::LAST),
            (c.example, periodic::EXAMPLE),
            (c.unit, periodic::UNIT),
        ] {
            builder.assert_eq(copy, p[column].clone());
        }
        for (limbs, bits) in c.range_checks() {
            eval_range(builder, limbs, bits);
        }
        for flag in [c.negative, c.capped, c.delta_neg, c.clipped] {
            builder.assert_bool(flag);
        }
        let linear = eval_relu(builder, c);
        eval_forward(builder, &rows, &p, &self.biases);
        eval_backward(builder, &rows, &p, linear);
        eval_clipping(builder, c, self.clip_norm);
        eval_block_constants(builder, &rows, &p);
        self.eval_buses(builder, &rows);
    }
}

/// `a = 2^16·q + rem` with `q` on the flagged piece, and `h` by piece; returns the linear
/// flag. On the linear piece `w < 2^21`: its two top limbs are 0 and its second limb is
/// looked up once more shifted by one bit.
fn eval_relu<AB: InteractionBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &HiddenCols<AB::Var>,
) -> AB::Expr {
    let negative: AB::Expr = c.negative.into();
    let capped: AB::Expr = c.capped.into();
    builder.assert_zero(negative.clone() * capped.clone());
    let linear = AB::Expr::ONE - negative.clone() - capped.clone();
    let w = limbs_value::<AB>(&c.relu);
    for &high in &c.relu[VALUE_LIMBS..] {
        builder.assert_zero(linear.clone() * high.into());
    }
    let top = c.relu[VALUE_LIMBS - 1].into() * AB::Expr::from_u64(1 << VALUE_TOP_SHIFT);
    builder.push_interaction(RANGE_BUS, [top], Count::bounded(linear.clone(), 1));
    let quotient = linear.clone() * w.clone()
        + negative * (-AB::Expr::ONE - w.clone())
        + capped.clone() * (constant::<AB>(X_OFFSET) + w.clone());
    let scale = constant::<AB>(1 << PRE_REMAINDER_BITS);
    let remainder = limbs_value::<AB>(&c.pre_remainder);
    builder.assert_eq(c.pre, quotient * scale + remainder);
    let h = linear.clone() * w + capped * constant::<AB>(HIDDEN_CAP);
    builder.assert_eq(c.value, h);
    linear
}

/// The running logits and `ONE² + Σ h²` over the block.
fn eval_forward<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    rows: &Rows<'_, AB::Var>,
    p: &[AB::Expr],
    biases: &[i64],
) {
    let (c, next) = (rows.local, rows.next);
    let first = p[periodic::FIRST].clone();
    let keep = p[periodic::KEEP].clone();
    let h: AB::Expr = c.value.into();
    let h_next: AB::Expr = next.value.into();
    for (k, (class, &bias)) in rows.local_classes.iter().zip(biases).enumerate() {
        let started = constant::<AB>(bias * ONE) + p[periodic::weight(k)].clone() * h.clone();
        builder.assert_zero(first.clone() * (class.logit.into() - started));
        let grown = rows.next_classes[k].logit.into()
            - class.logit.into()
            - p[periodic::next_weight(k)].clone() * h_next.clone();
        builder.when_transition().assert_zero(keep.clone() * grown);
    }
    let started = constant::<AB>(ONE * ONE) + h.square();
    builder.assert_zero(first * (c.value_sq.into() - started));
    let grown = next.value_sq.into() - c.value_sq.into() - h_next.square();
    builder.when_transition().assert_zero(keep * grown);
}

/// `t = Σ_k W2_km r_k`, `δ = floor(t / 2^16)` on the linear piece and 0 elsewhere, and
/// the running `Σ δ²`.
fn eval_backward<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    rows: &Rows<'_, AB::Var>,
    p: &[AB::Expr],
    linear: AB::Expr,
) {
    let (c, next) = (rows.local, rows.next);
    let back = rows
        .local_classes
        .iter()
        .enumerate()
        .fold(AB::Expr::ZERO, |t, (k, class)| {
            t + p[periodic::weight(k)].clone() * class.residual.into()
        });
    let delta_abs = limbs_value::<AB>(&c.delta_abs);
    let sign = AB::Expr::ONE - c.delta_neg.into() * AB::Expr::TWO;
    let delta = sign * delta_abs.clone();
    let scale = constant::<AB>(1 << BACK_REMAINDER_BITS);
    let floor = back - delta * scale - limbs_value::<AB>(&c.back_remainder);
    builder.assert_zero(linear.clone() * floor);
    builder.assert_zero((AB::Expr::ONE - linear) * delta_abs.clone());

    let first = p[periodic::FIRST].clone();
    let keep = p[periodic::KEEP].clone();
    builder.assert_zero(first * (c.delta_sq.into() - delta_abs.square()));
    let next_abs = limbs_value::<AB>(&next.delta_abs);
    let grown = next.delta_sq.into() - c.delta_sq.into() - next_abs.square();
    builder.when_transition().assert_zero(keep * grown);
}

/// `|c| = |δ|` when kept, `floor(|δ|·C / ν)` when clipped; `c` takes `δ`'s sign.
fn eval_clipping<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &HiddenCols<AB::Var>,
    clip_norm: i64,
) {
    let clipped: AB::Expr = c.clipped.into();
    let delta_abs = limbs_value::<AB>(&c.delta_abs);
    let m = limbs_value::<AB>(&c.coeff_abs);
    builder.assert_zero((AB::Expr::ONE - clipped.clone()) * (m.clone() - delta_abs.clone()));
    let rem = limbs_value::<AB>(&c.clip_remainder);
    let norm: AB::Expr = c.norm.into();
    let floor = delta_abs * constant::<AB>(clip_norm) - m.clone() * norm.clone() - rem.clone();
    builder.assert_zero(clipped.clone() * floor);
    builder.assert_eq(
        clipped * (norm - AB::Expr::ONE - rem),
        limbs_value::<AB>(&c.clip_gap),
    );
    let sign = AB::Expr::ONE - c.delta_neg.into() * AB::Expr::TWO;
    builder.assert_eq(c.coeff, sign * m);
}

/// The head's values are constant over a block; padding rows send nothing (their value
/// and coefficient are 0, so their update shares are).
fn eval_block_constants<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    rows: &Rows<'_, AB::Var>,
    p: &[AB::Expr],
) {
    let (c, next) = (rows.local, rows.next);
    let keep = p[periodic::KEEP].clone();
    let mut pairs = vec![(next.norm, c.norm), (next.clipped, c.clipped)];
    for (n, l) in rows.next_classes.iter().zip(rows.local_classes) {
        pairs.push((n.residual, l.residual));
        pairs.push((n.coeff, l.coeff));
    }
    let mut t = builder.when_transition();
    for (after, before) in pairs {
        t.assert_zero(keep.clone() * (after.into() - before.into()));
    }
    let idle = AB::Expr::ONE - c.active.into();
    builder.assert_zero(idle.clone() * c.value.into());
    builder.assert_zero(idle * c.coeff.into());
}

impl HiddenTableAir {
    /// Receives the unit from the hash table, sends the block's head values to the step
    /// table, and the row's update shares.
    fn eval_buses<AB: InteractionBuilder<F = Goldilocks>>(
        &self,
        builder: &mut AB,
        rows: &Rows<'_, AB::Var>,
    ) {
        let c = rows.local;
        let unit = [c.example, c.unit, c.pre, c.coeff].map(Into::into);
        builder.push_interaction(HIDDEN_BUS, unit, Count::bounded(-c.active.into(), 1));
        let classes = rows.local_classes;
        let head: Vec<AB::Expr> = [c.example.into()]
            .into_iter()
            .chain(classes.iter().map(|k| k.logit.into()))
            .chain(classes.iter().map(|k| k.residual.into()))
            .chain(classes.iter().map(|k| k.coeff.into()))
            .chain([c.value_sq, c.delta_sq, c.norm, c.clipped].map(Into::into))
            .collect();
        builder.push_interaction(HEAD_BUS, head, Count::bounded(c.last.into(), 1));

        let (d, hidden) = (self.num_features, self.hidden);
        let bias = AB::Expr::from_usize(hidden * d) + c.unit.into();
        let share = c.coeff.into() * constant::<AB>(ONE);
        builder.push_interaction(UPDATE_BUS, [bias], Count::provided(share));
        let second = hidden * (d + 1);
        for (k, class) in classes.iter().enumerate() {
            let weight = AB::Expr::from_usize(second + k * hidden) + c.unit.into();
            let share = class.coeff.into() * c.value.into();
            // Field-valued, as the hash table's shares (ARCHITECTURE.md, "Buses").
            builder.push_interaction(UPDATE_BUS, [weight], Count::provided(share));
        }
    }
}
