//! The fixed-point number format shared by the reference training and the AIR.
//!
//! Every real quantity is an `i64` integer `v` standing for `v / 2^FRAC_BITS`, embedded into
//! the Goldilocks field (p = 2^64 - 2^32 + 1) as `v mod p`. Signed values with
//! `|v| < 2^62` therefore have exactly one field representative, and every equation the AIR
//! checks between such values holds over the integers as well, provided no intermediate
//! value reaches `2^62`. The headroom table in ARCHITECTURE.md (and [`headroom_bits`]) shows
//! the largest intermediate is below 2^56 for every shape this crate accepts.
//!
//! | quantity | scale | accepted range (raw) | enforced by |
//! |---|---|---|---|
//! | feature `x` | 2^16 | `[-2^21, 2^21)` (±32.0) | CSV loader; two 11-bit limbs looked up in the range table |
//! | label `y` | 1 | `{0, 1}`; a softmax's `0..K` | CSV loader; AIR booleanity, or a softmax's one-hot bits |
//! | weight `w`, bias `b` | 2^16 | `|w| < 2^24` (±256.0) | [`crate::Model::validate`]; verifier |
//! | clip norm `C` | 2^16 | `(0, 2^24)` | [`crate::RoundParams::validate`] |
//! | features `d` | – | `1..=MAX_FEATURES` (1024) | shape validation |
//! | batch `B` | – | `1..=MAX_BATCH` (1024) | shape validation |

use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;

/// Fraction bits of every fixed-point value.
pub const FRAC_BITS: u32 = 16;
/// The fixed-point representation of 1.0.
pub const ONE: i64 = 1 << FRAC_BITS;
/// Features are range-checked as `x + X_OFFSET` in `[0, 2^X_BITS)`.
pub const X_BITS: usize = 22;
/// Offset that makes the signed feature range non-negative.
pub const X_OFFSET: i64 = 1 << (X_BITS - 1);
/// Exclusive bound on `|w|`, `|b|` and `C` (raw).
pub const PARAM_BOUND: i64 = 1 << 24;
/// Most features a model may have.
pub const MAX_FEATURES: usize = 1024;
/// Most examples one proof may cover.
pub const MAX_BATCH: usize = 1024;
/// Most parameters a model may have (an MLP 1024 → 256 → 64 has 278,848).
pub const MAX_PARAMS: usize = 1 << 19;
/// Most parameters a model or an update may carry over the wire and in the audit log:
/// every model a proof covers, [`crate::statement::MAX_MLP_PARAMS`] (131,072; a logistic
/// model has at most `MAX_FEATURES + 1`, a softmax at most
/// [`crate::statement::MAX_SOFTMAX_PARAMS`]), so a 784 → 10 softmax (7,850) or a
/// 784 → 128 → 10 MLP (101,770) travels. The message limits make room for an update of
/// this many entries at their widest ([`MAX_WIRE_PARAMS_CBOR_BYTES`]; ARCHITECTURE.md,
/// "Bounded memory").
pub const MAX_WIRE_PARAMS: usize = crate::statement::MAX_MLP_PARAMS;

/// Most bytes of CBOR a vector of [`MAX_WIRE_PARAMS`] `i64`s takes: 9 per entry (a head
/// byte and 8 bytes) and a 9-byte array header, 1.13 MiB.
pub const MAX_WIRE_PARAMS_CBOR_BYTES: usize = 9 * MAX_WIRE_PARAMS + 9;

/// The field element representing a signed integer.
pub fn to_field(v: i64) -> Goldilocks {
    if v >= 0 {
        Goldilocks::from_u64(v as u64)
    } else {
        -Goldilocks::from_u64(v.unsigned_abs())
    }
}

/// The signed integer a field element represents, if it lies in `(-2^62, 2^62)`.
pub fn from_field(f: Goldilocks) -> Option<i64> {
    use p3_field::PrimeField64;
    let v = f.as_canonical_u64();
    const P: u64 = 0xFFFF_FFFF_0000_0001;
    const LIMIT: u64 = 1 << 62;
    if v < LIMIT {
        Some(v as i64)
    } else if P - v < LIMIT {
        Some(-((P - v) as i64))
    } else {
        None
    }
}

/// Converts a real number to fixed point, rounding to nearest.
pub fn quantize(v: f64) -> i64 {
    (v * ONE as f64).round() as i64
}

/// The real number a fixed-point value stands for.
pub fn dequantize(v: i64) -> f64 {
    v as f64 / ONE as f64
}

/// Whether a raw feature value lies in the range the AIR accepts.
pub fn feature_in_range(x: i64) -> bool {
    (-X_OFFSET..X_OFFSET).contains(&x)
}

/// `ceil(sqrt(n))` for `n >= 0`, exactly, by integer Newton iteration.
pub fn ceil_sqrt(n: i64) -> i64 {
    assert!(n >= 0, "ceil_sqrt of a negative number");
    if n < 2 {
        return n;
    }
    let mut x = (n as f64).sqrt() as i64;
    // Float sqrt can be off by one either way at this magnitude; settle exactly.
    while x > 0 && (x - 1) * (x - 1) >= n {
        x -= 1;
    }
    while x * x < n {
        x += 1;
    }
    x
}

/// log2 of the largest intermediate the AIR forms for a shape, for the headroom argument.
///
/// The dominant terms are the logit `z = Σ w_j x_j + b·ONE` and the squared norm
/// `N = Σ x_j^2 + ONE^2`; every other intermediate is bounded by 2^46 or less.
pub fn headroom_bits(num_features: usize, batch: usize) -> f64 {
    let d = num_features as f64;
    let z = (d + 1.0) * (PARAM_BOUND as f64) * (X_OFFSET as f64);
    let n = d * (X_OFFSET as f64).powi(2) + (ONE as f64).powi(2);
    let update = batch as f64 * ONE as f64 * X_OFFSET as f64;
    z.max(n).max(update).log2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_round_trip_of_signed_values() {
        for v in [0, 1, -1, ONE, -ONE, (1 << 61) + 7, -(1 << 61) - 7] {
            assert_eq!(from_field(to_field(v)), Some(v));
        }
        assert_eq!(from_field(to_field(1 << 62)), None);
    }

    #[test]
    fn ceil_sqrt_is_exact() {
        for n in [
            0i64,
            1,
            2,
            3,
            4,
            5,
            15,
            16,
            17,
            (1 << 50) + 3,
            (1 << 50) - 1,
            1 << 50,
        ] {
            let r = ceil_sqrt(n);
            assert!(r * r >= n, "{n}");
            assert!(r == 0 || (r - 1) * (r - 1) < n, "{n}");
        }
    }

    #[test]
    fn largest_shapes_stay_far_below_the_field_modulus() {
        assert!(headroom_bits(MAX_FEATURES, MAX_BATCH) < 56.0);
    }
}
