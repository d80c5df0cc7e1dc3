//! Range checks by lookup: a value in `[0, 2^n)` is `ceil(n / 11)` limbs of 11 bits, each
//! looked up in the `[0, 2^11)` range table; when 11 does not divide `n` the top limb is
//! looked up a second time shifted left by the missing bits, which makes the bound exact.

use p3_air::AirBuilder;
use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::Goldilocks;
use p3_lookup::InteractionBuilder;

use super::{RANGE_BUS, WitnessError};

/// Bits per limb.
pub const LIMB_BITS: usize = 11;
/// Entries of the range table.
pub const RANGE_SIZE: usize = 1 << LIMB_BITS;

/// Limbs a value of `bits` bits needs.
pub const fn limbs_for(bits: usize) -> usize {
    bits.div_ceil(LIMB_BITS)
}

/// The left shift that makes the top limb's second lookup exact (0: no second lookup).
pub const fn top_shift(bits: usize) -> usize {
    limbs_for(bits) * LIMB_BITS - bits
}

/// Lookups a range check of `bits` bits makes.
pub const fn lookups_for(bits: usize) -> usize {
    limbs_for(bits) + (top_shift(bits) != 0) as usize
}

/// The value limbs spell: `Σ limb_i · 2^(11 i)`.
pub fn limbs_value<AB: AirBuilder>(limbs: &[AB::Var]) -> AB::Expr {
    limbs.iter().rev().fold(AB::Expr::ZERO, |acc, &l| {
        acc * AB::Expr::from_u64(RANGE_SIZE as u64) + l.into()
    })
}

/// Looks up every limb of a `bits`-bit value (and the shifted top limb).
pub fn eval_range<AB: InteractionBuilder>(builder: &mut AB, limbs: &[AB::Var], bits: usize) {
    debug_assert_eq!(limbs.len(), limbs_for(bits));
    for &limb in limbs {
        builder.push_interaction(RANGE_BUS, [limb], 1);
    }
    let shift = top_shift(bits);
    if shift != 0 {
        let top: AB::Expr = limbs[limbs.len() - 1].into();
        builder.push_interaction(RANGE_BUS, [top * AB::Expr::from_u64(1 << shift)], 1);
    }
}

/// Writes the limbs of `value`, which must lie in `[0, 2^bits)`.
pub fn write_limbs(
    limbs: &mut [Goldilocks],
    value: i64,
    bits: usize,
    what: &'static str,
) -> Result<(), WitnessError> {
    debug_assert_eq!(limbs.len(), limbs_for(bits));
    if value < 0 || (bits < 63 && value >> bits != 0) {
        return Err(WitnessError::Range { what, bits });
    }
    for (i, limb) in limbs.iter_mut().enumerate() {
        *limb = Goldilocks::from_i64((value >> (i * LIMB_BITS)) & (RANGE_SIZE as i64 - 1));
    }
    Ok(())
}

/// Writes the low `bits` bits of `value` (two's complement), whatever its range: a
/// forger's limbs, which pass the `bits`-bit range check and spell another value.
pub fn write_limbs_truncated(limbs: &mut [Goldilocks], value: i64, bits: usize) {
    debug_assert!(bits < 63);
    let low = value & ((1 << bits) - 1);
    for (i, limb) in limbs.iter_mut().enumerate() {
        *limb = Goldilocks::from_i64((low >> (i * LIMB_BITS)) & (RANGE_SIZE as i64 - 1));
    }
}

/// The table entries a range check's lookups hit, for the table's multiplicities.
pub fn looked_up(limbs: &[Goldilocks], bits: usize) -> impl Iterator<Item = Goldilocks> + '_ {
    let shift = top_shift(bits);
    let top = (shift != 0).then(|| limbs[limbs.len() - 1] * Goldilocks::from_u64(1 << shift));
    limbs.iter().copied().chain(top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p3_field::PrimeField64;

    #[test]
    fn limb_counts() {
        assert_eq!((limbs_for(22), top_shift(22), lookups_for(22)), (2, 0, 2));
        assert_eq!((limbs_for(28), top_shift(28), lookups_for(28)), (3, 5, 4));
        assert_eq!((limbs_for(11), top_shift(11), lookups_for(11)), (1, 0, 1));
    }

    #[test]
    fn out_of_range_values_are_errors() {
        let mut limbs = [Goldilocks::ZERO; 3];
        assert!(write_limbs(&mut limbs, 1 << 28, 28, "x").is_err());
        assert!(write_limbs(&mut limbs, -1, 28, "x").is_err());
        write_limbs(&mut limbs, (1 << 28) - 1, 28, "x").unwrap();
        let entries: Vec<_> = looked_up(&limbs, 28).collect();
        assert_eq!(entries.len(), 4);
        assert!(
            entries
                .iter()
                .all(|e| e.as_canonical_u64() < RANGE_SIZE as u64)
        );
    }
}
