//! Timing one statement's proof, shared by the proving benchmarks.

use std::time::Instant;

use p3_matrix::Matrix;
use zkfed_air::engine::TableHeights;
use zkfed_air::engine::witness::generate_traces;
use zkfed_air::proof::{prove_traces, verify};
use zkfed_air::{CommittedDataset, Statement};

/// Short names of the tables, in instance order (an MLP's hidden table fifth, hidden
/// sampling's two tables last).
pub fn table_names(statement: &Statement) -> Vec<&'static str> {
    let shape = statement.shape();
    let mut names = vec!["perm", "hash", "step", "look"];
    if shape.hidden {
        names.push("hidden");
    }
    if shape.sampled_from.is_some() {
        names.extend(["sperm", "sample"]);
    }
    names
}

/// What proving and verifying one statement took: the best of the repeats.
pub struct Measured {
    /// Trace generation and proving, all cores.
    pub prove_s: f64,
    /// Verification on one rayon thread.
    pub verify_ms: f64,
    /// The proof's bytes.
    pub proof_bytes: usize,
    /// Each table's main trace (height, width), in instance order.
    pub dims: Vec<(usize, usize)>,
    /// Each table's short name, in instance order.
    pub names: Vec<&'static str>,
}

impl Measured {
    /// `perm HxW hash HxW step HxW look HxW`.
    pub fn tables(&self) -> String {
        self.names
            .iter()
            .zip(&self.dims)
            .map(|(name, (h, w))| format!("{name} {h}x{w}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Proves `statement` over `dataset` `repeats` times and verifies the proof as often.
pub fn measure(statement: &Statement, dataset: &CommittedDataset, repeats: usize) -> Measured {
    let mut prove_s = f64::INFINITY;
    let mut proof = Vec::new();
    let mut update = None;
    let mut dims = Vec::new();
    for _ in 0..repeats {
        let start = Instant::now();
        let traces = generate_traces(statement, dataset).expect("traces");
        proof = prove_traces(statement, &traces, &traces.update).expect("prove");
        prove_s = prove_s.min(start.elapsed().as_secs_f64());
        dims = traces
            .matrices()
            .into_iter()
            .map(|m| (m.height(), m.width()))
            .collect();
        update = Some(traces.update);
    }
    let update = update.expect("proved");
    assert_eq!(
        dims.iter().map(|&(h, _)| h).collect::<Vec<_>>(),
        TableHeights::of(statement).all(),
        "trace heights differ from TableHeights"
    );
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let mut verify_ms = f64::INFINITY;
    for _ in 0..repeats {
        let start = Instant::now();
        single
            .install(|| verify(statement, &update, &proof))
            .expect("verify");
        verify_ms = verify_ms.min(start.elapsed().as_secs_f64() * 1e3);
    }
    Measured {
        prove_s,
        verify_ms,
        proof_bytes: proof.len(),
        dims,
        names: table_names(statement),
    }
}

/// The process's peak resident memory (VmHWM) in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
