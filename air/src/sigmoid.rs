//! The logistic sigmoid of the proof, exactly: a table of 512 linear segments over
//! `[-16, 16)` whose knots are the sigmoid rounded to `2^-16`, clamped outside.
//!
//! For a logit `z` at scale `2^32` (a sum of weight × feature products at `2^16` each):
//!
//! - `q = floor(z / 2^28)` (segments of width `1/16`) and `rem = z - q·2^28 ∈ [0, 2^28)`;
//! - `q < -256` (`z < -16`): `σ = 0`;
//! - `q ≥ 256` (`z ≥ 16`): `σ = ONE`;
//! - otherwise segment `k = q + 256 ∈ [0, 512)`:
//!   `σ = a_k + floor(b_k · rem / 2^28)`, with `a_k = round(σ(-16 + k/16) · 2^16)` and
//!   `b_k = a_{k+1} - a_k`.
//!
//! Error against the real sigmoid, at every logit: linear interpolation between exact
//! knots errs by at most `h²/8 · max|σ''| = (1/16)²/8 · 0.0962 = 4.7·10⁻⁵`; rounding the
//! knots adds at most `2^-17`, the floor less than `2^-16`, and the clamped tails at most
//! `σ(-16) = 1.1·10⁻⁷`. Total below `7.0·10⁻⁵ < 2^-13.8` (the aim was `2^-12`);
//! `tests::error_against_f64_is_below_the_documented_bound` measures it on a dense grid.
//!
//! The knots come from `f64` arithmetic, so they would differ between machines only if an
//! `exp` result fell within an ulp of a rounding boundary: `knots_are_far_from_rounding_ties`
//! checks that every knot is at least `10⁻⁶` of a unit away from one.

use std::sync::OnceLock;

use crate::fixed::{FRAC_BITS, ONE};
pub use crate::segments::{SEGMENTS, Segment};
use crate::segments::{interpolate, round_knots, segment_of};
/// `log2` of a segment's width in logit units (scale `2^32`): `1/16`.
pub const SEGMENT_BITS: u32 = 2 * FRAC_BITS - 4;
/// `q` of the first segment: the table starts at `z = -16`.
pub const FIRST_SEGMENT: i64 = -(SEGMENTS as i64) / 2;

/// Which of the three cases a logit falls in, with every intermediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigmoidSteps {
    /// `floor(z / 2^28)`.
    pub quotient: i64,
    /// `z - quotient · 2^28`, in `[0, 2^28)`.
    pub remainder: i64,
    /// `z < -16`: the output is 0.
    pub below: bool,
    /// `z ≥ 16`: the output is `ONE`.
    pub above: bool,
    /// The segment (middle case), else zeros.
    pub segment: Segment,
    /// `b_k · rem - 2^28 · (σ - a_k)`, the interpolation's floor remainder (middle case).
    pub interpolation_remainder: i64,
    /// `σ` at scale `2^16`.
    pub value: i64,
}

/// The 513 knots `a_0 ..= a_512`.
fn knots() -> &'static [i64; SEGMENTS + 1] {
    static KNOTS: OnceLock<[i64; SEGMENTS + 1]> = OnceLock::new();
    KNOTS.get_or_init(|| round_knots(knot_exact))
}

fn knot_exact(k: usize) -> f64 {
    let z = (k as f64 + FIRST_SEGMENT as f64) / 16.0;
    1.0 / (1.0 + (-z).exp())
}

/// Segment `k` of the table (`k < SEGMENTS`).
pub fn segment(k: usize) -> Segment {
    segment_of(knots(), k)
}

/// The sigmoid of a logit at scale `2^32`, with the intermediates the proof checks.
pub fn sigmoid(logit: i64) -> SigmoidSteps {
    let quotient = logit >> SEGMENT_BITS;
    let remainder = logit - (quotient << SEGMENT_BITS);
    let below = quotient < FIRST_SEGMENT;
    let above = quotient >= FIRST_SEGMENT + SEGMENTS as i64;
    let mut steps = SigmoidSteps {
        quotient,
        remainder,
        below,
        above,
        segment: Segment { start: 0, rise: 0 },
        interpolation_remainder: 0,
        value: if above { ONE } else { 0 },
    };
    if !below && !above {
        let seg = segment((quotient - FIRST_SEGMENT) as usize);
        (steps.value, steps.interpolation_remainder) = interpolate(seg, remainder, SEGMENT_BITS);
        steps.segment = seg;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real(logit: i64) -> f64 {
        let z = logit as f64 / (ONE as f64 * ONE as f64);
        1.0 / (1.0 + (-z).exp())
    }

    #[test]
    fn error_against_f64_is_below_the_documented_bound() {
        let worst =
            crate::segments::worst_error_on_grid(-40 << 32, 40 << 32, |z| sigmoid(z).value, real);
        eprintln!(
            "worst |σ_table - σ| on the grid: {worst:.3e} (2^{:.2})",
            worst.log2()
        );
        assert!(
            worst < 7.0e-5,
            "worst error {worst:e}, above the documented bound"
        );
        assert!(worst > 1e-6, "the measurement is not vacuous: {worst:e}");
    }

    #[test]
    fn knots_are_far_from_rounding_ties() {
        crate::segments::assert_knots_far_from_ties(knot_exact);
    }

    #[test]
    fn the_cases_meet_at_the_ends_and_the_output_is_monotone() {
        assert!(sigmoid(-(16i64 << 32) - 1).below);
        assert!(!sigmoid(-(16i64 << 32)).below);
        assert!(sigmoid(16i64 << 32).above);
        assert!(!sigmoid((16i64 << 32) - 1).above);
        assert_eq!(sigmoid(0).value, ONE / 2);
        let mut previous = 0;
        for i in -600..600 {
            let v = sigmoid(i * (1 << 26)).value;
            assert!(v >= previous, "not monotone at {i}");
            previous = v;
        }
        assert_eq!(
            segment(SEGMENTS - 1).start + segment(SEGMENTS - 1).rise,
            ONE
        );
    }

    #[test]
    fn intermediates_satisfy_the_equations_the_proof_checks() {
        for logit in [
            -(1i64 << 54),
            -(17i64 << 32),
            -12345678901,
            0,
            987654321,
            1 << 50,
        ] {
            let s = sigmoid(logit);
            let middle = !s.below && !s.above;
            crate::segments::assert_interpolation_equations(
                logit,
                s.quotient,
                s.remainder,
                SEGMENT_BITS,
                middle.then_some((s.segment, s.value, s.interpolation_remainder)),
            );
        }
    }
}
