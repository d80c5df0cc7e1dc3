//! The one STARK configuration, shared by prover and verifier so their parameters cannot
//! drift apart.
//!
//! Goldilocks with its quadratic extension (challenges from a 2^128 field), Poseidon2
//! width 12 for trace commitments and the transcript, hiding Merkle commitments with fresh
//! OS randomness and a hiding FRI PCS (zero knowledge). FRI: blowup 8, 28 queries and
//! 16 bits of query grinding; [`conjectured_security_bits`] evaluates Plonky3's own
//! estimator on the actual AIR (see ARCHITECTURE.md for the figure).

use p3_challenger::DuplexChallenger;
use p3_commit::ExtensionMmcs;
use p3_dft::Radix2DitParallel;
use p3_field::Field;
use p3_field::extension::BinomialExtensionField;
use p3_fri::{FriParameters, HidingFriPcs};
use p3_goldilocks::{Goldilocks, Poseidon2Goldilocks};
use p3_merkle_tree::MerkleTreeHidingMmcs;
use p3_symmetric::{PaddingFreeSponge, TruncatedPermutation};
use p3_uni_stark::StarkConfig;
use rand::rngs::StdRng;

use crate::hash::{DIGEST_ELEMS, RATE, WIDTH, permutation};

/// The base field.
pub type Val = Goldilocks;
/// The challenge field (degree-2 extension, 128 bits).
pub type Challenge = BinomialExtensionField<Val, 2>;
type Perm = Poseidon2Goldilocks<WIDTH>;
type Hash = PaddingFreeSponge<Perm, WIDTH, RATE, DIGEST_ELEMS>;
type Compress = TruncatedPermutation<Perm, 2, DIGEST_ELEMS, WIDTH>;
/// Salt elements per committed row (2 × 64 bits).
const MMCS_SALT_ELEMS: usize = 2;
type ValMmcs = MerkleTreeHidingMmcs<
    <Val as Field>::Packing,
    <Val as Field>::Packing,
    Hash,
    Compress,
    StdRng,
    2,
    DIGEST_ELEMS,
    MMCS_SALT_ELEMS,
>;
type ChallengeMmcs = ExtensionMmcs<Val, Challenge, ValMmcs>;
type Dft = Radix2DitParallel<Val>;
type Pcs = HidingFriPcs<Val, Dft, ValMmcs, ChallengeMmcs, StdRng>;
type Challenger = DuplexChallenger<Val, Perm, WIDTH, RATE>;
/// The zero-knowledge STARK configuration.
pub type ZkConfig = StarkConfig<Pcs, Challenge, Challenger>;

/// log2 of the FRI blowup.
pub const LOG_BLOWUP: usize = 3;
/// FRI queries.
pub const NUM_QUERIES: usize = 28;
/// Grinding bits before the query phase.
pub const QUERY_POW_BITS: usize = 16;
/// Random codewords the hiding PCS mixes in.
pub const RANDOM_CODEWORDS: usize = 4;

/// FRI parameters of every proof.
pub fn fri_parameters<M>(mmcs: M) -> FriParameters<M> {
    FriParameters {
        log_blowup: LOG_BLOWUP,
        log_final_poly_len: 2,
        max_log_arity: 1,
        num_queries: NUM_QUERIES,
        batch_proof_of_work_bits: 0,
        commit_proof_of_work_bits: 0,
        query_proof_of_work_bits: QUERY_POW_BITS,
        mmcs,
    }
}

/// The configuration, with hiding randomness drawn from the operating system.
pub fn zk_config() -> ZkConfig {
    let perm = permutation().clone();
    let mmcs = ValMmcs::new(
        Hash::new(perm.clone()),
        Compress::new(perm.clone()),
        0,
        rand::make_rng::<StdRng>(),
    );
    let fri = fri_parameters(ChallengeMmcs::new(mmcs.clone()));
    let pcs = Pcs::new(
        Dft::default(),
        mmcs,
        fri,
        RANDOM_CODEWORDS,
        rand::make_rng::<StdRng>(),
    );
    ZkConfig::new(pcs, Challenger::new(perm))
}
