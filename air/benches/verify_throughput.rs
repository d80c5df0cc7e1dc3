//! Verification throughput of the multi-table engine:
//! `cargo bench -p zkfed-air --bench verify_throughput [-- --proofs N]`.
//!
//! Builds one d = 30, B = 64 workload over a 1024-row synthetic dataset (the generator
//! of `benches/prove.rs`), proves `N` (default 64) distinct statements, one per round
//! number of the proof context, keeps the proofs in memory, then verifies all of them
//! on every core with rayon (`par_iter`) and, for comparison, one after another on a
//! single-thread rayon pool. Every verification must succeed.

mod common;

use std::time::Instant;

use common::{ROWS, statement, synthetic_dataset};
use rayon::prelude::*;
use zkfed_air::proof::{prove, verify};

const D: usize = 30;
const BATCH: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.iter().position(|a| a == "--proofs").map_or(64, |pos| {
        args.get(pos + 1)
            .and_then(|v| v.parse().ok())
            .expect("--proofs takes a positive count")
    });
    assert!(n > 0, "--proofs takes a positive count");

    let (dataset, model) = synthetic_dataset(D, BATCH);
    let start = Instant::now();
    let proofs: Vec<_> = (1..=n as u64)
        .map(|round| {
            let statement = statement(&dataset, &model, BATCH, round);
            let (update, bytes) = prove(&statement, &dataset).expect("prove");
            (statement, update, bytes)
        })
        .collect();
    let prove_s = start.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();
    println!("zkfed verification throughput (engine): d={D}, B={BATCH}, {ROWS}-row dataset, ZK on");
    let sizes: Vec<usize> = proofs.iter().map(|p| p.2.len()).collect();
    let kib = |bytes: usize| bytes as f64 / 1024.0;
    println!(
        "proved {n} distinct statements (rounds 1..={n}) in {prove_s:.2} s; proofs {:.1} KiB \
         mean, {:.1} to {:.1} KiB",
        kib(sizes.iter().sum::<usize>()) / n as f64,
        kib(*sizes.iter().min().expect("n > 0")),
        kib(*sizes.iter().max().expect("n > 0")),
    );

    let verify_all = || {
        proofs.par_iter().for_each(|(statement, update, bytes)| {
            if let Err(e) = verify(statement, update, bytes) {
                panic!("round {}: proof rejected: {e}", statement.context.round);
            }
        })
    };
    // Warm-up (lazy tables, allocator), untimed.
    let (statement, update, bytes) = &proofs[0];
    verify(statement, update, bytes).expect("warm-up verification");
    let start = Instant::now();
    verify_all();
    let wall = start.elapsed().as_secs_f64();
    println!(
        "{:>8} {:>8} {:>9} {:>10}",
        "threads", "proofs", "wall s", "proofs/s"
    );
    println!("{threads:>8} {n:>8} {wall:>9.3} {:>10.1}", n as f64 / wall);

    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let start = Instant::now();
    single.install(verify_all);
    let wall_1 = start.elapsed().as_secs_f64();
    println!("{:>8} {n:>8} {wall_1:>9.3} {:>10.1}", 1, n as f64 / wall_1);
    println!("speed-up on {threads} threads: {:.2}x", wall_1 / wall);
}
