//! Hiding Merkle commitments with one salt per leaf hash instead of one per matrix.
//!
//! A Merkle tree over several matrices hashes, at each leaf (and at each layer where
//! shorter matrices are injected), the rows of every matrix of that height together.
//! Plonky3's `MerkleTreeHidingMmcs` appends salt columns to *every* matrix, so a
//! commitment of 36 quotient chunks of one height carries 36 salts per opened leaf, all
//! hashed into the same digest. One salt per hashed group hides that digest just as well:
//! here the first matrix of each height (in commitment order) carries `SALT_ELEMS` fresh
//! random columns and the others carry none. ARCHITECTURE.md ("STARK configuration and
//! security") records what this saves.
//!
//! Which matrices carry a salt is a function of the matrix heights alone
//! ([`salt_carriers`]), so the verifier derives it from the dimensions it already pins and
//! takes nothing about it from the proof; every opened row and every salt must have
//! exactly its expected length, so no element can move between a row and its salt.

use std::sync::Mutex;

use p3_commit::{BatchOpening, BatchOpeningRef, Mmcs};
use p3_matrix::stack::HorizontalPair;
use p3_matrix::{Dimensions, Matrix};
use p3_merkle_tree::{MerkleCap, MerkleTree, MerkleTreeError, MerkleTreeMmcs, PrunedMerklePaths};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::config::{Compress, DIGEST_BYTES, LeafHash, Val};

/// Salt elements per salted leaf group (2 × 64 bits).
pub const SALT_ELEMS: usize = 2;

type InnerMmcs = MerkleTreeMmcs<Val, u8, LeafHash, Compress, 2, DIGEST_BYTES>;
type Digest = [u8; DIGEST_BYTES];

/// For each matrix, in order, whether it carries the salt of its height: the first
/// matrix of every distinct height does.
pub fn salt_carriers(heights: impl IntoIterator<Item = usize>) -> Vec<bool> {
    let mut seen = Vec::new();
    heights
        .into_iter()
        .map(|height| {
            let first = !seen.contains(&height);
            if first {
                seen.push(height);
            }
            first
        })
        .collect()
}

/// The salt columns appended to one committed matrix: `SALT_ELEMS` random columns for a
/// carrier, none otherwise. Its height is explicit so an empty salt still matches its
/// matrix's height.
#[derive(Clone, Debug)]
pub struct SaltColumns {
    values: Vec<Val>,
    width: usize,
    height: usize,
}

impl SaltColumns {
    fn random(rng: &mut StdRng, height: usize, width: usize) -> Self {
        let values = (0..height * width).map(|_| rng.random()).collect();
        Self {
            values,
            width,
            height,
        }
    }
}

impl Matrix<Val> for SaltColumns {
    fn width(&self) -> usize {
        self.width
    }

    fn height(&self) -> usize {
        self.height
    }

    unsafe fn get_unchecked(&self, r: usize, c: usize) -> Val {
        self.values[r * self.width + c]
    }

    unsafe fn row_unchecked(
        &self,
        r: usize,
    ) -> impl IntoIterator<Item = Val, IntoIter = impl Iterator<Item = Val> + Send + Sync> {
        self.values[r * self.width..(r + 1) * self.width]
            .iter()
            .copied()
    }
}

/// The hiding Merkle commitment scheme of [`crate::config::ZkConfig`].
#[derive(Debug)]
pub struct LeafSaltedMmcs {
    inner: InnerMmcs,
    rng: Mutex<StdRng>,
}

impl LeafSaltedMmcs {
    /// A scheme over `inner` whose salts come from `rng` (which must be seeded from the
    /// operating system: predictable salts hide nothing).
    pub fn new(hash: LeafHash, compress: Compress, cap_height: usize, rng: StdRng) -> Self {
        Self {
            inner: InnerMmcs::new(hash, compress, cap_height),
            rng: Mutex::new(rng),
        }
    }

    fn rng(&self) -> std::sync::MutexGuard<'_, StdRng> {
        // A poisoned lock only means another thread panicked mid-draw; the generator's
        // state is still a valid stream.
        self.rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clone for LeafSaltedMmcs {
    /// The clone draws its own seed, so the two never produce the same salts.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            rng: Mutex::new(StdRng::from_rng(&mut *self.rng())),
        }
    }
}

/// Splits every opened salted row into the row and its salt (dropping the empty salts of
/// non-carriers), given each matrix's salt width.
fn split_salts(
    salted_rows: Vec<Vec<Val>>,
    salt_widths: &[usize],
) -> (Vec<Vec<Val>>, Vec<Vec<Val>>) {
    let mut rows = Vec::with_capacity(salted_rows.len());
    let mut salts = Vec::new();
    for (mut row, &width) in salted_rows.into_iter().zip(salt_widths) {
        let salt = row.split_off(row.len() - width);
        if width > 0 {
            salts.push(salt);
        }
        rows.push(row);
    }
    (rows, salts)
}

/// The dimensions the inner tree committed to: each carrier widened by its salt.
fn salted_dimensions(dimensions: &[Dimensions]) -> Vec<Dimensions> {
    let carriers = salt_carriers(dimensions.iter().map(|d| d.height));
    dimensions
        .iter()
        .zip(carriers)
        .map(|(dims, carrier)| Dimensions {
            width: dims.width + if carrier { SALT_ELEMS } else { 0 },
            height: dims.height,
        })
        .collect()
}

/// Re-attaches the salts to the carriers' rows, checking every row against its matrix
/// width and every salt against `SALT_ELEMS`: the rows the inner tree committed to.
fn attach_salts<R: AsRef<[Val]>>(
    dimensions: &[Dimensions],
    rows: &[R],
    salts: &[Vec<Val>],
) -> Result<Vec<Vec<Val>>, MerkleTreeError> {
    if rows.len() != dimensions.len() {
        return Err(MerkleTreeError::WrongBatchSize {
            expected: dimensions.len(),
            got: rows.len(),
        });
    }
    let carriers = salt_carriers(dimensions.iter().map(|d| d.height));
    let expected_salts = carriers.iter().filter(|&&c| c).count();
    if salts.len() != expected_salts {
        return Err(MerkleTreeError::WrongBatchSize {
            expected: expected_salts,
            got: salts.len(),
        });
    }
    let mut salts = salts.iter();
    let mut salted_rows = Vec::with_capacity(rows.len());
    for (matrix, ((dims, row), carrier)) in dimensions.iter().zip(rows).zip(carriers).enumerate() {
        let row = row.as_ref();
        if row.len() != dims.width {
            return Err(MerkleTreeError::WrongWidth {
                matrix,
                expected: dims.width,
                got: row.len(),
            });
        }
        let mut salted = row.to_vec();
        if carrier {
            let salt = salts.next().expect("salt count checked above");
            if salt.len() != SALT_ELEMS {
                return Err(MerkleTreeError::WrongWidth {
                    matrix,
                    expected: dims.width + SALT_ELEMS,
                    got: dims.width + salt.len(),
                });
            }
            salted.extend_from_slice(salt);
        }
        salted_rows.push(salted);
    }
    Ok(salted_rows)
}

impl Mmcs<Val> for LeafSaltedMmcs {
    type ProverData<M> = MerkleTree<Val, u8, HorizontalPair<M, SaltColumns>, 2, DIGEST_BYTES>;
    type Commitment = MerkleCap<Val, Digest>;
    /// The carriers' salts, in matrix order, and the authentication path.
    type Proof = (Vec<Vec<Val>>, Vec<Digest>);
    /// Per query, the carriers' salts in matrix order; and the shared pruned paths.
    type MultiProof = (Vec<Vec<Vec<Val>>>, PrunedMerklePaths<u8, DIGEST_BYTES>);
    type Error = MerkleTreeError;

    fn commit<M: Matrix<Val>>(&self, inputs: Vec<M>) -> (Self::Commitment, Self::ProverData<M>) {
        let carriers = salt_carriers(inputs.iter().map(Matrix::height));
        let mut rng = self.rng();
        let salted = inputs
            .into_iter()
            .zip(carriers)
            .map(|(matrix, carrier)| {
                let width = if carrier { SALT_ELEMS } else { 0 };
                let salt = SaltColumns::random(&mut rng, matrix.height(), width);
                HorizontalPair::new(matrix, salt)
            })
            .collect();
        drop(rng);
        self.inner.commit(salted)
    }

    fn open_batch<M: Matrix<Val>>(
        &self,
        index: usize,
        prover_data: &Self::ProverData<M>,
    ) -> BatchOpening<Val, Self> {
        let salt_widths = salt_widths(&self.inner, prover_data);
        let (salted_rows, siblings) = self.inner.open_batch(index, prover_data).unpack();
        let (rows, salts) = split_salts(salted_rows, &salt_widths);
        BatchOpening::new(rows, (salts, siblings))
    }

    fn get_matrices<'a, M: Matrix<Val>>(&self, prover_data: &'a Self::ProverData<M>) -> Vec<&'a M> {
        self.inner
            .get_matrices(prover_data)
            .into_iter()
            .map(|pair| &pair.left)
            .collect()
    }

    fn verify_batch(
        &self,
        commit: &Self::Commitment,
        dimensions: &[Dimensions],
        index: usize,
        batch_opening: BatchOpeningRef<'_, Val, Self>,
    ) -> Result<(), Self::Error> {
        let (rows, (salts, siblings)) = batch_opening.unpack();
        let salted_rows = attach_salts(dimensions, rows, salts)?;
        self.inner.verify_batch(
            commit,
            &salted_dimensions(dimensions),
            index,
            BatchOpeningRef::new(&salted_rows, siblings),
        )
    }

    fn open_multi_batch<M: Matrix<Val>>(
        &self,
        indices: &[usize],
        prover_data: &Self::ProverData<M>,
    ) -> (Vec<Vec<Vec<Val>>>, Self::MultiProof) {
        let salt_widths = salt_widths(&self.inner, prover_data);
        let (salted, pruned) = self.inner.open_multi_batch(indices, prover_data);
        let (rows, salts) = salted
            .into_iter()
            .map(|salted_rows| split_salts(salted_rows, &salt_widths))
            .unzip();
        (rows, (salts, pruned))
    }

    fn verify_multi_batch<R: AsRef<[Val]> + PartialEq>(
        &self,
        commit: &Self::Commitment,
        dimensions: &[Dimensions],
        indices: &[usize],
        opened_values: &[Vec<R>],
        proof: &Self::MultiProof,
    ) -> Result<(), Self::Error> {
        let (salts, pruned) = proof;
        if salts.len() != opened_values.len() {
            return Err(MerkleTreeError::WrongBatchSize {
                expected: opened_values.len(),
                got: salts.len(),
            });
        }
        let salted_values = opened_values
            .iter()
            .zip(salts)
            .map(|(rows, salts_at_index)| attach_salts(dimensions, rows, salts_at_index))
            .collect::<Result<Vec<_>, _>>()?;
        self.inner.verify_multi_batch(
            commit,
            &salted_dimensions(dimensions),
            indices,
            &salted_values,
            pruned,
        )
    }
}

/// Each committed matrix's salt width, read from the prover data.
fn salt_widths<M: Matrix<Val>>(
    inner: &InnerMmcs,
    prover_data: &MerkleTree<Val, u8, HorizontalPair<M, SaltColumns>, 2, DIGEST_BYTES>,
) -> Vec<usize> {
    inner
        .get_matrices(prover_data)
        .into_iter()
        .map(|pair| pair.right.width())
        .collect()
}

#[cfg(test)]
mod tests {
    use p3_field::PrimeCharacteristicRing;
    use p3_keccak::Keccak256Hash;
    use p3_matrix::dense::RowMajorMatrix;

    use super::*;

    fn mmcs() -> LeafSaltedMmcs {
        LeafSaltedMmcs::new(
            LeafHash::new(Keccak256Hash),
            Compress::new(Keccak256Hash),
            0,
            rand::make_rng::<StdRng>(),
        )
    }

    /// Matrices of heights 16, 8, 16, 4, 8 and widths 3, 2, 1, 5, 4, filled with
    /// distinct values.
    fn matrices() -> Vec<RowMajorMatrix<Val>> {
        [(16, 3), (8, 2), (16, 1), (4, 5), (8, 4)]
            .iter()
            .enumerate()
            .map(|(m, &(height, width))| {
                let values = (0..height * width)
                    .map(|i| Val::from_usize(1000 * m + i))
                    .collect();
                RowMajorMatrix::new(values, width)
            })
            .collect()
    }

    fn dimensions() -> Vec<Dimensions> {
        matrices().iter().map(Matrix::dimensions).collect()
    }

    const QUERIES: [usize; 3] = [0, 5, 13];

    #[test]
    fn the_first_matrix_of_each_height_carries_the_salt() {
        assert_eq!(
            salt_carriers([16, 8, 16, 4, 8]),
            vec![true, true, false, true, false]
        );
        assert_eq!(salt_carriers([]), Vec::<bool>::new());
    }

    #[test]
    fn multi_openings_verify_and_carry_one_salt_per_height() {
        let mmcs = mmcs();
        let (commit, data) = mmcs.commit(matrices());
        let (rows, proof) = mmcs.open_multi_batch(&QUERIES, &data);
        for (q, rows_at_query) in rows.iter().enumerate() {
            let widths: Vec<usize> = rows_at_query.iter().map(Vec::len).collect();
            assert_eq!(widths, vec![3, 2, 1, 5, 4]);
            assert_eq!(proof.0[q].len(), 3, "one salt per distinct height");
            assert!(proof.0[q].iter().all(|salt| salt.len() == SALT_ELEMS));
        }
        mmcs.verify_multi_batch(&commit, &dimensions(), &QUERIES, &rows, &proof)
            .expect("honest openings verify");
    }

    #[test]
    fn heights_that_are_not_powers_of_two_each_get_a_salt() {
        let mmcs = mmcs();
        let matrices: Vec<RowMajorMatrix<Val>> = [7, 4, 4, 2, 1]
            .iter()
            .map(|&height| RowMajorMatrix::new(vec![Val::from_usize(height); 2 * height], 2))
            .collect();
        let dims: Vec<Dimensions> = matrices.iter().map(Matrix::dimensions).collect();
        let (commit, data) = mmcs.commit(matrices);
        let queries = [0, 3, 6];
        let (rows, proof) = mmcs.open_multi_batch(&queries, &data);
        assert!(proof.0.iter().all(|salts| salts.len() == 4));
        mmcs.verify_multi_batch(&commit, &dims, &queries, &rows, &proof)
            .expect("honest openings verify");
    }

    #[test]
    fn single_openings_verify() {
        let mmcs = mmcs();
        let (commit, data) = mmcs.commit(matrices());
        let opening = mmcs.open_batch(9, &data);
        mmcs.verify_batch(&commit, &dimensions(), 9, (&opening).into())
            .expect("honest opening verifies");
        let mut tampered = opening.clone();
        tampered.opening_proof.0[1][0] += Val::ONE;
        assert!(
            mmcs.verify_batch(&commit, &dimensions(), 9, (&tampered).into())
                .is_err()
        );
    }

    #[test]
    fn the_same_matrices_commit_to_different_roots() {
        let mmcs = mmcs();
        let (a, _) = mmcs.commit(matrices());
        let (b, _) = mmcs.commit(matrices());
        let (c, _) = mmcs.clone().commit(matrices());
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn tampered_openings_are_rejected() {
        let mmcs = mmcs();
        let (commit, data) = mmcs.commit(matrices());
        let (rows, proof) = mmcs.open_multi_batch(&QUERIES, &data);
        let dims = dimensions();
        let rejected = |rows: &[Vec<Vec<Val>>],
                        proof: &<LeafSaltedMmcs as Mmcs<Val>>::MultiProof| {
            mmcs.verify_multi_batch(&commit, &dims, &QUERIES, rows, proof)
                .is_err()
        };

        // A value of a matrix that carries no salt, and one that does.
        for matrix in [2, 4, 0] {
            let mut bad = rows.clone();
            bad[1][matrix][0] += Val::ONE;
            assert!(rejected(&bad, &proof), "matrix {matrix}");
        }
        // A salt changed.
        let mut bad = proof.clone();
        bad.0[2][1][1] += Val::ONE;
        assert!(rejected(&rows, &bad));
        // A salt element moved into its row: the concatenation is unchanged.
        let mut bad_rows = rows.clone();
        let mut bad_proof = proof.clone();
        let moved = bad_proof.0[0][0].remove(0);
        bad_rows[0][0].push(moved);
        assert!(rejected(&bad_rows, &bad_proof));
        // A row element moved into the salt.
        let mut bad_rows = rows.clone();
        let mut bad_proof = proof.clone();
        let moved = bad_rows[0][0].pop().expect("non-empty row");
        bad_proof.0[0][0].insert(0, moved);
        assert!(rejected(&bad_rows, &bad_proof));
        // A salt missing, a salt too many, a query's salts missing.
        let mut bad = proof.clone();
        bad.0[0].pop();
        assert!(rejected(&rows, &bad));
        let mut bad = proof.clone();
        bad.0[0].push(vec![Val::ZERO; SALT_ELEMS]);
        assert!(rejected(&rows, &bad));
        let mut bad = proof.clone();
        bad.0.pop();
        assert!(rejected(&rows, &bad));
        // Another query's rows.
        let mut bad = rows.clone();
        bad.swap(0, 1);
        assert!(rejected(&bad, &proof));
        // A matrix left out.
        let mut bad = rows.clone();
        bad[0].pop();
        assert!(rejected(&bad, &proof));
    }

    #[test]
    fn openings_against_other_dimensions_are_rejected() {
        let mmcs = mmcs();
        let (commit, data) = mmcs.commit(matrices());
        let (rows, proof) = mmcs.open_multi_batch(&QUERIES, &data);
        let mut dims = dimensions();
        dims[2].height = 8;
        assert!(
            mmcs.verify_multi_batch(&commit, &dims, &QUERIES, &rows, &proof)
                .is_err()
        );
        let mut dims = dimensions();
        dims[1].width = 3;
        assert!(
            mmcs.verify_multi_batch(&commit, &dims, &QUERIES, &rows, &proof)
                .is_err()
        );
    }
}
