//! Proving and verifying a clipped-gradient update, and the versioned proof encoding.
//!
//! Proof bytes are `b"ZKFP" || version (u32 LE) || postcard(Proof)`. Decoding and
//! verification run under `catch_unwind`: Plonky3's verifier may panic on malformed input,
//! and a hostile proof must become an error, never a crashed coordinator.

use std::panic::{AssertUnwindSafe, catch_unwind};

use p3_matrix::dense::RowMajorMatrix;
use p3_uni_stark::Proof;
use thiserror::Error;

use crate::air::ClippedGradientAir;
use crate::commitment::CommittedDataset;
use crate::config::{MERKLE_CAP_HEIGHT, Val, ZK_HEIGHT_BITS, ZkConfig, zk_config};
use crate::error::ShapeError;
use crate::fixed::MAX_BATCH;
use crate::generation::{WitnessError, generate_trace};
use crate::reference::ClippedGradientSum;
use crate::statement::{PROTOCOL_VERSION, ProofShape, Statement};

/// First bytes of every encoded proof.
pub const PROOF_MAGIC: [u8; 4] = *b"ZKFP";
/// Proofs larger than this are refused before decoding. The largest accepted shape
/// (d = 1024, B = 1024) extrapolates from BENCH.md's grid to about 0.6 MiB.
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

/// Proves the statement over the committed dataset; returns the update and the proof bytes.
pub fn prove(
    statement: &Statement,
    dataset: &CommittedDataset,
) -> Result<(ClippedGradientSum, Vec<u8>), ProveError> {
    statement.validate().map_err(WitnessError::from)?;
    let (trace, update) = generate_trace(statement, dataset)?;
    let proof = prove_trace(statement, trace, &update)?;
    Ok((update, proof))
}

/// Proves an arbitrary trace against the statement's AIR, claiming `update`.
///
/// [`prove`] is this after honest trace generation; tests and benchmarks call it directly to
/// prove forged traces. A trace that violates the AIR yields bytes the verifier rejects (debug
/// builds refuse earlier, when Plonky3's prover checks the constraints and panics; that
/// panic becomes [`ProveError::Stark`]).
pub fn prove_trace(
    statement: &Statement,
    trace: RowMajorMatrix<Val>,
    update: &ClippedGradientSum,
) -> Result<Vec<u8>, ProveError> {
    statement.check_shape().map_err(WitnessError::from)?;
    let air = ClippedGradientAir::new(statement);
    let public = statement.public_values(update);
    let config = zk_config();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        p3_uni_stark::prove(&config, &air, trace, &public)
    }));
    match outcome {
        Ok(Ok(proof)) => Ok(encode_proof(&proof)),
        Ok(Err(e)) => Err(ProveError::Stark(format!("{e:?}"))),
        Err(_) => Err(ProveError::Stark(
            "the prover's constraint check failed".into(),
        )),
    }
}

/// Encodes a proof with its magic bytes and version.
pub fn encode_proof(proof: &Proof<ZkConfig>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(256 << 10);
    bytes.extend_from_slice(&PROOF_MAGIC);
    bytes.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    postcard::to_extend(proof, bytes).expect("serializing into a Vec cannot fail")
}

/// Decodes proof bytes, checking size, magic and version first.
pub fn decode_proof(bytes: &[u8]) -> Result<Proof<ZkConfig>, VerifyError> {
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
    let decoded = catch_unwind(|| postcard::take_from_bytes::<Proof<ZkConfig>>(&bytes[8..]));
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

/// The largest proof a statement of this shape accepts, checked before decoding: a
/// decoder can be made to allocate tens of bytes per input byte (empty inner vectors), so
/// the bytes it reads are held to about three times an honest proof's size. Honest proofs
/// grow by about 0.35 KiB per trace column and 6 KiB per doubling of the height over a
/// base of about 25 KiB (BENCH.md's grid); this allows 128 KiB plus 1 KiB per column plus
/// 16 KiB per height bit, and never more than [`MAX_PROOF_BYTES`].
pub fn max_proof_bytes(shape: &ProofShape) -> usize {
    let width = crate::columns::trace_width(shape.num_features);
    let allowance = (128 << 10) + (width << 10) + (shape.log_height() << 14);
    allowance.min(MAX_PROOF_BYTES)
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
    check_proof_shape(statement, &proof)?;
    let air = ClippedGradientAir::new(statement);
    let public = statement.public_values(update);
    let config = zk_config();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        p3_uni_stark::verify(&config, &air, &proof, &public)
    }));
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(VerifyError::Rejected(format!("{e:?}"))),
        Err(_) => Err(VerifyError::VerifierFault),
    }
}

/// Rejects a proof whose dimensions differ from the ones the statement and the
/// configuration fix, before Plonky3 reads any of them.
///
/// Plonky3 takes the trace height from the proof (`degree_bits`, checked only against the
/// PCS's limits) and accepts any periodic column whose length divides it, so a trace of a
/// multiple of the statement's height, repeating the batch, would verify with a multiplied
/// update. Every other length Plonky3 derives from the configuration, the AIR and this
/// height, and checks itself; ARCHITECTURE.md ("What the verifier takes from a proof")
/// lists each field with the check that binds it.
fn check_proof_shape(statement: &Statement, proof: &Proof<ZkConfig>) -> Result<(), VerifyError> {
    let height_bits = statement.shape().log_height() + ZK_HEIGHT_BITS;
    expect_dimension("degree_bits", height_bits, proof.degree_bits)?;
    // Plonky3 reads only a cap's first root and absorbs the rest unread: pin the count.
    let roots = 1 << MERKLE_CAP_HEIGHT;
    let commitments = &proof.commitments;
    expect_dimension(
        "trace commitment roots",
        roots,
        commitments.trace.roots().len(),
    )?;
    let quotient = commitments.quotient_chunks.roots().len();
    expect_dimension("quotient commitment roots", roots, quotient)?;
    if let Some(random) = &commitments.random {
        expect_dimension(
            "randomization commitment roots",
            roots,
            random.roots().len(),
        )?;
    }
    for commit in &proof.opening_proof.1.commit_phase_commits {
        expect_dimension("FRI commit-phase roots", roots, commit.roots().len())?;
    }
    Ok(())
}

pub(crate) fn expect_dimension(field: &'static str, expected: usize, got: usize) -> Result<(), VerifyError> {
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
    let d = statement.model.num_features() as u64;
    if update.weights.len() as u64 != d {
        return Err(VerifyError::UpdateShape {
            what: "weights",
            expected: d,
            got: update.weights.len() as u64,
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
    let entries = update.weights.iter().chain(std::iter::once(&update.bias));
    if let Some(index) = entries
        .clone()
        .position(|v| v.unsigned_abs() >= UPDATE_BOUND)
    {
        return Err(VerifyError::UpdateRange { index });
    }
    Ok(())
}
