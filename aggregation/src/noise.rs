//! The noise of a private run: an exact discrete Gaussian on the integers, sampled from a
//! seed (README, "Privacy"; ARCHITECTURE.md, "Noise").
//!
//! - **Sampler.** Canonne, Kamath and Steinke's rejection sampler ("The Discrete Gaussian
//!   for Differential Privacy", 2020, Algorithms 1–3): a discrete Laplace proposal of scale
//!   `t = floor(σ) + 1`, accepted with probability `exp(−(|Y| − σ²/t)² / (2σ²))`, every
//!   Bernoulli trial decided by exact integer comparisons on rationals. With `σ²` an integer
//!   every quantity is an integer below `2^127`; a proposal whose arithmetic would not fit
//!   (`|Y|·t ≥ 2^64 + σ²`, so `|Y| > 2^35` at the largest `σ` allowed: a discrete Laplace
//!   tail below `e^{-128}`) is rejected and the loop continues.
//! - **Randomness.** SHA-256 in counter mode over a 32-byte seed (`NoiseStream`): portable
//!   and reproducible, so an auditor holding the seed recomputes the noise bit for bit.
//!   The coordinator derives each attempt's seed from a secret key drawn from the operating
//!   system's CSPRNG.
//! - **Why the analysis holds.** For an integer shift vector of L2 norm `Δ`, the Rényi
//!   divergence of order `α` between `N_Z(0, σ²)^P` and its shift is at most `αΔ²/(2σ²)`,
//!   the continuous Gaussian's (Canonne, Kamath and Steinke 2020; over independent
//!   coordinates the divergences add). At an integer order the subsampled mixture's
//!   divergence from the base expands binomially into moments `E[(μ₁/μ₀)^l] =
//!   e^{(l−1)·D_l}`, each at most the continuous Gaussian's, so the accountant's integer-order
//!   sum (`accountant::integer_orders`, multiplier `σ / Δ`) bounds that direction term by
//!   term. The other direction is taken from the continuous case, where Mironov, Talwar and
//!   Zhang (2019) prove it the smaller; we have not proven it for the discrete Gaussian
//!   (README, "Privacy", says so). Rounding a floating-point Gaussian would need an argument
//!   about the sampler's distribution on top.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Largest standard deviation (in lattice units) the sampler takes: beyond it the exact
/// arithmetic would not fit in 128 bits.
pub const MAX_SIGMA: u64 = 1 << 28;

/// A variance the sampler cannot take.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum NoiseError {
    /// `σ²` zero or above `MAX_SIGMA²`.
    #[error("noise variance {0} is not in 1..=2^56")]
    Variance(u128),
}

/// SHA-256 in counter mode: 32 bytes of output per block `SHA-256(domain || seed || i)`.
pub struct NoiseStream {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl NoiseStream {
    /// The stream of `seed`.
    pub fn new(seed: [u8; 32]) -> Self {
        Self {
            seed,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    fn next_u64(&mut self) -> u64 {
        if self.used == 32 {
            let mut h = Sha256::new();
            h.update(b"zkfed/noise-stream/v1");
            h.update(self.seed);
            h.update(self.counter.to_le_bytes());
            self.block = h.finalize().into();
            self.counter += 1;
            self.used = 0;
        }
        let word = &self.block[self.used..self.used + 8];
        self.used += 8;
        u64::from_le_bytes(word.try_into().expect("8 bytes"))
    }

    /// Uniform in `[0, n)` (`n > 0`), by rejection from 128-bit draws.
    fn below(&mut self, n: u128) -> u128 {
        debug_assert!(n > 0);
        let zone = u128::MAX - (u128::MAX % n);
        loop {
            let draw = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
            if draw < zone {
                return draw % n;
            }
        }
    }

    /// `true` with probability `num / den` (`num ≤ den`, `den > 0`).
    fn bernoulli(&mut self, num: u128, den: u128) -> bool {
        self.below(den) < num
    }

    /// `true` with probability `exp(−num/den)` (CKS Algorithm 1).
    fn bernoulli_exp(&mut self, num: u128, den: u128) -> bool {
        if num <= den {
            let mut k: u128 = 1;
            loop {
                let Some(scaled) = den.checked_mul(k) else {
                    // Only for `k > 2^14` (`den < 2^114`), which the loop reaches with
                    // probability below `1/(2^14)!`.
                    return false;
                };
                if !self.bernoulli(num, scaled) {
                    return k % 2 == 1;
                }
                k += 1;
            }
        }
        let whole = num / den;
        for _ in 0..whole {
            if !self.bernoulli_exp(1, 1) {
                return false;
            }
        }
        self.bernoulli_exp(num - whole * den, den)
    }

    /// Discrete Laplace of scale `t`: `P[y] ∝ exp(−|y|/t)` (CKS Algorithm 2).
    fn discrete_laplace(&mut self, t: u128) -> i128 {
        loop {
            let u = self.below(t);
            if !self.bernoulli_exp(u, t) {
                continue;
            }
            let mut v: u128 = 0;
            while self.bernoulli_exp(1, 1) {
                v += 1;
            }
            let x = u + t * v;
            let negative = self.bernoulli(1, 2);
            if negative && x == 0 {
                continue;
            }
            let x = x as i128;
            return if negative { -x } else { x };
        }
    }

    /// One sample of the discrete Gaussian `N_Z(0, σ²)` for the integer variance
    /// `sigma_sq` (CKS Algorithm 3).
    pub fn discrete_gaussian(&mut self, sigma_sq: u128) -> Result<i64, NoiseError> {
        if sigma_sq == 0 || sigma_sq > u128::from(MAX_SIGMA) * u128::from(MAX_SIGMA) {
            return Err(NoiseError::Variance(sigma_sq));
        }
        let t = isqrt(sigma_sq) + 1;
        loop {
            let y = self.discrete_laplace(t);
            let abs = y.unsigned_abs();
            // γ = (|y| − σ²/t)² / (2σ²) = (|y|·t − σ²)² / (2σ²t²)
            let Some(scaled) = abs.checked_mul(t) else {
                continue;
            };
            let gap = scaled.abs_diff(sigma_sq);
            let (Some(num), Some(den)) = (gap.checked_mul(gap), (2 * sigma_sq).checked_mul(t * t))
            else {
                continue;
            };
            if self.bernoulli_exp(num, den) {
                return Ok(y as i64);
            }
        }
    }
}

/// `floor(√n)`.
fn isqrt(n: u128) -> u128 {
    let mut x = (n as f64).sqrt() as u128;
    while x * x > n {
        x -= 1;
    }
    while (x + 1) * (x + 1) <= n {
        x += 1;
    }
    x
}

/// `n` samples of `N_Z(0, sigma_sq)` from the stream of `seed`.
pub fn discrete_gaussian_vector(
    seed: [u8; 32],
    sigma_sq: u128,
    n: usize,
) -> Result<Vec<i64>, NoiseError> {
    let mut stream = NoiseStream::new(seed);
    (0..n).map(|_| stream.discrete_gaussian(sigma_sq)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_noise() {
        let a = discrete_gaussian_vector([1; 32], 1 << 20, 64).unwrap();
        assert_eq!(a, discrete_gaussian_vector([1; 32], 1 << 20, 64).unwrap());
        assert_ne!(a, discrete_gaussian_vector([2; 32], 1 << 20, 64).unwrap());
    }

    #[test]
    fn moments_match_the_variance() {
        for sigma_sq in [1u128, 10, 1 << 20, 1 << 40] {
            let n = 20_000;
            let x = discrete_gaussian_vector([7; 32], sigma_sq, n).unwrap();
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            let sigma = (sigma_sq as f64).sqrt();
            // The discrete Gaussian's variance is below σ² and within 1% of it from σ = 3 on;
            // the sample's is within 4% at this n (its standard error is 1%).
            assert!(
                mean.abs() < 4.0 * sigma / (n as f64).sqrt(),
                "{sigma_sq}: {mean}"
            );
            let ratio = var / sigma_sq as f64;
            let low = if sigma_sq == 1 { 0.80 } else { 0.96 };
            assert!(ratio > low && ratio < 1.04, "{sigma_sq}: {ratio}");
        }
    }

    #[test]
    fn the_pmf_is_the_discrete_gaussians() {
        // σ² = 2: P[y] ∝ exp(−y²/4). Compare frequencies of −3..=3 over 200,000 samples.
        let n = 200_000;
        let x = discrete_gaussian_vector([9; 32], 2, n).unwrap();
        let weight = |y: i64| (-(y * y) as f64 / 4.0).exp();
        let total: f64 = (-40..=40).map(weight).sum();
        for y in -3..=3 {
            let expected = weight(y) / total;
            let observed = x.iter().filter(|&&v| v == y).count() as f64 / n as f64;
            let se = (expected * (1.0 - expected) / n as f64).sqrt();
            assert!(
                (observed - expected).abs() < 5.0 * se,
                "{y}: {observed} vs {expected}"
            );
        }
    }

    #[test]
    fn variances_out_of_range_are_errors() {
        let mut s = NoiseStream::new([0; 32]);
        assert_eq!(s.discrete_gaussian(0), Err(NoiseError::Variance(0)));
        let big = u128::from(MAX_SIGMA) * u128::from(MAX_SIGMA) + 1;
        assert_eq!(s.discrete_gaussian(big), Err(NoiseError::Variance(big)));
        let largest = u128::from(MAX_SIGMA) * u128::from(MAX_SIGMA);
        let v = discrete_gaussian_vector([3; 32], largest, 256).unwrap();
        assert!(v.iter().all(|x| x.unsigned_abs() < 12 * MAX_SIGMA));
        assert!(v.iter().any(|&x| x.unsigned_abs() > MAX_SIGMA / 4));
    }

    #[test]
    fn integer_square_roots_are_exact() {
        for n in [
            0u128,
            1,
            2,
            3,
            4,
            15,
            16,
            17,
            (1 << 56) - 1,
            1 << 56,
            u128::from(u64::MAX),
        ] {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1) * (r + 1) > n, "{n}");
        }
    }
}
