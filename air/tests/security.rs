//! The batch proof (four tables, five for an MLP, tied by LogUp buses) has at least 110
//! bits of conjectured security (Plonky3's own estimator, a conjecture about FRI's
//! list-decoding behaviour, not a proof, with the LogUp fingerprint bound as one of its
//! terms) on every proof shape the statement accepts, from the smallest up to the largest:
//! d = 1024 features, B = 1024 examples over a dataset of 2^32 rows, and the widest
//! softmax and MLP layers. The proven figure is printed beside it and kept at or above its
//! documented floor.

mod common;

use common::context;
use zkfed_air::commitment::MAX_ROWS;
use zkfed_air::config::{
    COMMIT_POW_BITS, LOOKUP_POW_BITS, MLP_LOOKUP_POW_BITS, OOD_POW_BITS, SecurityEstimate,
    fri_parameters, security_estimate, security_estimate_with,
};
use zkfed_air::engine::TableHeights;
use zkfed_air::fixed::{MAX_BATCH, MAX_FEATURES, ONE};
use zkfed_air::spec::ModelSpec;
use zkfed_air::statement::{MAX_MLP_PARAMS, MAX_SOFTMAX_PARAMS};
use zkfed_air::{DatasetCommitment, Model, RoundParams, Statement};

/// Conjectured bits ARCHITECTURE.md promises on every accepted shape.
const CONJECTURED_FLOOR: usize = 110;
/// Proven bits ARCHITECTURE.md states on every accepted shape.
const PROVEN_FLOOR: usize = 65;

/// A statement of one shape (the estimate depends on the shape only, so a commitment
/// without data suffices).
fn statement(features: usize, rows: u64, batch: usize) -> Statement {
    statement_of(ModelSpec::Logistic, features, rows, batch)
}

/// [`statement`] for a model of another spec.
fn statement_of(spec: ModelSpec, features: usize, rows: u64, batch: usize) -> Statement {
    let dataset = DatasetCommitment {
        root: [1, 2, 3, 4],
        rows,
    };
    let params = RoundParams {
        clip_norm: ONE,
        batch_size: batch,
    };
    let model = Model::zeros(spec, features);
    Statement::new(context(1), model, params, dataset, [0; 32]).unwrap()
}

/// The largest accepted shape.
fn largest() -> Statement {
    statement(MAX_FEATURES, MAX_ROWS, MAX_BATCH)
}

/// Prints an estimate and checks that its fields agree with each other.
fn checked(statement: &Statement, e: SecurityEstimate) -> SecurityEstimate {
    let shape = statement.shape();
    eprintln!(
        "d = {}, B = {}, depth {}, heights {:?}: {e:?}",
        shape.num_features,
        shape.batch,
        shape.depth,
        TableHeights::of(statement).all()
    );
    assert_eq!(
        e.conjectured_limit_bits as usize, e.conjectured_bits,
        "{e:?}"
    );
    assert!(e.conjectured_limit_bits <= e.lookup_bits, "{e:?}");
    assert!(e.proven_bits <= e.conjectured_bits, "{e:?}");
    assert!(
        e.quotient_chunks <= 1 << zkfed_air::config::LOG_BLOWUP,
        "a quotient in more chunks than the blowup leaves FRI no margin: {e:?}"
    );
    e
}

#[test]
fn every_accepted_shape_has_at_least_110_conjectured_bits() {
    for (features, rows, batch) in [
        (1, 1, 1),
        (5, 12, 4),
        (30, 1024, 64),
        (256, 1024, 256),
        (256, 1 << 20, 1024),
        (MAX_FEATURES, 1 << 20, MAX_BATCH),
        (1, MAX_ROWS, MAX_BATCH),
        (MAX_FEATURES, MAX_ROWS, 1),
        (MAX_FEATURES, MAX_ROWS, MAX_BATCH),
    ] {
        let statement = statement(features, rows, batch);
        let e = checked(&statement, security_estimate(&statement));
        assert!(
            e.conjectured_bits >= CONJECTURED_FLOOR && e.proven_bits >= PROVEN_FLOOR,
            "d = {features}, B = {batch}, rows = {rows}: {e:?}"
        );
    }
}

#[test]
fn every_accepted_softmax_shape_has_at_least_110_conjectured_bits() {
    // Small shapes, the digits shape, then for each class count the most features within
    // MAX_SOFTMAX_PARAMS at the largest batch and dataset.
    let widest = (2u8..=64).map(|classes| {
        let features = (MAX_SOFTMAX_PARAMS / usize::from(classes) - 1).min(MAX_FEATURES);
        (classes, features, MAX_ROWS, MAX_BATCH)
    });
    let small = [(2, 1, 1, 1), (10, 64, 360, 32), (64, 15, 1 << 20, 256)];
    for (classes, features, rows, batch) in small.into_iter().chain(widest) {
        let spec = ModelSpec::Softmax { classes };
        let statement = statement_of(spec, features, rows, batch);
        let e = checked(&statement, security_estimate(&statement));
        assert!(
            e.conjectured_bits >= CONJECTURED_FLOOR && e.proven_bits >= PROVEN_FLOOR,
            "{classes} classes, d = {features}, B = {batch}, rows = {rows}: {e:?}"
        );
    }
    // The softmax's own lookup grinding is what lifts its widest shape.
    let widest = statement_of(ModelSpec::Softmax { classes: 64 }, 127, MAX_ROWS, MAX_BATCH);
    let fri = fri_parameters(());
    let with_16 = security_estimate_with(&widest, &fri, OOD_POW_BITS, LOOKUP_POW_BITS);
    assert_eq!(
        with_16.conjectured_limit, "logup-fingerprint",
        "{with_16:?}"
    );
    assert!(with_16.conjectured_bits < CONJECTURED_FLOOR, "{with_16:?}");
}

#[test]
fn every_accepted_mlp_shape_has_at_least_110_conjectured_bits() {
    // Small shapes, the digits and 784-input shapes, then the widest hidden layers within
    // MAX_MLP_PARAMS at the largest batch and dataset, for the fewest and most classes.
    let mut shapes = vec![
        (1, 2, 1, 1, 1),
        (32, 10, 64, 360, 32),
        (128, 10, 784, MAX_ROWS, MAX_BATCH),
    ];
    for hidden in [16u16, 64, 256] {
        for classes in [2u8, 64] {
            let second = usize::from(classes) * (usize::from(hidden) + 1);
            let features = ((MAX_MLP_PARAMS - second) / usize::from(hidden) - 1).min(MAX_FEATURES);
            shapes.push((hidden, classes, features, MAX_ROWS, MAX_BATCH));
        }
    }
    for (hidden, outputs, features, rows, batch) in shapes {
        let spec = ModelSpec::Mlp { hidden, outputs };
        let statement = statement_of(spec, features, rows, batch);
        let e = checked(&statement, security_estimate(&statement));
        assert!(
            e.conjectured_bits >= CONJECTURED_FLOOR && e.proven_bits >= PROVEN_FLOOR,
            "H = {hidden}, {outputs} classes, d = {features}, B = {batch}, rows = {rows}: {e:?}"
        );
    }
    // The MLP's own batching grinding is what lifts its widest shape.
    let spec = ModelSpec::Mlp {
        hidden: 256,
        outputs: 64,
    };
    let widest = statement_of(spec, 446, MAX_ROWS, MAX_BATCH);
    let fri = fri_parameters(());
    let with_16 = security_estimate_with(&widest, &fri, OOD_POW_BITS, MLP_LOOKUP_POW_BITS);
    assert_eq!(
        with_16.conjectured_limit, "batch-combination",
        "{with_16:?}"
    );
    assert!(with_16.conjectured_bits < CONJECTURED_FLOOR, "{with_16:?}");
}

#[test]
fn softmax_statements_beyond_the_proven_parameter_count_are_refused() {
    let over = Model::zeros(ModelSpec::Softmax { classes: 16 }, 1024);
    let dataset = DatasetCommitment {
        root: [1, 2, 3, 4],
        rows: 10,
    };
    let params = RoundParams {
        clip_norm: ONE,
        batch_size: 2,
    };
    assert_eq!(
        Statement::new(context(1), over, params, dataset, [0; 32]),
        Err(zkfed_air::ShapeError::TooManyParameters {
            got: 16 * 1025,
            max: MAX_SOFTMAX_PARAMS
        })
    );
}

#[test]
fn lookup_grinding_lifts_the_logup_term_of_the_largest_shape() {
    let statement = largest();
    let fri = fri_parameters(());
    let without = checked(
        &statement,
        security_estimate_with(&statement, &fri, OOD_POW_BITS, 0),
    );
    let with = checked(&statement, security_estimate(&statement));
    let gained = with.lookup_bits - without.lookup_bits;
    assert!(
        (gained - LOOKUP_POW_BITS as f64).abs() < 1e-9,
        "{without:?} {with:?}"
    );
    assert_eq!(
        without.conjectured_limit, "logup-fingerprint",
        "{without:?}"
    );
    assert!(without.conjectured_bits < CONJECTURED_FLOOR, "{without:?}");
    assert!(with.conjectured_bits > without.conjectured_bits, "{with:?}");
}

#[test]
fn commit_phase_grinding_lifts_the_folding_term_of_the_largest_shape() {
    let statement = largest();
    let mut fri = fri_parameters(());
    fri.commit_proof_of_work_bits = 0;
    let without = checked(
        &statement,
        security_estimate_with(&statement, &fri, OOD_POW_BITS, LOOKUP_POW_BITS),
    );
    assert_eq!(without.conjectured_limit, "ldt-commit-phase", "{without:?}");
    let with = checked(&statement, security_estimate(&statement));
    assert_eq!(
        fri_parameters(()).commit_proof_of_work_bits,
        COMMIT_POW_BITS
    );
    assert_ne!(with.conjectured_limit, "ldt-commit-phase", "{with:?}");
    assert!(with.conjectured_bits > without.conjectured_bits, "{with:?}");
}

/// A hidden-sampling statement over `rows` rows with about `mean` sampled per attempt.
fn hidden_statement(spec: ModelSpec, features: usize, rows: u64, mean: f64) -> Statement {
    use zkfed_air::sampling::{KeyCommitment, SamplingRate};
    use zkfed_air::statement::HiddenSampling;
    let dataset = DatasetCommitment {
        root: [1, 2, 3, 4],
        rows,
    };
    let sampling = HiddenSampling {
        key: KeyCommitment([5, 6, 7, 8]),
        rate: SamplingRate::from_probability(mean / rows as f64).unwrap(),
    };
    let model = Model::zeros(spec, features);
    Statement::with_hidden_sampling(context(1), model, ONE, dataset, [0; 32], sampling).unwrap()
}

#[test]
fn every_hidden_sampling_shape_has_at_least_110_conjectured_bits() {
    // The sampling table adds a PRF row per eight dataset rows (up to 2^17 rows of 96 range
    // lookups): the largest dataset hidden sampling covers, with as many slots as a proof
    // holds, for logistic regression and the widest softmax layers.
    use zkfed_air::sampling::MAX_SAMPLED_ROWS;
    let most = 800.0; // a mean whose 10^-9 capacity stays within MAX_BATCH
    let mut shapes = vec![
        (ModelSpec::Logistic, 30, 114, 16.0),
        (ModelSpec::Logistic, 30, 10_000, 100.0),
        (ModelSpec::Logistic, MAX_FEATURES, MAX_SAMPLED_ROWS, most),
        (ModelSpec::Softmax { classes: 10 }, 64, 360, 36.0),
    ];
    for classes in [2u8, 16, 64] {
        let features = (MAX_SOFTMAX_PARAMS / usize::from(classes) - 1).min(MAX_FEATURES);
        shapes.push((
            ModelSpec::Softmax { classes },
            features,
            MAX_SAMPLED_ROWS,
            most,
        ));
    }
    for (spec, features, rows, mean) in shapes {
        let statement = hidden_statement(spec, features, rows, mean);
        assert!(statement.params.batch_size <= MAX_BATCH);
        let e = checked(&statement, security_estimate(&statement));
        assert!(
            e.conjectured_bits >= CONJECTURED_FLOOR && e.proven_bits >= PROVEN_FLOOR,
            "{spec}, d = {features}, rows = {rows}, slots = {}: {e:?}",
            statement.params.batch_size
        );
    }
}
