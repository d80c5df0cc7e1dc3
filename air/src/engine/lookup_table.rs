//! `LookupTable`: 512 rows of verifier-computed (periodic) columns that provide the range
//! `[0, 2^11)` (four values per row), the sigmoid's 512 segments, and receive the public
//! update (four entries per row).
//!
//! The range is laid out four values to a row so that this table is never the tallest: a
//! `2^11`-row table set FRI's domain and the largest Merkle tree of every proof with a
//! hash table of 1024 rows or fewer (BENCH.md, issue 13).

use std::borrow::Cow;

use p3_air::{Air, BaseAir, WindowAccess};
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_lookup::{Count, InteractionBuilder};

use super::limbs::RANGE_SIZE;
use super::{RANGE_BUS, SIGMOID_BUS, UPDATE_BUS};
use crate::fixed::{MAX_FEATURES, to_field};
use crate::reference::ClippedGradientSum;
use crate::sigmoid::{SEGMENTS, segment};

/// Rows of the lookup table.
pub const LOOKUP_HEIGHT: usize = SEGMENTS;
/// Range values (and update entries) per row: value `i + LOOKUP_HEIGHT·lane` on row `i`.
pub const LANES: usize = RANGE_SIZE / LOOKUP_HEIGHT;

const _: () = assert!(LANES * LOOKUP_HEIGHT == RANGE_SIZE);
const _: () = assert!(MAX_FEATURES < RANGE_SIZE, "every update entry has a slot");

/// Main columns.
pub mod cols {
    use super::LANES;
    /// Per lane: lookups of this row's range value.
    pub const RANGE_MULT: usize = 0;
    /// Lookups of this row's sigmoid segment.
    pub const SIGMOID_MULT: usize = RANGE_MULT + LANES;
    /// Bus-visible copies of the periodic columns (LogUp's trace builder reads main
    /// columns only), in [`super::periodic`] order.
    pub const ENTRY: usize = SIGMOID_MULT + 1;
    /// Width.
    pub const COUNT: usize = ENTRY + super::periodic::COUNT;
}

/// Periodic columns (period [`LOOKUP_HEIGHT`]).
pub mod periodic {
    use super::LANES;
    /// Per lane: the range value `i + 512·lane`, also the update index `j`.
    pub const VALUE: usize = 0;
    /// The segment's start `a_k` on row `k` (the segment index is lane 0's value).
    pub const SEGMENT_START: usize = VALUE + LANES;
    /// Its rise `b_k`.
    pub const SEGMENT_RISE: usize = SEGMENT_START + 1;
    /// Per lane: the update entry `U_j` for `j = i + 512·lane ≤ d` (the bias at `d`), else 0.
    pub const UPDATE: usize = SEGMENT_RISE + 1;
    /// Number of periodic columns.
    pub const COUNT: usize = UPDATE + LANES;
}

/// The lookup table of one statement and update.
#[derive(Clone)]
pub struct LookupTableAir {
    periodic: Vec<Vec<Goldilocks>>,
}

impl LookupTableAir {
    /// The table receiving `update`.
    pub fn new(update: &ClippedGradientSum) -> Self {
        let mut entries = vec![Goldilocks::ZERO; RANGE_SIZE];
        let update_entries = update.weights.iter().chain([&update.bias]);
        for (entry, &u) in entries.iter_mut().zip(update_entries) {
            *entry = to_field(u);
        }
        let lane = |lane: usize| LOOKUP_HEIGHT * lane..LOOKUP_HEIGHT * (lane + 1);
        let mut periodic = Vec::with_capacity(periodic::COUNT);
        for l in 0..LANES {
            periodic.push(lane(l).map(Goldilocks::from_usize).collect());
        }
        let segments: Vec<_> = (0..SEGMENTS).map(segment).collect();
        periodic.push(segments.iter().map(|s| to_field(s.start)).collect());
        periodic.push(segments.iter().map(|s| to_field(s.rise)).collect());
        for l in 0..LANES {
            periodic.push(entries[lane(l)].to_vec());
        }
        Self { periodic }
    }

    /// Row `i`'s periodic values, in [`periodic`] order (the trace copies them).
    pub fn periodic_values_by_row(&self) -> Vec<Vec<Goldilocks>> {
        (0..LOOKUP_HEIGHT)
            .map(|i| self.periodic.iter().map(|c| c[i]).collect())
            .collect()
    }
}

impl BaseAir<Goldilocks> for LookupTableAir {
    fn width(&self) -> usize {
        cols::COUNT
    }

    fn num_periodic_columns(&self) -> usize {
        periodic::COUNT
    }

    fn periodic_columns(&self) -> Cow<'_, [Vec<Goldilocks>]> {
        Cow::Borrowed(&self.periodic)
    }

    fn main_next_row_columns(&self) -> Vec<usize> {
        Vec::new()
    }
}

impl<AB: InteractionBuilder<F = Goldilocks>> Air<AB> for LookupTableAir {
    fn eval(&self, builder: &mut AB) {
        let main = builder.main();
        let row = main.current_slice();
        let entry = &row[cols::ENTRY..cols::COUNT];
        let p: Vec<AB::Expr> = builder
            .periodic_values()
            .iter()
            .map(|&v| v.into())
            .collect();
        for (&copy, p) in entry.iter().zip(p) {
            builder.assert_eq(copy, p);
        }
        for lane in 0..LANES {
            let value = entry[periodic::VALUE + lane];
            let mult = row[cols::RANGE_MULT + lane];
            builder.push_interaction(RANGE_BUS, [value], Count::provided(-mult.into()));
            let received = -entry[periodic::UPDATE + lane].into();
            builder.push_interaction(UPDATE_BUS, [value], Count::provided(received));
        }
        let segment = [
            entry[periodic::VALUE],
            entry[periodic::SEGMENT_START],
            entry[periodic::SEGMENT_RISE],
        ];
        let mult = row[cols::SIGMOID_MULT];
        builder.push_interaction(SIGMOID_BUS, segment, Count::provided(-mult.into()));
    }
}
