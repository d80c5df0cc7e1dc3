//! A fuzzer on stable Rust for every decoder of untrusted bytes: structure-aware mutation
//! of valid proof bytes, wire messages, audit-log records, whole logs re-signed with the
//! run's coordinator key (so the audit checks each event), TOML configurations, CSV files
//! and model files; each input must be decoded or refused without a panic and without allocating
//! beyond its target's limit (measured by [`alloc::PeakAlloc`]).
//!
//! `cargo run --release -p zkfed-fuzz -- --runs 1000000` is the full run (BENCH.md);
//! `tests/fuzz.rs` runs 10^4 inputs per target in the test suite.

pub mod alloc;
pub mod mutate;
pub mod targets;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

pub use targets::Target;

/// What one target's run found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The target.
    pub target: &'static str,
    /// Inputs tried.
    pub runs: u64,
    /// Inputs that decoded (and checked) successfully.
    pub accepted: u64,
    /// The largest peak allocation of one input, in bytes.
    pub max_peak_bytes: usize,
    /// The largest ratio of an input's peak allocation to its length (lengths below 1 KiB
    /// count as 1 KiB, so fixed allowances do not dominate).
    pub max_bytes_per_input_byte: f64,
    /// Wall time.
    pub elapsed: Duration,
}

/// An input that broke a rule.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The target.
    pub target: &'static str,
    /// What went wrong.
    pub what: String,
    /// The input.
    pub input: Vec<u8>,
}

/// Runs `runs` mutated inputs through `target`, stopping at the first panic or the first
/// allocation over the target's limit.
pub fn fuzz(target: &mut Target, runs: u64, seed: u64) -> Result<Report, Finding> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut report = Report {
        target: target.name,
        ..Report::default()
    };
    let started = Instant::now();
    for _ in 0..runs {
        let input = mutate::mutate(&mut rng, &target.samples, &target.tokens);
        let baseline = alloc::start_measuring();
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        let peak = alloc::peak_above(baseline);
        let accepted = outcome.map_err(|panic| Finding {
            target: target.name,
            what: format!("panicked: {}", panic_message(&panic)),
            input: input.clone(),
        })?;
        let limit = (target.limit)(input.len());
        if peak > limit {
            return Err(Finding {
                target: target.name,
                what: format!(
                    "allocated {peak} bytes for a {}-byte input (limit {limit})",
                    input.len()
                ),
                input,
            });
        }
        report.runs += 1;
        report.accepted += u64::from(accepted);
        report.max_peak_bytes = report.max_peak_bytes.max(peak);
        let ratio = peak as f64 / input.len().max(1024) as f64;
        report.max_bytes_per_input_byte = report.max_bytes_per_input_byte.max(ratio);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".into())
}
