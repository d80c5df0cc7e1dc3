//! Hidden Poisson sampling benchmark:
//! `cargo bench -p zkfed-air --bench hidden_sampling [-- --quick]`.
//!
//! Proves a logistic model's update under hidden sampling (ZK on, all cores, trace
//! generation included, best of three) and prints each table's height × width, the
//! capacity, prove and verify time (one rayon thread), proof size, and the sampling
//! tables' committed cells per dataset row (the PRF's cost per row). Cases:
//!
//! - 10,000 rows, d = 30, q = 0.01 (the bar: prove ≤ 5 s);
//! - a breast-cancer-sized shard (114 rows, d = 30) at expected batches 16 and 32, each
//!   next to today's public-index proof of that batch and of the hidden proof's slot count
//!   (skipped by `--quick`).

mod measure;

use measure::{measure, peak_rss_mib};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_air::fixed::ONE;
use zkfed_air::sampling::{SamplingKey, SamplingRate};
use zkfed_air::statement::HiddenSampling;
use zkfed_air::{CommittedDataset, Model, ProofContext, RoundParams, Statement};

const D: usize = 30;
const REPEATS: usize = 3;

fn dataset(rows: usize) -> (CommittedDataset, Model, SamplingKey) {
    let mut rng = StdRng::seed_from_u64(rows as u64);
    let features: Vec<Vec<i64>> = (0..rows)
        .map(|_| {
            (0..D)
                .map(|_| rng.random_range(-3 * ONE..=3 * ONE))
                .collect()
        })
        .collect();
    let labels = (0..rows).map(|_| rng.random_range(0..=1u8)).collect();
    let weights = (0..D)
        .map(|_| rng.random_range(-ONE / 4..=ONE / 4))
        .collect();
    let key = SamplingKey::generate(&mut rng);
    let dataset = CommittedDataset::commit(features, labels, &mut rng)
        .expect("dataset")
        .with_sampling_key(key.clone());
    (dataset, Model::logistic(weights, 0), key)
}

fn context() -> ProofContext {
    ProofContext {
        federation_id: [1; 32],
        round: 1,
        participant: [2; 32],
    }
}

fn hidden(dataset: &CommittedDataset, model: &Model, key: &SamplingKey, q: f64) -> Statement {
    let sampling = HiddenSampling {
        key: key.commitment(),
        rate: SamplingRate::from_probability(q).expect("rate"),
    };
    Statement::with_hidden_sampling(
        context(),
        model.clone(),
        ONE,
        dataset.commitment(),
        [3; 32],
        sampling,
    )
    .expect("statement")
}

fn public(dataset: &CommittedDataset, model: &Model, batch: usize) -> Statement {
    let params = RoundParams {
        clip_norm: ONE,
        batch_size: batch,
    };
    Statement::new(
        context(),
        model.clone(),
        params,
        dataset.commitment(),
        [3; 32],
    )
    .expect("statement")
}

fn report(label: &str, statement: &Statement, dataset: &CommittedDataset) {
    let m = measure(statement, dataset, REPEATS);
    let sampling_cells: usize = m.dims.iter().skip(4).map(|(h, w)| h * w).sum();
    let per_row = sampling_cells as f64 / statement.dataset.rows as f64;
    println!(
        "{label:<34} slots {:>4}  prove {:>6.3} s  verify {:>5.1} ms  proof {:>4} KiB  sampling cells/row {:>6.1}  {}",
        statement.params.batch_size,
        m.prove_s,
        m.verify_ms,
        m.proof_bytes >> 10,
        per_row,
        m.tables(),
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (data, model, key) = dataset(10_000);
    report(
        "hidden 10000 rows q=0.01",
        &hidden(&data, &model, &key, 0.01),
        &data,
    );
    println!("peak memory after it: {:.0} MiB", peak_rss_mib());
    if quick {
        return;
    }
    let (shard, model, key) = dataset(114);
    for batch in [16, 32] {
        let q = batch as f64 / 114.0;
        report(
            &format!("public 114 rows B={batch}"),
            &public(&shard, &model, batch),
            &shard,
        );
        let label = format!("hidden 114 rows q={q:.3} (E[B]={batch})");
        let statement = hidden(&shard, &model, &key, q);
        report(&label, &statement, &shard);
        let slots = statement.params.batch_size;
        let label = format!("public 114 rows B={slots} (its slots)");
        report(&label, &public(&shard, &model, slots), &shard);
    }
}
