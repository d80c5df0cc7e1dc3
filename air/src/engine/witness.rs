//! Builds the three traces from a committed dataset. Every arithmetic cell comes from
//! [`example_training_step`], the reference, so the update a proof attests to is the
//! reference update by construction.

use core::borrow::Borrow;

use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_matrix::dense::RowMajorMatrix;
use p3_symmetric::Permutation;

use super::hash_table::{HashCols, LABEL_LANE, NUM_HASH_COLS};
use super::limbs::{RANGE_SIZE, limbs_for, looked_up, write_limbs};
use super::lookup_table::{LANES, LOOKUP_HEIGHT, LookupTableAir, cols};
use super::permutation_table::{
    HALF_FULL_ROUNDS, NUM_PERM_COLS, OUTPUT_LANES, PermCols, generate_rows,
};
use super::step_table::{
    CLAMP_SLACK_BITS, CLIP_SLACK_BITS, GAP_BITS, NORM_BITS, NUM_STEP_COLS, REMAINDER_BITS,
    StepCols, UNIT_BITS,
};
use super::{FEATURE_BITS, FEATURE_OFFSET, TableHeights, WitnessError};
use crate::commitment::CommittedDataset;
use crate::fixed::{ONE, to_field};
use crate::hash::{
    RATE, WIDTH, leaf_preimage, leaf_sponge_inputs, node_input, permutation, truncate,
};
use crate::reference::{ClippedGradientSum, TrainingStep, example_training_step, validate_row};
use crate::sigmoid::FIRST_SEGMENT;
use crate::statement::Statement;

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
    /// The clipped-gradient sum.
    pub update: ClippedGradientSum,
}

/// One example of the batch: its row, label and training step.
struct Example<'a> {
    x: &'a [i64],
    y: u8,
    step: TrainingStep,
}

/// The traces proving `statement` over `dataset`.
pub fn generate_traces(
    statement: &Statement,
    dataset: &CommittedDataset,
) -> Result<Traces, WitnessError> {
    statement.check_shape()?;
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
    let mut perm_inputs = vec![[Goldilocks::ZERO; WIDTH]; heights.hash];
    let mut examples = Vec::with_capacity(statement.batch_indices.len());
    let mut update = ClippedGradientSum::zero(statement.model.params.len());
    let shape = statement.shape();
    let (block, k_rows) = (shape.block_len(), shape.chunks());
    for (i, &index) in statement.batch_indices.iter().enumerate() {
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
        let step = example_training_step(&statement.model, x, y, statement.params.clip_norm);
        update.add_example(step.coeff, x);
        examples.push(Example { x, y, step });
    }
    let permutation = generate_rows(perm_inputs);
    let mut hash = RowMajorMatrix::new(
        Goldilocks::zero_vec(heights.hash * NUM_HASH_COLS),
        NUM_HASH_COLS,
    );
    copy_permutation_io(&permutation, &mut hash);
    write_hash_rows(statement, &examples, &mut hash)?;
    let mut step = RowMajorMatrix::new(
        Goldilocks::zero_vec(heights.step * NUM_STEP_COLS),
        NUM_STEP_COLS,
    );
    for (row, example) in step.values.chunks_exact_mut(NUM_STEP_COLS).zip(&examples) {
        let c = StepCols::from_row_mut(row);
        c.active = Goldilocks::ONE;
        write_step_row(c, example.y, &example.step, statement.params.clip_norm)?;
    }
    let lookup = multiplicities(&hash, &step, &update);
    Ok(Traces {
        permutation,
        hash,
        step,
        lookup,
        update,
    })
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
    for (row, perm) in hash.values.chunks_exact_mut(NUM_HASH_COLS).zip(perm_rows) {
        let perm: &PermCols<Goldilocks> = perm.borrow();
        let out = perm.ending_full_rounds[HALF_FULL_ROUNDS - 1].post;
        let c = HashCols::from_row_mut(row);
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
    let model = &statement.model;
    let mut rows = trace.values.chunks_exact_mut(NUM_HASH_COLS);
    for (example, &index) in examples.iter().zip(&statement.batch_indices) {
        let mut logit = model.bias() * ONE;
        let mut norm_sq = ONE * ONE;
        let mut spelled = 0u64;
        for offset in 0..block {
            let c = HashCols::from_row_mut(rows.next().expect("the height fits every block"));
            c.logit = to_field(logit);
            c.norm_sq = to_field(norm_sq);
            c.label = Goldilocks::from_u8(example.y);
            c.coeff = to_field(example.step.coeff);
            c.sends_example = Goldilocks::from_bool(offset == k_rows);
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
                c.share[lane] = to_field(example.step.coeff * xj);
                logit += model.weights()[j] * xj;
                row_norm_sq += xj * xj;
            }
            norm_sq += row_norm_sq;
            c.row_norm_sq = to_field(row_norm_sq);
            debug_assert!(offset + 1 < k_rows || c.input[LABEL_LANE] == c.label);
        }
    }
    Ok(())
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

/// The lookup table: its entries for `update`, and multiplicities counted from the other
/// two traces: every limb lookup, and the segment of every active middle-case step row.
pub fn multiplicities(
    hash: &RowMajorMatrix<Goldilocks>,
    step: &RowMajorMatrix<Goldilocks>,
    update: &ClippedGradientSum,
) -> RowMajorMatrix<Goldilocks> {
    use p3_field::PrimeField64;
    let mut range = vec![0u64; RANGE_SIZE];
    let mut sigmoid = vec![0u64; LOOKUP_HEIGHT];
    // A forged trace may hold limbs outside the table: they are left uncounted, so the
    // bus does not balance.
    let count = |table: &mut Vec<u64>, v: u64| {
        if let Some(m) = table.get_mut(v as usize) {
            *m += 1;
        }
    };
    for row in hash.values.chunks_exact(NUM_HASH_COLS) {
        let c = HashCols::from_row(row);
        for lane in 0..RATE {
            for v in looked_up(&[c.lo[lane], c.hi[lane]], FEATURE_BITS) {
                count(&mut range, v.as_canonical_u64());
            }
        }
    }
    for row in step.values.chunks_exact(NUM_STEP_COLS) {
        let c = StepCols::from_row(row);
        for (limbs, bits) in c.range_checks() {
            for v in looked_up(limbs, bits) {
                count(&mut range, v.as_canonical_u64());
            }
        }
        let mid = c.below == Goldilocks::ZERO && c.above == Goldilocks::ZERO;
        if c.active == Goldilocks::ONE && mid {
            let k = c.quotient - to_field(FIRST_SEGMENT);
            count(&mut sigmoid, k.as_canonical_u64());
        }
    }
    let mut values = Goldilocks::zero_vec(LOOKUP_HEIGHT * cols::COUNT);
    let entries = LookupTableAir::new(update).periodic_values_by_row();
    for (i, row) in values.chunks_exact_mut(cols::COUNT).enumerate() {
        for lane in 0..LANES {
            let value = i + LOOKUP_HEIGHT * lane;
            row[cols::RANGE_MULT + lane] = Goldilocks::from_u64(range[value]);
        }
        row[cols::SIGMOID_MULT] = Goldilocks::from_u64(sigmoid[i]);
        row[cols::ENTRY..].copy_from_slice(&entries[i]);
    }
    RowMajorMatrix::new(values, cols::COUNT)
}
