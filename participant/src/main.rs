//! `zkfed-participant`: takes part in a federation from a hospital's machine, prints its
//! peer id for the allow-list, or exports a shard of the bundled data as CSV.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use zkfed_net::EventLog;
use zkfed_participant::config::RawConfig;

#[derive(Parser)]
#[command(version, about = "zkfed participant: proves every update it sends")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Take part in a run (a TOML file, or the three flags).
    Run {
        /// The configuration file.
        #[arg(long, conflicts_with_all = ["coordinator", "dataset", "state"])]
        config: Option<PathBuf>,
        /// The coordinator's multiaddr ending in /p2p/<peer id>.
        #[arg(long, requires_all = ["dataset", "state"])]
        coordinator: Option<String>,
        /// The CSV of this participant's rows.
        #[arg(long)]
        dataset: Option<PathBuf>,
        /// The state directory (node key, salts).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Also write the node's events (proofs made, verdicts) here as JSON lines.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Smallest batch this node proves over (with the three flags).
        #[arg(long, default_value_t = zkfed_participant::config::default_min_batch_size())]
        min_batch_size: usize,
        /// Leave data rows whose standardized values are out of the proof's range (±32
        /// standard deviations) out of the commitment, logging how many, instead of
        /// refusing to start (also with --config: same as `skip_out_of_range = true`).
        #[arg(long)]
        skip_out_of_range: bool,
        /// Take part only in this federation (64 hex digits; with the three flags).
        #[arg(long)]
        federation: Option<String>,
        /// Take part in private runs only (also with --config: `private_only = true`).
        #[arg(long)]
        private_only: bool,
        /// This node's own privacy budget ε (also with --config, where the lower of the
        /// flag and `max_epsilon` holds).
        #[arg(long)]
        max_epsilon: Option<f64>,
    },
    /// Print this node's peer id (creating its key on first use), for the allow-list.
    PeerId {
        /// The state directory holding `node.key`.
        #[arg(long)]
        state: PathBuf,
    },
    /// Write shard `shard` of `of` of the bundled breast-cancer data as CSV.
    ExportBundled {
        /// Which shard (from 0).
        #[arg(long)]
        shard: usize,
        /// How many shards.
        #[arg(long)]
        of: usize,
        /// Where to write the CSV.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    zkfed_net::init_logging("info");
    match Cli::parse().command {
        Command::Run {
            config,
            coordinator,
            dataset,
            state,
            events,
            min_batch_size,
            skip_out_of_range,
            federation,
            private_only,
            max_epsilon,
        } => {
            let mut raw = match (config, coordinator, dataset, state) {
                (Some(path), ..) => RawConfig::load(&path)?,
                (None, Some(coordinator), Some(dataset), Some(state_dir)) => RawConfig {
                    coordinator,
                    dataset,
                    state_dir,
                    schema: None,
                    min_batch_size,
                    max_attempts: zkfed_participant::config::default_max_attempts(),
                    skip_out_of_range,
                    federation_id: federation,
                    max_trace_cells: zkfed_participant::config::default_max_trace_cells(),
                    private_only,
                    max_epsilon,
                },
                _ => anyhow::bail!("give --config, or --coordinator, --dataset and --state"),
            };
            // The flag only ever turns skipping on: a file that asks for it keeps it.
            raw.skip_out_of_range |= skip_out_of_range;
            // So do the privacy flags: they only ever tighten the file's policy.
            raw.private_only |= private_only;
            raw.max_epsilon = match (raw.max_epsilon, max_epsilon) {
                // `f64::min` would drop a NaN, which `resolve` must see and refuse.
                (Some(file), Some(flag)) if file.is_nan() || flag.is_nan() => Some(f64::NAN),
                (Some(file), Some(flag)) => Some(file.min(flag)),
                (file, flag) => file.or(flag),
            };
            let config = raw.resolve()?;
            let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
            let ran = runtime.block_on(EventLog::around(events.as_deref(), move |observer| {
                let prover = std::sync::Arc::new(zkfed_participant::participation::StarkProver);
                zkfed_participant::participation::run(config, observer, prover, async {
                    let _ = tokio::signal::ctrl_c().await;
                })
            }));
            let outcome = ran.context("the --events file")??;
            if let Some(outcome) = outcome {
                println!(
                    "run finished after {} rounds; {} of this node's updates accepted",
                    outcome.rounds, outcome.accepted
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::PeerId { state } => {
            println!("{}", zkfed_net::peer_id(&state)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::ExportBundled { shard, of, out } => {
            anyhow::ensure!(of >= 1 && shard < of, "--shard must be below --of");
            let csv = zkfed_participant::bundled_shard_csv(shard, of);
            std::fs::write(&out, csv).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
