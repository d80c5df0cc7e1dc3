//! Structure-aware mutation: byte edits of valid encodings, plus tokens that mean something
//! to the formats under test (CBOR and postcard length headers that claim huge lengths,
//! deep nesting, numbers and text that parsers get wrong).

use rand::RngExt;
use rand::rngs::StdRng;

/// Bytes a mutation may set one byte to: boundaries and CBOR major-type headers.
const INTERESTING: [u8; 14] = [
    0x00, 0x01, 0x7f, 0x80, 0xff, 0x18, 0x19, 0x1a, 0x1b, 0x5a, 0x7a, 0x9a, 0xba, 0xfe,
];

/// Tokens for binary formats: CBOR headers claiming 2^64-1 or 2 million elements, deep
/// nesting, indefinite lengths, postcard varints claiming 2^63 elements.
pub fn binary_tokens() -> Vec<Vec<u8>> {
    let mut tokens = vec![
        [&[0x9b][..], &[0xff; 8]].concat(),
        [&[0x5b][..], &[0xff; 8]].concat(),
        [&[0x7b][..], &[0xff; 8]].concat(),
        [&[0xbb][..], &[0xff; 8]].concat(),
        vec![0x9a, 0x00, 0x1e, 0x84, 0x80],
        vec![0x9f, 0x00, 0x00, 0xff],
        vec![0x5f, 0x41, 0x00, 0xff],
        vec![0x81; 512],
        vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        vec![0x80, 0x80, 0x80, 0x80, 0x10],
        vec![0xf9, 0x7e, 0x00],
        vec![0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
    ];
    tokens.extend(text_tokens());
    tokens
}

/// Tokens for text formats (TOML, CSV).
pub fn text_tokens() -> Vec<Vec<u8>> {
    [
        "nan",
        "inf",
        "-inf",
        "-0",
        "1e400",
        "-1e400",
        "1e-400",
        "é",
        "🦀",
        "\u{0}",
        "\"",
        "'",
        "\n",
        "\r\n",
        ",",
        ";",
        "=",
        "[[",
        "]]",
        "[",
        "{",
        "}",
        "#",
        "0x",
        "+",
        ".",
        "\\",
        "99999999999999999999",
        "-9223372036854775809",
        "18446744073709551616",
        "\"\"\"",
        "12D3KooW",
        "/ip4/",
        "/p2p/",
        "true",
        "1979-05-27T07:32:00Z",
    ]
    .iter()
    .map(|t| t.as_bytes().to_vec())
    .collect()
}

/// A mutation of one of `samples`: one to four edits.
pub fn mutate(rng: &mut StdRng, samples: &[Vec<u8>], tokens: &[Vec<u8>]) -> Vec<u8> {
    let mut input = samples[rng.random_range(0..samples.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        edit(rng, &mut input, samples, tokens);
    }
    input
}

fn edit(rng: &mut StdRng, input: &mut Vec<u8>, samples: &[Vec<u8>], tokens: &[Vec<u8>]) {
    let len = input.len();
    let at = |rng: &mut StdRng| rng.random_range(0..=len);
    match rng.random_range(0..9) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
        }
        2 => {
            let i = at(rng);
            let n = rng.random_range(1..=16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            input.splice(i..i, bytes);
        }
        3 if len > 0 => {
            let i = rng.random_range(0..len);
            let j = (i + rng.random_range(1..=64)).min(len);
            input.drain(i..j);
        }
        4 if len > 0 => {
            let i = rng.random_range(0..len);
            let j = (i + rng.random_range(1..=64)).min(len);
            let copy = input[i..j].to_vec();
            let k = at(rng);
            input.splice(k..k, copy);
        }
        5 => {
            let token = &tokens[rng.random_range(0..tokens.len())];
            let i = at(rng);
            input.splice(i..i, token.iter().copied());
        }
        6 if len > 0 => {
            let token = &tokens[rng.random_range(0..tokens.len())];
            let i = rng.random_range(0..len);
            let j = (i + token.len()).min(len);
            input.splice(i..j, token.iter().copied());
        }
        7 => {
            let other = &samples[rng.random_range(0..samples.len())];
            let (i, j) = (at(rng), rng.random_range(0..=other.len()));
            input.truncate(i);
            input.extend_from_slice(&other[j..]);
        }
        _ => input.truncate(at(rng)),
    }
}
