//! Dataset commitment: a Merkle root over salted Poseidon2 leaves of the rows.
//!
//! Medical rows have low entropy, so every leaf carries two fresh field elements of salt
//! (128 bits) drawn from the operating system. Without the salts the commitment can never be
//! opened again: the owner persists them ([`salts_to_bytes`]) before it enrols.

use p3_field::{PrimeCharacteristicRing, PrimeField64};
use p3_goldilocks::Goldilocks;
use rand::Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error::ShapeError;
use crate::fixed::feature_in_range;
use crate::hash::{Digest, SALT_ELEMS, compress, leaf_hash};
use crate::sampling::SamplingKey;

/// Most rows a dataset may have (the tree is at most 32 levels deep).
pub const MAX_ROWS: u64 = 1 << 32;

/// What a participant publishes at enrolment; it never changes for the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetCommitment {
    /// Merkle root over the salted row leaves.
    pub root: [u64; 4],
    /// Number of rows committed.
    pub rows: u64,
}

impl DatasetCommitment {
    /// A row count the tree supports and a root whose limbs are canonical field elements
    /// (a limb at or above the modulus would be a second encoding of a smaller one).
    pub fn validate(&self) -> Result<(), ShapeError> {
        const MODULUS: u64 = 0xFFFF_FFFF_0000_0001;
        if let Some(limb) = self.root.iter().position(|&l| l >= MODULUS) {
            return Err(ShapeError::RootNotCanonical { limb });
        }
        if self.rows == 0 || self.rows > MAX_ROWS {
            return Err(ShapeError::Rows {
                got: self.rows,
                max: MAX_ROWS,
            });
        }
        Ok(())
    }

    /// The root as field elements.
    pub fn root_digest(&self) -> Digest {
        self.root.map(Goldilocks::from_u64)
    }

    /// Merkle depth for this row count (at least 2).
    pub fn depth(&self) -> usize {
        tree_depth(self.rows)
    }
}

/// Merkle depth for `rows` leaves: `max(2, ceil(log2 rows))`.
///
/// At least two levels, because the proof does each example's arithmetic on its first
/// two Merkle rows; tiny datasets simply get zero-digest padding leaves.
pub fn tree_depth(rows: u64) -> usize {
    (rows.max(4).next_power_of_two().trailing_zeros()) as usize
}

/// A dataset the owner has committed to: rows, their salts and the whole tree.
#[derive(Clone, Debug)]
pub struct CommittedDataset {
    features: Vec<Vec<i64>>,
    labels: Vec<u8>,
    salts: Vec<[Goldilocks; SALT_ELEMS]>,
    /// `levels[0]` are the leaves (padded with zero digests), the last level is the root.
    levels: Vec<Vec<Digest>>,
    /// The owner's hidden-sampling key, kept with the salts.
    sampling_key: Option<SamplingKey>,
}

/// A salt file that does not fit the dataset it should open.
#[derive(Debug, Error)]
#[allow(missing_docs)] // variant fields are named in their messages
pub enum SaltError {
    /// Bytes that do not decode.
    #[error("salt file is corrupt: {0}")]
    Corrupt(String),
    /// A salt file for a different number of rows.
    #[error("salt file holds {got} salts but the dataset has {expected} rows")]
    Count { expected: usize, got: usize },
}

impl CommittedDataset {
    /// Commits to rows with fresh salts from `rng` (pass an OS-seeded generator).
    pub fn commit<R: Rng>(
        features: Vec<Vec<i64>>,
        labels: Vec<u8>,
        rng: &mut R,
    ) -> Result<Self, ShapeError> {
        let salts = (0..features.len())
            .map(|_| [0; SALT_ELEMS].map(|_: u8| Goldilocks::from_u64(rng.next_u64())))
            .collect();
        Self::with_salts(features, labels, salts)
    }

    /// Rebuilds a commitment from persisted salts.
    ///
    /// Labels are committed as given; the logistic proof rejects any label but 0 or 1 (the
    /// CSV loader produces others only under a multi-class schema, which a logistic run
    /// refuses).
    pub fn with_salts(
        features: Vec<Vec<i64>>,
        labels: Vec<u8>,
        salts: Vec<[Goldilocks; SALT_ELEMS]>,
    ) -> Result<Self, ShapeError> {
        let rows = features.len() as u64;
        if rows == 0 || rows > MAX_ROWS {
            return Err(ShapeError::Rows {
                got: rows,
                max: MAX_ROWS,
            });
        }
        let d = features[0].len();
        for x in &features {
            if x.len() != d {
                return Err(ShapeError::RowWidth {
                    expected: d,
                    got: x.len(),
                });
            }
            if let Some(feature) = x.iter().position(|&v| !feature_in_range(v)) {
                return Err(ShapeError::FeatureOutOfRange { feature });
            }
        }
        for (what, got) in [("labels", labels.len()), ("salts", salts.len())] {
            if got != features.len() {
                return Err(ShapeError::Count {
                    what,
                    expected: features.len(),
                    got,
                });
            }
        }
        let depth = tree_depth(rows);
        let mut leaves = vec![[Goldilocks::ZERO; 4]; 1 << depth];
        for (i, leaf) in leaves.iter_mut().take(features.len()).enumerate() {
            *leaf = leaf_hash(&features[i], labels[i], &salts[i]);
        }
        let mut levels = vec![leaves];
        while levels.last().expect("non-empty").len() > 1 {
            let next = levels
                .last()
                .expect("non-empty")
                .chunks_exact(2)
                .map(|pair| compress(&pair[0], &pair[1]))
                .collect();
            levels.push(next);
        }
        Ok(Self {
            features,
            labels,
            salts,
            levels,
            sampling_key: None,
        })
    }

    /// The same dataset with the owner's hidden-sampling key, which proofs under hidden
    /// sampling need.
    pub fn with_sampling_key(self, key: SamplingKey) -> Self {
        Self {
            sampling_key: Some(key),
            ..self
        }
    }

    /// The owner's hidden-sampling key, if it has one.
    pub fn sampling_key(&self) -> Option<&SamplingKey> {
        self.sampling_key.as_ref()
    }

    /// The public commitment.
    pub fn commitment(&self) -> DatasetCommitment {
        let root = self.levels.last().expect("non-empty")[0];
        DatasetCommitment {
            root: root.map(|f| f.as_canonical_u64()),
            rows: self.features.len() as u64,
        }
    }

    /// Number of features per row.
    pub fn num_features(&self) -> usize {
        self.features[0].len()
    }

    /// One committed row: features, label and salt.
    pub fn row(&self, index: usize) -> (&[i64], u8, &[Goldilocks; SALT_ELEMS]) {
        (
            &self.features[index],
            self.labels[index],
            &self.salts[index],
        )
    }

    /// Sibling digests from the leaf at `index` up to (not including) the root.
    pub fn siblings(&self, index: usize) -> Vec<Digest> {
        let mut at = index;
        let mut path = Vec::with_capacity(self.levels.len() - 1);
        for level in &self.levels[..self.levels.len() - 1] {
            path.push(level[at ^ 1]);
            at >>= 1;
        }
        path
    }

    /// The salts, for the owner to persist.
    pub fn salts(&self) -> &[[Goldilocks; SALT_ELEMS]] {
        &self.salts
    }
}

/// Encodes salts for durable storage.
pub fn salts_to_bytes(salts: &[[Goldilocks; SALT_ELEMS]]) -> Vec<u8> {
    let raw: Vec<[u64; SALT_ELEMS]> = salts
        .iter()
        .map(|s| s.map(|f| f.as_canonical_u64()))
        .collect();
    postcard::to_allocvec(&raw).expect("serializing integers cannot fail")
}

/// Decodes salts written by [`salts_to_bytes`], checking they fit `rows` rows.
pub fn salts_from_bytes(
    bytes: &[u8],
    rows: usize,
) -> Result<Vec<[Goldilocks; SALT_ELEMS]>, SaltError> {
    let raw: Vec<[u64; SALT_ELEMS]> =
        postcard::from_bytes(bytes).map_err(|e| SaltError::Corrupt(e.to_string()))?;
    if raw.len() != rows {
        return Err(SaltError::Count {
            expected: rows,
            got: raw.len(),
        });
    }
    Ok(raw
        .into_iter()
        .map(|s| s.map(Goldilocks::from_u64))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn data(n: usize) -> (Vec<Vec<i64>>, Vec<u8>) {
        let f = (0..n).map(|i| vec![i as i64, -(i as i64), 3]).collect();
        let l = (0..n).map(|i| (i % 2) as u8).collect();
        (f, l)
    }

    #[test]
    fn salts_round_trip_reopens_the_same_root() {
        let (f, l) = data(5);
        let c =
            CommittedDataset::commit(f.clone(), l.clone(), &mut StdRng::seed_from_u64(1)).unwrap();
        let bytes = salts_to_bytes(c.salts());
        let salts = salts_from_bytes(&bytes, 5).unwrap();
        let again = CommittedDataset::with_salts(f, l, salts).unwrap();
        assert_eq!(c.commitment(), again.commitment());
        assert!(salts_from_bytes(&bytes, 6).is_err());
        assert!(salts_from_bytes(&bytes[..bytes.len() - 3], 5).is_err());
    }

    #[test]
    fn fresh_salts_give_fresh_roots() {
        let (f, l) = data(4);
        let a =
            CommittedDataset::commit(f.clone(), l.clone(), &mut StdRng::seed_from_u64(1)).unwrap();
        let b = CommittedDataset::commit(f, l, &mut StdRng::seed_from_u64(2)).unwrap();
        assert_ne!(a.commitment().root, b.commitment().root);
    }

    #[test]
    fn siblings_lead_to_the_root() {
        let (f, l) = data(7);
        let c = CommittedDataset::commit(f, l, &mut StdRng::seed_from_u64(3)).unwrap();
        for i in 0..7 {
            let (x, y, s) = c.row(i);
            let mut node = leaf_hash(x, y, s);
            for (level, sib) in c.siblings(i).iter().enumerate() {
                node = if (i >> level) & 1 == 0 {
                    compress(&node, sib)
                } else {
                    compress(sib, &node)
                };
            }
            assert_eq!(node, c.commitment().root_digest());
        }
    }

    #[test]
    fn mismatched_salts_and_labels_are_errors() {
        let (f, l) = data(3);
        let salts = vec![[Goldilocks::ONE; SALT_ELEMS]; 2];
        let err = CommittedDataset::with_salts(f.clone(), l, salts).unwrap_err();
        assert_eq!(
            err,
            ShapeError::Count {
                what: "salts",
                expected: 3,
                got: 2
            }
        );
        let err = CommittedDataset::commit(f, vec![0], &mut StdRng::seed_from_u64(1)).unwrap_err();
        assert_eq!(
            err,
            ShapeError::Count {
                what: "labels",
                expected: 3,
                got: 1
            }
        );
    }

    #[test]
    fn depth_is_at_least_two() {
        assert_eq!(tree_depth(1), 2);
        assert_eq!(tree_depth(4), 2);
        assert_eq!(tree_depth(5), 3);
        assert_eq!(tree_depth(569), 10);
    }
}
