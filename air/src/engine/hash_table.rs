//! `HashTable`: one Poseidon2 permutation per row, examples in blocks of `K` absorb rows
//! (the leaf sponge) and `D` Merkle rows (the path to the enrolled root).
//!
//! Absorb rows also range-check their feature lanes (two 11-bit limbs each), add
//! `w_kj · x_j` and `x_j²` to the block's running logits (one per output `k` of the model's
//! layer: 1 for logistic regression, `K` for a softmax) and squared norm, and send each
//! feature's share `c_k · x_j` of the update on the `update` bus. The block's first Merkle
//! row sends `(z_0.., N, y, c_0..)` to the step table; an MLP's (its `K` outputs the `H`
//! hidden units) sends `(i, N, y)` to the step table and `(i, m, a_m, c_m)` per unit to the
//! hidden table, tagged with the example's position `i`. Output 0's columns are in
//! [`HashCols`]; outputs `1..K` follow the row as [`OutputCols`], so a logistic row is
//! exactly a [`HashCols`]. An MLP's row is narrower: its share columns hold the masked
//! features once, each unit sending its coefficient times them, further units take a
//! [`UnitCols`] each, and the tag comes last. Merkle directions are witness bits whose running
//! index must equal the public batch index on the block's last row (ARCHITECTURE.md,
//! "Membership ready for private indices", says why they are not verifier columns).

use std::borrow::Cow;

use p3_air::{Air, AirBuilder, BaseAir, WindowAccess};
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_lookup::{Count, InteractionBuilder};

use super::limbs::{LIMB_BITS, eval_range};
use super::{
    EXAMPLE_BUS, FEATURE_BITS, FEATURE_OFFSET, HIDDEN_BUS, PERMUTATION_BUS, SAMPLE_BUS, UPDATE_BUS,
    constant, view, view_mut,
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
    /// Per lane: `c · x` on feature lanes, 0 elsewhere (the lane's share of the update); an
    /// MLP's: `x` on feature lanes, 0 elsewhere (its units' shares are `c_m` times these).
    pub share: [T; RATE],
    /// Block constant: 1 if the slot's row is in the batch. Always 1 with public indices;
    /// under hidden sampling, 0 on an unused slot, whose coefficients the step table then
    /// proves zero.
    pub sampled: T,
    /// `sampled` on the block's root row, else 0: how often the slot claims its row's index
    /// on the `sample` bus.
    pub claims: T,
}

/// Width of a hash-table row of a logistic model (one output).
pub const NUM_HASH_COLS: usize = size_of::<HashCols<u8>>();

/// The columns of one more output (a softmax's classes `1..K`): its running logit, its
/// clipped coefficient (a block constant) and its per-lane shares of the update.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OutputCols<T> {
    /// Running logit of this output.
    pub logit: T,
    /// Block constant: this output's clipped coefficient `c_k`.
    pub coeff: T,
    /// Per lane: `c_k · x` on feature lanes, 0 elsewhere.
    pub share: [T; RATE],
}

/// Width of one [`OutputCols`].
pub const NUM_OUTPUT_COLS: usize = size_of::<OutputCols<u8>>();

/// An MLP's hidden unit beyond the first: its running pre-activation and its clipped
/// coefficient `c_m` (a block constant). Its shares are not columns: an MLP's row holds its
/// masked features `FEATURE·x` in [`HashCols::share`], and each unit sends `c_m` times them.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UnitCols<T> {
    /// Running pre-activation of this unit.
    pub logit: T,
    /// Block constant: this unit's clipped coefficient.
    pub coeff: T,
}

/// Width of one [`UnitCols`].
pub const NUM_UNIT_COLS: usize = size_of::<UnitCols<u8>>();

/// Width of a hash-table row for a layer of `outputs` outputs. An MLP's hidden layer
/// (`hidden`) has two columns per further unit ([`UnitCols`]), then the example's position
/// in the batch, which tags what the block sends to the hidden and step tables.
pub const fn hash_width(outputs: usize, hidden: bool) -> usize {
    let more = outputs.saturating_sub(1);
    match hidden {
        true => NUM_HASH_COLS + more * NUM_UNIT_COLS + 1,
        false => NUM_HASH_COLS + more * NUM_OUTPUT_COLS,
    }
}

/// An MLP's row split into its named part, its further units and its tag.
pub fn split_mlp_row<T>(row: &[T]) -> (&HashCols<T>, &[UnitCols<T>], &T) {
    let (named, more) = row.split_at(NUM_HASH_COLS);
    let (tag, units) = more.split_last().expect("an MLP's row has a tag");
    (HashCols::from_row(named), super::view_slice(units), tag)
}

/// Mutable [`split_mlp_row`].
pub fn split_mlp_row_mut<T>(row: &mut [T]) -> (&mut HashCols<T>, &mut [UnitCols<T>], &mut T) {
    let (named, more) = row.split_at_mut(NUM_HASH_COLS);
    let (tag, units) = more.split_last_mut().expect("an MLP's row has a tag");
    (
        HashCols::from_row_mut(named),
        super::view_slice_mut(units),
        tag,
    )
}

/// A row's named part, each output's columns (an MLP unit's shares read as the row's
/// masked features) and an MLP's tag.
pub fn row_outputs<T: Copy>(
    row: &[T],
    hidden: bool,
) -> (&HashCols<T>, Vec<OutputCols<T>>, Option<T>) {
    if !hidden {
        let (named, more) = split_row(row);
        let outputs = (0..=more.len()).map(|k| output(named, more, k)).collect();
        return (named, outputs, None);
    }
    let (named, units, &tag) = split_mlp_row(row);
    let unit = |logit, coeff| OutputCols {
        logit,
        coeff,
        share: named.share,
    };
    let first = unit(named.logit, named.coeff);
    let outputs = [first]
        .into_iter()
        .chain(units.iter().map(|u| unit(u.logit, u.coeff)))
        .collect();
    (named, outputs, Some(tag))
}

/// Mutable references to output `k`'s running logit and coefficient, whatever the layout.
pub fn logit_coeff_mut<T>(row: &mut [T], hidden: bool, k: usize) -> (&mut T, &mut T) {
    let (named, more) = row.split_at_mut(NUM_HASH_COLS);
    let named = HashCols::from_row_mut(named);
    match (k, hidden) {
        (0, _) => (&mut named.logit, &mut named.coeff),
        (_, true) => {
            let units_len = more.len() - 1;
            let units: &mut [UnitCols<T>] = super::view_slice_mut(&mut more[..units_len]);
            let u = &mut units[k - 1];
            (&mut u.logit, &mut u.coeff)
        }
        (_, false) => {
            let o = &mut super::view_slice_mut::<T, OutputCols<T>>(more)[k - 1];
            (&mut o.logit, &mut o.coeff)
        }
    }
}

/// A row split into its named part and the columns of outputs `1..K`.
pub fn split_row<T>(row: &[T]) -> (&HashCols<T>, &[OutputCols<T>]) {
    let (named, more) = row.split_at(NUM_HASH_COLS);
    (HashCols::from_row(named), super::view_slice(more))
}

/// Mutable [`split_row`].
pub fn split_row_mut<T>(row: &mut [T]) -> (&mut HashCols<T>, &mut [OutputCols<T>]) {
    let (named, more) = row.split_at_mut(NUM_HASH_COLS);
    (HashCols::from_row_mut(named), super::view_slice_mut(more))
}

/// Output `k`'s columns of a split row (output 0 from the named part).
pub fn output<T: Copy>(named: &HashCols<T>, more: &[OutputCols<T>], k: usize) -> OutputCols<T> {
    match k {
        0 => OutputCols {
            logit: named.logit,
            coeff: named.coeff,
            share: named.share,
        },
        _ => more[k - 1],
    }
}

/// Mutable references to output `k`'s logit, coefficient and shares.
pub fn output_mut<'a, T>(
    named: &'a mut HashCols<T>,
    more: &'a mut [OutputCols<T>],
    k: usize,
) -> (&'a mut T, &'a mut T, &'a mut [T; RATE]) {
    match k {
        0 => (&mut named.logit, &mut named.coeff, &mut named.share),
        _ => {
            let o = &mut more[k - 1];
            (&mut o.logit, &mut o.coeff, &mut o.share)
        }
    }
}

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
    /// Number of periodic columns of a logistic model; outputs `1..K` append their
    /// per-lane weights ([`weight`]), and an MLP then the example's position
    /// ([`example`]).
    pub const COUNT: usize = CHUNK_BASE + 1;

    /// The column of the example's position in the batch (an MLP's), for `outputs`
    /// outputs.
    pub const fn example(outputs: usize) -> usize {
        COUNT + (outputs - 1) * RATE
    }

    /// The column of output `k`'s weight in lane `lane`.
    pub const fn weight(k: usize, lane: usize) -> usize {
        match k {
            0 => WEIGHT + lane,
            _ => COUNT + (k - 1) * RATE + lane,
        }
    }
}

/// The hash table of one statement.
#[derive(Clone)]
pub struct HashTableAir {
    num_features: usize,
    /// Each output's bias (one for logistic regression).
    biases: Vec<i64>,
    /// Whether the layer is an MLP's hidden layer.
    hidden: bool,
    root: [Goldilocks; DIGEST_ELEMS],
    /// Whether the slots' rows are hidden-sampled (claimed on the `sample` bus) rather than
    /// the public indices.
    hidden_sampling: bool,
    periodic: Vec<Vec<Goldilocks>>,
    num_public_values: usize,
}

impl HashTableAir {
    /// Builds the table's AIR (and its periodic columns) for a statement.
    pub fn new(statement: &Statement, height: usize, num_public_values: usize) -> Self {
        let d = statement.model.num_features();
        let outputs = statement.shape().outputs;
        let params = &statement.model.params;
        Self {
            num_features: d,
            biases: params[outputs * d..outputs * (d + 1)].to_vec(),
            hidden: statement.shape().hidden,
            root: statement.dataset.root_digest(),
            hidden_sampling: statement.sampling.is_some(),
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
    let outputs = shape.outputs;
    let count = example(outputs) + shape.hidden as usize;
    let mut cols = vec![vec![Goldilocks::ZERO; height]; count];
    let one = Goldilocks::ONE;
    for i in 0..shape.batch {
        let base = i * block;
        if shape.hidden {
            cols[example(outputs)][base..base + block].fill(Goldilocks::from_usize(i));
        }
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
                    for k in 0..outputs {
                        let w = statement.model.params[k * d + pos];
                        cols[weight(k, lane)][row] = to_field(w);
                    }
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
                let index = statement.batch_indices.get(i).copied().unwrap_or(0);
                cols[INDEX][row] = Goldilocks::from_u64(index);
            }
        }
    }
    cols
}

impl BaseAir<Goldilocks> for HashTableAir {
    fn width(&self) -> usize {
        hash_width(self.biases.len(), self.hidden)
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
        let (local, local_outputs, tag) = row_outputs(main.current_slice(), self.hidden);
        let (next, next_outputs, _) = row_outputs(main.next_slice(), self.hidden);
        let p: Vec<AB::Expr> = builder
            .periodic_values()
            .iter()
            .map(|&v| v.into())
            .collect();
        let outputs = self.biases.len();

        let permutation = local.input.iter().chain(&local.output).copied();
        builder.push_interaction(PERMUTATION_BUS, permutation, -1);
        if outputs == 1 && !self.hidden {
            // A softmax's label is a class index; its step table proves it below `K`.
            builder.assert_bool(local.label);
        }
        builder.assert_bool(local.dir);
        builder.assert_bool(local.sampled);
        let row_logits = eval_lanes(builder, local, &p, outputs);
        eval_sponge(builder, local, next, &p, self.num_features);
        eval_merkle(builder, local, next, &p, &self.root);
        eval_selection(builder, local, &p, self.hidden_sampling);
        let block = Block {
            local,
            next,
            local_outputs: &local_outputs,
            next_outputs: &next_outputs,
        };
        eval_block(builder, &block, &p, row_logits, &self.biases);
        let tag = tag.map(|tag| {
            let position = p[periodic::example(outputs)].clone();
            builder.assert_eq(tag, position);
            tag
        });
        eval_sends(builder, local, &local_outputs, &p, self.num_features, tag);
    }
}

/// Feature lanes are the limbs' value minus the offset; padding lanes are zero; every limb
/// is in the range table. Returns this row's share of each output's logit.
fn eval_lanes<AB: InteractionBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &HashCols<AB::Var>,
    p: &[AB::Expr],
    outputs: usize,
) -> Vec<AB::Expr> {
    let mut row_logits = vec![AB::Expr::ZERO; outputs];
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
        for (k, row_logit) in row_logits.iter_mut().enumerate() {
            *row_logit += p[periodic::weight(k, lane)].clone() * x.clone();
        }
        row_norm_sq += feature * x.square();
    }
    debug_assert_eq!(2 * LIMB_BITS, FEATURE_BITS);
    builder.assert_eq(c.row_norm_sq, row_norm_sq);
    row_logits
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
}

/// Which row the block's path reaches: the public index, or (hidden sampling) one the
/// sampling table offers on the `sample` bus, claimed once by a slot that uses it.
fn eval_selection<AB: InteractionBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &HashCols<AB::Var>,
    p: &[AB::Expr],
    hidden_sampling: bool,
) {
    let root_row = p[periodic::ROOT_ROW].clone();
    let index: AB::Expr = c.index.into();
    if !hidden_sampling {
        builder.assert_zero(root_row * (index - p[periodic::INDEX].clone()));
        builder.assert_zero(c.claims);
        return;
    }
    builder.assert_eq(c.claims, root_row * c.sampled.into());
    builder.push_interaction(SAMPLE_BUS, [index], Count::bounded(-c.claims.into(), 1));
}

/// A row and the next, with each output's columns.
struct Block<'a, T> {
    local: &'a HashCols<T>,
    next: &'a HashCols<T>,
    local_outputs: &'a [OutputCols<T>],
    next_outputs: &'a [OutputCols<T>],
}

/// Running logits and squared norm over a block (exclusive of the current row); label and
/// coefficients constant over the block, the label bound to the leaf's label lane.
fn eval_block<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    b: &Block<'_, AB::Var>,
    p: &[AB::Expr],
    row_logits: Vec<AB::Expr>,
    biases: &[i64],
) {
    let (c, next) = (b.local, b.next);
    let keep = p[periodic::KEEP].clone();
    let start_next = p[periodic::START_NEXT].clone();
    let bias_terms: Vec<AB::Expr> = biases.iter().map(|&b| constant::<AB>(b * ONE)).collect();
    let one_sq = constant::<AB>(ONE * ONE);
    let last_absorb = p[periodic::LAST_ABSORB].clone();
    builder.assert_zero(last_absorb * (c.label.into() - c.input[LABEL_LANE].into()));

    for (o, bias_term) in b.local_outputs.iter().zip(&bias_terms) {
        builder
            .when_first_row()
            .assert_eq(o.logit, bias_term.clone());
    }
    builder
        .when_first_row()
        .assert_eq(c.norm_sq, one_sq.clone());
    let mut t = builder.when_transition();
    for (k, row_logit) in row_logits.into_iter().enumerate() {
        let (o, after) = (&b.local_outputs[k], &b.next_outputs[k]);
        t.assert_eq(
            after.logit,
            keep.clone() * o.logit.into() + row_logit + start_next.clone() * bias_terms[k].clone(),
        );
    }
    t.assert_eq(
        next.norm_sq,
        keep.clone() * c.norm_sq.into() + c.row_norm_sq.into() + start_next * one_sq,
    );
    let coeffs = b
        .local_outputs
        .iter()
        .zip(b.next_outputs)
        .map(|(o, n)| (n.coeff, o.coeff));
    let constants = [(next.label, c.label), (next.sampled, c.sampled)];
    for (after, before) in coeffs.chain(constants) {
        t.assert_zero(keep.clone() * (after.into() - before.into()));
    }
}

/// The example to the step table, once per block (an MLP's units to the hidden table,
/// tagged with the example's position, and only `(position, N, y)` to the step table);
/// each feature's share of the update. Bus messages read main columns only (p3-lookup
/// 0.8's trace builder has no periodic values), so the periodic values they need are
/// copied into constrained main columns.
fn eval_sends<AB: InteractionBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &HashCols<AB::Var>,
    outputs: &[OutputCols<AB::Var>],
    p: &[AB::Expr],
    num_features: usize,
    tag: Option<AB::Var>,
) {
    builder.assert_eq(c.sends_example, p[periodic::FIRST_MERKLE].clone());
    builder.assert_eq(c.chunk_base, p[periodic::CHUNK_BASE].clone());
    let sends = || Count::bounded(c.sends_example.into(), 1);
    match tag {
        None => {
            let logits = outputs.iter().map(|o| o.logit.into());
            let coeffs = outputs.iter().map(|o| o.coeff.into());
            let example: Vec<AB::Expr> = logits
                .chain([c.norm_sq.into(), c.label.into()])
                .chain(coeffs)
                .chain([c.sampled.into()])
                .collect();
            builder.push_interaction(EXAMPLE_BUS, example, sends());
        }
        Some(tag) => {
            let example = [tag, c.norm_sq, c.label].map(Into::into);
            builder.push_interaction(EXAMPLE_BUS, example, sends());
            for (m, o) in outputs.iter().enumerate() {
                let unit = [
                    tag.into(),
                    AB::Expr::from_usize(m),
                    o.logit.into(),
                    o.coeff.into(),
                ];
                builder.push_interaction(HIDDEN_BUS, unit, sends());
            }
        }
    }
    if tag.is_some() {
        // An MLP's share columns hold the masked features; each unit's share is `c_m` times.
        for lane in 0..RATE {
            let masked = p[periodic::FEATURE + lane].clone() * c.input[lane].into();
            builder.assert_eq(c.share[lane], masked);
        }
    }
    for (k, o) in outputs.iter().enumerate() {
        for lane in 0..RATE {
            let share: AB::Expr = match tag {
                Some(_) => o.coeff.into() * c.share[lane].into(),
                None => {
                    let x: AB::Expr = c.input[lane].into();
                    let share = p[periodic::FEATURE + lane].clone() * o.coeff.into() * x;
                    builder.assert_eq(o.share[lane], share);
                    o.share[lane].into()
                }
            };
            let param = c.chunk_base.into() + AB::Expr::from_usize(k * num_features + lane);
            // Field-valued: the bus sums shares per parameter (ARCHITECTURE.md, "Buses").
            builder.push_interaction(UPDATE_BUS, [param], Count::provided(share));
        }
    }
}
