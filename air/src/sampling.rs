//! Hidden Poisson sampling: which committed rows a round uses, decided by a pseudorandom
//! function of a secret key the participant committed to at enrolment, so that nobody but
//! the participant learns which rows (or how many) are in a batch (ARCHITECTURE.md, "Hidden
//! Poisson sampling").
//!
//! - The key is four uniformly random field elements (about 256 bits). Its public
//!   [`KeyCommitment`] is the first four output lanes of the Poseidon2 permutation of
//!   `[key, 0, 0, 0, 0, 0, KEY_DOMAIN, 0, 0]`; the key has full entropy, so the commitment
//!   hides it (the permutation is modelled as random).
//! - Block `b ≥ 1` of the PRF is the permutation of `[key, seed, b, PRF_DOMAIN, round, 0]`,
//!   `seed` being the round seed's four little-endian 64-bit words reduced into the field:
//!   a coordinator that announced one seed twice would still get fresh samples in another
//!   round.
//!   Its eight output lanes `0, 1, 2, 3, 8, 9, 10, 11` are the PRF values of rows
//!   `8(b − 1)..8b`.
//! - A PRF value `v` is split as `v = low + 2^32·high` with both halves in `[0, 2^32)` and
//!   `high ≠ 2^32 − 1`, a split every field element but `p − 1` has exactly once. Row `i`
//!   is sampled iff `low < t`, for the public threshold `t` of the [`SamplingRate`]: each
//!   row independently with probability `q' = t / 2^32` (up to a bias below `2^-64`,
//!   see [`SamplingRate::probability`]).
//! - The proof has [`capacity`] slots, enough that more sampled rows than slots happens with
//!   probability below [`OVERFLOW_PROBABILITY`]; a participant whose sample overflows cannot
//!   prove and abstains from the attempt.

use p3_field::{PrimeCharacteristicRing, PrimeField64};
use p3_goldilocks::Goldilocks;
use p3_symmetric::Permutation;
use rand::Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::hash::{DIGEST_ELEMS, WIDTH, permutation};

/// Rows whose PRF values one permutation yields.
pub const ROWS_PER_PERMUTATION: usize = 8;
/// Bits of the threshold's resolution: `q' = t / 2^RATE_BITS`.
pub const RATE_BITS: u32 = 32;
/// Input lane of the key domain tag (and of the PRF's).
pub const DOMAIN_LANE: usize = 9;
/// Input lane of the PRF's block number.
pub const BLOCK_LANE: usize = 8;
/// Input lane of the round number.
pub const ROUND_LANE: usize = 10;
/// Domain tag of the key commitment.
pub const KEY_DOMAIN: u64 = 0x7a6b_6665_645f_6b79; // "zkfed_ky"
/// Domain tag of the PRF blocks.
pub const PRF_DOMAIN: u64 = 0x7a6b_6665_645f_7066; // "zkfed_pf"
/// The permutation's output lanes that hold a block's PRF values, in row order.
pub const PRF_LANES: [usize; ROWS_PER_PERMUTATION] = [0, 1, 2, 3, 8, 9, 10, 11];
/// Probability, for every dataset and rate, that a round's sample has more rows than the
/// proof's [`capacity`].
pub const OVERFLOW_PROBABILITY: f64 = 1e-9;
/// Most rows a hidden-sampling proof covers: its PRF table has a row per eight of them.
pub const MAX_SAMPLED_ROWS: u64 = 1 << 20;

/// A participant's secret sampling key: it decides which rows are used, so `Debug` does
/// not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SamplingKey([Goldilocks; DIGEST_ELEMS]);

impl std::fmt::Debug for SamplingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SamplingKey(..)")
    }
}

/// The public commitment to a [`SamplingKey`] (canonical field elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyCommitment(pub [u64; DIGEST_ELEMS]);

/// A sampling rate on the `2^-32` grid: each row is sampled when its PRF value's low half is
/// below `threshold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SamplingRate {
    /// `t`, in `1..=2^32`.
    pub threshold: u64,
}

/// A key or a rate that cannot be used.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum SamplingError {
    /// A rate outside `(0, 1]` or below the grid's resolution.
    #[error("sampling rate {0} is not in [2^-32, 1]")]
    Rate(f64),
    /// A threshold outside `1..=2^32`.
    #[error("sampling threshold {0} is not in 1..=2^32")]
    Threshold(u64),
    /// Stored key bytes that do not decode.
    #[error("sampling key is corrupt: {0}")]
    Corrupt(&'static str),
}

impl SamplingKey {
    /// A fresh key from `rng` (pass an OS-seeded generator).
    pub fn generate<R: Rng>(rng: &mut R) -> Self {
        Self([0; DIGEST_ELEMS].map(|_: u8| uniform_element(rng)))
    }

    /// The key's public commitment.
    pub fn commitment(&self) -> KeyCommitment {
        let out = permutation().permute(commitment_input(&self.0));
        KeyCommitment(std::array::from_fn(|i| out[i].as_canonical_u64()))
    }

    /// The key's field elements (the prover's witness).
    pub fn elements(&self) -> [Goldilocks; DIGEST_ELEMS] {
        self.0
    }

    /// Encodes the key for durable storage (32 bytes, little endian).
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0; 32];
        for (chunk, e) in out.chunks_exact_mut(8).zip(&self.0) {
            chunk.copy_from_slice(&e.as_canonical_u64().to_le_bytes());
        }
        out
    }

    /// Decodes [`Self::to_bytes`], refusing non-canonical elements.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SamplingError> {
        let bytes: &[u8; 32] = bytes
            .try_into()
            .map_err(|_| SamplingError::Corrupt("not 32 bytes"))?;
        let mut key = [Goldilocks::ZERO; DIGEST_ELEMS];
        for (e, chunk) in key.iter_mut().zip(bytes.chunks_exact(8)) {
            let v = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            if v >= Goldilocks::ORDER_U64 {
                return Err(SamplingError::Corrupt("an element is not canonical"));
            }
            *e = Goldilocks::from_u64(v);
        }
        Ok(Self(key))
    }
}

impl KeyCommitment {
    /// The commitment as field elements.
    pub fn elements(&self) -> [Goldilocks; DIGEST_ELEMS] {
        self.0.map(Goldilocks::from_u64)
    }

    /// Whether every element is canonical (a decoded commitment may not be).
    pub fn is_canonical(&self) -> bool {
        self.0.iter().all(|&v| v < Goldilocks::ORDER_U64)
    }
}

impl SamplingRate {
    /// The grid rate nearest below `q` (at least one grid step).
    pub fn from_probability(q: f64) -> Result<Self, SamplingError> {
        if !(q.is_finite() && q > 0.0 && q <= 1.0) {
            return Err(SamplingError::Rate(q));
        }
        let threshold = (q * (1u64 << RATE_BITS) as f64).floor() as u64;
        Self::new(threshold).map_err(|_| SamplingError::Rate(q))
    }

    /// A rate from its threshold.
    pub fn new(threshold: u64) -> Result<Self, SamplingError> {
        match threshold {
            1..=0x1_0000_0000 => Ok(Self { threshold }),
            _ => Err(SamplingError::Threshold(threshold)),
        }
    }

    /// `q' = t / 2^32`, the rate the accountant and the normalisation use. The real
    /// inclusion probability is `(t·(2^32 − 1) + 1) / p`, which exceeds `q'` by less than
    /// `2^-64`: the one unrepresentable value `p − 1` has low half 0.
    pub fn probability(&self) -> f64 {
        self.threshold as f64 / (1u64 << RATE_BITS) as f64
    }

    /// Whether a PRF value samples its row.
    pub fn samples(&self, value: Goldilocks) -> bool {
        split(value).0 < self.threshold
    }
}

/// `(low, high)` with `v = low + 2^32·high`, both below `2^32` (for `v = p − 1`,
/// `high = 2^32 − 1`, which the proof refuses).
pub fn split(value: Goldilocks) -> (u64, u64) {
    let v = value.as_canonical_u64();
    (v & 0xFFFF_FFFF, v >> 32)
}

/// The round seed as four field elements (little-endian 64-bit words, reduced).
pub fn seed_elements(seed: &[u8; 32]) -> [Goldilocks; 4] {
    std::array::from_fn(|i| {
        Goldilocks::from_u64(u64::from_le_bytes(
            seed[8 * i..8 * i + 8].try_into().expect("8 bytes"),
        ))
    })
}

/// [`seed_elements`] as canonical integers: two seeds the PRF cannot tell apart have equal
/// words.
pub fn seed_words(seed: &[u8; 32]) -> [u64; 4] {
    seed_elements(seed).map(|e| e.as_canonical_u64())
}

/// The permutation input of the key commitment.
pub fn commitment_input(key: &[Goldilocks; DIGEST_ELEMS]) -> [Goldilocks; WIDTH] {
    let mut input = [Goldilocks::ZERO; WIDTH];
    input[..DIGEST_ELEMS].copy_from_slice(key);
    input[DOMAIN_LANE] = Goldilocks::from_u64(KEY_DOMAIN);
    input
}

/// Which attempt a sample is for: the round's number and the attempt's seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draw<'a> {
    /// The attempt's public seed.
    pub seed: &'a [u8; 32],
    /// The round number.
    pub round: u64,
}

/// The permutation input of PRF block `block` (from 1).
pub fn prf_input(
    key: &[Goldilocks; DIGEST_ELEMS],
    draw: Draw<'_>,
    block: u64,
) -> [Goldilocks; WIDTH] {
    let mut input = [Goldilocks::ZERO; WIDTH];
    input[..DIGEST_ELEMS].copy_from_slice(key);
    input[DIGEST_ELEMS..2 * DIGEST_ELEMS].copy_from_slice(&seed_elements(draw.seed));
    input[BLOCK_LANE] = Goldilocks::from_u64(block);
    input[DOMAIN_LANE] = Goldilocks::from_u64(PRF_DOMAIN);
    input[ROUND_LANE] = Goldilocks::from_u64(draw.round);
    input
}

/// The PRF values of the rows of block `block` (from 1): rows `8(block − 1)..8·block`.
pub fn prf_block(
    key: &SamplingKey,
    draw: Draw<'_>,
    block: u64,
) -> [Goldilocks; ROWS_PER_PERMUTATION] {
    let out = permutation().permute(prf_input(&key.0, draw, block));
    PRF_LANES.map(|lane| out[lane])
}

/// The rows of a `rows`-row dataset sampled in `draw`'s attempt, ascending.
pub fn sampled_rows(key: &SamplingKey, draw: Draw<'_>, rows: u64, rate: SamplingRate) -> Vec<u64> {
    let blocks = rows.div_ceil(ROWS_PER_PERMUTATION as u64);
    let mut sampled = Vec::new();
    for block in 1..=blocks {
        let base = (block - 1) * ROWS_PER_PERMUTATION as u64;
        for (lane, value) in prf_block(key, draw, block).into_iter().enumerate() {
            let row = base + lane as u64;
            if row < rows && rate.samples(value) {
                sampled.push(row);
            }
        }
    }
    sampled
}

/// The proof's slots for a `rows`-row dataset sampled at `rate`: the smallest `B ≥ 1` with
/// `P[Binomial(rows, q') > B] < OVERFLOW_PROBABILITY`. Prover and verifier compute it with
/// the same IEEE arithmetic and `libm`'s software functions, so they agree on every machine.
pub fn capacity(rows: u64, rate: SamplingRate) -> usize {
    let q = rate.probability();
    if rows == 0 {
        return 1;
    }
    if q >= 1.0 {
        return rows as usize;
    }
    let n = rows as f64;
    let (ln_q, ln_not_q) = (libm::log(q), libm::log1p(-q));
    let log_choose =
        |k: f64| libm::lgamma(n + 1.0) - libm::lgamma(k + 1.0) - libm::lgamma(n - k + 1.0);
    let pmf = |k: u64| {
        let k = k as f64;
        libm::exp(log_choose(k) + k * ln_q + (n - k) * ln_not_q)
    };
    // Terms from the mean up to where they stop mattering; the tail above the mean's floor
    // is at least about a half, far above the bound, so the answer lies in this range.
    let start = (n * q).floor() as u64;
    let mut terms = Vec::new();
    let mut k = start;
    while k <= rows {
        let term = pmf(k);
        terms.push(term);
        if k > start + 16 && term < OVERFLOW_PROBABILITY * 1e-12 {
            break;
        }
        k += 1;
    }
    // tail[i] = P[X ≥ start + i] over the computed terms.
    let mut tail = 0.0;
    let mut answer = start + terms.len() as u64 - 1;
    for (i, term) in terms.iter().enumerate().rev() {
        // Before adding term i, `tail` is P[X > start + i].
        if tail < OVERFLOW_PROBABILITY {
            answer = start + i as u64;
        }
        tail += term;
    }
    answer.clamp(1, rows) as usize
}

fn uniform_element<R: Rng>(rng: &mut R) -> Goldilocks {
    loop {
        let v = rng.next_u64();
        if v < Goldilocks::ORDER_U64 {
            return Goldilocks::from_u64(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn key(seed: u64) -> SamplingKey {
        SamplingKey::generate(&mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn the_sample_depends_on_key_and_seed_and_has_the_rate() {
        let rate = SamplingRate::from_probability(0.1).unwrap();
        let draw = |seed: &'static [u8; 32], round| Draw { seed, round };
        let a = sampled_rows(&key(1), draw(&[7; 32], 1), 20_000, rate);
        assert_eq!(a, sampled_rows(&key(1), draw(&[7; 32], 1), 20_000, rate));
        assert_ne!(a, sampled_rows(&key(2), draw(&[7; 32], 1), 20_000, rate));
        assert_ne!(a, sampled_rows(&key(1), draw(&[8; 32], 1), 20_000, rate));
        // The same seed announced in another round draws another sample.
        assert_ne!(a, sampled_rows(&key(1), draw(&[7; 32], 2), 20_000, rate));
        // Mean 2000, standard deviation about 42: six of them either way.
        assert!((1750..2250).contains(&a.len()), "{} sampled", a.len());
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert!(a.iter().all(|&r| r < 20_000));
        let everything = SamplingRate::new(1 << 32).unwrap();
        let all = sampled_rows(&key(1), draw(&[7; 32], 1), 13, everything);
        assert_eq!(all.len(), 13);
    }

    #[test]
    fn rates_live_on_the_grid() {
        let r = SamplingRate::from_probability(0.01).unwrap();
        assert_eq!(r.threshold, 42_949_672);
        assert!(r.probability() <= 0.01 && r.probability() > 0.01 - 1e-9);
        for bad in [0.0, -0.1, 1.5, f64::NAN, 1e-12] {
            assert!(SamplingRate::from_probability(bad).is_err(), "{bad}");
        }
        assert!(SamplingRate::new(0).is_err());
        assert!(SamplingRate::new((1 << 32) + 1).is_err());
    }

    #[test]
    fn keys_round_trip_and_commitments_bind_them() {
        let k = key(3);
        let again = SamplingKey::from_bytes(&k.to_bytes()).unwrap();
        assert!(again == k);
        assert_eq!(again.commitment(), k.commitment());
        assert_ne!(key(4).commitment(), k.commitment());
        assert!(k.commitment().is_canonical());
        assert!(SamplingKey::from_bytes(&[0xFF; 32]).is_err());
        assert!(SamplingKey::from_bytes(&[0; 31]).is_err());
    }

    /// The exact binomial tail, summed in f64 from the pmf's recurrence.
    fn exact_tail_above(n: u64, q: f64, b: u64) -> f64 {
        let mut pmf = (1.0 - q).powf(n as f64);
        let mut below = 0.0;
        for k in 0..=b {
            below += pmf;
            pmf *= (n - k) as f64 / (k + 1) as f64 * q / (1.0 - q);
        }
        1.0 - below
    }

    #[test]
    fn capacity_is_the_smallest_that_bounds_the_overflow() {
        for (n, q) in [(114, 0.1), (10_000, 0.01), (500, 0.3), (1_000, 0.001)] {
            let rate = SamplingRate::from_probability(q).unwrap();
            let b = capacity(n, rate) as u64;
            let p = rate.probability();
            let mean = n as f64 * p;
            assert!(b as f64 > mean, "n={n} q={q}: {b}");
            // The tail above b is below the bound, the tail above b - 1 is not (the exact
            // sum loses precision near 1e-9 only in its last digits).
            let above = tail_by_terms(n, p, b);
            let above_less = tail_by_terms(n, p, b - 1);
            assert!(above < OVERFLOW_PROBABILITY, "n={n} q={q}: {above}");
            assert!(above_less >= OVERFLOW_PROBABILITY || b == 1, "n={n} q={q}");
            if n <= 1000 {
                assert!((exact_tail_above(n, p, b) - above).abs() < 1e-12);
            }
        }
        assert_eq!(capacity(7, SamplingRate::new(1 << 32).unwrap()), 7);
        assert_eq!(capacity(3, SamplingRate::new(1).unwrap()), 1);
    }

    /// `P[X > b]` by summing terms above `b` (accurate in the tail).
    fn tail_by_terms(n: u64, q: f64, b: u64) -> f64 {
        let mut pmf = (1.0 - q).powf(n as f64);
        let mut tail = 0.0;
        for k in 0..n {
            if k > b {
                tail += pmf;
            }
            pmf *= (n - k) as f64 / (k + 1) as f64 * q / (1.0 - q);
        }
        tail + if n > b { pmf } else { 0.0 }
    }

    #[test]
    fn seeds_the_prf_cannot_tell_apart_have_equal_words() {
        let mut a = [0u8; 32];
        a[..8].copy_from_slice(&5u64.to_le_bytes());
        let mut b = a;
        b[..8].copy_from_slice(&(5 + Goldilocks::ORDER_U64).to_le_bytes());
        assert_ne!(a, b);
        assert_eq!(seed_words(&a), seed_words(&b));
        assert_ne!(seed_words(&a), seed_words(&[0; 32]));
    }

    #[test]
    fn splits_recompose() {
        for v in [
            0u64,
            1,
            0xFFFF_FFFF,
            0x1_0000_0000,
            Goldilocks::ORDER_U64 - 2,
        ] {
            let (low, high) = split(Goldilocks::from_u64(v));
            assert_eq!(low + (high << 32), v);
            assert!(high < 0xFFFF_FFFF);
        }
    }
}
