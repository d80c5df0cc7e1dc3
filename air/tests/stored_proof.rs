//! A proof stored in the repository must keep verifying: if the proof format, the trace
//! layout or the statement encoding changes, this fails loudly, and `PROTOCOL_VERSION`
//! must be bumped and the fixture regenerated with
//! `cargo test --release -p zkfed-air --test stored_proof -- --ignored regenerate`.

mod common;

use common::{Spec, fixture};
use zkfed_air::{ClippedGradientSum, prove, verify};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proof_v6.bin");

/// The fixture's statement is deterministic: seeded data, salts and seed.
fn stored() -> common::Fixture {
    fixture(Spec {
        seed: 42,
        ..Spec::default()
    })
}

fn decode(bytes: &[u8]) -> (ClippedGradientSum, Vec<u8>) {
    postcard::from_bytes(bytes).expect("fixture decodes")
}

#[test]
fn stored_proof_still_verifies() {
    let bytes = std::fs::read(FIXTURE).expect("fixture present");
    let (update, proof) = decode(&bytes);
    let f = stored();
    verify(&f.statement, &update, &proof)
        .expect("the stored proof no longer verifies: bump PROTOCOL_VERSION");
    let mut other = update.clone();
    *other.values.last_mut().expect("a bias") += 1;
    assert!(verify(&f.statement, &other, &proof).is_err());
}

#[test]
#[ignore = "writes the fixture; run by hand after a deliberate format change"]
fn regenerate() {
    let f = stored();
    let (update, proof) = prove(&f.statement, &f.dataset).unwrap();
    std::fs::write(FIXTURE, postcard::to_allocvec(&(update, proof)).unwrap()).unwrap();
}

#[test]
fn stored_proof_carries_one_salt_per_distinct_height_in_each_commitment() {
    let bytes = std::fs::read(FIXTURE).expect("fixture present");
    let (_, proof) = decode(&bytes);
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
