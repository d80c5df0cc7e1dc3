//! Range checks, bits against lookups: `cargo bench -p zkfed-air --bench range_checks`.
//!
//! The same work both ways, with the project's zero-knowledge configuration and
//! `p3-batch-stark`: `ROWS` rows of `VALUES` values, each proven in `[0, 2^22)` (the
//! feature range of the hash table, eight lanes per row).
//!
//! - **bits**: one table of `VALUES × (1 + 22)` columns, each bit boolean and the value
//!   their sum (what protocol version 2's single AIR did);
//! - **lookups**: `VALUES × (1 + 2)` columns, the value two 11-bit limbs, each limb looked
//!   up on a bus in a `2^11`-row range table (value counting up from 0, a multiplicity
//!   column);
//! - **lookups4**: the same limbs against the range table laid out four values to a row
//!   (512 rows), as the engine's lookup table does.
//!
//! Prints, for each, prove time (both cores), verify time (one thread), proof bytes and
//! committed main cells; best of 5.

use std::time::Instant;

use p3_air::{Air, AirBuilder, BaseAir, WindowAccess};
use p3_batch_stark::{ProverData, StarkInstance, prove_batch, verify_batch};
use p3_field::{PrimeCharacteristicRing, PrimeField64};
use p3_goldilocks::Goldilocks;
use p3_lookup::{Count, InteractionBuilder};
use p3_matrix::dense::RowMajorMatrix;
use p3_uni_stark::StarkGenericConfig;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_air::config::zk_config;

const ROWS: usize = 1024;
const VALUES: usize = 8;
const BITS: usize = 22;
const LIMB: usize = 11;
const TABLE: usize = 1 << LIMB;
const REPEATS: usize = 5;

#[derive(Clone)]
enum RangeAir {
    /// Values and their bits.
    Bits,
    /// Values and their limbs, looked up.
    Limbs,
    /// The range table: value, multiplicity.
    Table,
    /// The range table four values to a row (as the engine lays it out): `i + 512·lane`.
    WideTable,
}

/// Rows of the wide table.
const WIDE_ROWS: usize = TABLE / 4;

impl BaseAir<Goldilocks> for RangeAir {
    fn width(&self) -> usize {
        match self {
            Self::Bits => VALUES * (1 + BITS),
            Self::Limbs => VALUES * 3,
            Self::Table => 2,
            Self::WideTable => 8,
        }
    }
}

impl<AB: InteractionBuilder<F = Goldilocks>> Air<AB> for RangeAir {
    fn eval(&self, builder: &mut AB) {
        let main = builder.main();
        let (local, next) = (main.current_slice().to_vec(), main.next_slice().to_vec());
        let spelled = |cells: &[AB::Var], base: u64| {
            cells.iter().rev().fold(AB::Expr::ZERO, |acc, &c| {
                acc * AB::Expr::from_u64(base) + c.into()
            })
        };
        match self {
            Self::Bits => {
                for v in local.chunks_exact(1 + BITS) {
                    for &bit in &v[1..] {
                        builder.assert_bool(bit);
                    }
                    builder.assert_eq(v[0], spelled(&v[1..], 2));
                }
            }
            Self::Limbs => {
                for v in local.chunks_exact(3) {
                    builder.assert_eq(v[0], spelled(&v[1..], TABLE as u64));
                    for &limb in &v[1..] {
                        builder.push_interaction("range", [limb], 1);
                    }
                }
            }
            Self::Table => {
                builder.when_first_row().assert_zero(local[0]);
                builder
                    .when_transition()
                    .assert_eq(next[0], local[0].into() + AB::Expr::ONE);
                builder.push_interaction("range", [local[0]], Count::provided(-local[1].into()));
            }
            Self::WideTable => {
                builder.when_first_row().assert_zero(local[0]);
                builder
                    .when_transition()
                    .assert_eq(next[0], local[0].into() + AB::Expr::ONE);
                for lane in 0..4 {
                    let offset = AB::Expr::from_usize(lane * WIDE_ROWS);
                    builder.assert_eq(local[2 * lane], local[0].into() + offset);
                    let mult = Count::provided(-local[2 * lane + 1].into());
                    builder.push_interaction("range", [local[2 * lane]], mult);
                }
            }
        }
    }
}

type Matrix = RowMajorMatrix<Goldilocks>;

fn traces() -> (Matrix, Matrix, Matrix, Matrix) {
    let mut rng = StdRng::seed_from_u64(22);
    let values: Vec<u64> = (0..ROWS * VALUES)
        .map(|_| rng.random_range(0..1u64 << BITS))
        .collect();
    let f = Goldilocks::from_u64;
    let mut bits = Vec::with_capacity(ROWS * VALUES * (1 + BITS));
    let mut limbs = Vec::with_capacity(ROWS * VALUES * 3);
    let mut mult = vec![0u64; TABLE];
    for &v in &values {
        bits.push(f(v));
        bits.extend((0..BITS).map(|i| f((v >> i) & 1)));
        let (lo, hi) = (v & (TABLE as u64 - 1), v >> LIMB);
        limbs.extend([f(v), f(lo), f(hi)]);
        mult[lo as usize] += 1;
        mult[hi as usize] += 1;
    }
    let table = (0..TABLE).flat_map(|i| [f(i as u64), f(mult[i])]).collect();
    let wide = (0..WIDE_ROWS)
        .flat_map(|i| (0..4).flat_map(move |lane| [i + lane * WIDE_ROWS; 2].into_iter()))
        .enumerate()
        .map(|(k, v)| if k % 2 == 0 { f(v as u64) } else { f(mult[v]) })
        .collect();
    (
        RowMajorMatrix::new(bits, VALUES * (1 + BITS)),
        RowMajorMatrix::new(limbs, VALUES * 3),
        RowMajorMatrix::new(table, 2),
        RowMajorMatrix::new(wide, 8),
    )
}

/// Proves and verifies the tables; prints the best times, the bytes and the cells.
fn measure(name: &str, airs: &[RangeAir], matrices: &[&RowMajorMatrix<Goldilocks>]) {
    let config = zk_config();
    let degrees: Vec<usize> = matrices
        .iter()
        .map(|m| m.values.len() / m.width)
        .map(|h| h.trailing_zeros() as usize + config.is_zk())
        .collect();
    let publics = vec![Vec::new(); airs.len()];
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let (mut prove_s, mut verify_ms, mut bytes) = (f64::INFINITY, f64::INFINITY, 0);
    for _ in 0..REPEATS {
        let start = Instant::now();
        let data = ProverData::from_airs_and_degrees(&config, airs, &degrees).expect("data");
        let instances = StarkInstance::new_multiple(airs, matrices, &publics);
        let proof = prove_batch(&config, &instances, &data).expect("prove");
        prove_s = prove_s.min(start.elapsed().as_secs_f64());
        bytes = postcard::to_allocvec(&proof).expect("encode").len();
        let start = Instant::now();
        single.install(|| {
            let common = ProverData::from_airs_and_degrees(&config, airs, &degrees)
                .expect("data")
                .common;
            verify_batch(&config, airs, &proof, &publics, &common).expect("verify")
        });
        verify_ms = verify_ms.min(start.elapsed().as_secs_f64() * 1e3);
    }
    let cells: usize = matrices.iter().map(|m| m.values.len()).sum();
    println!(
        "{name:>8} {:>28} {prove_s:>9.3} {verify_ms:>10.1} {:>10.1} {cells:>10}",
        matrices
            .iter()
            .map(|m| format!("{}x{}", m.values.len() / m.width, m.width))
            .collect::<Vec<_>>()
            .join(" + "),
        bytes as f64 / 1024.0,
    );
}

fn main() {
    let (bits, limbs, table, wide) = traces();
    assert!(
        limbs
            .values
            .iter()
            .all(|v| v.as_canonical_u64() < 1 << BITS)
    );
    println!(
        "range checks of {} values in [0, 2^{BITS}), {VALUES} per row, ZK on, best of {REPEATS}",
        ROWS * VALUES
    );
    println!(
        "{:>8} {:>28} {:>9} {:>10} {:>10} {:>10}",
        "method", "tables (height x width)", "prove s", "verify ms", "proof KiB", "cells"
    );
    measure("bits", &[RangeAir::Bits], &[&bits]);
    measure(
        "lookups",
        &[RangeAir::Limbs, RangeAir::Table],
        &[&limbs, &table],
    );
    let wide_airs = [RangeAir::Limbs, RangeAir::WideTable];
    measure("lookups4", &wide_airs, &[&limbs, &wide]);
}
