//! Witnesses a dishonest participant would build, so that the soundness tests and the
//! simulation's adversaries mount real cheats against the real verifier. No honest path
//! calls this module; each function documents the check that must refuse its output.

use p3_field::{PrimeCharacteristicRing, PrimeField64};
use p3_goldilocks::Goldilocks;
use p3_matrix::dense::RowMajorMatrix;

use crate::commitment::CommittedDataset;
use crate::engine::hash_table::{HashCols, NUM_HASH_COLS};
use crate::engine::step_table::{NUM_STEP_COLS, StepCols};
use crate::engine::witness::{Traces, generate_traces, multiplicities, write_step_row};
use crate::error::WitnessError;
use crate::fixed::{ONE, from_field, to_field};
use crate::hash::RATE;
use crate::reference::{ClippedGradientSum, training_step};
use crate::statement::Statement;

/// The update the `update` bus balances with for these traces: each feature's shares on
/// the hash table plus each active step row's bias share, claiming the statement's `B`
/// examples. An entry that is not a small integer is an error (a forger's mistake).
pub fn update_from_shares(
    statement: &Statement,
    traces: &Traces,
) -> Result<ClippedGradientSum, WitnessError> {
    let d = statement.model.num_features();
    let mut sums = vec![Goldilocks::ZERO; d + 1];
    for row in traces.hash.values.chunks_exact(NUM_HASH_COLS) {
        let c = HashCols::from_row(row);
        for lane in 0..RATE {
            let j = (c.chunk_base.as_canonical_u64() as usize) + lane;
            if let Some(sum) = sums.get_mut(j).filter(|_| j < d) {
                *sum += c.share[lane];
            }
        }
    }
    for row in traces.step.values.chunks_exact(NUM_STEP_COLS) {
        let c = StepCols::from_row(row);
        sums[d] += c.active * c.coeff * to_field(ONE);
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
    traces.lookup = multiplicities(&traces.hash, &traces.step, &update);
    traces.update = update.clone();
    Ok(update)
}

/// The honest permutation, hash and step traces stacked `copies` times (the lookup table
/// keeps its height), re-witnessed so that every constraint and every bus holds, and the
/// update the buses balance with: about `copies` times the honest update, still claiming
/// `B` examples.
///
/// The periodic columns repeat with the table's period and nothing marks the end of the
/// last block, so each copy's first example starts its running logit and squared norm at
/// zero instead of `b·ONE` and `ONE²`; that example is re-witnessed from those sums in the
/// hash and step tables. `p3-batch-stark` alone accepts a proof of it; `proof::verify`
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
        update: honest.update.clone(),
    };
    let shape = statement.shape();
    let (bias, clip) = (statement.model.bias(), statement.params.clip_norm);
    let hash_height = honest.hash.values.len() / NUM_HASH_COLS;
    let step_height = honest.step.values.len() / NUM_STEP_COLS;
    let first = StepCols::from_row(&honest.step.values[..NUM_STEP_COLS]);
    let logit = from_field(first.logit).expect("honest logit") - bias * ONE;
    let norm_sq = from_field(first.norm_sq).expect("honest norm") - ONE * ONE;
    let label = (first.label == Goldilocks::ONE) as u8;
    let step = training_step(logit, norm_sq, label, clip);
    for copy in 1..copies {
        let base = copy * hash_height * NUM_HASH_COLS;
        let rows = traces.hash.values[base..].chunks_exact_mut(NUM_HASH_COLS);
        for (offset, cells) in rows.take(shape.block_len()).enumerate() {
            let c = HashCols::from_row_mut(cells);
            c.logit -= to_field(bias * ONE);
            c.norm_sq -= to_field(ONE * ONE);
            c.coeff = to_field(step.coeff);
            for lane in 0..RATE {
                c.share[lane] = c.coeff * c.input[lane] * feature_lane(statement, offset, lane);
            }
        }
        let row = copy * step_height * NUM_STEP_COLS;
        let c = StepCols::from_row_mut(&mut traces.step.values[row..row + NUM_STEP_COLS]);
        write_step_row(c, label, &step, clip)?;
    }
    let update = rebalance(statement, &mut traces)?;
    Ok((traces, update))
}

/// 1 if lane `lane` of absorb row `offset` holds a feature.
fn feature_lane(statement: &Statement, offset: usize, lane: usize) -> Goldilocks {
    let shape = statement.shape();
    let j = offset * RATE + lane;
    Goldilocks::from_bool(offset < shape.chunks() && j < shape.num_features)
}
