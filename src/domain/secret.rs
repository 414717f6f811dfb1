//! Secrets at rest: an HJ 212 password or an API token is kept as its SHA-256, never as itself.

use sha2::{Digest as _, Sha256};

/// Prefix of a sealed HJ 212 password.
const SEALED: &str = "sha256:";

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
    let expected = match stored.strip_prefix(SEALED) {
        Some(digest) => (digest.to_string(), sha256_hex(given.as_bytes())),
        None => (stored.to_string(), given.to_string()),
    };
    // No early exit: timing does not tell how much of a guess was right.
    expected.0.len() == expected.1.len()
        && expected
            .0
            .bytes()
            .zip(expected.1.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
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
}
