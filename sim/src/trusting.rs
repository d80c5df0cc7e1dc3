//! The no-proofs baseline: the same federation with proving and verification switched off,
//! to measure what proofs cost. Both switches are code in this crate, passed to the node
//! libraries' `run`; neither binary can be configured to trust an update.

use zkfed_air::{CommittedDataset, Statement};
use zkfed_coordinator::event_loop::SubmissionVerifier;
use zkfed_participant::participation::Prover;
use zkfed_protocol::{Rejection, RoundAnnouncement, Submission};

/// Sends the reference update with no proof.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnprovenUpdates;

impl Prover for UnprovenUpdates {
    fn submission(
        &self,
        round: &RoundAnnouncement,
        statement: &Statement,
        dataset: &CommittedDataset,
    ) -> anyhow::Result<Submission> {
        let update = match statement.sampling {
            // The hidden sample is the proof's: its trace generation computes it.
            Some(_) => zkfed_air::engine::witness::generate_traces(statement, dataset)?.update,
            None => {
                let batch = statement.batch_indices.iter().map(|&i| {
                    let (x, y, _) = dataset.row(i as usize);
                    (x, y)
                });
                let clip = statement.params.clip_norm;
                zkfed_air::clipped_gradient_sum(&statement.model, batch, clip)?
            }
        };
        Ok(Submission {
            round: round.round,
            attempt: round.attempt,
            update,
            proof: Vec::new(),
        })
    }
}

/// Accepts every admitted submission unverified.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustEveryUpdate;

impl SubmissionVerifier for TrustEveryUpdate {
    fn verify(&self, _: &Statement, _: &Submission) -> Result<(), Rejection> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use zkfed_air::fixed::ONE;
    use zkfed_air::{Model, ProofContext, RoundParams};

    #[test]
    fn unproven_updates_are_the_reference_update_and_always_trusted() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let rows: Vec<Vec<i64>> = (0..8).map(|i| vec![i * ONE / 8, ONE - i]).collect();
        let labels = vec![0, 1, 0, 1, 1, 0, 1, 0];
        let dataset = CommittedDataset::commit(rows, labels, &mut rng).unwrap();
        let context = ProofContext {
            federation_id: [1; 32],
            round: 1,
            participant: [2; 32],
        };
        let params = RoundParams {
            clip_norm: ONE,
            batch_size: 4,
        };
        let model = Model::zeros(zkfed_air::spec::ModelSpec::Logistic, 2);
        let statement =
            Statement::new(context, model, params, dataset.commitment(), [3; 32]).unwrap();
        let round = RoundAnnouncement {
            round: 1,
            attempt: 1,
            model: statement.model.clone(),
            params,
            seed: [3; 32],
            opened_at_ms: 0,
        };
        let sent = UnprovenUpdates
            .submission(&round, &statement, &dataset)
            .unwrap();
        let (proven, _) = zkfed_air::prove(&statement, &dataset).unwrap();
        assert_eq!(sent.update, proven);
        assert!(sent.proof.is_empty());
        assert!(zkfed_air::verify(&statement, &sent.update, &sent.proof).is_err());
        assert_eq!(TrustEveryUpdate.verify(&statement, &sent), Ok(()));
    }
}
