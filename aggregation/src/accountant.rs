//! Privacy accounting for DP-SGD rounds: the Poisson-subsampled Gaussian mechanism.
//!
//! Each round adds Gaussian noise of standard deviation `z·C` to a sum of per-example
//! gradients clipped to `C`, each example included independently with probability `q`
//! (add/remove adjacency). Its Rényi DP at order `α` is `log(A_α) / (α - 1)` (Mironov,
//! Talwar and Zhang, "Rényi Differential Privacy of the Sampled Gaussian Mechanism", 2019):
//! a finite sum for integer `α`, a two-sided series with `erfc` weights for fractional `α`,
//! both in log space. Rounds compose by adding RDP; `(ε, δ)` follows from the improved
//! conversion `ε = rdp + log(1 - 1/α) - log(δ·α) / (α - 1)` (Canonne, Kamath and Steinke,
//! 2020, Proposition 12), minimized over [`default_orders`], the orders and the conversion
//! that dp-accounting's `RdpAccountant` uses, so the two agree to the digits it prints.

use thiserror::Error;

/// A question the accountant cannot answer.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AccountantError {
    /// A parameter outside its range.
    #[error("{name} is {value}; it must be {range}")]
    OutOfRange {
        /// Which parameter.
        name: &'static str,
        /// Its value.
        value: f64,
        /// The range it must lie in.
        range: &'static str,
    },
    /// No noise multiplier up to the search's limit meets the target.
    #[error("no noise multiplier up to {limit} gives ε ≤ {epsilon} at δ = {delta}")]
    Unreachable {
        /// The target ε.
        epsilon: f64,
        /// The target δ.
        delta: f64,
        /// The largest multiplier tried.
        limit: f64,
    },
}

/// The orders at which RDP is evaluated: `1.1, 1.2, ..., 10.9`, `11, ..., 63` and `128`,
/// `256`, `512`, `1024`.
pub fn default_orders() -> Vec<f64> {
    let fractional = (1..100).map(|x| 1.0 + f64::from(x) / 10.0);
    let whole = (11..64).chain([128, 256, 512, 1024]).map(f64::from);
    fractional.chain(whole).collect()
}

/// An `(ε, δ)` guarantee and the order that gave it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guarantee {
    /// ε.
    pub epsilon: f64,
    /// The RDP order at which the conversion is tightest.
    pub order: f64,
}

/// The integer orders among [`default_orders`] and 2 to 10: `2, ..., 63` and `128`, `256`,
/// `512`, `1024`. A private run's noise is a discrete Gaussian, accounted at these only: at
/// an integer order the binomial sum bounds the subsampled mixture's divergence through the
/// base mechanism's Rényi divergences alone, and the discrete Gaussian's are at most the
/// continuous one's (`noise` module, "Why the analysis holds").
pub fn integer_orders() -> Vec<f64> {
    (2..64)
        .chain([128, 256, 512, 1024])
        .map(f64::from)
        .collect()
}

/// ε after `rounds` rounds of noise multiplier `z` and sampling rate `q`, at `delta`.
pub fn epsilon(z: f64, q: f64, rounds: u64, delta: f64) -> Result<Guarantee, AccountantError> {
    epsilon_at_orders(z, q, rounds, delta, &default_orders())
}

/// [`epsilon`] minimized over the given orders only.
pub fn epsilon_at_orders(
    z: f64,
    q: f64,
    rounds: u64,
    delta: f64,
    orders: &[f64],
) -> Result<Guarantee, AccountantError> {
    check_noise(z)?;
    check_sampling(q, delta)?;
    let rdp: Vec<f64> = orders
        .iter()
        .map(|&a| rounds as f64 * round_rdp(q, z, a))
        .collect();
    Ok(epsilon_from_rdp(orders, &rdp, delta))
}

/// The smallest noise multiplier (to a relative `10^-4`) whose `rounds` rounds at sampling
/// rate `q` stay within `(target, delta)`.
pub fn smallest_noise_multiplier(
    target: f64,
    delta: f64,
    rounds: u64,
    q: f64,
) -> Result<f64, AccountantError> {
    if !(target.is_finite() && target > 0.0) {
        return Err(out_of_range("ε", target, "finite and above 0"));
    }
    check_sampling(q, delta)?;
    const LIMIT: f64 = 1e4;
    let meets = |z: f64| epsilon(z, q, rounds, delta).is_ok_and(|g| g.epsilon <= target);
    if !meets(LIMIT) {
        return Err(AccountantError::Unreachable {
            epsilon: target,
            delta,
            limit: LIMIT,
        });
    }
    // ε falls as z grows: bisect on a log scale between a z that fails and one that meets.
    let (mut low, mut high) = (1e-3, LIMIT);
    if meets(low) {
        return Ok(low);
    }
    while high / low > 1.0 + 1e-4 {
        let mid = (low * high).sqrt();
        match meets(mid) {
            true => high = mid,
            false => low = mid,
        }
    }
    Ok(high)
}

fn out_of_range(name: &'static str, value: f64, range: &'static str) -> AccountantError {
    AccountantError::OutOfRange { name, value, range }
}

fn check_noise(z: f64) -> Result<(), AccountantError> {
    match z.is_finite() && z > 0.0 {
        true => Ok(()),
        false => Err(out_of_range(
            "the noise multiplier",
            z,
            "finite and above 0",
        )),
    }
}

fn check_sampling(q: f64, delta: f64) -> Result<(), AccountantError> {
    let out = |name, value, range| Err(out_of_range(name, value, range));
    if !(0.0..=1.0).contains(&q) {
        return out("the sampling rate", q, "from 0 to 1");
    }
    if !(delta > 0.0 && delta < 1.0) {
        return out("δ", delta, "above 0 and below 1");
    }
    Ok(())
}

/// RDP of one round at order `alpha > 1`: 0 without sampling, `α / (2z²)` when every
/// example is in, `log(A_α) / (α - 1)` between.
pub fn round_rdp(q: f64, z: f64, alpha: f64) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if q == 1.0 {
        return alpha / (2.0 * z * z);
    }
    let log_a = match alpha.fract() == 0.0 {
        true => log_a_int(q, z, alpha as u64),
        false => log_a_frac(q, z, alpha),
    };
    log_a / (alpha - 1.0)
}

/// The smallest `ε` over the orders (and its order), by the improved conversion; 0 when
/// the KL bound `δ ≥ √(1 - e^{-rdp})` already holds.
pub fn epsilon_from_rdp(orders: &[f64], rdp: &[f64], delta: f64) -> Guarantee {
    let mut best = Guarantee {
        epsilon: f64::INFINITY,
        order: f64::NAN,
    };
    for (&a, &r) in orders.iter().zip(rdp) {
        let epsilon = if r.is_nan() || r < 0.0 {
            f64::INFINITY
        } else if delta * delta + libm::expm1(-r) >= 0.0 {
            0.0
        } else if a > 1.01 {
            // Unstable as α → 1, and useless there anyway.
            r + libm::log1p(-1.0 / a) - libm::log(delta * a) / (a - 1.0)
        } else {
            f64::INFINITY
        };
        if epsilon < best.epsilon {
            best = Guarantee { epsilon, order: a };
        }
    }
    best.epsilon = best.epsilon.max(0.0);
    best
}

/// `log(A_α)` for integer `α`: `log Σ_i C(α, i) q^i (1-q)^{α-i} e^{(i² - i)/(2z²)}`.
fn log_a_int(q: f64, z: f64, alpha: u64) -> f64 {
    let (log_q, log_1q) = (libm::log(q), libm::log1p(-q));
    (0..=alpha).fold(f64::NEG_INFINITY, |acc, i| {
        let i = i as f64;
        let a = alpha as f64;
        let term = log_comb(a, i) + i * log_q + (a - i) * log_1q + (i * i - i) / (2.0 * z * z);
        log_add(acc, term)
    })
}

/// Terms of the fractional-order series before the order is given up as infinite (its
/// terms fall below `e^-30` within a few thousand for every `q` and `z` tried, up to about
/// 16,000 at `q = 1/2`, `z = 50`, `α = 1.1`).
const MAX_SERIES_TERMS: u32 = 1_000_000;

/// `log(A_α)` for fractional `α`: the integrals over `(-∞, z0]` and `[z0, ∞)` as series in
/// the generalized binomial coefficients, whose signs alternate past `α`; summed until both
/// terms fall below `e^-30`, or infinite (that order then bounds nothing) if they do not
/// within [`MAX_SERIES_TERMS`].
fn log_a_frac(q: f64, z: f64, alpha: f64) -> f64 {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = z * z * libm::log(1.0 / q - 1.0) + 0.5;
    let (log_q, log_1q) = (libm::log(q), libm::log1p(-q));
    let mut coef = 1.0f64;
    for i in 0..MAX_SERIES_TERMS {
        let i = f64::from(i);
        if i > 0.0 {
            coef *= (alpha - i + 1.0) / i;
        }
        let log_coef = libm::log(coef.abs());
        let j = alpha - i;
        let log_t0 = log_coef + i * log_q + j * log_1q;
        let log_t1 = log_coef + j * log_q + i * log_1q;
        let log_e0 = libm::log(0.5) + log_erfc((i - z0) / (std::f64::consts::SQRT_2 * z));
        let log_e1 = libm::log(0.5) + log_erfc((z0 - j) / (std::f64::consts::SQRT_2 * z));
        let log_s0 = log_t0 + (i * i - i) / (2.0 * z * z) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * z * z) + log_e1;
        if coef > 0.0 {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0);
            log_a1 = log_sub(log_a1, log_s1);
        }
        if log_s0.max(log_s1) < -30.0 {
            return log_add(log_a0, log_a1);
        }
    }
    f64::INFINITY
}

fn log_comb(n: f64, k: f64) -> f64 {
    libm::lgamma(n + 1.0) - libm::lgamma(k + 1.0) - libm::lgamma(n - k + 1.0)
}

/// `log(e^x + e^y)`.
fn log_add(x: f64, y: f64) -> f64 {
    let (low, high) = (x.min(y), x.max(y));
    match low == f64::NEG_INFINITY {
        true => high,
        false => libm::log1p(libm::exp(low - high)) + high,
    }
}

/// `log(e^x - e^y)` for `x ≥ y`; a difference that the series' rounding made negative
/// counts as 0.
fn log_sub(x: f64, y: f64) -> f64 {
    if y == f64::NEG_INFINITY {
        return x;
    }
    if x <= y {
        return f64::NEG_INFINITY;
    }
    libm::log(libm::expm1(x - y)) + y
}

/// `log(erfc(x))`, by the asymptotic series where `erfc` underflows.
fn log_erfc(x: f64) -> f64 {
    let r = libm::erfc(x);
    if r > 0.0 {
        return libm::log(r);
    }
    // Basic operations and `libm` only, so every machine computes the same bits.
    let inv = 1.0 / (x * x);
    -libm::log(std::f64::consts::PI) / 2.0 - libm::log(x) - x * x - 0.5 * inv + 0.625 * inv * inv
        - 37.0 / 24.0 * inv * inv * inv
        + 353.0 / 64.0 * inv * inv * inv * inv
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dp-accounting 0.6's `RdpAccountant` (Poisson sampling, add/remove adjacency), as the
    /// issue gives them, to three significant digits.
    #[test]
    fn epsilon_matches_dp_accounting() {
        for (z, q, rounds, expected) in [
            (1.1, 0.01, 10_000, 5.632),
            (4.0, 0.01, 10_000, 1.0355),
            (1.12, 256.0 / 60_000.0, 14_063, 2.519),
        ] {
            let g = epsilon(z, q, rounds, 1e-5).unwrap();
            eprintln!(
                "z = {z}, q = {q}, T = {rounds}: ε = {} at order {}",
                g.epsilon, g.order
            );
            let relative = (g.epsilon - expected).abs() / expected;
            assert!(relative < 5e-4, "z = {z}: {} against {expected}", g.epsilon);
        }
    }

    #[test]
    fn the_edges_of_sampling_and_of_the_orders() {
        // Nothing sampled spends nothing; everything sampled is the plain Gaussian.
        assert_eq!(round_rdp(0.0, 1.0, 5.0), 0.0);
        assert_eq!(round_rdp(1.0, 2.0, 5.0), 5.0 / 8.0);
        // RDP grows with the order, across integer and fractional orders alike.
        for (q, z) in [(0.01, 1.1), (0.001, 0.8), (0.3, 4.0)] {
            let rdp: Vec<f64> = default_orders()
                .iter()
                .map(|&a| round_rdp(q, z, a))
                .collect();
            assert!(rdp.iter().all(|r| r.is_finite() && *r >= 0.0), "{q}, {z}");
            for w in rdp.windows(2) {
                assert!(w[1] >= w[0] * (1.0 - 1e-9), "q = {q}, z = {z}: {w:?}");
            }
        }
        // A fractional order just off an integer agrees with the integer formula.
        let (at, near) = (round_rdp(0.01, 1.1, 3.0), round_rdp(0.01, 1.1, 3.0 + 1e-7));
        assert!((at - near).abs() < 1e-6 * at, "{at} against {near}");
        // Small q and a large order stay finite (log space throughout), and the slowest
        // series tried converges.
        assert!(round_rdp(1e-6, 0.5, 1024.0).is_finite());
        assert!(round_rdp(0.5, 50.0, 1.1).is_finite());
    }

    #[test]
    fn the_plan_meets_its_target_and_no_smaller_multiplier_does() {
        let (q, rounds, delta) = (0.01, 10_000, 1e-5);
        let z = smallest_noise_multiplier(5.632, delta, rounds, q).unwrap();
        assert!((z - 1.1).abs() < 2e-3, "{z}");
        assert!(epsilon(z, q, rounds, delta).unwrap().epsilon <= 5.632);
        assert!(epsilon(z * 0.999, q, rounds, delta).unwrap().epsilon > 5.632);
        assert!(matches!(
            smallest_noise_multiplier(1e-9, delta, rounds, 1.0),
            Err(AccountantError::Unreachable { .. })
        ));
    }

    #[test]
    fn parameters_outside_their_ranges_are_errors() {
        for (z, q, delta) in [
            (0.0, 0.01, 1e-5),
            (f64::NAN, 0.01, 1e-5),
            (1.0, 1.5, 1e-5),
            (1.0, -0.1, 1e-5),
            (1.0, 0.01, 0.0),
            (1.0, 0.01, 1.0),
        ] {
            assert!(epsilon(z, q, 10, delta).is_err(), "{z}, {q}, {delta}");
        }
        assert!(smallest_noise_multiplier(f64::INFINITY, 1e-5, 10, 0.01).is_err());
    }
}
