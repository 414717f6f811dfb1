//! Secrets at rest: an HJ 212 password or an API token is kept as its SHA-256, never as itself.

use sha2::{Digest as _, Sha256};

/// Prefix of a sealed HJ 212 password.
const SEALED: &str = "sha256:";

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of lower- or upper-case hex; `None` on an odd length or a non-hex digit.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Compares two secrets' texts without an early exit, so timing does not reveal how much of a guess matched.
pub fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// An HJ 212 password as stored: empty stays empty (none registered), an already sealed one stays as it is.
pub fn seal_password(password: &str) -> String {
    if password.is_empty() || password.starts_with(SEALED) {
        password.to_string()
    } else {
        format!("{SEALED}{}", sha256_hex(password.as_bytes()))
    }
}

/// Whether the `PW` a device sent matches the stored password (sealed, or plain in a store written before sealing).
pub fn password_matches(stored: &str, given: &str) -> bool {
    match stored.strip_prefix(SEALED) {
        Some(digest) => same_text(digest, &sha256_hex(given.as_bytes())),
        None => same_text(stored, given),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_password_matches_only_itself_and_never_shows() {
        let stored = seal_password("123456");
        assert!(stored.starts_with(SEALED) && !stored.contains("123456"));
        assert_eq!(seal_password(&stored), stored);
        assert!(password_matches(&stored, "123456"));
        assert!(!password_matches(&stored, "123457"));
        assert!(!password_matches(&stored, ""));
        assert!(password_matches("legacy", "legacy") && !password_matches("legacy", "x"));
        assert_eq!(seal_password(""), "");
    }

    #[test]
    fn hex_round_trips_and_refuses_non_hex() {
        assert_eq!(
            from_hex(&hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(from_hex("ABcd"), Some(vec![0xab, 0xcd]));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("+1"), None);
        assert_eq!(from_hex("é1"), None);
    }
}
