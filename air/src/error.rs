//! Error types of the proof core.

use thiserror::Error;

/// A model, parameter set or dataset whose shape the proof cannot cover.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // variant fields are named in their messages
pub enum ShapeError {
    /// Feature count outside `1..=max`.
    #[error("model has {got} features; between 1 and {max} are supported")]
    Features { got: usize, max: usize },
    /// A weight (index = feature, or `d` for the bias) with `|w| >= bound`.
    #[error("model parameter {index} is outside the fixed-point range (|w| < {bound})")]
    ParameterOutOfRange { index: usize, bound: i64 },
    /// Clip norm outside `(0, bound)`.
    #[error("clip norm {got} is outside (0, {bound})")]
    ClipNorm { got: i64, bound: i64 },
    /// Batch size outside `1..=max`.
    #[error("batch size {got} is outside 1..={max}")]
    Batch { got: usize, max: usize },
    /// More examples asked for than the dataset holds.
    #[error("batch of {batch} examples asked from a dataset of {rows} rows")]
    BatchLargerThanDataset { batch: usize, rows: u64 },
    /// A dataset with no rows, or more than the Merkle tree supports.
    #[error("dataset row count {got} is outside 1..={max}")]
    Rows { got: u64, max: u64 },
    /// Per-row inputs of different lengths.
    #[error("{got} {what} for {expected} rows")]
    Count {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// A feature vector of the wrong length.
    #[error("row has {got} features, the model has {expected}")]
    RowWidth { expected: usize, got: usize },
    /// A feature value the AIR's range check would reject (the value is a patient's and is
    /// not kept: this error reaches logs).
    #[error("feature {feature} of a row is outside the fixed-point range")]
    FeatureOutOfRange { feature: usize },
    /// Batch indices other than those the round seed derives.
    #[error("batch indices are not the ones derived from the round seed")]
    BatchNotFromSeed,
    /// A batch index that is not in the dataset.
    #[error("batch index {index} is not below the row count {rows}")]
    IndexOutOfRange { index: u64, rows: u64 },
    /// A model whose outputs do not predict the label's classes, or an output count the
    /// model kind does not take.
    #[error("the model predicts {model} classes, the label has {label}")]
    Classes { model: u8, label: u8 },
    /// An MLP hidden width outside `1..=max`.
    #[error("the MLP has {got} hidden units; between 1 and {max} are supported")]
    Hidden { got: u16, max: u16 },
    /// A spec with more parameters than a model may have.
    #[error("the model has {got} parameters; at most {max} are supported")]
    TooManyParameters { got: usize, max: usize },
    /// A round announcing a model of another spec than the run's.
    #[error("the round's model is {round}, the run's {run}")]
    SpecMismatch {
        run: crate::spec::ModelSpec,
        round: crate::spec::ModelSpec,
    },
    /// A hidden-sampling statement that breaks one of its rules.
    #[error("{0}")]
    HiddenSampling(&'static str),
    /// A model the proof does not cover yet.
    #[error(
        "{spec} models are not proven yet; logistic regression, softmax and MLPs with a softmax head are"
    )]
    Unproven { spec: crate::spec::ModelSpec },
    /// A parameter vector of the wrong length for its spec.
    #[error("the model has {got} parameters, its spec {expected}")]
    ParameterCount { expected: usize, got: usize },
    /// A row's label outside the model's classes (the label is a patient's value and is not
    /// kept: this error reaches logs).
    #[error("a row's label is not below the model's {classes} classes")]
    LabelOutOfRange { classes: u8 },
    /// An intermediate of one example beyond the range the proof covers (its value,
    /// computed from a patient's row, is not kept).
    #[error("an example's {what} is beyond the range the proof covers")]
    Intermediate { what: &'static str },
    /// A root limb that is not a canonical field element (two encodings of one root).
    #[error("dataset root limb {limb} is not below the field modulus")]
    RootNotCanonical { limb: usize },
}

/// Why a trace could not be built for a statement.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // variant fields are named in their messages
pub enum WitnessError {
    /// The dataset does not match the statement.
    #[error("the dataset does not match the statement: {0}")]
    Dataset(String),
    /// A row or parameter outside the supported ranges.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// An intermediate value outside the range its bit decomposition allows (the value,
    /// computed from a patient's row, is not kept: this error reaches logs).
    #[error("intermediate `{what}` does not fit in {bits} bits")]
    Range { what: &'static str, bits: usize },
    /// Hidden sampling without the key the statement's commitment names.
    #[error("the dataset has no sampling key, or not the one the statement commits to")]
    SamplingKey,
    /// More rows sampled than the proof has slots (probability below
    /// [`crate::sampling::OVERFLOW_PROBABILITY`]): the participant abstains from the attempt.
    /// The count itself is not kept.
    #[error("this attempt sampled more rows than the proof's {capacity} slots")]
    SampleOverflow { capacity: usize },
    /// A PRF value of `p − 1`, the one value the proof cannot split (probability `2^-64`
    /// per row): the participant abstains from the attempt.
    #[error("a sampling value cannot be split; abstain from this attempt")]
    UnsplittableSample,
}
