//! `zkfed-sim`: runs a federation on the bundled breast-cancer data (see the crate docs).

use std::process::ExitCode;

use clap::Parser;

fn main() -> anyhow::Result<ExitCode> {
    let options = zkfed_sim::Options::parse();
    zkfed_sim::run(&options, &mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}
