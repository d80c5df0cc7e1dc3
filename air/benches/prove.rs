//! Proving benchmark: `cargo bench -p zkfed-air --bench prove [-- --quick]`.
//!
//! For each (d, B) of the grid it prints trace height × width, prove time (all cores),
//! verify time (one thread), proof bytes, the cell's peak memory, and the ratio of this
//! AIR's proven cells per second to a plain Plonky3 AIR of the same shape with trivial
//! (degree-1) constraints, proven in the same process right after. Each cell runs in its
//! own child process so peak memory is that cell's alone.

use std::process::Command;
use std::time::Instant;

use p3_air::{Air, AirBuilder, BaseAir, WindowAccess};
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_matrix::dense::RowMajorMatrix;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_air::fixed::ONE;
use zkfed_air::generation::generate_trace;
use zkfed_air::proof::prove_trace;
use zkfed_air::{CommittedDataset, Model, ProofContext, RoundParams, Statement, verify};

const GRID_D: [usize; 2] = [30, 256];
const GRID_B: [usize; 3] = [16, 64, 256];
const ROWS: usize = 1024;
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
        "zkfed proving benchmark: ZK on, {ROWS}-row datasets (Merkle depth 10), best of {REPEATS}"
    );
    println!(
        "{:>4} {:>4} {:>16} {:>9} {:>10} {:>11} {:>9} {:>13} {:>13}",
        "d",
        "B",
        "height x width",
        "prove s",
        "verify ms",
        "proof KiB",
        "peak MiB",
        "cells/s (M)",
        "vs plain AIR"
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
    let mut rng = StdRng::seed_from_u64(d as u64 * 1000 + batch as u64);
    let features: Vec<Vec<i64>> = (0..ROWS)
        .map(|_| {
            (0..d)
                .map(|_| rng.random_range(-3 * ONE..=3 * ONE))
                .collect()
        })
        .collect();
    let labels = (0..ROWS).map(|_| rng.random_range(0..=1u8)).collect();
    let model = Model {
        weights: (0..d)
            .map(|_| rng.random_range(-ONE / 4..=ONE / 4))
            .collect(),
        bias: 0,
    };
    let dataset = CommittedDataset::commit(features, labels, &mut rng).expect("dataset");
    let context = ProofContext {
        federation_id: [1; 32],
        round: 1,
        participant: [2; 32],
    };
    let params = RoundParams {
        clip_norm: ONE,
        batch_size: batch,
    };
    let statement =
        Statement::new(context, model, params, dataset.commitment(), [3; 32]).expect("statement");

    let mut prove_s = f64::INFINITY;
    let mut proof = Vec::new();
    let mut update = None;
    let (mut height, mut width) = (0, 0);
    for _ in 0..REPEATS {
        let start = Instant::now();
        let (trace, u) = generate_trace(&statement, &dataset).expect("trace");
        height = trace.values.len() / trace.width;
        width = trace.width;
        proof = prove_trace(&statement, trace, &u).expect("prove");
        prove_s = prove_s.min(start.elapsed().as_secs_f64());
        update = Some(u);
    }
    let update = update.expect("proved");

    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let mut verify_ms = f64::INFINITY;
    for _ in 0..REPEATS {
        let start = Instant::now();
        single
            .install(|| verify(&statement, &update, &proof))
            .expect("verify");
        verify_ms = verify_ms.min(start.elapsed().as_secs_f64() * 1e3);
    }

    let plain_s = plain_prove_seconds(height, width);
    let cells = (height * width) as f64;
    let ratio = (cells / prove_s) / (cells / plain_s);
    println!(
        "{d:>4} {batch:>4} {:>16} {prove_s:>9.3} {verify_ms:>10.1} {:>11.1} {:>9.0} {:>13.2} {:>12.2}x",
        format!("{height} x {width}"),
        proof.len() as f64 / 1024.0,
        peak_rss_mib(),
        cells / prove_s / 1e6,
        ratio,
    );
}

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

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
