//! The data side of a simulation: loading (bundled, CSV or synthetic), the held-out test
//! rows, public standardization statistics, and each node's shard written as CSV.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_air::data::{
    LISTED_ROWS, MAX_CLASSES, RawDataset, Standardization, breast_cancer, digits, list_rows,
};
use zkfed_air::spec::ModelSpec;

use crate::adversary::{Adversary, parse_adversary};
use crate::partition::split;
use crate::synthetic;
use crate::{DatasetChoice, Options};

/// One node of the simulation.
pub(crate) struct NodeSpec {
    pub(crate) state: PathBuf,
    pub(crate) csv: PathBuf,
    pub(crate) adversary: Option<Adversary>,
    pub(crate) rows: Vec<usize>,
}

/// The data of a run: loaded, split into training and test rows, standardized with the
/// training rows' statistics and shared among the nodes.
pub(crate) struct Prepared {
    pub(crate) raw: RawDataset,
    /// The model the run trains.
    pub(crate) spec: ModelSpec,
    /// Its name as the coordinator's configuration takes it (`auto` resolved).
    pub(crate) model_name: String,
    pub(crate) train: Vec<usize>,
    pub(crate) test: Vec<usize>,
    pub(crate) stats: Standardization,
    /// Every row in fixed point under `stats`.
    pub(crate) quantized: Vec<Vec<i64>>,
    /// The training rows of each node.
    pub(crate) shards: Vec<Vec<usize>>,
    /// The batch size, lowered to the smallest shard if needed.
    pub(crate) batch: usize,
}

/// Loads, splits and shares the data among `participants + adversaries` nodes.
pub(crate) fn prepare(
    options: &Options,
    adversaries: usize,
    out: &mut impl Write,
) -> anyhow::Result<Prepared> {
    let raw = load_data(options)?;
    let model_name = match options.model.as_str() {
        "auto" if raw.schema.classes > 2 => "softmax".to_string(),
        "auto" => "logistic".to_string(),
        name => name.to_string(),
    };
    let spec = ModelSpec::parse(&model_name, raw.schema.classes).map_err(anyhow::Error::msg)?;
    zkfed_protocol::check_model(&spec, &raw.schema)
        .with_context(|| format!("the model `{model_name}` on this data"))?;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let (train, test) = hold_out(raw.features.len(), &mut rng);
    let pooled = options.dataset == DatasetChoice::Digits;
    let stats = standardization(&raw, &train, pooled)?;
    let (raw, train, test, quantized) = leave_out_of_range(raw, train, test, &stats, out)?;
    let nodes = options.participants + adversaries;
    let shards = split(&train, &raw.labels, nodes, options.partition, &mut rng);
    let smallest = shards.iter().map(Vec::len).min().unwrap_or(0);
    ensure!(
        smallest >= 1,
        "a participant received no rows: use fewer participants or a milder partition"
    );
    let mut batch = options.batch.min(smallest);
    if batch < options.batch {
        writeln!(
            out,
            "batch lowered to {batch}: the smallest shard has {smallest} rows"
        )?;
    }
    if let Some(q) = options.sampling_rate {
        // A private run's batches are hidden samples; the hospitals' minimum batch (this
        // value) is what the smallest shard expects, so none refuses the run.
        let expected = (q * smallest as f64).floor().max(1.0) as usize;
        batch = batch.min(expected);
        writeln!(
            out,
            "private run: hidden samples at rate {q}, the smallest shard expects {expected} rows a round"
        )?;
    }
    Ok(Prepared {
        raw,
        spec,
        model_name,
        train,
        test,
        stats,
        quantized,
        shards,
        batch,
    })
}

/// The data without the rows that have a standardized value outside the proof's range
/// (the statistics come from the training rows, so an outlier can fall outside), with the
/// training and test indices renumbered, and the kept rows in fixed point. The simulation
/// owns all the data, so it plays the operator who removes such rows, and says so.
#[allow(clippy::type_complexity)]
fn leave_out_of_range(
    raw: RawDataset,
    train: Vec<usize>,
    test: Vec<usize>,
    stats: &Standardization,
    out: &mut impl Write,
) -> anyhow::Result<(RawDataset, Vec<usize>, Vec<usize>, Vec<Vec<i64>>)> {
    let standardized = stats.standardize(&raw).context("standardizing the data")?;
    let count = standardized.out_of_range.len();
    if count == 0 {
        return Ok((raw, train, test, standardized.rows));
    }
    let first = &standardized.out_of_range[..count.min(LISTED_ROWS)];
    writeln!(
        out,
        "{count} rows left out: standardized values outside the proof's range ({})",
        list_rows(first, count)
    )?;
    let mut renumbered = vec![None; raw.features.len()];
    for (new, &old) in standardized.kept.iter().enumerate() {
        renumbered[old] = Some(new);
    }
    let keep = |rows: Vec<usize>| -> Vec<usize> {
        rows.into_iter().filter_map(|i| renumbered[i]).collect()
    };
    let (train, test) = (keep(train), keep(test));
    ensure!(
        !train.is_empty() && !test.is_empty(),
        "too few rows left in range to train and test"
    );
    let kept = RawDataset {
        features: standardized
            .kept
            .iter()
            .map(|&i| raw.features[i].clone())
            .collect(),
        labels: standardized.labels,
        schema: raw.schema,
    };
    Ok((kept, train, test, standardized.rows))
}

pub(crate) fn adversaries(specs: &[String]) -> anyhow::Result<Vec<Adversary>> {
    let mut adversaries = Vec::new();
    for spec in specs {
        if spec == "none" {
            continue;
        }
        let (adversary, count) = parse_adversary(spec).map_err(anyhow::Error::msg)?;
        adversaries.extend(std::iter::repeat_n(adversary, count));
    }
    Ok(adversaries)
}

pub(crate) fn load_data(options: &Options) -> anyhow::Result<RawDataset> {
    if let Some((rows, features)) = options.synthetic {
        return Ok(synthetic::generate(rows, features, options.seed));
    }
    let bundled = match &options.dataset {
        DatasetChoice::BreastCancer => breast_cancer(),
        DatasetChoice::Digits => digits(),
        DatasetChoice::File(path) => return load_csv(path, options.label.as_deref()),
    };
    ensure!(
        options.label.is_none(),
        "--label applies to a CSV --dataset; the bundled data has its own label"
    );
    Ok(bundled)
}

/// A CSV's rows under its header, every column but `label` a feature; the label's classes
/// are the labels' largest value plus one.
fn load_csv(path: &Path, label: Option<&str>) -> anyhow::Result<RawDataset> {
    let label = label.context("a CSV --dataset needs --label, its label column")?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let header = text.lines().next().context("the CSV is empty")?;
    let features: Vec<String> = header
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| c != label)
        .collect();
    ensure!(
        header.split(',').any(|c| c.trim() == label),
        "the CSV has no column `{label}`"
    );
    let mut schema = zkfed_air::data::Schema::binary(features, label);
    schema.classes = MAX_CLASSES;
    let mut raw = zkfed_air::data::read_csv(text.as_bytes(), &schema)
        .with_context(|| format!("reading {}", path.display()))?;
    // The sim owns the file, so its labels say how many classes there are.
    raw.schema.classes = raw.labels.iter().max().map_or(2, |&y| (y + 1).max(2));
    Ok(raw)
}

/// A seeded 80/20 split into training and test row indices.
pub(crate) fn hold_out(n: usize, rng: &mut StdRng) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let test = order.split_off(n - n / 5);
    (order, test)
}

/// Standardization statistics of the training rows (public run parameters): per feature,
/// or `pooled` over every feature (images, whose blank pixels barely vary).
pub(crate) fn standardization(
    raw: &RawDataset,
    train: &[usize],
    pooled: bool,
) -> anyhow::Result<Standardization> {
    let subset = RawDataset {
        schema: raw.schema.clone(),
        features: train.iter().map(|&i| raw.features[i].clone()).collect(),
        labels: train.iter().map(|&i| raw.labels[i]).collect(),
    };
    let fit = if pooled {
        Standardization::fit_pooled
    } else {
        Standardization::fit
    };
    fit(&subset).context("standardizing the training rows")
}

pub(crate) fn node_specs(
    work: &Path,
    shards: Vec<Vec<usize>>,
    honest: usize,
    adversaries: &[Adversary],
) -> Vec<NodeSpec> {
    shards
        .into_iter()
        .enumerate()
        .map(|(k, rows)| {
            let adversary = k.checked_sub(honest).map(|a| adversaries[a]);
            let name = match adversary {
                None => format!("hospital-{k}"),
                Some(a) => format!("{}-{}", a.kind(), k - honest),
            };
            NodeSpec {
                state: work.join(&name),
                csv: work.join(format!("{name}.csv")),
                adversary,
                rows,
            }
        })
        .collect()
}

pub(crate) fn write_shard(raw: &RawDataset, rows: &[usize], path: &Path) -> anyhow::Result<()> {
    let mut text = raw.schema.features.join(",");
    text.push(',');
    text.push_str(&raw.schema.label);
    text.push('\n');
    for &i in rows {
        for v in &raw.features[i] {
            text.push_str(&format!("{v},"));
        }
        text.push_str(&format!("{}\n", raw.labels[i]));
    }
    // Rows are a hospital's data when the simulation runs on a real CSV: owner-only.
    zkfed_net::write_durably(path, text.as_bytes(), true)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_out_of_range_are_left_out_of_training_and_testing_and_counted() {
        let schema = zkfed_air::data::Schema::binary(vec!["a".into(), "b".into()], "y");
        let mut features: Vec<Vec<f64>> = (0..400)
            .map(|i| vec![f64::from(i % 7), f64::from(i % 5)])
            .collect();
        features[5] = vec![987654.321, 1.0];
        features[300] = vec![1.0, -987654.321];
        let raw = RawDataset {
            schema,
            labels: (0..400).map(|i| u8::from(i % 2 == 0)).collect(),
            features,
        };
        let train: Vec<usize> = (0..320).collect();
        let test: Vec<usize> = (320..400).chain([5, 300]).collect();
        let stats = Standardization::fit(&RawDataset {
            features: raw.features[10..200].to_vec(),
            labels: raw.labels[10..200].to_vec(),
            schema: raw.schema.clone(),
        })
        .unwrap();
        let mut printed = Vec::new();
        let (kept, train, test, quantized) =
            leave_out_of_range(raw.clone(), train, test, &stats, &mut printed).unwrap();
        let printed = String::from_utf8(printed).unwrap();
        assert!(printed.starts_with("2 rows left out"), "{printed}");
        assert!(
            printed.contains("data row 6 (`a`), data row 301 (`b`)"),
            "{printed}"
        );
        assert!(!printed.contains("987654"), "{printed}");
        assert_eq!(
            (kept.features.len(), train.len(), test.len()),
            (398, 318, 80)
        );
        assert_eq!(quantized, stats.apply(&kept).unwrap());
        // Every index still points at the row it did before.
        assert_eq!(kept.features[train[5]], raw.features[6]);
        assert_eq!(kept.features[test[0]], raw.features[320]);
        assert_eq!(kept.labels[test[0]], raw.labels[320]);
    }

    #[cfg(unix)]
    #[test]
    fn shards_are_written_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("zkfed-sim-shard-{}", std::process::id()));
        let path = dir.join("hospital-0.csv");
        write_shard(&breast_cancer(), &[0, 1, 2], &path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 4);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
