//! `zkfed-coordinator`: runs a federation's coordinator, prints its peer id, writes a
//! starter configuration, revokes a participant's key on a running coordinator, audits a
//! state directory offline, exports and evaluates the trained model, or accounts for
//! differential privacy (`dp epsilon`, `dp plan`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use libp2p::PeerId;
use zkfed_net::EventLog;

#[derive(Parser)]
#[command(
    version,
    about = "zkfed coordinator: verifies every update before aggregating it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the coordinator with a TOML configuration.
    Run {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Also write the node's events (verdicts, round closes) here as JSON lines.
        #[arg(long)]
        events: Option<PathBuf>,
    },
    /// Print this node's peer id (creating its key on first use).
    PeerId {
        /// The state directory holding `node.key`.
        #[arg(long)]
        state: PathBuf,
    },
    /// Write a starter configuration for the bundled breast-cancer data.
    Init {
        /// Where to write the configuration.
        #[arg(long)]
        out: PathBuf,
        /// State directory the configuration names.
        #[arg(long)]
        state: PathBuf,
        /// Allowed participant peer ids.
        #[arg(long, num_args = 1..)]
        allow: Vec<String>,
        /// Listen address.
        #[arg(long, default_value = "/ip4/0.0.0.0/tcp/7000")]
        listen: String,
        /// Rounds.
        #[arg(long, default_value_t = 20)]
        rounds: u64,
        /// Quorum (defaults to every allowed peer).
        #[arg(long)]
        quorum: Option<usize>,
    },
    /// Revoke a participant's key (a compromised key, say) on the running coordinator, or at
    /// its next start if it is down: the revocation is recorded in the signed audit log
    /// before it takes effect. Exits 0 once revoked, 1 if refused (a peer already revoked,
    /// say), 3 if no running coordinator applied it within `--wait` seconds (it stays filed).
    Revoke {
        /// The coordinator's configuration file (its allow-list and state directory).
        #[arg(long)]
        config: PathBuf,
        /// The peer id to revoke; it must be on the configuration's allow-list.
        #[arg(long)]
        peer: String,
        /// Why, recorded in the signed log (one line, at most 512 bytes).
        #[arg(long)]
        reason: String,
        /// Seconds to wait for the running coordinator to apply it (0: file it and return).
        #[arg(long, default_value_t = 10)]
        wait: u64,
    },
    /// Offline audit of a state directory.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The trained model: export it from a state directory, or evaluate a model file.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Differential-privacy accounting of DP-SGD rounds (the Poisson-subsampled Gaussian
    /// mechanism, Rényi DP, add/remove adjacency).
    Dp {
        #[command(subcommand)]
        command: DpCommand,
    },
}

#[derive(Subcommand)]
enum DpCommand {
    /// Print ε after `--rounds` rounds of noise multiplier `z` and sampling rate `q`.
    Epsilon {
        /// Noise standard deviation over the clip norm, `z`.
        #[arg(long)]
        noise_multiplier: f64,
        /// Probability that each row is in a round's batch, `q`.
        #[arg(long)]
        sampling_rate: f64,
        /// Rounds.
        #[arg(long)]
        rounds: u64,
        /// δ.
        #[arg(long, default_value_t = 1e-5)]
        delta: f64,
    },
    /// Print the smallest noise multiplier whose `--rounds` rounds stay within
    /// `(--epsilon, --delta)`.
    Plan {
        /// The target ε.
        #[arg(long)]
        epsilon: f64,
        /// δ.
        #[arg(long, default_value_t = 1e-5)]
        delta: f64,
        /// Rounds.
        #[arg(long)]
        rounds: u64,
        /// Probability that each row is in a round's batch, `q`.
        #[arg(long)]
        sampling_rate: f64,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Write the run's current model (its last aggregate) as a model file: the spec, the
    /// parameters in fixed point and as floats, the schema, the standardization, the
    /// rounds and the digest.
    Export {
        /// The coordinator's state directory.
        #[arg(long)]
        state: PathBuf,
        /// Where to write the model file (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Accuracy, per-class confusion and log loss of a model file on a CSV holding the
    /// model's feature and label columns (standardized with the file's statistics).
    Evaluate {
        /// The model file (`model export` writes one; so does every participant when a run
        /// ends).
        #[arg(long)]
        model: PathBuf,
        /// The labelled rows.
        #[arg(long)]
        dataset: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Re-verify every accepted proof and recompute every aggregate.
    Verify {
        /// The coordinator's state directory.
        #[arg(long)]
        state: PathBuf,
        /// The coordinator peer id the log must be signed by (required: a log checks out
        /// only against a signer you already know).
        #[arg(long, required_unless_present = "unchecked_signer")]
        coordinator: Option<String>,
        /// Audit against whatever key the log names itself, and say so loudly: only the log's
        /// internal consistency is then checked, not who wrote it.
        #[arg(long)]
        unchecked_signer: bool,
        /// A private run's noise key (an escrowed copy of the coordinator's `noise.key`):
        /// then every aggregate is recomputed with its noise, bit for bit. Without it a
        /// private run's noise is not checked (README, "Privacy").
        #[arg(long)]
        noise_key: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    zkfed_net::init_logging("info");
    match Cli::parse().command {
        Command::Run { config, events } => {
            let config = zkfed_coordinator::config::RawConfig::load(&config)?.resolve()?;
            let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
            let ran = runtime.block_on(EventLog::around(events.as_deref(), move |observer| {
                let verifier = std::sync::Arc::new(zkfed_coordinator::event_loop::StarkVerifier);
                zkfed_coordinator::event_loop::run(config, observer, verifier, async {
                    let _ = tokio::signal::ctrl_c().await;
                })
            }));
            ran.context("the --events file")??;
            Ok(ExitCode::SUCCESS)
        }
        Command::PeerId { state } => {
            println!("{}", zkfed_net::peer_id(&state)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Init {
            out,
            state,
            allow,
            listen,
            rounds,
            quorum,
        } => {
            let config =
                zkfed_coordinator::starter::bundled_config(state, allow, listen, rounds, quorum);
            std::fs::write(&out, toml::to_string_pretty(&config)?)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Revoke {
            config,
            peer,
            reason,
            wait,
        } => revoke(&config, &peer, &reason, wait),
        Command::Model {
            command: ModelCommand::Export { state, out },
        } => {
            use zkfed_coordinator::export::export_model;
            let file = export_model(&state.join("state.redb"))?;
            // Mode 0600 like the rest of the state: the model is the consortium's.
            zkfed_net::write_durably(&out, &file.to_json(), true)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {}: {}, {} rounds, digest {}",
                out.display(),
                file.spec,
                file.rounds,
                file.digest
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Model {
            command: ModelCommand::Evaluate { model, dataset },
        } => {
            use zkfed_coordinator::export::{evaluate_model_file, evaluation_report};
            let (file, evaluation, left_out) = evaluate_model_file(&model, &dataset)?;
            print!("{}", evaluation_report(&file, &evaluation, left_out));
            Ok(ExitCode::SUCCESS)
        }
        Command::Dp {
            command:
                DpCommand::Epsilon {
                    noise_multiplier,
                    sampling_rate,
                    rounds,
                    delta,
                },
        } => {
            use zkfed_aggregation::accountant::epsilon;
            let g = epsilon(noise_multiplier, sampling_rate, rounds, delta)?;
            println!("{:.4}", g.epsilon);
            Ok(ExitCode::SUCCESS)
        }
        Command::Dp {
            command:
                DpCommand::Plan {
                    epsilon,
                    delta,
                    rounds,
                    sampling_rate,
                },
        } => {
            use zkfed_aggregation::accountant::smallest_noise_multiplier;
            let z = smallest_noise_multiplier(epsilon, delta, rounds, sampling_rate)?;
            println!("{z:.4}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    state,
                    coordinator,
                    unchecked_signer,
                    noise_key,
                },
        } => {
            let noise = noise_key
                .map(|path| zkfed_coordinator::privacy::NoiseKey::load(&path))
                .transpose()?;
            if coordinator.is_none() && unchecked_signer {
                let (bold, plain) = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                    ("\x1b[1m", "\x1b[0m")
                } else {
                    ("", "")
                };
                println!(
                    "{bold}WARNING: the coordinator's identity was NOT checked: this audit proves \
                     the log consistent with the key it names itself, not who signed it{plain}"
                );
            }
            let expected = coordinator
                .map(|c| c.parse())
                .transpose()
                .context("--coordinator")?;
            match zkfed_coordinator::audit::audit_store(
                &state.join("state.redb"),
                expected.as_ref(),
                noise.as_ref(),
            )? {
                Ok(summary) => {
                    println!(
                        "audit passed: {} records signed by {}, {} rounds, {} proofs re-verified, {} rejections on record, {} keys revoked",
                        summary.records,
                        summary.coordinator,
                        summary.rounds,
                        summary.proofs_verified,
                        summary.rejections,
                        summary.revocations
                    );
                    if summary.unchecked_noise > 0 {
                        println!(
                            "noise NOT checked on {} private aggregates (no --noise-key): their \
                             un-noised sums, ε and the budget were",
                            summary.unchecked_noise
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(divergence) => {
                    println!("audit FAILED at {divergence}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

/// Files a revocation request in the state directory and waits for its outcome.
fn revoke(config: &Path, peer: &str, reason: &str, wait: u64) -> anyhow::Result<ExitCode> {
    use zkfed_coordinator::revocation;
    let raw = zkfed_coordinator::config::RawConfig::load(config)?;
    let peer: PeerId = peer
        .parse()
        .map_err(|_| anyhow::anyhow!("--peer `{peer}` is not a peer id"))?;
    let listed = raw
        .allow
        .iter()
        .any(|a| a.parse::<PeerId>().ok() == Some(peer));
    anyhow::ensure!(
        listed,
        "{peer} is not on the allow-list of {}: there is nothing to revoke",
        config.display()
    );
    let now = zkfed_coordinator::events::unix_ms();
    let (path, request) = revocation::file_request(&raw.state_dir, &peer, reason, now)?;
    println!("filed {}", path.display());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        if let Some(outcome) = revocation::read_outcome(&raw.state_dir, &peer, request.filed_at_ms)?
        {
            println!("{}", outcome.message);
            return Ok(ExitCode::from(if outcome.revoked { 0 } else { 1 }));
        }
        if std::time::Instant::now() >= until {
            println!(
                "not applied yet: the coordinator applies it within a second of running, or \
                 when it next starts; its outcome will be in {}",
                revocation::outcome_path(&raw.state_dir, &peer).display()
            );
            return Ok(ExitCode::from(3));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
