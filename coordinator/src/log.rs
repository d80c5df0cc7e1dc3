//! The append-only, hash-chained, signed audit log in an embedded transactional store.
//!
//! Record `n` carries `prev = H(record n-1)` and the coordinator's signature over
//! `H(record n) = SHA-256("zkfed/audit/v2" || n || prev || event)`. The store records the
//! format it was written in ([`LOG_FORMAT`]); a store of another format is refused with a
//! clear error, never decoded by guesswork. A record and the proof it
//! accepts are written in one redb transaction with immediate durability, so after a crash
//! (kill -9 included) the log holds exactly the events whose outcome anyone was told.

use std::path::Path;

use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::events::AuditEvent;

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("audit_records");
const PROOFS: TableDefinition<(u64, u32, &[u8]), &[u8]> = TableDefinition::new("accepted_proofs");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "log_format";

/// Encoding of the records and their hash. Bumped on any change to [`AuditEvent`]'s
/// encoding: 2 carries typed rejections (`zkfed_protocol::Rejection`); 3 round attempts
/// (proofs stored under `(round, attempt, peer)`, discarded verifications); 4 revocations
/// (`AuditEvent::Revoked`, `Rejection::Revoked`); 5 multi-table proofs (`PROTOCOL_VERSION`
/// 3: a store of older proofs cannot be re-verified); 6 Keccak-committed proofs
/// (`PROTOCOL_VERSION` 4); 7 proofs with 23 queries (`PROTOCOL_VERSION` 5),
/// model specs and flat parameter vectors (`Model`, `ClippedGradientSum`, `RunParameters`);
/// 8 aggregation strategies (`RunParameters::strategy`, the server state in
/// `AuditEvent::Aggregated`, `Enrolment::parameters`); 9 privacy (hidden-sampling proofs,
/// `PROTOCOL_VERSION` 6, `RunParameters::privacy`, `RunConfig::noise_key_commitment`,
/// `Enrolment::sampling_key`, `Aggregated::privacy`, `AuditEvent::BudgetSpent`); 10 noise
/// seeds that read the un-noised sum's digest (a format-9 store's private aggregates would
/// not recompute); stores from before formats were recorded have no format and are refused.
pub const LOG_FORMAT: u64 = 10;

/// Most bytes one encoded record may hold. The largest the coordinator writes is a run's
/// first record or an aggregate: a model within the wire's parameters, its server state
/// and the allow-list, well under this. A store is untrusted input to an auditor, so a
/// longer record is refused before it is decoded, and one is never written.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// One signed entry of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 0.
    pub seq: u64,
    /// Hash of the previous record (zeros for the first).
    pub prev: [u8; 32],
    /// What happened.
    pub event: AuditEvent,
    /// The coordinator's signature over [`AuditRecord::hash`].
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl AuditRecord {
    /// The hash that chains and is signed.
    pub fn hash(&self) -> [u8; 32] {
        record_hash(self.seq, &self.prev, &self.event)
    }

    /// Whether `key` signed this record.
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        key.verify(&self.hash(), &self.signature)
    }
}

fn record_hash(seq: u64, prev: &[u8; 32], event: &AuditEvent) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"zkfed/audit/v2");
    h.update(seq.to_le_bytes());
    h.update(prev);
    h.update(postcard::to_allocvec(event).expect("serializing plain data cannot fail"));
    h.finalize().into()
}

/// A failure of the store.
#[derive(Debug, Error)]
pub enum LogError {
    /// The database failed.
    #[error("state store: {0}")]
    Store(#[from] redb::Error),
    /// A second proof for the same round, attempt and peer: a stored proof is never
    /// overwritten.
    #[error("a proof for round {round} attempt {attempt} of this peer is already stored")]
    ProofExists {
        /// The round.
        round: u64,
        /// The attempt.
        attempt: u32,
    },
    /// A store written in another log format (`None`: one from before formats were kept).
    #[error(
        "the state store holds audit-log format {}, this build reads format {expected}; \
         audit it with the zkfed release that wrote it",
        found.map_or("unrecorded (an older release)".to_string(), |f| f.to_string())
    )]
    Format {
        /// The store's format.
        found: Option<u64>,
        /// This build's format.
        expected: u64,
    },
    /// A record longer than [`MAX_RECORD_BYTES`], refused before it is written.
    #[error(
        "audit record {seq} would take {bytes} bytes, more than a record may ({MAX_RECORD_BYTES})"
    )]
    RecordTooLarge {
        /// The record.
        seq: u64,
        /// Its encoded length.
        bytes: usize,
    },
    /// A stored proof longer than any proof the coordinator accepts.
    #[error(
        "the stored proof of round {round} attempt {attempt} holds {bytes} bytes, more than a \
         proof may ({})",
        zkfed_air::proof::MAX_PROOF_BYTES
    )]
    ProofTooLarge {
        /// The round.
        round: u64,
        /// The attempt.
        attempt: u32,
        /// Its length.
        bytes: usize,
    },
    /// A stored record that does not decode.
    #[error("audit record {seq} is corrupt: {message}")]
    Corrupt {
        /// The record.
        seq: u64,
        /// The decoder's complaint.
        message: String,
    },
}

macro_rules! store_err {
    ($($t:ty),*) => {$(impl From<$t> for LogError {
        fn from(e: $t) -> Self { LogError::Store(e.into()) }
    })*};
}
store_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// redb's page cache (its default is 1 GiB): the log is appended and rarely read back, and
/// every round's proofs pass through it, so a large cache only holds the coordinator's
/// memory high in long runs.
const CACHE_BYTES: usize = 32 << 20;

/// The log, open for appending.
pub struct AuditLog {
    db: Database,
    key: Keypair,
    next_seq: u64,
    last_hash: [u8; 32],
}

impl AuditLog {
    /// Opens (or creates) the log at `path`; its records are read with
    /// [`AuditLog::for_each_record`].
    pub fn open(path: &Path, key: Keypair) -> Result<Self, LogError> {
        create_private(path).map_err(|e| LogError::Store(e.into()))?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let txn = db.begin_write()?;
        {
            let records = txn.open_table(RECORDS)?;
            txn.open_table(PROOFS)?;
            let mut meta = txn.open_table(META)?;
            let fresh = records.is_empty()? && meta.get(FORMAT_KEY)?.is_none();
            if fresh {
                meta.insert(FORMAT_KEY, LOG_FORMAT)?;
            }
        }
        txn.commit()?;
        check_format(&db)?;
        let (next_seq, last_hash) = match last_record(&db)? {
            Some(r) => (r.seq + 1, r.hash()),
            None => (0, [0; 32]),
        };
        Ok(Self {
            db,
            key,
            next_seq,
            last_hash,
        })
    }

    /// Hands every record to `fold`, in order, one at a time: a restart holds the state the
    /// log folds into, never the whole log.
    pub fn for_each_record<E: From<LogError>>(
        &self,
        fold: impl FnMut(AuditRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        for_each_record(&self.db, fold)
    }

    /// Appends one event (and the proof it accepts) durably; returns the signed record.
    pub fn append(
        &mut self,
        event: AuditEvent,
        proof: Option<(u64, u32, &PeerId, &[u8])>,
    ) -> Result<AuditRecord, LogError> {
        let seq = self.next_seq;
        let hash = record_hash(seq, &self.last_hash, &event);
        let signature = self.key.sign(&hash).expect("ed25519 signing cannot fail");
        let record = AuditRecord {
            seq,
            prev: self.last_hash,
            event,
            signature,
        };
        let bytes = postcard::to_allocvec(&record).expect("serializing plain data cannot fail");
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(LogError::RecordTooLarge {
                seq,
                bytes: bytes.len(),
            });
        }
        let txn = self.db.begin_write()?;
        {
            let mut records = txn.open_table(RECORDS)?;
            records.insert(seq, bytes.as_slice())?;
            if let Some((round, attempt, peer, proof)) = proof {
                let mut proofs = txn.open_table(PROOFS)?;
                let peer = peer.to_bytes();
                if proofs.get((round, attempt, peer.as_slice()))?.is_some() {
                    return Err(LogError::ProofExists { round, attempt });
                }
                proofs.insert((round, attempt, peer.as_slice()), proof)?;
            }
        }
        txn.commit()?;
        self.next_seq = seq + 1;
        self.last_hash = hash;
        Ok(record)
    }

    /// The stored proof of an accepted submission.
    pub fn proof(
        &self,
        round: u64,
        attempt: u32,
        peer: &PeerId,
    ) -> Result<Option<Vec<u8>>, LogError> {
        read_proof(&self.db, round, attempt, peer)
    }
}

/// Creates the store file readable by its owner only, before redb writes anything to it
/// (redb would create it with the process's default mode): it holds every accepted update
/// and proof. A store an earlier release created is made private too.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        options
            .open(path)?
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    options.open(path)?;
    Ok(())
}

/// A log opened read-only, for offline audits.
pub struct StoredLog {
    db: redb::ReadOnlyDatabase,
}

impl StoredLog {
    /// Opens the store at `path` without writing to it.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        // The coordinator's cache bound, not redb's default of 1 GiB: redb keeps the pages
        // it reads cached, so an audit streaming a large store would otherwise grow to it.
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .open_read_only(path)?;
        check_format(&db)?;
        Ok(Self { db })
    }

    /// Every record, in order (the whole log in memory: tests and small tools; an audit
    /// reads it with [`Self::for_each_record`]).
    pub fn records(&self) -> Result<Vec<AuditRecord>, LogError> {
        read_records(&self.db)
    }

    /// Hands every record to `fold`, in order, one at a time: an audit of a store of any
    /// length holds the state the log folds into, never the whole log.
    pub fn for_each_record<E: From<LogError>>(
        &self,
        fold: impl FnMut(AuditRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        for_each_record(&self.db, fold)
    }

    /// The stored proof of an accepted submission.
    pub fn proof(
        &self,
        round: u64,
        attempt: u32,
        peer: &PeerId,
    ) -> Result<Option<Vec<u8>>, LogError> {
        read_proof(&self.db, round, attempt, peer)
    }
}

/// Refuses a store written in another format before any record is decoded.
fn check_format(db: &impl ReadableDatabase) -> Result<(), LogError> {
    let txn = db.begin_read()?;
    let found = match txn.open_table(META) {
        Ok(meta) => meta.get(FORMAT_KEY)?.map(|v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if found == Some(LOG_FORMAT) {
        return Ok(());
    }
    Err(LogError::Format {
        found,
        expected: LOG_FORMAT,
    })
}

fn read_records(db: &impl ReadableDatabase) -> Result<Vec<AuditRecord>, LogError> {
    let mut records = Vec::new();
    for_each_record(db, |record| {
        records.push(record);
        Ok::<_, LogError>(())
    })?;
    Ok(records)
}

fn for_each_record<E: From<LogError>>(
    db: &impl ReadableDatabase,
    mut fold: impl FnMut(AuditRecord) -> Result<(), E>,
) -> Result<(), E> {
    let txn = db.begin_read().map_err(LogError::from)?;
    let table = txn.open_table(RECORDS).map_err(LogError::from)?;
    for entry in table.iter().map_err(LogError::from)? {
        let (seq, bytes) = entry.map_err(LogError::from)?;
        fold(decode_record(seq.value(), bytes.value())?)?;
    }
    Ok(())
}

fn last_record(db: &impl ReadableDatabase) -> Result<Option<AuditRecord>, LogError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(RECORDS)?;
    match table.last()? {
        Some((seq, bytes)) => Ok(Some(decode_record(seq.value(), bytes.value())?)),
        None => Ok(None),
    }
}

fn decode_record(seq: u64, bytes: &[u8]) -> Result<AuditRecord, LogError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(LogError::Corrupt {
            seq,
            message: format!(
                "{} bytes, more than a record may hold ({MAX_RECORD_BYTES})",
                bytes.len()
            ),
        });
    }
    postcard::from_bytes(bytes).map_err(|e| LogError::Corrupt {
        seq,
        message: e.to_string(),
    })
}

fn read_proof(
    db: &impl ReadableDatabase,
    round: u64,
    attempt: u32,
    peer: &PeerId,
) -> Result<Option<Vec<u8>>, LogError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(PROOFS)?;
    let key = peer.to_bytes();
    let Some(stored) = table.get((round, attempt, key.as_slice()))? else {
        return Ok(None);
    };
    let bytes = stored.value();
    if bytes.len() > zkfed_air::proof::MAX_PROOF_BYTES {
        return Err(LogError::ProofTooLarge {
            round,
            attempt,
            bytes: bytes.len(),
        });
    }
    Ok(Some(bytes.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::AuditEvent;

    fn event(round: u64) -> AuditEvent {
        AuditEvent::Abandoned {
            round,
            attempt: 1,
            at_ms: 0,
            reason: "test".into(),
        }
    }

    #[test]
    fn records_chain_sign_and_survive_reopening() {
        let dir = tempdir();
        let path = dir.join("state.redb");
        let key = Keypair::generate_ed25519();
        let peer = Keypair::generate_ed25519().public().to_peer_id();
        {
            let mut log = AuditLog::open(&path, key.clone()).unwrap();
            assert!(read_records(&log.db).unwrap().is_empty());
            log.append(event(1), None).unwrap();
            log.append(event(2), Some((2, 1, &peer, b"proof"))).unwrap();
        }
        let mut log = AuditLog::open(&path, key.clone()).unwrap();
        let records = read_records(&log.db).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].prev, records[0].hash());
        assert!(records.iter().all(|r| r.signed_by(&key.public())));
        assert_eq!(
            log.proof(2, 1, &peer).unwrap().as_deref(),
            Some(&b"proof"[..])
        );
        let again = log.append(event(4), Some((2, 1, &peer, b"other")));
        assert!(matches!(
            again,
            Err(LogError::ProofExists {
                round: 2,
                attempt: 1
            })
        ));
        assert_eq!(log.proof(2, 2, &peer).unwrap(), None);
        let third = log.append(event(3), None).unwrap();
        assert_eq!((third.seq, third.prev), (2, records[1].hash()));
        drop(log);
        let stored = StoredLog::open(&path).unwrap();
        assert_eq!(stored.records().unwrap().len(), 3);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_store_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir();
        let path = dir.join("state.redb");
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let mut log = AuditLog::open(&path, Keypair::generate_ed25519()).unwrap();
        assert_eq!(mode(&path), 0o600);
        log.append(event(1), None).unwrap();
        drop(log);
        assert_eq!(mode(&path), 0o600);
        // A store an earlier release left readable by others is made private when reopened.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let log = AuditLog::open(&path, Keypair::generate_ed25519()).unwrap();
        assert_eq!(mode(&path), 0o600);
        drop(log);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_store_of_another_format_is_refused_with_a_clear_error() {
        let dir = tempdir();
        let path = dir.join("state.redb");
        let key = Keypair::generate_ed25519();
        let mut log = AuditLog::open(&path, key.clone()).unwrap();
        log.append(event(1), None).unwrap();
        drop(log);
        // As an older release left it: records and no format.
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(META).unwrap();
        txn.commit().unwrap();
        drop(db);
        let unrecorded = LogError::Format {
            found: None,
            expected: LOG_FORMAT,
        };
        let err = AuditLog::open(&path, key.clone()).err().unwrap();
        assert_eq!(err.to_string(), unrecorded.to_string());
        assert!(err.to_string().contains("older release"), "{err}");
        let err = StoredLog::open(&path).err().unwrap();
        assert_eq!(err.to_string(), unrecorded.to_string());
        // A newer format.
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(FORMAT_KEY, LOG_FORMAT + 1)
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        let err = AuditLog::open(&path, key).err().unwrap();
        assert!(matches!(err, LogError::Format { found: Some(f), .. } if f == LOG_FORMAT + 1));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A store is untrusted input to an auditor: a record longer than any the coordinator
    /// writes is refused before it is decoded, one is never written, and a stored proof
    /// longer than any accepted one is refused before it is copied.
    #[test]
    fn oversized_records_and_proofs_are_refused() {
        let dir = tempdir();
        let path = dir.join("state.redb");
        let key = Keypair::generate_ed25519();
        let peer = Keypair::generate_ed25519().public().to_peer_id();
        let mut log = AuditLog::open(&path, key).unwrap();
        log.append(event(1), None).unwrap();
        let long = AuditEvent::Abandoned {
            round: 2,
            attempt: 1,
            at_ms: 0,
            reason: "x".repeat(MAX_RECORD_BYTES),
        };
        let err = log.append(long, None).unwrap_err();
        assert!(
            matches!(err, LogError::RecordTooLarge { seq: 1, .. }),
            "{err}"
        );
        let proof = vec![0u8; zkfed_air::proof::MAX_PROOF_BYTES + 1];
        log.append(event(2), Some((2, 1, &peer, &proof))).unwrap();
        let err = log.proof(2, 1, &peer).unwrap_err();
        assert!(
            matches!(err, LogError::ProofTooLarge { round: 2, attempt: 1, bytes } if bytes == proof.len()),
            "{err}"
        );
        drop(log);
        // A record written behind the coordinator's back, one byte over the bound.
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let oversized = vec![0u8; MAX_RECORD_BYTES + 1];
        txn.open_table(RECORDS)
            .unwrap()
            .insert(2, oversized.as_slice())
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        let stored = StoredLog::open(&path).unwrap();
        let mut seen = Vec::new();
        let err = stored
            .for_each_record(|r| {
                seen.push(r.seq);
                Ok::<_, LogError>(())
            })
            .unwrap_err();
        assert_eq!(seen, [0, 1], "the records before it are read one at a time");
        let message = err.to_string();
        assert!(
            matches!(err, LogError::Corrupt { seq: 2, .. })
                && message.contains("more than a record may hold"),
            "{message}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A fresh directory under the system temp dir.
    pub(crate) fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "zkfed-log-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
