//! The server's signing key and the signed tree head: the one value a court, an auditor or an enterprise needs to
//! hold on to. Ed25519 (ring, already the TLS stack's crypto).

use super::merkle::Hash;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};

/// A signing key that could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The key file's bytes are not an Ed25519 PKCS#8 document.
    #[error("not an Ed25519 PKCS#8 key: {0}")]
    BadKey(String),
    /// The system random source failed.
    #[error("cannot generate a key: {0}")]
    Generate(String),
}

/// The server's Ed25519 key.
pub struct Signer {
    pair: Ed25519KeyPair,
}

impl Signer {
    /// A new key, as the PKCS#8 document to keep (the caller stores it; it is never shown).
    ///
    /// # Errors
    /// When the system random source fails.
    pub fn generate_pkcs8() -> Result<Vec<u8>, SignerError> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|e| SignerError::Generate(e.to_string()))
    }

    /// The key of a PKCS#8 document.
    ///
    /// # Errors
    /// [`SignerError::BadKey`].
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, SignerError> {
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .map(|pair| Self { pair })
            .map_err(|e| SignerError::BadKey(e.to_string()))
    }

    /// The public key, 32 bytes.
    pub fn public_key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        k
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut s = [0u8; 64];
        s.copy_from_slice(self.pair.sign(message).as_ref());
        s
    }
}

/// Whether `sig` is `public_key`'s signature of `message`.
pub fn signature_valid(public_key: &[u8], message: &[u8], sig: &[u8]) -> bool {
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(message, sig)
        .is_ok()
}

/// The state of the log at one moment: its size and root, and when the server vouched for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Leaves in the log.
    pub size: u64,
    /// Merkle root of those leaves.
    pub root: Hash,
    /// Server wall time of signing, Unix ms.
    pub signed_at_ms: i64,
}

impl TreeHead {
    /// The bytes signed: tag, size (u64 BE), root, signing time (i64 BE).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut b = b"cems-sentinel tree head v1\0".to_vec();
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.root);
        b.extend_from_slice(&self.signed_at_ms.to_be_bytes());
        b
    }
}

/// A signed head as kept by whoever relies on it: a bundle's `head.json`, `sentinel evidence head --save`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedHeadFile {
    /// Leaves.
    pub tree_size: u64,
    /// Root, hex.
    pub root: String,
    /// Signing time, Unix ms.
    pub signed_at_ms: i64,
    /// Ed25519 public key, hex.
    pub public_key: String,
    /// Signature over [`TreeHead::signed_bytes`], hex.
    pub signature: String,
}

impl SignedHeadFile {
    /// A head with its signature and key.
    pub fn new(head: &TreeHead, public_key: &[u8], signature: &[u8]) -> Self {
        use crate::domain::secret::hex;
        Self {
            tree_size: head.size,
            root: hex(&head.root),
            signed_at_ms: head.signed_at_ms,
            public_key: hex(public_key),
            signature: hex(signature),
        }
    }

    /// The head, when its signature holds under its key.
    ///
    /// # Errors
    /// A malformed field or a signature that does not verify, as a sentence.
    pub fn verified(&self) -> Result<TreeHead, String> {
        use crate::domain::secret::from_hex;
        let root = from_hex(&self.root)
            .and_then(|b| Hash::try_from(b.as_slice()).ok())
            .ok_or_else(|| format!("root {:?} is not a 32-byte hex digest", self.root))?;
        let key = from_hex(&self.public_key)
            .filter(|k| k.len() == 32)
            .ok_or_else(|| "public_key is not a 32-byte hex key".to_string())?;
        let head = TreeHead {
            size: self.tree_size,
            root,
            signed_at_ms: self.signed_at_ms,
        };
        let sig = from_hex(&self.signature).unwrap_or_default();
        if signature_valid(&key, &head.signed_bytes(), &sig) {
            Ok(head)
        } else {
            Err(format!(
                "the head's signature does not verify under key {}",
                self.public_key
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_head_and_key_only() {
        let signer = Signer::from_pkcs8(&Signer::generate_pkcs8().unwrap()).unwrap();
        let other = Signer::from_pkcs8(&Signer::generate_pkcs8().unwrap()).unwrap();
        let head = TreeHead {
            size: 7,
            root: [3; 32],
            signed_at_ms: 42,
        };
        let sig = signer.sign(&head.signed_bytes());
        assert!(signature_valid(
            &signer.public_key(),
            &head.signed_bytes(),
            &sig
        ));
        assert!(!signature_valid(
            &other.public_key(),
            &head.signed_bytes(),
            &sig
        ));
        let grown = TreeHead { size: 8, ..head };
        assert!(!signature_valid(
            &signer.public_key(),
            &grown.signed_bytes(),
            &sig
        ));
        assert!(Signer::from_pkcs8(b"not a key").is_err());
    }
}
