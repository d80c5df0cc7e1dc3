//! A proof stored in the repository must keep verifying: if the proof format, the trace
//! layout or the statement encoding changes, this fails loudly, and `PROTOCOL_VERSION`
//! must be bumped and the fixture regenerated with
//! `cargo test --release -p zkfed-air --test stored_proof -- --ignored regenerate`.

mod common;

use common::{Spec, fixture};
use zkfed_air::{ClippedGradientSum, prove, verify};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proof_v4.bin");

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
    other.bias += 1;
    assert!(verify(&f.statement, &other, &proof).is_err());
}

#[test]
#[ignore = "writes the fixture; run by hand after a deliberate format change"]
fn regenerate() {
    let f = stored();
    let (update, proof) = prove(&f.statement, &f.dataset).unwrap();
    std::fs::write(FIXTURE, postcard::to_allocvec(&(update, proof)).unwrap()).unwrap();
}
