//! End-to-end tests across crates (node processes over loopback once issue 3 lands).
//!
//! Today it checks the proof core and aggregation compose: a round's accepted updates,
//! proven and verified from their bytes, aggregate into the next model.
