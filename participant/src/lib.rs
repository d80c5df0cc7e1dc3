//! The participant node (`zkfed-participant`): loads its CSV, commits to it with persisted
//! salts, enrols, and each round proves and submits its clipped-gradient update.
//!
//! Not built yet: this crate is reserved for issue 3. Proving already exists as
//! [`zkfed_air::prove`] over a [`zkfed_air::CommittedDataset`].
