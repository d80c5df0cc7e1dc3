//! Poseidon2 over Goldilocks (width 12, the standard constants): the one hash behind row
//! leaves, Merkle nodes and the model digest, computed here exactly as the AIR recomputes it.
//!
//! Leaf preimage of a row with `d` features, laid out in `K = ceil((d + 3) / 8)` chunks of 8
//! (the sponge rate): features at positions `0..d`, zeros up to `8K - 3`, then the label at
//! `8K - 3` and the two salt elements at `8K - 2` and `8K - 1`. The sponge overwrites the
//! rate each chunk and starts from capacity `[LEAF_DOMAIN, d, 0, 0]`; the leaf is the first
//! four output elements. A node is the first four outputs of the permutation of
//! `[left, right, NODE_DOMAIN, 0, 0, 0]`.

use std::sync::OnceLock;

use p3_field::PrimeCharacteristicRing;
use p3_goldilocks::{Goldilocks, Poseidon2Goldilocks, default_goldilocks_poseidon2_12};
use p3_symmetric::Permutation;

use crate::fixed::to_field;

/// Poseidon2 state width used in the proof.
pub const WIDTH: usize = 12;
/// Elements absorbed per permutation.
pub const RATE: usize = 8;
/// Elements of a digest (4 × 64 bits).
pub const DIGEST_ELEMS: usize = 4;
/// Salt elements per leaf (2 × 64 bits of fresh randomness).
pub const SALT_ELEMS: usize = 2;
/// Capacity tag of a leaf sponge.
pub const LEAF_DOMAIN: u64 = 0x7a6b_6665_645f_6c66; // "zkfed_lf"
/// Capacity tag of a Merkle node.
pub const NODE_DOMAIN: u64 = 0x7a6b_6665_645f_6e64; // "zkfed_nd"
/// Capacity tag of the model digest.
pub const MODEL_DOMAIN: u64 = 0x7a6b_6665_645f_6d64; // "zkfed_md"

/// A Poseidon2 digest.
pub type Digest = [Goldilocks; DIGEST_ELEMS];

/// A digest as 64 hex digits (each element's canonical value, 16 digits, in order).
pub fn digest_hex(digest: &Digest) -> String {
    use p3_field::PrimeField64;
    digest
        .iter()
        .map(|e| format!("{:016x}", e.as_canonical_u64()))
        .collect()
}

/// The permutation with the standard Goldilocks width-12 constants.
pub fn permutation() -> &'static Poseidon2Goldilocks<WIDTH> {
    static PERM: OnceLock<Poseidon2Goldilocks<WIDTH>> = OnceLock::new();
    PERM.get_or_init(default_goldilocks_poseidon2_12)
}

/// Number of sponge chunks (and so of absorb rows per example) for `d` features.
pub const fn leaf_chunks(num_features: usize) -> usize {
    (num_features + 1 + SALT_ELEMS).div_ceil(RATE)
}

/// The capacity a leaf sponge starts from.
pub fn leaf_iv(num_features: usize) -> [Goldilocks; WIDTH - RATE] {
    [
        Goldilocks::from_u64(LEAF_DOMAIN),
        Goldilocks::from_usize(num_features),
        Goldilocks::ZERO,
        Goldilocks::ZERO,
    ]
}

/// The capacity of every Merkle-node permutation.
pub fn node_capacity() -> [Goldilocks; WIDTH - RATE] {
    [
        Goldilocks::from_u64(NODE_DOMAIN),
        Goldilocks::ZERO,
        Goldilocks::ZERO,
        Goldilocks::ZERO,
    ]
}

/// The padded leaf preimage of one row, `leaf_chunks(d) * RATE` elements long.
pub fn leaf_preimage(
    features: &[i64],
    label: u8,
    salt: &[Goldilocks; SALT_ELEMS],
) -> Vec<Goldilocks> {
    let len = leaf_chunks(features.len()) * RATE;
    let mut pre = vec![Goldilocks::ZERO; len];
    for (slot, &x) in pre.iter_mut().zip(features) {
        *slot = to_field(x);
    }
    pre[len - 3] = Goldilocks::from_u8(label);
    pre[len - 2] = salt[0];
    pre[len - 1] = salt[1];
    pre
}

/// The permutation inputs of a leaf sponge, one per absorb row.
pub fn leaf_sponge_inputs(
    num_features: usize,
    preimage: &[Goldilocks],
) -> Vec<[Goldilocks; WIDTH]> {
    let perm = permutation();
    let mut capacity = leaf_iv(num_features);
    let mut inputs = Vec::with_capacity(preimage.len() / RATE);
    for chunk in preimage.chunks_exact(RATE) {
        let mut state = [Goldilocks::ZERO; WIDTH];
        state[..RATE].copy_from_slice(chunk);
        state[RATE..].copy_from_slice(&capacity);
        inputs.push(state);
        let out = perm.permute(state);
        capacity.copy_from_slice(&out[RATE..]);
    }
    inputs
}

/// The leaf digest of one row.
pub fn leaf_hash(features: &[i64], label: u8, salt: &[Goldilocks; SALT_ELEMS]) -> Digest {
    let pre = leaf_preimage(features, label, salt);
    let last = *leaf_sponge_inputs(features.len(), &pre)
        .last()
        .expect("at least one chunk");
    truncate(&permutation().permute(last))
}

/// The permutation input that compresses two children into their parent.
pub fn node_input(left: &Digest, right: &Digest) -> [Goldilocks; WIDTH] {
    let mut state = [Goldilocks::ZERO; WIDTH];
    state[..DIGEST_ELEMS].copy_from_slice(left);
    state[DIGEST_ELEMS..RATE].copy_from_slice(right);
    state[RATE..].copy_from_slice(&node_capacity());
    state
}

/// The parent of two Merkle children.
pub fn compress(left: &Digest, right: &Digest) -> Digest {
    truncate(&permutation().permute(node_input(left, right)))
}

/// Sponge over arbitrary elements with a domain tag (used for the model digest).
pub fn hash_elements(domain: u64, elements: &[Goldilocks]) -> Digest {
    let perm = permutation();
    let mut state = [Goldilocks::ZERO; WIDTH];
    state[RATE] = Goldilocks::from_u64(domain);
    state[RATE + 1] = Goldilocks::from_usize(elements.len());
    for chunk in elements.chunks(RATE) {
        state[..RATE].fill(Goldilocks::ZERO);
        state[..chunk.len()].copy_from_slice(chunk);
        perm.permute_mut(&mut state);
    }
    if elements.is_empty() {
        perm.permute_mut(&mut state);
    }
    truncate(&state)
}

/// The first `DIGEST_ELEMS` elements of a state.
pub fn truncate(state: &[Goldilocks; WIDTH]) -> Digest {
    [state[0], state[1], state[2], state[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_layout_puts_label_and_salt_last() {
        let salt = [Goldilocks::from_u64(7), Goldilocks::from_u64(9)];
        let pre = leaf_preimage(&[1, 2, 3], 1, &salt);
        assert_eq!(pre.len(), 8);
        assert_eq!(&pre[5..], &[Goldilocks::ONE, salt[0], salt[1]]);
        assert_eq!(pre[3], Goldilocks::ZERO);
        assert_eq!(leaf_chunks(5), 1);
        assert_eq!(leaf_chunks(6), 2);
        assert_eq!(leaf_chunks(30), 5);
    }

    #[test]
    fn salt_and_label_change_the_leaf() {
        let s1 = [Goldilocks::from_u64(1), Goldilocks::from_u64(2)];
        let s2 = [Goldilocks::from_u64(1), Goldilocks::from_u64(3)];
        let x = [5i64, -6, 7];
        assert_ne!(leaf_hash(&x, 0, &s1), leaf_hash(&x, 0, &s2));
        assert_ne!(leaf_hash(&x, 0, &s1), leaf_hash(&x, 1, &s1));
    }

    #[test]
    fn compression_is_order_sensitive() {
        let a = [Goldilocks::ONE; 4];
        let b = [Goldilocks::TWO; 4];
        assert_ne!(compress(&a, &b), compress(&b, &a));
    }
}
