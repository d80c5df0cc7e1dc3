//! `LookupTable`: 1024 rows of verifier-computed (periodic) columns that provide the range
//! `[0, 2^11)` (two values per row), the head's 512 segments (on the first 512 rows: the
//! sigmoid's for a logistic model, the exponential's for a softmax), and receive the
//! public update (two entries per row, and one more lane per further 1024 parameters).
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
use super::{EXP_BUS, RANGE_BUS, SIGMOID_BUS, UPDATE_BUS};
use crate::fixed::{MAX_FEATURES, to_field};
use crate::reference::ClippedGradientSum;
use crate::segments::{SEGMENTS, Segment};
use crate::spec::Head;

/// Rows of the lookup table.
pub const LOOKUP_HEIGHT: usize = 1024;
/// Range values (and update entries) per row: value `i + LOOKUP_HEIGHT·lane` on row `i`.
pub const LANES: usize = RANGE_SIZE / LOOKUP_HEIGHT;

const _: () = assert!(LANES * LOOKUP_HEIGHT == RANGE_SIZE);
const _: () = assert!(SEGMENTS <= LOOKUP_HEIGHT, "every segment has a row");
const _: () = assert!(
    MAX_FEATURES < RANGE_SIZE,
    "every logistic update entry has a slot in the two lanes"
);

/// Main columns of the two-lane table; further update lanes append one copy each.
pub mod cols {
    use super::LANES;
    /// Per lane: lookups of this row's range value.
    pub const RANGE_MULT: usize = 0;
    /// Lookups of this row's segment (the sigmoid's or the exponential's).
    pub const SIGMOID_MULT: usize = RANGE_MULT + LANES;
    /// Bus-visible copies of the periodic columns the buses read (LogUp's trace builder
    /// reads main columns only), in [`super::periodic`] order.
    pub const ENTRY: usize = SIGMOID_MULT + 1;
    /// Width.
    pub const COUNT: usize = ENTRY + super::periodic::COPIED;
}

/// Periodic columns (period [`LOOKUP_HEIGHT`]) of the two-lane table; further update
/// lanes append one each.
pub mod periodic {
    use super::LANES;
    /// Per lane: the range value `i + 1024·lane`, also the update index `j`.
    pub const VALUE: usize = 0;
    /// The segment's start `a_k` on row `k < 512` (the segment index is lane 0's value);
    /// 0 below.
    pub const SEGMENT_START: usize = VALUE + LANES;
    /// Its rise `b_k`; 0 below row 512.
    pub const SEGMENT_RISE: usize = SEGMENT_START + 1;
    /// Per lane: the update entry `U_j` for `j = i + 1024·lane` below the parameter
    /// count (in the model's layout: weights, then biases), else 0.
    pub const UPDATE: usize = SEGMENT_RISE + 1;
    /// Columns the buses read, copied into the main trace.
    pub const COPIED: usize = UPDATE + LANES;
    /// 1 on the rows that hold a segment (the sigmoid's or the exponential's), 0 on the
    /// others (read by a constraint only, so not copied).
    pub const IS_SEGMENT: usize = COPIED;
    /// Number of periodic columns.
    pub const COUNT: usize = IS_SEGMENT + 1;
}

/// Update lanes of a table receiving `num_params` entries (at least [`LANES`]).
pub const fn update_lanes(num_params: usize) -> usize {
    let lanes = num_params.div_ceil(LOOKUP_HEIGHT);
    if lanes > LANES { lanes } else { LANES }
}

/// Main columns of a table receiving `num_params` entries.
pub const fn lookup_width(num_params: usize) -> usize {
    cols::COUNT + update_lanes(num_params) - LANES
}

/// The segment bus of a head: what its step table looks up.
pub fn segment_bus(head: Head) -> &'static str {
    match head {
        Head::Sigmoid => SIGMOID_BUS,
        Head::Softmax { .. } => EXP_BUS,
    }
}

/// The lookup table of one statement and update.
#[derive(Clone)]
pub struct LookupTableAir {
    periodic: Vec<Vec<Goldilocks>>,
    segment_bus: &'static str,
}

impl LookupTableAir {
    /// The table providing `head`'s segments and receiving `update`.
    pub fn new(update: &ClippedGradientSum, head: Head) -> Self {
        let lanes = update_lanes(update.values.len());
        let mut entries = vec![Goldilocks::ZERO; lanes * LOOKUP_HEIGHT];
        for (entry, &u) in entries.iter_mut().zip(&update.values) {
            *entry = to_field(u);
        }
        let lane = |lane: usize| LOOKUP_HEIGHT * lane..LOOKUP_HEIGHT * (lane + 1);
        let mut periodic = Vec::with_capacity(periodic::COUNT + lanes - LANES);
        for l in 0..LANES {
            periodic.push(lane(l).map(Goldilocks::from_usize).collect());
        }
        let segment: fn(usize) -> Segment = match head {
            Head::Sigmoid => crate::sigmoid::segment,
            Head::Softmax { .. } => crate::exp::segment,
        };
        let segment_column = |value: &dyn Fn(usize) -> Goldilocks| -> Vec<Goldilocks> {
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
        periodic.push(segment_column(&|k| to_field(segment(k).start)));
        periodic.push(segment_column(&|k| to_field(segment(k).rise)));
        for l in 0..LANES {
            periodic.push(entries[lane(l)].to_vec());
        }
        periodic.push(segment_column(&|_| Goldilocks::ONE));
        for l in LANES..lanes {
            periodic.push(entries[lane(l)].to_vec());
        }
        Self {
            periodic,
            segment_bus: segment_bus(head),
        }
    }

    /// Update lanes beyond the first [`LANES`].
    fn extra_lanes(&self) -> usize {
        self.periodic.len() - periodic::COUNT
    }

    /// Row `i`'s copied periodic values, in column order (the trace copies them).
    pub fn periodic_values_by_row(&self) -> Vec<Vec<Goldilocks>> {
        let copied = || {
            let extra = &self.periodic[periodic::COUNT..];
            self.periodic[..periodic::COPIED].iter().chain(extra)
        };
        (0..LOOKUP_HEIGHT)
            .map(|i| copied().map(|c| c[i]).collect())
            .collect()
    }
}

impl BaseAir<Goldilocks> for LookupTableAir {
    fn width(&self) -> usize {
        cols::COUNT + self.extra_lanes()
    }

    fn num_periodic_columns(&self) -> usize {
        self.periodic.len()
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
        let extra_entry = &row[cols::COUNT..];
        let p: Vec<AB::Expr> = builder
            .periodic_values()
            .iter()
            .map(|&v| v.into())
            .collect();
        for (&copy, p) in entry.iter().zip(&p[..periodic::COPIED]) {
            builder.assert_eq(copy, p.clone());
        }
        for (&copy, p) in extra_entry.iter().zip(&p[periodic::COUNT..]) {
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
        builder.push_interaction(self.segment_bus, segment, Count::provided(-mult.into()));
        for (i, &received) in extra_entry.iter().enumerate() {
            let lane = LANES + i;
            let index = entry[periodic::VALUE].into() + AB::Expr::from_usize(LOOKUP_HEIGHT * lane);
            builder.push_interaction(UPDATE_BUS, [index], Count::provided(-received.into()));
        }
    }
}
