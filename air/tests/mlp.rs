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

#[test]
fn proofs_of_the_widest_mlps_fit_their_size_allowance() {
    // The widest MLPs a run may use (within `MAX_WIRE_PARAMS` = 131,072 parameters: 256
    // hidden units and 64 classes over 446 features; 256 units over 12 features, 64 classes
    // after 60 units) and the digits shape: honest proofs stay under the bytes the verifier
    // reads.
    let shapes = [
        (446, 256, 64, 2),
        (12, 256, 2, 2),
        (1, 60, 64, 2),
        (64, 32, 10, 4),
    ];
    for (features, hidden, classes, batch) in shapes {
        let spec = Spec {
            features,
            rows: 8,
            batch,
            ..Spec::default()
        };
        let f = mlp_fixture(spec, hidden, classes);
        assert!(f.statement.model.params.len() <= zkfed_air::fixed::MAX_WIRE_PARAMS);
        let (update, proof) = prove(&f.statement, &f.dataset).expect("prove");
        let allowed = zkfed_air::proof::max_proof_bytes(&f.statement.shape());
        eprintln!(
            "{features} → {hidden} → {classes}: proof {} KiB, allowance {} KiB",
            proof.len() >> 10,
            allowed >> 10
        );
        assert!(proof.len() <= allowed, "{} > {allowed}", proof.len());
        verify(&f.statement, &update, &proof).expect("verify");
    }
}

// ---------------------------------------------------------------------------------------
// Cheating provers. Each starts from the honest traces, changes one intermediate of one
// example's MLP step, recomputes everything downstream as an honest prover would (the
// reference's `step_from_hidden` and `reclip`), writes the example's hidden block and step
// row (out-of-range values as their low bits: the range checks pass, the defining
// equation fails), moves the hidden coefficients into the example's hash-table block,
// rebalances the lookup table and the update, proves, and requires the verifier to reject
// the forged update; `broken_rules` names the rule that caught it.

use common::{Fixture, Rule, assert_edit_rejected, batch_steps, broken_rules, prove_and_verify};
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use zkfed_air::VerifyError;
use zkfed_air::engine::hidden_table::{self, HiddenClassCols, HiddenCols};
use zkfed_air::engine::softmax_table::{self, MlpCols};
use zkfed_air::engine::witness::{
    OutOfRange, Traces, generate_traces, write_hidden_block, write_mlp_row,
};
use zkfed_air::forgery::{rebalance, set_block_coeffs};
use zkfed_air::network::{HiddenUnit, LayerNorm, NetworkStep, ReluCase, step_from_hidden};
use zkfed_air::proof::prove_traces;

const HIDDEN: u16 = 8;
const CLASSES: u8 = 3;

struct Honest {
    f: Fixture,
    traces: Traces,
    steps: Vec<NetworkStep>,
    labels: Vec<u8>,
}

/// Weights up to 4.0 over features up to 3.0 put hidden units on all three pieces.
fn spec(clip: i64) -> Spec {
    Spec {
        features: 5,
        rows: 12,
        batch: 3,
        clip,
        weight_scale: 4 * ONE,
        seed: 21,
        ..Spec::default()
    }
}

fn honest(clip: i64) -> Honest {
    honest_with(spec(clip))
}

fn honest_with(spec: Spec) -> Honest {
    let f = mlp_fixture(spec, HIDDEN, CLASSES);
    let traces = generate_traces(&f.statement, &f.dataset).expect("honest traces");
    let (steps, labels) = batch_steps(&f);
    Honest {
        f,
        traces,
        steps,
        labels,
    }
}

/// The honest traces with example 0 clipped.
fn clipped() -> Honest {
    let h = honest(ONE / 8);
    assert!(h.steps[0].clipped, "the fixture's first example is clipped");
    h
}

/// The honest traces with example 0 kept.
fn kept() -> Honest {
    let h = honest(200 * ONE);
    assert!(!h.steps[0].clipped);
    h
}

/// The first unit of example 0 on `case`'s piece.
fn unit_on(h: &Honest, case: ReluCase) -> usize {
    h.steps[0]
        .hidden
        .iter()
        .position(|u| u.case == case)
        .unwrap_or_else(|| panic!("the fixture's first example has a {case:?} unit"))
}

/// `step` with layer `layer`'s bound replaced by `norm` of it, clipped again.
fn renormed(
    h: &Honest,
    mut step: NetworkStep,
    layer: usize,
    norm: impl Fn(LayerNorm) -> LayerNorm,
) -> NetworkStep {
    step.norms[layer] = norm(step.norms[layer]);
    step.reclip(h.clip());
    step
}

/// `step` with the first layer's bound recomputed from its (changed) hidden deltas.
fn rebound_hidden(h: &Honest, step: NetworkStep) -> NetworkStep {
    let sq: i64 = step.deltas()[0].iter().map(|d| d * d).sum();
    renormed(h, step, 0, |n| {
        LayerNorm::from_squares(n.input_sq, sq).unwrap()
    })
}

impl Honest {
    fn clip(&self) -> i64 {
        self.f.statement.params.clip_norm
    }

    /// Example `i`'s step from changed hidden units on, as an honest prover would.
    fn step_from(&self, i: usize, hidden: Vec<HiddenUnit>) -> NetworkStep {
        let layers = self.f.statement.model.layers().unwrap();
        let head = self.f.statement.model.spec.head();
        let index = self.f.statement.batch_indices[i] as usize;
        let (x, y, _) = self.f.dataset.row(index);
        step_from_hidden(&layers, head, x, hidden, y, self.clip()).unwrap()
    }
}

/// Cells a forger sets after writing the rows (to satisfy every rule but one).
type HiddenEdit = fn(
    &mut [(
        &mut HiddenCols<Goldilocks>,
        &mut [HiddenClassCols<Goldilocks>],
    )],
);
type StepEdit = fn(&mut MlpCols<Goldilocks>);

/// What a forgery broke (checked without proving) and the verifier's verdict.
struct Forged {
    broken: Vec<Rule>,
    verdict: Result<(), VerifyError>,
}

/// Writes `step` as example `i`'s, applies the edits, and proves the result.
fn forge_with(
    h: &mut Honest,
    i: usize,
    step: &NetworkStep,
    hidden_edit: HiddenEdit,
    step_edit: StepEdit,
) -> Forged {
    let clip = h.clip();
    let statement = &h.f.statement;
    let layers = statement.model.layers().unwrap();
    let hidden = h.traces.hidden.as_mut().expect("an MLP's hidden table");
    let block_cells = hidden.width * usize::from(HIDDEN);
    let block = &mut hidden.values[i * block_cells..(i + 1) * block_cells];
    write_hidden_block(block, &layers[1], i, step, clip, OutOfRange::Truncate).unwrap();
    let width = hidden.width;
    let mut rows: Vec<_> = block
        .chunks_exact_mut(width)
        .map(hidden_table::split_row_mut)
        .collect();
    hidden_edit(&mut rows);
    let width = h.traces.step.width;
    let row = &mut h.traces.step.values[i * width..(i + 1) * width];
    write_mlp_row(row, i, h.labels[i], step, clip, OutOfRange::Truncate).unwrap();
    step_edit(softmax_table::split_mlp_row_mut(row).1);
    let hash_block = statement.shape().block_len();
    set_block_coeffs(
        statement,
        &mut h.traces,
        i * hash_block,
        &step.coefficients[0],
    );
    let update = rebalance(statement, &mut h.traces).expect("a small forged update");
    Forged {
        broken: broken_rules(statement, &h.traces, &update),
        verdict: prove_and_verify(statement, &h.traces, &update),
    }
}

/// The forged step changes the update, breaks exactly `rules`, and the verifier rejects
/// it.
fn assert_rejected_with(
    mut h: Honest,
    step: NetworkStep,
    edits: (HiddenEdit, StepEdit),
    rules: &[Rule],
    what: &str,
) {
    let honest_update = h.traces.update.clone();
    let forged = forge_with(&mut h, 0, &step, edits.0, edits.1);
    assert_ne!(
        h.traces.update, honest_update,
        "{what}: the cheat changes the update"
    );
    assert_eq!(forged.broken, rules, "{what}");
    assert!(
        matches!(forged.verdict, Err(VerifyError::Rejected(_))),
        "{what}: {:?}",
        forged.verdict
    );
}

fn assert_rejected(h: Honest, step: NetworkStep, rules: &[Rule], what: &str) {
    assert_rejected_with(h, step, (|_| {}, |_| {}), rules, what)
}

#[test]
fn rewriting_an_honest_mlp_step_verifies() {
    // The harness itself: the honest step rewritten through the forger's path verifies.
    for mut h in [clipped(), kept()] {
        let step = h.steps[0].clone();
        let forged = forge_with(&mut h, 0, &step, |_| {}, |_| {});
        assert_eq!((forged.broken, forged.verdict), (vec![], Ok(())));
    }
}

#[test]
fn wrong_hidden_activation_is_rejected() {
    // A linear unit's value one step above its quotient; the second layer reads it.
    let h = clipped();
    let m = unit_on(&h, ReluCase::Linear);
    let mut hidden = h.steps[0].hidden.clone();
    hidden[m].value += ONE;
    let step = h.step_from(0, hidden);
    assert_rejected(h, step, &[Rule::Hidden], "hidden activation off");
}

#[test]
fn relu_branch_flipped_is_rejected() {
    // A negative unit claimed linear at 0 (so its delta flows back), and a linear unit
    // claimed negative (so its delta is dropped).
    for (from, to) in [
        (ReluCase::Negative, ReluCase::Linear),
        (ReluCase::Linear, ReluCase::Negative),
    ] {
        let h = kept();
        let m = unit_on(&h, from);
        let mut hidden = h.steps[0].hidden.clone();
        hidden[m].case = to;
        hidden[m].value = 0;
        if to == ReluCase::Linear {
            hidden[m].quotient = 0;
        }
        let step = h.step_from(0, hidden);
        assert_ne!(step.coefficients, h.steps[0].coefficients, "{from:?}");
        assert_rejected(h, step, &[Rule::Hidden], &format!("{from:?} as {to:?}"));
    }
}

#[test]
fn capped_unit_claimed_linear_is_rejected() {
    // A capped unit passes its quotient (above the cap) on as its value, and its delta
    // back: the linear piece's bound on the value is broken, by its zero top limbs or by
    // the range check of its second limb. Weights up to 12.0 cap some units.
    let h = honest_with(Spec {
        weight_scale: 12 * ONE,
        ..spec(200 * ONE)
    });
    let m = unit_on(&h, ReluCase::Capped);
    let mut hidden = h.steps[0].hidden.clone();
    hidden[m].case = ReluCase::Linear;
    hidden[m].value = hidden[m].quotient;
    let step = h.step_from(0, hidden);
    let mut h = h;
    let honest_update = h.traces.update.clone();
    let forged = forge_with(&mut h, 0, &step, |_| {}, |_| {});
    assert_ne!(h.traces.update, honest_update);
    assert!(
        !forged.broken.is_empty()
            && forged
                .broken
                .iter()
                .all(|r| [Rule::Hidden, Rule::Bus].contains(r)),
        "{:?}",
        forged.broken
    );
    assert!(matches!(forged.verdict, Err(VerifyError::Rejected(_))));
}

#[test]
fn hidden_delta_off_by_one_is_rejected() {
    // A linear unit's backward floor one too high; everything after follows it.
    let h = kept();
    let m = unit_on(&h, ReluCase::Linear);
    let mut step = h.steps[0].clone();
    step.hidden_back[m].delta += 1;
    let step = rebound_hidden(&h, step);
    assert_rejected(h, step, &[Rule::Hidden], "hidden delta off by one");
}

#[test]
fn delta_through_an_inactive_unit_is_rejected() {
    // A negative unit's delta is `floor(t / 2^16)` as if it were linear.
    let h = kept();
    let m = unit_on(&h, ReluCase::Negative);
    let mut step = h.steps[0].clone();
    let back = step.hidden_back[m].back;
    step.hidden_back[m].delta = back >> 16;
    assert_ne!(
        step.hidden_back[m].delta, 0,
        "the unit has a gradient to leak"
    );
    let step = rebound_hidden(&h, step);
    assert_rejected(h, step, &[Rule::Hidden], "delta through a negative unit");
}

/// Example 0's step with the first layer's `Σ δ²` halved, clipped again.
fn understated_delta_sq(h: &Honest) -> NetworkStep {
    renormed(h, h.steps[0].clone(), 0, |n| {
        LayerNorm::from_squares(n.input_sq, n.delta_sq - n.delta_sq / 2).unwrap()
    })
}

#[test]
fn first_layer_norm_understated_is_rejected() {
    // Half of Σ δ² claimed: in the hidden table's running sum (its rule breaks), or only in
    // the step row (the head bus does not balance).
    let h = clipped();
    let step = understated_delta_sq(&h);
    let edit: HiddenEdit = |rows| {
        let total = rows.last().unwrap().0.delta_sq;
        let half = Goldilocks::from_u64(p3_field::PrimeField64::as_canonical_u64(&total) / 2);
        for (c, _) in rows.iter_mut() {
            c.delta_sq -= half;
        }
    };
    assert_rejected_with(
        h,
        step,
        (edit, |_| {}),
        &[Rule::Hidden],
        "Σδ² in the hidden table",
    );
    let h = clipped();
    let step = understated_delta_sq(&h);
    assert_rejected(h, step, &[Rule::Bus], "Σδ² in the step row only");
}

#[test]
fn second_layer_norm_understated_is_rejected() {
    // Σ h² claimed 1.0² lower in the hidden table's running sum.
    let h = clipped();
    let step = renormed(&h, h.steps[0].clone(), 1, |n| {
        LayerNorm::from_squares(n.input_sq - ONE * ONE, n.delta_sq).unwrap()
    });
    let edit: HiddenEdit = |rows| {
        for (c, _) in rows.iter_mut() {
            c.value_sq -= Goldilocks::from_u64((ONE * ONE) as u64);
        }
    };
    assert_rejected_with(h, step, (edit, |_| {}), &[Rule::Hidden], "Σh² understated");
}

#[test]
fn first_layer_bound_understated_is_rejected() {
    let h = clipped();
    let step = renormed(&h, h.steps[0].clone(), 0, |n| LayerNorm {
        bound: n.bound / 2,
        ..n
    });
    assert_rejected(h, step, &[Rule::Step], "A_1 understated");
}

#[test]
fn whole_vector_norm_understated_is_rejected() {
    // ν at 3/4 of ceil(√(A_1² + A_2²)), every coefficient clipped by it.
    let h = clipped();
    let mut step = h.steps[0].clone();
    step.norm = step.norm * 3 / 4;
    let (clip, norm) = (h.clip(), step.norm);
    step.coefficients = step
        .deltas()
        .iter()
        .map(|layer| {
            layer
                .iter()
                .map(|&d| d.signum() * (d.abs() * clip / norm))
                .collect()
        })
        .collect();
    assert_rejected(h, step, &[Rule::Step], "ν understated");
}

#[test]
fn hidden_deltas_claimed_zero_by_the_flag_are_rejected() {
    // `Σ δ² = 0` flagged, so `ν_δ = 0` and `A_1 = 0`.
    let h = clipped();
    let step = renormed(&h, h.steps[0].clone(), 0, |n| LayerNorm {
        delta_norm: 0,
        bound: 0,
        ..n
    });
    let edit: StepEdit = |mlp| {
        mlp.delta_zero = Goldilocks::ONE;
        mlp.delta_lower = Default::default();
    };
    assert_rejected_with(h, step, (|_| {}, edit), &[Rule::Step], "zero flag");
}

#[test]
fn first_layer_input_understated_is_rejected() {
    // The step row claims a smaller `Σ x² + ONE²` than the hash table summed.
    let h = clipped();
    let step = renormed(&h, h.steps[0].clone(), 0, |n| {
        LayerNorm::from_squares(n.input_sq / 2, n.delta_sq).unwrap()
    });
    assert_rejected(h, step, &[Rule::Bus], "N understated");
}

#[test]
fn hidden_coefficient_changed_is_rejected() {
    // Kept: one hidden coefficient one above its delta. Clipped: one above its floor.
    for h in [kept(), clipped()] {
        let m = unit_on(&h, ReluCase::Linear);
        let mut step = h.steps[0].clone();
        step.coefficients[0][m] += 1;
        assert_rejected(h, step, &[Rule::Hidden], "hidden coefficient");
    }
}

#[test]
fn output_coefficient_changed_inside_a_block_is_rejected() {
    // One row of the block claims another output coefficient, so its share of the second
    // layer's weights changes.
    let h = clipped();
    let step = h.steps[0].clone();
    let edit: HiddenEdit = |rows| rows[0].1[1].coeff += Goldilocks::ONE;
    assert_rejected_with(
        h,
        step,
        (edit, |_| {}),
        &[Rule::Hidden],
        "c2 inside a block",
    );
}

#[test]
fn skipped_example_is_rejected() {
    // Example 0 contributes nothing: zero coefficients in every table.
    let h = clipped();
    let mut step = h.steps[0].clone();
    for layer in &mut step.coefficients {
        layer.fill(0);
    }
    assert_rejected(h, step, &[Rule::Step, Rule::Hidden], "skipped example");
}

#[test]
fn a_padding_row_that_adds_to_the_update_is_rejected() {
    let mut h = clipped();
    let honest_update = h.traces.update.clone();
    let hidden = h.traces.hidden.as_mut().unwrap();
    let padding = h.f.statement.params.batch_size * usize::from(HIDDEN);
    let width = hidden.width;
    let (c, classes) = hidden_table::split_row_mut(&mut hidden.values[padding * width..][..width]);
    c.value = Goldilocks::ONE;
    classes[0].coeff = Goldilocks::from_u64(1 << 20);
    let update = assert_edit_rejected(&h.f.statement, &mut h.traces, &[Rule::Hidden]);
    assert_ne!(update, honest_update);
}

#[test]
fn hidden_units_swapped_between_examples_are_rejected() {
    // Example 0's block takes unit 0 from example 1 and example 1's from example 0, each
    // re-witnessed from the mixed units: every table's rules hold, the tags do not match.
    let mut h = clipped();
    let honest_update = h.traces.update.clone();
    let mut mixed = [h.steps[0].hidden.clone(), h.steps[1].hidden.clone()];
    let first = mixed[0][0];
    mixed[0][0] = mixed[1][0];
    mixed[1][0] = first;
    assert_ne!(mixed[0][0], mixed[1][0], "the swap changes both examples");
    let steps = [
        h.step_from(0, mixed[0].clone()),
        h.step_from(1, mixed[1].clone()),
    ];
    let mut broken = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let forged = forge_with(&mut h, i, step, |_| {}, |_| {});
        broken = forged.broken;
        if i == 1 {
            assert!(
                matches!(forged.verdict, Err(VerifyError::Rejected(_))),
                "{:?}",
                forged.verdict
            );
        }
    }
    assert_ne!(h.traces.update, honest_update);
    assert_eq!(broken, [Rule::Bus]);
}

#[test]
fn a_changed_update_entry_of_the_second_layer_is_rejected() {
    let h = clipped();
    let d = h.f.statement.model.num_features();
    let second = usize::from(HIDDEN) * (d + 1);
    let last = h.traces.update.values.len() - 1;
    common::assert_changed_entries_rejected(
        &h.f.statement,
        &h.traces,
        &[second + 3, second - 1, last],
    );
}

#[test]
fn doubled_mlp_traces_are_rejected_for_their_height() {
    common::assert_taller_trace_refused(&clipped().f);
}

#[test]
fn a_proof_with_another_hidden_table_height_is_refused() {
    let h = kept();
    let bytes = prove_traces(&h.f.statement, &h.traces, &h.traces.update).unwrap();
    let mut proof = zkfed_air::proof::decode_proof(&bytes).unwrap();
    assert_eq!(proof.degree_bits.len(), 5);
    proof.degree_bits[4] += 1;
    let tampered = zkfed_air::proof::encode_proof(&proof);
    let verdict = verify(&h.f.statement, &h.traces.update, &tampered);
    assert!(
        matches!(
            verdict,
            Err(VerifyError::ProofShape {
                field: "hidden table degree_bits",
                ..
            })
        ),
        "{verdict:?}"
    );
}

#[test]
fn a_masked_feature_off_its_lane_is_rejected() {
    // An MLP's hash row holds each feature lane's value once for every unit's share. One
    // of them changed (so every unit's share of that feature changes) breaks the hash
    // table's rule; so does the label lane read as a feature, whose shares would land on
    // the next unit's weights (and unbalance the update bus).
    use zkfed_air::engine::hash_table::{HashCols, LABEL_LANE, NUM_HASH_COLS};
    for lane in [1, LABEL_LANE] {
        let mut h = kept();
        let honest_update = h.traces.update.clone();
        let width = h.traces.hash.width;
        let c = HashCols::from_row_mut(&mut h.traces.hash.values[..width][..NUM_HASH_COLS]);
        c.share[lane] += Goldilocks::from_u64(3);
        let rules = match lane {
            LABEL_LANE => vec![Rule::Hash, Rule::Bus],
            _ => vec![Rule::Hash],
        };
        let update = assert_edit_rejected(&h.f.statement, &mut h.traces, &rules);
        assert!(lane == LABEL_LANE || update != honest_update, "lane {lane}");
    }
}

#[test]
fn copies_of_the_verifiers_positions_are_bound() {
    // A hidden row claiming another example's position (its tuple no longer matches
    // either), and an absorb row of the hash table claiming another block's tag: the copy
    // rule breaks on every row, not only the one that sends.
    let mut h = kept();
    let hidden = h.traces.hidden.as_mut().unwrap();
    let width = hidden.width;
    hidden_table::split_row_mut(&mut hidden.values[..width])
        .0
        .example = Goldilocks::ONE;
    assert_edit_rejected(&h.f.statement, &mut h.traces, &[Rule::Hidden, Rule::Bus]);
    let mut h = kept();
    let width = h.traces.hash.width;
    h.traces.hash.values[width - 1] = Goldilocks::ONE;
    assert_edit_rejected(&h.f.statement, &mut h.traces, &[Rule::Hash]);
}

#[test]
fn a_running_second_layer_logit_off_its_weighted_sum_is_rejected() {
    // The block's first row starts class 0's logit one unit above `b·ONE + W2·h`.
    let mut h = kept();
    let hidden = h.traces.hidden.as_mut().unwrap();
    let width = hidden.width;
    hidden_table::split_row_mut(&mut hidden.values[..width]).1[0].logit += Goldilocks::ONE;
    assert_edit_rejected(&h.f.statement, &mut h.traces, &[Rule::Hidden]);
}

#[test]
fn first_layer_norm_roots_understated_are_rejected() {
    // `ν_x` or `ν_δ` claimed at half its ceiling square root, `A_1` and everything after
    // recomputed from it.
    for input in [true, false] {
        let h = clipped();
        let step = renormed(&h, h.steps[0].clone(), 0, |n| {
            let (input_norm, delta_norm) = match input {
                true => (n.input_norm / 2, n.delta_norm),
                false => (n.input_norm, n.delta_norm / 2),
            };
            LayerNorm {
                input_norm,
                delta_norm,
                bound: (delta_norm * input_norm + ONE - 1) / ONE,
                ..n
            }
        });
        assert_rejected(h, step, &[Rule::Step], "a first-layer root understated");
    }
}

/// Example 0's step with every delta kept, as if `ν` were `norm`.
fn kept_at(h: &Honest, norm: i64) -> NetworkStep {
    let mut step = h.steps[0].clone();
    step.norm = norm;
    step.clipped = false;
    step.coefficients = step.deltas();
    step
}

#[test]
fn kept_although_the_norm_exceeds_the_clip_is_rejected() {
    let h = clipped();
    let step = kept_at(&h, h.steps[0].norm);
    assert_rejected(h, step, &[Rule::Step], "kept above C");
}

#[test]
fn the_whole_norm_claimed_zero_by_its_flag_is_rejected() {
    // `ν = 0` flagged, so nothing is clipped.
    let h = clipped();
    let step = kept_at(&h, 0);
    let edit: StepEdit = |mlp| {
        mlp.norm_zero = Goldilocks::ONE;
        mlp.norm_lower = Default::default();
    };
    assert_rejected_with(h, step, (|_| {}, edit), &[Rule::Step], "ν zero flag");
}
