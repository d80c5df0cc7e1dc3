//! Completeness: honest proofs verify and attest to the reference update.

mod common;

use common::{Spec, fixture};
use zkfed_air::reference::clipped_gradient_sum;
use zkfed_air::{prove, verify};

#[test]
fn honest_proof_verifies_and_matches_reference() {
    let f = fixture(Spec::default());
    let (update, proof) = prove(&f.statement, &f.dataset).expect("prove");
    verify(&f.statement, &update, &proof).expect("verify");
    let rows = f.statement.batch_indices.iter().map(|&i| {
        let (x, y, _) = f.dataset.row(i as usize);
        (x, y)
    });
    let reference = clipped_gradient_sum(&f.statement.model, rows, f.statement.params.clip_norm).unwrap();
    assert_eq!(update, reference);
    eprintln!("proof bytes: {}", proof.len());
}
