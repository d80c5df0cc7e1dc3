//! A private run's coordinator side (README, "Privacy"): the secret noise key and the seeds
//! it derives, the noise of each aggregate, the ε spent after each round, and the budget
//! that ends the run.
//!
//! - The noise key is 32 bytes from the operating system's CSPRNG in `noise.key` (0600)
//!   beside the node key. Its SHA-256 commitment is in the run's configuration (the log's
//!   first record); the attempt `(r, a)`'s noise seed is
//!   `SHA-256("zkfed/noise-seed/v2" || key || federation id || r || a || d)`, `d` the
//!   SHA-256 of the attempt's un-noised sum (in its record). The sum depends on the hidden
//!   samples, which the coordinator cannot know when it commits to its key, so it cannot
//!   grind a key for noise it likes. (It can still choose among the draws of the subsets
//!   of submissions that meet the quorum by leaving hospitals out: README, "Privacy".)
//!   Whoever holds a copy of the key
//!   (an escrow the operator hands the auditor) recomputes every aggregate bit for bit;
//!   everyone else checks everything but the noise.
//! - ε is charged per attempt opened, not per round aggregated: an abandoned attempt's
//!   participants proved and sent noised-to-be sums too, and whether it was abandoned (a
//!   model out of range, an abstention) may depend on the data. The accounting itself is
//!   [`zkfed_protocol::budget`], shared with the audit and the participants.

use std::path::Path;

use sha2::{Digest, Sha256};
use thiserror::Error;
use zkfed_aggregation::private::PrivateRound;
pub use zkfed_protocol::budget::{BudgetError, affordable_rounds, spent_epsilon, variance};
use zkfed_protocol::{Privacy, RunParameters};

/// A private run's secret noise key. No `Debug`: it decides the noise.
#[derive(Clone, PartialEq, Eq)]
pub struct NoiseKey([u8; 32]);

/// Why a key file or the accounting cannot be used.
#[derive(Debug, Error)]
pub enum PrivacyError {
    /// The key file cannot be read or written.
    #[error("noise key {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// A key file that is not 32 bytes.
    #[error("noise key {0} is not 32 bytes")]
    Corrupt(String),
    /// The run's ε cannot be accounted.
    #[error(transparent)]
    Budget(#[from] BudgetError),
}

impl NoiseKey {
    /// The key in `path`, created (from the operating system's CSPRNG, 0600, written
    /// durably) if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, PrivacyError> {
        let io = |source| PrivacyError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => Self::from_bytes(&bytes, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::fill(&mut key);
                zkfed_net::write_durably(path, &key, true).map_err(io)?;
                Ok(Self(key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The key in an existing file (an auditor's escrowed copy).
    pub fn load(path: &Path) -> Result<Self, PrivacyError> {
        let bytes = std::fs::read(path).map_err(|source| PrivacyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, PrivacyError> {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| PrivacyError::Corrupt(path.display().to_string()))?;
        Ok(Self(key))
    }

    /// The key's public commitment, recorded in the run's configuration.
    pub fn commitment(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"zkfed/noise-key/v1");
        h.update(self.0);
        h.finalize().into()
    }

    /// The noise seed of run `federation_id`'s round `round`, attempt `attempt`, whose
    /// un-noised sum has the digest `unnoised` (another run from the same key draws other
    /// noise, so models of two runs cannot cancel it; the sum keeps a key chosen before the
    /// run from deciding the noise).
    pub fn seed(
        &self,
        federation_id: &[u8; 32],
        round: u64,
        attempt: u32,
        unnoised: &[u8; 32],
    ) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"zkfed/noise-seed/v2");
        h.update(self.0);
        h.update(federation_id);
        h.update(round.to_le_bytes());
        h.update(attempt.to_le_bytes());
        h.update(unnoised);
        h.finalize().into()
    }

    /// A key from raw bytes (tests).
    pub fn from_raw(key: [u8; 32]) -> Self {
        Self(key)
    }
}

/// The inputs of a private aggregate: the run's variance and threshold, the accepted
/// participants' committed rows and the attempt's seed.
pub fn private_round(
    public: &RunParameters,
    privacy: &Privacy,
    rows: u64,
    seed: [u8; 32],
) -> Result<PrivateRound, PrivacyError> {
    Ok(PrivateRound {
        sigma_sq: variance(public, privacy)?,
        threshold: privacy.sampling.threshold,
        rows,
        seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_per_run_round_and_attempt_and_commitments_per_key() {
        let key = NoiseKey::from_raw([1; 32]);
        let seed = key.seed(&[2; 32], 3, 1, &[5; 32]);
        assert_eq!(seed, key.seed(&[2; 32], 3, 1, &[5; 32]));
        assert_ne!(seed, key.seed(&[9; 32], 3, 1, &[5; 32]));
        assert_ne!(seed, key.seed(&[2; 32], 4, 1, &[5; 32]));
        assert_ne!(seed, key.seed(&[2; 32], 3, 2, &[5; 32]));
        assert_ne!(seed, key.seed(&[2; 32], 3, 1, &[6; 32]));
        assert_ne!(key.commitment(), NoiseKey::from_raw([2; 32]).commitment());
    }

    #[test]
    fn key_files_are_created_private_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("zkfed-noise-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("noise.key");
        let created = NoiseKey::load_or_create(&path).unwrap();
        assert!(created == NoiseKey::load(&path).unwrap());
        assert!(created == NoiseKey::load_or_create(&path).unwrap());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, [0; 31]).unwrap();
        assert!(matches!(
            NoiseKey::load(&path),
            Err(PrivacyError::Corrupt(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
