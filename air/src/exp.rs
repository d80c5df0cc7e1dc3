//! The exponential of the softmax, exactly: a table of 512 linear segments over `[-16, 0)`
//! whose knots are `exp` rounded to `2^-16`, with `exp(0) = 1` and 0 below the table.
//!
//! The softmax only ever exponentiates `u = z - max(z) ≤ 0` (logit differences at scale
//! `2^32`), so the table needs no positive half:
//!
//! - `u = 0` (the largest logit, and any logit tied with it): `e = ONE`;
//! - `q = floor(u / 2^27) < -512` (`u < -16`): `e = 0`;
//! - otherwise segment `k = q + 512 ∈ [0, 512)` with `rem = u - q·2^27 ∈ [0, 2^27)`:
//!   `e = a_k + floor(b_k · rem / 2^27)`, with `a_k = round(exp(-16 + k/32) · 2^16)`,
//!   `a_512 = ONE` and `b_k = a_{k+1} - a_k`.
//!
//! Error against the real exponential, at every `u ≤ 0`: linear interpolation between
//! exact knots errs by at most `h²/8 · max exp'' = (1/32)²/8 · 1 = 1.22·10⁻⁴` (in the
//! top segment; `e^t` times that below), rounding the knots adds at most `2^-17`, the
//! floor less than `2^-16`, and the tail at most `e^-16 = 1.1·10⁻⁷`. Total below
//! `1.45·10⁻⁴ < 2^-12.7`; `tests::error_against_f64_is_below_the_documented_bound` measures
//! it on a dense grid. Since the largest logit's term is exactly `ONE`, the softmax
//! denominator is at least `ONE` and these absolute errors stay absolute in the
//! probabilities.
//!
//! The knots come from `f64` arithmetic; `knots_are_far_from_rounding_ties` checks that no
//! `exp` result lies within `10⁻⁶` of a unit of a rounding boundary, so every machine
//! builds the same table.

use std::sync::OnceLock;

use crate::fixed::{FRAC_BITS, ONE};
pub use crate::segments::{SEGMENTS, Segment};
use crate::segments::{interpolate, round_knots, segment_of};
/// `log2` of a segment's width in logit units (scale `2^32`): `1/32`.
pub const SEGMENT_BITS: u32 = 2 * FRAC_BITS - 5;
/// `q` of the first segment: the table starts at `u = -16`.
pub const FIRST_SEGMENT: i64 = -(SEGMENTS as i64);

/// Which of the three cases a logit difference falls in, with every intermediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpSteps {
    /// `u = 0`: the output is `ONE`.
    pub top: bool,
    /// `floor(u / 2^27)` (0 when `top`).
    pub quotient: i64,
    /// `u - quotient · 2^27`, in `[0, 2^27)`.
    pub remainder: i64,
    /// `u < -16`: the output is 0.
    pub below: bool,
    /// The segment (middle case), else zeros.
    pub segment: Segment,
    /// `b_k · rem - 2^27 · (e - a_k)`, the interpolation's floor remainder (middle case).
    pub interpolation_remainder: i64,
    /// `e` at scale `2^16`.
    pub value: i64,
}

/// The 513 knots `a_0 ..= a_512`.
fn knots() -> &'static [i64; SEGMENTS + 1] {
    static KNOTS: OnceLock<[i64; SEGMENTS + 1]> = OnceLock::new();
    KNOTS.get_or_init(|| round_knots(knot_exact))
}

fn knot_exact(k: usize) -> f64 {
    ((k as f64 + FIRST_SEGMENT as f64) / 32.0).exp()
}

/// Segment `k` of the table (`k < SEGMENTS`).
pub fn segment(k: usize) -> Segment {
    segment_of(knots(), k)
}

/// `exp(u)` of a logit difference `u ≤ 0` at scale `2^32`, with the intermediates the
/// proof checks.
///
/// # Panics
///
/// If `u > 0`: the softmax subtracts the largest logit first, so a positive `u` is a bug
/// in the caller, not an input.
pub fn exp(u: i64) -> ExpSteps {
    assert!(u <= 0, "exp is tabulated for u ≤ 0 only");
    let quotient = u >> SEGMENT_BITS;
    let remainder = u - (quotient << SEGMENT_BITS);
    let top = u == 0;
    let below = quotient < FIRST_SEGMENT;
    let mut steps = ExpSteps {
        top,
        quotient,
        remainder,
        below,
        segment: Segment { start: 0, rise: 0 },
        interpolation_remainder: 0,
        value: if top { ONE } else { 0 },
    };
    if !top && !below {
        let seg = segment((quotient - FIRST_SEGMENT) as usize);
        (steps.value, steps.interpolation_remainder) = interpolate(seg, remainder, SEGMENT_BITS);
        steps.segment = seg;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real(u: i64) -> f64 {
        (u as f64 / (ONE as f64 * ONE as f64)).exp()
    }

    #[test]
    fn error_against_f64_is_below_the_documented_bound() {
        let worst = crate::segments::worst_error_on_grid(-40 << 32, 0, |u| exp(u).value, real);
        eprintln!(
            "worst |exp_table - exp| on the grid: {worst:.3e} (2^{:.2})",
            worst.log2()
        );
        assert!(
            worst < 1.45e-4,
            "worst error {worst:e}, above the documented bound"
        );
        assert!(worst > 1e-5, "the measurement is not vacuous: {worst:e}");
    }

    #[test]
    fn knots_are_far_from_rounding_ties() {
        crate::segments::assert_knots_far_from_ties(knot_exact);
    }

    #[test]
    fn the_cases_meet_at_the_ends_and_the_output_is_monotone() {
        assert!(exp(-(16i64 << 32) - 1).below);
        assert!(!exp(-(16i64 << 32)).below);
        assert!(exp(0).top);
        assert_eq!(exp(0).value, ONE);
        assert!(!exp(-1).top);
        assert_eq!(
            segment(SEGMENTS - 1).start + segment(SEGMENTS - 1).rise,
            ONE
        );
        let mut last = 0;
        for i in -1200i64..=0 {
            let v = exp(i * (1 << 25)).value;
            assert!(v >= last, "not monotone at {i}");
            last = v;
        }
    }

    #[test]
    #[should_panic(expected = "u ≤ 0")]
    fn a_positive_difference_is_a_caller_bug() {
        exp(1);
    }

    #[test]
    fn intermediates_satisfy_the_equations_the_proof_checks() {
        for u in [
            -(1i64 << 56),
            -(17i64 << 32),
            -12345678901,
            -987654321,
            -1,
            0,
        ] {
            let s = exp(u);
            assert_eq!(s.top, u == 0);
            let middle = !s.below && !s.top;
            crate::segments::assert_interpolation_equations(
                u,
                s.quotient,
                s.remainder,
                SEGMENT_BITS,
                middle.then_some((s.segment, s.value, s.interpolation_remainder)),
            );
        }
    }
}
