//! zkfed's proof core: fixed-point logistic regression, softmax regression and MLPs,
//! dataset commitments, and a zero-knowledge STARK (four tables, five for an MLP, proved
//! together with `p3-batch-stark`, tied by LogUp buses) that an update is the clipped
//! gradient sum on committed rows.

pub mod batch;
pub mod bounded;
pub mod commitment;
pub mod config;
pub mod data;
pub mod engine;
pub mod error;
pub mod evaluation;
pub mod exp;
pub mod fixed;
pub mod forgery;
pub mod hash;
pub mod leaf_salts;
pub mod model;
pub mod network;
pub mod proof;
pub mod reference;
pub mod sampling;
pub mod segments;
pub mod sigmoid;
pub mod spec;
pub mod statement;

pub use commitment::{CommittedDataset, DatasetCommitment};
pub use error::{ShapeError, WitnessError};
pub use model::{Model, RoundParams};
pub use proof::{ProveError, VerifyError, prove, verify};
pub use reference::{ClippedGradientSum, TrainingStep, clipped_gradient_sum};
pub use statement::{PROTOCOL_VERSION, ProofContext, Statement};
