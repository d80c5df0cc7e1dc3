//! Batch selection from the public round seed, so a participant cannot choose which of its
//! committed rows a round uses. (What it committed is its own choice: a dataset of copies
//! of one row is a valid commitment; the commitment binds the data, it does not vouch for it.)
//!
//! Index `i` of the stream is the first 8 bytes (little endian) of
//! `SHA-256("zkfed/batch/v1" || seed || participant || counter)`, reduced by rejection
//! sampling to `[0, rows)`; repeats are skipped, so a batch holds distinct rows.

use sha2::{Digest as _, Sha256};

use crate::error::ShapeError;

const DOMAIN: &[u8] = b"zkfed/batch/v1";

/// The batch indices a participant must use in a round.
pub fn batch_indices(
    seed: &[u8; 32],
    participant: &[u8; 32],
    rows: u64,
    batch: usize,
) -> Result<Vec<u64>, ShapeError> {
    if rows == 0 {
        return Err(ShapeError::Rows {
            got: rows,
            max: crate::commitment::MAX_ROWS,
        });
    }
    if batch as u64 > rows {
        return Err(ShapeError::BatchLargerThanDataset { batch, rows });
    }
    // Largest multiple of `rows` that fits in u64: draws at or above it would bias the result.
    let zone = u64::MAX - (u64::MAX % rows);
    let mut chosen = std::collections::BTreeSet::new();
    let mut indices = Vec::with_capacity(batch);
    let mut counter: u64 = 0;
    while indices.len() < batch {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(seed);
        h.update(participant);
        h.update(counter.to_le_bytes());
        counter += 1;
        let out = h.finalize();
        let draw = u64::from_le_bytes(out[..8].try_into().expect("8 bytes"));
        if draw >= zone {
            continue;
        }
        let index = draw % rows;
        if chosen.insert(index) {
            indices.push(index);
        }
    }
    Ok(indices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_distinct_in_range_and_seed_dependent() {
        let a = batch_indices(&[1; 32], &[2; 32], 100, 64).unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.iter().all(|&i| i < 100));
        let set: std::collections::BTreeSet<_> = a.iter().collect();
        assert_eq!(set.len(), 64);
        assert_eq!(a, batch_indices(&[1; 32], &[2; 32], 100, 64).unwrap());
        assert_ne!(a, batch_indices(&[3; 32], &[2; 32], 100, 64).unwrap());
        assert_ne!(a, batch_indices(&[1; 32], &[4; 32], 100, 64).unwrap());
    }

    #[test]
    fn whole_dataset_batches_and_oversized_batches() {
        let mut all = batch_indices(&[0; 32], &[0; 32], 5, 5).unwrap();
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4]);
        assert!(batch_indices(&[0; 32], &[0; 32], 5, 6).is_err());
        assert!(batch_indices(&[0; 32], &[0; 32], 0, 1).is_err());
    }
}
