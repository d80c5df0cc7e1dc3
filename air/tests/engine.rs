//! The multi-table engine: honest proofs verify; what the statement fixes cannot change.

mod common;

use common::{Spec, fixture};
use zkfed_air::engine::proof::{prove, verify};
use zkfed_air::reference::example_training_step;

#[test]
fn honest_proof_verifies_and_attests_to_the_reference_update() {
    let f = fixture(Spec::default());
    let (update, bytes) = prove(&f.statement, &f.dataset).expect("honest proof");
    verify(&f.statement, &update, &bytes).expect("honest proof verifies");
    let mut expected = zkfed_air::ClippedGradientSum::zero(5);
    for &i in &f.statement.batch_indices {
        let (x, y, _) = f.dataset.row(i as usize);
        let step = example_training_step(&f.statement.model, x, y, f.statement.params.clip_norm);
        expected.add_example(step.coeff, x);
    }
    assert_eq!(update, expected);
    let mut changed = update.clone();
    changed.weights[2] += 1;
    assert!(verify(&f.statement, &changed, &bytes).is_err());
    eprintln!("proof bytes: {}", bytes.len());
}
