//! What is fuzzed: every decoder that reads bytes from a peer or a file, each with valid
//! samples to mutate and a bound on what one input may make it allocate.

use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;
use zkfed_air::data::{Schema, Standardization};
use zkfed_air::{ClippedGradientSum, DatasetCommitment};
use zkfed_coordinator::events::{AuditEvent, RunConfig, RunState};
use zkfed_coordinator::log::AuditRecord;
use zkfed_protocol::{
    Enrolment, Rejection, Request, Response, RoundAnnouncement, SignedEnrolment, Submission,
    Verdict,
};

use crate::mutate::{binary_tokens, text_tokens};

/// The stored proof fixture of `zkfed-air`: postcard of (update, proof bytes).
const PROOF_FIXTURE: &[u8] = include_bytes!("../../air/tests/fixtures/proof_v6.bin");
/// Its hidden-sampling fixture (six tables).
const HIDDEN_PROOF_FIXTURE: &[u8] = include_bytes!("../../air/tests/fixtures/hidden_proof_v6.bin");

/// Decodes (and checks) one input; `true` if it was accepted.
pub type Decoder = Box<dyn FnMut(&[u8]) -> bool>;

/// One decoder under test.
pub struct Target {
    /// Its name on the command line and in reports.
    pub name: &'static str,
    /// Valid inputs, mutated into test inputs.
    pub samples: Vec<Vec<u8>>,
    /// Tokens the mutator inserts.
    pub tokens: Vec<Vec<u8>>,
    /// Most bytes one input of `n` bytes may make the decoder allocate at its peak.
    pub limit: fn(usize) -> usize,
    /// The decoder.
    pub run: Decoder,
}

/// Allocation allowed per input byte, plus a fixed allowance for tables and buffers.
fn sixteen_per_byte(n: usize) -> usize {
    16 * n + (1 << 20)
}

/// Every target; `scratch` is a directory the configuration targets may write keys to.
pub fn all(scratch: &Path) -> anyhow::Result<Vec<Target>> {
    let fixture = Fixture::new(scratch)?;
    Ok(vec![
        wire(&fixture),
        proof(&fixture),
        audit_log(&fixture),
        resigned_log(&fixture),
        config(&fixture, scratch)?,
        csv(&fixture),
        model_file(&fixture),
    ])
}

/// Values the samples are built from.
struct Fixture {
    run: RunConfig,
    raw_config: zkfed_coordinator::config::RawConfig,
    update: ClippedGradientSum,
    proof: Vec<u8>,
    hidden_proof: Vec<u8>,
    /// The participant's key.
    key: Keypair,
    /// The run's coordinator key, which signs the re-signed logs.
    coordinator: Keypair,
}

impl Fixture {
    fn new(scratch: &Path) -> anyhow::Result<Self> {
        let key = Keypair::generate_ed25519();
        let raw_config = zkfed_coordinator::starter::bundled_config(
            scratch.join("coordinator"),
            vec![key.public().to_peer_id().to_string()],
            "/ip4/127.0.0.1/tcp/7000".into(),
            3,
            Some(1),
        );
        let resolved = raw_config.clone().resolve()?;
        let (run, coordinator) = (resolved.run, resolved.key);
        let (update, proof): (ClippedGradientSum, Vec<u8>) = postcard::from_bytes(PROOF_FIXTURE)?;
        let (_, hidden_proof): (ClippedGradientSum, Vec<u8>) =
            postcard::from_bytes(HIDDEN_PROOF_FIXTURE)?;
        Ok(Self {
            run,
            raw_config,
            update,
            proof,
            hidden_proof,
            key,
            coordinator,
        })
    }

    fn schema(&self) -> &Schema {
        &self.run.public.schema
    }

    fn standardization(&self) -> &Standardization {
        &self.run.public.standardization
    }

    fn announcement(&self) -> RoundAnnouncement {
        RoundAnnouncement {
            round: 2,
            attempt: 1,
            model: zkfed_air::Model::zeros(self.run.public.model, self.schema().features.len()),
            params: self.run.public.params,
            seed: [9; 32],
            opened_at_ms: 1_700_000_000_000,
        }
    }

    fn signed_enrolment(&self) -> SignedEnrolment {
        let enrolment = Enrolment {
            federation_id: self.run.public.federation_id,
            commitment: DatasetCommitment {
                root: [1, 2, 3, 4],
                rows: 100,
            },
            schema_hash: self.schema().hash(),
            parameters: self.run.public.digest(),
            sampling_key: Some(zkfed_air::sampling::KeyCommitment([5, 6, 7, 8])),
        };
        SignedEnrolment::sign(enrolment, &self.key)
    }

    /// A run's log the audit accepts, from the coordinator's own policy: an enrolment, an
    /// attempt that judges one submission (rejected) and is abandoned at its deadline, a
    /// second attempt, the peer's revocation, the attempt abandoned and the run failed.
    fn consistent_log(&self) -> Vec<AuditEvent> {
        use sha2::Digest;
        use zkfed_coordinator::rounds::{close_round, judge_enrolment, revoke, start_round};

        let peer = self.key.public().to_peer_id();
        let mut enrolment = self.signed_enrolment().enrolment;
        enrolment.sampling_key = None;
        let enrolment = SignedEnrolment::sign(enrolment, &self.key);
        let mut state = RunState::new(self.run.clone());
        let mut log = vec![AuditEvent::RunStarted(self.run.clone())];
        let mut push = |state: &mut RunState, next: &dyn Fn(&RunState) -> Option<AuditEvent>| {
            let event = next(state).expect("the policy has an event here");
            state
                .apply(log.len() as u64, &event)
                .expect("the policy's events replay");
            log.push(event);
        };
        push(&mut state, &|s| {
            judge_enrolment(s, &peer, &enrolment).expect("the peer enrols")
        });
        let opened = 1_700_000_000_000;
        push(&mut state, &|s| start_round(s, [9; 32], opened));
        let judged = AuditEvent::Judged {
            round: 1,
            attempt: 1,
            peer: peer.to_bytes(),
            update: ClippedGradientSum::zero(
                self.run
                    .public
                    .model
                    .num_params(self.schema().features.len()),
            ),
            proof_sha256: sha2::Sha256::digest(JUDGED_PROOF).into(),
            rejection: Some(Rejection::Decode("not a proof".into())),
        };
        push(&mut state, &|_| Some(judged.clone()));
        let late = opened + 200_000;
        push(&mut state, &|s| close_round(s, late, None));
        push(&mut state, &|s| start_round(s, [10; 32], late));
        push(&mut state, &|s| revoke(s, &peer, "key lost", late + 1).ok());
        push(&mut state, &|s| close_round(s, late + 2, None));
        push(&mut state, &|s| start_round(s, [11; 32], late + 3));
        log
    }

    fn submission(&self) -> Submission {
        Submission {
            round: 2,
            attempt: 1,
            update: self.update.clone(),
            proof: self.proof[..4096.min(self.proof.len())].to_vec(),
        }
    }
}

/// CBOR requests and responses, as a coordinator and a participant read them.
fn wire(f: &Fixture) -> Target {
    let rejections = [
        Rejection::Busy,
        Rejection::UpdateShape {
            what: "parameters".into(),
            expected: 30,
            got: 31,
        },
        Rejection::TooLarge { got: 9, max: 8 },
        Rejection::Revoked,
    ];
    let mut samples: Vec<Vec<u8>> = [
        Request::Parameters,
        Request::CurrentRound,
        Request::Enrol(f.signed_enrolment()),
        Request::Submit(f.submission()),
    ]
    .iter()
    .map(zkfed_protocol::encode_request)
    .collect();
    let mut responses = vec![
        Response::Parameters(f.run.public.clone()),
        Response::Enrolled,
        Response::Round(f.announcement()),
        Response::Waiting,
        Response::Finished {
            rounds: 3,
            model: f.announcement().model,
            budget_spent: true,
        },
    ];
    for rejection in rejections {
        responses.push(Response::Verdict(Verdict {
            round: 2,
            attempt: 1,
            rejection: Some(rejection.clone()),
        }));
        responses.push(Response::Refused(rejection));
    }
    samples.extend(responses.iter().map(zkfed_protocol::encode_response));
    Target {
        name: "wire",
        samples,
        tokens: binary_tokens(),
        limit: sixteen_per_byte,
        run: Box::new(|input| {
            let request = zkfed_protocol::decode_request(input).is_ok();
            let response = zkfed_protocol::decode_response(input).is_ok();
            request || response
        }),
    }
}

/// Proof bytes, as the verifier decodes them before any check.
fn proof(f: &Fixture) -> Target {
    Target {
        name: "proof",
        samples: vec![f.proof.clone(), f.hidden_proof.clone()],
        tokens: binary_tokens(),
        limit: sixteen_per_byte,
        run: Box::new(|input| zkfed_air::proof::decode_proof(input).is_ok()),
    }
}

/// Audit-log records, as a restart and `audit verify` read them from the store, folded
/// into a run state when they decode (accepted: the record decodes).
fn audit_log(f: &Fixture) -> Target {
    let peer = f.key.public().to_peer_id().to_bytes();
    let events = [
        AuditEvent::RunStarted(f.run.clone()),
        AuditEvent::Enrolled {
            peer: peer.clone(),
            enrolment: f.signed_enrolment(),
        },
        AuditEvent::RoundStarted(f.announcement()),
        AuditEvent::Judged {
            round: 2,
            attempt: 1,
            peer: peer.clone(),
            update: f.update.clone(),
            proof_sha256: [7; 32],
            rejection: None,
        },
        AuditEvent::Aggregated {
            round: 2,
            at_ms: 1_700_000_001_000,
            model: f.announcement().model,
            state: zkfed_aggregation::strategy::ServerState {
                momentum: vec![1, -2],
                second: vec![3 << 32],
            },
            privacy: Some(zkfed_coordinator::events::PrivateAggregate {
                unnoised_sum_sha256: [8; 32],
                epsilon: 1.25,
            }),
        },
        AuditEvent::BudgetSpent {
            rounds: 2,
            epsilon: 1.25,
            next_epsilon: None,
            at_ms: 1_700_000_002_000,
        },
        AuditEvent::Abandoned {
            round: 2,
            attempt: 1,
            at_ms: 1_700_000_001_000,
            reason: "below quorum".into(),
        },
        AuditEvent::Refused {
            peer: peer.clone(),
            submission: Some((2, 1)),
            proof_sha256: Some([3; 32]),
            rejection: Rejection::Busy,
        },
        AuditEvent::Discarded {
            round: 2,
            attempt: 1,
            peer: peer.clone(),
            rejection: Rejection::NoOpenRound,
        },
        AuditEvent::Revoked {
            peer,
            at_ms: 1_700_000_001_500,
            reason: "key found on a stolen laptop".into(),
        },
        AuditEvent::RunFailed {
            round: 2,
            at_ms: 1_700_000_002_000,
        },
    ];
    let samples = events
        .iter()
        .enumerate()
        .map(|(seq, event)| {
            let record = AuditRecord {
                seq: seq as u64,
                prev: [seq as u8; 32],
                event: event.clone(),
                signature: vec![5; 64],
            };
            postcard::to_allocvec(&record).expect("plain data serializes")
        })
        .collect();
    let started = AuditEvent::RunStarted(f.run.clone());
    Target {
        name: "audit-log",
        samples,
        tokens: binary_tokens(),
        limit: sixteen_per_byte,
        run: Box::new(move |input| {
            let Ok(record) = postcard::from_bytes::<AuditRecord>(input) else {
                return false;
            };
            // Folding may refuse the event (most need earlier ones); it must not panic.
            let _ = record.hash();
            let _ = match record.event {
                AuditEvent::RunStarted(_) => RunState::replay([&record.event]),
                _ => RunState::replay([&started, &record.event]),
            };
            true
        }),
    }
}

/// What the re-signed logs' judged submission stored as its proof: bytes that do not
/// decode, so the audit checks the recorded rejection without proving time per input.
const JUDGED_PROOF: &[u8] = b"not a proof";

/// Whole logs as `audit verify` reads them from a store whose coordinator signs whatever it
/// likes: each input is a sequence of events, chained and signed with the run's own
/// coordinator key before the audit, so mutations reach the audit's check of each event
/// instead of stopping at the signature (accepted: the log audits clean). Its judged proof
/// never verifies (one that did would cost milliseconds per input), so no update is ever
/// accepted and an aggregate stops at the quorum check: aggregates are re-computed by the
/// audit tests (`coordinator/tests/audit.rs`), not here.
fn resigned_log(f: &Fixture) -> Target {
    let sample = postcard::to_allocvec(&f.consistent_log()).expect("plain data serializes");
    let coordinator = f.coordinator.clone();
    Target {
        name: "audit-resigned",
        samples: vec![sample],
        tokens: binary_tokens(),
        limit: per_decoded_record,
        run: Box::new(move |input| {
            let Ok(events) = postcard::from_bytes::<Vec<AuditEvent>>(input) else {
                return false;
            };
            let records = signed_log(events, &coordinator);
            let lookup = |_, _, _: &libp2p::PeerId| Some(JUDGED_PROOF.to_vec());
            zkfed_coordinator::audit::audit(&records, lookup, None, None).is_ok()
        }),
    }
}

/// A re-signed log holds every event it decodes at once (a store is read one record at a
/// time; the fuzzer hands over the whole log): each input byte may become a record of its
/// own size and a 64-byte signature, as the smallest event encodes in 3 bytes.
fn per_decoded_record(n: usize) -> usize {
    let record = size_of::<AuditRecord>() + 64;
    record * n.div_ceil(3) + sixteen_per_byte(n)
}

/// `events` chained from record 0 and signed with `key`.
fn signed_log(events: Vec<AuditEvent>, key: &Keypair) -> Vec<AuditRecord> {
    let mut prev = [0; 32];
    let sign = |(seq, event): (usize, AuditEvent)| {
        let mut record = AuditRecord {
            seq: seq as u64,
            prev,
            event,
            signature: Vec::new(),
        };
        let hash = record.hash();
        record.signature = key.sign(&hash).expect("ed25519 signing cannot fail");
        prev = hash;
        record
    };
    events.into_iter().enumerate().map(sign).collect()
}

/// TOML configuration files of both node binaries, parsed and validated (the state
/// directory is pinned to the scratch directory, so no input chooses where files go).
fn config(f: &Fixture, scratch: &Path) -> anyhow::Result<Target> {
    let coordinator = toml::to_string(&f.raw_config)?;
    let participant = format!(
        "coordinator = \"/ip4/127.0.0.1/tcp/7000/p2p/{}\"\ndataset = \"rows.csv\"\n\
         state_dir = \"state\"\nmin_batch_size = 8\nmax_attempts = 5\n",
        f.key.public().to_peer_id()
    );
    let samples = vec![coordinator.into_bytes(), participant.into_bytes()];
    let (coordinator_state, participant_state): (PathBuf, PathBuf) =
        (scratch.join("coordinator"), scratch.join("participant"));
    Ok(Target {
        name: "config",
        samples,
        tokens: text_tokens(),
        limit: sixteen_per_byte,
        run: Box::new(move |input| {
            let Ok(text) = std::str::from_utf8(input) else {
                return false;
            };
            let coordinator = toml::from_str::<zkfed_coordinator::config::RawConfig>(text)
                .ok()
                .map(|mut raw| {
                    raw.state_dir = coordinator_state.clone();
                    raw.resolve().is_ok()
                });
            let participant = toml::from_str::<zkfed_participant::config::RawConfig>(text)
                .ok()
                .map(|mut raw| {
                    raw.state_dir = participant_state.clone();
                    raw.resolve().is_ok()
                });
            coordinator == Some(true) || participant == Some(true)
        }),
    })
}

/// A model file, as `zkfed-coordinator model evaluate` reads one.
fn model_file(f: &Fixture) -> Target {
    let model = f.announcement().model;
    let file =
        zkfed_protocol::model_file::ModelFile::new(&model, f.schema(), f.standardization(), 2);
    Target {
        name: "model-file",
        samples: vec![file.to_json()],
        tokens: text_tokens(),
        limit: sixteen_per_byte,
        run: Box::new(|input| zkfed_protocol::model_file::ModelFile::from_json(input).is_ok()),
    }
}

/// A hospital's CSV, read under the run's schema and standardized.
fn csv(f: &Fixture) -> Target {
    let full = zkfed_participant::bundled_shard_csv(0, 8);
    let short: String = full.lines().take(12).map(|l| format!("{l}\n")).collect();
    let (schema, standardization) = (f.schema().clone(), f.standardization().clone());
    Target {
        name: "csv",
        samples: vec![short.into_bytes()],
        tokens: text_tokens(),
        limit: sixteen_per_byte,
        run: Box::new(move |input| {
            zkfed_air::data::read_csv(input, &schema)
                .is_ok_and(|raw| standardization.standardize(&raw).is_ok())
        }),
    }
}
