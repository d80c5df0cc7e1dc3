//! Builds the four traces from a committed dataset. Every arithmetic cell comes from the
//! reference ([`example_training_step`] for logistic regression, [`network_step`] for a
//! softmax), so the update a proof attests to is the reference update by construction.

use core::borrow::Borrow;

use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_matrix::dense::RowMajorMatrix;
use p3_symmetric::Permutation;

use super::hash_table::{
    HashCols, LABEL_LANE, NUM_HASH_COLS, logit_coeff_mut, output_mut, split_mlp_row_mut,
    split_row_mut,
};
use super::hidden_table::{
    BACK_REMAINDER_BITS, DELTA_BITS, PRE_REMAINDER_BITS, RELU_BITS, VALUE_LIMBS, VALUE_TOP_SHIFT,
};
use super::limbs::{RANGE_SIZE, limbs_for, looked_up, write_limbs, write_limbs_truncated};
use super::lookup_table::{LANES, LOOKUP_HEIGHT, LookupTableAir, cols};
use super::permutation_table::{
    HALF_FULL_ROUNDS, NUM_PERM_COLS, OUTPUT_LANES, PermCols, generate_rows,
};
use super::sampling_table::{
    HALF_BITS, LaneCols, NUM_SAMPLING_COLS, SamplingCols, sampling_height,
};
use super::softmax_table::{
    BELOW_SLACK_BITS, BOUND_BITS, BOUND_SLACK_BITS, CLIP_SLACK_BITS as SOFTMAX_CLIP_SLACK_BITS,
    ClassCols, DELTA_GAP_BITS, DELTA_LOWER_BITS, DELTA_NORM_BITS, DIVISION_BITS,
    HIDDEN_DELTA_NORM_BITS, NU_BITS, REMAINDER_BITS as EXP_REMAINDER_BITS,
    UNIT_BITS as SOFTMAX_UNIT_BITS, clip_floor_bits,
};
use super::step_table::{
    CLAMP_SLACK_BITS, CLIP_SLACK_BITS, GAP_BITS, NORM_BITS, REMAINDER_BITS, StepCols, UNIT_BITS,
};
use super::{FEATURE_BITS, FEATURE_OFFSET, TableHeights, WitnessError, table_widths};
use crate::commitment::CommittedDataset;
use crate::error::ShapeError;
use crate::fixed::{ONE, to_field};
use crate::hash::{
    RATE, WIDTH, leaf_preimage, leaf_sponge_inputs, node_input, permutation, truncate,
};
use crate::network::{HeadSteps, Layer, NetworkStep, ReluCase, network_step};
use crate::reference::{ClippedGradientSum, TrainingStep, example_training_step, validate_row};
use crate::sampling::{
    ROWS_PER_PERMUTATION, SamplingKey, SamplingRate, commitment_input, prf_input, sampled_rows,
    split,
};
use crate::sigmoid::FIRST_SEGMENT;
use crate::spec::Head;
use crate::statement::{ProofShape, Statement};

/// The three traces of a proof, in instance order, and the update they attest to.
pub struct Traces {
    /// The permutation table.
    pub permutation: RowMajorMatrix<Goldilocks>,
    /// The hash table.
    pub hash: RowMajorMatrix<Goldilocks>,
    /// The step table.
    pub step: RowMajorMatrix<Goldilocks>,
    /// The lookup table (multiplicities).
    pub lookup: RowMajorMatrix<Goldilocks>,
    /// An MLP's hidden table.
    pub hidden: Option<RowMajorMatrix<Goldilocks>>,
    /// Hidden sampling's permutation table and sampling table.
    pub sampling: Option<SamplingTraces>,
    /// The clipped-gradient sum.
    pub update: ClippedGradientSum,
}

impl Traces {
    /// The traces in instance order.
    pub fn matrices(&self) -> Vec<&RowMajorMatrix<Goldilocks>> {
        let mut m = vec![&self.permutation, &self.hash, &self.step, &self.lookup];
        m.extend(&self.hidden);
        if let Some(s) = &self.sampling {
            m.extend([&s.permutation, &s.table]);
        }
        m
    }
}

impl Traces {
    /// Recounts the lookup table's multiplicities over the other tables and the claimed
    /// update (after a forger changed them).
    pub fn recount_lookups(&mut self, shape: &ProofShape) {
        self.lookup = multiplicities(
            shape,
            &self.hash,
            &self.step,
            self.hidden.as_ref(),
            self.sampling.as_ref(),
            &self.update,
        );
    }
}

/// Hidden sampling's two traces.
#[derive(Clone)]
pub struct SamplingTraces {
    /// Its permutation table: the commitment's permutation, then one per PRF block.
    pub permutation: RowMajorMatrix<Goldilocks>,
    /// The sampling table.
    pub table: RowMajorMatrix<Goldilocks>,
}

/// One example's training step, by model.
enum ExampleStep {
    /// Logistic regression's.
    Logistic(TrainingStep),
    /// A softmax model's or an MLP's.
    Network(NetworkStep),
}

impl ExampleStep {
    /// The clipped coefficient of each output of the layer.
    fn coeffs(&self) -> &[i64] {
        match self {
            Self::Logistic(step) => std::slice::from_ref(&step.coeff),
            Self::Network(step) => &step.coefficients[0],
        }
    }
}

/// One slot of the batch: its row, label and training step, and whether the row is in the
/// batch (an unused slot of hidden sampling holds a row it does not count).
struct Example<'a> {
    index: u64,
    sampled: bool,
    x: &'a [i64],
    y: u8,
    step: ExampleStep,
}

impl Example<'_> {
    /// The coefficients the slot contributes with: the step's, or zeros if unused.
    fn coeffs(&self) -> Vec<i64> {
        let coeffs = self.step.coeffs();
        match self.sampled {
            true => coeffs.to_vec(),
            false => vec![0; coeffs.len()],
        }
    }
}

/// Each slot's row and whether it is used: the public indices, or the rows the key samples
/// followed by unused slots holding the first of them (row 0 if none is sampled), so an
/// unused slot needs no row the batch does not already need.
fn slots(
    statement: &Statement,
    dataset: &CommittedDataset,
) -> Result<Vec<(u64, bool)>, WitnessError> {
    let Some(sampling) = &statement.sampling else {
        return Ok(statement.batch_indices.iter().map(|&i| (i, true)).collect());
    };
    let key = dataset
        .sampling_key()
        .filter(|k| k.commitment() == sampling.key)
        .ok_or(WitnessError::SamplingKey)?;
    let rows = sampled_rows(key, statement.draw(), statement.dataset.rows, sampling.rate);
    let capacity = statement.params.batch_size;
    if rows.len() > capacity {
        return Err(WitnessError::SampleOverflow { capacity });
    }
    let filler = rows.first().copied().unwrap_or(0);
    let mut slots: Vec<(u64, bool)> = rows.into_iter().map(|i| (i, true)).collect();
    slots.resize(capacity, (filler, false));
    Ok(slots)
}

/// The traces proving `statement` over `dataset`.
pub fn generate_traces(
    statement: &Statement,
    dataset: &CommittedDataset,
) -> Result<Traces, WitnessError> {
    generate(statement, dataset, Labels::Checked)
}

/// How trace generation treats a committed label outside a softmax's classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    /// An error: the honest path.
    Checked,
    /// A forger's witness: the step is computed for the last class, the rows carry the
    /// committed label.
    Clamped,
}

/// [`generate_traces`], with the label policy of `labels`.
pub fn generate(
    statement: &Statement,
    dataset: &CommittedDataset,
    labels: Labels,
) -> Result<Traces, WitnessError> {
    statement.check_shape()?;
    let slots = slots(statement, dataset)?;
    generate_for_slots(statement, dataset, labels, &slots)
}

/// [`generate`] with each slot's row and use given: `(row, sampled)` per slot, which the
/// honest path derives from the statement (forgers pass others).
pub fn generate_for_slots(
    statement: &Statement,
    dataset: &CommittedDataset,
    labels: Labels,
    slots: &[(u64, bool)],
) -> Result<Traces, WitnessError> {
    statement.check_shape()?;
    if slots.len() != statement.params.batch_size {
        return Err(WitnessError::Shape(ShapeError::Count {
            what: "slots",
            expected: statement.params.batch_size,
            got: slots.len(),
        }));
    }
    if dataset.commitment() != statement.dataset {
        return Err(WitnessError::Dataset("root or row count differs".into()));
    }
    let d = statement.model.num_features();
    if dataset.num_features() != d {
        return Err(WitnessError::Dataset(format!(
            "dataset has {} features, the model {d}",
            dataset.num_features()
        )));
    }
    let heights = TableHeights::of(statement);
    let layers = statement.model.layers()?;
    let head = statement.model.spec.head();
    let widths = table_widths(&statement.shape());
    let mut perm_inputs = vec![[Goldilocks::ZERO; WIDTH]; heights.hash];
    let mut examples = Vec::with_capacity(slots.len());
    let mut update = ClippedGradientSum::zero(statement.model.params.len());
    let shape = statement.shape();
    let (block, k_rows) = (shape.block_len(), shape.chunks());
    for (i, &(index, sampled)) in slots.iter().enumerate() {
        if index >= statement.dataset.rows {
            return Err(WitnessError::Shape(ShapeError::IndexOutOfRange {
                index,
                rows: statement.dataset.rows,
            }));
        }
        let (x, y, salt) = dataset.row(index as usize);
        validate_row(&statement.model, x)?;
        let base = i * block;
        let sponge = leaf_sponge_inputs(d, &leaf_preimage(x, y, salt));
        perm_inputs[base..base + k_rows].copy_from_slice(&sponge);
        let mut node = truncate(&permutation().permute(sponge[k_rows - 1]));
        for (level, sibling) in dataset.siblings(index as usize).iter().enumerate() {
            let input = if (index >> level) & 1 == 0 {
                node_input(&node, sibling)
            } else {
                node_input(sibling, &node)
            };
            perm_inputs[base + k_rows + level] = input;
            node = truncate(&permutation().permute(input));
        }
        let clip = statement.params.clip_norm;
        let step = match head {
            Head::Sigmoid => {
                let step = example_training_step(&statement.model, x, y, clip);
                if sampled {
                    update.add_example(step.coeff, x);
                }
                ExampleStep::Logistic(step)
            }
            Head::Softmax { .. } => {
                let step_label = match (labels, head) {
                    (Labels::Clamped, Head::Softmax { classes }) => y.min(classes as u8 - 1),
                    _ => y,
                };
                let step = network_step(&layers, head, x, step_label, clip)?;
                if sampled {
                    update.add_step(&layers, x, &step);
                }
                ExampleStep::Network(step)
            }
        };
        examples.push(Example {
            index,
            sampled,
            x,
            y,
            step,
        });
    }
    if statement.sampling.is_some() {
        // The public count is the slots': the sample's size stays hidden.
        update.examples = statement.params.batch_size as u64;
    }
    let permutation = generate_rows(perm_inputs);
    let mut hash = RowMajorMatrix::new(Goldilocks::zero_vec(heights.hash * widths[1]), widths[1]);
    copy_permutation_io(&permutation, &mut hash);
    write_hash_rows(statement, &examples, &mut hash)?;
    let mut step = RowMajorMatrix::new(Goldilocks::zero_vec(heights.step * widths[2]), widths[2]);
    let clip = statement.params.clip_norm;
    let mut rows = step.values.chunks_exact_mut(widths[2]);
    // Examples first: `zip` takes from its first iterator before finding the second empty.
    for (position, (example, row)) in examples.iter().zip(rows.by_ref()).enumerate() {
        match &example.step {
            ExampleStep::Logistic(s) => {
                let c = StepCols::from_row_mut(row);
                c.active = Goldilocks::ONE;
                write_step_row(c, example.y, s, clip)?;
            }
            ExampleStep::Network(s) if shape.hidden => {
                write_mlp_row(row, position, example.y, s, clip, OutOfRange::Refuse)?
            }
            ExampleStep::Network(s) => {
                write_softmax_row(row, example.y, s, clip, OutOfRange::Refuse)?
            }
        }
        if !example.sampled {
            unsample_step_row(row, shape.head());
        }
    }
    if shape.hidden {
        rows.for_each(write_mlp_padding_row);
    }
    let hidden = match heights.hidden {
        Some(height) => {
            let width = widths[4];
            let mut hidden = RowMajorMatrix::new(Goldilocks::zero_vec(height * width), width);
            let blocks = hidden.values.chunks_exact_mut(width * shape.outputs);
            for (position, (block, example)) in blocks.zip(&examples).enumerate() {
                let ExampleStep::Network(s) = &example.step else {
                    unreachable!("an MLP's steps are network steps")
                };
                write_hidden_block(block, &layers[1], position, s, clip, OutOfRange::Refuse)?;
            }
            Some(hidden)
        }
        None => None,
    };
    let sampling = match &statement.sampling {
        Some(s) => {
            let key = dataset.sampling_key().ok_or(WitnessError::SamplingKey)?;
            Some(sampling_traces(statement, key, s.rate)?)
        }
        None => None,
    };
    let lookup = multiplicities(
        &shape,
        &hash,
        &step,
        hidden.as_ref(),
        sampling.as_ref(),
        &update,
    );
    Ok(Traces {
        permutation,
        hash,
        step,
        lookup,
        hidden,
        sampling,
        update,
    })
}

/// Makes a written step-table row an unused slot's: not sampled, coefficients zero.
fn unsample_step_row(row: &mut [Goldilocks], head: Head) {
    match head {
        Head::Sigmoid => {
            let c = StepCols::from_row_mut(row);
            c.sampled = Goldilocks::ZERO;
            c.coeff = Goldilocks::ZERO;
        }
        Head::Softmax { .. } => {
            let (c, classes) = super::softmax_table::split_row_mut(row);
            c.sampled = Goldilocks::ZERO;
            for class in classes {
                class.coeff = Goldilocks::ZERO;
            }
        }
    }
}

/// The sampling table and its permutation table: the key's commitment on row 0, PRF block
/// `b` on row `b`, each lane's split and decision.
pub fn sampling_traces(
    statement: &Statement,
    key: &SamplingKey,
    rate: SamplingRate,
) -> Result<SamplingTraces, WitnessError> {
    let rows = statement.dataset.rows;
    let height = sampling_height(rows);
    let key_elems = key.elements();
    let inputs: Vec<[Goldilocks; WIDTH]> = (0..height as u64)
        .map(|b| match b {
            0 => commitment_input(&key_elems),
            b => prf_input(&key_elems, statement.draw(), b),
        })
        .collect();
    let permutation = generate_rows(inputs);
    let mut table = RowMajorMatrix::new(
        Goldilocks::zero_vec(height * NUM_SAMPLING_COLS),
        NUM_SAMPLING_COLS,
    );
    let perm_rows = permutation.values.chunks_exact(NUM_PERM_COLS);
    let trace_rows = table.values.chunks_exact_mut(NUM_SAMPLING_COLS);
    for (b, (row, perm)) in trace_rows.zip(perm_rows).enumerate() {
        let perm: &PermCols<Goldilocks> = perm.borrow();
        let out = perm.ending_full_rounds[HALF_FULL_ROUNDS - 1].post;
        let c = SamplingCols::from_row_mut(row);
        c.input = perm.inputs;
        for (o, &lane) in c.output.iter_mut().zip(&OUTPUT_LANES) {
            *o = out[lane];
        }
        let first = (b.max(1) - 1) * ROWS_PER_PERMUTATION;
        c.first_index = Goldilocks::from_usize(first * (b > 0) as usize);
        for (lane, l) in c.lanes.iter_mut().enumerate() {
            let live = b > 0 && ((first + lane) as u64) < rows;
            write_sampling_lane(l, c.output[lane], live, rate.threshold)?;
        }
    }
    Ok(SamplingTraces { permutation, table })
}

/// One lane's split of its PRF value and its decision.
fn write_sampling_lane(
    l: &mut LaneCols<Goldilocks>,
    value: Goldilocks,
    live: bool,
    threshold: u64,
) -> Result<(), WitnessError> {
    use p3_field::Field;
    let (low, high) = split(value);
    let all_ones = (1u64 << HALF_BITS) - 1;
    if high == all_ones {
        return Err(WitnessError::UnsplittableSample);
    }
    write_limbs(&mut l.low, low as i64, HALF_BITS, "sample low half")?;
    write_limbs(&mut l.high, high as i64, HALF_BITS, "sample high half")?;
    let gap = Goldilocks::from_u64(high) - Goldilocks::from_u64(all_ones);
    l.high_gap_inverse = gap.inverse();
    let sampled = live && low < threshold;
    l.sampled = Goldilocks::from_bool(sampled);
    let slack = match (live, sampled) {
        (false, _) => 0,
        (true, true) => threshold - 1 - low,
        (true, false) => low - threshold,
    };
    write_limbs(&mut l.slack, slack as i64, HALF_BITS, "sample slack")
}

/// The permutation-table row of one input (forgers rebuild rows they change).
pub fn permutation_row(input: [Goldilocks; WIDTH]) -> Vec<Goldilocks> {
    generate_rows(vec![input]).values
}

/// Each hash row's permutation input and the output lanes it reads.
fn copy_permutation_io(
    permutation: &RowMajorMatrix<Goldilocks>,
    hash: &mut RowMajorMatrix<Goldilocks>,
) {
    let perm_rows = permutation.values.chunks_exact(NUM_PERM_COLS);
    let width = hash.width;
    for (row, perm) in hash.values.chunks_exact_mut(width).zip(perm_rows) {
        let perm: &PermCols<Goldilocks> = perm.borrow();
        let out = perm.ending_full_rounds[HALF_FULL_ROUNDS - 1].post;
        let c = HashCols::from_row_mut(&mut row[..NUM_HASH_COLS]);
        c.input = perm.inputs;
        for (o, &lane) in c.output.iter_mut().zip(&OUTPUT_LANES) {
            *o = out[lane];
        }
    }
}

/// The hash table's non-permutation cells: limbs, running sums, block constants and the
/// Merkle directions.
fn write_hash_rows(
    statement: &Statement,
    examples: &[Example<'_>],
    trace: &mut RowMajorMatrix<Goldilocks>,
) -> Result<(), WitnessError> {
    let shape = statement.shape();
    let (d, block, k_rows) = (shape.num_features, shape.block_len(), shape.chunks());
    let outputs = shape.outputs;
    let params = &statement.model.params;
    let weight = |k: usize, j: usize| params[k * d + j];
    let width = trace.width;
    let mut rows = trace.values.chunks_exact_mut(width);
    let hidden_sampling = statement.sampling.is_some();
    for (position, example) in examples.iter().enumerate() {
        let index = example.index;
        let mut logits: Vec<i64> = (0..outputs)
            .map(|k| params[outputs * d + k] * ONE)
            .collect();
        let coeffs = example.coeffs();
        let mut norm_sq = ONE * ONE;
        let mut spelled = 0u64;
        for offset in 0..block {
            let row = rows.next().expect("the height fits every block");
            for k in 0..outputs {
                let (logit, coeff) = logit_coeff_mut(row, shape.hidden, k);
                *logit = to_field(logits[k]);
                *coeff = to_field(coeffs[k]);
            }
            if shape.hidden {
                *split_mlp_row_mut(row).2 = Goldilocks::from_usize(position);
            }
            let c = HashCols::from_row_mut(&mut row[..NUM_HASH_COLS]);
            c.norm_sq = to_field(norm_sq);
            c.label = Goldilocks::from_u8(example.y);
            c.sends_example = Goldilocks::from_bool(offset == k_rows);
            c.sampled = Goldilocks::from_bool(example.sampled);
            let root_row = offset + 1 == block;
            c.claims = Goldilocks::from_bool(hidden_sampling && root_row && example.sampled);
            if offset >= k_rows {
                let level = offset - k_rows;
                let dir = (index >> level) & 1;
                spelled |= dir << level;
                c.dir = Goldilocks::from_u64(dir);
                c.index = Goldilocks::from_u64(spelled);
                continue;
            }
            let mut row_norm_sq = 0;
            c.chunk_base = Goldilocks::from_usize(offset * RATE);
            for lane in 0..RATE {
                let j = offset * RATE + lane;
                if j >= d {
                    break;
                }
                let xj = example.x[j];
                let mut limbs = [Goldilocks::ZERO; 2];
                write_limbs(&mut limbs, xj + FEATURE_OFFSET, FEATURE_BITS, "feature")?;
                [c.lo[lane], c.hi[lane]] = limbs;
                for (k, logit) in logits.iter_mut().enumerate() {
                    *logit += weight(k, j) * xj;
                }
                row_norm_sq += xj * xj;
            }
            norm_sq += row_norm_sq;
            c.row_norm_sq = to_field(row_norm_sq);
            debug_assert!(offset + 1 < k_rows || c.input[LABEL_LANE] == c.label);
            write_shares(row, shape.hidden, offset, d, example.x, &coeffs);
        }
    }
    Ok(())
}

/// The update shares of absorb row `offset`: `c_k·x_j` per output and feature lane (an
/// MLP's row holds the masked features `x_j` instead, which its units' coefficients
/// multiply on the bus).
fn write_shares(
    row: &mut [Goldilocks],
    hidden: bool,
    offset: usize,
    d: usize,
    x: &[i64],
    coeffs: &[i64],
) {
    let features = (offset * RATE..d.min((offset + 1) * RATE)).enumerate();
    if hidden {
        let c = HashCols::from_row_mut(&mut row[..NUM_HASH_COLS]);
        for (lane, j) in features {
            c.share[lane] = to_field(x[j]);
        }
        return;
    }
    let (c, more) = split_row_mut(row);
    for (lane, j) in features {
        for (k, &coeff) in coeffs.iter().enumerate() {
            output_mut(c, more, k).2[lane] = to_field(coeff * x[j]);
        }
    }
}

/// One step-table row from the reference's training step.
pub fn write_step_row(
    c: &mut StepCols<Goldilocks>,
    label: u8,
    step: &TrainingStep,
    clip_norm: i64,
) -> Result<(), WitnessError> {
    let s = &step.sigmoid;
    c.logit = to_field(step.logit);
    c.norm_sq = to_field(step.norm_sq);
    c.label = Goldilocks::from_u8(label);
    c.coeff = to_field(step.coeff);
    c.sampled = Goldilocks::ONE;
    c.quotient = to_field(s.quotient);
    write_limbs(
        &mut c.remainder,
        s.remainder,
        REMAINDER_BITS,
        "logit remainder",
    )?;
    c.below = Goldilocks::from_bool(s.below);
    c.above = Goldilocks::from_bool(s.above);
    let end = FIRST_SEGMENT + crate::sigmoid::SEGMENTS as i64;
    let slack = if s.below {
        FIRST_SEGMENT - s.quotient - 1
    } else if s.above {
        s.quotient - end
    } else {
        0
    };
    write_limbs(&mut c.clamp_slack, slack, CLAMP_SLACK_BITS, "clamp slack")?;
    c.segment_start = to_field(s.segment.start);
    c.segment_rise = to_field(s.segment.rise);
    c.sigmoid = to_field(s.value);
    write_limbs(
        &mut c.interpolation_remainder,
        s.interpolation_remainder,
        REMAINDER_BITS,
        "interpolation remainder",
    )?;
    let abs_r = step.residual.abs();
    write_limbs(&mut c.abs_residual, abs_r, UNIT_BITS, "|residual|")?;
    c.residual_neg = Goldilocks::from_bool(step.residual < 0);
    let nu = step.norm;
    write_limbs(&mut c.norm, nu, NORM_BITS, "norm")?;
    write_limbs(
        &mut c.norm_upper,
        nu * nu - step.norm_sq,
        GAP_BITS,
        "norm upper gap",
    )?;
    let lower = step.norm_sq - (nu - 1) * (nu - 1) - 1;
    write_limbs(&mut c.norm_lower, lower, GAP_BITS, "norm lower gap")?;
    let bound = clip_norm * ONE;
    let grad_norm = abs_r * nu;
    c.grad_norm = to_field(grad_norm);
    c.clipped = Goldilocks::from_bool(step.clipped);
    let room = bound - grad_norm;
    let decision = if step.clipped { -room - 1 } else { room };
    write_limbs(&mut c.clip_slack, decision, CLIP_SLACK_BITS, "clip slack")?;
    let m = step.coeff.abs();
    write_limbs(&mut c.coeff_abs, m, UNIT_BITS, "|coeff|")?;
    c.coeff_norm = to_field(m * nu);
    let (rem, gap) = if step.clipped {
        let rem = bound - m * nu;
        (rem, nu - 1 - rem)
    } else {
        (0, 0)
    };
    write_limbs(&mut c.floor_rem, rem, GAP_BITS, "clip floor remainder")?;
    write_limbs(&mut c.floor_gap, gap, GAP_BITS, "clip floor gap")?;
    debug_assert_eq!(c.remainder.len(), limbs_for(REMAINDER_BITS));
    Ok(())
}

/// How a row writer treats a value outside its range check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfRange {
    /// An error: the honest path.
    Refuse,
    /// Write its low bits (a forger's witness: the range check then passes and the
    /// equation that defines the value fails).
    Truncate,
}

impl OutOfRange {
    fn write(
        self,
        limbs: &mut [Goldilocks],
        value: i64,
        bits: usize,
        what: &'static str,
    ) -> Result<(), WitnessError> {
        match self {
            Self::Refuse => write_limbs(limbs, value, bits, what),
            Self::Truncate => {
                write_limbs_truncated(limbs, value, bits);
                Ok(())
            }
        }
    }
}

/// One softmax step-table row from the reference's training step.
pub fn write_softmax_row(
    row: &mut [Goldilocks],
    label: u8,
    step: &NetworkStep,
    clip_norm: i64,
    mode: OutOfRange,
) -> Result<(), WitnessError> {
    let (c, classes) = super::softmax_table::split_row_mut(row);
    write_output_layer(c, classes, label, step, clip_norm, mode)
}

/// One MLP step-table row: the softmax row of its output layer, the first layer's bound
/// and `ν`.
pub fn write_mlp_row(
    row: &mut [Goldilocks],
    position: usize,
    label: u8,
    step: &NetworkStep,
    clip_norm: i64,
    mode: OutOfRange,
) -> Result<(), WitnessError> {
    let (c, mlp, classes) = super::softmax_table::split_mlp_row_mut(row);
    write_output_layer(c, classes, label, step, clip_norm, mode)?;
    let [first, output] = &step.norms[..] else {
        return Err(WitnessError::Dataset("an MLP step has two layers".into()));
    };
    mlp.example = Goldilocks::from_usize(position);
    mlp.input_sq = to_field(first.input_sq);
    mlp.delta_sq = to_field(first.delta_sq);
    let nu_x = first.input_norm;
    mode.write(&mut mlp.input_norm, nu_x, NORM_BITS, "input norm")?;
    let upper = nu_x * nu_x - first.input_sq;
    mode.write(
        &mut mlp.input_upper,
        upper,
        GAP_BITS,
        "input norm upper gap",
    )?;
    let lower = first.input_sq - (nu_x - 1) * (nu_x - 1) - 1;
    mode.write(
        &mut mlp.input_lower,
        lower,
        GAP_BITS,
        "input norm lower gap",
    )?;
    let nu_d = first.delta_norm;
    mlp.delta_zero = write_ceil_sqrt(
        [
            &mut mlp.delta_norm,
            &mut mlp.delta_upper,
            &mut mlp.delta_lower,
        ],
        first.delta_sq,
        nu_d,
        HIDDEN_DELTA_NORM_BITS,
        mode,
    )?;
    mode.write(&mut mlp.bound, first.bound, BOUND_BITS, "layer bound")?;
    let slack = first.bound * ONE - nu_d * nu_x;
    mode.write(
        &mut mlp.bound_slack,
        slack,
        BOUND_SLACK_BITS,
        "layer bound slack",
    )?;
    let sum = first.bound * first.bound + output.bound * output.bound;
    mlp.norm_zero = write_ceil_sqrt(
        [&mut mlp.norm, &mut mlp.norm_upper, &mut mlp.norm_lower],
        sum,
        step.norm,
        NU_BITS,
        mode,
    )?;
    Ok(())
}

/// The limbs of `s = ceil(√R)`, `s² - R` and `R - (s - 1)² - 1` (0 when `R = 0`), and the
/// zero flag.
fn write_ceil_sqrt(
    [root, upper, lower]: [&mut [Goldilocks]; 3],
    radicand: i64,
    s: i64,
    bits: usize,
    mode: OutOfRange,
) -> Result<Goldilocks, WitnessError> {
    mode.write(root, s, bits, "norm")?;
    mode.write(upper, s * s - radicand, GAP_BITS, "norm upper gap")?;
    let zero = radicand == 0;
    let gap = if zero {
        0
    } else {
        radicand - (s - 1) * (s - 1) - 1
    };
    mode.write(lower, gap, GAP_BITS, "norm lower gap")?;
    Ok(Goldilocks::from_bool(zero))
}

/// An MLP step-table row past the batch: zeros, but for the zero flags its ceiling square
/// roots of 0 need.
fn write_mlp_padding_row(row: &mut [Goldilocks]) {
    let (_, mlp, _) = super::softmax_table::split_mlp_row_mut(row);
    mlp.delta_zero = Goldilocks::ONE;
    mlp.norm_zero = Goldilocks::ONE;
}

/// The softmax part of a step row: the output layer of a softmax model or an MLP.
fn write_output_layer(
    c: &mut super::softmax_table::SoftmaxCols<Goldilocks>,
    classes: &mut [ClassCols<Goldilocks>],
    label: u8,
    step: &NetworkStep,
    clip_norm: i64,
    mode: OutOfRange,
) -> Result<(), WitnessError> {
    let HeadSteps::Softmax(softmax) = &step.head else {
        return Err(WitnessError::Dataset(
            "a softmax row needs a softmax head".into(),
        ));
    };
    let norms = step.norms.last().expect("a step has a layer");
    c.active = Goldilocks::ONE;
    c.sampled = Goldilocks::ONE;
    c.norm_sq = to_field(norms.input_sq);
    c.label = Goldilocks::from_u8(label);
    c.max_logit = to_field(softmax.max);
    let nu_x = norms.input_norm;
    mode.write(&mut c.input_norm, nu_x, NORM_BITS, "input norm")?;
    let upper = nu_x * nu_x - norms.input_sq;
    mode.write(&mut c.input_upper, upper, GAP_BITS, "input norm upper gap")?;
    let lower = norms.input_sq - (nu_x - 1) * (nu_x - 1) - 1;
    mode.write(&mut c.input_lower, lower, GAP_BITS, "input norm lower gap")?;
    let (nu_r, r_sq) = (norms.delta_norm, norms.delta_sq);
    mode.write(&mut c.delta_norm, nu_r, DELTA_NORM_BITS, "residual norm")?;
    let upper = nu_r * nu_r - r_sq;
    mode.write(
        &mut c.delta_upper,
        upper,
        DELTA_GAP_BITS,
        "residual norm upper gap",
    )?;
    let lower = nu_r * (r_sq - (nu_r - 1) * (nu_r - 1) - 1);
    mode.write(
        &mut c.delta_lower,
        lower,
        DELTA_LOWER_BITS,
        "residual norm lower gap",
    )?;
    let bound = norms.bound;
    mode.write(&mut c.bound, bound, BOUND_BITS, "layer bound")?;
    let slack = bound * ONE - nu_r * nu_x;
    mode.write(
        &mut c.bound_slack,
        slack,
        BOUND_SLACK_BITS,
        "layer bound slack",
    )?;
    c.clipped = Goldilocks::from_bool(step.clipped);
    let decision = if step.clipped {
        step.norm - clip_norm - 1
    } else {
        clip_norm - step.norm
    };
    mode.write(
        &mut c.clip_slack,
        decision,
        SOFTMAX_CLIP_SLACK_BITS,
        "clip slack",
    )?;
    for (k, class) in classes.iter_mut().enumerate() {
        let selected = k == softmax.top;
        let onehot = usize::from(label) == k;
        write_class(class, step, softmax, k, [onehot, selected], clip_norm, mode)?;
    }
    Ok(())
}

/// Class `k`'s cells of a softmax row.
fn write_class(
    class: &mut ClassCols<Goldilocks>,
    step: &NetworkStep,
    softmax: &crate::network::SoftmaxSteps,
    k: usize,
    [onehot, selected]: [bool; 2],
    clip_norm: i64,
    mode: OutOfRange,
) -> Result<(), WitnessError> {
    let e = &softmax.exps[k];
    let coeff = step.coefficients[step.coefficients.len() - 1][k];
    class.logit = to_field(step.logits[k]);
    class.coeff = to_field(coeff);
    class.onehot = Goldilocks::from_bool(onehot);
    class.selected = Goldilocks::from_bool(selected);
    class.top = Goldilocks::from_bool(e.top);
    class.below = Goldilocks::from_bool(e.below);
    class.quotient = to_field(e.quotient);
    mode.write(
        &mut class.remainder,
        e.remainder,
        EXP_REMAINDER_BITS,
        "exp remainder",
    )?;
    let slack = if e.below {
        crate::exp::FIRST_SEGMENT - e.quotient - 1
    } else {
        0
    };
    mode.write(
        &mut class.below_slack,
        slack,
        BELOW_SLACK_BITS,
        "exp below slack",
    )?;
    class.segment_start = to_field(e.segment.start);
    class.segment_rise = to_field(e.segment.rise);
    mode.write(&mut class.exp, e.value, SOFTMAX_UNIT_BITS, "exp")?;
    mode.write(
        &mut class.interpolation_remainder,
        e.interpolation_remainder,
        EXP_REMAINDER_BITS,
        "exp interpolation remainder",
    )?;
    let p = softmax.probabilities[k];
    mode.write(&mut class.probability, p, SOFTMAX_UNIT_BITS, "probability")?;
    let rem = softmax.remainders[k];
    mode.write(
        &mut class.division_remainder,
        rem,
        DIVISION_BITS,
        "division remainder",
    )?;
    let gap = softmax.sum - 1 - rem;
    mode.write(&mut class.division_gap, gap, DIVISION_BITS, "division gap")?;
    mode.write(
        &mut class.coeff_abs,
        coeff.abs(),
        SOFTMAX_UNIT_BITS,
        "|coeff|",
    )?;
    let (rem, gap) = if step.clipped {
        let bound = step.norm;
        let rem = step.residuals[k].abs() * clip_norm - coeff.abs() * bound;
        (rem, bound - 1 - rem)
    } else {
        (0, 0)
    };
    let bits = clip_floor_bits(step.norms.len() > 1);
    mode.write(&mut class.clip_remainder, rem, bits, "clip floor remainder")?;
    mode.write(&mut class.clip_gap, gap, bits, "clip floor gap")?;
    Ok(())
}

/// One example's block of hidden-table rows (one per hidden unit) from the reference's
/// training step; `output` is the MLP's second layer.
pub fn write_hidden_block(
    block: &mut [Goldilocks],
    output: &Layer<'_>,
    position: usize,
    step: &NetworkStep,
    clip_norm: i64,
    mode: OutOfRange,
) -> Result<(), WitnessError> {
    let width = block.len() / step.hidden.len();
    let mut logits: Vec<i64> = output.bias.iter().map(|b| b * ONE).collect();
    let mut value_sq = ONE * ONE;
    let mut delta_sq = 0;
    for (m, row) in block.chunks_exact_mut(width).enumerate() {
        let (c, classes) = super::hidden_table::split_row_mut(row);
        let unit = &step.hidden[m];
        let back = &step.hidden_back[m];
        c.active = Goldilocks::ONE;
        c.last = Goldilocks::from_bool(m + 1 == step.hidden.len());
        c.example = Goldilocks::from_usize(position);
        c.unit = Goldilocks::from_usize(m);
        c.pre = to_field(unit.pre_activation);
        let coeff = step.coefficients[0][m];
        c.coeff = to_field(coeff);
        c.negative = Goldilocks::from_bool(unit.case == ReluCase::Negative);
        c.capped = Goldilocks::from_bool(unit.case == ReluCase::Capped);
        let rem = unit.remainder;
        mode.write(
            &mut c.pre_remainder,
            rem,
            PRE_REMAINDER_BITS,
            "ReLU remainder",
        )?;
        let w = match unit.case {
            ReluCase::Negative => -unit.quotient - 1,
            ReluCase::Linear => unit.quotient,
            ReluCase::Capped => unit.quotient - FEATURE_OFFSET,
        };
        mode.write(&mut c.relu, w, RELU_BITS, "ReLU quotient")?;
        c.value = to_field(unit.value);
        value_sq += unit.value * unit.value;
        c.value_sq = to_field(value_sq);
        let delta = back.delta;
        mode.write(&mut c.delta_abs, delta.abs(), DELTA_BITS, "hidden delta")?;
        c.delta_neg = Goldilocks::from_bool(delta < 0);
        let rem = back.remainder;
        mode.write(
            &mut c.back_remainder,
            rem,
            BACK_REMAINDER_BITS,
            "backward remainder",
        )?;
        delta_sq += delta * delta;
        c.delta_sq = to_field(delta_sq);
        c.norm = to_field(step.norm);
        c.clipped = Goldilocks::from_bool(step.clipped);
        mode.write(&mut c.coeff_abs, coeff.abs(), DELTA_BITS, "|hidden coeff|")?;
        let (rem, gap) = if step.clipped {
            let rem = delta.abs() * clip_norm - coeff.abs() * step.norm;
            (rem, step.norm - 1 - rem)
        } else {
            (0, 0)
        };
        mode.write(&mut c.clip_remainder, rem, NU_BITS, "clip floor remainder")?;
        mode.write(&mut c.clip_gap, gap, NU_BITS, "clip floor gap")?;
        for (k, class) in classes.iter_mut().enumerate() {
            logits[k] += output.row(k)[m] * unit.value;
            class.logit = to_field(logits[k]);
            class.residual = to_field(step.residuals[k]);
            class.coeff = to_field(step.coefficients[1][k]);
        }
    }
    Ok(())
}

/// The lookup table: its entries for `update`, and multiplicities counted from the other
/// two traces: every limb lookup, and the segment of every active middle-case step row
/// (or class, for a softmax).
pub fn multiplicities(
    shape: &ProofShape,
    hash: &RowMajorMatrix<Goldilocks>,
    step: &RowMajorMatrix<Goldilocks>,
    hidden: Option<&RowMajorMatrix<Goldilocks>>,
    sampling: Option<&SamplingTraces>,
    update: &ClippedGradientSum,
) -> RowMajorMatrix<Goldilocks> {
    use p3_field::PrimeField64;
    let mut range = vec![0u64; RANGE_SIZE];
    let mut segments = vec![0u64; LOOKUP_HEIGHT];
    // A forged trace may hold limbs outside the table: they are left uncounted, so the
    // bus does not balance.
    let count = |table: &mut Vec<u64>, v: Goldilocks| {
        if let Some(m) = table.get_mut(v.as_canonical_u64() as usize) {
            *m += 1;
        }
    };
    for row in hash.values.chunks_exact(hash.width) {
        let c = HashCols::from_row(&row[..NUM_HASH_COLS]);
        for lane in 0..RATE {
            for v in looked_up(&[c.lo[lane], c.hi[lane]], FEATURE_BITS) {
                count(&mut range, v);
            }
        }
    }
    let sampling_rows = sampling
        .iter()
        .flat_map(|s| s.table.values.chunks_exact(s.table.width));
    for row in sampling_rows {
        for l in &SamplingCols::from_row(row).lanes {
            for limbs in [&l.low, &l.high, &l.slack] {
                looked_up(limbs, HALF_BITS).for_each(|v| count(&mut range, v));
            }
        }
    }
    for row in hidden.iter().flat_map(|h| h.values.chunks_exact(h.width)) {
        let (c, _) = super::hidden_table::split_row(row);
        for (limbs, bits) in c.range_checks() {
            looked_up(limbs, bits).for_each(|v| count(&mut range, v));
        }
        if c.negative == Goldilocks::ZERO && c.capped == Goldilocks::ZERO {
            let top = c.relu[VALUE_LIMBS - 1] * Goldilocks::from_u64(1 << VALUE_TOP_SHIFT);
            count(&mut range, top);
        }
    }
    for row in step.values.chunks_exact(step.width) {
        if let Head::Softmax { .. } = shape.head() {
            let (c, classes) = match shape.hidden {
                true => {
                    let (c, mlp, classes) = super::softmax_table::split_mlp_row(row);
                    for (limbs, bits) in mlp.range_checks() {
                        looked_up(limbs, bits).for_each(|v| count(&mut range, v));
                    }
                    (c, classes)
                }
                false => super::softmax_table::split_row(row),
            };
            let checks = c.range_checks().into_iter();
            let floor_bits = clip_floor_bits(shape.hidden);
            let class_checks = classes.iter().flat_map(|k| k.range_checks(floor_bits));
            for (limbs, bits) in checks.chain(class_checks) {
                looked_up(limbs, bits).for_each(|v| count(&mut range, v));
            }
            for class in classes {
                let mid = class.top == Goldilocks::ZERO && class.below == Goldilocks::ZERO;
                if c.active == Goldilocks::ONE && mid {
                    let k = class.quotient - to_field(crate::exp::FIRST_SEGMENT);
                    count(&mut segments, k);
                }
            }
            continue;
        }
        let c = StepCols::from_row(row);
        for (limbs, bits) in c.range_checks() {
            looked_up(limbs, bits).for_each(|v| count(&mut range, v));
        }
        let mid = c.below == Goldilocks::ZERO && c.above == Goldilocks::ZERO;
        if c.active == Goldilocks::ONE && mid {
            let k = c.quotient - to_field(FIRST_SEGMENT);
            count(&mut segments, k);
        }
    }
    let table = LookupTableAir::new(update, shape.head());
    let width = table_widths(shape)[3];
    let mut values = Goldilocks::zero_vec(LOOKUP_HEIGHT * width);
    let entries = table.periodic_values_by_row();
    for (i, row) in values.chunks_exact_mut(width).enumerate() {
        for lane in 0..LANES {
            let value = i + LOOKUP_HEIGHT * lane;
            row[cols::RANGE_MULT + lane] = Goldilocks::from_u64(range[value]);
        }
        row[cols::SIGMOID_MULT] = Goldilocks::from_u64(segments[i]);
        row[cols::ENTRY..].copy_from_slice(&entries[i]);
    }
    RowMajorMatrix::new(values, width)
}
