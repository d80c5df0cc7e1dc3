//! The one STARK configuration, shared by prover and verifier so their parameters cannot
//! drift apart.
//!
//! Goldilocks with its quadratic extension (challenges from a 2^128 field), Poseidon2
//! width 12 for trace commitments and the transcript, hiding Merkle commitments with fresh
//! OS randomness and a hiding FRI PCS (zero knowledge). FRI: blowup 8, 32 queries, folding
//! arity up to 8, 16 bits of grinding before the queries, the batching challenge and the
//! out-of-domain point, 8 bits before each folding challenge. [`security_estimate`] runs
//! Plonky3's own estimator on the actual AIR: 110 bits conjectured (Plonky3's model, not a
//! proof) and 63 bits proven on every accepted shape, up to d = 1024, B = 1024 over 2^32
//! rows; ARCHITECTURE.md records the figures and why these parameters.

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
/// Merkle commitments are single roots (a cap of height 0).
pub const MERKLE_CAP_HEIGHT: usize = 0;
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
pub const NUM_QUERIES: usize = 32;
/// Grinding bits before the query phase.
pub const QUERY_POW_BITS: usize = 16;
/// Grinding bits before the batching challenge of the opening proof.
pub const BATCH_POW_BITS: usize = 16;
/// Grinding bits before each FRI folding challenge: lifts the commit-phase term, which
/// otherwise limits the largest shapes (103 bits at d = 1024, B = 1024 without it).
pub const COMMIT_POW_BITS: usize = 8;
/// Grinding bits before the out-of-domain point.
pub const OOD_POW_BITS: usize = 16;
/// The hiding PCS commits the trace at twice its height: a proof's `degree_bits` is the
/// statement's `log2` height plus this.
pub const ZK_HEIGHT_BITS: usize = 1;
/// Random codewords the hiding PCS mixes in.
pub const RANDOM_CODEWORDS: usize = 4;

/// FRI parameters of every proof.
pub fn fri_parameters<M>(mmcs: M) -> FriParameters<M> {
    FriParameters {
        log_blowup: LOG_BLOWUP,
        log_final_poly_len: 2,
        max_log_arity: 3,
        num_queries: NUM_QUERIES,
        batch_proof_of_work_bits: BATCH_POW_BITS,
        commit_proof_of_work_bits: COMMIT_POW_BITS,
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
        MERKLE_CAP_HEIGHT,
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
    ZkConfig::new(pcs, Challenger::new(perm)).with_ood_proof_of_work_bits(OOD_POW_BITS)
}

/// Security of one proof shape as Plonky3's own estimator computes it (p3-uni-stark's
/// `StarkSecurityParams`, `ConjecturedSecurity` and `ProvenSecurity`), in bits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SecurityEstimate {
    /// Conjectured security (the "random words" regime of Plonky3's estimator).
    pub conjectured_bits: usize,
    /// The term of the conjectured report with the fewest bits (what limits it).
    pub conjectured_limit: &'static str,
    /// That term's bits, from the per-term report rebuilt here (equal to
    /// `conjectured_bits` up to rounding: `tests/security.rs` checks they agree).
    pub conjectured_limit_bits: f64,
    /// Provable security (best of unique- and list-decoding regimes).
    pub proven_bits: usize,
}

/// The security estimate for proofs of `air`.
pub fn security_estimate(air: &crate::ClippedGradientAir) -> SecurityEstimate {
    security_estimate_with(air, &fri_parameters(()), OOD_POW_BITS)
}

/// [`security_estimate`] for other FRI parameters (for choosing them).
pub fn security_estimate_with(
    air: &crate::ClippedGradientAir,
    fri: &FriParameters<()>,
    ood_pow_bits: usize,
) -> SecurityEstimate {
    use p3_uni_stark::{ConjecturedSecurity, ProvenSecurity};

    let params = stark_security_params(air, fri, ood_pow_bits);
    let degree_bits = air.shape().log_height() + ZK_HEIGHT_BITS;
    let limit = conjectured_report(&params, degree_bits).binding();
    SecurityEstimate {
        conjectured_bits: ConjecturedSecurity::compute_from_params(&params, degree_bits)
            .security_bits,
        conjectured_limit: limit.label,
        conjectured_limit_bits: limit.bits.bits(),
        proven_bits: ProvenSecurity::compute_from_proof(degree_bits, &params).security_bits(),
    }
}

/// The estimator's description of proofs of `air` under these parameters.
fn stark_security_params(
    air: &crate::ClippedGradientAir,
    fri: &FriParameters<()>,
    ood_pow_bits: usize,
) -> p3_uni_stark::StarkSecurityParams {
    use p3_field::PrimeCharacteristicRing;
    use p3_field::coset::TwoAdicMultiplicativeCoset;
    use p3_uni_stark::{AirLayout, OpeningShape, StarkSecurityParams};

    let log_height = air.shape().log_height();
    let domain = TwoAdicMultiplicativeCoset::new(Val::ONE, log_height).expect("two-adic height");
    StarkSecurityParams::from_air::<Val, Challenge, _>(
        fri.security_regime(),
        air,
        AirLayout::from_air::<Val>(air),
        domain,
        // Challenges live in the degree-2 extension: a 128-bit field.
        128,
        // Poseidon2 digests of 4 × 64 bits: 128-bit collision resistance.
        128,
        2,
        OpeningShape::hiding(RANDOM_CODEWORDS),
        p3_security::GrindingSites {
            out_of_domain: ood_pow_bits,
            ..fri.grinding_sites()
        },
    )
}

/// The per-term conjectured report behind `ConjecturedSecurity::compute_from_params`,
/// rebuilt from the same parameters (p3-uni-stark keeps its own conversion private).
fn conjectured_report(
    params: &p3_uni_stark::StarkSecurityParams,
    degree_bits: usize,
) -> p3_security::RegimeReport {
    let regime = p3_security::fri::FriRegime {
        log_blowup: params.fri_log_blowup,
        num_queries: params.fri_num_queries,
        log_final_poly_len: params.fri_log_final_poly_len,
        max_log_arity: params.fri_max_log_arity,
        commit_pow_bits: params.fri_commit_proof_of_work_bits,
        query_pow_bits: params.fri_query_proof_of_work_bits,
    };
    let air = p3_security::StarkAirParams {
        num_constraints: params.num_constraints,
        max_constraint_degree: params.air_max_constraint_degree,
        num_quotient_chunks: params.num_quotient_chunks,
        max_combo: params.max_combo,
    };
    let shape = p3_security::InstanceShape {
        log_trace_length: degree_bits,
        modulus_bits: params.num_modulus_bits,
        collision_resistance: params.collision_resistance,
        num_batched_functions: params.num_batched_functions,
    };
    p3_security::stark::conjectured_security_report(&regime, &air, &shape, &[], &params.grinding)
}
