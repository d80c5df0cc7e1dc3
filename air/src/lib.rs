//! zkfed's proof core: fixed-point logistic regression, dataset commitments, and a
//! zero-knowledge STARK that an update is the clipped gradient sum on committed rows.

pub mod air;
pub mod batch;
pub mod bounded;
pub mod columns;
pub mod commitment;
pub mod config;
pub mod data;
pub mod engine;
pub mod error;
pub mod fixed;
pub mod forgery;
pub mod generation;
pub mod hash;
pub mod model;
pub mod proof;
pub mod reference;
pub mod sigmoid;
pub mod statement;

pub use air::ClippedGradientAir;
pub use commitment::{CommittedDataset, DatasetCommitment};
pub use error::ShapeError;
pub use model::{Model, RoundParams};
pub use proof::{ProveError, VerifyError, prove, verify};
pub use reference::{ClippedGradientSum, clipped_gradient_sum};
pub use statement::{PROTOCOL_VERSION, ProofContext, Statement};
