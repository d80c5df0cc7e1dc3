//! The simulation's report: a per-round table, JSON, CSV and an SVG plot.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;
use serde::Serialize;
use zkfed_protocol::model_file::ModelFile;

use crate::flood::FloodTally;

/// One round's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundRow {
    /// Round number.
    pub round: u64,
    /// Test accuracy of the model after this round (zkfed).
    pub accuracy: f64,
    /// Mean logistic loss on the test split.
    pub loss: f64,
    /// Test accuracy of centralized training after the same number of steps.
    pub centralized_accuracy: f64,
    /// Accepted submissions.
    pub accepted: usize,
    /// Rejected submissions, by reason.
    pub rejected: BTreeMap<String, usize>,
    /// Proving seconds: median, 95th percentile, maximum.
    pub prove_p50: f64,
    /// 95th percentile proving seconds.
    pub prove_p95: f64,
    /// Maximum proving seconds.
    pub prove_max: f64,
    /// Median verification milliseconds.
    pub verify_ms_p50: f64,
    /// Maximum verification milliseconds.
    pub verify_ms_max: f64,
    /// Submissions refused before verification (duplicates, floods, wrong round).
    pub refused: usize,
    /// Bytes the coordinator read from its sockets since the previous round closed
    /// (submissions, polls, enrolments; Noise and Yamux framing included).
    pub bytes_in: u64,
    /// Bytes the coordinator wrote to its sockets over the same span (models, verdicts).
    pub bytes_out: u64,
    /// Seconds from the round opening to its close.
    pub wall_seconds: f64,
    /// Test accuracy of the same federation with proofs off, if it ran.
    pub baseline_accuracy: Option<f64>,
    /// Round wall time of the same federation with proofs off, if it ran.
    pub baseline_wall_seconds: Option<f64>,
    /// A private run's ε spent after this round, as its aggregate records it.
    pub epsilon: Option<f64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The options, as given.
    pub options: String,
    /// Whether the reported federation proved and verified (false with `--no-proofs`).
    pub proofs: bool,
    /// The model trained (its spec and parameter count).
    pub model: String,
    /// The coordinator's aggregation strategy, in its canonical `NAME:KEY=VALUE,...` form.
    pub strategy: String,
    /// A private run's noise, sampling rate and spent budget.
    pub privacy: Option<String>,
    /// Mean round wall time with proofs divided by that without, if both ran.
    pub overhead_ratio: Option<f64>,
    /// Per-round figures.
    pub rounds: Vec<RoundRow>,
    /// Final test accuracy (zkfed).
    pub final_accuracy: f64,
    /// Final test accuracy of centralized training.
    pub final_centralized_accuracy: f64,
    /// Adversarial submissions and how many were rejected with the expected reason.
    pub adversarial: AdversarialSummary,
    /// Total wall time in seconds.
    pub wall_seconds: f64,
    /// Mean round wall time (opening to close) of the reported federation.
    pub mean_round_seconds: f64,
    /// Peak resident memory, if the platform reports it.
    pub peak_memory: Option<PeakMemory>,
    /// The model the federation ended with, written as `model.json`.
    #[serde(skip)]
    pub final_model: Option<ModelFile>,
}

/// The high-water mark of resident memory (`VmHWM`) of one process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeakMemory {
    /// Bytes.
    pub bytes: u64,
    /// Whose: the coordinator's own process, or the simulation's (every node in it).
    pub of: String,
}

/// How the adversaries fared.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AdversarialSummary {
    /// Submissions sent by adversaries.
    pub submitted: usize,
    /// Of those, rejected.
    pub rejected: usize,
    /// Of those, rejected with the reason their attack must trigger.
    pub rejected_for_the_right_reason: usize,
    /// Adversarial updates that were aggregated (must be zero).
    pub aggregated: usize,
    /// Of the rejected, refused before verification (a flood's extra copies).
    pub refused_before_verification: usize,
    /// Connections from peers not on the allow-list that the coordinator refused.
    pub connections_refused: usize,
    /// Records in the coordinator's log from peers not on the allow-list (must be zero).
    pub stranger_records: usize,
    /// Reasons by attack kind.
    pub reasons: BTreeMap<String, Vec<String>>,
    /// What the flooding adversaries saw in the answers to their copies.
    pub flood: FloodTally,
}

impl AdversarialSummary {
    /// Whether every adversarial attempt was stopped: none aggregated, every submission
    /// rejected, nothing from a stranger recorded.
    pub fn all_stopped(&self) -> bool {
        self.aggregated == 0
            && self.rejected == self.submitted
            && self.stranger_records == 0
            && self.flood.accepted == 0
    }
}

/// Percentile `p` (0..=100) of `values` (nearest rank), 0 if empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Writes `report.json`, `rounds.csv`, `accuracy.svg` and the final model's `model.json`
/// (a model file, as `zkfed-coordinator model export` writes one) into `dir`.
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(report).expect("plain data serializes");
    std::fs::write(dir.join("report.json"), json).context("writing report.json")?;
    if let Some(model) = &report.final_model {
        std::fs::write(dir.join("model.json"), model.to_json()).context("writing model.json")?;
    }
    std::fs::write(dir.join("rounds.csv"), csv(&report.rounds)).context("writing rounds.csv")?;
    plot(&report.rounds, &dir.join("accuracy.svg"))
}

/// The per-round CSV text.
pub fn csv(rows: &[RoundRow]) -> String {
    let mut out = String::from(
        "round,accuracy,loss,centralized_accuracy,no_proofs_accuracy,accepted,rejected,rejected_by_reason,refused_unverified,prove_p50_s,prove_p95_s,prove_max_s,verify_p50_ms,verify_max_ms,coordinator_bytes_in,coordinator_bytes_out,wall_s,no_proofs_wall_s,epsilon\n",
    );
    for r in rows {
        let reasons: Vec<String> = r.rejected.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let rejected: usize = r.rejected.values().sum();
        out.push_str(&format!(
            "{},{:.4},{:.4},{:.4},{},{},{},\"{}\",{},{:.3},{:.3},{:.3},{:.2},{:.2},{},{},{:.2},{},{}\n",
            r.round,
            r.accuracy,
            r.loss,
            r.centralized_accuracy,
            optional(r.baseline_accuracy, 4),
            r.accepted,
            rejected,
            reasons.join("; ").replace('"', "'"),
            r.refused,
            r.prove_p50,
            r.prove_p95,
            r.prove_max,
            r.verify_ms_p50,
            r.verify_ms_max,
            r.bytes_in,
            r.bytes_out,
            r.wall_seconds,
            optional(r.baseline_wall_seconds, 2),
            optional(r.epsilon, 4)
        ));
    }
    out
}

fn optional(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(String::new, |v| format!("{v:.digits$}"))
}

/// A plotted line: its legend, colour and the value it draws per round.
type Series = (&'static str, RGBColor, fn(&RoundRow) -> f64);

fn plot(rows: &[RoundRow], path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    let rounds = rows.len().max(1) as u64;
    let low = rows
        .iter()
        .flat_map(|r| {
            [
                r.accuracy,
                r.centralized_accuracy,
                r.baseline_accuracy.unwrap_or(1.0),
            ]
        })
        .fold(1.0f64, f64::min)
        .min(0.5);
    let mut chart = ChartBuilder::on(&root)
        .caption("Test accuracy per round", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(1u64..rounds, (low - 0.02)..1.0f64)
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc("test accuracy")
        .draw()
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    let series: [Series; 2] = [
        ("zkfed (every update proven and verified)", BLUE, |r| {
            r.accuracy
        }),
        ("centralized, same fixed-point model", RED, |r| {
            r.centralized_accuracy
        }),
    ];
    if rows.iter().all(|r| r.baseline_accuracy.is_some()) {
        let color = GREEN;
        chart
            .draw_series(LineSeries::new(
                rows.iter()
                    .map(|r| (r.round, r.baseline_accuracy.unwrap_or(0.0))),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?
            .label("same federation, no proofs (trusts every update)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    for (name, color, value) in series {
        chart
            .draw_series(LineSeries::new(
                rows.iter().map(|r| (r.round, value(r))),
                color.stroke_width(2),
            ))
            .map_err(|e| anyhow::anyhow!("plot: {e}"))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| anyhow::anyhow!("plot: {e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("plot: {e}"))
}

/// Prints the per-round table (with a column of ε spent for a private run).
pub fn print_table(rows: &[RoundRow], out: &mut impl Write) -> std::io::Result<()> {
    let private = rows.iter().any(|r| r.epsilon.is_some());
    writeln!(
        out,
        "round  accuracy  central.  loss    accepted  rejected  refused  prove p50/p95/max s  verify p50/max ms  KiB in/out   wall s{}",
        if private { "       ε" } else { "" }
    )?;
    for r in rows {
        let rejected: usize = r.rejected.values().sum();
        let epsilon = match (private, r.epsilon) {
            (true, Some(e)) => format!("  {e:>6.3}"),
            _ => String::new(),
        };
        writeln!(
            out,
            "{:>5}  {:>7.1}%  {:>7.1}%  {:>6.3}  {:>8}  {:>8}  {:>7}  {:>6.2}/{:>5.2}/{:>5.2}    {:>7.1}/{:>6.1}    {:>6.0}/{:<5.0} {:>6.1}{epsilon}",
            r.round,
            r.accuracy * 100.0,
            r.centralized_accuracy * 100.0,
            r.loss,
            r.accepted,
            rejected,
            r.refused,
            r.prove_p50,
            r.prove_p95,
            r.prove_max,
            r.verify_ms_p50,
            r.verify_ms_max,
            r.bytes_in as f64 / 1024.0,
            r.bytes_out as f64 / 1024.0,
            r.wall_seconds
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(round: u64) -> RoundRow {
        RoundRow {
            round,
            accuracy: 0.9,
            loss: 0.3,
            centralized_accuracy: 0.92,
            accepted: 4,
            rejected: BTreeMap::from([("proof rejected: x".to_string(), 1)]),
            prove_p50: 0.5,
            prove_p95: 0.7,
            prove_max: 0.8,
            verify_ms_p50: 20.0,
            verify_ms_max: 30.0,
            refused: 2,
            bytes_in: 1000,
            bytes_out: 200,
            wall_seconds: 1.5,
            baseline_accuracy: Some(0.91),
            baseline_wall_seconds: Some(0.5),
            epsilon: Some(0.25 * round as f64),
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert_eq!(percentile(&v, 95.0), 5.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn csv_has_a_header_and_a_line_per_round() {
        let text = csv(&[row(1), row(2)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("round,accuracy"));
        assert!(
            lines[1].starts_with("1,0.9000,0.3000,0.9200,0.9100,4,1,\"proof rejected: x=1\",2,")
        );
        assert!(lines[1].ends_with(",1.50,0.50,0.2500"));
        assert!(lines[2].ends_with(",1.50,0.50,0.5000"));
        let mut table = Vec::new();
        print_table(&[row(1), row(2)], &mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.lines().next().unwrap().ends_with("ε"));
        assert!(table.lines().nth(2).unwrap().ends_with(" 0.500"));
    }

    #[test]
    fn any_aggregated_unrejected_or_recorded_attempt_means_not_all_stopped() {
        let stopped = AdversarialSummary {
            submitted: 3,
            rejected: 3,
            rejected_for_the_right_reason: 3,
            connections_refused: 5,
            ..AdversarialSummary::default()
        };
        assert!(stopped.all_stopped());
        let cases = [
            AdversarialSummary {
                aggregated: 1,
                ..stopped.clone()
            },
            AdversarialSummary {
                rejected: 2,
                ..stopped.clone()
            },
            AdversarialSummary {
                stranger_records: 1,
                ..stopped.clone()
            },
            AdversarialSummary {
                flood: FloodTally {
                    accepted: 1,
                    ..FloodTally::default()
                },
                ..stopped.clone()
            },
        ];
        for case in cases {
            assert!(!case.all_stopped(), "{case:?}");
        }
    }

    #[test]
    fn report_files_are_written() {
        use zkfed_air::Model;
        use zkfed_air::data::{Schema, Standardization};
        use zkfed_air::fixed::ONE;
        let raw = Schema::binary(vec!["a".into(), "b".into()], "y");
        let raw = zkfed_air::data::RawDataset {
            schema: raw,
            features: vec![vec![0.0, 1.0], vec![2.0, 3.0]],
            labels: vec![0, 1],
        };
        let stats = Standardization::fit(&raw).unwrap();
        let dir = std::env::temp_dir().join(format!("zkfed-report-{}", std::process::id()));
        let report = Report {
            options: "test".into(),
            proofs: true,
            model: "logistic, 3 parameters".into(),
            strategy: "fedavg".into(),
            privacy: None,
            overhead_ratio: Some(3.0),
            rounds: vec![row(1), row(2), row(3)],
            final_accuracy: 0.9,
            final_centralized_accuracy: 0.92,
            adversarial: AdversarialSummary::default(),
            wall_seconds: 3.0,
            mean_round_seconds: 1.5,
            peak_memory: None,
            final_model: Some(ModelFile::new(
                &Model::logistic(vec![ONE, -ONE], 7),
                &raw.schema,
                &stats,
                3,
            )),
        };
        write(&report, &dir).unwrap();
        let written = std::fs::read(dir.join("model.json")).unwrap();
        let (file, model) = ModelFile::from_json(&written).unwrap();
        assert_eq!((file.rounds, model.params), (3, vec![ONE, -ONE, 7]));
        let svg = std::fs::read_to_string(dir.join("accuracy.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("test accuracy"));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(json["rounds"].as_array().unwrap().len(), 3);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
