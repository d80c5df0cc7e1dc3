//! `LookupTable`: `2^11` rows of verifier-computed (periodic) columns that provide the
//! range `[0, 2^11)` and the sigmoid's segments, and receive the public update.

use std::borrow::Cow;

use p3_air::{Air, BaseAir, WindowAccess};
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_lookup::{Count, InteractionBuilder};

use super::limbs::RANGE_SIZE;
use super::{RANGE_BUS, SIGMOID_BUS, UPDATE_BUS};
use crate::fixed::to_field;
use crate::reference::ClippedGradientSum;
use crate::sigmoid::{SEGMENTS, segment};

/// Rows of the lookup table.
pub const LOOKUP_HEIGHT: usize = RANGE_SIZE;

/// Main columns: how often each entry is looked up.
pub mod cols {
    /// Lookups of this row's range value.
    pub const RANGE_MULT: usize = 0;
    /// Lookups of this row's sigmoid segment.
    pub const SIGMOID_MULT: usize = 1;
    /// Bus-visible copies of the periodic columns (LogUp's trace builder reads main
    /// columns only), in [`super::periodic`] order.
    pub const ENTRY: usize = 2;
    /// Width.
    pub const COUNT: usize = ENTRY + super::periodic::COUNT;
}

/// Periodic columns.
pub mod periodic {
    /// The range value `i` (period `2^11`).
    pub const VALUE: usize = 0;
    /// The segment index `k` (period 512).
    pub const SEGMENT: usize = 1;
    /// Its start `a_k`.
    pub const SEGMENT_START: usize = 2;
    /// Its rise `b_k`.
    pub const SEGMENT_RISE: usize = 3;
    /// The update entry `U_j` on row `j ≤ d` (the bias at `d`), zero after.
    pub const UPDATE: usize = 4;
    /// Number of periodic columns.
    pub const COUNT: usize = 5;
}

/// The lookup table of one statement and update.
#[derive(Clone)]
pub struct LookupTableAir {
    periodic: Vec<Vec<Goldilocks>>,
}

impl LookupTableAir {
    /// The table receiving `update`.
    pub fn new(update: &ClippedGradientSum) -> Self {
        let values = (0..LOOKUP_HEIGHT).map(Goldilocks::from_usize).collect();
        let segments = (0..SEGMENTS).map(segment);
        let mut starts = Vec::with_capacity(SEGMENTS);
        let mut rises = Vec::with_capacity(SEGMENTS);
        for s in segments {
            starts.push(to_field(s.start));
            rises.push(to_field(s.rise));
        }
        let mut entries = vec![Goldilocks::ZERO; LOOKUP_HEIGHT];
        let update_entries = update.weights.iter().chain([&update.bias]);
        for (entry, &u) in entries.iter_mut().zip(update_entries) {
            *entry = to_field(u);
        }
        let ks = (0..SEGMENTS).map(Goldilocks::from_usize).collect();
        Self {
            periodic: vec![values, ks, starts, rises, entries],
        }
    }
}

impl LookupTableAir {
    /// Row `i`'s periodic values, in [`periodic`] order (the trace copies them).
    pub fn periodic_values_by_row(&self) -> Vec<Vec<Goldilocks>> {
        (0..LOOKUP_HEIGHT)
            .map(|i| self.periodic.iter().map(|c| c[i % c.len()]).collect())
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
        let (range_mult, sigmoid_mult) = (row[cols::RANGE_MULT], row[cols::SIGMOID_MULT]);
        let entry = &row[cols::ENTRY..cols::COUNT];
        let p: Vec<AB::Expr> = builder
            .periodic_values()
            .iter()
            .map(|&v| v.into())
            .collect();
        for (&copy, p) in entry.iter().zip(p) {
            builder.assert_eq(copy, p);
        }
        builder.push_interaction(
            RANGE_BUS,
            [entry[periodic::VALUE]],
            Count::provided(-range_mult.into()),
        );
        let segment = [
            entry[periodic::SEGMENT],
            entry[periodic::SEGMENT_START],
            entry[periodic::SEGMENT_RISE],
        ];
        builder.push_interaction(SIGMOID_BUS, segment, Count::provided(-sigmoid_mult.into()));
        builder.push_interaction(
            UPDATE_BUS,
            [entry[periodic::VALUE]],
            Count::provided(-entry[periodic::UPDATE].into()),
        );
    }
}
