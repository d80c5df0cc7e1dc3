//! Shared fixtures: small random datasets, committed, with statements over them.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use zkfed_air::fixed::{ONE, X_OFFSET};
use zkfed_air::{CommittedDataset, Model, ProofContext, RoundParams, Statement};

/// A committed dataset with a statement for one round over it.
pub struct Fixture {
    pub dataset: CommittedDataset,
    pub statement: Statement,
}

/// Options for [`fixture`].
#[derive(Clone, Copy)]
pub struct Spec {
    pub features: usize,
    pub rows: usize,
    pub batch: usize,
    pub clip: i64,
    /// Largest |feature| (raw).
    pub feature_scale: i64,
    /// Largest |weight| (raw).
    pub weight_scale: i64,
    pub seed: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            features: 5,
            rows: 12,
            batch: 4,
            clip: ONE,
            feature_scale: 3 * ONE,
            weight_scale: ONE,
            seed: 7,
        }
    }
}

pub fn context(round: u64) -> ProofContext {
    ProofContext {
        federation_id: [0xfe; 32],
        round,
        participant: [0x11; 32],
    }
}

/// `spec.rows` rows of `spec.features` features within `±spec.feature_scale`.
fn random_features(spec: &Spec, rng: &mut StdRng) -> Vec<Vec<i64>> {
    let fs = spec.feature_scale.min(X_OFFSET - 1);
    (0..spec.rows)
        .map(|_| {
            (0..spec.features)
                .map(|_| rng.random_range(-fs..=fs))
                .collect()
        })
        .collect()
}

pub fn fixture(spec: Spec) -> Fixture {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let features = random_features(&spec, &mut rng);
    let labels: Vec<u8> = (0..spec.rows).map(|_| rng.random_range(0..=1u8)).collect();
    let model = Model::logistic(
        (0..spec.features)
            .map(|_| rng.random_range(-spec.weight_scale..=spec.weight_scale))
            .collect(),
        rng.random_range(-spec.weight_scale..=spec.weight_scale),
    );
    fixture_with(features, labels, model, spec)
}

pub fn fixture_with(features: Vec<Vec<i64>>, labels: Vec<u8>, model: Model, spec: Spec) -> Fixture {
    let mut rng = StdRng::seed_from_u64(spec.seed ^ 0x5a17);
    let dataset = CommittedDataset::commit(features, labels, &mut rng).expect("valid dataset");
    let params = RoundParams {
        clip_norm: spec.clip,
        batch_size: spec.batch,
    };
    let statement = Statement::new(
        context(3),
        model,
        params,
        dataset.commitment(),
        [spec.seed as u8; 32],
    )
    .expect("valid statement");
    Fixture { dataset, statement }
}

/// A softmax fixture: `classes` classes, random labels, a random model.
pub fn softmax_fixture(spec: Spec, classes: u8) -> Fixture {
    network_fixture(spec, zkfed_air::spec::ModelSpec::Softmax { classes })
}

/// An MLP of `hidden` units over `classes` classes.
#[allow(dead_code)]
pub fn mlp_fixture(spec: Spec, hidden: u16, classes: u8) -> Fixture {
    let outputs = classes;
    network_fixture(spec, zkfed_air::spec::ModelSpec::Mlp { hidden, outputs })
}

fn network_fixture(spec: Spec, model_spec: zkfed_air::spec::ModelSpec) -> Fixture {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let features = random_features(&spec, &mut rng);
    let classes = model_spec.classes();
    let labels: Vec<u8> = (0..spec.rows)
        .map(|_| rng.random_range(0..classes))
        .collect();
    let params = (0..model_spec.num_params(spec.features))
        .map(|_| rng.random_range(-spec.weight_scale..=spec.weight_scale))
        .collect();
    let model = Model {
        spec: model_spec,
        num_features: spec.features,
        params,
    };
    fixture_with(features, labels, model, spec)
}

// ---------------------------------------------------------------------------------------
// Which rules a forged witness breaks, checked without proving.

use std::panic::{AssertUnwindSafe, catch_unwind};

use p3_air::check_all_constraints;
use p3_goldilocks::Goldilocks;
use p3_lookup::Lookups;
use p3_lookup::debug_util::{LookupDebugInstance, check_lookups};
use p3_matrix::dense::RowMajorMatrix;
use zkfed_air::ClippedGradientSum;
use zkfed_air::config::Challenge;
use zkfed_air::engine::tables;
use zkfed_air::engine::witness::Traces;

/// The rule a forged witness breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Permutation,
    Hash,
    Step,
    Lookup,
    Hidden,
    SamplingPermutation,
    Sampling,
    Bus,
}

/// Each instance's rule, in instance order.
pub fn table_rules(statement: &Statement) -> Vec<Rule> {
    let shape = statement.shape();
    let mut rules = vec![Rule::Permutation, Rule::Hash, Rule::Step, Rule::Lookup];
    if shape.hidden {
        rules.push(Rule::Hidden);
    }
    if shape.sampled_from.is_some() {
        rules.extend([Rule::SamplingPermutation, Rule::Sampling]);
    }
    rules
}

pub fn matrices(t: &Traces) -> Vec<&RowMajorMatrix<Goldilocks>> {
    t.matrices()
}

/// Every rule the traces break, for the statement and the claimed update.
pub fn broken_rules(
    statement: &Statement,
    traces: &Traces,
    update: &ClippedGradientSum,
) -> Vec<Rule> {
    let airs = tables(statement, update);
    let public = zkfed_air::proof::public_values(statement, update);
    let mut broken = Vec::new();
    let rules = table_rules(statement);
    for (i, (air, trace)) in airs.iter().zip(matrices(traces)).enumerate() {
        if !check_all_constraints(air, trace, &public[i], Some(1)).is_ok() {
            broken.push(rules[i]);
        }
    }
    let lookups: Vec<Lookups<Goldilocks>> =
        airs.iter().map(Lookups::from_air::<Challenge, _>).collect();
    let instances: Vec<LookupDebugInstance<'_, Goldilocks>> = matrices(traces)
        .into_iter()
        .zip(&lookups)
        .zip(&public)
        .map(
            |((main_trace, lookups), public_values)| LookupDebugInstance {
                main_trace,
                preprocessed_trace: &None,
                public_values,
                lookups,
                permutation_challenges: &[],
            },
        )
        .collect();
    if catch_unwind(AssertUnwindSafe(|| check_lookups(&instances))).is_err() {
        broken.push(Rule::Bus);
    }
    broken
}

/// Whether `p3-batch-stark`'s verifier, given the tables and the heights the proof claims,
/// accepts it: what a verifier without zkfed's shape check would do.
pub fn batch_stark_alone_accepts(
    statement: &Statement,
    update: &ClippedGradientSum,
    bytes: &[u8],
) -> bool {
    let proof = zkfed_air::proof::decode_proof(bytes).unwrap();
    let config = zkfed_air::config::zk_config_for(&statement.shape());
    let airs = tables(statement, update);
    let public = zkfed_air::proof::public_values(statement, update);
    let common =
        p3_batch_stark::ProverData::from_airs_and_degrees(&config, &airs, &proof.degree_bits)
            .unwrap()
            .common;
    p3_batch_stark::verify_batch(&config, &airs, &proof, &public, &common).is_ok()
}

/// Proves `traces` claiming `update` and verifies the bytes. Debug builds of Plonky3 check
/// the witness before proving and refuse a forged one; that refusal stands for the
/// verifier's (release builds, which CI runs, always reach the verifier).
#[allow(dead_code)]
pub fn prove_and_verify(
    statement: &zkfed_air::Statement,
    traces: &Traces,
    update: &zkfed_air::ClippedGradientSum,
) -> Result<(), zkfed_air::VerifyError> {
    use zkfed_air::VerifyError;
    match zkfed_air::proof::prove_traces(statement, traces, update) {
        Ok(proof) => zkfed_air::verify(statement, update, &proof),
        Err(e) => {
            let debug = cfg!(debug_assertions);
            assert!(debug, "release prover refused: {e}");
            Err(VerifyError::Rejected(format!("debug prover refused: {e}")))
        }
    }
}

/// Each batch example's network step (softmax or MLP) under the fixture's model, and its
/// label.
#[allow(dead_code)]
pub fn batch_steps(f: &Fixture) -> (Vec<zkfed_air::network::NetworkStep>, Vec<u8>) {
    let layers = f.statement.model.layers().unwrap();
    let head = f.statement.model.spec.head();
    let clip = f.statement.params.clip_norm;
    f.statement
        .batch_indices
        .iter()
        .map(|&i| {
            let (x, y, _) = f.dataset.row(i as usize);
            let step = zkfed_air::network::network_step(&layers, head, x, y, clip).unwrap();
            (step, y)
        })
        .unzip()
}

/// The taller-trace attack: every table stacked twice and re-witnessed, so every rule holds
/// and p3-batch-stark alone accepts about twice the update; the statement's heights refuse
/// it.
#[allow(dead_code)]
pub fn assert_taller_trace_refused(f: &Fixture) {
    use zkfed_air::VerifyError;
    let honest = zkfed_air::engine::witness::generate_traces(&f.statement, &f.dataset).unwrap();
    let (traces, update) = zkfed_air::forgery::stacked_traces(&f.statement, &f.dataset, 2).unwrap();
    assert_eq!(broken_rules(&f.statement, &traces, &update), []);
    assert_eq!(update.examples, honest.update.examples);
    assert_ne!(update, honest.update);
    let bytes = zkfed_air::proof::prove_traces(&f.statement, &traces, &update).unwrap();
    assert!(batch_stark_alone_accepts(&f.statement, &update, &bytes));
    let verdict = zkfed_air::verify(&f.statement, &update, &bytes);
    assert!(
        matches!(&verdict, Err(VerifyError::ProofShape { field, .. }) if field.ends_with("degree_bits")),
        "{verdict:?}"
    );
}

/// Rebalances traces a forger edited, requires that exactly `rules` break and that the
/// verifier rejects a proof of them, and returns the update the buses balance with.
#[allow(dead_code)]
pub fn assert_edit_rejected(
    statement: &Statement,
    traces: &mut Traces,
    rules: &[Rule],
) -> ClippedGradientSum {
    let update = zkfed_air::forgery::rebalance(statement, traces).unwrap();
    assert_eq!(broken_rules(statement, traces, &update), rules);
    let verdict = prove_and_verify(statement, traces, &update);
    assert!(
        matches!(verdict, Err(zkfed_air::VerifyError::Rejected(_))),
        "{verdict:?}"
    );
    update
}

/// Proves the honest traces once, then requires the verifier to reject the proof for an
/// update claimed one unit higher at each of `indices`.
#[allow(dead_code)]
pub fn assert_changed_entries_rejected(statement: &Statement, traces: &Traces, indices: &[usize]) {
    let proof = zkfed_air::proof::prove_traces(statement, traces, &traces.update).unwrap();
    for &index in indices {
        let mut claimed = traces.update.clone();
        claimed.values[index] += 1;
        let verdict = zkfed_air::verify(statement, &claimed, &proof);
        assert!(
            matches!(verdict, Err(zkfed_air::VerifyError::Rejected(_))),
            "{index}: {verdict:?}"
        );
    }
}

/// Proofs of the honest traces made under `weak` (a configuration grinding fewer bits than
/// the statement's) are refused, and one under the statement's configuration verifies.
///
/// A weak proof's witness meets the statement's bits by chance (probability `2^-missing`),
/// so weak proofs are made until one is refused, at most [`WEAK_PROOF_ATTEMPTS`]: a verifier
/// that checked only the weak bits would accept every one of them.
#[allow(dead_code)]
pub fn assert_weaker_grinding_refused(
    statement: &Statement,
    dataset: &CommittedDataset,
    weak: impl Fn() -> zkfed_air::config::ZkConfig,
) {
    use zkfed_air::VerifyError;
    use zkfed_air::proof::prove_traces_with;
    let traces = zkfed_air::engine::witness::generate_traces(statement, dataset).unwrap();
    let update = &traces.update;
    let refused = (0..WEAK_PROOF_ATTEMPTS).any(|_| {
        let bytes = prove_traces_with(weak(), statement, &traces, update).unwrap();
        match zkfed_air::verify(statement, update, &bytes) {
            Ok(()) => false,
            Err(VerifyError::Rejected(_)) => true,
            Err(other) => panic!("refused for another reason: {other:?}"),
        }
    });
    assert!(
        refused,
        "{WEAK_PROOF_ATTEMPTS} weakly ground proofs all verified"
    );
    let config = zkfed_air::config::zk_config_for(&statement.shape());
    let strong = prove_traces_with(config, statement, &traces, update).unwrap();
    assert_eq!(zkfed_air::verify(statement, update, &strong), Ok(()));
}

/// Weak proofs [`assert_weaker_grinding_refused`] makes at most: with two bits missing, all
/// of them verify with probability `2^-32`.
pub const WEAK_PROOF_ATTEMPTS: usize = 16;
