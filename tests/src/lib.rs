//! End-to-end tests across crates: `tests/round.rs` composes the proof core and
//! aggregation through their public APIs; `tests/federation.rs` runs the real coordinator and
//! participant binaries over loopback, kills nodes and audits the result; `tests/chaos.rs`
//! kills them at seeded moments through `zkfed_sim::chaos` (the `zkfed-chaos` driver);
//! `tests/dishonest_coordinator.rs` holds a participant to its own privacy budget against a
//! scripted coordinator that breaks the protocol.
