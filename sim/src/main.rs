//! `zkfed-sim`: a whole federation on one machine over real libp2p (see the crate docs).

use std::process::ExitCode;

use clap::Parser;

fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let options = zkfed_sim::Options::parse();
    let report = zkfed_sim::run(&options, &mut std::io::stdout())?;
    let adversarial = &report.adversarial;
    let clean = adversarial.aggregated == 0 && adversarial.rejected == adversarial.submitted;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
