//! The issuer's JWK Set (RFC 7517) and JWS signature checks with *ring*.
//!
//! Only what Gatehouse publishes is understood: ES256 on P-256, RS256, and EdDSA on
//! Ed25519. A key is usable only with the algorithm its JWK names (`alg`), so the
//! token's header cannot choose how its signature is checked.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

/// A JWS algorithm this crate verifies. There is deliberately no `none` and no HMAC:
/// an HMAC key would be a secret shared with the issuer, which an API never holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    ES256,
    RS256,
    EdDSA,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::RS256 => "RS256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Exact match: JOSE algorithm names are case-sensitive (RFC 7515 §4.1.1).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "ES256" => Some(Algorithm::ES256),
            "RS256" => Some(Algorithm::RS256),
            "EdDSA" => Some(Algorithm::EdDSA),
            _ => None,
        }
    }
}

/// A public key from the JWK Set, decoded once when the set was fetched.
#[derive(Debug, Clone)]
pub(crate) struct PublicKey {
    pub(crate) alg: Algorithm,
    material: Material,
}

#[derive(Debug, Clone)]
enum Material {
    /// SEC1 uncompressed point, `04 || x || y`, as *ring* takes it.
    P256(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

impl PublicKey {
    /// Whether `signature` (JWS form: `r || s` for ES256) signs `message`.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            // ring refuses moduli below 2048 bits here.
            Material::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            Material::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, signature)
                .is_ok(),
        }
    }
}

/// The members of a JWK this crate reads; others (`x5c`, `key_ops`, …) are ignored.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

fn b64(value: Option<&String>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(value?).ok()
}

/// The usable key a JWK describes, or `None` for a key this crate must not or
/// cannot use: no `kid` (tokens are matched by `kid`), no `alg` or one not listed in
/// [`Algorithm`], `use` other than `sig`, or members that do not fit the algorithm.
fn usable(jwk: &Jwk) -> Option<(String, PublicKey)> {
    let kid = jwk.kid.clone()?;
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let alg = Algorithm::from_name(jwk.alg.as_deref()?)?;
    let material = match (alg, jwk.kty.as_str(), jwk.crv.as_deref()) {
        (Algorithm::ES256, "EC", Some("P-256")) => {
            let (x, y) = (b64(jwk.x.as_ref())?, b64(jwk.y.as_ref())?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Material::P256(point)
        }
        (Algorithm::RS256, "RSA", _) => {
            // RFC 7518 §6.3.1.1 forbids leading zero octets, but some libraries write
            // them; ring wants the minimal encoding.
            let strip = |bytes: Vec<u8>| {
                let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
                bytes[start..].to_vec()
            };
            let (n, e) = (strip(b64(jwk.n.as_ref())?), strip(b64(jwk.e.as_ref())?));
            if n.is_empty() || e.is_empty() {
                return None;
            }
            Material::Rsa { n, e }
        }
        (Algorithm::EdDSA, "OKP", Some("Ed25519")) => {
            let x = b64(jwk.x.as_ref())?;
            if x.len() != 32 {
                return None;
            }
            Material::Ed25519(x)
        }
        _ => return None,
    };
    Some((kid, PublicKey { alg, material }))
}

/// Parses a JWK Set into usable keys by `kid`. Unusable keys are skipped, not an
/// error: an issuer may publish keys for other purposes or algorithms. When a `kid`
/// repeats, the first usable key keeps it.
pub(crate) fn parse_jwks(json: &[u8]) -> Result<HashMap<String, PublicKey>, String> {
    let set: JwkSet =
        serde_json::from_slice(json).map_err(|e| format!("the JWK Set is not valid: {e}"))?;
    let mut keys = HashMap::new();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
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
            .map(|(kid, key)| (kid, key.alg))
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

    #[test]
    fn algorithm_names_are_case_sensitive_and_exclude_none_and_hmac() {
        assert_eq!(Algorithm::from_name("ES256"), Some(Algorithm::ES256));
        for name in ["es256", "none", "None", "HS256", "PS256", ""] {
            assert_eq!(Algorithm::from_name(name), None, "{name}");
        }
    }
}
