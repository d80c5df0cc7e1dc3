//! MLP proofs: completeness against the reference, and a cheating prover per rule of the
//! hidden table and the MLP's step row (ARCHITECTURE.md, "The MLP proof").

mod common;

use common::{Spec, mlp_fixture};
use zkfed_air::fixed::ONE;
use zkfed_air::network::network_gradient_sum;
use zkfed_air::{prove, verify};

fn reference(f: &common::Fixture) -> zkfed_air::ClippedGradientSum {
    let s = &f.statement;
    let rows = s.batch_indices.iter().map(|&i| {
        let (x, y, _) = f.dataset.row(i as usize);
        (x, y)
    });
    let d = s.model.num_features();
    network_gradient_sum(&s.model.spec, &s.model.params, d, rows, s.params.clip_norm).unwrap()
}

#[test]
fn honest_mlp_proofs_verify_and_match_the_reference() {
    for (seed, features, rows, batch, hidden, classes, clip) in [
        (1, 5, 12, 4, 3, 3, ONE),
        (2, 13, 33, 5, 8, 10, ONE / 4),
        (3, 2, 9, 9, 1, 2, 100 * ONE),
    ] {
        let spec = Spec {
            features,
            rows,
            batch,
            seed,
            clip,
            ..Spec::default()
        };
        let f = mlp_fixture(spec, hidden, classes);
        let (update, proof) = prove(&f.statement, &f.dataset).expect("prove");
        verify(&f.statement, &update, &proof).expect("verify");
        assert_eq!(update, reference(&f), "seed {seed}");
    }
}
