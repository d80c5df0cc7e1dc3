//! Completeness: honest proofs verify and attest to the reference update.

mod common;

use common::{Spec, fixture, fixture_with};
use zkfed_air::Model;
use zkfed_air::fixed::{ONE, PARAM_BOUND, X_OFFSET};
use zkfed_air::reference::clipped_gradient_sum;
use zkfed_air::{prove, verify};

#[test]
fn honest_proof_verifies_and_matches_reference() {
    prove_verify_matches_reference(&fixture(Spec::default()));
}

/// Proves the fixture's statement, verifies the bytes, and checks the proven update is the
/// reference update; returns it.
fn prove_verify_matches_reference(f: &common::Fixture) -> zkfed_air::ClippedGradientSum {
    let (update, proof) = prove(&f.statement, &f.dataset).expect("prove");
    verify(&f.statement, &update, &proof).expect("verify");
    let rows = f.statement.batch_indices.iter().map(|&i| {
        let (x, y, _) = f.dataset.row(i as usize);
        (x, y)
    });
    let reference =
        clipped_gradient_sum(&f.statement.model, rows, f.statement.params.clip_norm).unwrap();
    assert_eq!(
        update, reference,
        "the proof attests to the reference update"
    );
    update
}

#[test]
fn random_models_and_data_of_several_shapes() {
    for (seed, features, rows, batch) in
        [(1, 1, 2, 1), (2, 13, 33, 5), (3, 30, 40, 8), (4, 6, 9, 9)]
    {
        let spec = Spec {
            features,
            rows,
            batch,
            seed,
            clip: ONE / 2,
            ..Spec::default()
        };
        prove_verify_matches_reference(&fixture(spec));
    }
}

#[test]
fn gradient_exactly_at_the_clip_bound_is_not_clipped() {
    // x = 0, w = b = 0, y = 1: r = -1/2 and ||(x, 1)|| = 1, so ||g|| = 1/2 = C exactly.
    let spec = Spec {
        features: 1,
        rows: 2,
        batch: 2,
        clip: ONE / 2,
        ..Spec::default()
    };
    let f = fixture_with(
        vec![vec![0], vec![0]],
        vec![1, 1],
        Model::zeros(zkfed_air::spec::ModelSpec::Logistic, 1),
        spec,
    );
    let update = prove_verify_matches_reference(&f);
    assert_eq!(
        update.values[1],
        2 * (-ONE / 2) * ONE,
        "both examples keep c = r = -1/2"
    );
}

#[test]
fn zero_gradients_prove() {
    // Saturated, correctly classified examples have r = 0.
    let spec = Spec {
        features: 2,
        rows: 3,
        batch: 3,
        ..Spec::default()
    };
    let model = Model::logistic(vec![100 * ONE, 0], 0);
    let f = fixture_with(
        vec![vec![ONE, 5], vec![2 * ONE, -7], vec![3 * ONE, 0]],
        vec![1, 1, 1],
        model,
        spec,
    );
    let update = prove_verify_matches_reference(&f);
    assert_eq!(update.values, vec![0, 0, 0]);
}

#[test]
fn extreme_features_and_weights_prove() {
    let lo = -X_OFFSET;
    let hi = X_OFFSET - 1;
    let w = PARAM_BOUND - 1;
    let features = vec![
        vec![hi; 9],
        vec![lo; 9],
        vec![hi, lo, hi, lo, 0, hi, lo, hi, lo],
        vec![0; 9],
    ];
    let labels = vec![0, 1, 1, 0];
    for (model, clip) in [
        (Model::logistic(vec![w; 9], w), PARAM_BOUND - 1),
        (Model::logistic(vec![-w; 9], -w), 1),
        (Model::logistic(vec![w, -w, w, -w, w, -w, w, -w, w], 0), ONE),
    ] {
        let spec = Spec {
            features: 9,
            rows: 4,
            batch: 4,
            clip,
            ..Spec::default()
        };
        prove_verify_matches_reference(&fixture_with(
            features.clone(),
            labels.clone(),
            model,
            spec,
        ));
    }
}
