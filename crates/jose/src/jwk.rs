//! JWKs (RFC 7517; members per RFC 7518 §6 for EC and RSA, RFC 8037 for OKP).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use serde::{Deserialize, Serialize};

use crate::key::Members;
use crate::{Algorithm, JoseError, PublicKey};

/// A public signing key as Gatehouse publishes it. The type has no private members,
/// so `d`, `p`, `q`, … can never be serialized, and a stored JWK carrying one fails
/// to load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicJwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    pub kid: String,
    #[serde(rename = "use")]
    pub key_use: String,
    pub alg: String,
}

impl PublicJwk {
    /// A signing key of type `kty` for `alg`, with no key members and no kid yet.
    pub fn new(alg: Algorithm, kty: &str) -> Self {
        PublicJwk {
            kty: kty.to_owned(),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            kid: String::new(),
            key_use: "sig".to_owned(),
            alg: alg.as_str().to_owned(),
        }
    }

    /// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic
    /// order, without whitespace, base64url. The members are base64url or fixed
    /// names, so no JSON escaping is needed. `None` when a required member is
    /// missing or one that does not belong to the key type is present.
    pub fn thumbprint(&self) -> Option<String> {
        let canonical = match (
            self.kty.as_str(),
            &self.crv,
            &self.x,
            &self.y,
            &self.n,
            &self.e,
        ) {
            ("EC", Some(crv), Some(x), Some(y), None, None) => {
                format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            ("RSA", None, None, None, Some(n), Some(e)) => {
                format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#)
            }
            ("OKP", Some(crv), Some(x), None, None, None) => {
                format!(r#"{{"crv":"{crv}","kty":"OKP","x":"{x}"}}"#)
            }
            _ => return None,
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        Some(URL_SAFE_NO_PAD.encode(digest.as_ref()))
    }

    /// This key, decoded for verifying `alg`; see [`PublicKey`].
    pub fn public_key(&self, alg: Algorithm) -> Result<PublicKey, JoseError> {
        PublicKey::from_members(
            alg,
            Members {
                kty: &self.kty,
                crv: self.crv.as_deref(),
                x: self.x.as_deref(),
                y: self.y.as_deref(),
                n: self.n.as_deref(),
                e: self.e.as_deref(),
            },
        )
    }
}

/// JWK members only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
pub const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The first private or symmetric key member `jwk` (one entry of a set, as JSON)
/// carries, if any. Checked on the JSON because a typed public JWK drops them.
pub fn private_member(jwk: &serde_json::Value) -> Option<&'static str> {
    PRIVATE_MEMBERS
        .into_iter()
        .find(|member| jwk.get(*member).is_some())
}

/// A JWK Set whose entries are not read yet: each is read with [`Jwk::from_value`],
/// so that the caller decides whether an unreadable key spoils the set.
#[derive(Debug, Clone, PartialEq)]
pub struct JwkSet {
    pub keys: Vec<serde_json::Value>,
}

impl JwkSet {
    pub fn parse(json: &[u8]) -> Result<JwkSet, JoseError> {
        let set: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| JoseError::JwkSetNotJson(e.to_string()))?;
        match set {
            serde_json::Value::Object(mut set) => match set.remove("keys") {
                Some(serde_json::Value::Array(keys)) => Ok(JwkSet { keys }),
                _ => Err(JoseError::NotAJwkSet),
            },
            _ => Err(JoseError::NotAJwkSet),
        }
    }
}

/// One key of somebody else's JWK Set, typed by `jsonwebtoken`'s JWK types. Unlike
/// [`PublicJwk`] it tolerates members Gatehouse does not use (`x5c`, `ext`, …), and
/// keys of any type: whether one is usable is asked of it.
#[derive(Debug, Clone)]
pub struct Jwk {
    inner: jsonwebtoken::jwk::Jwk,
}

impl Jwk {
    /// Reads one entry of a set. Fails when a member Gatehouse reads has the wrong
    /// JSON type (`kid` a number, `key_ops` not an array, …).
    pub fn from_value(value: &serde_json::Value) -> Result<Jwk, JoseError> {
        serde_json::from_value(value.clone())
            .map(|inner| Jwk { inner })
            .map_err(|e| JoseError::Jwk(e.to_string()))
    }

    pub fn kid(&self) -> Option<&str> {
        self.inner.common.key_id.as_deref()
    }

    /// Whether the key may verify signatures: `use`, if present, is `sig`.
    pub fn use_is_signature(&self) -> bool {
        self.inner
            .common
            .public_key_use
            .as_ref()
            .is_none_or(|key_use| *key_use == PublicKeyUse::Signature)
    }

    /// Whether `key_ops`, if present, includes `verify`.
    pub fn ops_allow_verify(&self) -> bool {
        self.inner
            .common
            .key_operations
            .as_ref()
            .is_none_or(|ops| ops.contains(&KeyOperations::Verify))
    }

    /// The key's `alg`: `None` when it names none, `Some(Err(_))` when it names
    /// one Gatehouse does not verify (PS256, HS256, an unknown name, …).
    pub fn declared_alg(&self) -> Option<Result<Algorithm, JoseError>> {
        let declared = self.inner.common.key_algorithm?;
        Some(match declared {
            KeyAlgorithm::ES256 => Ok(Algorithm::ES256),
            KeyAlgorithm::RS256 => Ok(Algorithm::RS256),
            KeyAlgorithm::EdDSA => Ok(Algorithm::EdDSA),
            other => Err(JoseError::UnsupportedAlgorithm(format!("{other:?}"))),
        })
    }

    /// The algorithm the key type and curve imply, for a key without `alg`: ES256
    /// for P-256, EdDSA for Ed25519, RS256 for RSA.
    pub fn implied_alg(&self) -> Option<Algorithm> {
        match (self.members().kty, self.members().crv) {
            ("EC", Some("P-256")) => Some(Algorithm::ES256),
            ("OKP", Some("Ed25519")) => Some(Algorithm::EdDSA),
            ("RSA", _) => Some(Algorithm::RS256),
            _ => None,
        }
    }

    /// The RSA modulus's size in bits, leading zero octets not counted; `None` for
    /// a key that is not RSA or whose `n` does not decode.
    pub fn rsa_modulus_bits(&self) -> Option<usize> {
        let AlgorithmParameters::RSA(rsa) = &self.inner.algorithm else {
            return None;
        };
        let modulus = URL_SAFE_NO_PAD.decode(&rsa.n).ok()?;
        Some(modulus.iter().skip_while(|b| **b == 0).count() * 8)
    }

    /// This key, decoded for verifying `alg`; see [`PublicKey`].
    pub fn public_key(&self, alg: Algorithm) -> Result<PublicKey, JoseError> {
        PublicKey::from_members(alg, self.members())
    }

    fn members(&self) -> Members<'_> {
        fn curve(crv: &EllipticCurve) -> &'static str {
            match crv {
                EllipticCurve::P256 => "P-256",
                EllipticCurve::P384 => "P-384",
                EllipticCurve::P521 => "P-521",
                EllipticCurve::Ed25519 => "Ed25519",
                _ => "an unknown curve",
            }
        }
        match &self.inner.algorithm {
            AlgorithmParameters::EllipticCurve(ec) => Members {
                kty: "EC",
                crv: Some(curve(&ec.curve)),
                x: Some(&ec.x),
                y: Some(&ec.y),
                ..Members::default()
            },
            AlgorithmParameters::RSA(rsa) => Members {
                kty: "RSA",
                n: Some(&rsa.n),
                e: Some(&rsa.e),
                ..Members::default()
            },
            AlgorithmParameters::OctetKeyPair(okp) => Members {
                kty: "OKP",
                crv: Some(curve(&okp.curve)),
                x: Some(&okp.x),
                ..Members::default()
            },
            AlgorithmParameters::OctetKey(_) => Members {
                kty: "oct",
                ..Members::default()
            },
            // A type jsonwebtoken does not know, or a known one with members missing
            // or mistyped: what it does say is kept, so the error names what is wrong.
            AlgorithmParameters::Other(other) => {
                let text = |name: &str| other.fields.get(name).and_then(serde_json::Value::as_str);
                Members {
                    kty: text("kty").unwrap_or("unknown"),
                    crv: text("crv"),
                    x: text("x"),
                    y: text("y"),
                    n: text("n"),
                    e: text("e"),
                }
            }
            _ => Members {
                kty: "unknown",
                ..Members::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use serde_json::json;

    use super::*;

    const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn jwk(value: serde_json::Value) -> Jwk {
        Jwk::from_value(&value).unwrap()
    }

    #[test]
    fn the_thumbprint_is_rfc_7638s() {
        // RFC 7638 §3.1.
        let mut key = PublicJwk::new(Algorithm::RS256, "RSA");
        key.n = Some(
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".into(),
        );
        key.e = Some("AQAB".into());
        assert_eq!(
            key.thumbprint().as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        // Incomplete, or with a member of another key type: no thumbprint.
        key.crv = Some("P-256".into());
        assert_eq!(key.thumbprint(), None);
        assert_eq!(PublicJwk::new(Algorithm::ES256, "EC").thumbprint(), None);
    }

    #[test]
    fn a_published_jwk_has_public_members_only() {
        let mut key = PublicJwk::new(Algorithm::EdDSA, "OKP");
        key.crv = Some("Ed25519".into());
        key.x = Some(X.into());
        key.kid = "k".into();
        let mut value = serde_json::to_value(&key).unwrap();
        assert_eq!(
            value,
            json!({"kty": "OKP", "crv": "Ed25519", "x": X, "kid": "k", "use": "sig", "alg": "EdDSA"})
        );
        value["d"] = "c2VjcmV0".into();
        assert_eq!(private_member(&value), Some("d"));
        assert!(serde_json::from_value::<PublicJwk>(value).is_err());
    }

    #[test]
    fn keys_verify_their_own_algorithm_only() {
        let rng = SystemRandom::new();
        let message = b"header.payload";

        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = ec.public_key().as_ref();
        let mut es256 = PublicJwk::new(Algorithm::ES256, "EC");
        es256.crv = Some("P-256".into());
        es256.x = Some(b64(&point[1..33]));
        es256.y = Some(b64(&point[33..]));
        let key = es256.public_key(Algorithm::ES256).unwrap();
        let signature = ec.sign(&rng, message).unwrap();
        assert_eq!(key.alg(), Algorithm::ES256);
        assert!(key.verifies(message, signature.as_ref()));
        assert!(!key.verifies(b"header.other", signature.as_ref()));

        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let eddsa =
            jwk(json!({"kty": "OKP", "crv": "Ed25519", "x": b64(ed.public_key().as_ref())}));
        let key = eddsa.public_key(Algorithm::EdDSA).unwrap();
        assert!(key.verifies(message, ed.sign(message).as_ref()));
        assert!(!key.verifies(message, signature.as_ref()));

        // A key cannot be used for another algorithm than its own.
        for alg in [Algorithm::EdDSA, Algorithm::RS256] {
            let error = es256.public_key(alg).unwrap_err().to_string();
            assert!(
                error.contains(&format!("a EC key on P-256 cannot verify {alg}")),
                "{error}"
            );
        }
        assert!(eddsa.public_key(Algorithm::ES256).is_err());
    }

    #[test]
    fn members_must_have_their_size() {
        let ec = |x: &str, y: &str| {
            jwk(json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})).public_key(Algorithm::ES256)
        };
        assert!(ec(X, Y).is_ok());
        let error = ec("AAAA", Y).unwrap_err().to_string();
        assert_eq!(error, "JWK member `x` has 3 bytes, not 32");
        assert!(ec(&format!("{X}A"), Y).is_err());
        assert!(
            ec("!!", Y)
                .unwrap_err()
                .to_string()
                .contains("JWK member `x`")
        );
        let no_y = jwk(json!({"kty": "EC", "crv": "P-256", "x": X}));
        assert_eq!(
            no_y.public_key(Algorithm::ES256).unwrap_err().to_string(),
            "JWK has no `y`"
        );
        let short = jwk(json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[7; 31])}));
        assert!(short.public_key(Algorithm::EdDSA).is_err());
        let p384 = jwk(json!({"kty": "EC", "crv": "P-384", "x": X, "y": Y}));
        assert_eq!(
            p384.public_key(Algorithm::ES256).unwrap_err().to_string(),
            "a EC key on P-384 cannot verify ES256"
        );
        // RSA integers lose leading zero octets (RFC 7518 forbids them, some
        // libraries write them); zero is no integer for a key.
        let rsa = |n: &[u8]| {
            jwk(json!({"kty": "RSA", "n": b64(n), "e": "AQAB"})).public_key(Algorithm::RS256)
        };
        assert_eq!(rsa(&[0, 0, 1, 2]), rsa(&[1, 2]));
        assert!(rsa(&[0, 0]).is_err());
    }

    #[test]
    fn what_a_jwk_says_of_its_use() {
        let plain =
            jwk(json!({"kty": "EC", "crv": "P-256", "x": X, "y": Y, "x5t#S256": "ignored"}));
        assert_eq!(
            (plain.kid(), plain.declared_alg(), plain.implied_alg()),
            (None, None, Some(Algorithm::ES256))
        );
        assert!(plain.use_is_signature() && plain.ops_allow_verify());

        let labelled = jwk(
            json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r", "alg": "RS256", "use": "sig", "key_ops": ["verify"]}),
        );
        assert_eq!(labelled.kid(), Some("r"));
        assert_eq!(labelled.declared_alg(), Some(Ok(Algorithm::RS256)));
        assert_eq!(labelled.implied_alg(), Some(Algorithm::RS256));
        assert_eq!(labelled.rsa_modulus_bits(), Some(24));
        assert!(labelled.use_is_signature() && labelled.ops_allow_verify());

        let other = jwk(
            json!({"kty": "EC", "crv": "P-256", "x": X, "y": Y, "alg": "PS256", "use": "enc", "key_ops": ["encrypt"]}),
        );
        assert!(matches!(other.declared_alg(), Some(Err(_))));
        assert!(!other.use_is_signature() && !other.ops_allow_verify());
        assert_eq!(other.rsa_modulus_bits(), None);
        let none = jwk(json!({"kty": "EC", "crv": "P-256", "x": X, "y": Y, "alg": "none"}));
        assert!(matches!(none.declared_alg(), Some(Err(_))));

        let unknown = jwk(json!({"kty": "EC", "crv": "secp256k1", "x": X, "y": Y}));
        assert_eq!(unknown.implied_alg(), None);
        assert_eq!(
            unknown
                .public_key(Algorithm::ES256)
                .unwrap_err()
                .to_string(),
            "a EC key on secp256k1 cannot verify ES256"
        );
        let hmac = jwk(json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}));
        assert_eq!(hmac.implied_alg(), None);
        assert!(hmac.public_key(Algorithm::ES256).is_err());

        assert!(Jwk::from_value(&json!({"kty": "EC", "kid": 5})).is_err());
        assert!(Jwk::from_value(&json!("not an object")).is_err());
    }

    #[test]
    fn a_set_is_an_object_with_a_keys_array() {
        let set = JwkSet::parse(br#"{"keys": [{"kty": "EC"}, "odd"]}"#).unwrap();
        assert_eq!(set.keys.len(), 2);
        assert!(JwkSet::parse(br#"{"keys": []}"#).unwrap().keys.is_empty());
        assert_eq!(JwkSet::parse(b"{}"), Err(JoseError::NotAJwkSet));
        assert_eq!(JwkSet::parse(b"[]"), Err(JoseError::NotAJwkSet));
        assert_eq!(
            JwkSet::parse(br#"{"keys": {}}"#),
            Err(JoseError::NotAJwkSet)
        );
        assert!(matches!(
            JwkSet::parse(b"not json"),
            Err(JoseError::JwkSetNotJson(_))
        ));
    }
}
