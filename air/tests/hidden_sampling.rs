//! Hidden Poisson sampling: honest proofs verify and attest to the sum over exactly the
//! sampled rows; every way of choosing other rows breaks a named rule and is rejected.

mod common;

use common::{Rule, Spec, broken_rules, context, fixture, prove_and_verify, softmax_fixture};
use p3_field::Field;
use p3_field::{PrimeCharacteristicRing, PrimeField64};
use p3_goldilocks::Goldilocks;
use rand::SeedableRng;
use rand::rngs::StdRng;
use zkfed_air::engine::hash_table::{HashCols, NUM_HASH_COLS};
use zkfed_air::engine::limbs::write_limbs_truncated;
use zkfed_air::engine::sampling_table::{HALF_BITS, NUM_SAMPLING_COLS, SamplingCols};
use zkfed_air::engine::softmax_table;
use zkfed_air::engine::step_table::StepCols;
use zkfed_air::engine::witness::{Labels, Traces, generate_for_slots, generate_traces};
use zkfed_air::sampling::{
    ROWS_PER_PERMUTATION, SamplingKey, SamplingRate, capacity, sampled_rows, split,
};
use zkfed_air::statement::HiddenSampling;
use zkfed_air::{CommittedDataset, RoundParams, ShapeError, Statement, VerifyError, WitnessError};

const RATE: f64 = 0.25;

struct Hidden {
    dataset: CommittedDataset,
    statement: Statement,
    key: SamplingKey,
}

impl Hidden {
    fn sampled(&self) -> Vec<u64> {
        let s = self.statement.sampling.unwrap();
        sampled_rows(
            &self.key,
            self.statement.draw(),
            self.statement.dataset.rows,
            s.rate,
        )
    }

    /// The honest slots: the sampled rows, then unused slots on the first of them.
    fn slots(&self) -> Vec<(u64, bool)> {
        let sampled = self.sampled();
        let filler = (sampled[0], false);
        let mut slots: Vec<_> = sampled.into_iter().map(|r| (r, true)).collect();
        slots.resize(self.statement.params.batch_size, filler);
        slots
    }

    /// The honest slots with `row` claimed in the first unused one.
    fn slots_claiming(&self, row: u64) -> Vec<(u64, bool)> {
        let mut slots = self.slots();
        let unused = slots.iter().position(|s| !s.1).unwrap();
        slots[unused] = (row, true);
        slots
    }

    fn traces_for(&self, slots: &[(u64, bool)]) -> Traces {
        generate_for_slots(&self.statement, &self.dataset, Labels::Checked, slots).unwrap()
    }

    /// A live row the key does not sample.
    fn unsampled_row(&self) -> u64 {
        let sampled = self.sampled();
        (0..self.statement.dataset.rows)
            .find(|r| !sampled.contains(r))
            .expect("some row is not sampled")
    }
}

fn spec() -> Spec {
    Spec {
        rows: 64,
        batch: 4,
        ..Spec::default()
    }
}

fn key(seed: u64) -> SamplingKey {
    SamplingKey::generate(&mut StdRng::seed_from_u64(seed))
}

fn hidden(classes: Option<u8>) -> Hidden {
    let base = match classes {
        None => fixture(spec()),
        Some(k) => softmax_fixture(spec(), k),
    };
    let key = key(41);
    let dataset = base.dataset.with_sampling_key(key.clone());
    let sampling = HiddenSampling {
        key: key.commitment(),
        rate: SamplingRate::from_probability(RATE).unwrap(),
    };
    let statement = Statement::with_hidden_sampling(
        context(3),
        base.statement.model.clone(),
        spec().clip,
        dataset.commitment(),
        [9; 32],
        sampling,
    )
    .unwrap();
    let f = Hidden {
        dataset,
        statement,
        key,
    };
    let count = f.sampled().len();
    assert!(
        count > 1 && count < f.statement.params.batch_size,
        "{count}"
    );
    f
}

/// The same rows as a public-index statement: the update hidden sampling must attest to.
fn public_update(f: &Hidden) -> zkfed_air::ClippedGradientSum {
    let sampled = f.sampled();
    let mut public = Statement::new(
        f.statement.context,
        f.statement.model.clone(),
        RoundParams {
            clip_norm: f.statement.params.clip_norm,
            batch_size: sampled.len(),
        },
        f.statement.dataset,
        f.statement.seed,
    )
    .unwrap();
    public.batch_indices = sampled;
    generate_traces(&public, &f.dataset).unwrap().update
}

/// The sampling table's row and lane that decide dataset row `row`.
fn lane_of(row: u64) -> (usize, usize) {
    let row = row as usize;
    (row / ROWS_PER_PERMUTATION + 1, row % ROWS_PER_PERMUTATION)
}

fn sampling_row(traces: &mut Traces, row: usize) -> &mut SamplingCols<Goldilocks> {
    let table = &mut traces.sampling.as_mut().unwrap().table;
    let cells = &mut table.values[row * NUM_SAMPLING_COLS..(row + 1) * NUM_SAMPLING_COLS];
    SamplingCols::from_row_mut(cells)
}

/// The traces break `rule` (among others, maybe) and their proof is rejected.
fn assert_breaks(f: &Hidden, traces: &Traces, rule: Rule) {
    let rules = broken_rules(&f.statement, traces, &traces.update);
    assert!(rules.contains(&rule), "{rules:?}");
    let verdict = prove_and_verify(&f.statement, traces, &traces.update);
    assert!(
        matches!(verdict, Err(VerifyError::Rejected(_))),
        "{verdict:?}"
    );
}

fn assert_rejected(f: &Hidden, traces: &Traces, rules: &[Rule]) {
    assert_eq!(broken_rules(&f.statement, traces, &traces.update), rules);
    let verdict = prove_and_verify(&f.statement, traces, &traces.update);
    assert!(
        matches!(verdict, Err(VerifyError::Rejected(_))),
        "{verdict:?}"
    );
}

#[test]
fn honest_proofs_attest_to_exactly_the_sampled_rows() {
    for classes in [None, Some(3)] {
        let f = hidden(classes);
        let traces = generate_traces(&f.statement, &f.dataset).unwrap();
        assert_eq!(broken_rules(&f.statement, &traces, &traces.update), []);
        let expected = public_update(&f);
        assert_eq!(traces.update.values, expected.values);
        // The public count is the slots', whatever the sample's size.
        assert_eq!(traces.update.examples, f.statement.params.batch_size as u64);
        let (update, proof) = zkfed_air::prove(&f.statement, &f.dataset).unwrap();
        assert_eq!(update, traces.update);
        zkfed_air::verify(&f.statement, &update, &proof).unwrap();
    }
}

#[test]
fn the_public_values_name_no_row_and_no_count() {
    let f = hidden(None);
    let update = generate_traces(&f.statement, &f.dataset).unwrap().update;
    let public = f.statement.public_values(&update);
    // Everything before the update is fixed by the statement, which holds no index.
    let other_key = key(42);
    let mut other = f.statement.clone();
    other.sampling = Some(HiddenSampling {
        key: other_key.commitment(),
        ..f.statement.sampling.unwrap()
    });
    let dataset = f.dataset.clone().with_sampling_key(other_key);
    let other_update = generate_traces(&other, &dataset).unwrap().update;
    let layout = f.statement.layout();
    let public_other = other.public_values(&other_update);
    let differing: Vec<usize> = (0..layout.update)
        .filter(|&i| public[i] != public_other[i])
        .collect();
    let commitment = layout.update - 6..layout.update - 2;
    assert!(
        differing.iter().all(|i| commitment.contains(i)),
        "{differing:?}"
    );
    assert_eq!(public[layout.len - 1], public_other[layout.len - 1]);
    assert!(f.statement.batch_indices.is_empty());
}

#[test]
fn a_row_whose_bit_is_zero_cannot_be_included() {
    let f = hidden(None);
    let slots = f.slots_claiming(f.unsampled_row());
    assert_rejected(&f, &f.traces_for(&slots), &[Rule::Bus]);
}

#[test]
fn a_sampled_row_cannot_be_skipped() {
    let f = hidden(None);
    let mut slots = f.slots();
    let last = slots.iter().rposition(|s| s.1).unwrap();
    slots[last] = (0, false);
    assert_rejected(&f, &f.traces_for(&slots), &[Rule::Bus]);
}

#[test]
fn a_row_cannot_be_claimed_twice() {
    let f = hidden(None);
    let mut slots = f.slots();
    let unused = slots.iter().position(|s| !s.1).unwrap();
    slots[unused] = slots[0];
    assert_rejected(&f, &f.traces_for(&slots), &[Rule::Bus]);
}

#[test]
fn the_sampling_table_cannot_flip_a_decision() {
    let f = hidden(None);
    let threshold = f.statement.sampling.unwrap().rate.threshold;
    // A sampled row declared unsampled, and left out of the slots.
    let skipped = f.sampled()[0];
    let mut slots = f.slots();
    let at = slots.iter().position(|&s| s == (skipped, true)).unwrap();
    slots.remove(at);
    slots.push((0, false));
    let mut traces = f.traces_for(&slots);
    let (row, lane) = lane_of(skipped);
    let c = sampling_row(&mut traces, row);
    let low = split(c.output[lane]).0 as i64;
    c.lanes[lane].sampled = Goldilocks::ZERO;
    write_limbs_truncated(&mut c.lanes[lane].slack, low - threshold as i64, HALF_BITS);
    traces.recount_lookups(&f.statement.shape());
    assert_rejected(&f, &traces, &[Rule::Sampling]);

    // An unsampled row declared sampled, and claimed by an unused slot.
    let included = f.unsampled_row();
    let mut traces = f.traces_for(&f.slots_claiming(included));
    let (row, lane) = lane_of(included);
    let c = sampling_row(&mut traces, row);
    let low = split(c.output[lane]).0 as i64;
    c.lanes[lane].sampled = Goldilocks::ONE;
    write_limbs_truncated(
        &mut c.lanes[lane].slack,
        threshold as i64 - 1 - low,
        HALF_BITS,
    );
    traces.recount_lookups(&f.statement.shape());
    assert_rejected(&f, &traces, &[Rule::Sampling]);
}

#[test]
fn a_changed_prf_output_is_refused() {
    let f = hidden(None);
    let threshold = f.statement.sampling.unwrap().rate.threshold;
    let included = f.unsampled_row();
    let mut traces = f.traces_for(&f.slots_claiming(included));
    let (row, lane) = lane_of(included);
    let c = sampling_row(&mut traces, row);
    // A value whose low half is 0: sampled, with a consistent split and slack.
    let high = split(c.output[lane]).1;
    c.output[lane] = Goldilocks::from_u64(high << 32);
    let l = &mut c.lanes[lane];
    write_limbs_truncated(&mut l.low, 0, HALF_BITS);
    l.sampled = Goldilocks::ONE;
    write_limbs_truncated(&mut l.slack, threshold as i64 - 1, HALF_BITS);
    traces.recount_lookups(&f.statement.shape());
    // Only the permutation bus notices: the output is not the permutation's.
    assert_rejected(&f, &traces, &[Rule::Bus]);
}

#[test]
fn a_key_other_than_the_committed_one_is_refused() {
    let f = hidden(None);
    let other_key = key(43);
    let dataset = f.dataset.clone().with_sampling_key(other_key.clone());
    assert!(matches!(
        generate_traces(&f.statement, &dataset),
        Err(WitnessError::SamplingKey)
    ));
    // The other key's sample and PRF, proven against the committed key's statement.
    let mut theirs = f.statement.clone();
    theirs.sampling = Some(HiddenSampling {
        key: other_key.commitment(),
        ..f.statement.sampling.unwrap()
    });
    let traces = generate_traces(&theirs, &dataset).unwrap();
    assert_rejected(&f, &traces, &[Rule::Sampling]);
}

#[test]
fn an_unused_slot_cannot_contribute() {
    for classes in [None, Some(3)] {
        let f = hidden(classes);
        let mut slots = f.slots();
        let unused = slots.iter().position(|s| !s.1).unwrap();
        // Row 0's step in the unused slot, counted in the update, while the slot claims
        // nothing.
        slots[unused] = (0, true);
        let mut traces = f.traces_for(&slots);
        set_block(&f, &mut traces, unused, |c| {
            c.sampled = Goldilocks::ZERO;
            c.claims = Goldilocks::ZERO;
        });
        let step_width = traces.step.width;
        let row = &mut traces.step.values[unused * step_width..(unused + 1) * step_width];
        match classes {
            None => StepCols::from_row_mut(row).sampled = Goldilocks::ZERO,
            Some(_) => softmax_table::split_row_mut(row).0.sampled = Goldilocks::ZERO,
        }
        let update = zkfed_air::forgery::rebalance(&f.statement, &mut traces).unwrap();
        assert_ne!(update.values, public_update(&f).values);
        assert_rejected(&f, &traces, &[Rule::Step]);
    }
}

/// Edits the named hash-table columns of every row of slot `slot`.
fn set_block(
    f: &Hidden,
    traces: &mut Traces,
    slot: usize,
    edit: impl Fn(&mut HashCols<Goldilocks>),
) {
    let block = f.statement.shape().block_len();
    let width = traces.hash.width;
    for r in slot * block..(slot + 1) * block {
        let row = &mut traces.hash.values[r * width..r * width + NUM_HASH_COLS];
        edit(HashCols::from_row_mut(row));
    }
}

#[test]
fn a_slot_cannot_change_its_mind_within_its_block() {
    // A used slot whose first absorb row says "not sampled": the block constant breaks.
    let f = hidden(None);
    let mut traces = generate_traces(&f.statement, &f.dataset).unwrap();
    HashCols::from_row_mut(&mut traces.hash.values[..NUM_HASH_COLS]).sampled = Goldilocks::ZERO;
    assert_rejected(&f, &traces, &[Rule::Hash]);
}

#[test]
fn a_slot_claims_only_on_its_root_row() {
    // The claim moved from the root row to the first Merkle row of a used slot.
    let f = hidden(None);
    let mut traces = generate_traces(&f.statement, &f.dataset).unwrap();
    let shape = f.statement.shape();
    let (first_merkle, root) = (shape.chunks(), shape.block_len() - 1);
    let width = traces.hash.width;
    for (r, claims) in [(first_merkle, Goldilocks::ONE), (root, Goldilocks::ZERO)] {
        let row = &mut traces.hash.values[r * width..r * width + NUM_HASH_COLS];
        HashCols::from_row_mut(row).claims = claims;
    }
    assert_breaks(&f, &traces, Rule::Hash);
}

#[test]
fn a_row_past_the_dataset_cannot_be_sampled() {
    // A padding row past the dataset's blocks: its lanes are past the last row.
    let f = hidden(None);
    let mut traces = generate_traces(&f.statement, &f.dataset).unwrap();
    let blocks = f
        .statement
        .dataset
        .rows
        .div_ceil(ROWS_PER_PERMUTATION as u64) as usize;
    let c = sampling_row(&mut traces, blocks + 1);
    c.lanes[0].sampled = Goldilocks::ONE;
    traces.recount_lookups(&f.statement.shape());
    assert_breaks(&f, &traces, Rule::Sampling);
}

#[test]
fn the_key_cannot_change_between_prf_blocks() {
    // Block 2 under another key, its permutation row recomputed so the permutation bus
    // holds: only the key's row-to-row equality notices.
    let f = hidden(None);
    let mut traces = generate_traces(&f.statement, &f.dataset).unwrap();
    let other = key(44).elements();
    let input = zkfed_air::sampling::prf_input(&other, f.statement.draw(), 2);
    let perm_row = zkfed_air::engine::witness::permutation_row(input);
    let sampling = traces.sampling.as_mut().unwrap();
    let w = sampling.permutation.width;
    sampling.permutation.values[2 * w..3 * w].copy_from_slice(&perm_row);
    let perm: &zkfed_air::engine::permutation_table::PermCols<Goldilocks> =
        std::borrow::Borrow::borrow(&perm_row[..]);
    let out =
        perm.ending_full_rounds[zkfed_air::engine::permutation_table::HALF_FULL_ROUNDS - 1].post;
    let threshold = f.statement.sampling.unwrap().rate.threshold;
    let c = sampling_row(&mut traces, 2);
    c.input = input;
    for (lane, &l) in zkfed_air::engine::permutation_table::OUTPUT_LANES
        .iter()
        .enumerate()
    {
        c.output[lane] = out[l];
    }
    // Re-split every lane and keep each decision as the honest slots claimed it, so only
    // the key's constancy (and what follows from it) can object.
    for lane in 0..ROWS_PER_PERMUTATION {
        let (low, high) = split(c.output[lane]);
        let l = &mut c.lanes[lane];
        write_limbs_truncated(&mut l.low, low as i64, HALF_BITS);
        write_limbs_truncated(&mut l.high, high as i64, HALF_BITS);
        l.high_gap_inverse = (Goldilocks::from_u64(high) - Goldilocks::from_u64(0xFFFF_FFFF))
            .try_inverse()
            .unwrap();
        let slack = match l.sampled == Goldilocks::ONE {
            true => threshold as i64 - 1 - low as i64,
            false => low as i64 - threshold as i64,
        };
        write_limbs_truncated(&mut l.slack, slack, HALF_BITS);
    }
    traces.recount_lookups(&f.statement.shape());
    let rules = broken_rules(&f.statement, &traces, &traces.update);
    assert!(
        rules.contains(&Rule::Sampling) && !rules.contains(&Rule::SamplingPermutation),
        "{rules:?}"
    );
    let verdict = prove_and_verify(&f.statement, &traces, &traces.update);
    assert!(
        matches!(verdict, Err(VerifyError::Rejected(_))),
        "{verdict:?}"
    );
}

#[test]
fn a_public_batch_cannot_drop_an_example() {
    // With public indices every active step row is sampled: example 0 declared unused,
    // its coefficients and shares zeroed everywhere so every other rule holds.
    let f = fixture(spec());
    let mut traces = generate_traces(&f.statement, &f.dataset).unwrap();
    let block = f.statement.shape().block_len();
    let width = traces.hash.width;
    for r in 0..block {
        let c =
            HashCols::from_row_mut(&mut traces.hash.values[r * width..r * width + NUM_HASH_COLS]);
        c.sampled = Goldilocks::ZERO;
        c.coeff = Goldilocks::ZERO;
        c.share = [Goldilocks::ZERO; 8];
    }
    let step_width = traces.step.width;
    let c = StepCols::from_row_mut(&mut traces.step.values[..step_width]);
    c.sampled = Goldilocks::ZERO;
    c.coeff = Goldilocks::ZERO;
    let update = zkfed_air::forgery::rebalance(&f.statement, &mut traces).unwrap();
    assert_eq!(broken_rules(&f.statement, &traces, &update), [Rule::Step]);
    let verdict = prove_and_verify(&f.statement, &traces, &update);
    assert!(
        matches!(verdict, Err(VerifyError::Rejected(_))),
        "{verdict:?}"
    );
}

#[test]
fn a_sampling_table_of_another_height_is_refused_before_plonky3_reads_it() {
    let f = hidden(None);
    let (update, bytes) = zkfed_air::prove(&f.statement, &f.dataset).unwrap();
    let mut proof = zkfed_air::proof::decode_proof(&bytes).unwrap();
    let last = proof.degree_bits.len() - 1;
    proof.degree_bits[last] += 1;
    let forged = zkfed_air::proof::encode_proof(&proof);
    let verdict = zkfed_air::verify(&f.statement, &update, &forged);
    assert!(
        matches!(&verdict, Err(VerifyError::ProofShape { field, .. }) if *field == "sampling table degree_bits"),
        "{verdict:?}"
    );
}

#[test]
fn a_statement_with_fewer_slots_than_the_capacity_is_refused() {
    // A sample larger than the capacity cannot be proven in the statement's slots:
    // dropping rows to fit is skipping them (refused by the bus, above), and a statement
    // with fewer slots is refused by prover and verifier alike.
    let f = hidden(None);
    let rate = f.statement.sampling.unwrap().rate;
    assert_eq!(
        f.statement.params.batch_size,
        capacity(f.statement.dataset.rows, rate)
    );
    let mut small = f.statement.clone();
    small.params.batch_size = f.sampled().len() - 1;
    assert!(matches!(
        generate_traces(&small, &f.dataset),
        Err(WitnessError::Shape(ShapeError::Count { .. }))
    ));
    let update = generate_traces(&f.statement, &f.dataset).unwrap().update;
    assert!(matches!(
        zkfed_air::verify(&small, &update, &[]),
        Err(VerifyError::Statement(ShapeError::Count { .. }))
    ));
}

#[test]
fn a_split_that_is_not_unique_is_refused() {
    // `v + p` fits in 64 bits for `v < 2^32 - 1`, and splits into other halves with the
    // high half all ones. A forger claiming that split for a value breaks the split's rule
    // (the value is forged too, so the permutation bus objects as well).
    let f = hidden(None);
    let mut traces = generate_traces(&f.statement, &f.dataset).unwrap();
    let c = sampling_row(&mut traces, 1);
    c.output[0] = Goldilocks::from_u64(5);
    let alias = 5u128 + Goldilocks::ORDER_U64 as u128;
    assert_eq!(alias >> 32, 0xFFFF_FFFF);
    let l = &mut c.lanes[0];
    write_limbs_truncated(&mut l.low, (alias & 0xFFFF_FFFF) as i64, HALF_BITS);
    write_limbs_truncated(&mut l.high, (alias >> 32) as i64, HALF_BITS);
    traces.recount_lookups(&f.statement.shape());
    let rules = broken_rules(&f.statement, &traces, &traces.update);
    assert!(rules.contains(&Rule::Sampling), "{rules:?}");
}

#[test]
fn mlps_and_oversized_datasets_are_refused_hidden_sampling() {
    let f = hidden(None);
    let mut mlp = f.statement.clone();
    mlp.model = zkfed_air::Model::zeros(
        zkfed_air::spec::ModelSpec::Mlp {
            hidden: 2,
            outputs: 3,
        },
        5,
    );
    assert!(matches!(mlp.validate(), Err(ShapeError::HiddenSampling(_))));
    let mut huge = f.statement.clone();
    huge.dataset.rows = zkfed_air::sampling::MAX_SAMPLED_ROWS + 1;
    assert!(matches!(huge.validate(), Err(ShapeError::Rows { .. })));
    let mut indexed = f.statement.clone();
    indexed.batch_indices = vec![0];
    assert!(matches!(
        indexed.validate(),
        Err(ShapeError::HiddenSampling(_))
    ));
}

#[test]
fn another_rounds_sample_is_refused() {
    // The same seed announced in the next round: its honest traces, proven against this
    // round's statement, carry the other round number into every PRF block.
    let f = hidden(None);
    let mut next = f.statement.clone();
    next.context.round += 1;
    let theirs = generate_traces(&next, &f.dataset).unwrap();
    let ours = generate_traces(&f.statement, &f.dataset).unwrap();
    assert_ne!(theirs.update, ours.update);
    assert_rejected(&f, &theirs, &[Rule::Sampling]);
}

#[test]
fn hidden_sampling_proofs_grind_their_own_bits_before_the_batching_challenge() {
    // The sampling tables batch 239 more columns, so hidden-sampling statements fix 18 bits
    // of grinding before the batching challenge: proofs with a public statement's 16 are
    // refused, the same traces proven with the statement's bits verify.
    // `zk_config` is the public statements' configuration.
    use zkfed_air::config::{BATCH_POW_BITS, SAMPLING_BATCH_POW_BITS, batch_pow_bits, zk_config};
    let f = hidden(None);
    assert_eq!(
        batch_pow_bits(&f.statement.shape()),
        SAMPLING_BATCH_POW_BITS
    );
    const { assert!(BATCH_POW_BITS < SAMPLING_BATCH_POW_BITS) };
    common::assert_weaker_grinding_refused(&f.statement, &f.dataset, zk_config);
}
