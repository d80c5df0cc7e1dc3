//! What the table sigmoid ([`crate::sigmoid`]) and the table exponential ([`crate::exp`])
//! share: 512 linear segments between knots rounded to `2^-16`, and the floor
//! interpolation the proof checks on a segment.

use crate::fixed::ONE;

/// Segments in a table.
pub const SEGMENTS: usize = 512;

/// One segment of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The function at the segment's start, at scale `2^16`.
    pub start: i64,
    /// Its rise across the segment, at scale `2^16`.
    pub rise: i64,
}

/// The knots `a_0 ..= a_512`: `exact(k)` rounded to scale `2^16`.
pub(crate) fn round_knots(exact: fn(usize) -> f64) -> [i64; SEGMENTS + 1] {
    let mut a = [0i64; SEGMENTS + 1];
    for (k, knot) in a.iter_mut().enumerate() {
        *knot = (exact(k) * ONE as f64).round() as i64;
    }
    a
}

/// Segment `k` between knots `a_k` and `a_{k+1}`.
pub(crate) fn segment_of(knots: &[i64; SEGMENTS + 1], k: usize) -> Segment {
    Segment {
        start: knots[k],
        rise: knots[k + 1] - knots[k],
    }
}

/// `a + floor(b · rem / 2^bits)` and the floor's remainder `b · rem - 2^bits · (value - a)`.
pub(crate) fn interpolate(segment: Segment, remainder: i64, bits: u32) -> (i64, i64) {
    let scaled = segment.rise * remainder;
    let step = scaled >> bits;
    (segment.start + step, scaled - (step << bits))
}

/// Checks that no knot lies within `10⁻⁶` of a unit of a rounding tie, so `f64`
/// differences between machines cannot change the table.
#[cfg(test)]
pub(crate) fn assert_knots_far_from_ties(exact: fn(usize) -> f64) {
    for k in 0..=SEGMENTS {
        let scaled = exact(k) * ONE as f64;
        let distance = (scaled - scaled.floor() - 0.5).abs();
        assert!(distance > 1e-6, "knot {k} is {distance:e} from a tie");
    }
}

/// The largest `|table(v)/ONE - real(v)|` for `v` every `2^-12` of a unit (scale `2^32`)
/// from `from` to `to`, and one raw unit either side of each point (within the range).
#[cfg(test)]
pub(crate) fn worst_error_on_grid(
    from: i64,
    to: i64,
    table: impl Fn(i64) -> i64,
    real: impl Fn(i64) -> f64,
) -> f64 {
    let mut worst = 0f64;
    let mut v = from;
    while v <= to {
        for probe in [v - 1, v, (v + 1).min(to)] {
            worst = worst.max((table(probe) as f64 / ONE as f64 - real(probe)).abs());
        }
        v += 1 << 20;
    }
    worst
}

/// Checks the equations the proof checks for a value `v = q·2^bits + rem` interpolated on
/// its segment.
#[cfg(test)]
pub(crate) fn assert_interpolation_equations(
    v: i64,
    quotient: i64,
    remainder: i64,
    bits: u32,
    interpolated: Option<(Segment, i64, i64)>,
) {
    assert_eq!(quotient * (1 << bits) + remainder, v);
    assert!((0..1 << bits).contains(&remainder));
    if let Some((segment, value, floor_remainder)) = interpolated {
        let lhs = value * (1 << bits) + floor_remainder;
        assert_eq!(lhs, segment.start * (1 << bits) + segment.rise * remainder);
        assert!((0..1 << bits).contains(&floor_remainder));
    }
}
