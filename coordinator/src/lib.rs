//! The coordinator node (`zkfed-coordinator`): enrolment, rounds, proof verification,
//! aggregation, durable state and the signed audit log.
//!
//! Every decision is an [`events::AuditEvent`] appended to the signed log ([`log`]) before
//! anyone is told; the state is the replay of that log ([`ledger`]), the policy is pure
//! ([`rounds`]), the network loop is [`event_loop`], [`revocation`] carries an operator's
//! revocation of a participant's key to the running loop, [`audit`] re-checks a store
//! offline, and [`export`] writes its model as a model file and evaluates one.

pub mod audit;
pub mod config;
pub mod event_loop;
pub mod events;
pub mod export;
pub mod ledger;
pub mod log;
pub mod privacy;
pub mod revocation;
pub mod rounds;
pub mod starter;
