//! The one STARK configuration, shared by prover and verifier so their parameters cannot
//! drift apart.
//!
//! Goldilocks with its quadratic extension (challenges from a 2^128 field), Keccak-256 for
//! the Merkle commitments of the proof and for the Fiat-Shamir transcript (the proof is
//! only ever verified natively, so its own commitments need no algebraic hash: Keccak
//! made proving about 2.5 times and verification 1.7 times faster than Poseidon2; the dataset
//! commitment, which the proof opens in-circuit, stays Poseidon2), hiding Merkle
//! commitments with one salt per hashed leaf group ([`crate::leaf_salts`]) and a hiding
//! FRI PCS with 2 random codewords (zero knowledge). FRI: blowup 16, 23 queries, folding
//! arity up to 16, final polynomial of 128 coefficients. Grinding: 20 bits before the FRI
//! queries (a 24th query would cost every proof about 6 KiB of openings; 4 more bits of
//! grinding cost the prover about 2^20 Keccak hashes instead), 16 bits before the batching
//! challenge, the out-of-domain point and the LogUp challenges (20 before a softmax's LogUp
//! challenges: [`lookup_pow_bits`]), 10 bits before each folding challenge.
//! [`security_estimate`] runs Plonky3's own estimator on the whole batch of tables,
//! with the LogUp fingerprint bound as an extra term: 110 bits conjectured (Plonky3's
//! model, not a proof; the FRI query phase binds) and 65 bits proven on every accepted
//! shape, up to d = 1024, B = 1024 over 2^32 rows (hash and permutation tables of 2^18
//! rows). The LogUp term is 114 bits there (98 without its grinding); ARCHITECTURE.md
//! records the figures and why these parameters.

use p3_batch_stark::ProverData;
use p3_challenger::{HashChallenger, SerializingChallenger64};
use p3_commit::ExtensionMmcs;
use p3_dft::Radix2DitParallel;
use p3_field::BasedVectorSpace;
use p3_field::extension::BinomialExtensionField;
use p3_fri::{FriParameters, HidingFriPcs};
use p3_goldilocks::Goldilocks;
use p3_keccak::Keccak256Hash;
use p3_symmetric::{CompressionFunctionFromHasher, SerializingHasher};
use p3_uni_stark::StarkConfig;
use rand::rngs::StdRng;

use crate::leaf_salts::LeafSaltedMmcs;
use crate::spec::Head;
use crate::statement::{ProofShape, Statement};

/// The base field.
pub type Val = Goldilocks;
/// The challenge field (degree-2 extension, 128 bits).
pub type Challenge = BinomialExtensionField<Val, 2>;
/// Bytes of a Merkle digest (Keccak-256).
pub(crate) const DIGEST_BYTES: usize = 32;
/// Hashes a committed row: its field elements' canonical little-endian bytes, Keccak-256.
pub(crate) type LeafHash = SerializingHasher<Keccak256Hash>;
/// Merkle nodes: Keccak-256 of the two children's digests.
pub(crate) type Compress = CompressionFunctionFromHasher<Keccak256Hash, 2, DIGEST_BYTES>;
/// Merkle commitments are single roots (a cap of height 0).
pub const MERKLE_CAP_HEIGHT: usize = 0;
type ValMmcs = LeafSaltedMmcs;
type ChallengeMmcs = ExtensionMmcs<Val, Challenge, ValMmcs>;
type Dft = Radix2DitParallel<Val>;
type Pcs = HidingFriPcs<Val, Dft, ValMmcs, ChallengeMmcs, StdRng>;
type Challenger = SerializingChallenger64<Val, HashChallenger<u8, Keccak256Hash, DIGEST_BYTES>>;
/// The zero-knowledge STARK configuration.
pub type ZkConfig = StarkConfig<Pcs, Challenge, Challenger>;

/// log2 of the FRI blowup.
pub const LOG_BLOWUP: usize = 4;
/// FRI queries.
pub const NUM_QUERIES: usize = 23;
/// log2 of the largest FRI folding arity.
pub const MAX_LOG_ARITY: usize = 4;
/// log2 of the coefficients of FRI's final polynomial.
pub const LOG_FINAL_POLY_LEN: usize = 7;
/// Grinding bits before the query phase: with 23 queries they keep the query term where
/// 24 queries and 16 bits had it (110 bits conjectured), for a smaller proof.
pub const QUERY_POW_BITS: usize = 20;
/// Grinding bits before the batching challenge of the opening proof.
pub const BATCH_POW_BITS: usize = 16;
/// [`BATCH_POW_BITS`] of an MLP's proof: its fifth table and wider hash table batch more
/// columns into the opening proof, and at 446 → 256 → 64 over the largest batch and
/// dataset the batch-combination term would be 107.6 bits with 16.
pub const MLP_BATCH_POW_BITS: usize = 20;
/// [`BATCH_POW_BITS`] of a hidden-sampling proof: its two sampling tables (239 columns,
/// up to 2^18 rows) batch more columns into the opening proof, and a 16-class softmax over
/// 511 features, 2^20 rows and 975 slots would have 109.5 bits with 16.
pub const SAMPLING_BATCH_POW_BITS: usize = 18;
/// Grinding bits before each FRI folding challenge: lifts the commit-phase term, which
/// otherwise limits the largest shapes (101 bits at d = 1024, B = 1024 without it; 109
/// with 8 bits).
pub const COMMIT_POW_BITS: usize = 10;
/// Grinding bits before the out-of-domain point.
pub const OOD_POW_BITS: usize = 16;
/// Grinding bits before the LogUp challenges `(α, β)` of a logistic model's proof: lifts
/// the lookup term, which otherwise limits the largest shapes (see
/// [`security_estimate_with`]).
pub const LOOKUP_POW_BITS: usize = 16;
/// [`LOOKUP_POW_BITS`] of a softmax's proof: its tables make up to about 65 times more
/// LogUp denominators per row and send 130-element example tuples at 64 classes, which
/// would take the largest accepted shape's lookup term to 106.5 bits with 16.
pub const SOFTMAX_LOOKUP_POW_BITS: usize = 20;
/// [`LOOKUP_POW_BITS`] of an MLP's proof: its hidden table adds about 45 denominators per
/// row on up to 2^18 rows, and its head tuples carry `3K + 5` elements, which would take a
/// 1024 → 64 → 64 shape over the largest batch and dataset to 109.8 bits with 20.
pub const MLP_LOOKUP_POW_BITS: usize = 22;

/// The lookup grinding bits of a proof of this shape.
pub fn lookup_pow_bits(shape: &ProofShape) -> usize {
    match (shape.hidden, shape.head()) {
        (true, _) => MLP_LOOKUP_POW_BITS,
        (false, Head::Sigmoid) => LOOKUP_POW_BITS,
        (false, Head::Softmax { .. }) => SOFTMAX_LOOKUP_POW_BITS,
    }
}

/// The grinding bits before the opening proof's batching challenge of a proof of this
/// shape.
pub fn batch_pow_bits(shape: &ProofShape) -> usize {
    match (shape.hidden, shape.sampled_from) {
        (true, _) => MLP_BATCH_POW_BITS,
        (false, Some(_)) => SAMPLING_BATCH_POW_BITS,
        (false, None) => BATCH_POW_BITS,
    }
}

/// The hiding PCS commits the trace at twice its height: a proof's `degree_bits` is the
/// statement's `log2` height plus this.
pub const ZK_HEIGHT_BITS: usize = 1;
/// Random codewords the hiding PCS appends to every committed matrix: the minimum it
/// accepts, the extension degree (each costs a column per matrix in every query).
pub const RANDOM_CODEWORDS: usize = 2;

/// FRI parameters of every proof.
pub fn fri_parameters<M>(mmcs: M) -> FriParameters<M> {
    FriParameters {
        log_blowup: LOG_BLOWUP,
        log_final_poly_len: LOG_FINAL_POLY_LEN,
        max_log_arity: MAX_LOG_ARITY,
        num_queries: NUM_QUERIES,
        batch_proof_of_work_bits: BATCH_POW_BITS,
        commit_proof_of_work_bits: COMMIT_POW_BITS,
        query_proof_of_work_bits: QUERY_POW_BITS,
        mmcs,
    }
}

/// The configuration of a proof of this shape (its grinding: [`lookup_pow_bits`] and
/// [`batch_pow_bits`]), with hiding randomness drawn from the operating system.
pub fn zk_config_for(shape: &ProofShape) -> ZkConfig {
    zk_config_with(batch_pow_bits(shape)).with_lookup_proof_of_work_bits(lookup_pow_bits(shape))
}

/// The configuration of a logistic model's proof, with hiding randomness drawn from the
/// operating system.
pub fn zk_config() -> ZkConfig {
    zk_config_with(BATCH_POW_BITS)
}

/// [`zk_config`] with `batch_pow_bits` of grinding before the batching challenge.
fn zk_config_with(batch_pow_bits: usize) -> ZkConfig {
    let mmcs = ValMmcs::new(
        LeafHash::new(Keccak256Hash),
        Compress::new(Keccak256Hash),
        MERKLE_CAP_HEIGHT,
        rand::make_rng::<StdRng>(),
    );
    let fri = FriParameters {
        batch_proof_of_work_bits: batch_pow_bits,
        ..fri_parameters(ChallengeMmcs::new(mmcs.clone()))
    };
    let pcs = Pcs::new(
        Dft::default(),
        mmcs,
        fri,
        RANDOM_CODEWORDS,
        rand::make_rng::<StdRng>(),
    );
    ZkConfig::new(pcs, Challenger::from_hasher(Vec::new(), Keccak256Hash))
        .with_ood_proof_of_work_bits(OOD_POW_BITS)
        .with_lookup_proof_of_work_bits(LOOKUP_POW_BITS)
}

/// Security of one proof shape, in bits: Plonky3's own estimator (p3-security's
/// conjectured and proven STARK reports) fed the whole batch of tables, with the
/// LogUp fingerprint bound as an extra term of both.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SecurityEstimate {
    /// Conjectured security (the "random words" regime of Plonky3's estimator), the
    /// minimum over its terms including the LogUp term.
    pub conjectured_bits: usize,
    /// The term of the conjectured report with the fewest bits (what limits it):
    /// `"logup-fingerprint"` when the lookup argument binds, else one of Plonky3's labels.
    pub conjectured_limit: &'static str,
    /// That term's bits (`conjectured_bits` is their floor).
    pub conjectured_limit_bits: f64,
    /// Provable security (best of unique- and list-decoding regimes, each also bounded by
    /// the LogUp term).
    pub proven_bits: usize,
    /// The LogUp term alone: `-log2` of the probability that an unbalanced set of bus
    /// messages balances at the sampled challenges, plus the grinding before them.
    pub lookup_bits: f64,
    /// The most quotient chunks any table commits. FRI certifies degree below the
    /// extended domain over the blowup, so a quotient in more than `2^LOG_BLOWUP` chunks
    /// would leave no soundness margin, and nothing on the prove or verify path checks it:
    /// `tests/security.rs` does.
    pub quotient_chunks: usize,
}

/// The security estimate for proofs of `statement`, under [`zk_config_for`]'s parameters.
pub fn security_estimate(statement: &Statement) -> SecurityEstimate {
    let shape = statement.shape();
    let fri = FriParameters {
        batch_proof_of_work_bits: batch_pow_bits(&shape),
        ..fri_parameters(())
    };
    security_estimate_with(statement, &fri, OOD_POW_BITS, lookup_pow_bits(&shape))
}

/// [`security_estimate`] for other FRI and grinding parameters (for choosing them).
///
/// The batch is described to the estimator as one STARK, with every count taken from what
/// `p3-batch-stark` commits and opens for the tables of [`crate::engine::tables`]:
///
/// - constraints: the sum over the tables of their base and extension constraints,
///   evaluated with the tables' lookups as packed by [`ProverData::from_airs_and_degrees`]
///   (one constraint-folding challenge covers the whole batch);
/// - constraint degree and quotient chunks: the largest over the tables, the chunks being
///   the `2^(log_chunks + is_zk)` the prover commits;
/// - trace length: the tallest table's committed (zero-knowledge, doubled) height;
/// - batched functions: the sum of [`p3_batch_stark::num_batched_openings`] over the
///   tables (main, quotient, randomizer and LogUp columns at their opening points).
///
/// The LogUp term is p3-security's fingerprint bound ([`p3_security::logup`], after
/// Haböck, ePrint 2022/1530). `p3-batch-stark` grinds `lookup_pow_bits`, then draws one
/// pair `(α, β)` from the 2^128 challenge field for the whole batch and separates buses
/// by an offset `(bus + 1)·β^W`. A cheating witness balances every bus only if `(α, β)`
/// is a root of the cleared fingerprint polynomial (degree `≤ N` in `α`, `≤ N·W` in `β`)
/// or zeroes a denominator, so
///
/// ```text
/// ε_logup ≤ N·(W + 2) / 2^128,   bits = 128 − log2(N) − log2(W + 2) + lookup_pow_bits,
/// ```
///
/// with `W` the widest message and `N` the number of denominators: here, conservatively,
/// the denominators per row summed over the tables times the tallest committed height
/// (each table's real sum runs over its own, undoubled height).
pub fn security_estimate_with(
    statement: &Statement,
    fri: &FriParameters<()>,
    ood_pow_bits: usize,
    lookup_pow_bits: usize,
) -> SecurityEstimate {
    use p3_security::stark::{conjectured_security_report, proven_security_report};

    let batch = BatchShape::of(statement);
    let grinding = p3_security::GrindingSites {
        out_of_domain: ood_pow_bits,
        lookup_challenge: lookup_pow_bits,
        ..fri.grinding_sites()
    };
    let regime = fri.security_regime();
    let air = batch.air_params();
    let shape = batch.instance_shape();
    let logup = p3_security::logup::security_term(&batch.logup, &shape, &grinding)
        .expect("the tables exchange messages over LogUp buses");
    let conjectured = conjectured_security_report(&regime, &air, &shape, &[logup], &grinding);
    let proven = proven_security_report(&regime, &air, &shape, &[logup], &grinding);
    let limit = conjectured.binding();
    SecurityEstimate {
        conjectured_bits: conjectured.security_bits() as usize,
        conjectured_limit: limit.label,
        conjectured_limit_bits: limit.bits.bits(),
        proven_bits: proven.security_bits() as usize,
        lookup_bits: logup.bits.bits(),
        quotient_chunks: batch.num_quotient_chunks,
    }
}

/// What the estimator needs to know about the batch proof of one statement.
#[derive(Clone, Copy, Debug)]
struct BatchShape {
    /// Constraints over all tables.
    num_constraints: usize,
    /// Largest constraint degree over the tables.
    max_constraint_degree: usize,
    /// Largest committed quotient chunk count over the tables.
    num_quotient_chunks: usize,
    /// Largest committed (extended) `log2` height over the tables.
    degree_bits: usize,
    /// Codewords the opening argument batches, over all tables.
    num_batched_functions: usize,
    /// The LogUp argument over all tables (denominators per row summed over tables).
    logup: p3_security::logup::LogUpAir,
}

impl BatchShape {
    fn of(statement: &Statement) -> Self {
        use p3_air::BaseAir;
        use p3_air::symbolic::AirLayout;
        use p3_batch_stark::symbolic::{
            get_log_num_quotient_chunks, get_max_constraint_degree, get_symbolic_constraints,
        };
        use p3_lookup::LogUpGadget;
        use p3_uni_stark::{OpeningShape, StarkGenericConfig};

        let update = crate::ClippedGradientSum::zero(statement.model.params.len());
        let airs = crate::engine::tables(statement, &update);
        let config = zk_config();
        let is_zk = config.is_zk();
        let heights = crate::engine::TableHeights::of(statement).all();
        let degrees: Vec<usize> = heights
            .iter()
            .map(|h| h.trailing_zeros() as usize + is_zk)
            .collect();
        let prover_data = ProverData::from_airs_and_degrees(&config, &airs, &degrees)
            .expect("tables without preprocessed columns commit nothing at setup");
        let gadget = LogUpGadget::new();
        let challenge_dimension = <Challenge as BasedVectorSpace<Val>>::DIMENSION;

        let mut shape = Self {
            num_constraints: 0,
            max_constraint_degree: 0,
            num_quotient_chunks: 0,
            degree_bits: 0,
            num_batched_functions: 0,
            logup: p3_security::logup::LogUpAir {
                num_interactions: 0,
                max_message_width: 0,
            },
        };
        for (i, air) in airs.iter().enumerate() {
            let lookups = &prover_data.common.lookups[i];
            // The layout and two-adic trace domain `prove_batch` sizes each table with.
            let layout = AirLayout {
                main_width: air.width(),
                num_public_values: air.num_public_values(),
                num_periodic_columns: air.num_periodic_columns(),
                ..Default::default()
            };
            let (base, ext) =
                get_symbolic_constraints::<Val, Challenge, _, _>(air, layout, lookups, &gadget);
            let degree = get_max_constraint_degree::<Val, Challenge, _, _>(
                air, layout, heights[i], lookups, &gadget,
            )
            .max(air.max_constraint_degree().unwrap_or(0));
            let log_chunks = get_log_num_quotient_chunks::<Val, Challenge, _, _>(
                air, layout, heights[i], lookups, is_zk, &gadget,
            );
            let chunks = 1 << (log_chunks + is_zk);
            shape.num_constraints += base.len() + ext.len();
            shape.max_constraint_degree = shape.max_constraint_degree.max(degree);
            shape.num_quotient_chunks = shape.num_quotient_chunks.max(chunks);
            shape.degree_bits = shape.degree_bits.max(degrees[i]);
            shape.num_batched_functions += p3_batch_stark::num_batched_openings(
                air.width(),
                !air.main_next_row_columns().is_empty(),
                0,
                false,
                chunks,
                lookups.len(),
                challenge_dimension,
                OpeningShape::hiding(RANDOM_CODEWORDS),
            );
            for lookup in lookups.iter() {
                // An additive column has a denominator per tuple; an exclusive (flagged)
                // one multiplexes its tuples into one denominator per row, linear in `α`
                // whatever the flags' values.
                shape.logup.num_interactions += if lookup.flags.is_some() {
                    1
                } else {
                    lookup.elements.len()
                };
                let width = lookup.elements.iter().map(Vec::len).max().unwrap_or(0);
                shape.logup.max_message_width = shape.logup.max_message_width.max(width);
            }
        }
        shape
    }

    fn air_params(&self) -> p3_security::StarkAirParams {
        p3_security::StarkAirParams {
            num_constraints: self.num_constraints,
            max_constraint_degree: self.max_constraint_degree,
            num_quotient_chunks: self.num_quotient_chunks,
            // Columns are opened at `ζ` and `ζ·g` (the LogUp accumulator always reads
            // the next row).
            max_combo: 2,
        }
    }

    fn instance_shape(&self) -> p3_security::InstanceShape {
        p3_security::InstanceShape {
            log_trace_length: self.degree_bits,
            // Challenges live in the degree-2 extension: a 128-bit field.
            modulus_bits: 128,
            // Keccak-256 digests: 128-bit collision resistance.
            collision_resistance: 128,
            num_batched_functions: self.num_batched_functions,
        }
    }
}
