//! A private run's privacy accounting, one rule for the coordinator (which stops the run
//! at its budget), the audit (which checks every recorded ε) and each participant (which
//! stops letting its rows be sampled at its own cap, whatever the coordinator does).
//!
//! ε after `r` sampled attempts is the RDP accountant's at the integer orders with the
//! effective multiplier `σ / (C·2^16 + √P)` and `q'`, converted at `δ/2`. The other half of
//! δ covers the overflow rule: with probability at most `β = 10^-9` per attempt the
//! participant whose data differs abstains because its sample overflowed the proof's
//! slots, an event the Poisson-sampling analysis does not cover, which costs
//! `r·β·(1 + e^ε)` of δ and must fit in `δ/2` (README, "Privacy"). Everything runs on
//! `libm`, so auditors on other machines agree to the bit.

use thiserror::Error;
use zkfed_aggregation::accountant::{AccountantError, epsilon_at_orders, integer_orders};
use zkfed_aggregation::noise::NoiseError;
use zkfed_aggregation::private::{effective_multiplier, noise_variance};
use zkfed_air::sampling::OVERFLOW_PROBABILITY;

use crate::{Privacy, RunParameters};

/// Why a private run's ε cannot be accounted.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BudgetError {
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
        /// The sampled attempts.
        rounds: u64,
        /// The ε spent by then.
        epsilon: f64,
    },
}

/// `σ²` of the run's noise in lattice units².
pub fn variance(public: &RunParameters, privacy: &Privacy) -> Result<u128, BudgetError> {
    Ok(noise_variance(
        privacy.noise_multiplier,
        public.params.clip_norm,
    )?)
}

/// ε spent after `rounds` sampled attempts of the private run.
pub fn spent_epsilon(
    public: &RunParameters,
    privacy: &Privacy,
    rounds: u64,
) -> Result<f64, BudgetError> {
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
    let slack = rounds as f64 * OVERFLOW_PROBABILITY * (1.0 + libm::exp(epsilon));
    if slack.is_nan() || slack > half {
        return Err(BudgetError::NoDelta {
            delta: privacy.delta,
            rounds,
            epsilon,
        });
    }
    Ok(epsilon)
}

/// Sampled attempts a budget of `cap` allows: the largest `r ≤ limit` with `ε(r) ≤ cap`
/// (an `r` whose ε cannot be accounted within δ does not fit).
pub fn affordable_rounds(
    public: &RunParameters,
    privacy: &Privacy,
    cap: f64,
    limit: u64,
) -> Result<u64, BudgetError> {
    let fits = |r: u64| match spent_epsilon(public, privacy, r) {
        Ok(e) => Ok(e <= cap),
        Err(BudgetError::NoDelta { .. }) => Ok(false),
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
