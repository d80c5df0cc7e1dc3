//! A private run's coordinator side (README, "Privacy"): the secret noise key and the seeds
//! it derives, the noise of each aggregate, the ε spent after each round, and the budget
//! that ends the run.
//!
//! - The noise key is 32 bytes from the operating system's CSPRNG in `noise.key` (0600)
//!   beside the node key. Its SHA-256 commitment is in the run's configuration (the log's
//!   first record); the attempt `(r, a)`'s noise seed is
//!   `SHA-256("zkfed/noise-seed/v1" || key || federation id || r || a)`. Whoever holds a copy of the key
//!   (an escrow the operator hands the auditor) recomputes every aggregate bit for bit;
//!   everyone else checks everything but the noise.
//! - ε is charged per attempt opened, not per round aggregated: an abandoned attempt's
//!   participants proved and sent noised-to-be sums too, and whether it was abandoned (a
//!   model out of range, an abstention) may depend on the data.
//! - ε after `r` attempts is the RDP accountant's at the integer orders with the effective
//!   multiplier `σ / (C·2^16 + √P)` and `q'`, converted at `δ/2`; the other half covers
//!   the overflow rule: with probability at most `β = 10^-9` per round the participant
//!   whose data differs abstains because its sample overflowed the proof's slots, an event
//!   the Poisson-sampling analysis does not cover, which costs `r·β·(1 + e^ε)` of δ and
//!   must fit in `δ/2` (ARCHITECTURE.md, "Membership and hidden Poisson sampling").

use std::path::Path;

use sha2::{Digest, Sha256};
use thiserror::Error;
use zkfed_aggregation::accountant::{AccountantError, epsilon_at_orders, integer_orders};
use zkfed_aggregation::noise::NoiseError;
use zkfed_aggregation::private::{PrivateRound, effective_multiplier, noise_variance};
use zkfed_air::sampling::OVERFLOW_PROBABILITY;
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
    /// The noise variance is out of the sampler's range.
    #[error(transparent)]
    Noise(#[from] NoiseError),
    /// The accountant refused its inputs.
    #[error(transparent)]
    Accountant(#[from] AccountantError),
    /// The overflow rule's share of δ does not fit in half of it.
    #[error(
        "after {rounds} rounds at ε = {epsilon}, the overflow rule needs more than half of δ = {delta}"
    )]
    NoDelta {
        /// The run's δ.
        delta: f64,
        /// The rounds.
        rounds: u64,
        /// The ε spent by then.
        epsilon: f64,
    },
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

    /// The noise seed of run `federation_id`'s round `round`, attempt `attempt` (another
    /// run from the same key draws other noise, so models of two runs cannot cancel it).
    pub fn seed(&self, federation_id: &[u8; 32], round: u64, attempt: u32) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"zkfed/noise-seed/v1");
        h.update(self.0);
        h.update(federation_id);
        h.update(round.to_le_bytes());
        h.update(attempt.to_le_bytes());
        h.finalize().into()
    }

    /// A key from raw bytes (tests).
    pub fn from_raw(key: [u8; 32]) -> Self {
        Self(key)
    }
}

/// `σ²` of the run's noise in lattice units².
pub fn variance(public: &RunParameters, privacy: &Privacy) -> Result<u128, PrivacyError> {
    Ok(noise_variance(
        privacy.noise_multiplier,
        public.params.clip_norm,
    )?)
}

/// ε spent after `rounds` attempts of the private run.
pub fn spent_epsilon(
    public: &RunParameters,
    privacy: &Privacy,
    rounds: u64,
) -> Result<f64, PrivacyError> {
    if rounds == 0 {
        return Ok(0.0);
    }
    let num_params = public.model.num_params(public.schema.features.len());
    let z = effective_multiplier(
        variance(public, privacy)?,
        public.params.clip_norm,
        num_params,
    );
    let q = privacy.sampling.probability();
    let half = privacy.delta / 2.0;
    let epsilon = epsilon_at_orders(z, q, rounds, half, &integer_orders())?.epsilon;
    // libm, not the platform's: audits on other machines must agree to the bit.
    let slack = rounds as f64 * OVERFLOW_PROBABILITY * (1.0 + libm::exp(epsilon));
    if slack.is_nan() || slack > half {
        return Err(PrivacyError::NoDelta {
            delta: privacy.delta,
            rounds,
            epsilon,
        });
    }
    Ok(epsilon)
}

/// Attempts the budget allows: the largest `r ≤ limit` with `ε(r) ≤ ε_target` (an `r` whose
/// ε cannot be accounted within δ does not fit).
pub fn affordable_rounds(
    public: &RunParameters,
    privacy: &Privacy,
    limit: u64,
) -> Result<u64, PrivacyError> {
    let fits = |r: u64| match spent_epsilon(public, privacy, r) {
        Ok(e) => Ok(e <= privacy.epsilon),
        Err(PrivacyError::NoDelta { .. }) => Ok(false),
        Err(e) => Err(e),
    };
    if fits(limit)? {
        return Ok(limit);
    }
    let (mut low, mut high) = (0, limit);
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        match fits(mid)? {
            true => low = mid,
            false => high = mid,
        }
    }
    Ok(low)
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
        let seed = key.seed(&[2; 32], 3, 1);
        assert_eq!(seed, key.seed(&[2; 32], 3, 1));
        assert_ne!(seed, key.seed(&[9; 32], 3, 1));
        assert_ne!(seed, key.seed(&[2; 32], 4, 1));
        assert_ne!(seed, key.seed(&[2; 32], 3, 2));
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
