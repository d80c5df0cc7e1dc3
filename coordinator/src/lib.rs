//! The coordinator node (`zkfed-coordinator`): enrolment, round scheduling, proof
//! verification on blocking threads, aggregation, durable state and the signed audit log.
//!
//! Not built yet: this crate is reserved for issue 3 ("Coordinator and participant nodes
//! over libp2p, with durable state and an audit trail"). Verification itself already exists
//! as [`zkfed_air::verify`] and aggregation as `zkfed_aggregation::fedavg_step`.
