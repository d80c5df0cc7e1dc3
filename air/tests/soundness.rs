//! Soundness: every cheat that lives in the proof (ARCHITECTURE.md, "Invariants", the table
//! of cheats) is mounted by a dishonest prover (a forged witness, a forged trace or a
//! tampered proof) and must be rejected.
//!
//! Forged traces are checked twice: Plonky3's constraint checker must find a violated
//! constraint, and a real proof of the forged trace must fail verification. The second
//! half needs a release build (debug builds of Plonky3 refuse to prove a violating trace,
//! which the helper also accepts as a rejection); README's test command is a release build.

mod common;

use common::*;
use p3_air::check_all_constraints;
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_matrix::dense::RowMajorMatrix;
use p3_uni_stark::Proof;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_air::config::{ZkConfig, zk_config};
use zkfed_air::fixed::{ONE, to_field};
use zkfed_air::forgery::stacked_trace;
use zkfed_air::generation::generate_trace;
use zkfed_air::proof::{VerifyError, decode_proof, encode_proof, prove_trace};
use zkfed_air::{ClippedGradientAir, ClippedGradientSum, Model, Statement, prove, verify};

/// The forged trace violates a constraint, and a proof of it does not verify.
fn assert_rejected(
    statement: &Statement,
    trace: RowMajorMatrix<Goldilocks>,
    update: &ClippedGradientSum,
    what: &str,
) {
    let air = ClippedGradientAir::new(statement);
    let public = statement.public_values(update);
    let report = check_all_constraints(&air, &trace, &public, Some(1));
    assert!(
        !report.is_ok(),
        "{what}: the forged trace satisfies every constraint"
    );
    match prove_trace(statement, trace, update) {
        Err(e) => {
            // Only debug builds check constraints before proving.
            let debug = cfg!(debug_assertions);
            assert!(debug, "{what}: release prover refused: {e}");
        }
        Ok(bytes) => {
            // The STARK verifier itself must say no: not an earlier shape or statement check.
            let verdict = verify(statement, update, &bytes);
            assert!(
                matches!(verdict, Err(VerifyError::Rejected(_))),
                "{what}: expected the proof to be rejected, got {verdict:?}"
            );
        }
    }
}

/// A fixture whose every example is clipped (large features, small clip bound).
fn clipping_fixture() -> Fixture {
    fixture(Spec {
        clip: ONE / 8,
        feature_scale: 4 * ONE,
        ..Spec::default()
    })
}

fn honest(f: &Fixture) -> (RowMajorMatrix<Goldilocks>, ClippedGradientSum) {
    generate_trace(&f.statement, &f.dataset).expect("honest trace")
}

#[test]
fn honest_trace_satisfies_every_constraint() {
    let f = clipping_fixture();
    let (trace, update) = honest(&f);
    let air = ClippedGradientAir::new(&f.statement);
    let report = check_all_constraints(&air, &trace, &f.statement.public_values(&update), Some(3));
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn skipped_clipping_is_rejected() {
    let f = clipping_fixture();
    let (mut trace, _) = honest(&f);
    let row = clipping_row(&f, 0);
    let (_, s, _) = row_mut(&mut trace, row);
    assert_eq!(s.clipped, Goldilocks::ONE, "fixture must clip");
    let abs_r = zkfed_air::fixed::from_field(s.abs_residual).unwrap();
    let nu = zkfed_air::fixed::from_field(s.norm).unwrap();
    let neg = s.residual_neg == Goldilocks::ONE;
    s.clipped = Goldilocks::ZERO;
    s.coeff_abs = to_field(abs_r);
    s.coeff_norm = to_field(abs_r * nu);
    let bits = s.clipping_mut();
    set_bits(&mut bits.coeff_abs, abs_r);
    set_bits(&mut bits.clip_floor, 0);
    set_bits(&mut bits.clip_floor_gap, 0);
    set_bits(
        &mut bits.clip_slack,
        f.statement.params.clip_norm * ONE - abs_r * nu,
    );
    let coeff = if neg { -abs_r } else { abs_r };
    set_block_coeff(&f, &mut trace, 0, coeff);
    let update = recompute_accumulators(&f, &mut trace);
    assert_rejected(&f.statement, trace, &update, "unclipped gradient");
}

#[test]
fn weakened_clipping_is_rejected() {
    let f = clipping_fixture();
    let (mut trace, _) = honest(&f);
    let row = clipping_row(&f, 1);
    let (_, s, _) = row_mut(&mut trace, row);
    let m = zkfed_air::fixed::from_field(s.coeff_abs).unwrap();
    let nu = zkfed_air::fixed::from_field(s.norm).unwrap();
    let neg = s.residual_neg == Goldilocks::ONE;
    // Clip to twice the bound: still "clipped", but |c|·ν > C·ONE.
    let weak = 2 * m + 1;
    s.coeff_abs = to_field(weak);
    s.coeff_norm = to_field(weak * nu);
    let rem = f.statement.params.clip_norm * ONE - weak * nu;
    let bits = s.clipping_mut();
    set_bits(&mut bits.coeff_abs, weak);
    set_bits(&mut bits.clip_floor, rem);
    set_bits(&mut bits.clip_floor_gap, nu - 1 - rem);
    set_block_coeff(&f, &mut trace, 1, if neg { -weak } else { weak });
    let update = recompute_accumulators(&f, &mut trace);
    assert_rejected(&f.statement, trace, &update, "clip bound doubled");
}

#[test]
fn understated_norm_is_rejected() {
    // A smaller ν would clip more loosely.
    let f = clipping_fixture();
    let (mut trace, _) = honest(&f);
    let row = activation_row(&f, 0);
    let nu = zkfed_air::fixed::from_field(row_mut(&mut trace, row).1.norm).unwrap() / 2;
    set_block(&f, &mut trace, 0, |s| s.norm = to_field(nu));
    set_bits(&mut row_mut(&mut trace, row).1.activation_mut().norm, nu);
    let update = recompute_accumulators(&f, &mut trace);
    assert_rejected(&f.statement, trace, &update, "halved norm");
}

#[test]
fn lying_about_the_sigmoid_case_is_rejected() {
    // Claim "not clamped" for an example whose logit saturates, so s = t > 1.
    let spec = Spec {
        weight_scale: 60 * ONE,
        ..Spec::default()
    };
    let f = fixture(spec);
    let (mut trace, _) = honest(&f);
    let rows = (0..spec.batch)
        .map(|i| activation_row(&f, i))
        .collect::<Vec<_>>();
    let row = rows
        .into_iter()
        .find(|&r| row_mut(&mut trace, r).1.above == Goldilocks::ONE)
        .expect("some example saturates high");
    let (_, s, _) = row_mut(&mut trace, row);
    let t = ONE / 2 + zkfed_air::fixed::from_field(s.quarter_logit).unwrap();
    s.above = Goldilocks::ZERO;
    s.sigmoid = to_field(t);
    set_bits(&mut s.activation_mut().clamp, t);
    set_bits(&mut s.activation_mut().clamp_mid, ONE - t);
    let update = recompute_accumulators(&f, &mut trace);
    assert_rejected(&f.statement, trace, &update, "unclamped sigmoid");
}

#[test]
fn flipped_residual_sign_is_rejected() {
    let f = fixture(Spec::default());
    let (mut trace, _) = honest(&f);
    let (_, s, _) = row_mut(&mut trace, activation_row(&f, 2));
    let c = zkfed_air::fixed::from_field(s.coeff).unwrap();
    set_block(&f, &mut trace, 2, |s| {
        s.residual_neg = Goldilocks::ONE - s.residual_neg
    });
    set_block_coeff(&f, &mut trace, 2, -c);
    let update = recompute_accumulators(&f, &mut trace);
    assert_rejected(&f.statement, trace, &update, "gradient sign flipped");
}

#[test]
fn coefficient_changing_inside_a_block_is_rejected() {
    let f = fixture(Spec {
        features: 13,
        ..Spec::default()
    });
    let (mut trace, _) = honest(&f);
    // Absorb row 0 of block 1 uses another coefficient than its scalar row proved.
    let block = f.statement.shape().block_len();
    row_mut(&mut trace, block).1.coeff += Goldilocks::from_u64(12345);
    let update = recompute_accumulators(&f, &mut trace);
    assert_rejected(
        &f.statement,
        trace,
        &update,
        "coefficient swapped mid-block",
    );
}

#[test]
fn non_boolean_label_is_rejected() {
    // A label of 2 doubles the residual's pull; the leaf is re-hashed so only the label rule fails.
    let f = fixture(Spec::default());
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for i in 0..12 {
        let (x, y, _) = f.dataset.row(i);
        features.push(x.to_vec());
        labels.push(y);
    }
    let i = f.statement.batch_indices[0] as usize;
    labels[i] = 2;
    let forged = fixture_with(features, labels, f.statement.model.clone(), Spec::default());
    let (trace, update) = generate_trace(&forged.statement, &forged.dataset).expect("trace");
    assert_rejected(&forged.statement, trace, &update, "label 2");
}

#[test]
fn out_of_range_feature_is_rejected() {
    let f = fixture(Spec::default());
    let (mut trace, _) = honest(&f);
    let (perm, s, _) = row_mut(&mut trace, 0);
    // x = 2^21 wraps the 21-bit decomposition; the forger writes the low bits.
    perm.inputs[0] = Goldilocks::from_u64(1 << 21);
    set_bits(s.x_bits_mut(0), (1 << 21) + (1 << 20));
    let update = recompute_accumulators(&f, &mut trace);
    assert_rejected(&f.statement, trace, &update, "feature 2^21");
}

#[test]
fn rows_not_under_the_enrolled_root_are_rejected() {
    // The same batch positions, but rows (and salts) of a dataset that was never enrolled.
    let enrolled = fixture(Spec::default());
    let other = fixture(Spec {
        seed: 99,
        ..Spec::default()
    });
    let mut statement = other.statement.clone();
    statement.dataset = enrolled.statement.dataset;
    let (trace, update) = generate_trace(&other.statement, &other.dataset).unwrap();
    assert_rejected(&statement, trace, &update, "rows of another dataset");
}

#[test]
fn batch_not_derived_from_the_seed_is_rejected() {
    let f = fixture(Spec::default());
    let mut cherry_picked = f.statement.clone();
    cherry_picked.batch_indices = vec![0, 1, 2, 3];
    assert_ne!(cherry_picked.batch_indices, f.statement.batch_indices);
    let (trace, update) = generate_trace(&cherry_picked, &f.dataset).unwrap();
    assert_rejected(&f.statement, trace, &update, "chosen rows");
    // A whole proof for the chosen rows fails against the seed's statement, and a
    // statement naming the chosen rows is refused outright.
    let (trace, update) = generate_trace(&cherry_picked, &f.dataset).unwrap();
    let proof = prove_trace(&cherry_picked, trace, &update).unwrap();
    assert!(verify(&f.statement, &update, &proof).is_err());
    assert!(matches!(
        verify(&cherry_picked, &update, &proof),
        Err(VerifyError::Statement(
            zkfed_air::ShapeError::BatchNotFromSeed
        ))
    ));
}

#[test]
fn stale_model_is_rejected() {
    let f = fixture(Spec::default());
    let mut stale = f.statement.clone();
    stale.model = Model {
        weights: vec![0; 5],
        bias: 0,
    };
    let (trace, update) = generate_trace(&stale, &f.dataset).unwrap();
    assert_rejected(&f.statement, trace, &update, "gradient of another model");
    let (update, proof) = prove(&stale, &f.dataset).unwrap();
    assert!(verify(&f.statement, &update, &proof).is_err());
}

#[test]
fn tampered_accumulator_is_rejected() {
    let f = fixture(Spec::default());
    let (mut trace, mut update) = honest(&f);
    let last = trace.values.len() / trace.width - 1;
    row_mut(&mut trace, last).2[0] += Goldilocks::ONE;
    update.weights[0] += 1;
    assert_rejected(
        &f.statement,
        trace,
        &update,
        "accumulator bumped on the last row",
    );
}

#[test]
fn tampered_logit_is_rejected() {
    let f = fixture(Spec::default());
    let (mut trace, _) = honest(&f);
    let row = activation_row(&f, 1);
    row_mut(&mut trace, row).1.logit += Goldilocks::from_u64(1 << 20);
    let update = recompute_accumulators(&f, &mut trace);
    assert_rejected(&f.statement, trace, &update, "logit shifted");
}

#[test]
fn nonzero_padding_lane_is_rejected() {
    // 9 features: preimage positions 9..13 (row 1, lanes 1..5) are zero padding.
    let f = fixture(Spec {
        features: 9,
        ..Spec::default()
    });
    let (mut trace, _) = honest(&f);
    row_mut(&mut trace, 1).0.inputs[2] = Goldilocks::from_u64(5);
    let update = recompute_accumulators(&f, &mut trace);
    assert_rejected(&f.statement, trace, &update, "padding lane set");
}

#[test]
fn wrong_leaf_iv_is_rejected() {
    let f = fixture(Spec::default());
    let (mut trace, _) = honest(&f);
    row_mut(&mut trace, 0).0.inputs[9] += Goldilocks::ONE;
    let update = recompute_accumulators(&f, &mut trace);
    assert_rejected(&f.statement, trace, &update, "leaf capacity changed");
}

#[test]
fn update_changed_after_proving_is_rejected() {
    let f = fixture(Spec::default());
    let (update, proof) = prove(&f.statement, &f.dataset).unwrap();
    verify(&f.statement, &update, &proof).expect("honest proof verifies");

    let mut scaled = update.clone();
    scaled.weights.iter_mut().for_each(|w| *w *= 2);
    scaled.bias *= 2;
    assert!(
        verify(&f.statement, &scaled, &proof).is_err(),
        "scaled update"
    );

    let mut nudged = update.clone();
    nudged.weights[3] += 1;
    assert!(
        verify(&f.statement, &nudged, &proof).is_err(),
        "one entry nudged"
    );

    let mut inflated = update.clone();
    inflated.examples += 1;
    assert!(matches!(
        verify(&f.statement, &inflated, &proof),
        Err(VerifyError::UpdateShape {
            what: "examples",
            ..
        })
    ));

    let mut wrapped = update.clone();
    wrapped.weights[0] = wrapped.weights[0].wrapping_add(0xFFFF_FFFF_0000_0001u64 as i64);
    assert!(
        verify(&f.statement, &wrapped, &proof).is_err(),
        "update shifted by p"
    );
}

#[test]
fn proof_replayed_under_another_statement_is_rejected() {
    let f = fixture(Spec::default());
    let (update, proof) = prove(&f.statement, &f.dataset).unwrap();
    type Change = Box<dyn Fn(&mut Statement)>;
    let variants: Vec<(&str, Change)> = vec![
        ("round", Box::new(|s| s.context.round += 1)),
        ("participant", Box::new(|s| s.context.participant[0] ^= 1)),
        ("run", Box::new(|s| s.context.federation_id[31] ^= 1)),
        ("seed", Box::new(|s| s.seed[0] ^= 1)),
        ("model", Box::new(|s| s.model.weights[0] += 1)),
        ("bias", Box::new(|s| s.model.bias += 1)),
        ("clip norm", Box::new(|s| s.params.clip_norm += 1)),
        ("row count", Box::new(|s| s.dataset.rows += 1)),
        ("root", Box::new(|s| s.dataset.root[2] ^= 1)),
        ("batch size", Box::new(|s| s.params.batch_size += 1)),
    ];
    for (what, change) in variants {
        // The verifier builds its statement from public data, re-deriving the batch.
        let mut s = f.statement.clone();
        change(&mut s);
        let other = Statement::new(s.context, s.model, s.params, s.dataset, s.seed).unwrap();
        let mut claimed = update.clone();
        claimed.examples = other.params.batch_size as u64;
        assert!(
            verify(&other, &claimed, &proof).is_err(),
            "replay with another {what} verified"
        );
    }
}

#[test]
fn random_bit_flips_are_all_rejected() {
    let f = fixture(Spec::default());
    let (update, proof) = prove(&f.statement, &f.dataset).unwrap();
    let mut rng = StdRng::seed_from_u64(2024);
    let mut faults = 0;
    for _ in 0..256 {
        let mut bytes = proof.clone();
        let bit = rng.random_range(0..bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        match verify(&f.statement, &update, &bytes) {
            Ok(()) => panic!("bit {bit} flipped and the proof still verified"),
            Err(VerifyError::VerifierFault) => faults += 1,
            Err(_) => {}
        }
    }
    eprintln!("256 flips rejected; {faults} of them tripped an (isolated) verifier fault");
}

#[test]
fn truncated_empty_garbage_and_oversized_bytes_are_rejected() {
    let f = fixture(Spec::default());
    let (update, proof) = prove(&f.statement, &f.dataset).unwrap();
    for len in [0, 3, 4, 8, 9, 100, proof.len() / 2, proof.len() - 1] {
        assert!(
            verify(&f.statement, &update, &proof[..len]).is_err(),
            "truncated to {len}"
        );
    }
    let mut rng = StdRng::seed_from_u64(5);
    for len in [16usize, 1000, 200_000] {
        let mut garbage: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        garbage[..8].copy_from_slice(&proof[..8]);
        assert!(
            verify(&f.statement, &update, &garbage).is_err(),
            "garbage of {len} bytes"
        );
    }
    let mut longer = proof.clone();
    longer.extend_from_slice(&[0; 64]);
    assert!(
        verify(&f.statement, &update, &longer).is_err(),
        "trailing bytes"
    );
    let oversized = vec![0u8; zkfed_air::proof::MAX_PROOF_BYTES + 1];
    assert!(matches!(
        verify(&f.statement, &update, &oversized),
        Err(VerifyError::TooLarge { .. })
    ));
    // Bytes beyond the shape's allowance are refused before decoding, so the decoder's
    // amplification (empty inner vectors: 24 bytes each from one) stays tied to the shape.
    let allowance = zkfed_air::proof::max_proof_bytes(&f.statement.shape());
    assert!(
        proof.len() * 3 <= allowance,
        "an honest proof ({} bytes) has room: {allowance}",
        proof.len()
    );
    let mut inflated = proof.clone();
    inflated.resize(allowance + 1, 0);
    assert_eq!(
        verify(&f.statement, &update, &inflated),
        Err(VerifyError::TooLarge {
            got: allowance + 1,
            max: allowance
        })
    );
    let mut wrong_version = proof.clone();
    wrong_version[4] ^= 0xff;
    assert!(matches!(
        verify(&f.statement, &update, &wrong_version),
        Err(VerifyError::Version { .. })
    ));
}

#[test]
fn label_not_from_the_committed_row_is_rejected() {
    // Flip the label the arithmetic uses while the leaf keeps the committed one.
    let f = fixture(Spec::default());
    let (mut trace, _) = honest(&f);
    set_block(&f, &mut trace, 0, |s| s.label = Goldilocks::ONE - s.label);
    let update = recompute_accumulators(&f, &mut trace);
    assert_rejected(&f.statement, trace, &update, "label swapped");
}

#[test]
fn residual_changed_between_activation_and_clipping_is_rejected() {
    // Carry a smaller |r| to the clipping row so the example escapes clipping.
    let f = clipping_fixture();
    let (mut trace, _) = honest(&f);
    let row = clipping_row(&f, 0);
    let (_, s, _) = row_mut(&mut trace, row);
    let nu = zkfed_air::fixed::from_field(s.norm).unwrap();
    let small = (f.statement.params.clip_norm * ONE) / nu; // |r|·ν ≤ C·ONE: no clipping
    let neg = s.residual_neg == Goldilocks::ONE;
    s.abs_residual = to_field(small);
    s.clipped = Goldilocks::ZERO;
    s.grad_norm = to_field(small * nu);
    s.coeff_abs = to_field(small);
    s.coeff_norm = to_field(small * nu);
    let bits = s.clipping_mut();
    set_bits(
        &mut bits.clip_slack,
        f.statement.params.clip_norm * ONE - small * nu,
    );
    set_bits(&mut bits.coeff_abs, small);
    set_bits(&mut bits.clip_floor, 0);
    set_bits(&mut bits.clip_floor_gap, 0);
    // Every later row of the block agrees with the forged value.
    let block = f.statement.shape().block_len();
    for r in row..block {
        row_mut(&mut trace, r).1.abs_residual = to_field(small);
    }
    set_block_coeff(&f, &mut trace, 0, if neg { -small } else { small });
    let update = recompute_accumulators(&f, &mut trace);
    assert_rejected(&f.statement, trace, &update, "residual shrunk between rows");
}

#[test]
fn non_boolean_pool_bit_is_rejected() {
    // Spell the same |r| with a "bit" of 2 in place of a 1 one place up: only booleanity fails.
    let f = fixture(Spec::default());
    let (mut trace, update) = honest(&f);
    let (_, s, _) = row_mut(&mut trace, activation_row(&f, 0));
    let bits = &mut s.activation_mut().abs_residual;
    let i = (1..bits.len())
        .find(|&i| bits[i] == Goldilocks::ONE)
        .expect("|r| > 1");
    bits[i] = Goldilocks::ZERO;
    bits[i - 1] += Goldilocks::TWO;
    assert_rejected(&f.statement, trace, &update, "bit valued 2 or 3");
}

#[test]
fn broken_sponge_chain_is_rejected() {
    // Restart the sponge on the second absorb row instead of chaining its capacity.
    let f = fixture(Spec {
        features: 13,
        ..Spec::default()
    });
    let (mut trace, update) = honest(&f);
    row_mut(&mut trace, 1).0.inputs[8] += Goldilocks::ONE;
    assert_rejected(&f.statement, trace, &update, "capacity not chained");
}

#[test]
fn understated_squared_norm_is_rejected() {
    // Shrink the running ||x||² on the arithmetic rows (with a matching ν) to dodge clipping.
    let f = clipping_fixture();
    let (mut trace, _) = honest(&f);
    let act = activation_row(&f, 0);
    let n = zkfed_air::fixed::from_field(row_mut(&mut trace, act).1.norm_sq).unwrap() / 4;
    let nu = zkfed_air::fixed::ceil_sqrt(n);
    let block = f.statement.shape().block_len();
    for r in act..block {
        row_mut(&mut trace, r).1.norm_sq = to_field(n);
    }
    set_block(&f, &mut trace, 0, |s| s.norm = to_field(nu));
    let bits = row_mut(&mut trace, act).1.activation_mut();
    set_bits(&mut bits.norm, nu);
    set_bits(&mut bits.norm_upper, nu * nu - n);
    let bits = row_mut(&mut trace, act + 1).1.clipping_mut();
    set_bits(&mut bits.norm_lower, n - (nu - 1) * (nu - 1) - 1);
    let update = recompute_accumulators(&f, &mut trace);
    assert_rejected(&f.statement, trace, &update, "squared norm quartered");
}

#[test]
fn overstated_norm_is_rejected() {
    // A larger ν clips harder than the reference: a different function, so rejected too.
    let f = fixture(Spec::default());
    let (mut trace, update) = honest(&f);
    let row = activation_row(&f, 1);
    let nu = zkfed_air::fixed::from_field(row_mut(&mut trace, row).1.norm).unwrap() + 1;
    let n = zkfed_air::fixed::from_field(row_mut(&mut trace, row).1.norm_sq).unwrap();
    set_block(&f, &mut trace, 1, |s| s.norm = to_field(nu));
    let bits = row_mut(&mut trace, row).1.activation_mut();
    set_bits(&mut bits.norm, nu);
    set_bits(&mut bits.norm_upper, nu * nu - n);
    assert_rejected(&f.statement, trace, &update, "norm plus one");
}

#[test]
fn overclipped_coefficient_is_rejected() {
    // |c| one below floor(C·ONE/ν): still within the bound, but not the reference function.
    let f = clipping_fixture();
    let (mut trace, _) = honest(&f);
    let row = clipping_row(&f, 0);
    let (_, s, _) = row_mut(&mut trace, row);
    let m = zkfed_air::fixed::from_field(s.coeff_abs).unwrap() - 1;
    let nu = zkfed_air::fixed::from_field(s.norm).unwrap();
    let neg = s.residual_neg == Goldilocks::ONE;
    s.coeff_abs = to_field(m);
    s.coeff_norm = to_field(m * nu);
    let rem = f.statement.params.clip_norm * ONE - m * nu;
    let bits = s.clipping_mut();
    set_bits(&mut bits.coeff_abs, m);
    set_bits(&mut bits.clip_floor, rem);
    set_bits(&mut bits.clip_floor_gap, nu - 1 - rem);
    set_block_coeff(&f, &mut trace, 0, if neg { -m } else { m });
    let update = recompute_accumulators(&f, &mut trace);
    assert_rejected(
        &f.statement,
        trace,
        &update,
        "coefficient one below the floor",
    );
}

#[test]
fn accumulator_not_starting_at_zero_is_rejected() {
    // Start the update sum at a chosen offset: every transition still holds.
    let f = fixture(Spec::default());
    let (mut trace, mut update) = honest(&f);
    let offset = Goldilocks::from_u64(1 << 30);
    let height = trace.values.len() / trace.width;
    for r in 0..height {
        row_mut(&mut trace, r).2[2] += offset;
    }
    update.weights[2] += 1 << 30;
    assert_rejected(&f.statement, trace, &update, "accumulator offset");
}

#[test]
fn forged_permutation_cell_is_rejected() {
    // A Merkle row whose permutation output is swapped for another value.
    let f = fixture(Spec::default());
    let (mut trace, update) = honest(&f);
    let row = activation_row(&f, 2) + 1;
    row_mut(&mut trace, row).0.partial_rounds[5].post_sbox += Goldilocks::ONE;
    assert_rejected(&f.statement, trace, &update, "permutation cell changed");
}

// ---------------------------------------------------------------------------------------
// Proof shape: the verifier takes no dimension from the proof that the statement fixes.
// ---------------------------------------------------------------------------------------

/// Proves a stacked trace and checks that only the statement's shape stops it: the trace
/// satisfies every constraint, Plonky3's own verifier accepts the proof, the update is
/// inflated, and `verify` rejects it for its height.
fn assert_stacked_trace_rejected(spec: Spec, copies: usize) {
    let f = fixture(spec);
    let (_, honest_update) = honest(&f);
    let (tall, update) = stacked_trace(&f.statement, &f.dataset, copies).unwrap();
    let air = ClippedGradientAir::new(&f.statement);
    let public = f.statement.public_values(&update);
    let report = check_all_constraints(&air, &tall, &public, Some(1));
    assert!(
        report.is_ok(),
        "stacked trace must be a valid witness: {report:?}"
    );
    assert_eq!(
        update.examples, honest_update.examples,
        "count still says B"
    );
    assert_ne!(update, honest_update, "the stacked update must differ");
    let bytes = prove_trace(&f.statement, tall, &update).expect("the prover takes any height");

    // Without the shape check, Plonky3 accepts it: the hole is real.
    let proof = decode_proof(&bytes).expect("well-formed proof");
    assert!(
        p3_uni_stark::verify(&zk_config(), &air, &proof, &public).is_ok(),
        "Plonky3 alone should accept the stacked proof (else this test shows nothing)"
    );

    let log_height = f.statement.shape().log_height() as u64;
    let verdict = verify(&f.statement, &update, &bytes);
    assert_eq!(
        verdict,
        Err(VerifyError::ProofShape {
            field: "degree_bits",
            expected: log_height + 1,
            got: log_height + 1 + copies.trailing_zeros() as u64,
        })
    );
}

#[test]
fn doubled_trace_is_rejected_for_its_height() {
    assert_stacked_trace_rejected(Spec::default(), 2);
}

#[test]
fn quadrupled_trace_is_rejected_for_its_height() {
    assert_stacked_trace_rejected(Spec::default(), 4);
}

#[test]
fn doubled_trace_without_padding_rows_is_rejected_for_its_height() {
    // 32 blocks of 3 absorb + 5 Merkle rows fill 256 rows exactly: the copy's first row
    // follows the last block's root row directly, with no padding in between.
    let spec = Spec {
        features: 16,
        rows: 32,
        batch: 32,
        ..Spec::default()
    };
    let shape = fixture(spec).statement.shape();
    assert_eq!(
        shape.batch * shape.block_len(),
        shape.height(),
        "no padding"
    );
    assert_stacked_trace_rejected(spec, 2);
}

/// How a mutated proof must be refused.
#[derive(Debug)]
enum Refusal {
    /// By zkfed's own shape check, naming the field, before Plonky3 sees the proof.
    Shape(&'static str),
    /// By Plonky3's verifier, returning an error (never a panic).
    Stark,
}

/// A Merkle commitment of the proof.
type Cap = p3_symmetric::MerkleCap<Goldilocks, [Goldilocks; 4]>;

/// One change to one field of a decoded proof.
type Mutation = fn(&mut Proof<ZkConfig>);

/// Every field of a decoded proof that carries a length, a count or a grinding witness,
/// changed one at a time and re-encoded (ARCHITECTURE.md, "What the verifier takes from a
/// proof"): each is rejected with an error, and the ones zkfed checks itself name the field.
#[test]
fn every_proof_dimension_changed_is_rejected_without_a_panic() {
    use Refusal::{Shape, Stark};
    let f = fixture(Spec::default());
    let (update, bytes) = prove(&f.statement, &f.dataset).unwrap();
    verify(&f.statement, &update, &bytes).expect("the unmutated proof verifies");
    let cases: Vec<(&str, Refusal, Mutation)> = vec![
        ("degree_bits - 1", Shape("degree_bits"), |p| {
            p.degree_bits -= 1
        }),
        ("degree_bits + 1", Shape("degree_bits"), |p| {
            p.degree_bits += 1
        }),
        ("degree_bits huge", Shape("degree_bits"), |p| {
            p.degree_bits = usize::MAX
        }),
        (
            "trace cap of two roots",
            Shape("trace commitment roots"),
            |p| p.commitments.trace = Cap::new(vec![p.commitments.trace.roots()[0]; 2]),
        ),
        (
            "quotient cap of two roots",
            Shape("quotient commitment roots"),
            |p| {
                let root = p.commitments.quotient_chunks.roots()[0];
                p.commitments.quotient_chunks = Cap::new(vec![root; 2])
            },
        ),
        (
            "random cap of two roots",
            Shape("randomization commitment roots"),
            |p| {
                let root = p.commitments.random.as_ref().unwrap().roots()[0];
                p.commitments.random = Some(Cap::new(vec![root; 2]))
            },
        ),
        (
            "FRI commit cap of two roots",
            Shape("FRI commit-phase roots"),
            |p| {
                let commits = &mut p.opening_proof.1.commit_phase_commits;
                commits[0] = Cap::new(vec![commits[0].roots()[0]; 2])
            },
        ),
        ("no randomization commitment", Stark, |p| {
            p.commitments.random = None
        }),
        ("trace_local shorter", Stark, |p| {
            p.opened_values.trace_local.pop();
        }),
        ("trace_local longer", Stark, |p| {
            p.opened_values.trace_local.push(Default::default())
        }),
        ("trace_next absent", Stark, |p| {
            p.opened_values.trace_next = None
        }),
        ("trace_next shorter", Stark, |p| {
            p.opened_values.trace_next.as_mut().unwrap().pop();
        }),
        ("preprocessed present", Stark, |p| {
            p.opened_values.preprocessed = Some(p3_uni_stark::PreprocessedOpenedValues {
                local: vec![Default::default()],
                next: None,
            })
        }),
        ("one quotient chunk fewer", Stark, |p| {
            p.opened_values.quotient_chunks.pop();
        }),
        ("one quotient chunk more", Stark, |p| {
            let chunk = p.opened_values.quotient_chunks[0].clone();
            p.opened_values.quotient_chunks.push(chunk)
        }),
        ("quotient chunk longer", Stark, |p| {
            p.opened_values.quotient_chunks[0].push(Default::default())
        }),
        ("random opening absent", Stark, |p| {
            p.opened_values.random = None
        }),
        ("random opening longer", Stark, |p| {
            p.opened_values
                .random
                .as_mut()
                .unwrap()
                .push(Default::default())
        }),
        ("ood_pow_witness changed", Stark, |p| {
            p.ood_pow_witness += Goldilocks::ONE
        }),
        ("random codeword rounds fewer", Stark, |p| {
            p.opening_proof.0.pop();
        }),
        ("random codeword matrices fewer", Stark, |p| {
            p.opening_proof.0[2].pop();
        }),
        ("random codeword points fewer", Stark, |p| {
            p.opening_proof.0[1][0].pop();
        }),
        ("random codeword values fewer", Stark, |p| {
            p.opening_proof.0[1][0][0].pop();
        }),
        ("batch_pow_witness changed", Stark, |p| {
            p.opening_proof.1.batch_pow_witness += Goldilocks::ONE
        }),
        ("one FRI round fewer", Stark, |p| {
            p.opening_proof.1.commit_phase_commits.pop();
        }),
        ("one FRI round more", Stark, |p| {
            let commits = &mut p.opening_proof.1.commit_phase_commits;
            commits.push(commits[0].clone())
        }),
        ("commit_pow_witnesses fewer", Stark, |p| {
            p.opening_proof.1.commit_pow_witnesses.pop();
        }),
        ("commit_pow_witness changed", Stark, |p| {
            p.opening_proof.1.commit_pow_witnesses[0] += Goldilocks::ONE
        }),
        ("input batches fewer", Stark, |p| {
            p.opening_proof.1.input_openings.pop();
        }),
        ("input queries fewer", Stark, |p| {
            p.opening_proof.1.input_openings[1].opened_values.pop();
        }),
        ("input queries more", Stark, |p| {
            let values = &mut p.opening_proof.1.input_openings[1].opened_values;
            values.push(values[0].clone())
        }),
        ("input matrices fewer", Stark, |p| {
            p.opening_proof.1.input_openings[2].opened_values[0].pop();
        }),
        ("input row wider", Stark, |p| {
            p.opening_proof.1.input_openings[1].opened_values[0][0].push(Goldilocks::ZERO)
        }),
        ("input salts for fewer queries", Stark, |p| {
            p.opening_proof.1.input_openings[1].opening_proof.0.pop();
        }),
        ("input salt shorter", Stark, |p| {
            p.opening_proof.1.input_openings[1].opening_proof.0[0][0].pop();
        }),
        ("input Merkle siblings fewer", Stark, |p| {
            p.opening_proof.1.input_openings[1]
                .opening_proof
                .1
                .sibling_hashes
                .pop();
        }),
        ("input Merkle siblings more", Stark, |p| {
            let siblings = &mut p.opening_proof.1.input_openings[1]
                .opening_proof
                .1
                .sibling_hashes;
            siblings.push(siblings[0])
        }),
        ("FRI round openings fewer", Stark, |p| {
            p.opening_proof.1.commit_phase_openings.pop();
        }),
        ("FRI queries fewer", Stark, |p| {
            p.opening_proof.1.commit_phase_openings[0]
                .sibling_values
                .pop();
        }),
        ("FRI sibling values more", Stark, |p| {
            p.opening_proof.1.commit_phase_openings[0].sibling_values[0].push(Default::default())
        }),
        ("FRI round siblings fewer", Stark, |p| {
            p.opening_proof.1.commit_phase_openings[0]
                .opening_proof
                .1
                .sibling_hashes
                .pop();
        }),
        ("final_poly shorter", Stark, |p| {
            p.opening_proof.1.final_poly.pop();
        }),
        ("final_poly longer", Stark, |p| {
            p.opening_proof.1.final_poly.push(Default::default())
        }),
        ("query_pow_witness changed", Stark, |p| {
            p.opening_proof.1.query_pow_witness += Goldilocks::ONE
        }),
    ];
    for (what, refusal, mutate) in cases {
        let mut proof = decode_proof(&bytes).unwrap();
        mutate(&mut proof);
        let verdict = verify(&f.statement, &update, &encode_proof(&proof));
        match (&refusal, &verdict) {
            (Shape(field), Err(VerifyError::ProofShape { field: got, .. })) if field == got => {}
            (Stark, Err(VerifyError::Rejected(_))) => {}
            _ => panic!("{what}: expected {refusal:?}, got {verdict:?}"),
        }
    }
}
