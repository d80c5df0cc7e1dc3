//! The proof engine: a `p3-batch-stark` proof of four tables (five for an MLP) tied by
//! LogUp buses (ARCHITECTURE.md, "Tables, buses and cost model").
//!
//! - [`hash_table`]: leaf sponges, Merkle paths, feature ranges, logits and norms.
//! - [`step_table`]: the training step of each example (sigmoid, residual, clipping).
//! - [`softmax_table`]: a softmax model's training step of each example, in place of the
//!   step table.
//! - [`lookup_table`]: the range and segment tables, and the receiving end of the update.
//!
//! - [`permutation_table`]: one Poseidon2 permutation per row, for the hash table.
//! - [`hidden_table`]: an MLP's hidden units and second layer, a fifth instance.
//! - [`sampling_table`]: hidden Poisson sampling's PRF over every committed row, with a
//!   permutation table of its own (the last two instances of a hidden-sampling proof).
//!
//! Every table is built from the statement (and the claimed update), so the verifier
//! computes all structure itself; [`crate::proof`] checks each instance's height against
//! [`TableHeights`] before Plonky3 reads the proof.

pub mod hash_table;
pub mod hidden_table;
pub mod limbs;
pub mod lookup_table;
pub mod permutation_table;
pub mod sampling_table;
pub mod softmax_table;
pub mod step_table;
pub mod witness;

use std::borrow::Cow;

use p3_air::{Air, BaseAir};
use p3_goldilocks::Goldilocks;
use p3_lookup::InteractionBuilder;

pub use crate::error::WitnessError;
use crate::reference::ClippedGradientSum;
use crate::spec::Head;
use crate::statement::{MIN_LOG_HEIGHT, ProofShape, Statement};
use hash_table::HashTableAir;
use hidden_table::HiddenTableAir;
use lookup_table::{LOOKUP_HEIGHT, LookupTableAir};
use permutation_table::PermutationTableAir;
use sampling_table::SamplingTableAir;
use softmax_table::SoftmaxStepTableAir;
use step_table::StepTableAir;

/// Permutation bus: `(input, output digest, output capacity)` of every hash-table row,
/// provided by the permutation table.
pub const PERMUTATION_BUS: &str = "permutation";
/// Range bus: limbs looked up in `[0, 2^11)`.
pub const RANGE_BUS: &str = "range";
/// Sigmoid bus: `(k, a_k, b_k)` looked up in the segment table.
pub const SIGMOID_BUS: &str = "sigmoid";
/// Exponential bus: `(k, a_k, b_k)` looked up in a softmax's segment table.
pub const EXP_BUS: &str = "exp";
/// Example bus: `(z_0.., N, y, c_0..)` from the hash table to the step table; an MLP's
/// `(i, N, y)`, tagged with the example's position `i`.
pub const EXAMPLE_BUS: &str = "example";
/// Hidden bus: an MLP's `(i, m, a_m, c_m)` from the hash table to the hidden table.
pub const HIDDEN_BUS: &str = "hidden";
/// Head bus: an MLP's `(i, z.., r.., c.., ONE² + Σh², Σδ², ν, clipped)` between the hidden
/// table and the step table.
pub const HEAD_BUS: &str = "head";
/// Update bus: `(j)` with field-valued counts that must sum to `U_j`.
pub const UPDATE_BUS: &str = "update";
/// Sample bus: `(i)` for each sampled row `i`, offered by the sampling table and claimed by
/// the hash-table slots that use a row (hidden sampling only).
pub const SAMPLE_BUS: &str = "sample";
/// The sampling table's permutations, provided by its own permutation table.
pub const SAMPLING_PERMUTATION_BUS: &str = "sampling-permutation";

/// Bits of a range-checked feature (`x + 2^21` in two 11-bit limbs).
pub const FEATURE_BITS: usize = crate::fixed::X_BITS;
/// Offset that makes the signed feature range non-negative.
pub const FEATURE_OFFSET: i64 = crate::fixed::X_OFFSET;

/// The tables of one proof, in instance order.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
pub enum TableAir {
    /// Instance 0.
    Permutation(PermutationTableAir),
    /// Instance 1.
    Hash(HashTableAir),
    /// Instance 2 of a logistic model.
    Step(StepTableAir),
    /// Instance 2 of a softmax model.
    SoftmaxStep(SoftmaxStepTableAir),
    /// Instance 3.
    Lookup(LookupTableAir),
    /// Instance 4, of an MLP only.
    Hidden(HiddenTableAir),
    /// The last instance of a hidden-sampling proof (its permutation table precedes it).
    Sampling(SamplingTableAir),
}

/// Each table's height, fixed by the statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableHeights {
    /// `B·(K + D)` rounded up to a power of two, at least `2^MIN_LOG_HEIGHT`.
    pub hash: usize,
    /// `B` rounded up to a power of two, at least `2^MIN_LOG_HEIGHT`.
    pub step: usize,
    /// [`LOOKUP_HEIGHT`] (`2^10`).
    pub lookup: usize,
    /// An MLP's: `B·H` rounded up to a power of two, at least `2^MIN_LOG_HEIGHT`.
    pub hidden: Option<usize>,
    /// Hidden sampling's (and its permutation table's): a row per eight dataset rows and
    /// the commitment row, rounded up to a power of two, at least `2^MIN_LOG_HEIGHT`.
    pub sampling: Option<usize>,
}

impl TableHeights {
    /// The heights a statement fixes.
    pub fn of(statement: &Statement) -> Self {
        Self::for_shape(&statement.shape())
    }

    /// The heights of a proof of this shape.
    pub fn for_shape(shape: &ProofShape) -> Self {
        let min = 1 << MIN_LOG_HEIGHT;
        Self {
            hash: (shape.batch * shape.block_len())
                .next_power_of_two()
                .max(min),
            // Not raised to the lookup table's height: a 1024-row step table (all four
            // tables of one height at d = 30, B = 64) saved 5 KiB per proof but cost 15-35%
            // more proving time (BENCH.md, "Proof engine v2, tuned").
            step: shape.batch.next_power_of_two().max(min),
            lookup: LOOKUP_HEIGHT,
            hidden: shape
                .hidden
                .then(|| (shape.batch * shape.outputs).next_power_of_two().max(min)),
            sampling: shape.sampled_from.map(sampling_table::sampling_height),
        }
    }

    /// Committed main-trace cells over all tables (what proving time and memory follow).
    pub fn committed_cells(&self, shape: &ProofShape) -> u64 {
        let widths = table_widths(shape);
        self.all()
            .iter()
            .zip(widths)
            .map(|(&h, w)| (h * w) as u64)
            .sum()
    }

    /// In instance order (each permutation table is as tall as the table it serves).
    pub fn all(&self) -> Vec<usize> {
        let mut heights = vec![self.hash, self.hash, self.step, self.lookup];
        heights.extend(self.hidden);
        if let Some(sampling) = self.sampling {
            heights.extend([sampling, sampling]);
        }
        heights
    }
}

/// Each table's width, in instance order.
pub fn table_widths(shape: &ProofShape) -> Vec<usize> {
    let outputs = shape.outputs.max(1);
    let step = match shape.head() {
        Head::Sigmoid => step_table::NUM_STEP_COLS,
        Head::Softmax { classes } => softmax_table::softmax_width(classes, shape.hidden),
    };
    let mut widths = vec![
        permutation_table::NUM_PERM_COLS,
        hash_table::hash_width(outputs, shape.hidden),
        step,
        lookup_table::lookup_width(shape.num_params()),
    ];
    if shape.hidden {
        widths.push(hidden_table::hidden_width(shape.classes));
    }
    if shape.sampled_from.is_some() {
        widths.extend([
            permutation_table::NUM_PERM_COLS,
            sampling_table::NUM_SAMPLING_COLS,
        ]);
    }
    widths
}

/// Most periodic-column cells a run may make its verifier build for one proof: the
/// verifier builds every table's periodic columns, as tall as the table, before any
/// cryptographic check (and Plonky3 copies them once more to evaluate them), so a
/// participant's declared row count sizes this memory. 2^25 cells are 256 MiB; the largest
/// logistic shape needs 9.4 million.
pub const MAX_PERIODIC_CELLS: u64 = 1 << 25;

/// The periodic-column cells the verifier of a proof of this shape builds.
pub fn periodic_cells(shape: &ProofShape) -> u64 {
    let heights = TableHeights::for_shape(shape);
    let outputs = shape.outputs.max(1);
    let hash = hash_table::periodic::example(outputs) + shape.hidden as usize;
    let lanes = lookup_table::update_lanes(shape.num_params());
    let lookup = lookup_table::periodic::COUNT + lanes - lookup_table::LANES;
    let step = 1 + shape.hidden as usize;
    let hidden = heights.hidden.map_or(0, |h| {
        h * (hidden_table::periodic::COUNT + 2 * shape.classes)
    });
    let sampling = heights
        .sampling
        .map_or(0, |h| h * sampling_table::periodic::COUNT);
    let cells = hash * heights.hash + step * heights.step + lookup * heights.lookup;
    (cells + hidden + sampling) as u64
}

/// The tables of a statement and its claimed update, in instance order.
pub fn tables(statement: &Statement, update: &ClippedGradientSum) -> Vec<TableAir> {
    let heights = TableHeights::of(statement);
    let public = statement.layout().len;
    let shape = statement.shape();
    let (d, batch, clip) = (shape.num_features, shape.batch, statement.params.clip_norm);
    let hidden = shape.hidden.then_some(shape.outputs);
    let sampling = statement.sampling.is_some();
    let step = match shape.head() {
        Head::Sigmoid => TableAir::Step(StepTableAir::new(d, batch, clip, sampling, heights.step)),
        Head::Softmax { classes } => TableAir::SoftmaxStep(SoftmaxStepTableAir::new(
            d,
            classes,
            hidden,
            batch,
            clip,
            sampling,
            heights.step,
        )),
    };
    let mut tables = vec![
        TableAir::Permutation(PermutationTableAir::default()),
        TableAir::Hash(HashTableAir::new(statement, heights.hash, public)),
        step,
        TableAir::Lookup(LookupTableAir::new(update, shape.head())),
    ];
    if let Some(height) = heights.hidden {
        tables.push(TableAir::Hidden(HiddenTableAir::new(statement, height)));
    }
    if let Some(sampling) = &statement.sampling {
        let rows = statement.dataset.rows;
        let air = SamplingTableAir::new(
            sampling.key.elements(),
            statement.draw(),
            sampling.rate,
            rows,
        );
        tables.push(TableAir::Permutation(PermutationTableAir::on_bus(
            SAMPLING_PERMUTATION_BUS,
        )));
        tables.push(TableAir::Sampling(air));
    }
    tables
}

macro_rules! each {
    ($self:ident, $air:ident => $e:expr) => {
        match $self {
            TableAir::Permutation($air) => $e,
            TableAir::Hash($air) => $e,
            TableAir::Step($air) => $e,
            TableAir::SoftmaxStep($air) => $e,
            TableAir::Lookup($air) => $e,
            TableAir::Hidden($air) => $e,
            TableAir::Sampling($air) => $e,
        }
    };
}

impl BaseAir<Goldilocks> for TableAir {
    fn width(&self) -> usize {
        each!(self, a => BaseAir::<Goldilocks>::width(a))
    }

    fn num_periodic_columns(&self) -> usize {
        each!(self, a => BaseAir::<Goldilocks>::num_periodic_columns(a))
    }

    fn periodic_columns(&self) -> Cow<'_, [Vec<Goldilocks>]> {
        each!(self, a => BaseAir::<Goldilocks>::periodic_columns(a))
    }

    fn main_next_row_columns(&self) -> Vec<usize> {
        each!(self, a => BaseAir::<Goldilocks>::main_next_row_columns(a))
    }

    fn max_constraint_degree(&self) -> Option<usize> {
        each!(self, a => BaseAir::<Goldilocks>::max_constraint_degree(a))
    }

    fn num_public_values(&self) -> usize {
        each!(self, a => BaseAir::<Goldilocks>::num_public_values(a))
    }
}

impl<AB: InteractionBuilder<F = Goldilocks>> Air<AB> for TableAir {
    fn eval(&self, builder: &mut AB) {
        each!(self, a => a.eval(builder))
    }
}

/// Views `cells` as the `#[repr(C)]` column struct `V` of the same number of `T`s.
pub(crate) fn view<T, V>(cells: &[T]) -> &V {
    // SAFETY: `V` is a `#[repr(C)]` struct of `T`s and arrays of `T`s whose size in `T`s
    // equals `cells.len()` (callers check the width), so it has `T`'s alignment.
    let (prefix, views, suffix) = unsafe { cells.align_to::<V>() };
    assert!(prefix.is_empty() && suffix.is_empty() && views.len() == 1);
    &views[0]
}

/// Mutable [`view`].
pub(crate) fn view_mut<T, V>(cells: &mut [T]) -> &mut V {
    // SAFETY: as in `view`.
    let (prefix, views, suffix) = unsafe { cells.align_to_mut::<V>() };
    assert!(prefix.is_empty() && suffix.is_empty() && views.len() == 1);
    &mut views[0]
}

/// Views `cells` as a slice of the `#[repr(C)]` column struct `V` (its length a multiple
/// of `V`'s width in `T`s).
pub(crate) fn view_slice<T, V>(cells: &[T]) -> &[V] {
    // SAFETY: as in `view`; the length check makes every `V` whole.
    let (prefix, views, suffix) = unsafe { cells.align_to::<V>() };
    assert!(prefix.is_empty() && suffix.is_empty());
    views
}

/// Mutable [`view_slice`].
pub(crate) fn view_slice_mut<T, V>(cells: &mut [T]) -> &mut [V] {
    // SAFETY: as in `view_slice`.
    let (prefix, views, suffix) = unsafe { cells.align_to_mut::<V>() };
    assert!(prefix.is_empty() && suffix.is_empty());
    views
}

/// A constant of the fixed-point format as an expression.
pub(crate) fn constant<AB: p3_air::AirBuilder<F = Goldilocks>>(v: i64) -> AB::Expr {
    AB::Expr::from(crate::fixed::to_field(v))
}

/// A step table's periodic `ACTIVE` column: 1 on the first `batch` of `height` rows.
pub(crate) fn active_rows(batch: usize, height: usize) -> Vec<Goldilocks> {
    use p3_field::PrimeCharacteristicRing;
    let mut active = vec![Goldilocks::ZERO; height];
    active[..batch].fill(Goldilocks::ONE);
    active
}
