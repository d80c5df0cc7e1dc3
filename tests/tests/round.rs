//! One federated round through the public APIs only: commit, prove, verify bytes, aggregate.

use rand::SeedableRng;
use rand::rngs::StdRng;
use zkfed_aggregation::fedavg_step;
use zkfed_air::data::{Standardization, breast_cancer};
use zkfed_air::fixed::ONE;
use zkfed_air::{
    CommittedDataset, Model, ProofContext, RoundParams, Statement, clipped_gradient_sum, prove,
    verify,
};

#[test]
fn a_round_of_two_hospitals_aggregates_only_verified_updates() {
    let raw = breast_cancer();
    let rows = Standardization::fit(&raw).unwrap().apply(&raw).unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let model = Model::zeros(zkfed_air::spec::ModelSpec::Logistic, rows[0].len());
    let params = RoundParams {
        clip_norm: ONE,
        batch_size: 8,
    };
    let mut accepted = Vec::new();
    let mut expected = Vec::new();
    let mut previous: Option<(zkfed_air::ClippedGradientSum, Vec<u8>)> = None;
    for (k, part) in [&rows[..100], &rows[100..200]].into_iter().enumerate() {
        let labels = raw.labels[k * 100..(k + 1) * 100].to_vec();
        let dataset = CommittedDataset::commit(part.to_vec(), labels.clone(), &mut rng).unwrap();
        let context = ProofContext {
            federation_id: [9; 32],
            round: 1,
            participant: [k as u8; 32],
        };
        let statement = Statement::new(
            context,
            model.clone(),
            params,
            dataset.commitment(),
            [4; 32],
        )
        .unwrap();
        let (update, proof) = prove(&statement, &dataset).unwrap();
        verify(&statement, &update, &proof).unwrap();
        // Replaying the previous hospital's proof under this hospital's statement fails.
        if let Some((previous_update, previous_proof)) = &previous {
            assert!(verify(&statement, previous_update, previous_proof).is_err());
        }
        previous = Some((update.clone(), proof));
        let batch = statement
            .batch_indices
            .iter()
            .map(|&i| (&part[i as usize][..], labels[i as usize]));
        expected.push(clipped_gradient_sum(&model, batch, params.clip_norm).unwrap());
        accepted.push(update);
    }
    assert_eq!(accepted, expected);
    let next = fedavg_step(&model, &accepted, ONE).unwrap();
    assert_ne!(next, model, "a round moves the model");
}
