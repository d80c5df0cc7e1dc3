//! The coordinator node (`zkfed-coordinator`): enrolment, rounds, proof verification,
//! aggregation, durable state and the signed audit log.
//!
//! Built so far: the event model ([`events`]) and the durable, signed log ([`log`]). The
//! network loop, configuration and the `audit verify` command are in progress (issue 3).

pub mod audit;
pub mod config;
pub mod core;
pub mod events;
pub mod log;
pub mod node;
pub mod rounds;
pub mod starter;
