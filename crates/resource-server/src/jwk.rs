//! The issuer's JWK Set (RFC 7517), read with `gatehouse-jose`.
//!
//! Only what Gatehouse publishes is understood: ES256 on P-256, RS256, and EdDSA on
//! Ed25519. A key is usable only with the algorithm its JWK names (`alg`), so the
//! token's header cannot choose how its signature is checked.

use std::collections::HashMap;

pub use gatehouse_jose::Algorithm;
use gatehouse_jose::{Jwk, JwkSet, PublicKey};

/// The usable key a JWK describes, or `None` for a key this crate must not or
/// cannot use: no `kid` (tokens are matched by `kid`), no `alg` or one not listed in
/// [`Algorithm`], `use` other than `sig`, or members that do not fit the algorithm.
fn usable(jwk: &Jwk) -> Option<(String, PublicKey)> {
    let kid = jwk.kid()?.to_owned();
    if !jwk.use_is_signature() {
        return None;
    }
    let alg = jwk.declared_alg()?.ok()?;
    Some((kid, jwk.public_key(alg).ok()?))
}

/// Parses a JWK Set into usable keys by `kid`. Unusable keys are skipped, not an
/// error: an issuer may publish keys for other purposes or algorithms. When a `kid`
/// repeats, the first usable key keeps it.
pub(crate) fn parse_jwks(json: &[u8]) -> Result<HashMap<String, PublicKey>, String> {
    let set = JwkSet::parse(json).map_err(|e| format!("the JWK Set is not valid: {e}"))?;
    let mut keys = HashMap::new();
    for value in &set.keys {
        let Ok(jwk) = Jwk::from_value(value) else {
            continue;
        };
        if let Some((kid, key)) = usable(&jwk) {
            keys.entry(kid).or_insert(key);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn keys(json: serde_json::Value) -> Vec<(String, Algorithm)> {
        let mut found: Vec<_> = parse_jwks(json.to_string().as_bytes())
            .unwrap()
            .into_iter()
            .map(|(kid, key)| (kid, key.alg()))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    #[test]
    fn only_signing_keys_with_a_supported_alg_and_a_kid_are_kept() {
        let found = keys(serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "ok", "alg": "ES256", "use": "sig"},
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "no-alg"},
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "enc", "alg": "ES256", "use": "enc"},
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "alg": "ES256"},
            {"kty": "EC", "crv": "P-384", "x": X, "y": Y, "kid": "p384", "alg": "ES256"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": "rsa-claimed", "alg": "RS256"},
            {"kty": "OKP", "crv": "Ed25519", "x": X, "kid": "ed", "alg": "EdDSA"},
            {"kty": "RSA", "n": "AAEC", "e": "AQAB", "kid": "rsa", "alg": "RS256"},
            "not an object",
        ]}));
        assert_eq!(
            found,
            [
                ("ed".to_owned(), Algorithm::EdDSA),
                ("ok".to_owned(), Algorithm::ES256),
                ("rsa".to_owned(), Algorithm::RS256),
            ]
        );
    }

    #[test]
    fn a_set_without_keys_is_an_error() {
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"[]").is_err());
        assert!(parse_jwks(br#"{"keys": []}"#).unwrap().is_empty());
    }
}
