//! A proof stored in the repository must keep verifying: if the proof format, the trace
//! layout or the statement encoding changes, this fails loudly, and `PROTOCOL_VERSION`
//! must be bumped and the fixture regenerated with
//! `cargo test --release -p zkfed-air --test stored_proof -- --ignored regenerate`.

mod common;

use common::{Spec, context, fixture};
use rand::SeedableRng;
use rand::rngs::StdRng;
use zkfed_air::sampling::{SamplingKey, SamplingRate};
use zkfed_air::statement::HiddenSampling;
use zkfed_air::{ClippedGradientSum, Statement, prove, verify};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proof_v6.bin");
/// A hidden-sampling proof: its two sampling tables, public values and grinding.
const HIDDEN_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/hidden_proof_v6.bin"
);

/// The fixture's statement is deterministic: seeded data, salts and seed.
fn stored() -> common::Fixture {
    fixture(Spec {
        seed: 42,
        ..Spec::default()
    })
}

/// The hidden-sampling fixture's statement, as deterministic: 40 rows sampled at 1/4 under
/// a seeded key.
fn stored_hidden() -> common::Fixture {
    let base = fixture(Spec {
        seed: 43,
        rows: 40,
        ..Spec::default()
    });
    let key = SamplingKey::generate(&mut StdRng::seed_from_u64(43));
    let dataset = base.dataset.with_sampling_key(key.clone());
    let sampling = HiddenSampling {
        key: key.commitment(),
        rate: SamplingRate::from_probability(0.25).unwrap(),
    };
    let statement = Statement::with_hidden_sampling(
        context(5),
        base.statement.model,
        base.statement.params.clip_norm,
        dataset.commitment(),
        [11; 32],
        sampling,
    )
    .unwrap();
    common::Fixture { dataset, statement }
}

/// A stored fixture: the update and its proof.
fn load(path: &str) -> (ClippedGradientSum, Vec<u8>) {
    let bytes = std::fs::read(path).expect("fixture present");
    postcard::from_bytes(&bytes).expect("fixture decodes")
}

#[test]
fn stored_proof_still_verifies() {
    let (update, proof) = load(FIXTURE);
    let f = stored();
    verify(&f.statement, &update, &proof)
        .expect("the stored proof no longer verifies: bump PROTOCOL_VERSION");
    let mut other = update.clone();
    *other.values.last_mut().expect("a bias") += 1;
    assert!(verify(&f.statement, &other, &proof).is_err());
}

#[test]
fn stored_hidden_sampling_proof_still_verifies() {
    let (update, proof) = load(HIDDEN_FIXTURE);
    let f = stored_hidden();
    verify(&f.statement, &update, &proof)
        .expect("the stored hidden-sampling proof no longer verifies: bump PROTOCOL_VERSION");
    // The statement's sampling is bound: another rate or another attempt's seed refuses it.
    let mut faster = f.statement.clone();
    let sampling = faster.sampling.as_mut().unwrap();
    sampling.rate = SamplingRate::from_probability(0.3).unwrap();
    assert!(verify(&faster, &update, &proof).is_err());
    let mut reseeded = f.statement.clone();
    reseeded.seed[0] ^= 1;
    assert!(verify(&reseeded, &update, &proof).is_err());
}

#[test]
#[ignore = "writes the fixtures; run by hand after a deliberate format change"]
fn regenerate() {
    for (f, path) in [(stored(), FIXTURE), (stored_hidden(), HIDDEN_FIXTURE)] {
        let (update, proof) = prove(&f.statement, &f.dataset).unwrap();
        std::fs::write(path, postcard::to_allocvec(&(update, proof)).unwrap()).unwrap();
    }
}

#[test]
fn stored_proof_carries_one_salt_per_distinct_height_in_each_commitment() {
    let (_, proof) = load(FIXTURE);
    let f = stored();
    let proof = zkfed_air::proof::decode_proof(&proof).expect("proof decodes");
    let mut heights = zkfed_air::engine::TableHeights::of(&f.statement).all();
    heights.sort_unstable();
    heights.dedup();
    // Each commitment (randomization, main, quotient, LogUp) holds matrices of every table,
    // at heights proportional to the tables' heights.
    let openings = &proof.opening_proof.1.input_openings;
    assert_eq!(openings.len(), 4);
    for (batch, opening) in openings.iter().enumerate() {
        let salts = &opening.opening_proof.0;
        assert_eq!(salts.len(), zkfed_air::config::NUM_QUERIES, "batch {batch}");
        for at_query in salts {
            assert_eq!(at_query.len(), heights.len(), "batch {batch}");
            assert!(
                at_query
                    .iter()
                    .all(|salt| salt.len() == zkfed_air::leaf_salts::SALT_ELEMS)
            );
        }
    }
}
