//! Proving benchmark for the multi-table engine:
//! `cargo bench -p zkfed-air --bench prove [-- --quick]`.
//!
//! For each (d, B) of the grid (1024-row synthetic datasets; `--quick` runs d = 30,
//! B = 64 only) it prints each table's main trace height × width (permutation, hash,
//! step, lookup), prove time (trace generation + proving, all cores), verify time (one
//! rayon thread), proof size, the cell's peak memory (VmHWM, read before the plain
//! proof below), and committed main cells
//! (the sum over tables of height × width) per second of proving. Times are the best
//! of three; each cell runs in its own child process so peak memory is that cell's alone.
//!
//! The last column compares that rate with a plain Plonky3 trace of the same total
//! shape, proven in the same process right after: a uni-stark AIR with trivial
//! (degree-1) constraints of height `H` = the hash table's height and width
//! `⌈Σ_tables main width × table height / H⌉`. A ratio above 1 means the engine commits
//! its cells faster than Plonky3 proves a plain trace of that many cells.
//!
//! The last column is the conjectured security in bits from
//! [`zkfed_air::config::security_estimate`] (Plonky3's estimator with the LogUp term).

mod common;
mod measure;

use std::process::Command;
use std::time::Instant;

use common::{ROWS, statement, synthetic_dataset};
use measure::{measure, peak_rss_mib};
use p3_air::{Air, AirBuilder, BaseAir, WindowAccess};
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_matrix::dense::RowMajorMatrix;
use zkfed_air::engine::TableHeights;

const GRID_D: [usize; 2] = [30, 256];
const GRID_B: [usize; 3] = [16, 64, 256];
const REPEATS: usize = 3;

/// A plain AIR of a given width: every column counts up by one per row.
struct TrivialAir {
    width: usize,
}

impl BaseAir<Goldilocks> for TrivialAir {
    fn width(&self) -> usize {
        self.width
    }
}

impl<AB: AirBuilder<F = Goldilocks>> Air<AB> for TrivialAir {
    fn eval(&self, builder: &mut AB) {
        let main = builder.main();
        let (local, next) = (main.current_slice(), main.next_slice());
        let mut t = builder.when_transition();
        for (&a, &b) in local.iter().zip(next) {
            t.assert_eq(b, a.into() + AB::Expr::ONE);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--one") {
        let d = args[pos + 1].parse().expect("d");
        let b = args[pos + 2].parse().expect("B");
        one_cell(d, b);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let cells: Vec<(usize, usize)> = if quick {
        vec![(30, 64)]
    } else {
        GRID_D
            .iter()
            .flat_map(|&d| GRID_B.iter().map(move |&b| (d, b)))
            .collect()
    };
    println!(
        "zkfed proving benchmark (engine: 4 tables, batch STARK): ZK on, {ROWS}-row datasets \
         (Merkle depth 10), best of {REPEATS}"
    );
    println!(
        "{:>4} {:>4}  {:<52} {:>8} {:>10} {:>10} {:>9} {:>12} {:>13} {:>9}",
        "d",
        "B",
        "tables (height x main width)",
        "prove s",
        "verify ms",
        "proof KiB",
        "peak MiB",
        "M cells/s",
        "vs plain AIR",
        "conj bits"
    );
    let exe = std::env::current_exe().expect("own path");
    for (d, b) in cells {
        let out = Command::new(&exe)
            .args(["--one", &d.to_string(), &b.to_string()])
            .output()
            .expect("child");
        if !out.status.success() {
            eprintln!(
                "cell d={d} B={b} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        }
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

fn one_cell(d: usize, batch: usize) {
    let (dataset, model) = synthetic_dataset(d, batch);
    let statement = statement(&dataset, &model, batch, 1);

    let m = measure(&statement, &dataset, REPEATS);
    let heights = TableHeights::of(&statement);

    // Before the plain proof below, so the peak is the engine's alone.
    let peak_mib = peak_rss_mib();
    let cells: usize = m.dims.iter().map(|&(h, w)| h * w).sum();
    let plain_height = heights.hash;
    let plain_width = cells.div_ceil(plain_height);
    let plain_s = plain_prove_seconds(plain_height, plain_width);
    let plain_cells = (plain_height * plain_width) as f64;
    let cells = cells as f64;
    let (prove_s, verify_ms) = (m.prove_s, m.verify_ms);
    let ratio = (cells / prove_s) / (plain_cells / plain_s);
    let security = zkfed_air::config::security_estimate(&statement);
    let tables = m.tables();
    println!(
        "{d:>4} {batch:>4}  {tables:<52} {prove_s:>8.3} {verify_ms:>10.1} {:>10.1} {:>9.0} {:>12.2} {:>12.2}x {:>9}",
        m.proof_bytes as f64 / 1024.0,
        peak_mib,
        cells / prove_s / 1e6,
        ratio,
        security.conjectured_bits,
    );
    println!(
        "{:>11}plain AIR: {plain_height}x{plain_width}, prove {plain_s:.3} s; \
         conjectured security limited by {} ({:.1} bits)",
        "", security.conjectured_limit, security.conjectured_limit_bits
    );
}

/// Best-of-`REPEATS` seconds to prove a [`TrivialAir`] trace of the given shape.
fn plain_prove_seconds(height: usize, width: usize) -> f64 {
    let air = TrivialAir { width };
    let values: Vec<Goldilocks> = (0..height * width)
        .map(|i| Goldilocks::from_usize(i / width + i % width))
        .collect();
    let config = zkfed_air::config::zk_config();
    let mut best = f64::INFINITY;
    for _ in 0..REPEATS {
        let trace = RowMajorMatrix::new(values.clone(), width);
        let start = Instant::now();
        p3_uni_stark::prove(&config, &air, trace, &[]).expect("plain prove");
        best = best.min(start.elapsed().as_secs_f64());
    }
    best
}
