//! The models benchmark of issue 14: `cargo bench -p zkfed-air --bench models`.
//!
//! For each model of the grid, at batch 32 with ZK on, it prints each table's main
//! trace height × width (permutation, hash, step, lookup), prove time (trace generation +
//! proving, all cores), verify time (one rayon thread), proof size and the cell's peak
//! memory (VmHWM). Times are the best of three; each cell runs in its own child process so
//! its peak memory is its own.
//!
//! - `softmax-digits`: 64 → 10 (650 parameters) on a hospital's share of the bundled digits
//!   data (360 rows, standardized with pooled statistics, Merkle depth 9).
//! - `softmax-784`: 784 → 10 (7,850 parameters) on 1,024 synthetic rows (depth 10).
//! - `mlp-digits` and `mlp-784` are listed as not proven yet.

use std::process::Command;
use std::time::Instant;

use p3_matrix::Matrix;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_air::data::{Standardization, digits};
use zkfed_air::engine::witness::generate_traces;
use zkfed_air::fixed::ONE;
use zkfed_air::proof::{prove_traces, verify};
use zkfed_air::spec::ModelSpec;
use zkfed_air::{CommittedDataset, Model, ProofContext, RoundParams, Statement};

const REPEATS: usize = 3;
const BATCH: usize = 32;
const CELLS: [&str; 4] = ["softmax-digits", "mlp-digits", "softmax-784", "mlp-784"];
const TABLE_NAMES: [&str; 4] = ["perm", "hash", "step", "look"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--one") {
        one_cell(&args[pos + 1]);
        return;
    }
    println!("zkfed models benchmark: batch {BATCH}, ZK on, best of {REPEATS}");
    println!(
        "{:<15} {:>7}  {:<50} {:>8} {:>10} {:>10} {:>9}",
        "model",
        "params",
        "tables (height x main width)",
        "prove s",
        "verify ms",
        "proof KiB",
        "peak MiB"
    );
    let exe = std::env::current_exe().expect("own path");
    for cell in CELLS {
        let out = Command::new(&exe)
            .args(["--one", cell])
            .output()
            .expect("child");
        if !out.status.success() {
            eprintln!("{cell} failed: {}", String::from_utf8_lossy(&out.stderr));
            continue;
        }
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// The committed rows and the model of a cell.
fn workload(cell: &str) -> Option<(CommittedDataset, Model)> {
    let mut rng = StdRng::seed_from_u64(14);
    let (features, labels, spec) = match cell {
        "softmax-digits" => {
            let raw = digits();
            let stats = Standardization::fit_pooled(&raw).expect("digits statistics");
            let rows = stats.apply(&raw).expect("digits in range");
            let take = 360;
            (
                rows[..take].to_vec(),
                raw.labels[..take].to_vec(),
                ModelSpec::Softmax { classes: 10 },
            )
        }
        "softmax-784" => {
            let features = (0..1024)
                .map(|_| {
                    (0..784)
                        .map(|_| rng.random_range(-3 * ONE..=3 * ONE))
                        .collect()
                })
                .collect();
            let labels = (0..1024).map(|_| rng.random_range(0..10u8)).collect();
            (features, labels, ModelSpec::Softmax { classes: 10 })
        }
        _ => return None,
    };
    let d = features[0].len();
    let params = (0..spec.num_params(d))
        .map(|_| rng.random_range(-ONE / 16..=ONE / 16))
        .collect();
    let model = Model {
        spec,
        num_features: d,
        params,
    };
    let dataset = CommittedDataset::commit(features, labels, &mut rng).expect("dataset");
    Some((dataset, model))
}

fn one_cell(cell: &str) {
    let Some((dataset, model)) = workload(cell) else {
        println!(
            "{cell:<15} {:>7}  not proven yet (issue 14: the MLP's tables are still to be built)",
            ""
        );
        return;
    };
    let params = model.params.len();
    let statement = Statement::new(
        ProofContext {
            federation_id: [1; 32],
            round: 1,
            participant: [2; 32],
        },
        model,
        RoundParams {
            clip_norm: ONE,
            batch_size: BATCH,
        },
        dataset.commitment(),
        [3; 32],
    )
    .expect("statement");
    let mut prove_s = f64::INFINITY;
    let mut proof = Vec::new();
    let mut update = None;
    let mut dims = [(0, 0); 4];
    for _ in 0..REPEATS {
        let start = Instant::now();
        let traces = generate_traces(&statement, &dataset).expect("traces");
        proof = prove_traces(&statement, &traces, &traces.update).expect("prove");
        prove_s = prove_s.min(start.elapsed().as_secs_f64());
        dims = [
            &traces.permutation,
            &traces.hash,
            &traces.step,
            &traces.lookup,
        ]
        .map(|m| (m.height(), m.width()));
        update = Some(traces.update);
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
    let tables = TABLE_NAMES
        .iter()
        .zip(dims)
        .map(|(name, (h, w))| format!("{name} {h}x{w}"))
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "{cell:<15} {params:>7}  {tables:<50} {prove_s:>8.3} {verify_ms:>10.1} {:>10.1} {:>9.0}",
        proof.len() as f64 / 1024.0,
        peak_rss_mib(),
    );
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
