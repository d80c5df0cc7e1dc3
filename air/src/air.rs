//! [`ClippedGradientAir`]: the constraints that make a trace a proof of the statement.
//!
//! The AIR is built from the [`Statement`]: the model weights, the Merkle directions of the
//! seed-derived batch indices and the block structure are *periodic columns* the verifier
//! computes itself, so the prover cannot choose which rows are absorb rows, which weight
//! multiplies which lane, or which way a Merkle path turns. The trace holds only witness
//! data; the public values carry the root and the update the trace must end with.

use std::borrow::Cow;

use p3_air::{Air, AirBuilder, BaseAir, WindowAccess};
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::{
    GOLDILOCKS_POSEIDON2_RC_12_EXTERNAL_FINAL, GOLDILOCKS_POSEIDON2_RC_12_EXTERNAL_INITIAL,
    GOLDILOCKS_POSEIDON2_RC_12_INTERNAL, GenericPoseidon2LinearLayersGoldilocks, Goldilocks,
};
use p3_poseidon2_air::{Poseidon2Air, RoundConstants};
use p3_uni_stark::SubAirBuilder;

use crate::columns::{
    HALF_FULL_ROUNDS, NUM_PERM_COLS, PARTIAL_ROUNDS, PermCols, SBOX_DEGREE, SBOX_REGISTERS,
    StepCols, split_row, trace_width,
};
use crate::fixed::{FRAC_BITS, ONE, X_OFFSET, to_field};
use crate::hash::{DIGEST_ELEMS, RATE, WIDTH, leaf_iv, node_capacity};
use crate::statement::{ProofShape, PublicLayout, Statement};

/// The Poseidon2 AIR embedded in every row.
pub type PermAir = Poseidon2Air<
    Goldilocks,
    GenericPoseidon2LinearLayersGoldilocks,
    WIDTH,
    SBOX_DEGREE,
    SBOX_REGISTERS,
    HALF_FULL_ROUNDS,
    PARTIAL_ROUNDS,
>;

/// The Poseidon2 AIR with the standard Goldilocks width-12 constants.
pub fn perm_air() -> PermAir {
    Poseidon2Air::new(RoundConstants::new(
        GOLDILOCKS_POSEIDON2_RC_12_EXTERNAL_INITIAL,
        GOLDILOCKS_POSEIDON2_RC_12_INTERNAL,
        GOLDILOCKS_POSEIDON2_RC_12_EXTERNAL_FINAL,
    ))
}

/// Lane of the label in an example's last absorb row (then the two salt lanes).
pub const LABEL_LANE: usize = RATE - 3;

/// Indices of the periodic columns (one value per trace row, period = trace height).
pub mod periodic {
    use crate::hash::RATE;
    /// The next row belongs to the same example block.
    pub const KEEP: usize = 0;
    /// The next row starts an example block.
    pub const START_NEXT: usize = 1;
    /// This is an absorb row followed by another absorb row (capacity chains).
    pub const CHAIN: usize = 2;
    /// The next row is a Merkle row whose running node is the left child.
    pub const LINK_LEFT: usize = 3;
    /// The next row is a Merkle row whose running node is the right child.
    pub const LINK_RIGHT: usize = 4;
    /// This is a Merkle row.
    pub const MERKLE: usize = 5;
    /// This is the last Merkle row of a block: its output is the root.
    pub const ROOT_ROW: usize = 6;
    /// First Merkle row of a block: the activation arithmetic.
    pub const ACTIVATION: usize = 7;
    /// Second Merkle row of a block: the clipping arithmetic.
    pub const CLIPPING: usize = 8;
    /// Per lane: the model weight of the feature absorbed in that lane (0 if none).
    pub const WEIGHT: usize = 9;
    /// Per lane: 1 if the lane holds a feature.
    pub const FEATURE: usize = WEIGHT + RATE;
    /// Per lane: 1 if the lane is zero padding.
    pub const ZERO: usize = FEATURE + RATE;
    /// Per absorb-row index `k`: 1 on the `k`-th absorb row of a block.
    pub const PHASE: usize = ZERO + RATE;
}

/// The AIR of one statement.
pub struct ClippedGradientAir {
    shape: ProofShape,
    layout: PublicLayout,
    clip_norm: i64,
    bias: i64,
    perm: PermAir,
    periodic: Vec<Vec<Goldilocks>>,
}

impl ClippedGradientAir {
    /// Builds the AIR (and its periodic columns) for a statement.
    pub fn new(statement: &Statement) -> Self {
        let shape = statement.shape();
        Self {
            shape,
            layout: statement.layout(),
            clip_norm: statement.params.clip_norm,
            bias: statement.model.bias,
            perm: perm_air(),
            periodic: periodic_columns(statement, shape),
        }
    }

    /// The trace dimensions.
    pub fn shape(&self) -> ProofShape {
        self.shape
    }

    /// The embedded permutation AIR.
    pub fn perm(&self) -> &PermAir {
        &self.perm
    }
}

fn periodic_columns(statement: &Statement, shape: ProofShape) -> Vec<Vec<Goldilocks>> {
    use periodic::*;
    let k_rows = shape.chunks();
    let height = shape.height();
    let block = shape.block_len();
    let d = shape.num_features;
    let mut cols = vec![vec![Goldilocks::ZERO; height]; PHASE + k_rows];
    let mut set = |col: usize, row: usize, v: Goldilocks| cols[col][row] = v;
    for (i, &index) in statement.batch_indices.iter().enumerate() {
        let base = i * block;
        if i > 0 {
            set(START_NEXT, base - 1, Goldilocks::ONE);
        }
        for row in base..base + block - 1 {
            set(KEEP, row, Goldilocks::ONE);
        }
        for k in 0..k_rows {
            let row = base + k;
            set(PHASE + k, row, Goldilocks::ONE);
            if k + 1 < k_rows {
                set(CHAIN, row, Goldilocks::ONE);
            }
            for lane in 0..RATE {
                let pos = k * RATE + lane;
                if pos < d {
                    set(WEIGHT + lane, row, to_field(statement.model.weights[pos]));
                    set(FEATURE + lane, row, Goldilocks::ONE);
                } else if pos < k_rows * RATE - 3 {
                    set(ZERO + lane, row, Goldilocks::ONE);
                }
            }
        }
        for level in 0..shape.depth {
            let row = base + k_rows + level;
            let link = if (index >> level) & 1 == 0 {
                LINK_LEFT
            } else {
                LINK_RIGHT
            };
            set(link, row - 1, Goldilocks::ONE);
            set(MERKLE, row, Goldilocks::ONE);
            match level {
                0 => set(ACTIVATION, row, Goldilocks::ONE),
                1 => set(CLIPPING, row, Goldilocks::ONE),
                _ => {}
            }
            if level + 1 == shape.depth {
                set(ROOT_ROW, row, Goldilocks::ONE);
            }
        }
    }
    cols
}

impl BaseAir<Goldilocks> for ClippedGradientAir {
    fn width(&self) -> usize {
        trace_width(self.shape.num_features)
    }

    fn num_periodic_columns(&self) -> usize {
        self.periodic.len()
    }

    fn periodic_columns(&self) -> Cow<'_, [Vec<Goldilocks>]> {
        Cow::Borrowed(&self.periodic)
    }

    fn num_public_values(&self) -> usize {
        self.layout.len
    }

    fn max_constraint_degree(&self) -> Option<usize> {
        Some(3)
    }
}

impl<AB: AirBuilder<F = Goldilocks>> Air<AB> for ClippedGradientAir {
    fn eval(&self, builder: &mut AB) {
        let mut sub = SubAirBuilder::<AB, PermAir, AB::Var>::new(builder, 0..NUM_PERM_COLS);
        self.perm.eval(&mut sub);

        let main = builder.main();
        let (perm, step, acc) = split_row(main.current_slice());
        let (perm_next, step_next, acc_next) = split_row(main.next_slice());
        let p: Vec<AB::Expr> = builder
            .periodic_values()
            .iter()
            .map(|&v| v.into())
            .collect();
        let public: Vec<AB::Expr> = builder.public_values().iter().map(|&v| v.into()).collect();

        eval_booleans(builder, step);
        let row_logit = eval_lanes(builder, perm, step, &p);
        eval_sponge(builder, perm, perm_next, &p, self.shape.num_features);
        eval_merkle(builder, perm, perm_next, &p, &public[self.layout.root..]);
        eval_block_sums(builder, perm, step, step_next, &p, row_logit, self.bias);
        let last_absorb = p[periodic::PHASE + self.shape.chunks() - 1].clone();
        builder.assert_zero(last_absorb * (step.label.into() - perm.inputs[LABEL_LANE].into()));
        eval_activation(builder, step, p[periodic::ACTIVATION].clone());
        eval_clipping(builder, step, p[periodic::CLIPPING].clone(), self.clip_norm);
        let update = &public[self.layout.update..];
        eval_update(builder, perm, step, (acc, acc_next), &p, self.shape, update);
    }
}

/// The value a little-endian bit array spells.
fn bits_value<AB: AirBuilder>(bits: &[AB::Var]) -> AB::Expr {
    bits.iter()
        .rev()
        .fold(AB::Expr::ZERO, |acc, &b| acc * AB::Expr::TWO + b.into())
}

fn constant<AB: AirBuilder<F = Goldilocks>>(v: i64) -> AB::Expr {
    AB::Expr::from(to_field(v))
}

/// The output state of a row's permutation.
fn output<T: Copy>(perm: &PermCols<T>) -> [T; WIDTH] {
    perm.ending_full_rounds[HALF_FULL_ROUNDS - 1].post
}

/// Every bit and flag column is boolean on every row (unused ones are zero).
fn eval_booleans<AB: AirBuilder>(builder: &mut AB, s: &StepCols<AB::Var>) {
    let flags = [s.label, s.below, s.above, s.residual_neg, s.clipped];
    for &b in flags.iter().chain(&s.bits) {
        builder.assert_bool(b);
    }
}

/// Feature lanes are range-checked, padding lanes are zero; returns this row's logit part.
fn eval_lanes<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    perm: &PermCols<AB::Var>,
    s: &StepCols<AB::Var>,
    p: &[AB::Expr],
) -> AB::Expr {
    let mut row_logit = AB::Expr::ZERO;
    for lane in 0..RATE {
        let x: AB::Expr = perm.inputs[lane].into();
        let feature = p[periodic::FEATURE + lane].clone();
        let offset = x.clone() + constant::<AB>(X_OFFSET);
        builder.assert_zero(feature * (offset - bits_value::<AB>(s.x_bits(lane))));
        builder.assert_zero(p[periodic::ZERO + lane].clone() * x.clone());
        row_logit += p[periodic::WEIGHT + lane].clone() * x;
    }
    row_logit
}

/// Leaf sponge: the capacity starts at the leaf IV and chains between absorb rows.
fn eval_sponge<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    perm: &PermCols<AB::Var>,
    next: &PermCols<AB::Var>,
    p: &[AB::Expr],
    num_features: usize,
) {
    let start = p[periodic::PHASE].clone();
    let chain = p[periodic::CHAIN].clone();
    let out = output(perm);
    for (i, iv) in leaf_iv(num_features).into_iter().enumerate() {
        let cap = perm.inputs[RATE + i];
        builder.assert_zero(start.clone() * (cap.into() - AB::Expr::from(iv)));
        builder
            .when_transition()
            .assert_zero(chain.clone() * (next.inputs[RATE + i].into() - out[RATE + i].into()));
    }
}

/// Merkle path: each node feeds the next row on the side the public index says; the last
/// node of every block is the enrolled root.
fn eval_merkle<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    perm: &PermCols<AB::Var>,
    next: &PermCols<AB::Var>,
    p: &[AB::Expr],
    root: &[AB::Expr],
) {
    let left = p[periodic::LINK_LEFT].clone();
    let right = p[periodic::LINK_RIGHT].clone();
    let merkle = p[periodic::MERKLE].clone();
    let root_row = p[periodic::ROOT_ROW].clone();
    let out = output(perm);
    for i in 0..DIGEST_ELEMS {
        let node: AB::Expr = out[i].into();
        let as_left = next.inputs[i].into() - node.clone();
        let as_right = next.inputs[DIGEST_ELEMS + i].into() - node.clone();
        builder
            .when_transition()
            .assert_zero(left.clone() * as_left + right.clone() * as_right);
        builder.assert_zero(root_row.clone() * (node - root[i].clone()));
    }
    for (i, cap) in node_capacity().into_iter().enumerate() {
        let lane: AB::Expr = perm.inputs[RATE + i].into();
        builder.assert_zero(merkle.clone() * (lane - AB::Expr::from(cap)));
    }
}

/// Running logit and squared norm over a block (exclusive of the current row), and the
/// coefficient held constant over the block.
fn eval_block_sums<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    perm: &PermCols<AB::Var>,
    s: &StepCols<AB::Var>,
    next: &StepCols<AB::Var>,
    p: &[AB::Expr],
    row_logit: AB::Expr,
    bias: i64,
) {
    let keep = p[periodic::KEEP].clone();
    let start_next = p[periodic::START_NEXT].clone();
    let bias_term = constant::<AB>(bias * ONE);
    let one_sq = constant::<AB>(ONE * ONE);

    let row_norm_sq: AB::Expr = (0..RATE)
        .map(|lane| {
            let x: AB::Expr = perm.inputs[lane].into();
            p[periodic::FEATURE + lane].clone() * x.square()
        })
        .sum();
    builder.assert_eq(s.row_norm_sq, row_norm_sq);

    builder
        .when_first_row()
        .assert_eq(s.logit, bias_term.clone());
    builder
        .when_first_row()
        .assert_eq(s.norm_sq, one_sq.clone());
    let mut t = builder.when_transition();
    t.assert_eq(
        next.logit,
        keep.clone() * s.logit.into() + row_logit + start_next.clone() * bias_term,
    );
    t.assert_eq(
        next.norm_sq,
        keep.clone() * s.norm_sq.into() + s.row_norm_sq.into() + start_next * one_sq,
    );
    let constants = [
        (next.coeff, s.coeff),
        (next.label, s.label),
        (next.abs_residual, s.abs_residual),
        (next.residual_neg, s.residual_neg),
        (next.norm, s.norm),
    ];
    for (after, before) in constants {
        t.assert_zero(keep.clone() * (after.into() - before.into()));
    }
}

/// Activation, on a block's first Merkle row (where the running sums are complete):
/// hard sigmoid, residual `r = |r|·(1 - 2·neg)` and `ν = ceil(sqrt(N))`.
fn eval_activation<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    s: &StepCols<AB::Var>,
    gate: AB::Expr,
) {
    let one = constant::<AB>(ONE);
    let bits = s.activation();
    let mut b = builder.when(gate);

    // logit = quarter·2^18 + rem, rem in [0, 2^18)
    let quarter: AB::Expr = s.quarter_logit.into();
    let shift = constant::<AB>(1 << (FRAC_BITS + 2));
    b.assert_eq(
        s.logit,
        quarter.clone() * shift + bits_value::<AB>(&bits.logit_rem),
    );

    // t = 1/2 + z/4; exactly one case of clamp(t, 0, 1) holds, proven by a range check.
    let t = constant::<AB>(ONE / 2) + quarter;
    let below: AB::Expr = s.below.into();
    let above: AB::Expr = s.above.into();
    let mid = AB::Expr::ONE - below.clone() - above.clone();
    b.assert_zero(below.clone() * above.clone());
    let slack = below * (-t.clone() - AB::Expr::ONE)
        + above.clone() * (t.clone() - one.clone() - AB::Expr::ONE)
        + mid.clone() * t.clone();
    b.assert_eq(slack, bits_value::<AB>(&bits.clamp));
    b.assert_eq(
        mid.clone() * (one.clone() - t.clone()),
        bits_value::<AB>(&bits.clamp_mid),
    );
    b.assert_eq(s.sigmoid, mid * t + above * one.clone());

    // r = s - y·ONE = |r|·(1 - 2·neg)
    let residual = s.sigmoid.into() - s.label.into() * one;
    let abs_r: AB::Expr = s.abs_residual.into();
    let neg: AB::Expr = s.residual_neg.into();
    b.assert_eq(
        residual,
        abs_r.clone() - neg * abs_r.clone() * AB::Expr::TWO,
    );
    b.assert_eq(abs_r, bits_value::<AB>(&bits.abs_residual));

    // ν² ≥ N (the other half of ν = ceil(sqrt N) is on the clipping row)
    let norm: AB::Expr = s.norm.into();
    b.assert_eq(norm.clone(), bits_value::<AB>(&bits.norm));
    b.assert_eq(
        norm.square() - s.norm_sq.into(),
        bits_value::<AB>(&bits.norm_upper),
    );
}

/// Clipping, on a block's second Merkle row: `(ν-1)² < N`, then `c = r` when
/// `|r|·ν ≤ C·ONE`, otherwise `c = sign(r)·floor(C·ONE/ν)`.
fn eval_clipping<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    s: &StepCols<AB::Var>,
    gate: AB::Expr,
    clip_norm: i64,
) {
    let bits = s.clipping();
    let mut b = builder.when(gate);
    let norm: AB::Expr = s.norm.into();
    let below_sq = (norm.clone() - AB::Expr::ONE).square();
    b.assert_eq(
        s.norm_sq.into() - below_sq - AB::Expr::ONE,
        bits_value::<AB>(&bits.norm_lower),
    );

    let bound = constant::<AB>(clip_norm * ONE);
    let abs_r: AB::Expr = s.abs_residual.into();
    let clipped: AB::Expr = s.clipped.into();
    let keep = AB::Expr::ONE - clipped.clone();
    b.assert_eq(s.grad_norm, abs_r.clone() * norm.clone());
    let room = bound.clone() - s.grad_norm.into();
    let decision = keep.clone() * room.clone() + clipped.clone() * (-room - AB::Expr::ONE);
    b.assert_eq(decision, bits_value::<AB>(&bits.clip_slack));

    let m: AB::Expr = s.coeff_abs.into();
    b.assert_eq(m.clone(), bits_value::<AB>(&bits.coeff_abs));
    b.assert_zero(keep * (m.clone() - abs_r));
    b.assert_eq(s.coeff_norm, m.clone() * norm.clone());
    let floor_rem = bound - s.coeff_norm.into();
    b.assert_eq(
        clipped.clone() * floor_rem.clone(),
        bits_value::<AB>(&bits.clip_floor),
    );
    let gap = norm - AB::Expr::ONE - floor_rem;
    b.assert_eq(clipped * gap, bits_value::<AB>(&bits.clip_floor_gap));

    let neg: AB::Expr = s.residual_neg.into();
    b.assert_eq(s.coeff, m.clone() - neg * m * AB::Expr::TWO);
}

/// Update accumulators: the exclusive running sum of `c · (x, 1)` ends at the public update.
fn eval_update<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    perm: &PermCols<AB::Var>,
    s: &StepCols<AB::Var>,
    (acc, acc_next): (&[AB::Var], &[AB::Var]),
    p: &[AB::Expr],
    shape: ProofShape,
    update: &[AB::Expr],
) {
    let d = shape.num_features;
    let coeff: AB::Expr = s.coeff.into();
    for j in 0..=d {
        let contribution = if j < d {
            let x: AB::Expr = perm.inputs[j % RATE].into();
            p[periodic::PHASE + j / RATE].clone() * coeff.clone() * x
        } else {
            let scalar = p[periodic::PHASE + shape.chunks() - 1].clone();
            scalar * coeff.clone() * constant::<AB>(ONE)
        };
        builder.when_first_row().assert_zero(acc[j]);
        builder
            .when_transition()
            .assert_eq(acc_next[j], acc[j].into() + contribution);
        builder.when_last_row().assert_eq(acc[j], update[j].clone());
    }
}
