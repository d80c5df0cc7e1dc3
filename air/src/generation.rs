//! Builds the trace of [`crate::ClippedGradientAir`] from a committed dataset.
//!
//! Every arithmetic cell comes from [`example_steps`], the reference implementation, so the
//! update a proof attests to is the reference update by construction.

use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::{
    GOLDILOCKS_POSEIDON2_RC_12_EXTERNAL_FINAL, GOLDILOCKS_POSEIDON2_RC_12_EXTERNAL_INITIAL,
    GOLDILOCKS_POSEIDON2_RC_12_INTERNAL, GenericPoseidon2LinearLayersGoldilocks, Goldilocks,
};
use p3_matrix::dense::RowMajorMatrix;
use p3_poseidon2_air::{RoundConstants, generate_trace_rows};
use p3_symmetric::Permutation;

use crate::columns::{
    HALF_FULL_ROUNDS, NUM_PERM_COLS, PARTIAL_ROUNDS, SBOX_DEGREE, SBOX_REGISTERS, StepCols,
    split_row_mut, trace_width,
};
use crate::commitment::CommittedDataset;
use crate::error::ShapeError;
use crate::fixed::{FRAC_BITS, ONE, X_OFFSET, to_field};
use crate::hash::{
    RATE, WIDTH, leaf_preimage, leaf_sponge_inputs, node_input, permutation, truncate,
};
use crate::reference::{ClippedGradientSum, ExampleSteps, example_steps, validate_row};
use crate::statement::Statement;

/// Why a trace could not be built for a statement.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // variant fields are named in their messages
pub enum WitnessError {
    /// The dataset does not match the statement.
    #[error("the dataset does not match the statement: {0}")]
    Dataset(String),
    /// A row or parameter outside the supported ranges.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// An intermediate value outside the range its bit decomposition allows (the value,
    /// computed from a patient's row, is not kept: this error reaches logs).
    #[error("intermediate `{what}` does not fit in {bits} bits")]
    Range { what: &'static str, bits: usize },
}

/// The trace proving `statement` over `dataset`, and the update it attests to.
pub fn generate_trace(
    statement: &Statement,
    dataset: &CommittedDataset,
) -> Result<(RowMajorMatrix<Goldilocks>, ClippedGradientSum), WitnessError> {
    statement.check_shape()?;
    let shape = statement.shape();
    if dataset.commitment() != statement.dataset {
        return Err(WitnessError::Dataset("root or row count differs".into()));
    }
    let d = shape.num_features;
    if dataset.num_features() != d {
        return Err(WitnessError::Dataset(format!(
            "dataset has {} features, the model {d}",
            dataset.num_features()
        )));
    }
    let batch = batch_witness(statement, dataset)?;
    let mut values = permutation_cells(batch.perm_inputs, trace_width(d));
    write_arithmetic(statement, &batch.examples, &mut values)?;
    Ok((RowMajorMatrix::new(values, trace_width(d)), batch.update))
}

/// One example's row, label and reference steps.
type Example<'a> = (&'a [i64], u8, ExampleSteps);

/// What the batch contributes before any cell is written.
struct BatchWitness<'a> {
    /// Every row's permutation input: each example's leaf sponge and Merkle path, padding
    /// rows zero.
    perm_inputs: Vec<[Goldilocks; WIDTH]>,
    /// Each example's row, label and reference steps.
    examples: Vec<Example<'a>>,
    /// The update the examples sum to.
    update: ClippedGradientSum,
}

fn batch_witness<'a>(
    statement: &Statement,
    dataset: &'a CommittedDataset,
) -> Result<BatchWitness<'a>, WitnessError> {
    let shape = statement.shape();
    let (d, block, chunks) = (shape.num_features, shape.block_len(), shape.chunks());
    let mut perm_inputs = vec![[Goldilocks::ZERO; WIDTH]; shape.height()];
    let mut steps = Vec::with_capacity(shape.batch);
    let mut update = ClippedGradientSum::zero(d);
    for (i, &index) in statement.batch_indices.iter().enumerate() {
        let (x, y, salt) = dataset.row(index as usize);
        validate_row(&statement.model, x)?;
        let base = i * block;
        let sponge = leaf_sponge_inputs(d, &leaf_preimage(x, y, salt));
        perm_inputs[base..base + chunks].copy_from_slice(&sponge);
        let mut node = truncate(&permutation().permute(sponge[chunks - 1]));
        for (level, sibling) in dataset.siblings(index as usize).iter().enumerate() {
            let input = if (index >> level) & 1 == 0 {
                node_input(&node, sibling)
            } else {
                node_input(sibling, &node)
            };
            perm_inputs[base + chunks + level] = input;
            node = truncate(&permutation().permute(input));
        }
        let step = example_steps(&statement.model, x, y, statement.params.clip_norm);
        update.add_example(step.coeff, x);
        steps.push((x, y, step));
    }
    Ok(BatchWitness {
        perm_inputs,
        examples: steps,
        update,
    })
}

/// [`permutation_cells`] as a matrix.
pub(crate) fn permutation_rows(
    perm_inputs: Vec<[Goldilocks; WIDTH]>,
    width: usize,
) -> RowMajorMatrix<Goldilocks> {
    RowMajorMatrix::new(permutation_cells(perm_inputs, width), width)
}

/// A trace of `width` columns whose permutation columns are filled from `perm_inputs`.
fn permutation_cells(perm_inputs: Vec<[Goldilocks; WIDTH]>, width: usize) -> Vec<Goldilocks> {
    let height = perm_inputs.len();
    let constants = RoundConstants::new(
        GOLDILOCKS_POSEIDON2_RC_12_EXTERNAL_INITIAL,
        GOLDILOCKS_POSEIDON2_RC_12_INTERNAL,
        GOLDILOCKS_POSEIDON2_RC_12_EXTERNAL_FINAL,
    );
    let perm_trace = generate_trace_rows::<
        Goldilocks,
        GenericPoseidon2LinearLayersGoldilocks,
        WIDTH,
        SBOX_DEGREE,
        SBOX_REGISTERS,
        HALF_FULL_ROUNDS,
        PARTIAL_ROUNDS,
    >(perm_inputs, &constants, 0);

    let mut values = Goldilocks::zero_vec(height * width);
    for (row, perm_row) in values
        .chunks_exact_mut(width)
        .zip(perm_trace.values.chunks_exact(NUM_PERM_COLS))
    {
        row[..NUM_PERM_COLS].copy_from_slice(perm_row);
    }
    values
}

/// Each block's running sums, block constants, range-check bits and accumulators.
fn write_arithmetic(
    statement: &Statement,
    steps: &[Example<'_>],
    values: &mut [Goldilocks],
) -> Result<(), WitnessError> {
    let shape = statement.shape();
    let (d, block, chunks) = (shape.num_features, shape.block_len(), shape.chunks());
    let width = trace_width(d);
    let mut running = vec![0i64; d + 1];
    for (i, (x, y, step)) in steps.iter().enumerate() {
        let base = i * block;
        let mut logit = statement.model.bias * ONE;
        let mut norm_sq = ONE * ONE;
        for offset in 0..block {
            let row = &mut values[(base + offset) * width..(base + offset + 1) * width];
            let (_, cols, acc) = split_row_mut(row);
            cols.logit = to_field(logit);
            cols.norm_sq = to_field(norm_sq);
            write_block_constants(cols, *y, step);
            for (a, &r) in acc.iter_mut().zip(&running) {
                *a = to_field(r);
            }
            if offset == chunks {
                write_activation(cols, step)?;
            } else if offset == chunks + 1 {
                write_clipping(cols, step, statement.params.clip_norm)?;
            }
            if offset >= chunks {
                continue;
            }
            let mut row_norm_sq = 0;
            for lane in 0..RATE {
                let j = offset * RATE + lane;
                if j >= d {
                    break;
                }
                let xj = x[j];
                write_bits(cols.x_bits_mut(lane), xj + X_OFFSET, "feature")?;
                logit += statement.model.weights[j] * xj;
                row_norm_sq += xj * xj;
                running[j] += step.coeff * xj;
            }
            norm_sq += row_norm_sq;
            cols.row_norm_sq = to_field(row_norm_sq);
            if offset == chunks - 1 {
                running[d] += step.coeff * ONE;
            }
        }
    }
    for row in values.chunks_exact_mut(width).skip(shape.batch * block) {
        let (_, _, acc) = split_row_mut(row);
        for (a, &r) in acc.iter_mut().zip(&running) {
            *a = to_field(r);
        }
    }
    Ok(())
}

/// The values every row of an example's block repeats.
pub(crate) fn write_block_constants(
    cols: &mut StepCols<Goldilocks>,
    label: u8,
    step: &ExampleSteps,
) {
    cols.coeff = to_field(step.coeff);
    cols.label = Goldilocks::from_u8(label);
    cols.abs_residual = to_field(step.residual.abs());
    cols.residual_neg = Goldilocks::from_bool(step.residual < 0);
    cols.norm = to_field(step.norm);
}

/// The activation witness, on the block's first Merkle row.
pub(crate) fn write_activation(
    cols: &mut StepCols<Goldilocks>,
    step: &ExampleSteps,
) -> Result<(), WitnessError> {
    let t = ONE / 2 + step.quarter_logit;
    let mid = !(step.below || step.above);
    cols.quarter_logit = to_field(step.quarter_logit);
    cols.below = Goldilocks::from_bool(step.below);
    cols.above = Goldilocks::from_bool(step.above);
    cols.sigmoid = to_field(step.sigmoid);
    let slack = if step.below {
        -t - 1
    } else if step.above {
        t - ONE - 1
    } else {
        t
    };
    let nu = step.norm;
    let bits = cols.activation_mut();
    let rem = step.logit - (step.quarter_logit << (FRAC_BITS + 2));
    write_bits(&mut bits.logit_rem, rem, "logit remainder")?;
    write_bits(&mut bits.clamp, slack, "clamp slack")?;
    write_bits(
        &mut bits.clamp_mid,
        if mid { ONE - t } else { 0 },
        "clamp gap",
    )?;
    write_bits(&mut bits.abs_residual, step.residual.abs(), "|residual|")?;
    write_bits(&mut bits.norm, nu, "norm")?;
    write_bits(
        &mut bits.norm_upper,
        nu * nu - step.norm_sq,
        "norm upper gap",
    )?;
    Ok(())
}

/// The clipping witness, on the block's second Merkle row.
pub(crate) fn write_clipping(
    cols: &mut StepCols<Goldilocks>,
    step: &ExampleSteps,
    clip_norm: i64,
) -> Result<(), WitnessError> {
    let nu = step.norm;
    let bound = clip_norm * ONE;
    let grad_norm = step.residual.abs() * nu;
    let m = step.coeff.abs();
    cols.grad_norm = to_field(grad_norm);
    cols.clipped = Goldilocks::from_bool(step.clipped);
    cols.coeff_abs = to_field(m);
    cols.coeff_norm = to_field(m * nu);
    let room = bound - grad_norm;
    let floor_rem = bound - m * nu;
    let (rem, gap) = if step.clipped {
        (floor_rem, nu - 1 - floor_rem)
    } else {
        (0, 0)
    };
    let bits = cols.clipping_mut();
    let lower = step.norm_sq - (nu - 1) * (nu - 1) - 1;
    write_bits(&mut bits.norm_lower, lower, "norm lower gap")?;
    write_bits(
        &mut bits.clip_slack,
        if step.clipped { -room - 1 } else { room },
        "clip slack",
    )?;
    write_bits(&mut bits.coeff_abs, m, "|coeff|")?;
    write_bits(&mut bits.clip_floor, rem, "clip floor remainder")?;
    write_bits(&mut bits.clip_floor_gap, gap, "clip floor gap")?;
    Ok(())
}

/// Little-endian bits of `value`, which must lie in `[0, 2^bits.len())`.
fn write_bits(bits: &mut [Goldilocks], value: i64, what: &'static str) -> Result<(), WitnessError> {
    if value < 0 || (bits.len() < 63 && value >> bits.len() != 0) {
        return Err(WitnessError::Range {
            what,
            bits: bits.len(),
        });
    }
    for (i, b) in bits.iter_mut().enumerate() {
        *b = Goldilocks::from_bool((value >> i) & 1 == 1);
    }
    Ok(())
}
