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
//! - `mlp-digits`: 64 → 32 → 10 (2,410 parameters) on the digits share.
//! - `mlp-784`: 784 → 128 → 10 (101,770 parameters) on the synthetic rows.

mod measure;

use std::process::Command;

use measure::{measure, peak_rss_mib};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_air::data::{Standardization, digits};
use zkfed_air::fixed::ONE;
use zkfed_air::spec::ModelSpec;
use zkfed_air::{CommittedDataset, Model, ProofContext, RoundParams, Statement};

const REPEATS: usize = 3;
const BATCH: usize = 32;
const CELLS: [&str; 4] = ["softmax-digits", "mlp-digits", "softmax-784", "mlp-784"];

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
    let (model, data) = cell.split_once('-')?;
    let (features, labels): (Vec<Vec<i64>>, Vec<u8>) = match data {
        "digits" => {
            let raw = digits();
            let stats = Standardization::fit_pooled(&raw).expect("digits statistics");
            let rows = stats.apply(&raw).expect("digits in range");
            let take = 360;
            (rows[..take].to_vec(), raw.labels[..take].to_vec())
        }
        "784" => {
            let features = (0..1024)
                .map(|_| {
                    (0..784)
                        .map(|_| rng.random_range(-3 * ONE..=3 * ONE))
                        .collect()
                })
                .collect();
            let labels = (0..1024).map(|_| rng.random_range(0..10u8)).collect();
            (features, labels)
        }
        _ => return None,
    };
    let spec = match (model, data) {
        ("softmax", _) => ModelSpec::Softmax { classes: 10 },
        ("mlp", "digits") => ModelSpec::Mlp {
            hidden: 32,
            outputs: 10,
        },
        ("mlp", _) => ModelSpec::Mlp {
            hidden: 128,
            outputs: 10,
        },
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
    let (dataset, model) = workload(cell).expect("a cell of the grid");
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
    let m = measure(&statement, &dataset, REPEATS);
    println!(
        "{cell:<15} {params:>7}  {:<50} {:>8.3} {:>10.1} {:>10.1} {:>9.0}",
        m.tables(),
        m.prove_s,
        m.verify_ms,
        m.proof_bytes as f64 / 1024.0,
        peak_rss_mib(),
    );
}
