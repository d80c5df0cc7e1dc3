//! Pieces the coordinator's integration tests share.
#![allow(dead_code)]

use libp2p::PeerId;
use libp2p::identity::Keypair;
use rand::SeedableRng;
use rand::rngs::StdRng;
use zkfed_air::data::{Schema, Standardization, breast_cancer};
use zkfed_air::{CommittedDataset, RoundParams, Statement, prove};
use zkfed_coordinator::events::{AuditEvent, RunConfig};
use zkfed_coordinator::ledger::Ledger;
use zkfed_coordinator::log::AuditRecord;
use zkfed_protocol::{
    Enrolment, Rejection, RunParameters, SignedEnrolment, Submission, round_statement,
};

/// A participant of a test run: its identity and committed rows.
pub struct Hospital {
    pub key: Keypair,
    pub dataset: CommittedDataset,
}

impl Hospital {
    pub fn peer(&self) -> PeerId {
        self.key.public().to_peer_id()
    }

    /// The commitment to its hidden-sampling key.
    pub fn sampling_key(&self) -> Option<zkfed_air::sampling::KeyCommitment> {
        self.dataset.sampling_key().map(|k| k.commitment())
    }

    /// Its signed enrolment of its commitment in `config`'s run.
    pub fn signed_enrolment(&self, config: &RunConfig) -> SignedEnrolment {
        let enrolment = Enrolment {
            federation_id: config.public.federation_id,
            commitment: self.dataset.commitment(),
            schema_hash: config.public.schema.hash(),
            parameters: config.public.digest(),
            sampling_key: config.public.privacy.and(self.sampling_key()),
        };
        SignedEnrolment::sign(enrolment, &self.key)
    }

    /// Its honest submission for the attempt open in `ledger`, proved against the
    /// statement it builds from what it was told.
    pub fn honest_submission(&self, ledger: &Ledger) -> Submission {
        let announcement = &ledger
            .state()
            .open
            .as_ref()
            .expect("an attempt is open")
            .announcement;
        let statement = round_statement(
            &ledger.state().config.public,
            announcement,
            &self.peer(),
            self.dataset.commitment(),
            self.sampling_key(),
        )
        .unwrap();
        let (update, proof) = prove(&statement, &self.dataset).unwrap();
        Submission {
            round: announcement.round,
            attempt: announcement.attempt,
            update,
            proof,
        }
    }
}

/// Admits `submission` from `peer`, verifies it against the statement admission builds,
/// and records the verdict, which must accept it. Returns the statement.
pub fn judge_accepted(ledger: &mut Ledger, peer: &PeerId, submission: &Submission) -> Statement {
    let statement = ledger.admit(peer, submission).unwrap();
    let outcome = zkfed_air::verify(&statement, &submission.update, &submission.proof)
        .map_err(Rejection::from);
    assert!(ledger.judge(peer, submission, outcome).unwrap().accepted());
    statement
}

/// `count` hospitals holding `rows` consecutive rows each of the bundled data, committed
/// with salts from `seed`, and the data's schema and statistics.
pub fn bundled_hospitals(
    count: usize,
    rows: usize,
    seed: u64,
) -> (Vec<Hospital>, Schema, Standardization) {
    let raw = breast_cancer();
    let standardization = Standardization::fit(&raw).unwrap();
    let standardized = standardization.apply(&raw).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let hospitals = (0..count)
        .map(|k| {
            let part = k * rows..(k + 1) * rows;
            let key = zkfed_air::sampling::SamplingKey::generate(&mut rng);
            let dataset = CommittedDataset::commit(
                standardized[part.clone()].to_vec(),
                raw.labels[part].to_vec(),
                &mut rng,
            )
            .unwrap()
            .with_sampling_key(key);
            Hospital {
                key: Keypair::generate_ed25519(),
                dataset,
            }
        })
        .collect();
    (hospitals, raw.schema, standardization)
}

/// A run among `hospitals` on the bundled schema: batch 4, quorum 2, a 60 s deadline,
/// 3 attempts a round.
pub fn run_config(
    federation: u8,
    rounds: u64,
    (clip_norm, learning_rate): (i64, i64),
    (schema, standardization): (&Schema, &Standardization),
    coordinator: &Keypair,
    hospitals: &[Hospital],
) -> RunConfig {
    RunConfig {
        public: RunParameters {
            federation_id: [federation; 32],
            schema: schema.clone(),
            model: zkfed_air::spec::ModelSpec::Logistic,
            standardization: standardization.clone(),
            rounds,
            params: RoundParams {
                clip_norm,
                batch_size: 4,
            },
            learning_rate,
            strategy: zkfed_aggregation::strategy::Strategy::FedAvg,
            privacy: None,
        },
        coordinator_key: coordinator.public().encode_protobuf(),
        allow_list: hospitals.iter().map(|h| h.peer().to_bytes()).collect(),
        quorum: 2,
        round_deadline_secs: 60,
        max_attempts: 3,
        noise_key_commitment: None,
    }
}

/// The rejections of the log's `Refused` records, in order.
pub fn refusals(records: &[AuditRecord]) -> Vec<Rejection> {
    records
        .iter()
        .filter_map(|r| match &r.event {
            AuditEvent::Refused { rejection, .. } => Some(rejection.clone()),
            _ => None,
        })
        .collect()
}

/// Renumbers, re-chains and re-signs a log, as a dishonest coordinator holding its key
/// could after changing, adding or removing records.
pub fn resign(records: &mut [AuditRecord], key: &Keypair) {
    let mut prev = [0; 32];
    for (seq, r) in records.iter_mut().enumerate() {
        r.seq = seq as u64;
        r.prev = prev;
        r.signature = key.sign(&r.hash()).unwrap();
        prev = r.hash();
    }
}
