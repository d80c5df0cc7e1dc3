//! The wire protocol between participants and the coordinator: one versioned
//! request-response protocol (`/zkfed/10`, CBOR), its message types and its limits.
//!
//! Participants always dial and ask; the coordinator only answers. Every response names
//! the round it is about, so a late answer can never be mistaken for a current one.

pub mod budget;
mod codec;
pub mod model_file;
mod rejection;

pub use codec::{
    INBOUND_BYTES_OVERALL, INBOUND_BYTES_PER_CONNECTION, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES,
    WireError, ZkfedCodec, decode_request, decode_response, encode_request, encode_response,
};
pub use rejection::{MAX_KEPT_TEXT_BYTES, Rejection};

use std::time::Duration;

use libp2p::identity::{Keypair, PublicKey};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::{PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zkfed_aggregation::strategy::Strategy;
use zkfed_air::data::{Schema, Standardization};
use zkfed_air::fixed::MAX_WIRE_PARAMS;
use zkfed_air::sampling::{KeyCommitment, SamplingRate};
use zkfed_air::spec::ModelSpec;
use zkfed_air::statement::HiddenSampling;
use zkfed_air::{
    ClippedGradientSum, DatasetCommitment, Model, ProofContext, RoundParams, ShapeError, Statement,
};

/// The request-response protocol name; bumped with `zkfed_air::PROTOCOL_VERSION` and with
/// any change to the messages' encoding (3: typed rejections; 4: round attempts; 5:
/// `Rejection::Revoked`; 6: proof version 3; 7: proof version 4; 8: proof version 5, model
/// specs and flat parameter vectors; 9: the run's aggregation strategy, enrolments signing
/// the run parameters' digest, `Rejection::OtherParameters`; 10: proof version 6, the run's
/// privacy parameters, sampling-key commitments in enrolments, `Rejection::SamplingKey`).
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/zkfed/10");
/// The protocol version both nodes announce over identify.
pub const AGENT_VERSION: &str = "/zkfed/10.0.0";
/// How long a request may wait for its response (verification included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Concurrent streams per connection.
pub const MAX_STREAMS: usize = 16;

/// The coordinator's request-response behaviour: it answers requests (with the bounded
/// [`ZkfedCodec`], a timeout and a cap on concurrent streams per connection).
pub fn request_response_behaviour() -> request_response::Behaviour<ZkfedCodec> {
    behaviour(ProtocolSupport::Full)
}

/// A participant's request-response behaviour: it only asks, and refuses every stream a
/// coordinator opens to it.
pub fn participant_behaviour() -> request_response::Behaviour<ZkfedCodec> {
    behaviour(ProtocolSupport::Outbound)
}

fn behaviour(support: ProtocolSupport) -> request_response::Behaviour<ZkfedCodec> {
    let codec = ZkfedCodec::new();
    let config = request_response::Config::default()
        .with_request_timeout(REQUEST_TIMEOUT)
        .with_max_concurrent_streams(MAX_STREAMS);
    request_response::Behaviour::with_codec(codec, [(PROTOCOL, support)], config)
}

/// What a participant asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// The run's fixed parameters (needed before the dataset can be committed).
    Parameters,
    /// Enrol a dataset commitment.
    Enrol(SignedEnrolment),
    /// The round currently open, if any.
    CurrentRound,
    /// An update with its proof.
    Submit(Submission),
}

/// What the coordinator answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Parameters`].
    Parameters(RunParameters),
    /// The enrolment is recorded (or was already, with the same commitment).
    Enrolled,
    /// The open round.
    Round(RoundAnnouncement),
    /// No round is open now; ask again later.
    Waiting,
    /// The run is over.
    Finished {
        /// Rounds completed.
        rounds: u64,
        /// The final model.
        model: Model,
        /// Whether a private run ended at its privacy budget (its log's `BudgetSpent`
        /// record) rather than by completing or failing its rounds.
        budget_spent: bool,
    },
    /// The outcome of a submission.
    Verdict(Verdict),
    /// The request was refused.
    Refused(Rejection),
}

/// Parameters fixed for the whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunParameters {
    /// Identifies the run (bound into every proof).
    pub federation_id: [u8; 32],
    /// Feature and label columns every participant's CSV must have.
    pub schema: Schema,
    /// The model trained (its spec; the parameters are each round's).
    pub model: ModelSpec,
    /// Public standardization statistics.
    pub standardization: Standardization,
    /// Rounds the run will complete.
    pub rounds: u64,
    /// Clip norm and batch size of every round: participants pin them at enrolment and
    /// refuse any round that announces others.
    pub params: RoundParams,
    /// Learning rate of FedAvg, FedAvgM, the median, the trimmed mean and Krum (fixed
    /// point, scale 2^16); the adaptive strategies step with their own `η`.
    pub learning_rate: i64,
    /// How accepted updates become the next model (ARCHITECTURE.md, "Aggregation
    /// strategies"); public so participants and auditors know the rule.
    pub strategy: Strategy,
    /// Differential privacy (README, "Privacy"): hidden Poisson sampling, noise and the
    /// budget; `None` for a run with public batch indices and no noise.
    pub privacy: Option<Privacy>,
}

/// A run's differential privacy: every participant's batch is its hidden Poisson sample
/// at `sampling`, the coordinator adds Gaussian noise of standard deviation
/// `noise_multiplier · C` to the sum of the accepted updates, and no round starts that
/// would spend more than `(epsilon, delta)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Privacy {
    /// Each row's inclusion probability, `q' = t / 2^32`.
    pub sampling: SamplingRate,
    /// `z`: the noise's standard deviation over the clip norm.
    pub noise_multiplier: f64,
    /// The run's target ε.
    pub epsilon: f64,
    /// The run's target δ.
    pub delta: f64,
}

/// Privacy parameters out of range.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PrivacyError {
    /// A value outside its range.
    #[error("{what} is {value}; it must be {range}")]
    Range {
        /// Which parameter.
        what: &'static str,
        /// Its value.
        value: f64,
        /// The accepted range.
        range: &'static str,
    },
}

/// Largest noise multiplier a run may use (the accountant's search limit).
pub const MAX_NOISE_MULTIPLIER: f64 = 1e4;

impl Privacy {
    /// Checks every range (the coordinator's configuration, every participant and the
    /// audit call it, on values that may have been decoded from the network).
    pub fn validate(&self) -> Result<(), PrivacyError> {
        let range = |what, value: f64, ok: bool, range| match ok {
            true => Ok(()),
            false => Err(PrivacyError::Range { what, value, range }),
        };
        let z = self.noise_multiplier;
        range(
            "the noise multiplier",
            z,
            z.is_finite() && z > 0.0 && z <= MAX_NOISE_MULTIPLIER,
            "in (0, 10^4]",
        )?;
        let e = self.epsilon;
        range("ε", e, e.is_finite() && e > 0.0, "positive and finite")?;
        let d = self.delta;
        range("δ", d, d.is_finite() && d > 0.0 && d < 1.0, "in (0, 1)")?;
        let t = self.sampling.threshold;
        let valid_rate = SamplingRate::new(t).is_ok();
        range(
            "the sampling threshold",
            t as f64,
            valid_rate,
            "in 1..=2^32",
        )
    }
}

impl RunParameters {
    /// SHA-256 of the parameters' canonical encoding (domain-separated), which every
    /// enrolment signs.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"zkfed/run-parameters/v1");
        h.update(postcard::to_allocvec(self).expect("serializing plain data cannot fail"));
        h.finalize().into()
    }
}

/// A participant's commitment to its dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    /// The run this enrolment is for.
    pub federation_id: [u8; 32],
    /// Root and row count.
    pub commitment: DatasetCommitment,
    /// SHA-256 of the schema the rows follow.
    pub schema_hash: [u8; 32],
    /// [`RunParameters::digest`] of the parameters the participant was told and pinned: the
    /// coordinator refuses another, and so does the audit, so a coordinator cannot log one
    /// run (its strategy, learning rate, clip norm...) and tell participants another.
    pub parameters: [u8; 32],
    /// The commitment to the participant's hidden-sampling key: present exactly in runs
    /// with [`RunParameters::privacy`].
    pub sampling_key: Option<KeyCommitment>,
}

/// An enrolment signed with the participant's libp2p identity key, so an auditor can check
/// offline that this peer committed to this root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEnrolment {
    /// What is signed.
    pub enrolment: Enrolment,
    /// The signer's public key (libp2p protobuf encoding).
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
    /// Signature over [`Enrolment::signing_bytes`].
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Why a signed enrolment does not check out.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnrolmentError {
    /// The public key does not decode.
    #[error("enrolment public key does not decode")]
    BadKey,
    /// The key is not the sender's.
    #[error("enrolment is signed by {signer}, not by the sending peer {sender}")]
    WrongSigner {
        /// Peer id of the key.
        signer: String,
        /// Peer id of the connection.
        sender: String,
    },
    /// The signature does not verify.
    #[error("enrolment signature does not verify")]
    BadSignature,
}

/// Length of an ed25519 signature, the only kind of node key.
const ED25519_SIGNATURE_BYTES: usize = 64;

impl Enrolment {
    /// The canonical bytes a participant signs (domain-separated).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = b"zkfed/enrolment/v1".to_vec();
        bytes.extend(postcard::to_allocvec(self).expect("serializing plain data cannot fail"));
        bytes
    }
}

impl SignedEnrolment {
    /// Signs an enrolment with the participant's node key.
    pub fn sign(enrolment: Enrolment, key: &Keypair) -> Self {
        let signature = key
            .sign(&enrolment.signing_bytes())
            .expect("ed25519 signing cannot fail");
        Self {
            enrolment,
            public_key: key.public().encode_protobuf(),
            signature,
        }
    }

    /// Checks the signature and that `sender` owns the signing key.
    pub fn verify(&self, sender: &PeerId) -> Result<(), EnrolmentError> {
        let key =
            PublicKey::try_decode_protobuf(&self.public_key).map_err(|_| EnrolmentError::BadKey)?;
        // The protobuf decoder skips unknown fields: only the canonical encoding is accepted,
        // so an enrolment (kept in the log and in memory all run) cannot carry padding.
        if key.encode_protobuf() != self.public_key {
            return Err(EnrolmentError::BadKey);
        }
        if self.signature.len() != ED25519_SIGNATURE_BYTES {
            return Err(EnrolmentError::BadSignature);
        }
        let signer = key.to_peer_id();
        if signer != *sender {
            return Err(EnrolmentError::WrongSigner {
                signer: signer.to_string(),
                sender: sender.to_string(),
            });
        }
        if !key.verify(&self.enrolment.signing_bytes(), &self.signature) {
            return Err(EnrolmentError::BadSignature);
        }
        Ok(())
    }
}

/// The open round, as the coordinator publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundAnnouncement {
    /// Round number (from 1).
    pub round: u64,
    /// Attempt at this round (from 1): a round abandoned below quorum is retried with the
    /// same number, the next attempt and a fresh seed.
    pub attempt: u32,
    /// The global model `w_r`.
    pub model: Model,
    /// Clip norm and batch size.
    pub params: RoundParams,
    /// Fresh public randomness the batches derive from.
    pub seed: [u8; 32],
    /// When the attempt opened (milliseconds since the Unix epoch, the coordinator's
    /// clock): its deadline runs from here, across coordinator restarts.
    pub opened_at_ms: u64,
}

/// An update and its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// The round the update answers.
    pub round: u64,
    /// The attempt at that round.
    pub attempt: u32,
    /// The clipped-gradient sum.
    pub update: ClippedGradientSum,
    /// Proof bytes (`zkfed_air::proof` encoding).
    #[serde(with = "serde_bytes")]
    pub proof: Vec<u8>,
}

/// The coordinator's decision on one submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The round the submission named.
    pub round: u64,
    /// The attempt the submission named.
    pub attempt: u32,
    /// `None` if the update will be aggregated, else why not.
    pub rejection: Option<Rejection>,
}

impl Verdict {
    /// Whether the update will be aggregated.
    pub fn accepted(&self) -> bool {
        self.rejection.is_none()
    }
}

/// The statement a proof for `round` by `participant`, over its enrolled `commitment`, must
/// establish. The participant proves against it, the coordinator admits, judges and the
/// auditor re-verifies against it: one function, so the two sides cannot drift apart.
///
/// In a run with privacy the statement is hidden sampling's over the enrolled
/// `sampling_key` (a missing key is an error); otherwise the key is ignored.
pub fn round_statement(
    run: &RunParameters,
    round: &RoundAnnouncement,
    participant: &PeerId,
    commitment: DatasetCommitment,
    sampling_key: Option<KeyCommitment>,
) -> Result<Statement, ShapeError> {
    if round.model.spec != run.model {
        return Err(ShapeError::SpecMismatch {
            run: run.model,
            round: round.model.spec,
        });
    }
    let context = ProofContext {
        federation_id: run.federation_id,
        round: round.round,
        participant: participant_digest(participant),
    };
    if let Some(privacy) = &run.privacy {
        let key = sampling_key.ok_or(ShapeError::HiddenSampling(
            "a run with privacy needs the participant's sampling-key commitment",
        ))?;
        let sampling = HiddenSampling {
            key,
            rate: privacy.sampling,
        };
        let clip = round.params.clip_norm;
        return Statement::with_hidden_sampling(
            context,
            round.model.clone(),
            clip,
            commitment,
            round.seed,
            sampling,
        );
    }
    Statement::new(
        context,
        round.model.clone(),
        round.params,
        commitment,
        round.seed,
    )
}

/// The periodic cells one proof of a run makes its verifier build before any cryptographic
/// check, at the deepest tree a participant may declare (`MAX_ROWS` rows): `Err` with
/// their count above `MAX_PERIODIC_CELLS`. The coordinator's configuration refuses such a
/// run, and the audit a log that starts one (each judged proof would make it build them).
pub fn check_verifier_memory(spec: ModelSpec, features: usize, batch: usize) -> Result<(), u64> {
    use zkfed_air::engine::{MAX_PERIODIC_CELLS, periodic_cells};
    use zkfed_air::statement::ProofShape;
    let deepest = ProofShape::new(spec, features, batch, zkfed_air::commitment::MAX_ROWS);
    let cells = periodic_cells(&deepest);
    match cells <= MAX_PERIODIC_CELLS {
        true => Ok(()),
        false => Err(cells),
    }
}

/// The slots of a private run's proofs over a dataset of `rows` rows, or why the proof
/// cannot hold its hidden sample: more rows than the sampling table covers, more slots than
/// a proof has, or more periodic cells than a verifier builds. The coordinator refuses such
/// an enrolment and a participant such a run, with the same rule.
pub fn private_slots(run: &RunParameters, privacy: &Privacy, rows: u64) -> Result<usize, String> {
    use zkfed_air::engine::{MAX_PERIODIC_CELLS, periodic_cells};
    use zkfed_air::fixed::MAX_BATCH;
    use zkfed_air::sampling::{MAX_SAMPLED_ROWS, capacity};
    use zkfed_air::statement::ProofShape;
    if rows > MAX_SAMPLED_ROWS {
        return Err(format!(
            "{rows} rows; hidden sampling covers at most {MAX_SAMPLED_ROWS}"
        ));
    }
    let slots = capacity(rows, privacy.sampling);
    if slots > MAX_BATCH {
        return Err(format!(
            "{rows} rows at this sampling rate need {slots} slots; a proof has at most {MAX_BATCH}"
        ));
    }
    let shape = ProofShape {
        sampled_from: Some(rows),
        ..ProofShape::new(run.model, run.schema.features.len(), slots, rows)
    };
    let cells = periodic_cells(&shape);
    if cells > MAX_PERIODIC_CELLS {
        return Err(format!(
            "{rows} rows at this sampling rate would make each verification build {cells} \
             periodic cells, above {MAX_PERIODIC_CELLS}"
        ));
    }
    Ok(slots)
}

/// A run's model checked against its schema: it predicts the label's classes over the
/// schema's features, and the proof covers it. Coordinator and participant both call it.
pub fn check_model(spec: &ModelSpec, schema: &Schema) -> Result<(), ShapeError> {
    spec.validate(schema.features.len(), schema.classes)?;
    let params = spec.num_params(schema.features.len());
    zkfed_air::statement::check_provable(*spec, params)
}

// Models and updates travel whole in messages and log records bounded for `MAX_WIRE_PARAMS`
// entries, so every model a proof covers must fit them.
const _: () = {
    use zkfed_air::statement::{MAX_MLP_PARAMS, MAX_SOFTMAX_PARAMS};
    assert!(zkfed_air::fixed::MAX_FEATURES < MAX_WIRE_PARAMS);
    assert!(MAX_SOFTMAX_PARAMS <= MAX_WIRE_PARAMS && MAX_MLP_PARAMS <= MAX_WIRE_PARAMS);
};

/// The participant identifier bound into proofs: SHA-256 of the peer id's bytes.
pub fn participant_digest(peer: &PeerId) -> [u8; 32] {
    Sha256::digest(peer.to_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrolment() -> Enrolment {
        Enrolment {
            federation_id: [1; 32],
            commitment: DatasetCommitment {
                root: [1, 2, 3, 4],
                rows: 10,
            },
            schema_hash: [2; 32],
            parameters: [3; 32],
            sampling_key: None,
        }
    }

    #[test]
    fn signed_enrolments_verify_only_for_their_signer() {
        let key = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        let signed = SignedEnrolment::sign(enrolment(), &key);
        assert_eq!(signed.verify(&key.public().to_peer_id()), Ok(()));
        assert!(matches!(
            signed.verify(&other.public().to_peer_id()),
            Err(EnrolmentError::WrongSigner { .. })
        ));
        let mut tampered = signed.clone();
        tampered.enrolment.commitment.rows += 1;
        assert_eq!(
            tampered.verify(&key.public().to_peer_id()),
            Err(EnrolmentError::BadSignature)
        );
        let mut padded = signed.clone();
        padded.public_key.extend([0x7a, 0x03, 1, 2, 3]); // field 15, 3 bytes: skipped by prost
        assert_eq!(
            padded.verify(&key.public().to_peer_id()),
            Err(EnrolmentError::BadKey)
        );
        let mut long_signature = signed.clone();
        long_signature.signature.extend([0; 1 << 10]);
        assert_eq!(
            long_signature.verify(&key.public().to_peer_id()),
            Err(EnrolmentError::BadSignature)
        );
        let mut garbage = signed;
        garbage.public_key = vec![1, 2, 3];
        assert_eq!(
            garbage.verify(&key.public().to_peer_id()),
            Err(EnrolmentError::BadKey)
        );
    }

    #[test]
    fn participant_digests_differ_per_peer() {
        let a = Keypair::generate_ed25519().public().to_peer_id();
        let b = Keypair::generate_ed25519().public().to_peer_id();
        assert_ne!(participant_digest(&a), participant_digest(&b));
    }

    #[test]
    fn run_models_are_checked_against_the_schema_and_the_wire_bound() {
        let schema = |features: usize, classes: u8| Schema {
            features: (0..features).map(|j| format!("f{j}")).collect(),
            label: "y".into(),
            classes,
        };
        assert_eq!(check_model(&ModelSpec::Logistic, &schema(30, 2)), Ok(()));
        let digits = ModelSpec::Softmax { classes: 10 };
        assert_eq!(check_model(&digits, &schema(64, 10)), Ok(()));
        // MNIST-sized models travel: every model the proofs cover fits the wire.
        assert_eq!(check_model(&digits, &schema(784, 10)), Ok(()));
        // A softmax the wire could carry but no proof covers is refused with the run.
        assert_eq!(
            check_model(&digits, &schema(1024, 10)),
            Err(ShapeError::TooManyParameters {
                got: 10_250,
                max: zkfed_air::statement::MAX_SOFTMAX_PARAMS
            })
        );
        let mlp = |hidden| ModelSpec::Mlp {
            hidden,
            outputs: 10,
        };
        assert_eq!(check_model(&mlp(32), &schema(64, 10)), Ok(()));
        assert_eq!(check_model(&mlp(128), &schema(784, 10)), Ok(()));
        assert_eq!(
            check_model(&mlp(128), &schema(1024, 10)),
            Err(ShapeError::TooManyParameters {
                got: 132_490,
                max: MAX_WIRE_PARAMS
            })
        );
        let binary = ModelSpec::Mlp {
            hidden: 8,
            outputs: 1,
        };
        assert_eq!(
            check_model(&binary, &schema(30, 2)),
            Err(ShapeError::Unproven { spec: binary })
        );
        assert!(matches!(
            check_model(&digits, &schema(64, 2)),
            Err(ShapeError::Classes { .. })
        ));
    }
}
