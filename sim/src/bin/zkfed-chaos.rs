//! `zkfed-chaos`: kill -9 anywhere. Runs a federation of `zkfed-coordinator` and
//! `zkfed-participant` processes, kills them with SIGKILL at seeded moments, restarts them,
//! and checks the run's record (see `zkfed_sim::chaos`). Exits 1 if a check fails, 2 if the
//! run ended before every planned kill was made.

use std::process::ExitCode;

use clap::Parser;

fn main() -> anyhow::Result<ExitCode> {
    zkfed_net::init_logging("error");
    let options = zkfed_sim::chaos::ChaosOptions::parse();
    let report = zkfed_sim::chaos::run(&options, &mut std::io::stdout())?;
    Ok(if !report.violations.is_empty() {
        ExitCode::from(1)
    } else if !report.all_kills_made() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
