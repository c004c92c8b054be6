use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

use crate::{Algorithm, JoseError};

/// A public key decoded once, usable with its one algorithm and no other, so a
/// token's header cannot choose how its signature is checked.
///
/// All three algorithms verify with *ring*: ES256 (fixed-size `r || s`, as JWS
/// requires), RS256 (RSASSA-PKCS1-v1_5 with SHA-256, 2048–8192-bit modulus) and
/// Ed25519.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    alg: Algorithm,
    material: Material,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    /// SEC1 uncompressed point, `04 || x || y`, as *ring* takes it (and checks it is
    /// on the curve).
    P256(Vec<u8>),
    /// Big-endian, without leading zero octets (*ring* wants the minimal encoding).
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

/// The members of a JWK that make up a public key, as strings (base64url).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Members<'a> {
    pub(crate) kty: &'a str,
    pub(crate) crv: Option<&'a str>,
    pub(crate) x: Option<&'a str>,
    pub(crate) y: Option<&'a str>,
    pub(crate) n: Option<&'a str>,
    pub(crate) e: Option<&'a str>,
}

fn member(name: &str, value: Option<&str>) -> Result<Vec<u8>, JoseError> {
    let value = value.ok_or_else(|| JoseError::Jwk(format!("JWK has no `{name}`")))?;
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|e| JoseError::Jwk(format!("JWK member `{name}`: {e}")))
}

fn sized(name: &str, value: Option<&str>, len: usize) -> Result<Vec<u8>, JoseError> {
    let bytes = member(name, value)?;
    if bytes.len() == len {
        Ok(bytes)
    } else {
        Err(JoseError::Jwk(format!(
            "JWK member `{name}` has {} bytes, not {len}",
            bytes.len()
        )))
    }
}

/// An RSA integer: RFC 7518 §6.3.1.1 forbids leading zero octets, but some
/// libraries write them.
fn unsigned(name: &str, value: Option<&str>) -> Result<Vec<u8>, JoseError> {
    let bytes = member(name, value)?;
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    if start == bytes.len() {
        return Err(JoseError::Jwk(format!("JWK member `{name}` is zero")));
    }
    Ok(bytes[start..].to_vec())
}

impl PublicKey {
    /// The key `members` describe, for `alg`: the key type and curve must be
    /// `alg`'s, and fixed-size members exactly their size.
    pub(crate) fn from_members(alg: Algorithm, jwk: Members<'_>) -> Result<Self, JoseError> {
        let material = match (alg, jwk.kty, jwk.crv) {
            (Algorithm::ES256, "EC", Some("P-256")) => {
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend(sized("x", jwk.x, 32)?);
                point.extend(sized("y", jwk.y, 32)?);
                Material::P256(point)
            }
            (Algorithm::EdDSA, "OKP", Some("Ed25519")) => Material::Ed25519(sized("x", jwk.x, 32)?),
            (Algorithm::RS256, "RSA", None) => Material::Rsa {
                n: unsigned("n", jwk.n)?,
                e: unsigned("e", jwk.e)?,
            },
            (alg, kty, crv) => {
                return Err(JoseError::Jwk(format!(
                    "a {kty} key{} cannot verify {alg}",
                    crv.map(|crv| format!(" on {crv}")).unwrap_or_default()
                )));
            }
        };
        Ok(PublicKey { alg, material })
    }

    /// The one algorithm this key verifies.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Whether `signature` (decoded from the JWS) is this key's signature over
    /// `signing_input` (the JWS's `header.payload`, as sent).
    pub fn verifies(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            Material::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signing_input, signature)
                    .is_ok()
            }
            // ring refuses moduli below 2048 bits here.
            Material::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    signing_input,
                    signature,
                )
                .is_ok(),
            Material::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(signing_input, signature)
                .is_ok(),
        }
    }
}
