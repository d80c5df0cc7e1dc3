//! A private run's server step (README, "Privacy"; ARCHITECTURE.md, "Noise"): the sum of
//! the accepted clipped-gradient sums, rounded to the gradient lattice, plus discrete
//! Gaussian noise of standard deviation `z·C`, divided by the expected batch `q'·N` (never
//! by a count), then the run's mean-based rule.
//!
//! - **Lattice.** Updates are at scale `2^32`; the sum is rounded once to multiples of
//!   `2^16`, gradients at the model's resolution `2^-16`. One example moves the rounded sum
//!   by at most `C·2^16 + √P` in L2 (`P` parameters: two roundings differ by less than one
//!   unit per coordinate), so the accountant uses `z_eff = σ / (C·2^16 + √P)`.
//! - **Noise.** `σ² = ceil((z·C·2^16)²)` lattice units², never below the real rule's;
//!   `noise::discrete_gaussian_vector` draws it from the attempt's seed.
//! - **Normalisation.** `g = (S + noise) · 2^32 / (t · N)` at scale `2^16`, with `t / 2^32 = q'`
//!   and `N` the committed rows of the participants whose updates were accepted.

use sha2::{Digest, Sha256};
use zkfed_air::fixed::FRAC_BITS;
use zkfed_air::{ClippedGradientSum, Model};

use crate::noise::{MAX_SIGMA, NoiseError, discrete_gaussian_vector};
use crate::strategy::{ServerState, Strategy, gradient_step};
use crate::{AggregationError, div_round};

/// What a private round's step needs besides the updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrivateRound {
    /// `σ²` in lattice units² ([`noise_variance`]).
    pub sigma_sq: u128,
    /// The sampling threshold `t` (`q' = t / 2^32`).
    pub threshold: u64,
    /// Committed rows of the accepted participants.
    pub rows: u64,
    /// The attempt's noise seed.
    pub seed: [u8; 32],
}

/// `σ² = ceil((z · clip_norm)²)` in lattice units² for noise multiplier `z` and the
/// fixed-point clip norm (`C·2^16`); an error beyond what the sampler takes.
pub fn noise_variance(z: f64, clip_norm: i64) -> Result<u128, NoiseError> {
    let sigma = z * clip_norm as f64;
    let limit = MAX_SIGMA as f64;
    if !(sigma.is_finite() && sigma > 0.0 && sigma <= limit) {
        return Err(NoiseError::Variance(u128::MAX));
    }
    // f64 squares of values up to 2^28 are exact to 2^-50 relative; ceil then adds one
    // unit so the variance never falls below (z·clip)².
    let sigma_sq = (sigma * sigma).ceil() as u128 + 1;
    match sigma_sq <= u128::from(MAX_SIGMA) * u128::from(MAX_SIGMA) {
        true => Ok(sigma_sq),
        false => Err(NoiseError::Variance(sigma_sq)),
    }
}

/// The multiplier the accountant uses: `σ / (clip_norm + √P)`, below `z` by the rounding's
/// share of the sensitivity.
pub fn effective_multiplier(sigma_sq: u128, clip_norm: i64, num_params: usize) -> f64 {
    (sigma_sq as f64).sqrt() / (clip_norm as f64 + (num_params as f64).sqrt())
}

/// `round(Σ U / 2^16)` per parameter: the un-noised sum on the lattice.
pub fn unnoised_sum(
    updates: &[ClippedGradientSum],
    n: usize,
) -> Result<Vec<i64>, AggregationError> {
    if updates.is_empty() {
        return Err(AggregationError::Empty);
    }
    if let Some(u) = updates.iter().find(|u| u.values.len() != n) {
        return Err(AggregationError::Shape {
            expected: n,
            got: u.values.len(),
        });
    }
    (0..n)
        .map(|j| {
            let sum: i128 = updates.iter().map(|u| i128::from(u.values[j])).sum();
            i64::try_from(div_round(sum, 1 << FRAC_BITS))
                .map_err(|_| AggregationError::OutOfRange { index: j })
        })
        .collect()
}

/// SHA-256 of the un-noised sum (domain-separated, little-endian): what the log publishes
/// so every reader checks the sum while only the keyed auditor sees the noise.
pub fn sum_digest(sum: &[i64]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"zkfed/unnoised-sum/v1");
    for v in sum {
        h.update(v.to_le_bytes());
    }
    h.finalize().into()
}

/// `(S + noise) · 2^32 / (t · N)` per parameter, rounded to nearest: the noised mean
/// gradient at scale `2^16`.
pub fn noised_gradient(
    sum: &[i64],
    noise: &[i64],
    threshold: u64,
    rows: u64,
) -> Result<Vec<i64>, AggregationError> {
    let expected = i128::from(threshold) * i128::from(rows);
    if expected == 0 {
        return Err(AggregationError::Empty);
    }
    sum.iter()
        .zip(noise)
        .enumerate()
        .map(|(j, (&s, &e))| {
            let noised = (i128::from(s) + i128::from(e)) << 32;
            i64::try_from(div_round(noised, expected))
                .map_err(|_| AggregationError::OutOfRange { index: j })
        })
        .collect()
}

/// One private server step: the next model and state, and the un-noised sum's digest.
pub fn private_step(
    strategy: Strategy,
    model: &Model,
    state: &ServerState,
    updates: &[ClippedGradientSum],
    round: &PrivateRound,
    learning_rate: i64,
) -> Result<(Model, ServerState, [u8; 32]), AggregationError> {
    let n = model.params.len();
    let sum = unnoised_sum(updates, n)?;
    let noise = discrete_gaussian_vector(round.seed, round.sigma_sq, n)?;
    let g = noised_gradient(&sum, &noise, round.threshold, round.rows)?;
    let (model, state) = gradient_step(strategy, model, state, &g, learning_rate)?;
    Ok((model, state, sum_digest(&sum)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkfed_air::fixed::ONE;
    use zkfed_air::spec::ModelSpec;

    fn update(values: Vec<i64>, examples: u64) -> ClippedGradientSum {
        ClippedGradientSum { values, examples }
    }

    fn round(seed: u8, sigma_sq: u128) -> PrivateRound {
        PrivateRound {
            sigma_sq,
            threshold: 1 << 30, // q' = 1/4
            rows: 400,
            seed: [seed; 32],
        }
    }

    #[test]
    fn without_noise_the_step_is_the_sum_over_the_expected_batch() {
        // Two participants' sums of 0.5 and 1.5 (scale 2^32) over an expected batch of 100
        // rows: g = 2 / 100 = 0.02; lr = 1: every weight moves by −0.02.
        let half = 1i64 << 31;
        let updates = [update(vec![half; 3], 7), update(vec![3 * half; 3], 9)];
        let model = Model::zeros(ModelSpec::Logistic, 2);
        let sum = unnoised_sum(&updates, 3).unwrap();
        assert_eq!(sum, vec![2 * ONE; 3]);
        let g = noised_gradient(&sum, &[0; 3], 1 << 30, 400).unwrap();
        assert_eq!(g, vec![div_round(2 * i128::from(ONE), 100) as i64; 3]);
        let (next, _) =
            gradient_step(Strategy::FedAvg, &model, &ServerState::default(), &g, ONE).unwrap();
        assert!(
            next.params.iter().all(|&w| (w + 1311).abs() <= 1),
            "{next:?}"
        );
    }

    #[test]
    fn the_noise_is_the_seeds_and_has_the_variance() {
        let updates = [update(vec![0; 2000], 1)];
        let model = Model::zeros(ModelSpec::Logistic, 1999);
        let state = ServerState::default();
        let sigma_sq = noise_variance(1.5, ONE).unwrap();
        let step = |seed| {
            private_step(
                Strategy::FedAvg,
                &model,
                &state,
                &updates,
                &round(seed, sigma_sq),
                ONE,
            )
            .unwrap()
        };
        let (a, _, digest) = step(1);
        assert_eq!(a, step(1).0);
        assert_ne!(a, step(2).0);
        assert_eq!(digest, sum_digest(&[0; 2000]));
        // w = −lr·noise·2^32/(t·N) = −noise / 100 in lattice units: its spread is
        // σ/100 = 1.5·2^16/100.
        let sd = (a.params.iter().map(|&w| (w as f64).powi(2)).sum::<f64>() / 2000.0).sqrt();
        let expected = 1.5 * ONE as f64 / 100.0;
        assert!((sd / expected - 1.0).abs() < 0.08, "{sd} vs {expected}");
    }

    #[test]
    fn variances_and_multipliers() {
        assert_eq!(noise_variance(1.0, ONE).unwrap(), (1u128 << 32) + 1);
        assert!(noise_variance(0.0, ONE).is_err());
        assert!(noise_variance(f64::NAN, ONE).is_err());
        assert!(noise_variance(1e4, ONE).is_err()); // σ = 10^4·2^16 > 2^28
        // σ = 2^28 exactly: σ² + 1 is past the sampler's range, refused here, not later.
        assert!(noise_variance(4096.0, ONE).is_err());
        assert!(noise_variance(4095.0, ONE).is_ok());
        let z = effective_multiplier(noise_variance(2.0, ONE).unwrap(), ONE, 31);
        assert!(z < 2.0 && z > 2.0 * 0.9999, "{z}");
    }

    #[test]
    fn robust_rules_refuse_a_mean_and_shapes_are_checked() {
        let model = Model::zeros(ModelSpec::Logistic, 2);
        let state = ServerState::default();
        assert_eq!(
            gradient_step(Strategy::Median, &model, &state, &[0; 3], ONE),
            Err(AggregationError::NotMeanBased)
        );
        assert!(matches!(
            unnoised_sum(&[update(vec![0; 2], 1)], 3),
            Err(AggregationError::Shape { .. })
        ));
        assert_eq!(unnoised_sum(&[], 3), Err(AggregationError::Empty));
        assert!(noised_gradient(&[1], &[1], 1, 0).is_err());
    }
}
