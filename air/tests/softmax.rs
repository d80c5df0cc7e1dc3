//! Softmax proofs: completeness against the reference, and a cheating prover per rule
//! of the softmax step table (ARCHITECTURE.md, "The softmax step row").

mod common;

use common::{Fixture, Rule, Spec, batch_steps, broken_rules, prove_and_verify, softmax_fixture};
use p3_field::PrimeCharacteristicRing;
use p3_field::PrimeField64;
use p3_goldilocks::Goldilocks;
use zkfed_air::engine::hash_table::{output_mut, split_row_mut as split_hash_row_mut};
use zkfed_air::engine::limbs::write_limbs;
use zkfed_air::engine::softmax_table::{
    BOUND_BITS, ClassCols, SoftmaxCols, split_row_mut as softmax_split_row_mut,
};
use zkfed_air::engine::witness::{
    Labels, OutOfRange, Traces, generate, generate_traces, write_softmax_row,
};
use zkfed_air::exp::{ExpSteps, exp};
use zkfed_air::fixed::{ONE, ceil_sqrt};
use zkfed_air::forgery::{rebalance, set_block_coeffs};
use zkfed_air::network::{HeadSteps, NetworkStep, SoftmaxSteps, network_step, softmax_layer_step};
use zkfed_air::reference::clipped_gradient_sum;
use zkfed_air::segments::Segment;
use zkfed_air::{VerifyError, prove, verify};

fn reference(f: &Fixture) -> zkfed_air::ClippedGradientSum {
    let rows = f.statement.batch_indices.iter().map(|&i| {
        let (x, y, _) = f.dataset.row(i as usize);
        (x, y)
    });
    clipped_gradient_sum(&f.statement.model, rows, f.statement.params.clip_norm).unwrap()
}

#[test]
fn honest_softmax_proofs_verify_and_match_the_reference() {
    for (seed, features, rows, batch, classes, clip) in [
        (1, 5, 12, 4, 3, ONE),
        (2, 13, 33, 5, 10, ONE / 4),
        (3, 2, 9, 9, 2, 100 * ONE),
        // 2,103 parameters: the update arrives on three lanes of the lookup table.
        (4, 700, 4, 2, 3, ONE),
    ] {
        let spec = Spec {
            features,
            rows,
            batch,
            seed,
            clip,
            ..Spec::default()
        };
        let f = softmax_fixture(spec, classes);
        let (update, proof) = prove(&f.statement, &f.dataset).expect("prove");
        verify(&f.statement, &update, &proof).expect("verify");
        assert_eq!(update, reference(&f), "seed {seed}");
    }
}

// ---------------------------------------------------------------------------------------
// Cheating provers. Each starts from the honest traces, changes one intermediate of one
// example's softmax step, recomputes everything downstream of it as an honest prover would
// (so the targeted rule is the one that breaks), writes the row (out-of-range values as
// their low bits: the range checks pass, the defining equation fails), moves the new
// coefficients into the example's hash-table block, rebalances the lookup table and the
// update, proves, and requires the verifier to reject the forged update.

struct Honest {
    f: Fixture,
    traces: Traces,
    steps: Vec<NetworkStep>,
    labels: Vec<u8>,
}

fn honest(spec: Spec, classes: u8) -> Honest {
    let f = softmax_fixture(spec, classes);
    let traces = generate_traces(&f.statement, &f.dataset).expect("honest traces");
    let (steps, labels) = batch_steps(&f);
    Honest {
        f,
        traces,
        steps,
        labels,
    }
}

/// The honest traces and a copy of their first example's step, for a forger to change.
fn first_example(h: Honest) -> (Honest, NetworkStep) {
    let step = h.steps[0].clone();
    (h, step)
}

impl Honest {
    fn clip(&self) -> i64 {
        self.f.statement.params.clip_norm
    }

    /// The first example's division and everything after it, as an honest prover would.
    fn redivide_onward(&self, step: &mut NetworkStep) {
        redivide(step);
        self.residuals_onward(step);
    }

    /// The first example's residuals and everything after them.
    fn residuals_onward(&self, step: &mut NetworkStep) {
        restep(step, self.labels[0], self.clip());
    }

    /// `A` and everything after it.
    fn bound_onward(&self, step: &mut NetworkStep) {
        rebound(step, self.clip());
    }

    /// The clip decision and the coefficients.
    fn clip_onward(&self, step: &mut NetworkStep) {
        reclip(step, self.clip());
    }
}

/// A fixture (with [`CLASSES`]) whose first example is clipped and has classes in each of
/// the exponential's three cases.
/// The cheating provers' fixture with a clip norm that keeps its first example unclipped.
fn kept_first_example() -> (Honest, NetworkStep) {
    let spec = Spec {
        clip: 50 * ONE,
        ..clipped_spec()
    };
    first_example(honest(spec, CLASSES))
}

/// The cheating provers' fixture with `C = A + offset` for its first example's layer bound
/// `A`: kept exactly at the bound (offset 0) or clipped by one unit (offset -1).
fn at_the_bound(offset: i64) -> Honest {
    let bound = honest(clipped_spec(), CLASSES).steps[0].norms[0].bound;
    let spec = Spec {
        clip: bound + offset,
        ..clipped_spec()
    };
    honest(spec, CLASSES)
}

/// Classes of the cheating provers' fixture.
const CLASSES: u8 = 6;

fn clipped_spec() -> Spec {
    Spec {
        features: 5,
        rows: 12,
        batch: 3,
        clip: ONE / 2,
        feature_scale: 6 * ONE,
        weight_scale: 2 * ONE,
        seed: 17,
    }
}

fn softmax_of(step: &NetworkStep) -> &SoftmaxSteps {
    match &step.head {
        HeadSteps::Softmax(s) => s,
        HeadSteps::Sigmoid(_) => unreachable!("a softmax fixture"),
    }
}

fn softmax_mut(step: &mut NetworkStep) -> &mut SoftmaxSteps {
    match &mut step.head {
        HeadSteps::Softmax(s) => s,
        HeadSteps::Sigmoid(_) => unreachable!("a softmax fixture"),
    }
}

/// The division from the exponentials onward, as an honest prover computes it.
fn redivide(step: &mut NetworkStep) {
    let s = softmax_mut(step);
    s.sum = s.exps.iter().map(|e| e.value).sum();
    s.probabilities = s.exps.iter().map(|e| e.value * ONE / s.sum).collect();
    s.remainders = s
        .exps
        .iter()
        .zip(&s.probabilities)
        .map(|(e, p)| e.value * ONE - p * s.sum)
        .collect();
}

/// The residuals and the residual norm from the probabilities onward.
fn reresidual(step: &mut NetworkStep, label: u8) {
    let probabilities = softmax_of(step).probabilities.clone();
    step.residuals = probabilities
        .iter()
        .enumerate()
        .map(|(k, p)| p - i64::from(k == usize::from(label)) * ONE)
        .collect();
    let n = &mut step.norms[0];
    n.delta_sq = step.residuals.iter().map(|r| r * r).sum();
    n.delta_norm = ceil_sqrt(n.delta_sq);
}

/// `A` from the two norms, then the clipping.
fn rebound(step: &mut NetworkStep, clip: i64) {
    let n = &mut step.norms[0];
    n.bound = (n.delta_norm * n.input_norm + ONE - 1) / ONE;
    reclip(step, clip);
}

/// The clip decision and the coefficients from `A`.
fn reclip(step: &mut NetworkStep, clip: i64) {
    step.norm = step.norms[0].bound;
    step.clipped = step.norm > clip;
    let norm = step.norm;
    step.coefficients[0] = step
        .residuals
        .iter()
        .map(|&r| {
            if step.clipped {
                r.signum() * (r.abs() * clip / norm)
            } else {
                r
            }
        })
        .collect();
}

/// Everything from the probabilities onward.
fn restep(step: &mut NetworkStep, label: u8, clip: i64) {
    reresidual(step, label);
    rebound(step, clip);
}

/// Writes `step` as example `i`'s step row, mirrors its coefficients into the hash table,
/// rebalances, proves, and returns the verifier's verdict on the forged update.
fn forge(h: &mut Honest, i: usize, step: &NetworkStep) -> Forged {
    forge_with(h, i, step, |_, _| {})
}

/// What a forgery broke (checked without proving) and the verifier's verdict.
struct Forged {
    broken: Vec<Rule>,
    verdict: Result<(), VerifyError>,
}

/// Row cells a forger sets after writing the step (to satisfy every rule but one).
type RowEdit = fn(&mut SoftmaxCols<Goldilocks>, &mut [ClassCols<Goldilocks>]);

/// [`forge`], with cells set by `edit` after the row is written.
fn forge_with(h: &mut Honest, i: usize, step: &NetworkStep, edit: RowEdit) -> Forged {
    let clip = h.f.statement.params.clip_norm;
    let width = h.traces.step.width;
    let row = &mut h.traces.step.values[i * width..(i + 1) * width];
    write_softmax_row(row, h.labels[i], step, clip, OutOfRange::Truncate).unwrap();
    let (c, classes) = softmax_split_row_mut(row);
    edit(c, classes);
    let block = h.f.statement.shape().block_len();
    set_block_coeffs(
        &h.f.statement,
        &mut h.traces,
        i * block,
        &step.coefficients[0],
    );
    let update = rebalance(&h.f.statement, &mut h.traces).expect("a small forged update");
    let broken = broken_rules(&h.f.statement, &h.traces, &update);
    Forged {
        broken,
        verdict: prove_and_verify(&h.f.statement, &h.traces, &update),
    }
}

/// The forged update differs from the honest one, only the softmax step table's rules are
/// broken (every bus balances, every other table holds), and the verifier rejects it.
fn assert_rejected(h: Honest, i: usize, step: NetworkStep, what: &str) {
    assert_rejected_with(h, i, step, |_, _| {}, what)
}

/// [`assert_rejected`] with cells set by `edit` after the row is written.
fn assert_rejected_with(mut h: Honest, i: usize, step: NetworkStep, edit: RowEdit, what: &str) {
    let honest_update = h.traces.update.clone();
    assert_ne!(
        step.coefficients[0], h.steps[i].coefficients[0],
        "{what}: the cheat must change the update"
    );
    let forged = forge_with(&mut h, i, &step, edit);
    assert_ne!(h.traces.update, honest_update, "{what}");
    assert_eq!(forged.broken, [Rule::Step], "{what}");
    assert!(
        matches!(forged.verdict, Err(VerifyError::Rejected(_))),
        "{what}: {:?}",
        forged.verdict
    );
}

#[test]
fn rewriting_an_honest_step_verifies() {
    // The harness itself: the honest step rewritten through the forger's path verifies.
    let mut h = honest(clipped_spec(), CLASSES);
    let step = h.steps[0].clone();
    let forged = forge(&mut h, 0, &step);
    assert_eq!((forged.broken, forged.verdict), (vec![], Ok(())));
}

#[test]
fn softmax_normalization_off_is_rejected() {
    // Probabilities divided by 2S (they sum to about 1/2), remainders in range.
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    let s = softmax_mut(&mut step);
    let doubled = 2 * s.sum;
    s.probabilities = s.exps.iter().map(|e| e.value * ONE / doubled).collect();
    s.remainders = vec![0; s.exps.len()];
    h.residuals_onward(&mut step);
    assert_rejected(h, 0, step, "normalization off");
}

#[test]
fn probability_off_by_one_is_rejected() {
    let (h, mut step) = kept_first_example();
    assert!(!step.clipped, "the fixture keeps example 0 unclipped");
    softmax_mut(&mut step).probabilities[1] += 1;
    h.residuals_onward(&mut step);
    assert_rejected(h, 0, step, "p off by one");
}

/// A class of example 0 in the exponential's middle case.
fn middle_class(step: &NetworkStep) -> usize {
    softmax_of(step)
        .exps
        .iter()
        .position(|e| !e.top && !e.below)
        .expect("the fixture has a middle-case class")
}

#[test]
fn top_flag_on_a_smaller_logit_is_rejected() {
    // Claims e = 1 for a logit below the largest (u < 0), keeping its honest q and rem.
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    let k = middle_class(&step);
    let e = &mut softmax_mut(&mut step).exps[k];
    e.top = true;
    e.value = ONE;
    e.segment = Segment { start: 0, rise: 0 };
    e.interpolation_remainder = 0;
    h.redivide_onward(&mut step);
    assert_rejected(h, 0, step, "top on a smaller logit");
}

#[test]
fn the_smallest_logit_selected_as_the_largest_is_rejected() {
    // m is the smallest logit: every larger one then has u > 0 and claims the top case.
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    let logits = step.logits.clone();
    let second = (0..logits.len())
        .min_by_key(|&k| logits[k])
        .expect("logits");
    assert!(logits[second] < logits[softmax_of(&step).top]);
    let s = softmax_mut(&mut step);
    s.top = second;
    s.max = logits[second];
    for (k, e) in s.exps.iter_mut().enumerate() {
        let u = logits[k] - logits[second];
        *e = if u > 0 {
            let quotient = u >> 27;
            ExpSteps {
                top: true,
                quotient,
                remainder: u - (quotient << 27),
                below: false,
                segment: Segment { start: 0, rise: 0 },
                interpolation_remainder: 0,
                value: ONE,
            }
        } else {
            exp(u)
        };
    }
    h.redivide_onward(&mut step);
    assert_rejected(h, 0, step, "smaller logit as the max");
}

#[test]
fn below_flag_on_a_middle_logit_is_rejected() {
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    let k = middle_class(&step);
    let e = &mut softmax_mut(&mut step).exps[k];
    e.below = true;
    e.value = 0;
    e.segment = Segment { start: 0, rise: 0 };
    e.interpolation_remainder = 0;
    h.redivide_onward(&mut step);
    assert_rejected(h, 0, step, "below on a middle logit");
}

#[test]
fn exponential_off_the_segment_is_rejected() {
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    let k = middle_class(&step);
    softmax_mut(&mut step).exps[k].value += 7;
    h.redivide_onward(&mut step);
    assert_rejected(h, 0, step, "exp off its segment");
}

#[test]
fn clipped_coefficient_too_large_is_rejected() {
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    assert!(step.clipped, "the fixture clips example 0");
    let k = (0..step.residuals.len())
        .find(|&k| step.residuals[k] != 0)
        .expect("a nonzero residual");
    step.coefficients[0][k] += step.residuals[k].signum();
    // Every class's floor remainder 0 and its gap A - 1, both in range: only the floor
    // equation of class k breaks.
    let in_range: RowEdit = |c, classes| {
        let bound = spelled(&c.bound);
        for class in classes {
            class.clip_remainder = [Goldilocks::ZERO; 3];
            write_limbs(&mut class.clip_gap, bound - 1, BOUND_BITS, "gap").unwrap();
        }
    };
    assert_rejected_with(h, 0, step, in_range, "clipped |c| + 1");
}

/// The value little-endian 11-bit limbs spell.
fn spelled(limbs: &[Goldilocks]) -> i64 {
    limbs
        .iter()
        .rev()
        .fold(0, |acc, l| (acc << 11) + l.as_canonical_u64() as i64)
}

#[test]
fn kept_coefficient_changed_is_rejected() {
    let (h, mut step) = kept_first_example();
    assert!(!step.clipped, "the fixture keeps example 0 unclipped");
    let k = (0..step.residuals.len())
        .find(|&k| step.residuals[k] > 0)
        .expect("a positive residual");
    step.coefficients[0][k] += 1;
    assert_rejected(h, 0, step, "kept c ≠ r");
}

#[test]
fn residual_norm_claimed_zero_is_rejected() {
    // ν_r = 0 (which voids its lower gap) makes A = 0 and skips clipping altogether.
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    assert!(step.clipped && step.norms[0].delta_sq > 0);
    step.norms[0].delta_norm = 0;
    h.bound_onward(&mut step);
    assert!(!step.clipped);
    assert_rejected(h, 0, step, "ν_r = 0 claimed");
}

#[test]
fn largest_logit_above_every_logit_is_rejected() {
    // m 9.0 above the largest logit with no class selected: every exponential shrinks to a
    // few units, so the probabilities round coarsely.
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    let logits = step.logits.clone();
    let s = softmax_mut(&mut step);
    s.max += 9 << 32;
    let max = s.max;
    for (k, e) in s.exps.iter_mut().enumerate() {
        *e = exp(logits[k] - max);
    }
    h.redivide_onward(&mut step);
    let unselected: RowEdit = |_, classes| {
        for class in classes {
            class.selected = Goldilocks::ZERO;
        }
    };
    assert_rejected_with(h, 0, step, unselected, "m above every logit");
}

#[test]
fn unclipped_claim_above_the_bound_is_rejected() {
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    assert!(step.clipped, "the fixture clips example 0");
    step.clipped = false;
    step.coefficients[0] = step.residuals.clone();
    assert_rejected(h, 0, step, "kept although A > C");
}

#[test]
fn understated_residual_norm_is_rejected() {
    // The norm of the layer's deltas one below the ceiling (a larger understatement of
    // this small norm would also break its lower gap's range), with C one below A: A and
    // the clipping follow it, and the example escapes clipping.
    let h = at_the_bound(-1);
    let mut step = h.steps[0].clone();
    step.norms[0].delta_norm -= 1;
    h.bound_onward(&mut step);
    assert_rejected(h, 0, step, "ν_r understated");
}

#[test]
fn understated_input_norm_is_rejected() {
    // ν_x about 0.4% low: its lower gap stays in range.
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    step.norms[0].input_norm -= step.norms[0].input_norm / 256;
    h.bound_onward(&mut step);
    assert_rejected(h, 0, step, "ν_x understated");
}

#[test]
fn understated_layer_bound_is_rejected() {
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    step.norms[0].bound -= step.norms[0].bound / 4 + 1;
    h.clip_onward(&mut step);
    assert_rejected(h, 0, step, "A understated");
}

#[test]
fn skipped_example_is_rejected() {
    // Example 1 contributes nothing: zero coefficients in both tables.
    let h = honest(clipped_spec(), CLASSES);
    let mut step = h.steps[1].clone();
    step.coefficients[0] = vec![0; step.residuals.len()];
    assert_rejected(h, 1, step, "skipped example");
}

#[test]
fn wrong_sign_on_the_label_class_is_rejected() {
    // The label's class pushed up instead of down.
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    let y = usize::from(h.labels[0]);
    assert!(
        step.coefficients[0][y] < 0,
        "the fixture's label class has a negative coefficient"
    );
    step.coefficients[0][y] = -step.coefficients[0][y];
    assert_rejected(h, 0, step, "label class sign flipped");
}

#[test]
fn update_of_one_block_changed_is_rejected() {
    // One feature share of one class changed in the hash table; the update follows it.
    let mut h = honest(clipped_spec(), CLASSES);
    let honest_update = h.traces.update.clone();
    let width = h.traces.hash.width;
    let (c, more) = split_hash_row_mut(&mut h.traces.hash.values[..width]);
    let (_, _, share) = output_mut(c, more, 2);
    share[1] += Goldilocks::ONE;
    let update = rebalance(&h.f.statement, &mut h.traces).unwrap();
    assert_ne!(update, honest_update);
    let verdict = prove_and_verify(&h.f.statement, &h.traces, &update);
    assert!(
        matches!(verdict, Err(VerifyError::Rejected(_))),
        "{verdict:?}"
    );
    // And the honest traces claiming a changed update entry.
    let h = honest(clipped_spec(), CLASSES);
    let bias = h.traces.update.values.len() - 1;
    common::assert_changed_entries_rejected(&h.f.statement, &h.traces, &[bias]);
}

#[test]
fn label_outside_the_classes_is_rejected() {
    // A committed row labelled K. The honest prover refuses it; a forger proves the step
    // with residuals `p - ONE` on the classes whose one-hot bits it sets: none, or classes
    // 1 and K - 1, whose indices sum to K.
    let spec = clipped_spec();
    let f = softmax_fixture(spec, CLASSES);
    let (features, mut labels): (Vec<Vec<i64>>, Vec<u8>) = (0..spec.rows)
        .map(|i| {
            let (x, y, _) = f.dataset.row(i);
            (x.to_vec(), y)
        })
        .unzip();
    let first = f.statement.batch_indices[0] as usize;
    labels[first] = CLASSES;
    let f = common::fixture_with(features, labels, f.statement.model.clone(), spec);
    assert!(generate_traces(&f.statement, &f.dataset).is_err());
    let no_bits: RowEdit = |_, _| {};
    let two_bits: RowEdit = |_, classes| {
        classes[1].onehot = Goldilocks::ONE;
        classes[usize::from(CLASSES) - 1].onehot = Goldilocks::ONE;
    };
    for (edit, hot) in [
        (no_bits, &[][..]),
        (two_bits, &[1, usize::from(CLASSES) - 1][..]),
    ] {
        let traces = generate(&f.statement, &f.dataset, Labels::Clamped).unwrap();
        let layers = f.statement.model.layers().unwrap();
        let (x, _, _) = f.dataset.row(first);
        let head = f.statement.model.spec.head();
        let clip = f.statement.params.clip_norm;
        let mut step = network_step(&layers, head, x, CLASSES - 1, clip).unwrap();
        let p = softmax_of(&step).probabilities.clone();
        step.residuals = (0..p.len())
            .map(|k| p[k] - i64::from(hot.contains(&k)) * ONE)
            .collect();
        let n = &mut step.norms[0];
        n.delta_sq = step.residuals.iter().map(|r| r * r).sum();
        n.delta_norm = ceil_sqrt(n.delta_sq);
        rebound(&mut step, clip);
        let mut h = Honest {
            steps: vec![step.clone()],
            labels: vec![CLASSES],
            traces,
            f: common::fixture_with(
                (0..spec.rows)
                    .map(|i| f.dataset.row(i).0.to_vec())
                    .collect(),
                (0..spec.rows).map(|i| f.dataset.row(i).1).collect(),
                f.statement.model.clone(),
                spec,
            ),
        };
        let forged = forge_with(&mut h, 0, &step, edit);
        assert_eq!(forged.broken, [Rule::Step], "{hot:?}");
        let verdict = forged.verdict;
        assert!(
            matches!(verdict, Err(VerifyError::Rejected(_))),
            "{hot:?}: {verdict:?}"
        );
    }
}

/// A class of example 0 below the exponential's table.
fn below_class(step: &NetworkStep) -> usize {
    softmax_of(step)
        .exps
        .iter()
        .position(|e| e.below)
        .expect("the fixture has a class below the table")
}

#[test]
fn largest_logits_exponential_not_one_is_rejected() {
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    let top = softmax_of(&step).top;
    softmax_mut(&mut step).exps[top].value = ONE / 2;
    h.redivide_onward(&mut step);
    assert_rejected(h, 0, step, "e of the largest logit ≠ 1");
}

#[test]
fn exponential_below_the_table_not_zero_is_rejected() {
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    let k = below_class(&step);
    softmax_mut(&mut step).exps[k].value = ONE / 4;
    h.redivide_onward(&mut step);
    assert_rejected(h, 0, step, "e below the table ≠ 0");
}

#[test]
fn probability_floor_too_low_is_rejected() {
    // p_k - 1 with the remainder raised by S: the division holds, the remainder is not
    // below S.
    let (h, mut step) = kept_first_example();
    let s = softmax_mut(&mut step);
    let k = (0..s.probabilities.len())
        .find(|&k| s.probabilities[k] > 0)
        .expect("a positive probability");
    s.probabilities[k] -= 1;
    s.remainders[k] += s.sum;
    h.residuals_onward(&mut step);
    assert_rejected(h, 0, step, "p floor too low");
}

#[test]
fn clipped_coefficient_too_small_is_rejected() {
    // |c_k| - 1 with the floor remainder raised by A: the equation holds, the remainder
    // is not below A.
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    assert!(step.clipped, "the fixture clips example 0");
    let k = (0..step.residuals.len())
        .find(|&k| step.coefficients[0][k] != 0)
        .expect("a nonzero coefficient");
    step.coefficients[0][k] -= step.coefficients[0][k].signum();
    assert_rejected(h, 0, step, "clipped |c| - 1");
}

#[test]
fn overstated_residual_norm_is_rejected() {
    // Clipping an example the reference keeps at the bound (C = A): ν_r one above the
    // ceiling, A and the clipping follow it.
    let h = at_the_bound(0);
    let mut step = h.steps[0].clone();
    assert!(!step.clipped);
    step.norms[0].delta_norm += 1;
    h.bound_onward(&mut step);
    assert_rejected(h, 0, step, "ν_r overstated");
}

#[test]
fn overstated_input_norm_is_rejected() {
    // ν_x about 0.4% high: its upper gap stays in range.
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    step.norms[0].input_norm += step.norms[0].input_norm / 256;
    h.bound_onward(&mut step);
    assert_rejected(h, 0, step, "ν_x overstated");
}

#[test]
fn overstated_layer_bound_is_rejected() {
    let (h, mut step) = first_example(honest(clipped_spec(), CLASSES));
    step.norms[0].bound += step.norms[0].bound / 4 + 1;
    h.clip_onward(&mut step);
    assert_rejected(h, 0, step, "A overstated");
}

#[test]
fn confident_right_answers_and_tied_logits_verify() {
    // Class 0's bias 40.0 puts every other logit below the table: p_0 = 1, so every
    // residual of a class-0 row is 0 (ν_r = 0, A = 0) and the update is zero. Then classes
    // 1 and 2 share weights and a larger bias: their logits tie for the largest.
    let spec = Spec {
        features: 3,
        rows: 10,
        batch: 6,
        clip: ONE,
        ..Spec::default()
    };
    let model_spec = zkfed_air::spec::ModelSpec::Softmax { classes: 3 };
    let model = |biases: [i64; 3]| {
        let mut params = vec![0; model_spec.num_params(3)];
        params[3..6].copy_from_slice(&[ONE, -ONE, ONE / 2]);
        params[6..9].copy_from_slice(&[ONE, -ONE, ONE / 2]);
        params[9..].copy_from_slice(&biases);
        zkfed_air::Model {
            spec: model_spec,
            num_features: 3,
            params,
        }
    };
    let features: Vec<Vec<i64>> = (0..10).map(|i| vec![i * ONE / 3, -ONE, ONE / 4]).collect();
    let mixed: Vec<u8> = (0..10).map(|i| (i % 3) as u8).collect();
    for (model, labels) in [
        (model([40 * ONE, 0, 0]), vec![0u8; 10]),
        (model([0, 3 * ONE, 3 * ONE]), mixed),
    ] {
        let f = common::fixture_with(features.clone(), labels.clone(), model, spec);
        let (update, proof) = prove(&f.statement, &f.dataset).expect("prove");
        verify(&f.statement, &update, &proof).expect("verify");
        assert_eq!(update, reference(&f));
        if labels.iter().all(|&y| y == 0) {
            assert!(update.values.iter().all(|&u| u == 0), "{update:?}");
        }
    }
}

#[test]
fn exponential_from_another_segment_is_rejected() {
    // The next segment's start and rise with the honest q: the interpolation holds, and
    // the exp bus does not balance (the lookup table has no such row).
    let mut h = honest(clipped_spec(), CLASSES);
    let mut step = h.steps[0].clone();
    let k = middle_class(&step);
    let e = &mut softmax_mut(&mut step).exps[k];
    let index = usize::try_from(e.quotient - zkfed_air::exp::FIRST_SEGMENT).unwrap();
    e.segment = zkfed_air::exp::segment((index + 1) % zkfed_air::segments::SEGMENTS);
    let scaled = e.segment.rise * e.remainder;
    e.value = e.segment.start + (scaled >> 27);
    e.interpolation_remainder = scaled - ((scaled >> 27) << 27);
    h.redivide_onward(&mut step);
    assert_ne!(step.coefficients[0], h.steps[0].coefficients[0]);
    let forged = forge(&mut h, 0, &step);
    assert_eq!(forged.broken, [Rule::Bus]);
    assert!(
        matches!(forged.verdict, Err(VerifyError::Rejected(_))),
        "{:?}",
        forged.verdict
    );
}

#[test]
fn proofs_of_many_classes_fit_their_size_allowance() {
    // The widest softmaxes a run may use (64 classes over 127 features: the 8,192
    // parameters proofs cover; over 15), the digits shape and a 784-input one: honest
    // proofs stay under the bytes the verifier reads.
    for (features, classes, batch) in [(127, 64, 2), (15, 64, 2), (64, 10, 4), (784, 10, 2)] {
        let spec = Spec {
            features,
            rows: 8,
            batch,
            ..Spec::default()
        };
        let f = softmax_fixture(spec, classes);
        let (update, proof) = prove(&f.statement, &f.dataset).expect("prove");
        let allowed = zkfed_air::proof::max_proof_bytes(&f.statement.shape());
        eprintln!(
            "{classes} classes over {features} features: proof {} KiB, allowance {} KiB",
            proof.len() >> 10,
            allowed >> 10
        );
        assert!(proof.len() <= allowed, "{} > {allowed}", proof.len());
        verify(&f.statement, &update, &proof).expect("verify");
    }
}

#[test]
fn doubled_softmax_traces_are_rejected_for_their_height() {
    common::assert_taller_trace_refused(&softmax_fixture(clipped_spec(), CLASSES));
}

#[test]
fn softmax_proofs_grind_their_own_bits_before_the_lookup_challenges() {
    // The statement's head sets the lookup grinding: softmax proofs made with a logistic
    // model's 16 bits are refused, the same proof path with the softmax's bits verifies.
    use p3_uni_stark::StarkGenericConfig;
    use zkfed_air::config::{SOFTMAX_LOOKUP_POW_BITS, zk_config, zk_config_for};
    let f = softmax_fixture(Spec::default(), 3);
    let shape = f.statement.shape();
    assert_eq!(
        zk_config_for(&shape).lookup_proof_of_work_bits(),
        SOFTMAX_LOOKUP_POW_BITS
    );
    assert!(zk_config().lookup_proof_of_work_bits() < SOFTMAX_LOOKUP_POW_BITS);
    common::assert_weaker_grinding_refused(&f.statement, &f.dataset, zk_config);
}

#[test]
fn the_verifiers_periodic_columns_are_counted_for_the_deepest_tree() {
    // Runs whose proofs make the verifier build more than MAX_PERIODIC_CELLS are refused by
    // the coordinator's configuration: the largest logistic shape fits, 64 classes at the
    // largest batch over a declared 2^32 rows do not, half that batch does.
    use zkfed_air::commitment::MAX_ROWS;
    use zkfed_air::engine::{MAX_PERIODIC_CELLS, periodic_cells};
    use zkfed_air::spec::ModelSpec;
    use zkfed_air::statement::ProofShape;
    let cells = |spec, d, batch| periodic_cells(&ProofShape::new(spec, d, batch, MAX_ROWS));
    let logistic = cells(ModelSpec::Logistic, 1024, 1024);
    let wide = ModelSpec::Softmax { classes: 64 };
    assert!(logistic <= MAX_PERIODIC_CELLS, "{logistic}");
    assert!(cells(wide, 15, 1024) > MAX_PERIODIC_CELLS);
    assert!(cells(wide, 15, 512) <= MAX_PERIODIC_CELLS);
    // 36 hash columns of 2^18 rows, one step column, the lookup table's 7 of 1024 rows.
    assert_eq!(logistic, 36 * (1 << 18) + 1024 + 7 * 1024);
}

// ---------------------------------------------------------------------------------------
// The hash table's and the lookup table's rules for outputs beyond the first.

#[test]
fn running_logit_of_another_class_off_its_weighted_sum_is_rejected() {
    // Class 2's logit 1.0 higher where the hash table sends it, and the step proven
    // honestly from the changed logits.
    let mut h = honest(clipped_spec(), CLASSES);
    let shape = h.f.statement.shape();
    let width = h.traces.hash.width;
    let send_row = shape.chunks();
    let row = &mut h.traces.hash.values[send_row * width..(send_row + 1) * width];
    let (c, more) = split_hash_row_mut(row);
    *output_mut(c, more, 2).0 += Goldilocks::from_u64(1 << 32);
    let mut logits = h.steps[0].logits.clone();
    logits[2] += 1 << 32;
    let input_sq = h.steps[0].norms[0].input_sq;
    let step = softmax_layer_step(logits, input_sq, h.labels[0], h.clip()).unwrap();
    let forged = forge(&mut h, 0, &step);
    assert_eq!(forged.broken, [Rule::Hash]);
    assert!(
        matches!(forged.verdict, Err(VerifyError::Rejected(_))),
        "{:?}",
        forged.verdict
    );
}

#[test]
fn coefficient_of_another_class_changing_inside_a_block_is_rejected() {
    // Class 1's coefficient and shares zeroed on example 0's first absorb row only.
    let mut h = honest(clipped_spec(), CLASSES);
    assert_ne!(h.steps[0].coefficients[0][1], 0);
    let width = h.traces.hash.width;
    let (c, more) = split_hash_row_mut(&mut h.traces.hash.values[..width]);
    let (_, coeff, share) = output_mut(c, more, 1);
    *coeff = Goldilocks::ZERO;
    *share = [Goldilocks::ZERO; 8];
    common::assert_edit_rejected(&h.f.statement, &mut h.traces, &[Rule::Hash]);
}

#[test]
fn update_entry_on_a_third_lane_changed_is_rejected() {
    // 2,103 parameters: entry 2,100 arrives on the lookup table's third lane. Claimed one
    // higher, with the table's bus-visible copy left at the honest value (so every bus
    // balances): the copy's constraint refuses it.
    let spec = Spec {
        features: 700,
        rows: 4,
        batch: 2,
        ..Spec::default()
    };
    let f = softmax_fixture(spec, 3);
    let mut traces = generate_traces(&f.statement, &f.dataset).unwrap();
    let mut claimed = traces.update.clone();
    assert_eq!(claimed.values.len(), 2103);
    claimed.values[2100] += 1;
    traces.recount_lookups(&f.statement.shape());
    assert_eq!(
        broken_rules(&f.statement, &traces, &claimed),
        [Rule::Lookup]
    );
    let verdict = prove_and_verify(&f.statement, &traces, &claimed);
    assert!(
        matches!(verdict, Err(VerifyError::Rejected(_))),
        "{verdict:?}"
    );
}
