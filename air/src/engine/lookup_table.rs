//! `LookupTable`: 1024 rows of verifier-computed (periodic) columns that provide the range
//! `[0, 2^11)` (two values per row), the sigmoid's 512 segments (on the first 512 rows),
//! and receive the public update (two entries per row).
//!
//! The range is laid out two values to a row: 1024 rows, as tall as the hash table at
//! d = 30, B = 64 over up to 2^11 dataset rows (each distinct table height costs a salt per
//! commitment and a FRI folding round in every proof). Below B = 64 at d = 30 it is the
//! tallest table and sets FRI's domain, as a `2^11`-row table did for every hash table of
//! 1024 rows or fewer (BENCH.md, issue 13).

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
pub const LOOKUP_HEIGHT: usize = 1024;
/// Range values (and update entries) per row: value `i + LOOKUP_HEIGHT·lane` on row `i`.
pub const LANES: usize = RANGE_SIZE / LOOKUP_HEIGHT;

const _: () = assert!(LANES * LOOKUP_HEIGHT == RANGE_SIZE);
const _: () = assert!(SEGMENTS <= LOOKUP_HEIGHT, "every segment has a row");
const _: () = assert!(MAX_FEATURES < RANGE_SIZE, "every update entry has a slot");

/// Main columns.
pub mod cols {
    use super::LANES;
    /// Per lane: lookups of this row's range value.
    pub const RANGE_MULT: usize = 0;
    /// Lookups of this row's sigmoid segment.
    pub const SIGMOID_MULT: usize = RANGE_MULT + LANES;
    /// Bus-visible copies of the periodic columns the buses read (LogUp's trace builder
    /// reads main columns only), in [`super::periodic`] order.
    pub const ENTRY: usize = SIGMOID_MULT + 1;
    /// Width.
    pub const COUNT: usize = ENTRY + super::periodic::COPIED;
}

/// Periodic columns (period [`LOOKUP_HEIGHT`]).
pub mod periodic {
    use super::LANES;
    /// Per lane: the range value `i + 1024·lane`, also the update index `j`.
    pub const VALUE: usize = 0;
    /// The segment's start `a_k` on row `k < 512` (the segment index is lane 0's value);
    /// 0 below.
    pub const SEGMENT_START: usize = VALUE + LANES;
    /// Its rise `b_k`; 0 below row 512.
    pub const SEGMENT_RISE: usize = SEGMENT_START + 1;
    /// Per lane: the update entry `U_j` for `j = i + 1024·lane ≤ d` (the bias at `d`),
    /// else 0.
    pub const UPDATE: usize = SEGMENT_RISE + 1;
    /// Columns the buses read, copied into the main trace.
    pub const COPIED: usize = UPDATE + LANES;
    /// 1 on the rows that hold a sigmoid segment, 0 on the others (read by a constraint
    /// only, so not copied).
    pub const IS_SEGMENT: usize = COPIED;
    /// Number of periodic columns.
    pub const COUNT: usize = IS_SEGMENT + 1;
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
        for (entry, &u) in entries.iter_mut().zip(&update.values) {
            *entry = to_field(u);
        }
        let lane = |lane: usize| LOOKUP_HEIGHT * lane..LOOKUP_HEIGHT * (lane + 1);
        let mut periodic = Vec::with_capacity(periodic::COUNT);
        for l in 0..LANES {
            periodic.push(lane(l).map(Goldilocks::from_usize).collect());
        }
        let segment_column = |value: fn(usize) -> Goldilocks| -> Vec<Goldilocks> {
            (0..LOOKUP_HEIGHT)
                .map(|k| {
                    if k < SEGMENTS {
                        value(k)
                    } else {
                        Goldilocks::ZERO
                    }
                })
                .collect()
        };
        periodic.push(segment_column(|k| to_field(segment(k).start)));
        periodic.push(segment_column(|k| to_field(segment(k).rise)));
        for l in 0..LANES {
            periodic.push(entries[lane(l)].to_vec());
        }
        periodic.push(segment_column(|_| Goldilocks::ONE));
        Self { periodic }
    }

    /// Row `i`'s copied periodic values, in [`periodic`] order (the trace copies them).
    pub fn periodic_values_by_row(&self) -> Vec<Vec<Goldilocks>> {
        (0..LOOKUP_HEIGHT)
            .map(|i| {
                self.periodic[..periodic::COPIED]
                    .iter()
                    .map(|c| c[i])
                    .collect()
            })
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
        for (&copy, p) in entry.iter().zip(&p[..periodic::COPIED]) {
            builder.assert_eq(copy, p.clone());
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
        // Rows past the last segment provide none: in the middle case only this table
        // bounds the step table's segment index.
        let not_segment = AB::Expr::ONE - p[periodic::IS_SEGMENT].clone();
        builder.assert_zero(not_segment * mult);
        builder.push_interaction(SIGMOID_BUS, segment, Count::provided(-mult.into()));
    }
}
