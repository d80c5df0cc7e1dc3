//! Witnesses a dishonest participant would build, so that the soundness tests and the
//! simulation's adversaries mount real cheats against the real verifier. No honest path
//! calls this module; each function documents the check that must refuse its output.

use p3_air::BaseAir;
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_matrix::dense::RowMajorMatrix;

use crate::air::{ClippedGradientAir, periodic};
use crate::columns::{split_row, split_row_mut};
use crate::commitment::CommittedDataset;
use crate::fixed::{ONE, from_field, to_field};
use crate::generation::{
    WitnessError, generate_trace, write_activation, write_block_constants, write_clipping,
};
use crate::hash::RATE;
use crate::reference::{ClippedGradientSum, example_steps, steps_from_sums};
use crate::statement::Statement;

/// Rewrites the update accumulators of `trace` from its coefficient and feature cells, as
/// the AIR's transition constraints require, and returns the update they end at (claiming
/// the statement's example count). A trace taller than the statement's reads the periodic
/// columns cyclically, as Plonky3 does.
pub fn recompute_accumulators(
    statement: &Statement,
    trace: &mut RowMajorMatrix<Goldilocks>,
) -> Result<ClippedGradientSum, WitnessError> {
    let air = ClippedGradientAir::new(statement);
    let phase = &air.periodic_columns()[periodic::PHASE..];
    let shape = statement.shape();
    let (d, period, width) = (shape.num_features, shape.height(), trace.width);
    let mut running = vec![Goldilocks::ZERO; d + 1];
    for row in trace.values.chunks_exact_mut(width).enumerate() {
        let (index, cells) = row;
        let (perm, step, _) = split_row(cells);
        let contributions: Vec<Goldilocks> = (0..=d)
            .map(|j| {
                let (k, x) = if j < d {
                    (j / RATE, perm.inputs[j % RATE])
                } else {
                    (shape.chunks() - 1, Goldilocks::from_i64(ONE))
                };
                phase[k][index % period] * step.coeff * x
            })
            .collect();
        let (_, _, acc) = split_row_mut(cells);
        acc.copy_from_slice(&running);
        for (r, c) in running.iter_mut().zip(contributions) {
            *r += c;
        }
    }
    let last = trace.values.len() / width - 1;
    let (_, _, acc) = split_row(&trace.values[last * width..]);
    let ints = acc
        .iter()
        .map(|&v| from_field(v))
        .collect::<Option<Vec<i64>>>()
        .ok_or(WitnessError::Range {
            what: "forged update entry",
            bits: 62,
        })?;
    Ok(ClippedGradientSum {
        weights: ints[..d].to_vec(),
        bias: ints[d],
        examples: shape.batch as u64,
    })
}

/// The honest trace stacked `copies` times, re-witnessed so that every constraint holds on
/// the taller trace, and the update it ends at: about `copies` times the honest update,
/// still claiming `B` examples.
///
/// The periodic columns repeat with period `H`, and nothing marks the end of the last
/// block, so each copy's first example starts its running logit and squared norm at zero
/// instead of `b·ONE` and `ONE²`; that one example is re-witnessed from those sums and
/// everything else is copied. Plonky3 alone accepts a proof of it; `proof::verify` must
/// refuse it because its height is not the statement's (ARCHITECTURE.md, "What the verifier
/// takes from a proof").
pub fn stacked_trace(
    statement: &Statement,
    dataset: &CommittedDataset,
    copies: usize,
) -> Result<(RowMajorMatrix<Goldilocks>, ClippedGradientSum), WitnessError> {
    let (trace, _) = generate_trace(statement, dataset)?;
    let height = trace.values.len() / trace.width;
    let mut tall = RowMajorMatrix::new(trace.values.repeat(copies.max(1)), trace.width);
    let shape = statement.shape();
    let (bias, clip) = (statement.model.bias, statement.params.clip_norm);
    let (x, y, _) = dataset.row(statement.batch_indices[0] as usize);
    let honest = example_steps(&statement.model, x, y, clip);
    let step = steps_from_sums(
        honest.logit - bias * ONE,
        honest.norm_sq - ONE * ONE,
        y,
        clip,
    );
    for copy in 1..copies {
        let base = copy * height * trace.width;
        let rows = tall.values[base..].chunks_exact_mut(trace.width);
        for (offset, cells) in rows.take(shape.block_len()).enumerate() {
            let (_, s, _) = split_row_mut(cells);
            s.logit -= to_field(bias * ONE);
            s.norm_sq -= to_field(ONE * ONE);
            write_block_constants(s, y, &step);
            if offset == shape.chunks() {
                write_activation(s, &step)?;
            } else if offset == shape.chunks() + 1 {
                write_clipping(s, &step, clip)?;
            }
        }
    }
    let update = recompute_accumulators(statement, &mut tall)?;
    Ok((tall, update))
}
