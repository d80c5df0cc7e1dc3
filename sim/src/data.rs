//! The data side of a simulation: loading (bundled, CSV or synthetic), the held-out test
//! rows, public standardization statistics, and each node's shard written as CSV.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_air::data::{RawDataset, Standardization, breast_cancer};

use crate::Options;
use crate::adversary::{Adversary, parse_adversary};
use crate::partition::split;
use crate::synthetic;

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
    let mut rng = StdRng::seed_from_u64(options.seed);
    let (train, test) = hold_out(raw.features.len(), &mut rng);
    let stats = standardization(&raw, &train)?;
    let quantized = stats
        .apply(&raw)
        .context("the data does not fit the fixed-point range")?;
    let nodes = options.participants + adversaries;
    let shards = split(&train, &raw.labels, nodes, options.partition, &mut rng);
    let smallest = shards.iter().map(Vec::len).min().unwrap_or(0);
    ensure!(
        smallest >= 1,
        "a participant received no rows: use fewer participants or a milder partition"
    );
    let batch = options.batch.min(smallest);
    if batch < options.batch {
        writeln!(
            out,
            "batch lowered to {batch}: the smallest shard has {smallest} rows"
        )?;
    }
    Ok(Prepared {
        raw,
        train,
        test,
        stats,
        quantized,
        shards,
        batch,
    })
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
    let (Some(path), Some(label)) = (&options.dataset, &options.label) else {
        return Ok(breast_cancer());
    };
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
    let schema = zkfed_air::data::Schema {
        features,
        label: label.clone(),
    };
    zkfed_air::data::read_csv(text.as_bytes(), &schema)
        .with_context(|| format!("reading {}", path.display()))
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

/// Standardization statistics of the training rows (public run parameters).
pub(crate) fn standardization(
    raw: &RawDataset,
    train: &[usize],
) -> anyhow::Result<Standardization> {
    let subset = RawDataset {
        schema: raw.schema.clone(),
        features: train.iter().map(|&i| raw.features[i].clone()).collect(),
        labels: train.iter().map(|&i| raw.labels[i]).collect(),
    };
    Standardization::fit(&subset).context("standardizing the training rows")
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
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
