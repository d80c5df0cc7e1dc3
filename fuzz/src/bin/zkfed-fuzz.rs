//! `zkfed-fuzz`: runs every decoder of untrusted bytes on mutated inputs (see the crate docs).

use anyhow::bail;
use clap::Parser;

#[global_allocator]
static ALLOCATOR: zkfed_fuzz::alloc::PeakAlloc = zkfed_fuzz::alloc::PeakAlloc;

/// Fuzz zkfed's decoders: proofs, wire messages, audit-log records, re-signed logs, configs,
/// CSV, model files.
#[derive(Parser)]
struct Args {
    /// Inputs per target.
    #[arg(long, default_value_t = 1_000_000)]
    runs: u64,
    /// Seed of the mutations (a run is reproducible from it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Only this target (wire, proof, audit-log, audit-resigned, config, csv, model-file).
    #[arg(long)]
    target: Option<String>,
    /// Where a failing input is written.
    #[arg(long, default_value = "fuzz-finding.bin")]
    finding: std::path::PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The decoders' own panics are caught and reported below; keep stderr for that.
    std::panic::set_hook(Box::new(|_| {}));
    let scratch = std::env::temp_dir().join(format!("zkfed-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let mut targets = zkfed_fuzz::targets::all(&scratch)?;
    targets.retain(|t| args.target.as_deref().is_none_or(|name| name == t.name));
    if targets.is_empty() {
        bail!("no target named {:?}", args.target);
    }
    println!(
        "| target | inputs | accepted | max peak alloc | max alloc / input byte | seconds | inputs/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for target in &mut targets {
        match zkfed_fuzz::fuzz(target, args.runs, args.seed) {
            Ok(r) => println!(
                "| {} | {} | {} | {:.1} KiB | {:.1} | {:.1} | {:.0} |",
                r.target,
                r.runs,
                r.accepted,
                r.max_peak_bytes as f64 / 1024.0,
                r.max_bytes_per_input_byte,
                r.elapsed.as_secs_f64(),
                r.runs as f64 / r.elapsed.as_secs_f64()
            ),
            Err(finding) => {
                std::fs::write(&args.finding, &finding.input)?;
                bail!(
                    "{}: {} (input written to {})",
                    finding.target,
                    finding.what,
                    args.finding.display()
                );
            }
        }
    }
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}
