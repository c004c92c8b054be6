//! The key ring: per-tenant signing keys, their rotation, and the published JWKS.
//!
//! # Rotation rule
//!
//! Each tenant has, per algorithm, at most one `active` key (it signs) and at most one
//! `next` key (published, not signing). [`rotate`] does, in one transaction:
//!
//! 1. if a `next` key exists: the `active` key becomes `retired`, with
//!    `publish_until = now + max_token_lifetime`, and the `next` key becomes `active`;
//! 2. a **new** key is inserted as `next`: published in the JWKS, not yet signing.
//!
//! So every key is published for one whole rotation period before it signs: relying
//! parties that cache the JWKS (typically for hours) already hold it when the first
//! token signed with it arrives, and never need to refetch on an unknown `kid`. A
//! retired key stays published until every token it signed has expired, then
//! [`prune`] deletes it. Without a `next` key (the first rotation after
//! [`ensure_active`]) step 1 is skipped and the active key keeps signing; a tenant
//! with no key of the algorithm at all gets the new key `active` at once.
//!
//! `max_token_lifetime` must cover the longest-lived token the key signs **plus** how
//! long a node may keep signing with a cached [`KeyRing`] after the rotation (its
//! refresh interval) and clock skew between nodes.
//!
//! Verification accepts `next` keys too: another node may already have promoted the
//! key while this node's ring still lists it as `next`.
//!
//! # Storage
//!
//! Private keys are PKCS#8 DER, sealed by the store with the master key (associated
//! data: tenant, kid, alg). Only `active` keys are unsealed, when a ring is built.
//! The `kid` is the key's RFC 7638 JWK thumbprint (SHA-256, base64url).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use gatehouse_core::ids::TenantId;
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::signing_keys::{
    self, KeyAlgorithm, KeyState, NewSigningKey, SigningKey as StoredKey,
};
use gatehouse_identity_store::{AnyConnection, StoreError, db};
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{IssuerError, IssuerResult};
use crate::jwt::TokenKind;

/// RSA modulus size for new keys. Loaded keys must be at least this large.
pub const RSA_BITS: usize = 2048;

/// A JWS signing algorithm Gatehouse issues tokens with.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256: compact, and the default.
    #[default]
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048-bit keys), for relying parties that
    /// support nothing else (OIDC's mandatory-to-implement algorithm).
    RS256,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];

    /// The JOSE name (`alg` value).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::RS256 => "RS256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    fn index(self) -> usize {
        match self {
            Algorithm::ES256 => 0,
            Algorithm::RS256 => 1,
            Algorithm::EdDSA => 2,
        }
    }

    pub(crate) fn to_store(self) -> KeyAlgorithm {
        match self {
            Algorithm::ES256 => KeyAlgorithm::Es256,
            Algorithm::RS256 => KeyAlgorithm::Rs256,
            Algorithm::EdDSA => KeyAlgorithm::EdDsa,
        }
    }

    fn from_store(alg: KeyAlgorithm) -> Self {
        match alg {
            KeyAlgorithm::Es256 => Algorithm::ES256,
            KeyAlgorithm::Rs256 => Algorithm::RS256,
            KeyAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }

    #[cfg(test)]
    fn to_jose(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JOSE name is not one Gatehouse signs with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported signing algorithm `{0}` (use ES256, RS256 or EdDSA)")]
pub struct UnsupportedAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnsupportedAlgorithm;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|alg| alg.as_str() == value)
            .ok_or_else(|| UnsupportedAlgorithm(value.to_owned()))
    }
}

/// A public key as published in the JWKS (RFC 7517; members per RFC 7518 §6 for EC
/// and RSA, RFC 8037 for OKP). The type has no private members, so `d`, `p`, `q`, …
/// can never be serialized, and a stored JWK carrying one fails to load.
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
    fn new(alg: Algorithm, kty: &str) -> Self {
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
    /// order, without whitespace. The members are base64url or fixed names, so no
    /// JSON escaping is needed.
    fn thumbprint(&self) -> Option<String> {
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
        Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
    }

    /// The public key in the form `alg` is verified with, decoded once. The key type
    /// and curve must be `alg`'s, and fixed-size members exactly their size.
    fn verifier(&self, alg: Algorithm) -> Result<PublicKey, String> {
        use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
        let member = |name: &str, value: &Option<String>| -> Result<Vec<u8>, String> {
            let value = value
                .as_deref()
                .ok_or_else(|| format!("JWK has no `{name}`"))?;
            URL_SAFE_NO_PAD
                .decode(value)
                .map_err(|e| format!("JWK member `{name}`: {e}"))
        };
        let sized = |name: &str, value: &Option<String>, len: usize| {
            let bytes = member(name, value)?;
            if bytes.len() == len {
                Ok(bytes)
            } else {
                Err(format!(
                    "JWK member `{name}` has {} bytes, not {len}",
                    bytes.len()
                ))
            }
        };
        match (alg, self.kty.as_str(), self.crv.as_deref()) {
            (Algorithm::ES256, "EC", Some("P-256")) => {
                // Uncompressed SEC1 point; *ring* checks it is on the curve.
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend(sized("x", &self.x, 32)?);
                point.extend(sized("y", &self.y, 32)?);
                Ok(PublicKey::Es256(UnparsedPublicKey::new(
                    &ECDSA_P256_SHA256_FIXED,
                    point,
                )))
            }
            (Algorithm::EdDSA, "OKP", Some("Ed25519")) => {
                let x: [u8; 32] = sized("x", &self.x, 32)?
                    .try_into()
                    .map_err(|_| "JWK member `x` is not 32 bytes".to_owned())?;
                ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map(|key| PublicKey::EdDsa(Box::new(key)))
                    .map_err(|e| format!("JWK member `x` is not an Ed25519 point: {e}"))
            }
            (Algorithm::RS256, "RSA", None) => {
                Ok(PublicKey::Rs256(ring::signature::RsaPublicKeyComponents {
                    n: member("n", &self.n)?,
                    e: member("e", &self.e)?,
                }))
            }
            (alg, kty, crv) => Err(format!(
                "a {kty} key{} cannot verify {alg}",
                crv.map(|crv| format!(" on {crv}")).unwrap_or_default()
            )),
        }
    }
}

/// A private key, parsed once so signing does no decoding.
///
/// ES256 signs with *ring* (`EcdsaKeyPair`, P-256 in assembly), several times faster
/// than the pure-Rust `p256` crate, which still generates the keys: *ring* reads the
/// PKCS#8 `p256` writes (v1, with the public key in the `ECPrivateKey`) as it is.
/// *ring* is already linked through rustls, so this adds no C build. Ed25519 stays on
/// `ed25519-dalek` (measured slightly faster than *ring*'s), RS256 on `rsa`.
enum PrivateKey {
    Es256(ring::signature::EcdsaKeyPair),
    Rs256(Box<rsa::pkcs1v15::SigningKey<Sha256>>),
    EdDsa(ed25519_dalek::SigningKey),
}

impl PrivateKey {
    /// Decodes a PKCS#8 DER key of `alg` and derives its public JWK (with the
    /// thumbprint as kid).
    fn from_pkcs8(alg: Algorithm, der: &[u8]) -> Result<(PrivateKey, PublicJwk), String> {
        match alg {
            Algorithm::ES256 => {
                use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, KeyPair};
                let key = ring::signature::EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &ring::rand::SystemRandom::new(),
                )
                .map_err(|e| format!("P-256 PKCS#8 key rejected: {e}"))?;
                // Uncompressed SEC1 point: 0x04 || x || y.
                let (x, y) = match key.public_key().as_ref() {
                    [0x04, xy @ ..] if xy.len() == 64 => xy.split_at(32),
                    _ => return Err("P-256 public key is not an uncompressed point".to_owned()),
                };
                let mut jwk = PublicJwk::new(alg, "EC");
                jwk.crv = Some("P-256".to_owned());
                jwk.x = Some(URL_SAFE_NO_PAD.encode(x));
                jwk.y = Some(URL_SAFE_NO_PAD.encode(y));
                Ok((PrivateKey::Es256(key), with_thumbprint(jwk)?))
            }
            Algorithm::RS256 => {
                use rsa::pkcs8::DecodePrivateKey;
                let key = rsa::RsaPrivateKey::from_pkcs8_der(der).map_err(|e| e.to_string())?;
                if key.size() * 8 < RSA_BITS {
                    return Err(format!(
                        "RSA key has {} bits, fewer than {RSA_BITS}",
                        key.size() * 8
                    ));
                }
                let mut jwk = PublicJwk::new(alg, "RSA");
                jwk.n = Some(URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()));
                jwk.e = Some(URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()));
                let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key);
                Ok((PrivateKey::Rs256(Box::new(signer)), with_thumbprint(jwk)?))
            }
            Algorithm::EdDSA => {
                use ed25519_dalek::pkcs8::DecodePrivateKey;
                let key =
                    ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|e| e.to_string())?;
                let mut jwk = PublicJwk::new(alg, "OKP");
                jwk.crv = Some("Ed25519".to_owned());
                jwk.x = Some(URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()));
                Ok((PrivateKey::EdDsa(key), with_thumbprint(jwk)?))
            }
        }
    }

    /// Signs `message` and appends `.` and the base64url signature (JWS compact form).
    fn sign_appending(&self, message_and_out: &mut String) -> IssuerResult<()> {
        let failed = |e: &dyn fmt::Display| IssuerError::Signing(e.to_string());
        match self {
            PrivateKey::Es256(key) => {
                // FIXED: r || s, 64 bytes, as JWS requires (RFC 7518 §3.4), not DER.
                // *ring* hedges the nonce: it mixes fresh randomness with the key and
                // the message, so a weak RNG alone does not leak the key.
                let signature = key
                    .sign(&ring::rand::SystemRandom::new(), message_and_out.as_bytes())
                    .map_err(|e| failed(&e))?;
                message_and_out.push('.');
                URL_SAFE_NO_PAD.encode_string(signature.as_ref(), message_and_out);
            }
            PrivateKey::Rs256(key) => {
                use rsa::signature::{RandomizedSigner, SignatureEncoding};
                // The randomized form blinds the private-key operation.
                let signature = key
                    .try_sign_with_rng(&mut rand_core::OsRng, message_and_out.as_bytes())
                    .map_err(|e| failed(&e))?;
                message_and_out.push('.');
                URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), message_and_out);
            }
            PrivateKey::EdDsa(key) => {
                use ed25519_dalek::Signer;
                let signature = key
                    .try_sign(message_and_out.as_bytes())
                    .map_err(|e| failed(&e))?;
                message_and_out.push('.');
                URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), message_and_out);
            }
        }
        Ok(())
    }
}

fn with_thumbprint(mut jwk: PublicJwk) -> Result<PublicJwk, String> {
    jwk.kid = jwk
        .thumbprint()
        .ok_or_else(|| "incomplete public key".to_owned())?;
    Ok(jwk)
}

/// A freshly generated key: PKCS#8 DER (wiped on drop) and its public JWK.
struct GeneratedKey {
    pkcs8: Zeroizing<Vec<u8>>,
    jwk: PublicJwk,
}

/// Generates a key. RSA takes a while (tens to hundreds of milliseconds in release
/// builds): call this on a blocking thread.
fn generate(alg: Algorithm) -> IssuerResult<GeneratedKey> {
    let failed = |e: &dyn fmt::Display| IssuerError::KeyGeneration {
        alg,
        message: e.to_string(),
    };
    let mut rng = rand_core::OsRng;
    let pkcs8: Zeroizing<Vec<u8>> = match alg {
        Algorithm::ES256 => {
            use p256::pkcs8::EncodePrivateKey;
            let key = p256::ecdsa::SigningKey::random(&mut rng);
            Zeroizing::new(
                key.to_pkcs8_der()
                    .map_err(|e| failed(&e))?
                    .as_bytes()
                    .to_vec(),
            )
        }
        Algorithm::RS256 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rng, RSA_BITS).map_err(|e| failed(&e))?;
            Zeroizing::new(
                key.to_pkcs8_der()
                    .map_err(|e| failed(&e))?
                    .as_bytes()
                    .to_vec(),
            )
        }
        Algorithm::EdDSA => {
            use ed25519_dalek::pkcs8::EncodePrivateKey;
            let key = ed25519_dalek::SigningKey::generate(&mut rng);
            Zeroizing::new(
                key.to_pkcs8_der()
                    .map_err(|e| failed(&e))?
                    .as_bytes()
                    .to_vec(),
            )
        }
    };
    // Decoding what will be stored proves the stored form works before it is stored.
    let (_, jwk) = PrivateKey::from_pkcs8(alg, &pkcs8).map_err(|e| failed(&e))?;
    Ok(GeneratedKey { pkcs8, jwk })
}

/// The key that signs for one algorithm: parsed private key, kid and the encoded
/// JOSE headers, all prepared when the ring is built.
pub struct Signer {
    kid: String,
    alg: Algorithm,
    key: PrivateKey,
    /// base64url of the JOSE header for each [`TokenKind`].
    headers: [String; 3],
}

impl Signer {
    fn new(kid: String, alg: Algorithm, key: PrivateKey) -> IssuerResult<Self> {
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'a str,
            typ: &'a str,
            kid: &'a str,
        }
        let encode = |kind: TokenKind| -> IssuerResult<String> {
            let json = serde_json::to_vec(&Header {
                alg: alg.as_str(),
                typ: kind.typ(),
                kid: &kid,
            })
            .map_err(|e| IssuerError::Signing(e.to_string()))?;
            Ok(URL_SAFE_NO_PAD.encode(json))
        };
        let headers = [
            encode(TokenKind::Access)?,
            encode(TokenKind::Id)?,
            encode(TokenKind::Logout)?,
        ];
        Ok(Signer {
            kid,
            alg,
            key,
            headers,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    pub(crate) fn encoded_header(&self, kind: TokenKind) -> &str {
        &self.headers[kind as usize]
    }

    /// Signs `token` (header.payload so far) and appends `.signature`.
    pub(crate) fn sign_appending(&self, token: &mut String) -> IssuerResult<()> {
        self.key.sign_appending(token)
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// A published public key, decoded once, in the form that verifies its algorithm
/// and no other: ES256 (*ring*; fixed-size r || s), RS256 (*ring*; RSASSA-PKCS1-v1_5
/// with SHA-256, 2048–8192-bit modulus) or EdDSA (`ed25519-dalek`, as
/// `jsonwebtoken` verified it before, which *ring* does not beat).
enum PublicKey {
    /// An uncompressed P-256 point.
    Es256(ring::signature::UnparsedPublicKey<Vec<u8>>),
    Rs256(ring::signature::RsaPublicKeyComponents<Vec<u8>>),
    EdDsa(Box<ed25519_dalek::VerifyingKey>),
}

/// A published key, for verification.
pub(crate) struct VerificationKey {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) state: KeyState,
    pub(crate) publish_until: Option<DateTime<Utc>>,
    public: PublicKey,
}

impl VerificationKey {
    pub(crate) fn is_published_at(&self, now: DateTime<Utc>) -> bool {
        self.state != KeyState::Retired || self.publish_until.is_some_and(|until| until > now)
    }

    /// Whether `signature` (decoded from the JWS) is this key's signature over
    /// `signing_input` (the JWS's `header.payload`, as sent) with its algorithm.
    pub(crate) fn signed(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        self.public.verifies(signing_input, signature)
    }
}

impl PublicKey {
    fn verifies(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::Es256(key) => key.verify(signing_input, signature).is_ok(),
            PublicKey::Rs256(key) => key
                .verify(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    signing_input,
                    signature,
                )
                .is_ok(),
            PublicKey::EdDsa(key) => {
                use ed25519_dalek::Verifier;
                ed25519_dalek::Signature::from_slice(signature)
                    .is_ok_and(|signature| key.verify(signing_input, &signature).is_ok())
            }
        }
    }
}

/// A public key a client registered for `private_key_jwt` (RFC 7523), decoded for
/// the one algorithm it may verify.
pub(crate) struct ClientKey {
    pub(crate) kid: Option<String>,
    pub(crate) alg: Algorithm,
    public: PublicKey,
}

impl ClientKey {
    /// Whether `signature` is this key's signature over `signing_input`.
    pub(crate) fn signed(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        self.public.verifies(signing_input, signature)
    }
}

/// JWK members only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// More keys than any client rotates through; a set without `kid`s is tried key by
/// key, so the bound is also a bound on work per assertion.
const MAX_CLIENT_KEYS: usize = 16;

/// One key of a client's JWK Set. Unlike [`PublicJwk`] it tolerates members we do
/// not use (`x5c`, `key_ops`, `ext`, …): the set comes from the client's tooling.
#[derive(Deserialize)]
struct RegisteredJwk {
    kty: String,
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
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    key_use: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
}

/// Reads the JWK Set a client registered for `private_key_jwt`. Keys meant for
/// encryption or for algorithms Gatehouse does not verify (PS256, ES384, …) are
/// passed over. A private or symmetric key is refused outright: registering one
/// means the client's secret has left the client. A set with no usable key is an
/// error too, so a registration that could never authenticate is caught at once.
pub(crate) fn client_keys(jwks: &str) -> Result<Vec<ClientKey>, String> {
    let set: serde_json::Value =
        serde_json::from_str(jwks).map_err(|e| format!("the JWK Set is not JSON: {e}"))?;
    let entries = set
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| "not a JWK Set: no `keys` array".to_owned())?;
    if entries.len() > MAX_CLIENT_KEYS {
        return Err(format!(
            "the JWK Set has {} keys; at most {MAX_CLIENT_KEYS} are accepted",
            entries.len()
        ));
    }
    let mut keys = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let label = entry
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| format!("key #{index}"), |kid| format!("key `{kid}`"));
        if let Some(member) = PRIVATE_MEMBERS
            .iter()
            .find(|member| entry.get(**member).is_some())
        {
            return Err(format!(
                "{label} holds private key material (`{member}`); register the public key only"
            ));
        }
        let jwk: RegisteredJwk =
            serde_json::from_value(entry.clone()).map_err(|e| format!("{label}: {e}"))?;
        if jwk.key_use.as_deref().is_some_and(|u| u != "sig")
            || jwk
                .key_ops
                .as_ref()
                .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
        {
            continue;
        }
        let alg = match jwk.alg.as_deref() {
            Some(name) => match name.parse::<Algorithm>() {
                Ok(alg) => alg,
                Err(_) => continue,
            },
            None => match (jwk.kty.as_str(), jwk.crv.as_deref()) {
                ("EC", Some("P-256")) => Algorithm::ES256,
                ("OKP", Some("Ed25519")) => Algorithm::EdDSA,
                ("RSA", _) => Algorithm::RS256,
                _ => continue,
            },
        };
        if alg == Algorithm::RS256 {
            let modulus = jwk
                .n
                .as_deref()
                .and_then(|n| URL_SAFE_NO_PAD.decode(n).ok())
                .unwrap_or_default();
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant * 8 < RSA_BITS {
                return Err(format!(
                    "{label}: an RSA key needs a modulus of at least {RSA_BITS} bits"
                ));
            }
        }
        let public = PublicJwk {
            kty: jwk.kty,
            crv: jwk.crv,
            x: jwk.x,
            y: jwk.y,
            n: jwk.n,
            e: jwk.e,
            kid: jwk.kid.clone().unwrap_or_default(),
            key_use: "sig".to_owned(),
            alg: alg.as_str().to_owned(),
        }
        .verifier(alg)
        .map_err(|e| format!("{label}: {e}"))?;
        keys.push(ClientKey {
            kid: jwk.kid,
            alg,
            public,
        });
    }
    if keys.is_empty() {
        return Err("the JWK Set has no signature key for ES256, RS256 or EdDSA".to_owned());
    }
    Ok(keys)
}

/// One tenant's signing and verification keys and its JWKS, read-only and cheap to
/// clone (an `Arc`). Getting a signer or the JWKS allocates nothing. Rebuild it
/// ([`KeyRing::load`]) after a rotation and at [`KeyRing::refresh_at`].
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Ring>,
}

struct Ring {
    tenant: TenantId,
    loaded_at: DateTime<Utc>,
    signers: [Option<Signer>; 3],
    verifiers: Vec<VerificationKey>,
    jwks: Arc<[u8]>,
    refresh_at: Option<DateTime<Utc>>,
}

/// What a ring is built from: one published key, its private half only if active.
pub(crate) struct KeyMaterial {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) state: KeyState,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) publish_until: Option<DateTime<Utc>>,
    pub(crate) public_jwk: String,
    pub(crate) private_pkcs8: Option<Zeroizing<Vec<u8>>>,
}

impl KeyRing {
    /// Reads the tenant's published keys and builds its ring; unseals active keys only.
    pub fn load(
        conn: &mut AnyConnection,
        cipher: &Cipher,
        now: DateTime<Utc>,
        tenant: TenantId,
    ) -> IssuerResult<KeyRing> {
        let keys = signing_keys::list_published(conn, tenant, now)?;
        KeyRing::from_keys(cipher, now, tenant, &keys)
    }

    /// Builds a ring from stored keys (those not published at `now` are left out).
    pub fn from_keys(
        cipher: &Cipher,
        now: DateTime<Utc>,
        tenant: TenantId,
        keys: &[StoredKey],
    ) -> IssuerResult<KeyRing> {
        let mut material = Vec::with_capacity(keys.len());
        for key in keys {
            if key.tenant_id != tenant || !key.is_published_at(now) {
                continue;
            }
            let private_pkcs8 = match key.state {
                KeyState::Active => Some(key.private_key(cipher)?),
                KeyState::Next | KeyState::Retired => None,
            };
            material.push(KeyMaterial {
                kid: key.kid.clone(),
                alg: Algorithm::from_store(key.alg),
                state: key.state,
                created_at: key.created_at,
                publish_until: key.publish_until,
                public_jwk: key.public_jwk.clone(),
                private_pkcs8,
            });
        }
        KeyRing::build(tenant, now, material)
    }

    pub(crate) fn build(
        tenant: TenantId,
        now: DateTime<Utc>,
        mut keys: Vec<KeyMaterial>,
    ) -> IssuerResult<KeyRing> {
        // JWKS order: active keys first (some clients take the first key that fits),
        // then next, then retired; newest first within a state.
        let rank = |state: KeyState| match state {
            KeyState::Active => 0,
            KeyState::Next => 1,
            KeyState::Retired => 2,
        };
        keys.sort_by_key(|key| {
            (
                rank(key.state),
                key.alg.index(),
                std::cmp::Reverse(key.created_at),
            )
        });
        let mut signers: [Option<Signer>; 3] = [None, None, None];
        let mut verifiers = Vec::with_capacity(keys.len());
        let mut published = Vec::with_capacity(keys.len());
        for key in keys {
            let bad = |message: String| IssuerError::BadKey {
                kid: key.kid.clone(),
                message,
            };
            let jwk: PublicJwk = serde_json::from_str(&key.public_jwk)
                .map_err(|e| bad(format!("stored public JWK: {e}")))?;
            if jwk.kid != key.kid || jwk.alg != key.alg.as_str() || jwk.key_use != "sig" {
                return Err(bad("stored public JWK does not match its row".to_owned()));
            }
            if jwk.thumbprint().as_deref() != Some(key.kid.as_str()) {
                return Err(bad("kid is not the thumbprint of the public key".to_owned()));
            }
            if let Some(der) = &key.private_pkcs8 {
                let (private, derived) = PrivateKey::from_pkcs8(key.alg, der).map_err(bad)?;
                if derived != jwk {
                    return Err(bad(
                        "private key does not match the published public key".to_owned()
                    ));
                }
                let slot = &mut signers[key.alg.index()];
                if slot.is_some() {
                    tracing::warn!(tenant = %tenant, kid = %key.kid, alg = %key.alg,
                        "more than one active signing key; using the newest");
                } else {
                    *slot = Some(Signer::new(key.kid.clone(), key.alg, private)?);
                }
            }
            verifiers.push(VerificationKey {
                public: jwk.verifier(key.alg).map_err(bad)?,
                kid: key.kid,
                alg: key.alg,
                state: key.state,
                publish_until: key.publish_until,
            });
            published.push(jwk);
        }
        #[derive(Serialize)]
        struct Jwks<'a> {
            keys: &'a [PublicJwk],
        }
        let jwks = serde_json::to_vec(&Jwks { keys: &published })
            .map_err(|e| IssuerError::Signing(e.to_string()))?;
        let refresh_at = verifiers
            .iter()
            .filter(|key| key.state == KeyState::Retired)
            .filter_map(|key| key.publish_until)
            .min();
        Ok(KeyRing {
            inner: Arc::new(Ring {
                tenant,
                loaded_at: now,
                signers,
                verifiers,
                jwks: jwks.into(),
                refresh_at,
            }),
        })
    }

    pub fn tenant(&self) -> TenantId {
        self.inner.tenant
    }

    /// The `now` the ring was built at.
    pub fn loaded_at(&self) -> DateTime<Utc> {
        self.inner.loaded_at
    }

    /// The active key for `alg`, if the tenant has one.
    pub fn signer(&self, alg: Algorithm) -> Option<&Signer> {
        self.inner.signers[alg.index()].as_ref()
    }

    /// The algorithms this tenant can sign with.
    pub fn algorithms(&self) -> impl Iterator<Item = Algorithm> + '_ {
        Algorithm::ALL
            .into_iter()
            .filter(|alg| self.signer(*alg).is_some())
    }

    /// The JWKS document (`{"keys":[…]}`), serialized once when the ring was built.
    /// Cloning the `Arc` is the only cost; `bytes::Bytes::from_owner` takes it as is.
    pub fn jwks(&self) -> Arc<[u8]> {
        Arc::clone(&self.inner.jwks)
    }

    /// The JWKS document, borrowed.
    pub fn jwks_json(&self) -> &[u8] {
        &self.inner.jwks
    }

    /// The kids in the JWKS, in order.
    pub fn published_kids(&self) -> impl Iterator<Item = &str> + '_ {
        self.inner.verifiers.iter().map(|key| key.kid.as_str())
    }

    /// When the ring goes stale by itself (the first retired key's publication
    /// ends); rotations are signalled separately.
    pub fn refresh_at(&self) -> Option<DateTime<Utc>> {
        self.inner.refresh_at
    }

    pub(crate) fn verification_key(&self, kid: &str) -> Option<&VerificationKey> {
        self.inner.verifiers.iter().find(|key| key.kid == kid)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signing: Vec<(&str, Algorithm)> = Algorithm::ALL
            .into_iter()
            .filter_map(|alg| self.signer(alg).map(|s| (s.kid(), alg)))
            .collect();
        f.debug_struct("KeyRing")
            .field("tenant", &self.inner.tenant)
            .field("loaded_at", &self.inner.loaded_at)
            .field("signing", &signing)
            .field("published", &self.published_kids().collect::<Vec<_>>())
            .finish()
    }
}

/// Makes sure the tenant can sign with ES256 (the default): on first use, creates an
/// active ES256 key. Returns whether it created one.
pub fn ensure_keys(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
) -> IssuerResult<bool> {
    ensure_active(conn, cipher, now, tenant, Algorithm::ES256)
}

/// Makes sure the tenant has an active key for `alg`, creating one (active at once:
/// no token can refer to it yet) if not. Two nodes racing both succeed; one creates
/// the key, the other finds it. Returns whether this call created it.
pub fn ensure_active(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    alg: Algorithm,
) -> IssuerResult<bool> {
    if signing_keys::active(conn, tenant, alg.to_store())?.is_some() {
        return Ok(false);
    }
    let key = generate(alg)?;
    let inserted = db::transaction(conn, |conn| {
        signing_keys::insert(
            conn,
            cipher,
            now,
            tenant,
            NewSigningKey {
                kid: key.jwk.kid.clone(),
                alg: alg.to_store(),
                private_key: &key.pkcs8,
                public_jwk: public_jwk_json(&key.jwk)?,
                state: KeyState::Active,
            },
        )
    });
    match inserted {
        Ok(_) => {
            tracing::info!(tenant = %tenant, alg = %alg, kid = %key.jwk.kid, "signing key created");
            Ok(true)
        }
        Err(StoreError::Conflict { field: "state", .. }) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// What [`rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The new key's kid.
    pub kid: String,
    /// `Next` normally; `Active` when the tenant had no key of the algorithm.
    pub state: KeyState,
    /// The key that started signing (the previous `next`).
    pub activated: Option<String>,
    /// The key that stopped signing, and until when it stays published.
    pub retired: Option<(String, DateTime<Utc>)>,
}

/// Rotates the tenant's `alg` keys by the rule in the [module documentation](self):
/// a new key is published as `next`; the previous `next` starts signing; the
/// previous `active` retires and stays published until `now + max_token_lifetime`.
///
/// The key is generated before the transaction (RSA is slow), so locks are held
/// only for three statements. A concurrent rotation of the same tenant and
/// algorithm fails with a `Conflict` store error and changes nothing.
pub fn rotate(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    alg: Algorithm,
    max_token_lifetime: Duration,
) -> IssuerResult<Rotation> {
    if max_token_lifetime < Duration::zero() {
        return Err(IssuerError::Claims(
            "max_token_lifetime is negative".to_owned(),
        ));
    }
    let key = generate(alg)?;
    let publish_until = now + max_token_lifetime;
    let rotation = db::transaction(conn, |conn| {
        let advanced = signing_keys::advance(conn, now, tenant, alg.to_store(), publish_until)?;
        let has_active = advanced.activated.is_some()
            || signing_keys::active(conn, tenant, alg.to_store())?.is_some();
        let state = if has_active {
            KeyState::Next
        } else {
            KeyState::Active
        };
        signing_keys::insert(
            conn,
            cipher,
            now,
            tenant,
            NewSigningKey {
                kid: key.jwk.kid.clone(),
                alg: alg.to_store(),
                private_key: &key.pkcs8,
                public_jwk: public_jwk_json(&key.jwk)?,
                state,
            },
        )?;
        Ok(Rotation {
            kid: key.jwk.kid.clone(),
            state,
            activated: advanced.activated,
            retired: advanced.retired.map(|kid| (kid, publish_until)),
        })
    })?;
    tracing::info!(
        tenant = %tenant,
        alg = %alg,
        kid = %rotation.kid,
        activated = rotation.activated.as_deref().unwrap_or("-"),
        retired = rotation.retired.as_ref().map_or("-", |(kid, _)| kid.as_str()),
        "signing keys rotated"
    );
    Ok(rotation)
}

/// Deletes the tenant's retired keys whose publication ended at or before `now`.
pub fn prune(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
) -> IssuerResult<usize> {
    let pruned = signing_keys::prune(conn, now, tenant)?;
    if pruned > 0 {
        tracing::info!(tenant = %tenant, pruned, "retired signing keys pruned");
    }
    Ok(pruned)
}

fn public_jwk_json(jwk: &PublicJwk) -> Result<String, StoreError> {
    serde_json::to_string(jwk).map_err(|e| StoreError::Invalid {
        entity: "signing key",
        message: e.to_string(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::OnceLock;

    use super::*;

    /// A generated key as ring material (RSA generation is slow in debug builds, so
    /// tests share keys through [`shared_key`]).
    pub(crate) fn material(
        alg: Algorithm,
        state: KeyState,
        created_at: DateTime<Utc>,
    ) -> KeyMaterial {
        let key = generate(alg).unwrap();
        material_from(key, alg, state, created_at)
    }

    fn material_from(
        key: GeneratedKey,
        alg: Algorithm,
        state: KeyState,
        created_at: DateTime<Utc>,
    ) -> KeyMaterial {
        KeyMaterial {
            kid: key.jwk.kid.clone(),
            alg,
            state,
            created_at,
            publish_until: None,
            public_jwk: serde_json::to_string(&key.jwk).unwrap(),
            private_pkcs8: (state == KeyState::Active).then_some(key.pkcs8),
        }
    }

    /// One RSA key per test binary.
    pub(crate) fn shared_rsa_pkcs8() -> &'static [u8] {
        static KEY: OnceLock<Vec<u8>> = OnceLock::new();
        KEY.get_or_init(|| generate(Algorithm::RS256).unwrap().pkcs8.to_vec())
    }

    pub(crate) fn rsa_material(state: KeyState, created_at: DateTime<Utc>) -> KeyMaterial {
        let der = Zeroizing::new(shared_rsa_pkcs8().to_vec());
        let (_, jwk) = PrivateKey::from_pkcs8(Algorithm::RS256, &der).unwrap();
        material_from(
            GeneratedKey { pkcs8: der, jwk },
            Algorithm::RS256,
            state,
            created_at,
        )
    }

    /// One ring with an active key per algorithm, shared (RSA generation is slow).
    pub(crate) fn full_ring() -> &'static KeyRing {
        static RING: OnceLock<KeyRing> = OnceLock::new();
        RING.get_or_init(|| {
            KeyRing::build(
                TenantId::new(),
                t0(),
                vec![
                    material(Algorithm::ES256, KeyState::Active, t0()),
                    rsa_material(KeyState::Active, t0()),
                    material(Algorithm::EdDSA, KeyState::Active, t0()),
                ],
            )
            .unwrap()
        })
    }

    /// Somebody else's ES256 and EdDSA keys, for forgeries.
    pub(crate) fn other_ring() -> KeyRing {
        KeyRing::build(
            TenantId::new(),
            t0(),
            vec![
                material(Algorithm::ES256, KeyState::Active, t0()),
                material(Algorithm::EdDSA, KeyState::Active, t0()),
            ],
        )
        .unwrap()
    }

    pub(crate) fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap()
    }

    fn jwks_value(ring: &KeyRing) -> serde_json::Value {
        serde_json::from_slice(ring.jwks_json()).unwrap()
    }

    #[test]
    fn algorithm_names_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.as_str().parse::<Algorithm>().unwrap(), alg);
            assert_eq!(Algorithm::from_store(alg.to_store()), alg);
            assert_eq!(alg.to_store().as_str(), alg.as_str());
            assert_eq!(format!("{:?}", alg.to_jose()), alg.as_str());
        }
        assert_eq!(Algorithm::default(), Algorithm::ES256);
        assert!("none".parse::<Algorithm>().is_err());
        assert!("HS256".parse::<Algorithm>().is_err());
        assert!("es256".parse::<Algorithm>().is_err());
    }

    #[test]
    fn jwks_has_public_members_only_per_rfc_7517() {
        let ring = KeyRing::build(
            TenantId::new(),
            t0(),
            vec![
                material(Algorithm::ES256, KeyState::Active, t0()),
                rsa_material(KeyState::Active, t0()),
                material(Algorithm::EdDSA, KeyState::Active, t0()),
            ],
        )
        .unwrap();
        let jwks = jwks_value(&ring);
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(jwks.as_object().unwrap().len(), 1, "only `keys`: {jwks}");
        assert_eq!(keys.len(), 3);
        let private_members = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
        for key in keys {
            let object = key.as_object().unwrap();
            for member in private_members {
                assert!(
                    !object.contains_key(member),
                    "private member {member} in {key}"
                );
            }
            assert_eq!(key["use"], "sig");
            let b64 = |m: &str| URL_SAFE_NO_PAD.decode(key[m].as_str().unwrap()).unwrap();
            let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
            names.sort_unstable();
            match key["alg"].as_str().unwrap() {
                "ES256" => {
                    assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
                    assert_eq!((&key["kty"], &key["crv"]), (&"EC".into(), &"P-256".into()));
                    assert_eq!((b64("x").len(), b64("y").len()), (32, 32));
                }
                "RS256" => {
                    assert_eq!(names, ["alg", "e", "kid", "kty", "n", "use"]);
                    assert_eq!(key["kty"], "RSA");
                    assert_eq!(b64("n").len(), 256);
                    assert_eq!(b64("e"), [1, 0, 1]);
                }
                "EdDSA" => {
                    assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x"]);
                    assert_eq!(
                        (&key["kty"], &key["crv"]),
                        (&"OKP".into(), &"Ed25519".into())
                    );
                    assert_eq!(b64("x").len(), 32);
                }
                other => panic!("unexpected alg {other}"),
            }
            // kid = RFC 7638 thumbprint, which jsonwebtoken computes independently.
            let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
            assert_eq!(
                parsed
                    .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                    .unwrap(),
                key["kid"].as_str().unwrap()
            );
        }
        assert_eq!(ring.algorithms().collect::<Vec<_>>(), Algorithm::ALL);
        // Debug output names kids, never key material.
        let debug = format!("{ring:?} {:?}", ring.signer(Algorithm::ES256).unwrap());
        assert!(
            debug.contains(ring.signer(Algorithm::ES256).unwrap().kid()),
            "{debug}"
        );
        assert!(debug.contains("[redacted]"), "{debug}");
    }

    #[test]
    fn a_stored_jwk_with_a_private_member_is_refused() {
        let mut key = material(Algorithm::ES256, KeyState::Next, t0());
        let mut value: serde_json::Value = serde_json::from_str(&key.public_jwk).unwrap();
        value["d"] = "c2VjcmV0".into();
        key.public_jwk = value.to_string();
        let error = KeyRing::build(TenantId::new(), t0(), vec![key]).unwrap_err();
        assert!(matches!(error, IssuerError::BadKey { .. }), "{error}");
    }

    #[test]
    fn a_published_key_must_fit_its_algorithm() {
        // Each change keeps the kid the thumbprint, so only the key's shape is wrong.
        type Change = fn(&mut serde_json::Value);
        let changes: [(Algorithm, Change); 5] = [
            (Algorithm::ES256, |jwk| jwk["crv"] = "P-384".into()),
            (Algorithm::ES256, |jwk| jwk["x"] = "AAAA".into()),
            (Algorithm::ES256, |jwk| {
                let x = jwk["x"].as_str().unwrap().to_owned();
                jwk["x"] = format!("{x}A").into();
            }),
            (Algorithm::EdDSA, |jwk| jwk["crv"] = "Ed448".into()),
            (Algorithm::EdDSA, |jwk| {
                jwk["x"] = URL_SAFE_NO_PAD.encode([7; 31]).into()
            }),
        ];
        for (alg, change) in changes {
            let mut key = material(alg, KeyState::Next, t0());
            let mut value: serde_json::Value = serde_json::from_str(&key.public_jwk).unwrap();
            change(&mut value);
            let mut jwk: PublicJwk = serde_json::from_value(value).unwrap();
            jwk.kid = jwk.thumbprint().unwrap();
            key.kid = jwk.kid.clone();
            key.public_jwk = serde_json::to_string(&jwk).unwrap();
            let error = KeyRing::build(TenantId::new(), t0(), vec![key]).unwrap_err();
            assert!(matches!(error, IssuerError::BadKey { .. }), "{error}");
        }
        // And an EC key cannot be published as an EdDSA (or RS256) key.
        let ec = material(Algorithm::ES256, KeyState::Next, t0());
        let jwk: PublicJwk = serde_json::from_str(&ec.public_jwk).unwrap();
        for alg in [Algorithm::EdDSA, Algorithm::RS256] {
            assert!(jwk.verifier(alg).is_err(), "{alg}");
        }
        assert!(jwk.verifier(Algorithm::ES256).is_ok());
    }

    #[test]
    fn mismatched_private_and_public_halves_are_refused() {
        let mut active = material(Algorithm::ES256, KeyState::Active, t0());
        let other = generate(Algorithm::ES256).unwrap();
        active.private_pkcs8 = Some(other.pkcs8);
        let error = KeyRing::build(TenantId::new(), t0(), vec![active]).unwrap_err();
        assert!(error.to_string().contains("does not match"), "{error}");

        // A kid that is not the key's thumbprint is refused too.
        let mut renamed = material(Algorithm::EdDSA, KeyState::Next, t0());
        let mut value: serde_json::Value = serde_json::from_str(&renamed.public_jwk).unwrap();
        value["kid"] = "chosen".into();
        renamed.public_jwk = value.to_string();
        renamed.kid = "chosen".into();
        assert!(KeyRing::build(TenantId::new(), t0(), vec![renamed]).is_err());
    }

    #[test]
    fn jwks_and_signer_lookups_share_the_ring() {
        let ring = KeyRing::build(
            TenantId::new(),
            t0(),
            vec![material(Algorithm::ES256, KeyState::Active, t0())],
        )
        .unwrap();
        let clone = ring.clone();
        assert!(Arc::ptr_eq(&ring.jwks(), &clone.jwks()));
        assert!(std::ptr::eq(
            ring.signer(Algorithm::ES256).unwrap(),
            clone.signer(Algorithm::ES256).unwrap()
        ));
        assert!(ring.signer(Algorithm::RS256).is_none());
        assert_eq!(ring.refresh_at(), None);
    }

    mod store {
        use gatehouse_core::secrets::MasterKey;
        use gatehouse_identity_store::tenants::{self, TenantData};

        use super::*;
        use crate::error::Rejection;
        use crate::jwt::{AccessTokenClaims, Audience, sign, verify_access_token};

        const ISSUER: &str = "https://id.example.com";

        fn cipher() -> Cipher {
            Cipher::new(vec![MasterKey::generate()]).unwrap()
        }

        fn tenant(conn: &mut AnyConnection) -> TenantId {
            tenants::create(
                conn,
                t0(),
                TenantData {
                    slug: "acme".into(),
                    display_name: "Acme".into(),
                    ..TenantData::default()
                },
            )
            .unwrap()
            .id
        }

        fn token(ring: &KeyRing, now: DateTime<Utc>) -> String {
            token_for(ring, now, Duration::minutes(5))
        }

        fn token_for(ring: &KeyRing, now: DateTime<Utc>, lifetime: Duration) -> String {
            let claims = AccessTokenClaims::new(
                ISSUER,
                "user-1",
                Audience::One("https://api.example.com".into()),
                "web",
                now,
                lifetime,
            );
            sign(ring, Algorithm::ES256, &claims).unwrap()
        }

        fn states(ring: &KeyRing) -> Vec<(String, KeyState)> {
            ring.inner
                .verifiers
                .iter()
                .map(|k| (k.kid.clone(), k.state))
                .collect()
        }

        gatehouse_identity_store::backend_tests! {
            fn ensure_keys_creates_one_active_es256_key(db) {
                let mut conn = db.conn();
                let cipher = cipher();
                let t = tenant(&mut conn);
                assert!(ensure_keys(&mut conn, &cipher, t0(), t).unwrap());
                assert!(!ensure_keys(&mut conn, &cipher, t0(), t).unwrap());
                let ring = KeyRing::load(&mut conn, &cipher, t0(), t).unwrap();
                assert_eq!(ring.algorithms().collect::<Vec<_>>(), [Algorithm::ES256]);
                assert_eq!(ring.published_kids().count(), 1);
                let claims = verify_access_token(&ring, &token(&ring, t0()), ISSUER, t0()).unwrap();
                assert_eq!(claims.sub, "user-1");

                // Another master key cannot open the tenant's signing key.
                assert!(matches!(
                    KeyRing::load(&mut conn, &self::cipher(), t0(), t),
                    Err(IssuerError::Store(StoreError::Secret(_)))
                ));
            }

            fn rotation_publishes_before_signing_and_retires_after_lifetime(db) {
                let mut conn = db.conn();
                let cipher = cipher();
                let t = tenant(&mut conn);
                let lifetime = Duration::hours(1);
                ensure_keys(&mut conn, &cipher, t0(), t).unwrap();
                let first = KeyRing::load(&mut conn, &cipher, t0(), t).unwrap();
                let k1 = first.signer(Algorithm::ES256).unwrap().kid().to_owned();
                let old_token = token(&first, t0());

                // First rotation: k2 is published as next; k1 keeps signing.
                let t1 = t0() + Duration::days(30);
                let r1 = rotate(&mut conn, &cipher, t1, t, Algorithm::ES256, lifetime).unwrap();
                assert_eq!((r1.state, r1.activated.as_deref(), r1.retired.as_ref()), (KeyState::Next, None, None));
                let k2 = r1.kid.clone();
                let ring = KeyRing::load(&mut conn, &cipher, t1, t).unwrap();
                assert_eq!(states(&ring), [(k1.clone(), KeyState::Active), (k2.clone(), KeyState::Next)]);
                assert_eq!(ring.signer(Algorithm::ES256).unwrap().kid(), k1, "the next key must not sign");

                // Second rotation: k3 next, k2 active, k1 retired until t2 + lifetime.
                let t2 = t1 + Duration::days(30);
                let r2 = rotate(&mut conn, &cipher, t2, t, Algorithm::ES256, lifetime).unwrap();
                assert_eq!(r2.activated.as_deref(), Some(k2.as_str()));
                assert_eq!(r2.retired, Some((k1.clone(), t2 + lifetime)));
                let k3 = r2.kid.clone();
                let ring = KeyRing::load(&mut conn, &cipher, t2, t).unwrap();
                assert_eq!(
                    states(&ring),
                    [(k2.clone(), KeyState::Active), (k3.clone(), KeyState::Next), (k1.clone(), KeyState::Retired)]
                );
                let jwks = jwks_value(&ring);
                let published: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
                assert_eq!(published, [k2.as_str(), k3.as_str(), k1.as_str()]);
                assert_eq!(ring.signer(Algorithm::ES256).unwrap().kid(), k2);
                assert_eq!(ring.refresh_at(), Some(t2 + lifetime));

                // A token the retired key signed (here: signed just before the
                // rotation, still unexpired) verifies until publish_until.
                let last_old = token(&first, t2 - Duration::seconds(1));
                let just_before_end = t2 + Duration::minutes(4);
                verify_access_token(&ring, &last_old, ISSUER, just_before_end).unwrap();
                // A token outliving the promised maximum lifetime stops verifying when
                // its key's publication ends, even against this (now stale) ring.
                let too_long = token_for(&first, t2 - Duration::seconds(1), lifetime * 3);
                verify_access_token(&ring, &too_long, ISSUER, t2 + lifetime - Duration::seconds(1)).unwrap();
                let error = verify_access_token(&ring, &too_long, ISSUER, t2 + lifetime).unwrap_err();
                assert!(matches!(error, IssuerError::Rejected(Rejection::KeyWithdrawn)), "{error}");
                // The very first token expired long ago.
                assert!(verify_access_token(&ring, &old_token, ISSUER, t2).is_err());
                // New tokens carry k2.
                let new_token = token(&ring, t2);
                let header = jsonwebtoken::decode_header(&new_token).unwrap();
                assert_eq!(header.kid.as_deref(), Some(k2.as_str()));
                verify_access_token(&ring, &new_token, ISSUER, t2).unwrap();

                // After publish_until the retired key leaves the JWKS and is pruned.
                let after = t2 + lifetime;
                let ring = KeyRing::load(&mut conn, &cipher, after, t).unwrap();
                assert_eq!(states(&ring), [(k2.clone(), KeyState::Active), (k3, KeyState::Next)]);
                assert_eq!(prune(&mut conn, after - Duration::seconds(1), t).unwrap(), 0);
                assert_eq!(prune(&mut conn, after, t).unwrap(), 1);
                assert_eq!(signing_keys::list(&mut conn, t).unwrap().len(), 2);
            }

            fn rotating_an_unused_algorithm_activates_at_once(db) {
                let mut conn = db.conn();
                let cipher = cipher();
                let t = tenant(&mut conn);
                let r = rotate(&mut conn, &cipher, t0(), t, Algorithm::EdDSA, Duration::hours(1)).unwrap();
                assert_eq!((r.state, r.activated, r.retired), (KeyState::Active, None, None));
                let ring = KeyRing::load(&mut conn, &cipher, t0(), t).unwrap();
                assert_eq!(ring.signer(Algorithm::EdDSA).unwrap().kid(), r.kid);
                assert!(ring.signer(Algorithm::ES256).is_none());
                assert!(!ensure_active(&mut conn, &cipher, t0(), t, Algorithm::EdDSA).unwrap());
            }

            fn a_losing_concurrent_rotation_changes_nothing(db) {
                let mut conn = db.conn();
                let cipher = cipher();
                let t = tenant(&mut conn);
                ensure_keys(&mut conn, &cipher, t0(), t).unwrap();
                rotate(&mut conn, &cipher, t0(), t, Algorithm::ES256, Duration::hours(1)).unwrap();
                let before = signing_keys::list(&mut conn, t).unwrap();
                // Simulate the loser: it would insert a second `next` key.
                let stray = generate(Algorithm::ES256).unwrap();
                let second_next = db::transaction(&mut conn, |conn| {
                    signing_keys::insert(conn, &cipher, t0(), t, NewSigningKey {
                        kid: stray.jwk.kid.clone(),
                        alg: KeyAlgorithm::Es256,
                        private_key: &stray.pkcs8,
                        public_jwk: public_jwk_json(&stray.jwk)?,
                        state: KeyState::Next,
                    })
                });
                assert!(matches!(second_next, Err(StoreError::Conflict { field: "state", .. })));
                assert_eq!(signing_keys::list(&mut conn, t).unwrap().len(), before.len());
            }
        }
    }
}
