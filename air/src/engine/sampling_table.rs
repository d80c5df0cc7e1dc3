//! `SamplingTable`: hidden Poisson sampling's PRF over every committed row (the sampling
//! rule is in [`crate::sampling`]).
//!
//! Row 0 opens the key commitment: its permutation input is `[key, 0, 0, 0, 0, 0,
//! KEY_DOMAIN, 0, 0]` and its output's first four lanes are the statement's commitment.
//! Row `b ≥ 1` is PRF block `b`: input `[key, seed, b, PRF_DOMAIN, round, 0]`, the key the same
//! on every row, and its eight output lanes decide rows `8(b − 1)..8b`. Per lane the row
//! splits the value into 32-bit halves (the high half never `2^32 − 1`, so the split is
//! unique), proves `low < t` or `low ≥ t` by a range-checked slack, and offers the row's
//! index on the `sample` bus once if it is sampled. Lanes past the dataset's last row (a
//! periodic `LIVE` column) offer nothing. Every hash-table slot that claims a row takes
//! its index from this bus, so the claimed rows are exactly the sampled ones, each once.
//!
//! The permutations themselves are proven by a second permutation table on the
//! `sampling-permutation` bus, as tall as this one.

use std::borrow::Cow;

use p3_air::{Air, AirBuilder, BaseAir, WindowAccess};
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_lookup::{Count, InteractionBuilder};

use super::limbs::{eval_range, limbs_for, limbs_value};
use super::{SAMPLE_BUS, SAMPLING_PERMUTATION_BUS, view, view_mut};
use crate::hash::{DIGEST_ELEMS, WIDTH};
use crate::sampling::{
    BLOCK_LANE, DOMAIN_LANE, Draw, KEY_DOMAIN, PRF_DOMAIN, RATE_BITS, ROUND_LANE,
    ROWS_PER_PERMUTATION, SamplingRate, seed_elements,
};
use crate::statement::MIN_LOG_HEIGHT;

/// Bits of each half of a PRF value, and of the comparison's slack.
pub const HALF_BITS: usize = RATE_BITS as usize;

/// One row's decision: the PRF value's halves and the comparison with the threshold.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LaneCols<T> {
    /// 1 if the row is sampled.
    pub sampled: T,
    /// The value's low 32 bits.
    pub low: [T; limbs_for(HALF_BITS)],
    /// The value's high 32 bits.
    pub high: [T; limbs_for(HALF_BITS)],
    /// `1 / (high − (2^32 − 1))`: the high half is not all ones, so the split is unique.
    pub high_gap_inverse: T,
    /// `t − 1 − low` if sampled, `low − t` if not (0 past the last row).
    pub slack: [T; limbs_for(HALF_BITS)],
}

/// The named columns of a sampling-table row.
#[repr(C)]
pub struct SamplingCols<T> {
    /// The permutation's input (proven in the sampling permutation table).
    pub input: [T; WIDTH],
    /// Its output lanes `0, 1, 2, 3, 8, 9, 10, 11`: the commitment on row 0 (the first
    /// four), the PRF values of the block's rows on the others.
    pub output: [T; 2 * DIGEST_ELEMS],
    /// Bus-visible copy of the periodic block base: the index of the block's first row.
    pub first_index: T,
    /// Per row of the block.
    pub lanes: [LaneCols<T>; ROWS_PER_PERMUTATION],
}

/// Width of a sampling-table row.
pub const NUM_SAMPLING_COLS: usize = size_of::<SamplingCols<u8>>();

impl<T> SamplingCols<T> {
    /// Views a row by name.
    pub fn from_row(row: &[T]) -> &Self {
        debug_assert_eq!(row.len(), NUM_SAMPLING_COLS);
        view(row)
    }

    /// Mutable [`Self::from_row`].
    pub fn from_row_mut(row: &mut [T]) -> &mut Self {
        debug_assert_eq!(row.len(), NUM_SAMPLING_COLS);
        view_mut(row)
    }
}

/// Indices of the periodic columns (period = table height).
pub mod periodic {
    /// 1 on row 0, the commitment row.
    pub const COMMIT: usize = 0;
    /// The PRF block number `b` on row `b ≥ 1`, 0 on row 0.
    pub const BLOCK: usize = 1;
    /// Per lane: 1 if the lane's row is a dataset row.
    pub const LIVE: usize = 2;
    /// Number of periodic columns.
    pub const COUNT: usize = LIVE + super::ROWS_PER_PERMUTATION;
}

/// The table's height for a `rows`-row dataset: the commitment row and a row per block.
pub fn sampling_height(rows: u64) -> usize {
    let blocks = rows.div_ceil(ROWS_PER_PERMUTATION as u64) as usize;
    (1 + blocks).next_power_of_two().max(1 << MIN_LOG_HEIGHT)
}

/// The sampling table of one statement.
#[derive(Clone)]
pub struct SamplingTableAir {
    commitment: [Goldilocks; DIGEST_ELEMS],
    seed: [Goldilocks; 4],
    round: u64,
    threshold: u64,
    periodic: Vec<Vec<Goldilocks>>,
}

impl SamplingTableAir {
    /// The table for a `rows`-row dataset, the key `commitment`, the attempt's `draw` and
    /// the sampling `rate`.
    pub fn new(
        commitment: [Goldilocks; DIGEST_ELEMS],
        draw: Draw<'_>,
        rate: SamplingRate,
        rows: u64,
    ) -> Self {
        Self {
            commitment,
            seed: seed_elements(draw.seed),
            round: draw.round,
            threshold: rate.threshold,
            periodic: periodic_columns(rows),
        }
    }
}

fn periodic_columns(rows: u64) -> Vec<Vec<Goldilocks>> {
    use periodic::*;
    let height = sampling_height(rows);
    let mut cols = vec![vec![Goldilocks::ZERO; height]; COUNT];
    cols[COMMIT][0] = Goldilocks::ONE;
    for (block, b) in cols[BLOCK].iter_mut().enumerate().skip(1) {
        *b = Goldilocks::from_usize(block);
    }
    for (lane, live) in cols[LIVE..].iter_mut().enumerate() {
        for (block, l) in live.iter_mut().enumerate().skip(1) {
            let row = ((block - 1) * ROWS_PER_PERMUTATION + lane) as u64;
            *l = Goldilocks::from_bool(row < rows);
        }
    }
    cols
}

impl BaseAir<Goldilocks> for SamplingTableAir {
    fn width(&self) -> usize {
        NUM_SAMPLING_COLS
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

impl<AB: InteractionBuilder<F = Goldilocks>> Air<AB> for SamplingTableAir {
    fn eval(&self, builder: &mut AB) {
        let main = builder.main();
        let c = SamplingCols::from_row(main.current_slice());
        let next = SamplingCols::from_row(main.next_slice());
        let p: Vec<AB::Expr> = builder
            .periodic_values()
            .iter()
            .map(|&v| v.into())
            .collect();

        let permutation = c.input.iter().chain(&c.output).copied();
        builder.push_interaction(SAMPLING_PERMUTATION_BUS, permutation, -1);
        eval_inputs(builder, c, next, &p, &self.seed, self.round);
        let commit = p[periodic::COMMIT].clone();
        for (&out, &digest) in c.output.iter().zip(&self.commitment) {
            builder.assert_zero(commit.clone() * (out.into() - AB::Expr::from(digest)));
        }
        let eight = AB::Expr::from_usize(ROWS_PER_PERMUTATION);
        let base =
            eight.clone() * p[periodic::BLOCK].clone() - eight * (AB::Expr::ONE - commit.clone());
        builder.assert_eq(c.first_index, base);
        for (lane, l) in c.lanes.iter().enumerate() {
            let live = p[periodic::LIVE + lane].clone();
            eval_lane(builder, l, c.output[lane], live, self.threshold);
            let index = c.first_index.into() + AB::Expr::from_usize(lane);
            builder.push_interaction(SAMPLE_BUS, [index], Count::bounded(l.sampled.into(), 1));
        }
    }
}

/// The permutation inputs: the key on every row (the same as the next row's), then the
/// commitment's zeros and domain on row 0, the seed, block number, PRF domain and round on
/// the others.
fn eval_inputs<AB: AirBuilder<F = Goldilocks>>(
    builder: &mut AB,
    c: &SamplingCols<AB::Var>,
    next: &SamplingCols<AB::Var>,
    p: &[AB::Expr],
    seed: &[Goldilocks; 4],
    round: u64,
) {
    for i in 0..DIGEST_ELEMS {
        builder
            .when_transition()
            .assert_eq(next.input[i], c.input[i]);
    }
    let commit = p[periodic::COMMIT].clone();
    let prf = AB::Expr::ONE - commit.clone();
    for (i, &s) in seed.iter().enumerate() {
        builder.assert_eq(c.input[DIGEST_ELEMS + i], prf.clone() * AB::Expr::from(s));
    }
    builder.assert_eq(c.input[BLOCK_LANE], p[periodic::BLOCK].clone());
    let domain =
        commit * AB::Expr::from_u64(KEY_DOMAIN) + prf.clone() * AB::Expr::from_u64(PRF_DOMAIN);
    builder.assert_eq(c.input[DOMAIN_LANE], domain);
    builder.assert_eq(c.input[ROUND_LANE], prf * AB::Expr::from_u64(round));
    for lane in ROUND_LANE + 1..WIDTH {
        builder.assert_zero(c.input[lane]);
    }
}

/// One row's decision: `value = low + 2^32·high` with `high ≠ 2^32 − 1`; a live row is
/// sampled iff `low < t` (the slack's range check); a dead one is not sampled.
fn eval_lane<AB: InteractionBuilder<F = Goldilocks>>(
    builder: &mut AB,
    l: &LaneCols<AB::Var>,
    value: AB::Var,
    live: AB::Expr,
    threshold: u64,
) {
    for limbs in [&l.low, &l.high, &l.slack] {
        eval_range(builder, limbs, HALF_BITS);
    }
    let low = limbs_value::<AB>(&l.low);
    let high = limbs_value::<AB>(&l.high);
    let half = AB::Expr::from_u64(1 << HALF_BITS);
    builder.assert_eq(value, low.clone() + half * high.clone());
    let all_ones = AB::Expr::from_u64((1 << HALF_BITS) - 1);
    builder.assert_one((high - all_ones) * l.high_gap_inverse.into());

    let sampled: AB::Expr = l.sampled.into();
    builder.assert_bool(l.sampled);
    builder.assert_zero(sampled.clone() * (AB::Expr::ONE - live.clone()));
    let t = AB::Expr::from_u64(threshold);
    let below = t.clone() - AB::Expr::ONE - low.clone();
    let above = low - t;
    let slack = sampled.clone() * below + (AB::Expr::ONE - sampled) * above;
    builder.assert_eq(limbs_value::<AB>(&l.slack), live * slack);
}
