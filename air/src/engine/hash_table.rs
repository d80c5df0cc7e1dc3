//! `HashTable`: one Poseidon2 permutation per row, examples in blocks of `K` absorb rows
//! (the leaf sponge) and `D` Merkle rows (the path to the enrolled root).
//!
//! Absorb rows also range-check their feature lanes (two 11-bit limbs each), add
//! `w_j · x_j` and `x_j²` to the block's running logit and squared norm, and send each
//! feature's share `c · x_j` of the update on the `update` bus. The block's first Merkle row
//! sends `(z, N, y, c)` to the step table. Merkle directions are witness bits whose running
//! index must equal the public batch index on the block's last row (ARCHITECTURE.md,
//! "Membership ready for private indices", says why they are not verifier columns).

use std::borrow::Cow;

use p3_air::{Air, AirBuilder, BaseAir, WindowAccess};
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_lookup::{Count, InteractionBuilder};

use super::limbs::{LIMB_BITS, eval_range};
use super::{
    EXAMPLE_BUS, FEATURE_BITS, FEATURE_OFFSET, PERMUTATION_BUS, UPDATE_BUS, view, view_mut,
};
use crate::fixed::{ONE, to_field};
use crate::hash::{DIGEST_ELEMS, RATE, WIDTH, leaf_iv, node_capacity};
use crate::statement::Statement;

/// Lane of the label in an example's last absorb row (then the two salt lanes).
pub const LABEL_LANE: usize = RATE - 3;

/// The named columns of a hash-table row.
#[repr(C)]
pub struct HashCols<T> {
    /// The input of this row's permutation (proven in the permutation table).
    pub input: [T; WIDTH],
    /// Its output digest (lanes 0..4) and capacity (lanes 8..12).
    pub output: [T; 2 * DIGEST_ELEMS],
    /// Low 11 bits of `x + 2^21` per feature lane (absorb rows; zero elsewhere).
    pub lo: [T; RATE],
    /// High 11 bits of `x + 2^21` per feature lane.
    pub hi: [T; RATE],
    /// Running logit of the block, `b·ONE + Σ w_j x_j` over the rows before this one.
    pub logit: T,
    /// Running squared norm of the block, `ONE² + Σ x_j²` over the rows before this one.
    pub norm_sq: T,
    /// This row's `Σ x_j²` over its feature lanes.
    pub row_norm_sq: T,
    /// Block constant: the example's label.
    pub label: T,
    /// Block constant: the example's clipped coefficient `c`.
    pub coeff: T,
    /// Merkle rows: 1 if the running node is the right child.
    pub dir: T,
    /// Merkle rows: `Σ dir_l · 2^l` over the block's Merkle rows up to this one.
    pub index: T,
    /// Bus-visible copy of the periodic `FIRST_MERKLE` (LogUp's trace builder reads main
    /// columns only): 1 on the row that sends the example.
    pub sends_example: T,
    /// Bus-visible copy of `8k` on the block's `k`-th absorb row: lane `l` holds feature
    /// `8k + l`.
    pub chunk_base: T,
    /// Per lane: `c · x` on feature lanes, 0 elsewhere (the lane's share of the update).
    pub share: [T; RATE],
}

/// Width of a hash-table row.
pub const NUM_HASH_COLS: usize = size_of::<HashCols<u8>>();

impl<T> HashCols<T> {
    /// Views a row by name.
    pub fn from_row(row: &[T]) -> &Self {
        debug_assert_eq!(row.len(), NUM_HASH_COLS);
        view(row)
    }

    /// Mutable [`Self::from_row`].
    pub fn from_row_mut(row: &mut [T]) -> &mut Self {
        debug_assert_eq!(row.len(), NUM_HASH_COLS);
        view_mut(row)
    }
}

/// Indices of the hash table's periodic columns (period = table height).
pub mod periodic {
    use crate::hash::RATE;
    /// The next row belongs to the same example block.
    pub const KEEP: usize = 0;
    /// The next row starts an example block.
    pub const START_NEXT: usize = 1;
    /// An absorb row followed by another absorb row (capacity chains).
    pub const CHAIN: usize = 2;
    /// The block's first absorb row (capacity is the leaf IV).
    pub const FIRST_ABSORB: usize = 3;
    /// The block's last absorb row (its label lane is the label).
    pub const LAST_ABSORB: usize = 4;
    /// A Merkle row.
    pub const MERKLE: usize = 5;
    /// The next row is a Merkle row of the same block (this row's output feeds it).
    pub const MERKLE_NEXT: usize = 6;
    /// The block's first Merkle row: `index = dir`, and the example is sent.
    pub const FIRST_MERKLE: usize = 7;
    /// `2^(l+1)` on Merkle row `l` when row `l + 1` follows in the block, else 0.
    pub const NEXT_POW: usize = 8;
    /// The block's last Merkle row: its output is the root.
    pub const ROOT_ROW: usize = 9;
    /// On the root row: the public batch index of the block's example.
    pub const INDEX: usize = 10;
    /// Per lane: the weight of the feature absorbed in that lane (0 if none).
    pub const WEIGHT: usize = 11;
    /// Per lane: 1 if the lane holds a feature.
    pub const FEATURE: usize = WEIGHT + RATE;
    /// Per lane: 1 if the lane is zero padding of the leaf preimage.
    pub const ZERO: usize = FEATURE + RATE;
    /// `8k` on the block's `k`-th absorb row.
    pub const CHUNK_BASE: usize = ZERO + RATE;
    /// Number of periodic columns.
    pub const COUNT: usize = CHUNK_BASE + 1;
}

/// The hash table of one statement.
#[derive(Clone)]
pub struct HashTableAir {
    num_features: usize,
    bias: i64,
    root: [Goldilocks; DIGEST_ELEMS],
    periodic: Vec<Vec<Goldilocks>>,
    num_public_values: usize,
}

impl HashTableAir {
    /// Builds the table's AIR (and its periodic columns) for a statement.
    pub fn new(statement: &Statement, height: usize, num_public_values: usize) -> Self {
        Self {
            num_features: statement.model.num_features(),
            bias: statement.model.bias(),
            root: statement.dataset.root_digest(),
            periodic: periodic_columns(statement, height),
            num_public_values,
        }
    }

    /// The periodic columns (read by forgers' tests).
    pub fn periodic(&self) -> &[Vec<Goldilocks>] {
        &self.periodic
    }
}

fn periodic_columns(statement: &Statement, height: usize) -> Vec<Vec<Goldilocks>> {
    use periodic::*;
    let d = statement.model.num_features();
    let shape = statement.shape();
    let (k_rows, depth, block) = (shape.chunks(), shape.depth, shape.block_len());
    let mut cols = vec![vec![Goldilocks::ZERO; height]; COUNT];
    let one = Goldilocks::ONE;
    for (i, &index) in statement.batch_indices.iter().enumerate() {
        let base = i * block;
        if i > 0 {
            cols[START_NEXT][base - 1] = one;
        }
        cols[KEEP][base..base + block - 1].fill(one);
        cols[FIRST_ABSORB][base] = one;
        cols[LAST_ABSORB][base + k_rows - 1] = one;
        for k in 0..k_rows {
            let row = base + k;
            if k + 1 < k_rows {
                cols[CHAIN][row] = one;
            }
            cols[CHUNK_BASE][row] = Goldilocks::from_usize(k * RATE);
            for lane in 0..RATE {
                let pos = k * RATE + lane;
                if pos < d {
                    cols[WEIGHT + lane][row] = to_field(statement.model.weights()[pos]);
                    cols[FEATURE + lane][row] = one;
                } else if pos < k_rows * RATE - 3 {
                    cols[ZERO + lane][row] = one;
                }
            }
        }
        for level in 0..depth {
            let row = base + k_rows + level;
            cols[MERKLE][row] = one;
            cols[MERKLE_NEXT][row - 1] = one;
            if level == 0 {
                cols[FIRST_MERKLE][row] = one;
            }
            if level + 1 < depth {
                cols[NEXT_POW][row] = Goldilocks::from_u64(1 << (level + 1));
            } else {
                cols[ROOT_ROW][row] = one;
                cols[INDEX][row] = Goldilocks::from_u64(index);
            }
        }
    }
    cols
}

impl BaseAir<Goldilocks> for HashTableAir {
    fn width(&self) -> usize {
        NUM_HASH_COLS
    }

    fn num_periodic_columns(&self) -> usize {
        self.periodic.len()
    }

    fn periodic_columns(&self) -> Cow<'_, [Vec<Goldilocks>]> {
        Cow::Borrowed(&self.periodic)
    }

    fn num_public_values(&self) -> usize {
        self.num_public_values
    }

    fn max_constraint_degree(&self) -> Option<usize> {
        Some(3)
    }
}

impl<AB: InteractionBuilder<F = Goldilocks>> Air<AB> for HashTableAir {
    fn eval(&self, builder: &mut AB) {
        let main = builder.main();
        let local = HashCols::from_row(main.current_slice());
        let next = HashCols::from_row(main.next_slice());
        let p: Vec<AB::Expr> = builder
            .periodic_values()
            .iter()
            .map(|&v| v.into())
            .collect();

        let permutation = local.input.iter().chain(&local.output).copied();
        builder.push_interaction(PERMUTATION_BUS, permutation, -1);
        builder.assert_bool(local.label);
        builder.assert_bool(local.dir);
        let row_logit = eval_lanes(builder, local, &p);
        eval_sponge(builder, local, next, &p, self.num_features);
        eval_merkle(builder, local, next, &p, &self.root);
        eval_block(builder, local, next, &p, row_logit, self.bias);
        eval_sends(builder, local, &p);
    }
}

fn constant<AB: AirBuilder<F = Goldilocks>>(v: i64) -> AB::Expr {
    AB::Expr::from(to_field(v))
}

/// Feature lanes are the limbs' value minus the offset; padding lanes are zero; every limb
/// is in the range table. Returns this row's share of the logit.
fn eval_lanes<AB: InteractionBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &HashCols<AB::Var>,
    p: &[AB::Expr],
) -> AB::Expr {
    let mut row_logit = AB::Expr::ZERO;
    let mut row_norm_sq = AB::Expr::ZERO;
    for lane in 0..RATE {
        let x: AB::Expr = c.input[lane].into();
        let feature = p[periodic::FEATURE + lane].clone();
        let limbs = [c.lo[lane], c.hi[lane]];
        let spelled = super::limbs::limbs_value::<AB>(&limbs);
        let offset = x.clone() + constant::<AB>(FEATURE_OFFSET);
        builder.assert_zero(feature.clone() * (offset - spelled));
        eval_range(builder, &limbs, 2 * LIMB_BITS);
        builder.assert_zero(p[periodic::ZERO + lane].clone() * x.clone());
        row_logit += p[periodic::WEIGHT + lane].clone() * x.clone();
        row_norm_sq += feature * x.square();
    }
    debug_assert_eq!(2 * LIMB_BITS, FEATURE_BITS);
    builder.assert_eq(c.row_norm_sq, row_norm_sq);
    row_logit
}

/// Leaf sponge: the capacity starts at the leaf IV and chains between absorb rows.
fn eval_sponge<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &HashCols<AB::Var>,
    next: &HashCols<AB::Var>,
    p: &[AB::Expr],
    num_features: usize,
) {
    let start = p[periodic::FIRST_ABSORB].clone();
    let chain = p[periodic::CHAIN].clone();
    for (i, iv) in leaf_iv(num_features).into_iter().enumerate() {
        let cap = c.input[RATE + i];
        builder.assert_zero(start.clone() * (cap.into() - AB::Expr::from(iv)));
        let chained = next.input[RATE + i].into() - c.output[DIGEST_ELEMS + i].into();
        builder
            .when_transition()
            .assert_zero(chain.clone() * chained);
    }
}

/// Merkle path: each node enters the next row on the side its direction bit says, the
/// bits spell the public index, and the last node of every block is the root.
fn eval_merkle<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &HashCols<AB::Var>,
    next: &HashCols<AB::Var>,
    p: &[AB::Expr],
    root: &[Goldilocks; DIGEST_ELEMS],
) {
    let link = p[periodic::MERKLE_NEXT].clone();
    let root_row = p[periodic::ROOT_ROW].clone();
    let dir_next: AB::Expr = next.dir.into();
    for (i, &root_elem) in root.iter().enumerate() {
        let node: AB::Expr = c.output[i].into();
        let as_left = next.input[i].into() - node.clone();
        let as_right = next.input[DIGEST_ELEMS + i].into() - node.clone();
        let linked = (AB::Expr::ONE - dir_next.clone()) * as_left + dir_next.clone() * as_right;
        builder.when_transition().assert_zero(link.clone() * linked);
        builder.assert_zero(root_row.clone() * (node - AB::Expr::from(root_elem)));
    }
    let merkle = p[periodic::MERKLE].clone();
    for (i, cap) in node_capacity().into_iter().enumerate() {
        let lane: AB::Expr = c.input[RATE + i].into();
        builder.assert_zero(merkle.clone() * (lane - AB::Expr::from(cap)));
    }
    let index: AB::Expr = c.index.into();
    builder.assert_zero(p[periodic::FIRST_MERKLE].clone() * (index.clone() - c.dir.into()));
    let grown = next.index.into() - index.clone() - p[periodic::NEXT_POW].clone() * dir_next;
    let continues = p[periodic::NEXT_POW].clone();
    builder.when_transition().assert_zero(continues * grown);
    builder.assert_zero(root_row * (index - p[periodic::INDEX].clone()));
}

/// Running logit and squared norm over a block (exclusive of the current row); label and
/// coefficient constant over the block, the label bound to the leaf's label lane.
fn eval_block<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &HashCols<AB::Var>,
    next: &HashCols<AB::Var>,
    p: &[AB::Expr],
    row_logit: AB::Expr,
    bias: i64,
) {
    let keep = p[periodic::KEEP].clone();
    let start_next = p[periodic::START_NEXT].clone();
    let bias_term = constant::<AB>(bias * ONE);
    let one_sq = constant::<AB>(ONE * ONE);
    let last_absorb = p[periodic::LAST_ABSORB].clone();
    builder.assert_zero(last_absorb * (c.label.into() - c.input[LABEL_LANE].into()));

    builder
        .when_first_row()
        .assert_eq(c.logit, bias_term.clone());
    builder
        .when_first_row()
        .assert_eq(c.norm_sq, one_sq.clone());
    let mut t = builder.when_transition();
    t.assert_eq(
        next.logit,
        keep.clone() * c.logit.into() + row_logit + start_next.clone() * bias_term,
    );
    t.assert_eq(
        next.norm_sq,
        keep.clone() * c.norm_sq.into() + c.row_norm_sq.into() + start_next * one_sq,
    );
    for (after, before) in [(next.coeff, c.coeff), (next.label, c.label)] {
        t.assert_zero(keep.clone() * (after.into() - before.into()));
    }
}

/// The example to the step table, once per block; each feature's share of the update.
/// Bus messages read main columns only (p3-lookup 0.8's trace builder has no periodic
/// values), so the periodic values they need are copied into constrained main columns.
fn eval_sends<AB: InteractionBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &HashCols<AB::Var>,
    p: &[AB::Expr],
) {
    builder.assert_eq(c.sends_example, p[periodic::FIRST_MERKLE].clone());
    builder.assert_eq(c.chunk_base, p[periodic::CHUNK_BASE].clone());
    let example = [c.logit, c.norm_sq, c.label, c.coeff].map(Into::into);
    let sent = Count::bounded(c.sends_example.into(), 1);
    builder.push_interaction(EXAMPLE_BUS, example, sent);
    for lane in 0..RATE {
        let share = p[periodic::FEATURE + lane].clone() * c.coeff.into() * c.input[lane].into();
        builder.assert_eq(c.share[lane], share);
        let param = c.chunk_base.into() + AB::Expr::from_usize(lane);
        // Field-valued: the bus sums shares per feature (ARCHITECTURE.md, "Buses").
        builder.push_interaction(UPDATE_BUS, [param], Count::provided(c.share[lane].into()));
    }
}
