//! Proving and verifying with the multi-table engine.
//!
//! Proof bytes are `b"ZKFB" || version (u32 LE) || postcard(BatchProof)`. Before Plonky3
//! reads a proof the verifier pins every dimension the statement fixes: the three
//! instances' heights (`degree_bits`, which `p3-batch-stark` takes "straight from the
//! proof") and each commitment's root count. Decoding and verification run under
//! `catch_unwind`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use p3_batch_stark::{BatchProof, CommonData, ProverData, StarkInstance, prove_batch, verify_batch};
use p3_uni_stark::StarkGenericConfig;

use super::witness::{Traces, generate_traces};
use super::{NUM_TABLES, TableAir, TableHeights, tables};
use crate::commitment::CommittedDataset;
use crate::config::{MERKLE_CAP_HEIGHT, ZkConfig, zk_config};
use crate::proof::{MAX_PROOF_BYTES, ProveError, VerifyError, check_update_shape, expect_dimension};
use crate::reference::ClippedGradientSum;
use crate::statement::{PROTOCOL_VERSION, Statement};

/// First bytes of every encoded multi-table proof.
pub const BATCH_PROOF_MAGIC: [u8; 4] = *b"ZKFB";

/// A decoded multi-table proof.
pub type ZkBatchProof = BatchProof<ZkConfig>;

/// Proves the statement over the committed dataset; returns the update and the proof bytes.
pub fn prove(
    statement: &Statement,
    dataset: &CommittedDataset,
) -> Result<(ClippedGradientSum, Vec<u8>), ProveError> {
    statement.validate().map_err(super::WitnessError::from)?;
    let traces = generate_traces(statement, dataset)?;
    let bytes = prove_traces(statement, &traces, &traces.update)?;
    Ok((traces.update, bytes))
}

/// Proves given traces against a claimed update (forgers' tests call this directly).
pub fn prove_traces(
    statement: &Statement,
    traces: &Traces,
    update: &ClippedGradientSum,
) -> Result<Vec<u8>, ProveError> {
    statement
        .check_shape()
        .map_err(super::WitnessError::from)?;
    let airs = tables(statement, update);
    let public = public_values(statement, update);
    let config = zk_config();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let degrees = extended_degree_bits(&config, statement);
        let prover_data = ProverData::from_airs_and_degrees(&config, &airs, &degrees)?;
        let matrices = [&traces.permutation, &traces.hash, &traces.step, &traces.lookup];
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
fn public_values(
    statement: &Statement,
    update: &ClippedGradientSum,
) -> [Vec<crate::config::Val>; NUM_TABLES] {
    [Vec::new(), statement.public_values(update), Vec::new(), Vec::new()]
}

/// `log2` of each instance's committed height: the statement's height, doubled by the
/// hiding PCS.
fn extended_degree_bits(config: &ZkConfig, statement: &Statement) -> [usize; NUM_TABLES] {
    TableHeights::of(statement)
        .as_array()
        .map(|h| h.trailing_zeros() as usize + config.is_zk())
}

/// Encodes a proof with its magic bytes and version.
pub fn encode_proof(proof: &ZkBatchProof) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(192 << 10);
    bytes.extend_from_slice(&BATCH_PROOF_MAGIC);
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
    if bytes.len() < 8 || bytes[..4] != BATCH_PROOF_MAGIC {
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
    let proof = decode_proof(proof_bytes)?;
    let config = zk_config();
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
    airs: &[TableAir; NUM_TABLES],
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
    let fields = [
        "permutation table degree_bits",
        "hash table degree_bits",
        "step table degree_bits",
        "lookup table degree_bits",
    ];
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
