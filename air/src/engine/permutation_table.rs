//! `PermutationTable`: one Poseidon2 permutation per row, and nothing else. Each row sends
//! `(input, output digest, output capacity)` on its bus: the `permutation` bus, where the
//! hash table receives it, or the `sampling-permutation` bus of the sampling table.
//!
//! The permutation lives apart from the hash table's periodic structure for a measured
//! reason: Plonky3 0.8 bounds the degree of an AIR with periodic columns by walking every
//! constraint expression without memoisation, and Poseidon2's partial rounds make that
//! walk cost about 20 ms per proof, paid by prover and verifier alike; an AIR without
//! periodic columns uses cached degrees.

use p3_air::{Air, BaseAir, WindowAccess};
use p3_goldilocks::Goldilocks;
use p3_lookup::InteractionBuilder;

use core::borrow::Borrow;

use p3_goldilocks::{
    GOLDILOCKS_POSEIDON2_HALF_FULL_ROUNDS, GOLDILOCKS_POSEIDON2_PARTIAL_ROUNDS_12,
    GOLDILOCKS_POSEIDON2_RC_12_EXTERNAL_FINAL, GOLDILOCKS_POSEIDON2_RC_12_EXTERNAL_INITIAL,
    GOLDILOCKS_POSEIDON2_RC_12_INTERNAL, GenericPoseidon2LinearLayersGoldilocks,
};
use p3_matrix::dense::RowMajorMatrix;
use p3_poseidon2_air::{
    Poseidon2Air, Poseidon2Cols, RoundConstants, generate_trace_rows, num_cols,
};

use super::PERMUTATION_BUS;
use crate::hash::{DIGEST_ELEMS, RATE, WIDTH};

/// Goldilocks' S-box is x^7.
pub const SBOX_DEGREE: u64 = 7;
/// No committed S-box registers: `x^7` is constrained directly (degree 7, 130 columns
/// instead of 248; ARCHITECTURE.md, "Tables", says why).
pub const SBOX_REGISTERS: usize = 0;
/// Full rounds at each end.
pub const HALF_FULL_ROUNDS: usize = GOLDILOCKS_POSEIDON2_HALF_FULL_ROUNDS;
/// Partial rounds in the middle.
pub const PARTIAL_ROUNDS: usize = GOLDILOCKS_POSEIDON2_PARTIAL_ROUNDS_12;

/// Columns of one permutation.
pub type PermCols<T> =
    Poseidon2Cols<T, WIDTH, SBOX_DEGREE, SBOX_REGISTERS, HALF_FULL_ROUNDS, PARTIAL_ROUNDS>;
/// Width of the permutation columns.
pub const NUM_PERM_COLS: usize =
    num_cols::<WIDTH, SBOX_DEGREE, SBOX_REGISTERS, HALF_FULL_ROUNDS, PARTIAL_ROUNDS>();

/// The Poseidon2 AIR of one row.
pub type PermAir = Poseidon2Air<
    Goldilocks,
    GenericPoseidon2LinearLayersGoldilocks,
    WIDTH,
    SBOX_DEGREE,
    SBOX_REGISTERS,
    HALF_FULL_ROUNDS,
    PARTIAL_ROUNDS,
>;

/// The standard Goldilocks width-12 round constants.
pub fn round_constants() -> RoundConstants<Goldilocks, WIDTH, HALF_FULL_ROUNDS, PARTIAL_ROUNDS> {
    RoundConstants::new(
        GOLDILOCKS_POSEIDON2_RC_12_EXTERNAL_INITIAL,
        GOLDILOCKS_POSEIDON2_RC_12_INTERNAL,
        GOLDILOCKS_POSEIDON2_RC_12_EXTERNAL_FINAL,
    )
}

/// The permutation's output lanes the hash table reads: the digest and the capacity.
pub const OUTPUT_LANES: [usize; 2 * DIGEST_ELEMS] =
    [0, 1, 2, 3, RATE, RATE + 1, RATE + 2, RATE + 3];

/// The permutation table's trace for these inputs, one permutation per row.
pub fn generate_rows(inputs: Vec<[Goldilocks; WIDTH]>) -> RowMajorMatrix<Goldilocks> {
    generate_trace_rows::<
        Goldilocks,
        GenericPoseidon2LinearLayersGoldilocks,
        WIDTH,
        SBOX_DEGREE,
        SBOX_REGISTERS,
        HALF_FULL_ROUNDS,
        PARTIAL_ROUNDS,
    >(inputs, &round_constants(), 0)
}

/// The permutation table.
#[derive(Clone)]
pub struct PermutationTableAir {
    perm: PermAir,
    bus: &'static str,
}

impl Default for PermutationTableAir {
    /// The hash table's permutations, on [`PERMUTATION_BUS`].
    fn default() -> Self {
        Self::on_bus(PERMUTATION_BUS)
    }
}

impl PermutationTableAir {
    /// A permutation table providing on `bus` (the sampling table's has its own instance,
    /// as tall as that table).
    pub fn on_bus(bus: &'static str) -> Self {
        Self {
            perm: Poseidon2Air::new(round_constants()),
            bus,
        }
    }
}

impl BaseAir<Goldilocks> for PermutationTableAir {
    fn width(&self) -> usize {
        NUM_PERM_COLS
    }

    fn main_next_row_columns(&self) -> Vec<usize> {
        Vec::new()
    }

    fn max_constraint_degree(&self) -> Option<usize> {
        Some(7)
    }
}

impl<AB: InteractionBuilder<F = Goldilocks>> Air<AB> for PermutationTableAir {
    fn eval(&self, builder: &mut AB) {
        self.perm.eval(builder);
        let main = builder.main();
        let cols: &PermCols<AB::Var> = main.current_slice().borrow();
        let output: [AB::Var; WIDTH] = cols.ending_full_rounds[HALF_FULL_ROUNDS - 1].post;
        let message = cols
            .inputs
            .iter()
            .copied()
            .chain(OUTPUT_LANES.iter().map(|&lane| output[lane]));
        builder.push_interaction(self.bus, message, 1);
    }
}
