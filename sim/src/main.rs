//! `zkfed-sim`: a whole federation on one machine over real libp2p (see the crate docs).

use std::process::ExitCode;

fn main() -> anyhow::Result<ExitCode> {
    // Adversaries make the nodes warn by design; RUST_LOG=warn shows those warnings.
    zkfed_net::init_logging("error");
    let options = zkfed_sim::Options::from_command_line();
    let report = zkfed_sim::run(&options, &mut std::io::stdout())?;
    // Without proofs, accepted cheats are the point of the baseline, not a failure.
    let clean = !report.proofs || report.adversarial.all_stopped();
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
