//! Soundness of the multi-table engine: every cheat that lives in the proof (ARCHITECTURE.md,
//! "Invariants", the table of cheats) is mounted by a dishonest prover (a forged witness, a
//! forged trace or a tampered proof) and must be rejected by the STARK verifier itself.
//!
//! Each forged witness is first diagnosed: the test names the rule that catches it (a
//! table's constraints, checked row by row, or the buses, checked as multisets), so a cheat
//! that slips past its intended rule cannot hide behind another. Then it is proved, and the
//! proof must fail verification (`VerifyError::Rejected`). That half needs a release build
//! (debug builds of Plonky3 refuse to prove a violating witness, which the helper also
//! accepts as a rejection); README's test command is a release build.

mod common;

use common::*;
use p3_field::{PrimeCharacteristicRing, PrimeField64};
use p3_goldilocks::Goldilocks;
use p3_matrix::dense::RowMajorMatrix;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_air::config::Challenge;
use zkfed_air::engine::hash_table::{HashCols, NUM_HASH_COLS};
use zkfed_air::engine::limbs::write_limbs;
use zkfed_air::engine::step_table::{NUM_STEP_COLS, StepCols};
use zkfed_air::engine::witness::{Traces, generate_traces};
use zkfed_air::fixed::{ONE, from_field, to_field};
use zkfed_air::forgery::{rebalance, stacked_traces};
use zkfed_air::proof::VerifyError;
use zkfed_air::proof::{prove_traces, verify};
use zkfed_air::prove;
use zkfed_air::spec::ModelSpec;
use zkfed_air::{ClippedGradientSum, Model, Statement};

/// [`assert_rejected`] by the lookup table's own constraints alone, for a forgery that
/// balances every bus and keeps every other table's rules.
fn assert_rejected_with_buses_balanced(
    statement: &Statement,
    traces: &Traces,
    update: &ClippedGradientSum,
    what: &str,
) {
    let broken = broken_rules(statement, traces, update);
    assert_eq!(
        broken,
        [Rule::Lookup],
        "{what}: only the lookup table's rules break"
    );
    assert_rejected(statement, traces, update, Rule::Lookup, what);
}

/// Rebalances the buses around forged traces and requires `rule` to catch them; returns
/// the update the forgery claims.
fn assert_rejected_rebalanced(
    f: &Fixture,
    t: &mut Traces,
    rule: Rule,
    what: &str,
) -> ClippedGradientSum {
    let update = rebalance(&f.statement, t).unwrap();
    assert_rejected(&f.statement, t, &update, rule, what);
    update
}

/// The forged traces break `rule`, and a proof of them does not verify.
fn assert_rejected(
    statement: &Statement,
    traces: &Traces,
    update: &ClippedGradientSum,
    rule: Rule,
    what: &str,
) {
    let broken = broken_rules(statement, traces, update);
    assert!(
        broken.contains(&rule),
        "{what}: expected {rule:?} to catch it, broken: {broken:?}"
    );
    match prove_traces(statement, traces, update) {
        Err(e) => {
            // Only debug builds check the witness before proving.
            let debug = cfg!(debug_assertions);
            assert!(debug, "{what}: release prover refused: {e}");
        }
        Ok(bytes) => {
            let verdict = verify(statement, update, &bytes);
            assert!(
                matches!(verdict, Err(VerifyError::Rejected(_))),
                "{what}: expected the STARK verifier to reject, got {verdict:?}"
            );
        }
    }
}

fn honest(f: &Fixture) -> Traces {
    generate_traces(&f.statement, &f.dataset).expect("honest traces")
}

/// A fixture whose every example is clipped (large features, small clip bound).
fn clipping_fixture() -> Fixture {
    fixture(Spec {
        clip: ONE / 8,
        feature_scale: 4 * ONE,
        ..Spec::default()
    })
}

fn hash_row(t: &mut Traces, row: usize) -> &mut HashCols<Goldilocks> {
    HashCols::from_row_mut(&mut t.hash.values[row * NUM_HASH_COLS..(row + 1) * NUM_HASH_COLS])
}

fn step_row(t: &mut Traces, i: usize) -> &mut StepCols<Goldilocks> {
    StepCols::from_row_mut(&mut t.step.values[i * NUM_STEP_COLS..(i + 1) * NUM_STEP_COLS])
}

/// The first row of example `i`'s block, and the block's first Merkle row.
fn block(f: &Fixture, i: usize) -> (usize, usize) {
    let shape = f.statement.shape();
    (
        i * shape.block_len(),
        i * shape.block_len() + shape.chunks(),
    )
}

fn int(v: Goldilocks) -> i64 {
    from_field(v).expect("small value")
}

/// The value 11-bit limbs spell.
fn spelled(limbs: &[Goldilocks]) -> i64 {
    limbs.iter().rev().fold(0, |acc, &l| (acc << 11) + int(l))
}

/// Makes example `i` use `coeff` everywhere it appears (step row, hash block, shares) and
/// rebalances the buses; returns the update they now balance with.
fn set_coeff(f: &Fixture, t: &mut Traces, i: usize, coeff: i64) -> ClippedGradientSum {
    step_row(t, i).coeff = to_field(coeff);
    let (start, _) = block(f, i);
    let shape = f.statement.shape();
    for offset in 0..shape.block_len() {
        let c = hash_row(t, start + offset);
        c.coeff = to_field(coeff);
        for lane in 0..8 {
            if c.share[lane] != Goldilocks::ZERO {
                c.share[lane] = c.coeff * c.input[lane];
            }
        }
    }
    rebalance(&f.statement, t).expect("small update")
}

/// Re-witnesses example `i`'s step row for another logit, squared norm or label (as the
/// reference computes the step from them), makes the example use the new coefficient
/// everywhere and rebalances the buses; returns the update they now balance with.
fn rewitness_step(
    f: &Fixture,
    t: &mut Traces,
    i: usize,
    change: impl Fn(i64, i64, u8) -> (i64, i64, u8),
) -> ClippedGradientSum {
    let clip = f.statement.params.clip_norm;
    let c = step_row(t, i);
    let (logit, norm_sq, y) = change(int(c.logit), int(c.norm_sq), int(c.label) as u8);
    let step = zkfed_air::reference::training_step(logit, norm_sq, y, clip);
    zkfed_air::engine::witness::write_step_row(c, y, &step, clip).unwrap();
    set_coeff(f, t, i, step.coeff)
}

#[test]
fn honest_traces_satisfy_every_rule_and_verify() {
    let f = clipping_fixture();
    let t = honest(&f);
    assert_eq!(broken_rules(&f.statement, &t, &t.update), []);
    let (update, proof) = prove(&f.statement, &f.dataset).unwrap();
    assert_eq!(update, t.update);
    verify(&f.statement, &update, &proof).expect("honest proof verifies");
}

// ---------------------------------------------------------------------------------------
// The training step (step table).
// ---------------------------------------------------------------------------------------

#[test]
fn skipped_clipping_is_rejected() {
    let f = clipping_fixture();
    let mut t = honest(&f);
    let c = step_row(&mut t, 0);
    assert_eq!(c.clipped, Goldilocks::ONE, "fixture must clip");
    let abs_r = spelled(&c.abs_residual);
    let nu = spelled(&c.norm);
    c.clipped = Goldilocks::ZERO;
    write_limbs(&mut c.coeff_abs, abs_r, 22, "m").unwrap();
    c.coeff_norm = to_field(abs_r * nu);
    write_limbs(&mut c.floor_rem, 0, 33, "r").unwrap();
    write_limbs(&mut c.floor_gap, 0, 33, "g").unwrap();
    // The room C·ONE - |r|·ν is negative: no limbs spell it.
    write_limbs(&mut c.clip_slack, 0, 44, "s").unwrap();
    let neg = c.residual_neg == Goldilocks::ONE;
    let update = set_coeff(&f, &mut t, 0, if neg { -abs_r } else { abs_r });
    assert_rejected(&f.statement, &t, &update, Rule::Step, "unclipped gradient");
}

#[test]
fn weakened_clipping_is_rejected() {
    let f = clipping_fixture();
    let mut t = honest(&f);
    let c = step_row(&mut t, 0);
    let m = spelled(&c.coeff_abs) + 1;
    write_limbs(&mut c.coeff_abs, m, 22, "m").unwrap();
    c.coeff_norm += to_field(spelled(&c.norm));
    let neg = c.residual_neg == Goldilocks::ONE;
    let update = set_coeff(&f, &mut t, 0, if neg { -m } else { m });
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Step,
        "|c| one above floor(C/ν)",
    );
}

#[test]
fn overclipped_coefficient_is_rejected() {
    let f = clipping_fixture();
    let mut t = honest(&f);
    let c = step_row(&mut t, 1);
    let m = spelled(&c.coeff_abs);
    assert!(m > 0);
    write_limbs(&mut c.coeff_abs, m - 1, 22, "m").unwrap();
    let nu = to_field(spelled(&c.norm));
    c.coeff_norm -= nu;
    let rem = spelled(&c.floor_rem) + int(nu);
    write_limbs(&mut c.floor_rem, rem, 33, "r").unwrap();
    // ν - 1 - rem is now negative: no limbs spell it.
    write_limbs(&mut c.floor_gap, 0, 33, "g").unwrap();
    let neg = c.residual_neg == Goldilocks::ONE;
    let update = set_coeff(&f, &mut t, 1, if neg { 1 - m } else { m - 1 });
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Step,
        "|c| one below floor(C/ν)",
    );
}

#[test]
fn understated_and_overstated_norms_are_rejected() {
    let f = clipping_fixture();
    for delta in [-1i64, 1] {
        let mut t = honest(&f);
        let c = step_row(&mut t, 0);
        let nu = spelled(&c.norm) + delta;
        write_limbs(&mut c.norm, nu, 27, "ν").unwrap();
        let n = int(c.norm_sq);
        write_limbs(&mut c.norm_upper, (nu * nu - n).max(0), 33, "u").unwrap();
        write_limbs(
            &mut c.norm_lower,
            (n - (nu - 1) * (nu - 1) - 1).max(0),
            33,
            "l",
        )
        .unwrap();
        let abs_r = spelled(&c.abs_residual);
        c.grad_norm = to_field(abs_r * nu);
        let m = spelled(&c.coeff_abs);
        c.coeff_norm = to_field(m * nu);
        let update = rebalance(&f.statement, &mut t).unwrap();
        assert_rejected(&f.statement, &t, &update, Rule::Step, "ν off by one");
    }
}

#[test]
fn lying_about_the_sigmoid_case_is_rejected() {
    // A middle-case example claims σ = 1 (z ≥ 16): its residual, and so its gradient, shrink.
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let c = step_row(&mut t, 0);
    assert_eq!((c.below, c.above), (Goldilocks::ZERO, Goldilocks::ZERO));
    c.above = Goldilocks::ONE;
    c.sigmoid = to_field(ONE);
    // q - 256 is negative: no limbs spell it.
    write_limbs(&mut c.clamp_slack, 0, 33, "s").unwrap();
    let y = int(c.label);
    let r = ONE - y * ONE;
    write_limbs(&mut c.abs_residual, r.abs(), 22, "r").unwrap();
    c.residual_neg = Goldilocks::from_bool(r < 0);
    assert_rejected_rebalanced(&f, &mut t, Rule::Step, "middle case claimed as above");
}

#[test]
fn sigmoid_segment_not_in_the_table_is_rejected() {
    // The step row interpolates consistently along a segment the table does not hold.
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let c = step_row(&mut t, 2);
    c.segment_start += Goldilocks::from_u64(64);
    c.sigmoid += Goldilocks::from_u64(64);
    assert_rejected_rebalanced(&f, &mut t, Rule::Bus, "a made-up segment");
}

#[test]
fn sigmoid_segment_past_the_last_is_rejected() {
    // A label-0 example with z in [16, 48) claims the middle case on "segment"
    // k = 256 + 16z in [512, 1024): the lookup table has a row there (its range lanes need
    // the height), with start and rise 0, so σ = 0 instead of 1 and the example's gradient
    // vanishes; the forger counts the lookup on that row, so every bus balances.
    use zkfed_air::sigmoid::{Segment, SigmoidSteps};
    let f = fixture(Spec {
        features: 20,
        batch: 8,
        weight_scale: 4 * ONE,
        ..Spec::default()
    });
    let clip = f.statement.params.clip_norm;
    let mut t = honest(&f);
    let i = (0..f.statement.params.batch_size)
        .find(|&i| {
            let c = step_row(&mut t, i);
            c.above == Goldilocks::ONE && int(c.quotient) + 256 < 1024 && int(c.label) == 0
        })
        .expect("the seeded fixture has a label-0 example with z in [16, 48)");
    let c = step_row(&mut t, i);
    let (logit, y) = (int(c.logit), int(c.label) as u8);
    let honest_sigmoid = zkfed_air::sigmoid::sigmoid(logit);
    let forged = SigmoidSteps {
        above: false,
        segment: Segment { start: 0, rise: 0 },
        interpolation_remainder: 0,
        value: 0,
        ..honest_sigmoid
    };
    let step = zkfed_air::reference::step_from_sigmoid(logit, forged, int(c.norm_sq), y, clip);
    zkfed_air::engine::witness::write_step_row(c, y, &step, clip).unwrap();
    set_coeff(&f, &mut t, i, step.coeff);
    let update = rebalance(&f.statement, &mut t).unwrap();
    assert_rejected_with_buses_balanced(
        &f.statement,
        &t,
        &update,
        "a segment past the table's last",
    );
}

#[test]
fn quotient_off_by_one_is_rejected() {
    // q one above floor(z / 2^28): the remainder would be negative, no limbs spell it.
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let c = step_row(&mut t, 0);
    c.quotient += Goldilocks::ONE;
    write_limbs(&mut c.remainder, 0, 28, "rem").unwrap();
    assert_rejected_rebalanced(&f, &mut t, Rule::Step, "the segment below or above");
}

#[test]
fn sigmoid_off_the_interpolation_is_rejected() {
    // σ one unit above a_k + floor(b_k·rem / 2^28), in the middle case.
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let c = step_row(&mut t, 0);
    assert_eq!((c.below, c.above), (Goldilocks::ZERO, Goldilocks::ZERO));
    c.sigmoid += Goldilocks::ONE;
    write_limbs(&mut c.interpolation_remainder, 0, 28, "rho").unwrap();
    let r = int(c.sigmoid) - int(c.label) * ONE;
    write_limbs(&mut c.abs_residual, r.abs(), 22, "r").unwrap();
    c.residual_neg = Goldilocks::from_bool(r < 0);
    assert_rejected_rebalanced(&f, &mut t, Rule::Step, "σ rounded the other way");
}

#[test]
fn lookup_table_entry_changed_is_rejected() {
    // The table offers a steeper segment, and every step row on it uses it consistently.
    use zkfed_air::engine::lookup_table::{cols, periodic};
    use zkfed_air::engine::witness::write_step_row;
    use zkfed_air::reference::step_from_sigmoid;
    let f = fixture(Spec::default());
    let clip = f.statement.params.clip_norm;
    let mut t = honest(&f);
    let k = int(step_row(&mut t, 2).quotient) + 256;
    for i in 0..f.statement.params.batch_size {
        let c = step_row(&mut t, i);
        if int(c.quotient) + 256 != k || c.below == Goldilocks::ONE || c.above == Goldilocks::ONE {
            continue;
        }
        let (logit, y) = (int(c.logit), int(c.label) as u8);
        let mut sigmoid = zkfed_air::sigmoid::sigmoid(logit);
        sigmoid.segment.rise += 64;
        let scaled = sigmoid.segment.rise * sigmoid.remainder;
        sigmoid.value = sigmoid.segment.start + (scaled >> 28);
        sigmoid.interpolation_remainder = scaled & ((1 << 28) - 1);
        let step = step_from_sigmoid(logit, sigmoid, int(c.norm_sq), y, clip);
        write_step_row(c, y, &step, clip).unwrap();
        set_coeff(&f, &mut t, i, step.coeff);
    }
    let update = rebalance(&f.statement, &mut t).unwrap();
    let width = t.lookup.width;
    let cell = k as usize * width + cols::ENTRY + periodic::SEGMENT_RISE;
    t.lookup.values[cell] += Goldilocks::from_u64(64);
    assert_rejected_with_buses_balanced(&f.statement, &t, &update, "a steeper segment offered");
}

#[test]
fn flipped_residual_sign_is_rejected() {
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let c = step_row(&mut t, 0);
    c.residual_neg = Goldilocks::ONE - c.residual_neg;
    c.coeff = -c.coeff;
    let coeff = int(c.coeff);
    let update = set_coeff(&f, &mut t, 0, coeff);
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Step,
        "gradient sign flipped",
    );
}

#[test]
fn padding_step_row_contributing_is_rejected() {
    // A row past the batch claims to be active and adds its coefficient to the bias.
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let padding = f.statement.params.batch_size;
    let c = step_row(&mut t, padding);
    c.active = Goldilocks::ONE;
    c.coeff = to_field(ONE);
    write_limbs(&mut c.coeff_abs, ONE, 22, "m").unwrap();
    assert_rejected_rebalanced(&f, &mut t, Rule::Step, "an extra example");
}

// ---------------------------------------------------------------------------------------
// The example between tables (buses).
// ---------------------------------------------------------------------------------------

#[test]
fn step_row_proving_another_logit_is_rejected() {
    // The step table proves a consistent step for a logit the hash table never sent.
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let update = rewitness_step(&f, &mut t, 0, |z, n, y| (z + (3 << 28), n, y));
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Bus,
        "example changed between tables",
    );
}

#[test]
fn unbalanced_multiplicity_is_rejected() {
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    t.lookup.values[7 * t.lookup.width] += Goldilocks::ONE;
    let update = t.update.clone();
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Bus,
        "range multiplicity changed",
    );
}

#[test]
fn limb_outside_the_range_table_is_rejected() {
    // |r| spelled with a low limb of 2^11 + 5 and a high limb one smaller: the same value,
    // but one limb is not in [0, 2^11).
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let c = step_row(&mut t, 0);
    assert!(c.abs_residual[1] != Goldilocks::ZERO || c.abs_residual[0] != Goldilocks::ZERO);
    c.abs_residual[1] = Goldilocks::ONE;
    c.abs_residual[0] -= Goldilocks::from_u64(1 << 11);
    assert_rejected_rebalanced(&f, &mut t, Rule::Bus, "a limb of 2^11 or more");
}

#[test]
fn update_share_on_a_salt_lane_is_rejected() {
    // The last absorb row's salt lane smuggles c·salt into feature 7's update entry.
    let f = fixture(Spec {
        features: 5,
        ..Spec::default()
    });
    let mut t = honest(&f);
    let c = hash_row(&mut t, 0);
    c.share[7] = c.coeff * c.input[7];
    let update = rebalance(&f.statement, &mut t);
    let update = update.unwrap_or_else(|_| t.update.clone());
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Hash,
        "share on a salt lane",
    );
}

#[test]
fn share_on_a_padding_row_is_rejected() {
    // A hash row past the last block adds a share of its own to feature 0's update entry.
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let shape = f.statement.shape();
    let padding = shape.batch * shape.block_len();
    hash_row(&mut t, padding).share[0] = to_field(ONE);
    let update = assert_rejected_rebalanced(&f, &mut t, Rule::Hash, "share from padding");
    assert_ne!(update, honest(&f).update);
}

#[test]
fn clipping_a_zero_residual_is_rejected() {
    // r = 0 (σ = y) cannot be clipped: the slack |r|·ν - C·ONE - 1 is negative.
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let c = step_row(&mut t, 0);
    let y = int(c.label);
    c.sigmoid = to_field(y * ONE);
    c.abs_residual = [Goldilocks::ZERO; 2];
    c.grad_norm = Goldilocks::ZERO;
    c.clipped = Goldilocks::ONE;
    write_limbs(&mut c.clip_slack, 0, 44, "s").unwrap();
    c.coeff_abs = [Goldilocks::ZERO; 2];
    c.coeff_norm = Goldilocks::ZERO;
    let update = set_coeff(&f, &mut t, 0, 0);
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Step,
        "a zero residual clipped",
    );
}

#[test]
fn tampered_share_is_rejected() {
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    hash_row(&mut t, 0).share[0] += Goldilocks::ONE;
    let update = assert_rejected_rebalanced(&f, &mut t, Rule::Hash, "a share bumped by one");
    assert_ne!(update, honest(&f).update);
}

// ---------------------------------------------------------------------------------------
// Leaves, paths and the data (hash and permutation tables).
// ---------------------------------------------------------------------------------------

#[test]
fn tampered_logit_is_rejected() {
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let (_, merkle) = block(&f, 1);
    hash_row(&mut t, merkle).logit += to_field(ONE);
    let update = rewitness_step(&f, &mut t, 1, |z, n, y| (z + ONE, n, y));
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Hash,
        "logit not the weighted sum",
    );
}

#[test]
fn understated_squared_norm_is_rejected() {
    let f = clipping_fixture();
    let mut t = honest(&f);
    let (_, merkle) = block(&f, 0);
    hash_row(&mut t, merkle).norm_sq = to_field(ONE * ONE);
    let update = rewitness_step(&f, &mut t, 0, |z, _, y| (z, ONE * ONE, y));
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Hash,
        "norm of a zero row claimed",
    );
}

#[test]
fn coefficient_changing_inside_a_block_is_rejected() {
    let f = clipping_fixture();
    let mut t = honest(&f);
    let c = hash_row(&mut t, 0);
    c.coeff = Goldilocks::ZERO;
    c.share = [Goldilocks::ZERO; 8];
    assert_rejected_rebalanced(&f, &mut t, Rule::Hash, "first chunk's shares dropped");
}

#[test]
fn label_not_from_the_committed_row_is_rejected() {
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let (start, _) = block(&f, 0);
    let y = 1 - int(step_row(&mut t, 0).label) as u8;
    for offset in 0..f.statement.shape().block_len() {
        hash_row(&mut t, start + offset).label = Goldilocks::from_u8(y);
    }
    let update = rewitness_step(&f, &mut t, 0, |z, n, _| (z, n, y));
    assert_rejected(&f.statement, &t, &update, Rule::Hash, "flipped label");
}

/// Rewrites hash row `row`'s permutation (input as it stands) in the permutation table.
fn repermute(t: &mut Traces, row: usize) {
    use zkfed_air::engine::permutation_table::{HALF_FULL_ROUNDS, NUM_PERM_COLS, PermCols};
    let input = hash_row(t, row).input;
    let cells = zkfed_air::engine::witness::permutation_row(input);
    let perm: &PermCols<Goldilocks> = core::borrow::Borrow::borrow(&cells[..]);
    let out = perm.ending_full_rounds[HALF_FULL_ROUNDS - 1].post;
    let c = hash_row(t, row);
    for (o, &lane) in c.output.iter_mut().zip(&[0, 1, 2, 3, 8, 9, 10, 11]) {
        *o = out[lane];
    }
    t.permutation.values[row * NUM_PERM_COLS..(row + 1) * NUM_PERM_COLS].copy_from_slice(&cells);
}

#[test]
fn permutation_output_not_in_the_table_is_rejected() {
    // A hash row claims a leaf digest no permutation row computed.
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    hash_row(&mut t, 0).output[0] += Goldilocks::ONE;
    let update = t.update.clone();
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Bus,
        "a made-up permutation output",
    );
}

#[test]
fn limbs_not_spelling_the_feature_are_rejected() {
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    hash_row(&mut t, 0).lo[2] += Goldilocks::ONE;
    assert_rejected_rebalanced(&f, &mut t, Rule::Hash, "limbs of another value");
}

#[test]
fn shares_redirected_to_other_features_are_rejected() {
    // The absorb row claims to hold features 8..16: its shares land on those entries.
    let f = fixture(Spec {
        features: 12,
        ..Spec::default()
    });
    let mut t = honest(&f);
    hash_row(&mut t, 0).chunk_base = Goldilocks::from_u64(8);
    let update =
        assert_rejected_rebalanced(&f, &mut t, Rule::Hash, "shares moved to other features");
    assert_ne!(update, honest(&f).update);
}

#[test]
fn example_sent_from_another_row_is_rejected() {
    // The block sends its tuple from its second Merkle row instead of its first.
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let (_, merkle) = block(&f, 0);
    let sent = hash_row(&mut t, merkle);
    sent.sends_example = Goldilocks::ZERO;
    let (logit, norm_sq, label, coeff) = (sent.logit, sent.norm_sq, sent.label, sent.coeff);
    let other = hash_row(&mut t, merkle + 1);
    other.sends_example = Goldilocks::ONE;
    (other.logit, other.norm_sq, other.label, other.coeff) = (logit, norm_sq, label, coeff);
    let update = t.update.clone();
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Hash,
        "a tuple sent off its row",
    );
}

#[test]
fn non_boolean_direction_bit_is_rejected() {
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let (_, merkle) = block(&f, 0);
    hash_row(&mut t, merkle + 2).dir = Goldilocks::TWO;
    let update = t.update.clone();
    assert_rejected(&f.statement, &t, &update, Rule::Hash, "a direction of 2");
}

#[test]
fn merkle_row_with_another_capacity_is_rejected() {
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let (_, merkle) = block(&f, 1);
    hash_row(&mut t, merkle).input[9] += Goldilocks::ONE;
    repermute(&mut t, merkle);
    let update = t.update.clone();
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Hash,
        "a node without the node tag",
    );
}

#[test]
fn out_of_range_feature_is_rejected() {
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let c = hash_row(&mut t, 0);
    // x = 2^21: x + 2^21 = 2^22 needs a high limb of 2^11, which the table does not hold.
    c.input[0] = Goldilocks::from_u64(1 << 21);
    c.lo[0] = Goldilocks::ZERO;
    c.hi[0] = Goldilocks::from_u64(1 << 11);
    repermute(&mut t, 0);
    assert_rejected_rebalanced(&f, &mut t, Rule::Bus, "feature 2^21");
}

#[test]
fn nonzero_padding_lane_is_rejected() {
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    // d = 5: lane 5 of the only absorb row is zero padding.
    hash_row(&mut t, 0).input[5] = Goldilocks::ONE;
    repermute(&mut t, 0);
    let update = t.update.clone();
    assert_rejected(&f.statement, &t, &update, Rule::Hash, "padding lane set");
}

#[test]
fn wrong_leaf_iv_and_broken_sponge_chain_are_rejected() {
    let f = fixture(Spec {
        features: 12,
        ..Spec::default()
    });
    for row in [0, 1] {
        let mut t = honest(&f);
        hash_row(&mut t, row).input[9] += Goldilocks::ONE;
        repermute(&mut t, row);
        let update = t.update.clone();
        assert_rejected(&f.statement, &t, &update, Rule::Hash, "capacity changed");
    }
}

#[test]
fn flipped_merkle_direction_is_rejected() {
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    let (_, merkle) = block(&f, 0);
    let c = hash_row(&mut t, merkle + 1);
    c.dir = Goldilocks::ONE - c.dir;
    let update = t.update.clone();
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Hash,
        "a path turning the other way",
    );
}

#[test]
fn forged_permutation_cell_is_rejected() {
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    t.permutation.values[3 * t.permutation.width + 40] += Goldilocks::ONE;
    let update = t.update.clone();
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Permutation,
        "a round cell changed",
    );
}

#[test]
fn rows_not_under_the_enrolled_root_are_rejected() {
    let enrolled = fixture(Spec::default());
    let other = fixture(Spec {
        seed: 99,
        ..Spec::default()
    });
    let mut statement = other.statement.clone();
    statement.dataset = enrolled.statement.dataset;
    let t = generate_traces(&other.statement, &other.dataset).unwrap();
    let update = t.update.clone();
    assert_rejected(
        &statement,
        &t,
        &update,
        Rule::Hash,
        "rows of another dataset",
    );
}

#[test]
fn batch_not_derived_from_the_seed_is_rejected() {
    let f = fixture(Spec::default());
    let mut cherry_picked = f.statement.clone();
    cherry_picked.batch_indices = vec![0, 1, 2, 3];
    assert_ne!(cherry_picked.batch_indices, f.statement.batch_indices);
    let t = generate_traces(&cherry_picked, &f.dataset).unwrap();
    let update = t.update.clone();
    assert_rejected(&f.statement, &t, &update, Rule::Hash, "chosen rows");
    let proof = prove_traces(&cherry_picked, &t, &update).unwrap();
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
    stale.model = Model::zeros(ModelSpec::Logistic, 5);
    let t = generate_traces(&stale, &f.dataset).unwrap();
    let update = t.update.clone();
    assert_rejected(
        &f.statement,
        &t,
        &update,
        Rule::Hash,
        "gradient of another model",
    );
}

// ---------------------------------------------------------------------------------------
// Proofs and statements.
// ---------------------------------------------------------------------------------------

#[test]
fn update_changed_after_proving_is_rejected() {
    let f = fixture(Spec::default());
    let (update, proof) = prove(&f.statement, &f.dataset).unwrap();
    let mut scaled = update.clone();
    scaled.values.iter_mut().for_each(|w| *w *= 2);
    assert!(verify(&f.statement, &scaled, &proof).is_err(), "scaled");
    let mut nudged = update.clone();
    *nudged.values.last_mut().unwrap() += 1;
    assert!(
        verify(&f.statement, &nudged, &proof).is_err(),
        "bias nudged"
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
    wrapped.values[0] = wrapped.values[0].wrapping_add(0xFFFF_FFFF_0000_0001u64 as i64);
    assert!(
        verify(&f.statement, &wrapped, &proof).is_err(),
        "shifted by p"
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
        ("model", Box::new(|s| s.model.params[0] += 1)),
        (
            "bias",
            Box::new(|s| *s.model.params.last_mut().unwrap() += 1),
        ),
        ("clip norm", Box::new(|s| s.params.clip_norm += 1)),
        ("row count", Box::new(|s| s.dataset.rows += 1)),
        ("root", Box::new(|s| s.dataset.root[2] ^= 1)),
    ];
    for (what, change) in variants {
        let mut s = f.statement.clone();
        change(&mut s);
        let other = Statement::new(s.context, s.model, s.params, s.dataset, s.seed).unwrap();
        assert!(
            verify(&other, &update, &proof).is_err(),
            "replay with another {what}"
        );
    }
}

#[test]
fn random_bit_flips_are_all_rejected() {
    let f = fixture(Spec::default());
    let (update, proof) = prove(&f.statement, &f.dataset).unwrap();
    let mut rng = StdRng::seed_from_u64(2024);
    for _ in 0..128 {
        let mut bytes = proof.clone();
        let bit = rng.random_range(0..bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        assert!(
            verify(&f.statement, &update, &bytes).is_err(),
            "bit {bit} flipped"
        );
    }
}

/// Proves stacked traces and checks that only the statement's heights stop them: every
/// rule holds, `p3-batch-stark`'s own verifier accepts the proof, the update is inflated,
/// and `verify` rejects it naming the hash table's height.
fn assert_stacked_traces_rejected(spec: Spec, copies: usize) {
    let f = fixture(spec);
    let honest_update = honest(&f).update;
    let (t, update) = stacked_traces(&f.statement, &f.dataset, copies).unwrap();
    assert_eq!(
        broken_rules(&f.statement, &t, &update),
        [],
        "a valid witness"
    );
    assert_eq!(
        update.examples, honest_update.examples,
        "count still says B"
    );
    assert_ne!(update, honest_update, "the update is inflated");
    let bytes = prove_traces(&f.statement, &t, &update).expect("the prover takes any height");
    assert!(
        batch_stark_alone_accepts(&f.statement, &update, &bytes),
        "p3-batch-stark alone accepts the stacked proof (else this test shows nothing)"
    );
    let log_height = f.statement.shape().block_len() * f.statement.params.batch_size;
    let expected = log_height.next_power_of_two().max(256).trailing_zeros() as u64 + 1;
    assert_eq!(
        verify(&f.statement, &update, &bytes),
        Err(VerifyError::ProofShape {
            field: "permutation table degree_bits",
            expected,
            got: expected + copies.trailing_zeros() as u64,
        })
    );
}

#[test]
fn doubled_traces_are_rejected_for_their_height() {
    assert_stacked_traces_rejected(Spec::default(), 2);
}

#[test]
fn doubled_traces_without_padding_rows_are_rejected_for_their_height() {
    // 32 blocks of 3 absorb + 5 Merkle rows fill 256 rows exactly.
    let spec = Spec {
        features: 16,
        rows: 32,
        batch: 32,
        ..Spec::default()
    };
    let shape = fixture(spec).statement.shape();
    assert_eq!(shape.batch * shape.block_len(), 256, "no padding");
    assert_stacked_traces_rejected(spec, 2);
}

#[test]
fn lookup_table_of_the_wrong_height_is_rejected() {
    // A doubled lookup table receives the update twice: claiming half of the real update.
    let f = fixture(Spec::default());
    let mut t = honest(&f);
    t.lookup = RowMajorMatrix::new(t.lookup.values.repeat(2), t.lookup.width);
    let lookup_bits = zkfed_air::engine::lookup_table::LOOKUP_HEIGHT.trailing_zeros() as usize
        + zkfed_air::config::ZK_HEIGHT_BITS;
    let update = t.update.clone();
    let bytes = prove_traces(&f.statement, &t, &update).unwrap();
    assert_eq!(
        verify(&f.statement, &update, &bytes),
        Err(VerifyError::ProofShape {
            field: "lookup table degree_bits",
            expected: lookup_bits as u64,
            got: lookup_bits as u64 + 1,
        })
    );
}

#[test]
fn every_value_read_back_decodes_as_the_reference() {
    // Guards the helpers above: limbs and columns read as the reference wrote them.
    let f = clipping_fixture();
    let mut t = honest(&f);
    let c = step_row(&mut t, 0);
    let m = spelled(&c.coeff_abs);
    assert_eq!(m, int(c.coeff).abs());
    assert!(c.active.as_canonical_u64() == 1);
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
        proof.len() * 2 <= allowance,
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

/// How a mutated proof must be refused.
#[derive(Debug)]
enum Refusal {
    /// By zkfed's own shape check, naming the field, before Plonky3 sees the proof.
    Shape(&'static str),
    /// By Plonky3's verifier, returning an error (never a panic).
    Stark,
}

/// A Merkle commitment of the proof.
type Cap = p3_symmetric::MerkleCap<Goldilocks, [u8; 32]>;

/// One change to one field of a decoded proof.
type Mutation = fn(&mut zkfed_air::proof::ZkBatchProof);

/// Every field of a decoded proof that carries a length, a count or a grinding witness,
/// changed one at a time and re-encoded (ARCHITECTURE.md, "What the verifier takes from a
/// proof"): each is rejected with an error, and the ones zkfed checks itself name the field.
#[test]
fn every_proof_dimension_changed_is_rejected_without_a_panic() {
    use Refusal::{Shape, Stark};
    use zkfed_air::proof::{decode_proof, encode_proof};
    let f = fixture(Spec::default());
    let (update, bytes) = prove(&f.statement, &f.dataset).unwrap();
    verify(&f.statement, &update, &bytes).expect("the unmutated proof verifies");
    let cases: Vec<(&str, Refusal, Mutation)> = vec![
        ("one instance fewer", Shape("instances"), |p| {
            p.degree_bits.pop();
        }),
        ("one instance more", Shape("instances"), |p| {
            p.degree_bits.push(9)
        }),
        (
            "permutation height - 1",
            Shape("permutation table degree_bits"),
            |p| p.degree_bits[0] -= 1,
        ),
        ("hash height + 1", Shape("hash table degree_bits"), |p| {
            p.degree_bits[1] += 1
        }),
        ("step height huge", Shape("step table degree_bits"), |p| {
            p.degree_bits[2] = usize::MAX
        }),
        (
            "lookup height - 1",
            Shape("lookup table degree_bits"),
            |p| p.degree_bits[3] -= 1,
        ),
        (
            "main cap of two roots",
            Shape("main commitment roots"),
            |p| p.commitments.main = Cap::new(vec![p.commitments.main.roots()[0]; 2]),
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
            "permutation cap of two roots",
            Shape("permutation commitment roots"),
            |p| {
                let root = p.commitments.permutation.as_ref().unwrap().roots()[0];
                p.commitments.permutation = Some(Cap::new(vec![root; 2]))
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
        ("no permutation commitment", Stark, |p| {
            p.commitments.permutation = None
        }),
        ("no randomization commitment", Stark, |p| {
            p.commitments.random = None
        }),
        ("opened instances fewer", Stark, |p| {
            p.opened_values.instances.pop();
        }),
        ("trace_local shorter", Stark, |p| {
            p.opened_values.instances[1]
                .base_opened_values
                .trace_local
                .pop();
        }),
        ("trace_local longer", Stark, |p| {
            let v = &mut p.opened_values.instances[2].base_opened_values.trace_local;
            v.push(Default::default())
        }),
        ("trace_next absent", Stark, |p| {
            p.opened_values.instances[1].base_opened_values.trace_next = None
        }),
        ("trace_next present where none is read", Stark, |p| {
            p.opened_values.instances[2].base_opened_values.trace_next = Some(vec![])
        }),
        ("permutation_local shorter", Stark, |p| {
            p.opened_values.instances[1].permutation_local.pop();
        }),
        ("permutation_next longer", Stark, |p| {
            p.opened_values.instances[3]
                .permutation_next
                .push(Default::default())
        }),
        ("one quotient chunk fewer", Stark, |p| {
            p.opened_values.instances[0]
                .base_opened_values
                .quotient_chunks
                .pop();
        }),
        ("quotient chunk longer", Stark, |p| {
            let chunks = &mut p.opened_values.instances[1]
                .base_opened_values
                .quotient_chunks;
            chunks[0].push(Default::default())
        }),
        ("random opening absent", Stark, |p| {
            p.opened_values.instances[2].base_opened_values.random = None
        }),
        ("lookup terminals fewer", Stark, |p| {
            p.lookup_terminals.pop();
        }),
        ("lookup terminal removed", Stark, |p| {
            p.lookup_terminals[2] = None
        }),
        ("lookup terminal changed", Stark, |p| {
            let t = p.lookup_terminals[1].as_mut().unwrap();
            t.0 += Challenge::ONE
        }),
        ("lookup_pow_witness absent", Stark, |p| {
            p.lookup_pow_witness = None
        }),
        ("ood_pow_witness changed", Stark, |p| {
            p.ood_pow_witness += Goldilocks::ONE
        }),
        ("random codeword rounds fewer", Stark, |p| {
            p.opening_proof.0.pop();
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
        ("input batches fewer", Stark, |p| {
            p.opening_proof.1.input_openings.pop();
        }),
        ("input queries fewer", Stark, |p| {
            p.opening_proof.1.input_openings[1].opened_values.pop();
        }),
        ("input matrices fewer", Stark, |p| {
            p.opening_proof.1.input_openings[1].opened_values[0].pop();
        }),
        ("input row wider", Stark, |p| {
            p.opening_proof.1.input_openings[1].opened_values[0][0].push(Goldilocks::ZERO)
        }),
        ("input Merkle siblings fewer", Stark, |p| {
            let proof = &mut p.opening_proof.1.input_openings[1].opening_proof.1;
            proof.sibling_hashes.pop();
        }),
        ("input salts of a query fewer", Stark, |p| {
            p.opening_proof.1.input_openings[2].opening_proof.0.pop();
        }),
        ("input salt of a carrier removed", Stark, |p| {
            p.opening_proof.1.input_openings[2].opening_proof.0[0].pop();
        }),
        ("input salt for a matrix that carries none", Stark, |p| {
            let salts = &mut p.opening_proof.1.input_openings[2].opening_proof.0[0];
            salts.push(salts[0].clone());
        }),
        ("input salt element moved into its row", Stark, |p| {
            let opening = &mut p.opening_proof.1.input_openings[1];
            let moved = opening.opening_proof.0[0][0].remove(0);
            opening.opened_values[0][0].push(moved);
        }),
        ("input salt changed", Stark, |p| {
            p.opening_proof.1.input_openings[1].opening_proof.0[3][0][1] += Goldilocks::ONE
        }),
        ("FRI round openings fewer", Stark, |p| {
            p.opening_proof.1.commit_phase_openings.pop();
        }),
        ("FRI round salts of a query fewer", Stark, |p| {
            p.opening_proof.1.commit_phase_openings[0]
                .opening_proof
                .0
                .pop();
        }),
        ("FRI round salt changed", Stark, |p| {
            p.opening_proof.1.commit_phase_openings[1].opening_proof.0[0][0][0] += Goldilocks::ONE
        }),
        ("FRI sibling values more", Stark, |p| {
            let round = &mut p.opening_proof.1.commit_phase_openings[0];
            round.sibling_values[0].push(Default::default())
        }),
        ("final_poly shorter", Stark, |p| {
            p.opening_proof.1.final_poly.pop();
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
