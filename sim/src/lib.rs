//! The simulation harness.
//!
//! Today: an in-process federation that exercises the whole proof core on real data.
//! Hospitals split the bundled breast-cancer data, commit to their rows with fresh salts,
//! and every round prove their clipped-gradient update on a seed-derived batch; the
//! coordinator decodes and verifies every proof from its bytes before FedAvg. The
//! networked harness (libp2p nodes on loopback, adversaries, reports, plots) replaces this
//! loop once the coordinator and participant nodes exist (issues 3 and 4).

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use zkfed_aggregation::fedavg_step;
use zkfed_air::data::{Standardization, breast_cancer};
use zkfed_air::fixed::{ONE, quantize};
use zkfed_air::{CommittedDataset, Model, ProofContext, RoundParams, Statement, prove, verify};

/// Command-line options of `zkfed-sim`.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "Run a zkfed federation on the bundled breast-cancer data"
)]
pub struct Options {
    /// Number of hospitals.
    #[arg(long, default_value_t = 4)]
    pub participants: usize,
    /// Training rounds.
    #[arg(long, default_value_t = 10)]
    pub rounds: u64,
    /// Examples per hospital per round.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Per-example L2 clip norm C.
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Learning rate.
    #[arg(long, default_value_t = 1.0)]
    pub learning_rate: f64,
    /// Seed for the data split (round seeds and salts always come from the OS).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

struct Hospital {
    name: String,
    dataset: CommittedDataset,
    peer: [u8; 32],
}

/// Runs the federation, writing progress and a per-round table to `out`.
pub fn run(options: &Options, out: &mut impl Write) -> anyhow::Result<()> {
    if options.participants == 0 || options.rounds == 0 {
        bail!("need at least one participant and one round");
    }
    let raw = breast_cancer();
    let stats = Standardization::fit(&raw).context("standardizing the bundled data")?;
    let rows = stats.apply(&raw).context("quantizing the bundled data")?;
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(options.seed));
    let test_len = rows.len() / 5;
    let (test, train) = order.split_at(test_len);

    let mut os_rng = rand::make_rng::<StdRng>();
    let shard = train.len() / options.participants;
    if shard < options.batch {
        bail!(
            "each hospital holds {shard} rows, fewer than the batch of {}",
            options.batch
        );
    }
    let mut hospitals = Vec::new();
    for (k, part) in train.chunks(shard).take(options.participants).enumerate() {
        let features = part.iter().map(|&i| rows[i].clone()).collect();
        let labels = part.iter().map(|&i| raw.labels[i]).collect();
        let dataset = CommittedDataset::commit(features, labels, &mut os_rng)?;
        let root = dataset.commitment().root;
        writeln!(
            out,
            "hospital-{k}: committed {} rows, root {:016x}…",
            part.len(),
            root[0]
        )?;
        hospitals.push(Hospital {
            name: format!("hospital-{k}"),
            dataset,
            peer: [k as u8 + 1; 32],
        });
    }

    let params = RoundParams {
        clip_norm: quantize(options.clip),
        batch_size: options.batch,
    };
    let lr = quantize(options.learning_rate);
    let mut federation_id = [0u8; 32];
    os_rng.fill_bytes(&mut federation_id);
    let mut model = Model::zeros(raw.schema.features.len());
    writeln!(
        out,
        "\nround  accepted  prove s (max)  verify ms (max)  proof KiB  test accuracy"
    )?;
    for round in 1..=options.rounds {
        let mut seed = [0u8; 32];
        os_rng.fill_bytes(&mut seed);
        let (mut prove_max, mut verify_max, mut proof_kib) = (0f64, 0f64, 0f64);
        let mut accepted = Vec::new();
        for h in &hospitals {
            let context = ProofContext {
                federation_id,
                round,
                participant: h.peer,
            };
            let statement =
                Statement::new(context, model.clone(), params, h.dataset.commitment(), seed)?;
            let start = Instant::now();
            let (update, proof) =
                prove(&statement, &h.dataset).with_context(|| format!("{} proving", h.name))?;
            prove_max = prove_max.max(start.elapsed().as_secs_f64());
            proof_kib = proof.len() as f64 / 1024.0;
            let start = Instant::now();
            match verify(&statement, &update, &proof) {
                Ok(()) => accepted.push(update),
                Err(e) => writeln!(out, "  {} rejected: {e}", h.name)?,
            }
            verify_max = verify_max.max(start.elapsed().as_secs_f64() * 1e3);
        }
        model = fedavg_step(&model, &accepted, lr)?;
        let accuracy = accuracy(&model, test.iter().map(|&i| (&rows[i][..], raw.labels[i])));
        writeln!(
            out,
            "{round:>5}  {:>8}  {prove_max:>13.2}  {verify_max:>15.1}  {proof_kib:>9.0}  {:>12.1}%",
            format!("{}/{}", accepted.len(), hospitals.len()),
            accuracy * 100.0
        )?;
    }
    Ok(())
}

/// Fraction of rows the fixed-point model classifies correctly (logit > 0 ⇒ label 1).
pub fn accuracy<'a>(model: &Model, rows: impl Iterator<Item = (&'a [i64], u8)>) -> f64 {
    let (mut right, mut total) = (0usize, 0usize);
    for (x, y) in rows {
        let z: i64 =
            model.weights.iter().zip(x).map(|(w, x)| w * x).sum::<i64>() + model.bias * ONE;
        right += usize::from(u8::from(z > 0) == y);
        total += 1;
    }
    right as f64 / total.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_federation_learns_and_accepts_every_proof() {
        let options = Options {
            participants: 2,
            rounds: 3,
            batch: 8,
            clip: 1.0,
            learning_rate: 1.0,
            seed: 3,
        };
        let mut out = Vec::new();
        run(&options, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("rejected"), "{text}");
        let last = text.lines().last().unwrap();
        assert!(last.trim_start().starts_with("3 "), "{text}");
        assert!(last.contains("2/2"), "{text}");
        let accuracy: f64 = last
            .split_whitespace()
            .last()
            .unwrap()
            .trim_end_matches('%')
            .parse()
            .unwrap();
        assert!(
            accuracy > 80.0,
            "three rounds on breast cancer should beat 80%: {text}"
        );
    }

    #[test]
    fn accuracy_counts_positive_logits_as_label_one() {
        let model = Model {
            weights: vec![ONE],
            bias: 0,
        };
        let rows = [(&[ONE][..], 1u8), (&[-ONE][..], 0), (&[ONE][..], 0)];
        assert!((accuracy(&model, rows.into_iter()) - 2.0 / 3.0).abs() < 1e-12);
    }
}
