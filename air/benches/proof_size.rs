//! Where a proof's bytes go: `cargo bench -p zkfed-air --bench proof_size [-- --d D --batch B]`.
//!
//! Proves one statement over the synthetic workload of `benches/prove.rs` (default
//! d = 30, B = 64) and prints the postcard size of each part of the batch proof: the
//! out-of-domain openings per table, the FRI input openings per commitment (opened rows
//! and their shared Merkle multiproof, which carries one salt per group of equal-height
//! matrices), the FRI
//! commit-phase rounds and the final polynomial. `--spans` also prints Plonky3's
//! tracing spans with their durations (where proving time goes).

mod common;

use common::{statement, synthetic_dataset};
use zkfed_air::proof::{decode_proof, prove};

fn size<T: serde::Serialize>(value: &T) -> usize {
    postcard::to_allocvec(value).expect("serialize").len()
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter().position(|a| a == name).map_or(default, |pos| {
        args.get(pos + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} takes a positive integer"))
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let d = arg(&args, "--d", 30);
    let batch = arg(&args, "--batch", 64);
    let (dataset, model) = synthetic_dataset(d, batch);
    if args.iter().any(|a| a == "--spans") {
        tracing_subscriber::fmt()
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_env_filter("debug")
            .init();
    }
    let (_, bytes) = prove(&statement(&dataset, &model, batch, 1), &dataset).expect("prove");
    let proof = decode_proof(&bytes).expect("decode");
    let kib = |n: usize| n as f64 / 1024.0;
    println!("zkfed proof size breakdown: d={d}, B={batch}, ZK on");
    println!("{:<44} {:>10}", "part", "KiB");
    println!("{:<44} {:>10.1}", "whole proof", kib(bytes.len()));
    println!(
        "{:<44} {:>10.1}",
        "commitments",
        kib(size(&proof.commitments))
    );
    for (i, instance) in proof.opened_values.instances.iter().enumerate() {
        println!(
            "{:<44} {:>10.1}",
            format!("out-of-domain openings, table {i}"),
            kib(size(instance))
        );
    }
    let (hiding_values, fri) = &proof.opening_proof;
    println!(
        "{:<44} {:>10.1}",
        "hiding PCS opened values",
        kib(size(hiding_values))
    );
    // The order in which `p3-batch-stark` opens its commitments.
    let names = ["randomization", "main", "quotient", "auxiliary (LogUp)"];
    for (i, opening) in fri.input_openings.iter().enumerate() {
        let widths: Vec<usize> = opening
            .opened_values
            .first()
            .map(|rows| rows.iter().map(Vec::len).collect())
            .unwrap_or_default();
        println!(
            "{:<44} {:>10.1}",
            format!(
                "input {} rows (widths {widths:?})",
                names.get(i).copied().unwrap_or("?")
            ),
            kib(size(&opening.opened_values))
        );
        println!(
            "{:<44} {:>10.1}",
            format!("input {} multiproof", names.get(i).copied().unwrap_or("?")),
            kib(size(&opening.opening_proof))
        );
    }
    for (i, step) in fri.commit_phase_openings.iter().enumerate() {
        println!(
            "{:<44} {:>10.1}",
            format!("FRI round {i} sibling values"),
            kib(size(&step.sibling_values))
        );
        println!(
            "{:<44} {:>10.1}",
            format!("FRI round {i} multiproof"),
            kib(size(&step.opening_proof))
        );
    }
    println!(
        "{:<44} {:>10.1}",
        "FRI final polynomial",
        kib(size(&fri.final_poly))
    );
}
