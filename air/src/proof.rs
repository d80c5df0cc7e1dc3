//! Proving and verifying a clipped-gradient update, and the versioned proof encoding.
//!
//! Proof bytes are `b"ZKFB" || version (u32 LE) || postcard(BatchProof)`: one
//! `p3-batch-stark` proof of the tables of [`crate::engine`] (four, five for an MLP). Before Plonky3 reads a
//! proof the verifier pins every dimension the statement fixes: each instance's height
//! (`degree_bits`, which `p3-batch-stark` takes "straight from the proof") and each
//! commitment's root count. Decoding and verification run under `catch_unwind`: Plonky3's
//! verifier may panic on malformed input, and a hostile proof must become an error, never a
//! crashed coordinator.

use std::panic::{AssertUnwindSafe, catch_unwind};

use p3_batch_stark::{
    BatchProof, CommonData, ProverData, StarkInstance, prove_batch, verify_batch,
};
use p3_uni_stark::StarkGenericConfig;
use thiserror::Error;

use crate::commitment::CommittedDataset;
use crate::config::{MERKLE_CAP_HEIGHT, NUM_QUERIES, ZkConfig, zk_config_for};
use crate::engine::witness::{Traces, generate_traces};
use crate::engine::{TableAir, TableHeights, table_widths, tables};
use crate::error::{ShapeError, WitnessError};
use crate::fixed::MAX_BATCH;
use crate::reference::ClippedGradientSum;
use crate::statement::{PROTOCOL_VERSION, ProofShape, Statement};

/// Proofs larger than this are refused before decoding: the cap on [`max_proof_bytes`]'s
/// allowance, which a softmax of 32 or more classes reaches (its honest proof, 1,064 KiB at
/// 64 classes, stays below).
pub const MAX_PROOF_BYTES: usize = 2 << 20;
/// Update entries must be below this in magnitude (so their field encoding is unique).
const UPDATE_BOUND: u64 = 1 << 62;

/// Why a proof could not be made.
#[derive(Debug, Error)]
#[allow(missing_docs)] // variant fields are named in their messages
pub enum ProveError {
    /// The witness does not fit the statement.
    #[error(transparent)]
    Witness(#[from] WitnessError),
    /// Plonky3 refused to prove.
    #[error("the prover failed: {0}")]
    Stark(String),
}

/// Why a submission was rejected. Each variant names the failed check.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // variant fields are named in their messages
pub enum VerifyError {
    /// More bytes than any honest proof.
    #[error("proof is {got} bytes, over the {max}-byte limit")]
    TooLarge { got: usize, max: usize },
    /// Missing or wrong magic bytes.
    #[error("not a zkfed proof (bad magic bytes)")]
    BadMagic,
    /// A proof from another protocol version.
    #[error("proof version {got}, expected {expected}")]
    Version { expected: u32, got: u32 },
    /// A statement that is not internally consistent (the verifier's own input).
    #[error("invalid statement: {0}")]
    Statement(#[from] ShapeError),
    /// Bytes that do not decode as a proof.
    #[error("proof bytes do not decode: {0}")]
    Decode(String),
    /// A dimension of the decoded proof differs from the one the statement and the
    /// configuration fix (ARCHITECTURE.md, "What the verifier takes from a proof").
    #[error("proof has {field} = {got}, the statement requires {expected}")]
    ProofShape {
        field: &'static str,
        expected: u64,
        got: u64,
    },
    /// The update's shape disagrees with the statement.
    #[error("update has {got} {what}, the statement requires {expected}")]
    UpdateShape {
        what: &'static str,
        expected: u64,
        got: u64,
    },
    /// An update entry too large to be a clipped-gradient sum.
    #[error("update entry {index} is out of range")]
    UpdateRange { index: usize },
    /// The STARK verifier rejected the proof.
    #[error("proof rejected: {0}")]
    Rejected(String),
    /// The STARK verifier panicked on malformed input (isolated).
    #[error("proof rejected: malformed proof caused a verifier fault")]
    VerifierFault,
}

/// First bytes of every encoded proof.
pub const PROOF_MAGIC: [u8; 4] = *b"ZKFB";

/// A decoded multi-table proof.
pub type ZkBatchProof = BatchProof<ZkConfig>;

/// Proves the statement over the committed dataset; returns the update and the proof bytes.
pub fn prove(
    statement: &Statement,
    dataset: &CommittedDataset,
) -> Result<(ClippedGradientSum, Vec<u8>), ProveError> {
    statement.validate().map_err(WitnessError::from)?;
    let traces = generate_traces(statement, dataset)?;
    let bytes = prove_traces(statement, &traces, &traces.update)?;
    Ok((traces.update, bytes))
}

/// Proves given traces against the statement's tables, claiming `update`.
///
/// [`prove`] is this after honest trace generation; tests, benchmarks and the simulation's
/// adversaries call it directly to prove forged traces. Traces that break a constraint or
/// a bus yield bytes the verifier rejects (debug builds refuse earlier, when Plonky3's
/// prover checks the witness and panics; that panic becomes [`ProveError::Stark`]).
pub fn prove_traces(
    statement: &Statement,
    traces: &Traces,
    update: &ClippedGradientSum,
) -> Result<Vec<u8>, ProveError> {
    prove_traces_with(zk_config_for(&statement.shape()), statement, traces, update)
}

/// [`prove_traces`] under another configuration: a prover choosing weaker parameters than
/// the statement's (tests show the verifier refuses the bytes).
pub fn prove_traces_with(
    config: ZkConfig,
    statement: &Statement,
    traces: &Traces,
    update: &ClippedGradientSum,
) -> Result<Vec<u8>, ProveError> {
    statement.check_shape().map_err(WitnessError::from)?;
    let airs = tables(statement, update);
    let public = public_values(statement, update);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let degrees = extended_degree_bits(&config, statement);
        let prover_data = ProverData::from_airs_and_degrees(&config, &airs, &degrees)?;
        let matrices = traces.matrices();
        let instances = StarkInstance::new_multiple(&airs, &matrices, &public);
        prove_batch(&config, &instances, &prover_data)
    }));
    match outcome {
        Ok(Ok(proof)) => Ok(encode_proof(&proof)),
        Ok(Err(e)) => Err(ProveError::Stark(format!("{e:?}"))),
        Err(_) => Err(ProveError::Stark(
            "the prover's constraint check failed".into(),
        )),
    }
}

/// Each instance's public values: the statement on the hash table, none elsewhere.
pub fn public_values(
    statement: &Statement,
    update: &ClippedGradientSum,
) -> Vec<Vec<crate::config::Val>> {
    let mut public = vec![Vec::new(); TableHeights::of(statement).all().len()];
    public[1] = statement.public_values(update);
    public
}

/// `log2` of each instance's committed height: the statement's height, doubled by the
/// hiding PCS.
fn extended_degree_bits(config: &ZkConfig, statement: &Statement) -> Vec<usize> {
    TableHeights::of(statement)
        .all()
        .into_iter()
        .map(|h| h.trailing_zeros() as usize + config.is_zk())
        .collect()
}

/// Encodes a proof with its magic bytes and version.
pub fn encode_proof(proof: &ZkBatchProof) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(288 << 10);
    bytes.extend_from_slice(&PROOF_MAGIC);
    bytes.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    postcard::to_extend(proof, bytes).expect("serializing into a Vec cannot fail")
}

/// Decodes proof bytes, checking size, magic and version first.
pub fn decode_proof(bytes: &[u8]) -> Result<ZkBatchProof, VerifyError> {
    if bytes.len() > MAX_PROOF_BYTES {
        return Err(VerifyError::TooLarge {
            got: bytes.len(),
            max: MAX_PROOF_BYTES,
        });
    }
    if bytes.len() < 8 || bytes[..4] != PROOF_MAGIC {
        return Err(VerifyError::BadMagic);
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if version != PROTOCOL_VERSION {
        return Err(VerifyError::Version {
            expected: PROTOCOL_VERSION,
            got: version,
        });
    }
    let decoded = catch_unwind(|| postcard::take_from_bytes::<ZkBatchProof>(&bytes[8..]));
    match decoded {
        Ok(Ok((proof, []))) => Ok(proof),
        Ok(Ok((_, rest))) => Err(VerifyError::Decode(format!(
            "{} trailing bytes",
            rest.len()
        ))),
        Ok(Err(e)) => Err(VerifyError::Decode(e.to_string())),
        Err(_) => Err(VerifyError::VerifierFault),
    }
}

/// Checks that `update` is the clipped-gradient sum the statement describes.
pub fn verify(
    statement: &Statement,
    update: &ClippedGradientSum,
    proof_bytes: &[u8],
) -> Result<(), VerifyError> {
    statement.validate()?;
    check_update_shape(statement, update)?;
    let max = max_proof_bytes(&statement.shape());
    if proof_bytes.len() > max {
        return Err(VerifyError::TooLarge {
            got: proof_bytes.len(),
            max,
        });
    }
    let proof = decode_proof(proof_bytes)?;
    let config = zk_config_for(&statement.shape());
    check_proof_shape(&config, statement, &proof)?;
    let airs = tables(statement, update);
    let public = public_values(statement, update);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let common = common_data(&config, &airs, statement)?;
        verify_batch(&config, &airs, &proof, &public, &common).map_err(|e| format!("{e:?}"))
    }));
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(VerifyError::Rejected(e)),
        Err(_) => Err(VerifyError::VerifierFault),
    }
}

/// What prover and verifier derive from the tables alone: each table's lookups.
fn common_data(
    config: &ZkConfig,
    airs: &[TableAir],
    statement: &Statement,
) -> Result<CommonData<ZkConfig>, String> {
    let degrees = extended_degree_bits(config, statement);
    ProverData::from_airs_and_degrees(config, airs, &degrees)
        .map(|data| data.common)
        .map_err(|e| format!("{e:?}"))
}

/// Rejects a proof whose dimensions differ from the ones the statement and the
/// configuration fix, before Plonky3 reads any of them.
fn check_proof_shape(
    config: &ZkConfig,
    statement: &Statement,
    proof: &ZkBatchProof,
) -> Result<(), VerifyError> {
    let expected = extended_degree_bits(config, statement);
    expect_dimension("instances", expected.len(), proof.degree_bits.len())?;
    let shape = statement.shape();
    let mut fields = vec![
        "permutation table degree_bits",
        "hash table degree_bits",
        "step table degree_bits",
        "lookup table degree_bits",
    ];
    if shape.hidden {
        fields.push("hidden table degree_bits");
    }
    if shape.sampled_from.is_some() {
        fields.push("sampling permutation table degree_bits");
        fields.push("sampling table degree_bits");
    }
    debug_assert_eq!(fields.len(), expected.len());
    for (field, (&want, &got)) in fields
        .into_iter()
        .zip(expected.iter().zip(&proof.degree_bits))
    {
        expect_dimension(field, want, got)?;
    }
    let roots = 1 << MERKLE_CAP_HEIGHT;
    let c = &proof.commitments;
    expect_dimension("main commitment roots", roots, c.main.roots().len())?;
    expect_dimension(
        "quotient commitment roots",
        roots,
        c.quotient_chunks.roots().len(),
    )?;
    for (field, commit) in [
        ("permutation commitment roots", &c.permutation),
        ("randomization commitment roots", &c.random),
    ] {
        if let Some(commit) = commit {
            expect_dimension(field, roots, commit.roots().len())?;
        }
    }
    for commit in &proof.opening_proof.1.commit_phase_commits {
        expect_dimension("FRI commit-phase roots", roots, commit.roots().len())?;
    }
    Ok(())
}

/// Bytes of allowance per main column a softmax's tables add to a logistic model's: each
/// query opens the column (8 bytes) and about as many auxiliary (LogUp) values, counted
/// three times over.
const EXTRA_COLUMN_ALLOWANCE: usize = 3 * 2 * 8 * NUM_QUERIES;

/// The largest proof a statement of this shape accepts, checked before decoding: a
/// decoder can be made to allocate tens of bytes per input byte (empty inner vectors), so
/// the bytes it reads are held to about three times an honest proof's size. A logistic
/// model's tables have fixed widths, so its proof grows only with the tallest table: about
/// 150 KiB at `2^10` rows plus about 7 KiB per doubling (BENCH.md's grid); this allows
/// 384 KiB plus 16 KiB per height bit (544 KiB at `2^10`). A softmax's tables are wider
/// with its classes, and each column beyond a logistic model's with public indices (the
/// sampling tables' too) adds [`EXTRA_COLUMN_ALLOWANCE`]. Never more than [`MAX_PROOF_BYTES`].
pub fn max_proof_bytes(shape: &ProofShape) -> usize {
    let tallest = TableHeights::for_shape(shape)
        .all()
        .into_iter()
        .max()
        .unwrap_or(1);
    let logistic = ProofShape {
        outputs: 1,
        classes: 1,
        hidden: false,
        sampled_from: None,
        ..*shape
    };
    let columns = |s: &ProofShape| table_widths(s).iter().sum::<usize>();
    let extra = columns(shape).saturating_sub(columns(&logistic));
    let allowance =
        (384 << 10) + ((tallest.trailing_zeros() as usize) << 14) + extra * EXTRA_COLUMN_ALLOWANCE;
    allowance.min(MAX_PROOF_BYTES)
}

pub(crate) fn expect_dimension(
    field: &'static str,
    expected: usize,
    got: usize,
) -> Result<(), VerifyError> {
    if expected == got {
        return Ok(());
    }
    Err(VerifyError::ProofShape {
        field,
        expected: expected as u64,
        got: got as u64,
    })
}

pub(crate) fn check_update_shape(
    statement: &Statement,
    update: &ClippedGradientSum,
) -> Result<(), VerifyError> {
    let params = statement.model.params.len() as u64;
    if update.values.len() as u64 != params {
        return Err(VerifyError::UpdateShape {
            what: "parameters",
            expected: params,
            got: update.values.len() as u64,
        });
    }
    let batch = statement.params.batch_size as u64;
    if update.examples != batch || batch > MAX_BATCH as u64 {
        return Err(VerifyError::UpdateShape {
            what: "examples",
            expected: batch,
            got: update.examples,
        });
    }
    if let Some(index) = update
        .values
        .iter()
        .position(|v| v.unsigned_abs() >= UPDATE_BOUND)
    {
        return Err(VerifyError::UpdateRange { index });
    }
    Ok(())
}
