//! Random bearer secrets (session cookies, email links) and their stored form.
//! They carry 256 bits of entropy, so a plain SHA-256 is the right stored form:
//! no salt or slow hash is needed to stop guessing, and lookup stays an index hit.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new secret as (text for the cookie or link, hex SHA-256 for the database).
pub fn generate() -> (String, String) {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let text = URL_SAFE_NO_PAD.encode(bytes);
    let hash = digest(&text);
    (text, hash)
}

pub fn digest(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// SHA-256 of `bytes`, hex.
pub fn digest_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_unique_and_stored_only_as_digests() {
        let (a, a_hash) = super::generate();
        let (b, _) = super::generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(super::digest(&a), a_hash);
        assert!(!a_hash.contains(&a));
    }
}
