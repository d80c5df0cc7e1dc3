//! Vectors whose length an untrusted encoding cannot inflate.
//!
//! serde's `Vec` decoder allocates as many elements as the input lists; in CBOR a one-byte
//! integer becomes an eight-byte `i64`, so a 2 MiB message could become 16 MiB before any
//! shape check. Every vector a peer can size is at most [`MAX_FEATURES`] long (one entry
//! per feature) or, for a model's parameters and an update, [`MAX_WIRE_PARAMS`] long, and
//! refused while decoding beyond that; a model file may hold up to [`MAX_PARAMS`]. Space is
//! reserved for at most [`RESERVE`] elements up front, whatever length the input declares,
//! so memory follows the elements actually read.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};

use crate::fixed::{MAX_FEATURES, MAX_PARAMS, MAX_WIRE_PARAMS};

/// Elements reserved before any is read.
pub const RESERVE: usize = 1024;

/// Decodes a vector of at most [`MAX_FEATURES`] elements (`#[serde(deserialize_with)]`).
pub fn per_feature<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_seq(AtMost::<T>(MAX_FEATURES, PhantomData))
}

/// Decodes a vector of at most [`MAX_WIRE_PARAMS`] elements (`#[serde(deserialize_with)]`).
pub fn params<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_seq(AtMost::<T>(MAX_WIRE_PARAMS, PhantomData))
}

/// Decodes a vector of at most [`MAX_PARAMS`] elements: a model file's parameters.
pub fn file_params<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_seq(AtMost::<T>(MAX_PARAMS, PhantomData))
}

struct AtMost<T>(usize, PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for AtMost<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a sequence of at most {} elements", self.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        if let Some(hint) = seq.size_hint().filter(|&n| n > self.0) {
            return Err(A::Error::invalid_length(hint, &self));
        }
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(RESERVE));
        while let Some(element) = seq.next_element()? {
            if out.len() == self.0 {
                return Err(A::Error::invalid_length(self.0 + 1, &self));
            }
            out.push(element);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::data::Schema;
    use crate::fixed::{MAX_FEATURES, MAX_WIRE_PARAMS};
    use crate::{ClippedGradientSum, Model};

    #[test]
    fn vectors_longer_than_their_limit_are_refused_while_decoding() {
        let fits = ClippedGradientSum {
            values: vec![1; MAX_WIRE_PARAMS],
            examples: 1,
        };
        let bytes = postcard::to_allocvec(&fits).unwrap();
        assert_eq!(
            postcard::from_bytes::<ClippedGradientSum>(&bytes).unwrap(),
            fits
        );
        let logistic = Model::logistic(vec![1; MAX_FEATURES], 0);
        let bytes = postcard::to_allocvec(&logistic).unwrap();
        assert_eq!(postcard::from_bytes::<Model>(&bytes).unwrap(), logistic);
        let too_long = ClippedGradientSum {
            values: vec![1; MAX_WIRE_PARAMS + 1],
            examples: 1,
        };
        let bytes = postcard::to_allocvec(&too_long).unwrap();
        assert!(postcard::from_bytes::<ClippedGradientSum>(&bytes).is_err());
        let names = Schema::binary(vec!["f".into(); MAX_FEATURES + 1], "y");
        let bytes = postcard::to_allocvec(&names).unwrap();
        assert!(postcard::from_bytes::<Schema>(&bytes).is_err());
    }

    #[test]
    fn a_declared_length_beyond_the_limit_fails_before_reading_elements() {
        // postcard: a varint length of 2^40 and no elements.
        let bytes = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
        assert!(postcard::from_bytes::<Model>(&bytes).is_err());
    }
}
