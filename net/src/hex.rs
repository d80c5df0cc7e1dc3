//! 32-byte identifiers (federation ids) as 64 hex digits, in configuration files and flags.

use thiserror::Error;

/// Why a text is not 64 hex digits.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HexError {
    /// Not 64 ASCII characters.
    #[error("expected 64 hex digits, got {0} characters")]
    Length(usize),
    /// A character that is not a hex digit (1-based position).
    #[error("character {0} is not a hex digit")]
    Digit(usize),
}

/// Parses 64 hex digits (either case). Works on bytes, never slicing the text, so any
/// input (multi-byte characters, signs, spaces) is an error and never a panic.
pub fn parse_hex32(s: &str) -> Result<[u8; 32], HexError> {
    let digits = s.as_bytes();
    if digits.len() != 64 || !s.is_ascii() {
        return Err(HexError::Length(s.chars().count()));
    }
    let mut out = [0u8; 32];
    for (i, (byte, pair)) in out.iter_mut().zip(digits.chunks_exact(2)).enumerate() {
        let digit = |k: usize| {
            char::from(pair[k])
                .to_digit(16)
                .ok_or(HexError::Digit(2 * i + k + 1))
        };
        *byte = u8::try_from(digit(0)? << 4 | digit(1)?).expect("two hex digits fit a byte");
    }
    Ok(out)
}

/// Formats 32 bytes as 64 hex digits.
pub fn hex32(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
