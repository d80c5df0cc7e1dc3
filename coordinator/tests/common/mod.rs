//! Pieces the coordinator's integration tests share.
#![allow(dead_code)]

use libp2p::PeerId;
use libp2p::identity::Keypair;
use zkfed_air::CommittedDataset;
use zkfed_coordinator::log::AuditRecord;

/// A participant of a test run: its identity and committed rows.
pub struct Hospital {
    pub key: Keypair,
    pub dataset: CommittedDataset,
}

impl Hospital {
    pub fn peer(&self) -> PeerId {
        self.key.public().to_peer_id()
    }
}

/// Renumbers, re-chains and re-signs a log, as a dishonest coordinator holding its key
/// could after changing, adding or removing records.
pub fn resign(records: &mut [AuditRecord], key: &Keypair) {
    let mut prev = [0; 32];
    for (seq, r) in records.iter_mut().enumerate() {
        r.seq = seq as u64;
        r.prev = prev;
        r.signature = key.sign(&r.hash()).unwrap();
        prev = r.hash();
    }
}
