//! Witnesses a dishonest participant would build, so that the soundness tests and the
//! simulation's adversaries mount real cheats against the real verifier. No honest path
//! calls this module; each function documents the check that must refuse its output.

use p3_field::{PrimeCharacteristicRing, PrimeField64};
use p3_goldilocks::Goldilocks;
use p3_matrix::Matrix;
use p3_matrix::dense::RowMajorMatrix;

use crate::commitment::CommittedDataset;
use crate::engine::hash_table::{
    HashCols, NUM_HASH_COLS, logit_coeff_mut, output_mut, row_outputs, split_row_mut,
};
use crate::engine::step_table::{NUM_STEP_COLS, StepCols};
use crate::engine::witness::{
    OutOfRange, Traces, generate_traces, write_hidden_block, write_mlp_row, write_softmax_row,
    write_step_row,
};
use crate::engine::{hidden_table, softmax_table};
use crate::error::WitnessError;
use crate::fixed::{ONE, from_field, to_field};
use crate::hash::RATE;
use crate::network::{mlp_step_from_sums, softmax_layer_step};
use crate::reference::{ClippedGradientSum, training_step};
use crate::spec::Head;
use crate::statement::Statement;

/// The update the `update` bus balances with for these traces: each feature's shares on
/// the hash table plus each active step row's bias shares (and an MLP's hidden-table
/// shares), claiming the statement's `B` examples. An entry that is not a small integer
/// is an error (a forger's mistake).
pub fn update_from_shares(
    statement: &Statement,
    traces: &Traces,
) -> Result<ClippedGradientSum, WitnessError> {
    let shape = statement.shape();
    let d = statement.model.num_features();
    let outputs = shape.outputs;
    let mut sums = vec![Goldilocks::ZERO; shape.num_params()];
    for row in traces.hash.values.chunks_exact(traces.hash.width) {
        let (c, outputs, _) = row_outputs(row, shape.hidden);
        for (k, o) in outputs.iter().enumerate() {
            for lane in 0..RATE {
                let j = (c.chunk_base.as_canonical_u64() as usize) + lane;
                // An MLP's share columns hold the masked features its units multiply.
                let share = match shape.hidden {
                    true => o.coeff * o.share[lane],
                    false => o.share[lane],
                };
                if j < d {
                    sums[k * d + j] += share;
                }
            }
        }
    }
    let one = to_field(ONE);
    if outputs == 1 && !shape.hidden {
        for row in traces.step.values.chunks_exact(NUM_STEP_COLS) {
            let c = StepCols::from_row(row);
            sums[d] += c.active * c.coeff * one;
        }
    } else if shape.hidden {
        let second = outputs * (d + 1);
        let bias = second + shape.classes * outputs;
        for row in traces.step.values.chunks_exact(traces.step.width) {
            let (c, _, classes) = softmax_table::split_mlp_row(row);
            for (k, class) in classes.iter().enumerate() {
                sums[bias + k] += c.active * class.coeff * one;
            }
        }
        let hidden = traces.hidden.as_ref().ok_or(WitnessError::Dataset(
            "an MLP's traces have a hidden table".into(),
        ))?;
        for row in hidden.values.chunks_exact(hidden.width) {
            let (c, classes) = hidden_table::split_row(row);
            let m = c.unit.as_canonical_u64() as usize;
            sums[outputs * d + m] += c.coeff * one;
            for (k, class) in classes.iter().enumerate() {
                sums[second + k * outputs + m] += class.coeff * c.value;
            }
        }
    } else {
        for row in traces.step.values.chunks_exact(traces.step.width) {
            let (c, classes) = softmax_table::split_row(row);
            for (k, class) in classes.iter().enumerate() {
                sums[outputs * d + k] += c.active * class.coeff * one;
            }
        }
    }
    let ints = sums
        .iter()
        .map(|&v| from_field(v))
        .collect::<Option<Vec<i64>>>()
        .ok_or(WitnessError::Range {
            what: "forged update entry",
            bits: 62,
        })?;
    Ok(ClippedGradientSum {
        values: ints,
        examples: statement.params.batch_size as u64,
    })
}

/// Recomputes the lookup table (multiplicities and the update it receives) after a forger
/// edited the other traces, and returns the update the buses now balance with.
pub fn rebalance(
    statement: &Statement,
    traces: &mut Traces,
) -> Result<ClippedGradientSum, WitnessError> {
    let update = update_from_shares(statement, traces)?;
    traces.update = update.clone();
    traces.recount_lookups(&statement.shape());
    Ok(update)
}

/// The honest permutation, hash, step (and hidden) traces stacked `copies` times (the lookup
/// table keeps its height), re-witnessed so that every constraint and every bus holds, and
/// the update the buses balance with: about `copies` times the honest update, still
/// claiming `B` examples.
///
/// The periodic columns repeat with the table's period and nothing marks the end of the
/// last block, so each copy's first example starts its running logit and squared norm at
/// zero instead of `b·ONE` and `ONE²`; that example is re-witnessed from those sums in the
/// hash, step and hidden tables. `p3-batch-stark` alone accepts a proof of it; `proof::verify`
/// must refuse it because the heights are not the statement's.
pub fn stacked_traces(
    statement: &Statement,
    dataset: &CommittedDataset,
    copies: usize,
) -> Result<(Traces, ClippedGradientSum), WitnessError> {
    let honest = generate_traces(statement, dataset)?;
    let copies = copies.max(1);
    let stack =
        |m: &RowMajorMatrix<Goldilocks>| RowMajorMatrix::new(m.values.repeat(copies), m.width);
    let mut traces = Traces {
        permutation: stack(&honest.permutation),
        hash: stack(&honest.hash),
        step: stack(&honest.step),
        lookup: honest.lookup.clone(),
        hidden: honest.hidden.as_ref().map(stack),
        sampling: honest.sampling.clone(),
        update: honest.update.clone(),
    };
    let hash_height = honest.hash.height();
    let step_height = honest.step.height();
    let hidden_height = honest.hidden.as_ref().map_or(0, |h| h.height());
    for copy in 1..copies {
        let rows = [hash_height, step_height, hidden_height].map(|h| copy * h);
        match statement.shape().head() {
            _ if statement.shape().hidden => rewitness_mlp_copy(statement, &mut traces, rows)?,
            Head::Sigmoid => rewitness_logistic_copy(statement, &mut traces, rows[0], rows[1])?,
            Head::Softmax { .. } => {
                rewitness_softmax_copy(statement, &mut traces, rows[0], rows[1])?
            }
        }
    }
    let update = rebalance(statement, &mut traces)?;
    Ok((traces, update))
}

/// Re-witnesses the first example of a stacked logistic copy (hash rows from `hash_row`,
/// step row `step_row`) from running sums that start at zero.
fn rewitness_logistic_copy(
    statement: &Statement,
    traces: &mut Traces,
    hash_row: usize,
    step_row: usize,
) -> Result<(), WitnessError> {
    let (bias, clip) = (statement.model.bias(), statement.params.clip_norm);
    let first = StepCols::from_row(&traces.step.values[..NUM_STEP_COLS]);
    let logit = from_field(first.logit).expect("honest logit") - bias * ONE;
    let norm_sq = from_field(first.norm_sq).expect("honest norm") - ONE * ONE;
    let label = (first.label == Goldilocks::ONE) as u8;
    let step = training_step(logit, norm_sq, label, clip);
    let base = hash_row * NUM_HASH_COLS;
    let rows = traces.hash.values[base..].chunks_exact_mut(NUM_HASH_COLS);
    for (offset, cells) in rows.take(statement.shape().block_len()).enumerate() {
        let c = HashCols::from_row_mut(cells);
        c.logit -= to_field(bias * ONE);
        c.norm_sq -= to_field(ONE * ONE);
        c.coeff = to_field(step.coeff);
        for lane in 0..RATE {
            c.share[lane] = c.coeff * c.input[lane] * feature_lane(statement, offset, lane);
        }
    }
    let row = step_row * NUM_STEP_COLS;
    let c = StepCols::from_row_mut(&mut traces.step.values[row..row + NUM_STEP_COLS]);
    write_step_row(c, label, &step, clip)
}

/// [`rewitness_logistic_copy`] for a softmax model: every output's running logit starts
/// at zero instead of its bias.
fn rewitness_softmax_copy(
    statement: &Statement,
    traces: &mut Traces,
    hash_row: usize,
    step_row: usize,
) -> Result<(), WitnessError> {
    let shape = statement.shape();
    let (d, outputs) = (shape.num_features, shape.outputs);
    let biases = &statement.model.params[outputs * d..];
    let (first, classes) = softmax_table::split_row(&traces.step.values[..traces.step.width]);
    let logits: Vec<i64> = classes
        .iter()
        .zip(biases)
        .map(|(k, b)| from_field(k.logit).expect("honest logit") - b * ONE)
        .collect();
    let norm_sq = from_field(first.norm_sq).expect("honest norm") - ONE * ONE;
    let label = from_field(first.label).expect("honest label") as u8;
    let clip = statement.params.clip_norm;
    let step = softmax_layer_step(logits, norm_sq, label, clip)?;
    let width = traces.hash.width;
    let rows = traces.hash.values[hash_row * width..].chunks_exact_mut(width);
    for cells in rows.take(shape.block_len()) {
        let (c, more) = split_row_mut(cells);
        c.norm_sq -= to_field(ONE * ONE);
        for (k, b) in biases.iter().enumerate() {
            *output_mut(c, more, k).0 -= to_field(b * ONE);
        }
    }
    set_block_coeffs(statement, traces, hash_row, &step.coefficients[0]);
    let width = traces.step.width;
    let row = &mut traces.step.values[step_row * width..(step_row + 1) * width];
    write_softmax_row(row, label, &step, clip, OutOfRange::Refuse)
}

/// [`rewitness_logistic_copy`] for an MLP: every hidden unit's pre-activation starts at zero
/// instead of its bias, in the hash table, and the example is re-witnessed from its sums in
/// the hash, hidden and step tables (first rows of the copy at `[hash, step, hidden]`).
fn rewitness_mlp_copy(
    statement: &Statement,
    traces: &mut Traces,
    [hash_row, step_row, hidden_row]: [usize; 3],
) -> Result<(), WitnessError> {
    let shape = statement.shape();
    let (d, hidden) = (shape.num_features, shape.outputs);
    let biases = &statement.model.params[hidden * d..hidden * (d + 1)];
    let hidden_trace = traces.hidden.as_mut().ok_or(WitnessError::Dataset(
        "an MLP's traces have a hidden table".into(),
    ))?;
    let pre: Vec<i64> = hidden_trace
        .values
        .chunks_exact(hidden_trace.width)
        .zip(biases)
        .map(|(row, b)| from_field(hidden_table::split_row(row).0.pre).expect("honest") - b * ONE)
        .collect();
    let (c, mlp, _) = softmax_table::split_mlp_row(&traces.step.values[..traces.step.width]);
    let norm_sq = from_field(mlp.input_sq).expect("honest norm") - ONE * ONE;
    let label = from_field(c.label).expect("honest label") as u8;
    let clip = statement.params.clip_norm;
    let layers = statement.model.layers()?;
    let step = mlp_step_from_sums(&layers, &pre, norm_sq, label, clip)?;
    let width = hidden_trace.width;
    let block = &mut hidden_trace.values[hidden_row * width..(hidden_row + hidden) * width];
    write_hidden_block(block, &layers[1], 0, &step, clip, OutOfRange::Refuse)?;
    let width = traces.hash.width;
    let rows = traces.hash.values[hash_row * width..].chunks_exact_mut(width);
    for cells in rows.take(shape.block_len()) {
        HashCols::from_row_mut(&mut cells[..NUM_HASH_COLS]).norm_sq -= to_field(ONE * ONE);
        for (k, b) in biases.iter().enumerate() {
            *logit_coeff_mut(cells, true, k).0 -= to_field(b * ONE);
        }
    }
    set_block_coeffs(statement, traces, hash_row, &step.coefficients[0]);
    let width = traces.step.width;
    let row = &mut traces.step.values[step_row * width..(step_row + 1) * width];
    write_mlp_row(row, 0, label, &step, clip, OutOfRange::Refuse)
}

/// 1 if lane `lane` of absorb row `offset` holds a feature.
fn feature_lane(statement: &Statement, offset: usize, lane: usize) -> Goldilocks {
    let shape = statement.shape();
    let j = offset * RATE + lane;
    Goldilocks::from_bool(offset < shape.chunks() && j < shape.num_features)
}

/// Sets the clipped coefficients of the example whose hash-table block starts at row
/// `first_row` (the block constants and every feature lane's share), as a forger who
/// changed them in the step table must, so that the `example` bus still balances;
/// [`rebalance`] then gives the update the `update` bus balances with.
pub fn set_block_coeffs(
    statement: &Statement,
    traces: &mut Traces,
    first_row: usize,
    coeffs: &[i64],
) {
    let shape = statement.shape();
    let (block, width) = (shape.block_len(), traces.hash.width);
    let rows = traces.hash.values[first_row * width..].chunks_exact_mut(width);
    for (offset, row) in rows.take(block).enumerate() {
        if shape.hidden {
            // An MLP's shares follow its coefficients on the bus.
            for (k, &coeff) in coeffs.iter().enumerate() {
                *logit_coeff_mut(row, true, k).1 = to_field(coeff);
            }
            continue;
        }
        let (c, more) = split_row_mut(row);
        let input = c.input;
        for (k, &coeff) in coeffs.iter().enumerate() {
            let (_, cell, share) = output_mut(c, more, k);
            *cell = to_field(coeff);
            for lane in 0..RATE {
                share[lane] = *cell * input[lane] * feature_lane(statement, offset, lane);
            }
        }
    }
}
