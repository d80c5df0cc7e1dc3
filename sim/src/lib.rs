//! The simulation harness: a whole federation on one machine over real libp2p.
//!
//! `run` starts a coordinator and the participants as tasks of one process, each its own
//! libp2p swarm on 127.0.0.1, using the same coordinator and participant libraries as the
//! binaries (no shortcut around the network or the verifier). Rows are split IID or non-IID
//! across hospitals; adversarial participants mount the over-the-wire cheats. Afterwards the
//! per-round models and verdicts are read back from the coordinator's own signed log, and a
//! report compares test accuracy with centralized training of the same fixed-point model.
//! [`chaos`] (the `zkfed-chaos` binary) runs the node binaries as processes and kills them
//! with SIGKILL across a run, then checks the run's record.

pub mod adversary;
mod baselines;
pub mod chaos;
mod data;
mod federation;
pub mod flood;
pub mod partition;
pub mod processes;
mod progress;
pub mod report;
mod summary;
pub mod synthetic;
pub mod trusting;

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, ensure};
use clap::Parser;
use zkfed_air::Model;
use zkfed_coordinator::events::AuditEvent;
use zkfed_protocol::model_file::ModelFile;

use crate::adversary::Adversary;
use crate::baselines::{centralized, evaluate};
use crate::data::{NodeSpec, Prepared, adversaries, node_specs, prepare, write_shard};
use crate::federation::{Observed, Setting, federate, peak_memory};
use crate::partition::Partition;
use crate::processes::Binaries;
use crate::report::{Report, RoundRow};
use crate::summary::{adversarial_summary, rows_of, summarize};

/// Command-line options of `zkfed-sim`.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "Simulate a zkfed federation over real libp2p on 127.0.0.1"
)]
pub struct Options {
    /// Honest hospitals.
    #[arg(long, default_value_t = 4)]
    pub participants: usize,
    /// Training rounds.
    #[arg(long, default_value_t = 20)]
    pub rounds: u64,
    /// `iid` or `dirichlet:ALPHA` (label skew; smaller ALPHA is more skewed).
    #[arg(long, default_value = "dirichlet:0.5")]
    pub partition: Partition,
    /// Adversaries: `KIND[:COUNT]`, KIND `cycle` (every tampering attack in turn), an attack
    /// name, `stranger` (not on the allow-list) or `flood` (many submissions at once);
    /// repeatable. `none` for none.
    #[arg(long, default_value = "cycle:1")]
    pub adversary: Vec<String>,
    /// Examples per hospital per round (lowered to the smallest shard if needed).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Per-example L2 clip norm C.
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Learning rate.
    #[arg(long, default_value_t = 1.0)]
    pub learning_rate: f64,
    /// How the coordinator aggregates accepted updates: `NAME[:KEY=VALUE,...]` with NAME
    /// `fedavg`, `fedavgm`, `fedadagrad`, `fedadam`, `fedyogi`, `median`, `trimmed-mean`,
    /// `krum` or `multi-krum` (README, "Aggregation strategies"). The centralized baseline
    /// stays plain SGD.
    #[arg(long, default_value = "fedavg")]
    pub strategy: String,
    /// Differential privacy: the noise multiplier `z` (noise of standard deviation `z·C`
    /// on the sum of the accepted updates). With it the batches are hidden Poisson samples
    /// at `--sampling-rate` and the run stops at `--dp-epsilon` (README, "Privacy").
    #[arg(long, requires_all = ["sampling_rate", "dp_epsilon"])]
    pub noise_multiplier: Option<f64>,
    /// A private run's sampling rate: each committed row's probability of being in a
    /// round's batch.
    #[arg(long, requires = "noise_multiplier")]
    pub sampling_rate: Option<f64>,
    /// A private run's budget ε: no round starts that would spend more.
    #[arg(long, requires = "noise_multiplier")]
    pub dp_epsilon: Option<f64>,
    /// A private run's δ.
    #[arg(long, default_value_t = 1e-5)]
    pub dp_delta: f64,
    /// The model: `logistic` (a 0/1 label), `softmax` or `mlp:H` (`H` hidden units);
    /// `auto` picks logistic for a 0/1 label and softmax for more classes.
    #[arg(long, default_value = "auto")]
    pub model: String,
    /// The data: `breast-cancer` (bundled), `digits` (bundled, 10 classes; then the
    /// defaults are 40 rounds, learning rate 4 (2 for an MLP), batch 32) or a CSV file
    /// (needs --label; `./digits` for a file of that name).
    #[arg(long, default_value = "breast-cancer", value_parser = DatasetChoice::parse)]
    pub dataset: DatasetChoice,
    /// The label column of a CSV --dataset (integers 0 to K - 1, K at most 64); every
    /// other column is a feature.
    #[arg(long)]
    pub label: Option<String>,
    /// Generated data instead: `ROWSxFEATURES` (Gaussian features, logistic labels).
    #[arg(long, conflicts_with = "dataset", value_parser = synthetic::parse_shape)]
    pub synthetic: Option<(usize, usize)>,
    /// Seed for the split, the test hold-out and the centralized baseline.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where the report, the node state directories and the shards go.
    #[arg(long, default_value = "sim-out")]
    pub out: PathBuf,
    /// Run only the trusting baseline: no proving, no verifying (for the overhead figure).
    #[arg(long)]
    pub no_proofs: bool,
    /// Run the coordinator and the honest hospitals as separate OS processes (the
    /// `zkfed-coordinator` and `zkfed-participant` binaries) instead of tasks. Adversaries
    /// and the no-proofs baseline stay tasks: the shipped binaries cannot cheat or skip proofs.
    #[arg(long, conflicts_with = "no_proofs")]
    pub processes: bool,
    /// Hide the progress bar (for logs and tests).
    #[arg(long)]
    pub quiet: bool,
}

/// The data a simulation runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetChoice {
    /// The bundled breast-cancer data (569 rows, 30 features, 0/1 label).
    BreastCancer,
    /// The bundled handwritten digits (1,797 rows, 64 pixels, 10 classes).
    Digits,
    /// A CSV file.
    File(PathBuf),
}

impl DatasetChoice {
    /// `breast-cancer`, `digits`, or a path.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "breast-cancer" => Self::BreastCancer,
            "digits" => Self::Digits,
            "" => return Err("an empty dataset name".into()),
            path => Self::File(PathBuf::from(path)),
        })
    }
}

impl Options {
    /// The coordinator's `[privacy]` table, if the run is private.
    pub fn privacy(&self) -> Option<zkfed_coordinator::config::RawPrivacy> {
        Some(zkfed_coordinator::config::RawPrivacy {
            noise_multiplier: self.noise_multiplier?,
            sampling_rate: self.sampling_rate?,
            epsilon: self.dp_epsilon?,
            delta: self.dp_delta,
        })
    }

    /// The command line's options, with the defaults that depend on the dataset.
    pub fn from_command_line() -> Self {
        Self::parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the program name first), then applies the digits defaults to every
    /// option the arguments leave at its default.
    pub fn parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
        let matches = Self::command().try_get_matches_from(args)?;
        let mut options = Self::from_arg_matches(&matches)?;
        if options.dataset == DatasetChoice::Digits {
            let defaulted = |id: &str| matches.value_source(id) == Some(ValueSource::DefaultValue);
            if defaulted("rounds") {
                options.rounds = 40;
            }
            if defaulted("learning_rate") {
                // An MLP's steps on digits oscillate at 4 (65% at one round of a run).
                let mlp = options.model.starts_with("mlp:");
                options.learning_rate = if mlp { 2.0 } else { 4.0 };
            }
            if defaulted("batch") {
                options.batch = 32;
            }
        }
        Ok(options)
    }
}

/// Runs the simulation, printing progress and the table to `out`; returns the report.
pub fn run(options: &Options, out: &mut impl Write) -> anyhow::Result<Report> {
    let started = Instant::now();
    ensure!(
        options.participants >= 1,
        "need at least one honest participant"
    );
    ensure!(options.rounds >= 1, "need at least one round");
    let adversaries = adversaries(&options.adversary)?;
    check_strategy(options, &adversaries)?;
    let binaries = options.processes.then(Binaries::find).transpose()?;
    let data = prepare(options, adversaries.len(), out)?;
    // From here on the model is the one `auto` resolved to.
    let resolved = Options {
        model: data.model_name.clone(),
        ..options.clone()
    };
    let options = &resolved;
    let federations = lay_out_federations(options, &data, &adversaries)?;
    let specs = &federations[0].2;
    writeln!(
        out,
        "{} hospitals ({} honest, {} adversarial), {} training rows ({:?}), {} test rows, batch {}, {} rounds",
        specs.len(),
        options.participants,
        adversaries.len(),
        data.train.len(),
        options.partition,
        data.test.len(),
        data.batch,
        options.rounds
    )?;

    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    let mut runs = Vec::new();
    for (work, proofs, specs) in &federations {
        let setting = Setting {
            work,
            proofs: *proofs,
            batch: data.batch,
            binaries: binaries.as_ref().filter(|_| *proofs),
        };
        let observed = federate(options, specs, &data.raw, &data.stats, setting);
        runs.push(runtime.block_on(observed)?);
    }
    let baseline = runs.get(1);
    let mut report = build_report(options, &data, specs, &runs[0], baseline)?;
    report.wall_seconds = started.elapsed().as_secs_f64();
    report::write(&report, &options.out)?;
    writeln!(out)?;
    report::print_table(&report.rounds, out)?;
    summarize(&report, options, out)?;
    Ok(report)
}

/// The work directories of the federations to run (with proofs, then the no-proofs
/// baseline, as the options ask), each with its nodes and their shards written.
fn lay_out_federations(
    options: &Options,
    data: &Prepared,
    adversaries: &[Adversary],
) -> anyhow::Result<Vec<(PathBuf, bool, Vec<NodeSpec>)>> {
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("creating {}", options.out.display()))?;
    let mut federations = Vec::new();
    for (dir, proofs) in [("nodes", true), ("nodes-no-proofs", false)] {
        if proofs && options.no_proofs {
            continue;
        }
        let work = options.out.join(dir);
        let _ = std::fs::remove_dir_all(&work);
        let specs = node_specs(
            &work,
            data.shards.clone(),
            options.participants,
            adversaries,
        );
        for spec in &specs {
            write_shard(&data.raw, &spec.rows, &spec.csv)?;
        }
        federations.push((work, proofs, specs));
    }
    Ok(federations)
}

/// The run's configuration, from the log's first record.
fn run_config(log: &[AuditEvent]) -> Option<&zkfed_coordinator::events::RunConfig> {
    match log.first() {
        Some(AuditEvent::RunStarted(config)) => Some(config),
        _ => None,
    }
}

/// What the report says of a run whose log does not start with it.
const UNKNOWN_RUN: &str = "unknown (the log does not start with the run)";

/// The run's model spec and parameter count, as its log records them.
fn model_description(log: &[AuditEvent]) -> String {
    run_config(log).map_or(UNKNOWN_RUN.into(), |config| {
        let spec = config.public.model;
        let d = config.public.schema.features.len();
        format!("{spec}, {} parameters", spec.num_params(d))
    })
}

/// A private run's noise, rate and the ε its log records as spent (and a budget end).
fn privacy_description(log: &[AuditEvent]) -> Option<String> {
    let privacy = run_config(log)?.public.privacy?;
    let spent = log.iter().rev().find_map(|e| match e {
        AuditEvent::Aggregated {
            privacy: Some(p), ..
        } => Some(p.epsilon),
        _ => None,
    });
    let ended = log.iter().find_map(|e| match e {
        AuditEvent::BudgetSpent { rounds, .. } => {
            Some(format!("; the budget ended the run after round {rounds}"))
        }
        _ => None,
    });
    Some(format!(
        "z = {}, q' = {}, ε spent {:.3} of {} at δ = {}{}",
        privacy.noise_multiplier,
        privacy.sampling.probability(),
        spent.unwrap_or(0.0),
        privacy.epsilon,
        privacy.delta,
        ended.unwrap_or_default()
    ))
}

/// The model the federation's log ends with (its last aggregate), as a model file.
fn final_model(log: &[AuditEvent]) -> Option<ModelFile> {
    let config = run_config(log)?;
    log.iter().rev().find_map(|event| match event {
        AuditEvent::Aggregated { round, model, .. } => Some(ModelFile::new(
            model,
            &config.public.schema,
            &config.public.standardization,
            *round,
        )),
        _ => None,
    })
}

/// `--strategy` parses and can aggregate any count of updates from the honest
/// participants' (the quorum) to the allow-list's (adversaries but strangers included),
/// checked before any data is read; the coordinator's configuration checks the rest.
fn check_strategy(options: &Options, adversaries: &[Adversary]) -> anyhow::Result<()> {
    let strategy = zkfed_aggregation::strategy::Strategy::parse(&options.strategy)
        .map_err(anyhow::Error::msg)
        .context("--strategy")?;
    let listed = adversaries.iter().filter(|a| **a != Adversary::Stranger);
    let peers = options.participants + listed.count();
    strategy
        .admits_from(options.participants, peers)
        .map_err(|e| {
            anyhow::anyhow!(
                "--strategy {strategy} with {} honest participants (the quorum) and {peers} \
                 allowed peers: {e}; add --participants",
                options.participants
            )
        })?;
    use zkfed_aggregation::strategy::MAX_STEP;
    let quantize = zkfed_air::fixed::quantize;
    let step = strategy.largest_step(quantize(options.learning_rate), quantize(options.clip));
    ensure!(
        step <= MAX_STEP,
        "--strategy {strategy}: one round may move a parameter by up to {step:.2} with \
         --learning-rate {} and --clip {}, at most {MAX_STEP} is allowed",
        options.learning_rate,
        options.clip
    );
    Ok(())
}

/// The report of a run: per-round rows against the centralized baseline (and the
/// no-proofs baseline, if it ran), the adversarial summary, timings and memory.
fn build_report(
    options: &Options,
    data: &Prepared,
    specs: &[NodeSpec],
    observed: &Observed,
    baseline: Option<&Observed>,
) -> anyhow::Result<Report> {
    let evaluate = |m: &Model| evaluate(m, &data.quantized, &data.raw.labels, &data.test);
    let honest_rows: Vec<usize> = specs
        .iter()
        .filter(|s| s.adversary.is_none())
        .flat_map(|s| s.rows.clone())
        .collect();
    let pooled_batch = data.batch * options.participants;
    let central = centralized(
        options,
        &data.quantized,
        &data.raw.labels,
        &honest_rows,
        pooled_batch,
        data.spec,
    )?;
    let mut rounds = rows_of(observed, &central, &evaluate);
    if let Some(baseline) = baseline {
        let base = rows_of(baseline, &central, &evaluate);
        for (row, b) in rounds.iter_mut().zip(base) {
            row.baseline_accuracy = Some(b.accuracy);
            row.baseline_wall_seconds = Some(b.wall_seconds);
        }
    }
    let mean = |f: &dyn Fn(&RoundRow) -> Option<f64>| {
        let v: Vec<f64> = rounds.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let mean_round_seconds = mean(&|r| Some(r.wall_seconds)).unwrap_or(0.0);
    let overhead_ratio =
        mean(&|r| r.baseline_wall_seconds).map(|without| mean_round_seconds / without);
    Ok(Report {
        proofs: !options.no_proofs,
        model: model_description(&observed.log),
        strategy: run_config(&observed.log)
            .map_or(UNKNOWN_RUN.into(), |c| c.public.strategy.to_string()),
        privacy: privacy_description(&observed.log),
        final_model: final_model(&observed.log),
        overhead_ratio,
        options: format!("{options:?}"),
        final_accuracy: rounds.last().map_or(0.0, |r| r.accuracy),
        final_centralized_accuracy: rounds.last().map_or(0.0, |r| r.centralized_accuracy),
        rounds,
        adversarial: adversarial_summary(observed, specs),
        wall_seconds: 0.0,
        mean_round_seconds,
        peak_memory: peak_memory(observed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_brings_its_own_defaults_unless_options_are_given() {
        let parse = |args: &[&str]| {
            Options::parse_args(std::iter::once("zkfed-sim").chain(args.iter().copied())).unwrap()
        };
        let default = parse(&[]);
        assert_eq!(default.dataset, DatasetChoice::BreastCancer);
        assert_eq!(
            (
                default.model.as_str(),
                default.rounds,
                default.learning_rate,
                default.batch
            ),
            ("auto", 20, 1.0, 16)
        );
        let digits = parse(&["--dataset", "digits"]);
        assert_eq!(
            (
                digits.model.as_str(),
                digits.rounds,
                digits.learning_rate,
                digits.batch
            ),
            ("auto", 40, 4.0, 32)
        );
        let given = parse(&[
            "--dataset",
            "digits",
            "--model",
            "mlp:32",
            "--rounds",
            "3",
            "--learning-rate",
            "0.5",
            "--batch",
            "8",
        ]);
        assert_eq!(
            (
                given.model.as_str(),
                given.rounds,
                given.learning_rate,
                given.batch
            ),
            ("mlp:32", 3, 0.5, 8)
        );
        let mlp = parse(&["--dataset", "digits", "--model", "mlp:32"]);
        assert_eq!((mlp.rounds, mlp.learning_rate, mlp.batch), (40, 2.0, 32));
        let file = parse(&["--dataset", "rows.csv", "--label", "y"]);
        assert_eq!(file.dataset, DatasetChoice::File("rows.csv".into()));
        assert_eq!(file.rounds, 20);
        assert!(Options::parse_args(["zkfed-sim", "--dataset", ""]).is_err());
        assert!(
            Options::parse_args(["zkfed-sim", "--synthetic", "100x5", "--dataset", "digits"])
                .is_err(),
            "a dataset and synthetic data conflict"
        );
        assert!(Options::parse_args(["zkfed-sim", "--synthetic", "100x5"]).is_ok());
    }

    #[test]
    fn a_strategy_that_does_not_parse_or_fit_the_quorum_is_refused_before_anything_runs() {
        let cases: [(&[&str], &str); 4] = [
            (
                &["--strategy", "fedavgm", "--dataset", "digits"],
                "by up to 40.00 with --learning-rate 4 and --clip 1",
            ),
            (&["--strategy", "fedsgd"], "unknown strategy `fedsgd`"),
            (
                &["--strategy", "krum:f=1"],
                "4 honest participants (the quorum) and 5 allowed peers: the strategy needs at \
                 least 5 accepted updates, got 4",
            ),
            // Three honest updates can be trimmed, but not the four with the adversary's.
            (
                &[
                    "--strategy",
                    "trimmed-mean:beta=0.49",
                    "--participants",
                    "3",
                ],
                "got 4",
            ),
        ];
        for (args, complaint) in cases {
            let args = ["zkfed-sim"].iter().chain(args);
            let mut options = Options::parse_args(args).unwrap();
            options.out = std::env::temp_dir().join("zkfed-sim-never-written");
            let err = format!("{:#}", run(&options, &mut Vec::new()).unwrap_err());
            assert!(err.contains(complaint), "{err}");
            assert!(!options.out.exists(), "nothing is written");
        }
    }

    #[test]
    fn a_model_that_does_not_fit_the_data_is_refused_before_anything_runs() {
        let options = Options::parse_args([
            "zkfed-sim",
            "--dataset",
            "digits",
            "--model",
            "logistic",
            "--quiet",
        ])
        .unwrap();
        let err = format!(
            "{:#}",
            data::prepare(&options, 0, &mut Vec::new()).err().unwrap()
        );
        assert!(
            err.contains("predicts 2 classes, the label has 10"),
            "{err}"
        );
        let csv =
            std::env::temp_dir().join(format!("zkfed-sim-nolabel-{}.csv", std::process::id()));
        std::fs::write(&csv, "a,b,y\n1,2,0\n").unwrap();
        let options =
            Options::parse_args(["zkfed-sim", "--dataset", csv.to_str().unwrap()]).unwrap();
        let err = format!(
            "{:#}",
            data::prepare(&options, 0, &mut Vec::new()).err().unwrap()
        );
        assert!(err.contains("needs --label"), "{err}");
        // `auto` trains a softmax on a CSV with more than two classes.
        let rows: String = (0..40)
            .map(|i| format!("{},{},{}\n", i % 7, i % 5, i % 3))
            .collect();
        std::fs::write(&csv, format!("a,b,y\n{rows}")).unwrap();
        let path = csv.to_str().unwrap();
        let args = [
            "zkfed-sim",
            "--dataset",
            path,
            "--label",
            "y",
            "--partition",
            "iid",
        ];
        let options = Options::parse_args(args).unwrap();
        let data = data::prepare(&options, 0, &mut Vec::new()).unwrap();
        assert_eq!(data.model_name, "softmax");
        assert_eq!(
            data.spec,
            zkfed_air::spec::ModelSpec::Softmax { classes: 3 }
        );
        std::fs::remove_file(csv).unwrap();
        let options = Options::parse_args(["zkfed-sim", "--label", "y"]).unwrap();
        let err = format!(
            "{:#}",
            data::prepare(&options, 0, &mut Vec::new()).err().unwrap()
        );
        assert!(err.contains("--label applies to a CSV"), "{err}");
    }
}
