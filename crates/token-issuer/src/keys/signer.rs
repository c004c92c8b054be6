//! Private keys parsed once, and the [`Signer`] the ring holds per algorithm.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_jose::{Algorithm, PublicJwk};
use serde::Serialize;

use super::RSA_BITS;
use crate::error::{IssuerError, IssuerResult};
use crate::token_kind::TokenKind;

/// A private key, parsed once so signing does no decoding.
///
/// ES256 signs with *ring* (`EcdsaKeyPair`, P-256 in assembly), several times faster
/// than the pure-Rust `p256` crate, which still generates the keys: *ring* reads the
/// PKCS#8 `p256` writes (v1, with the public key in the `ECPrivateKey`) as it is.
/// *ring* is already linked through rustls, so this adds no C build. RS256 signs with
/// *ring* too (assembly bignum arithmetic, about five times the pure-Rust `rsa`
/// crate's rate, which still generates the keys); Ed25519 stays on `ed25519-dalek`
/// (measured slightly faster than *ring*'s).
pub(super) enum PrivateKey {
    Es256(ring::signature::EcdsaKeyPair),
    Rs256(ring::signature::RsaKeyPair),
    EdDsa(ed25519_dalek::SigningKey),
}

impl PrivateKey {
    /// Decodes a PKCS#8 DER key of `alg` and derives its public JWK (with the
    /// thumbprint as kid).
    pub(super) fn from_pkcs8(
        alg: Algorithm,
        der: &[u8],
    ) -> Result<(PrivateKey, PublicJwk), String> {
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
                let key = ring::signature::RsaKeyPair::from_pkcs8(der)
                    .map_err(|e| format!("RSA PKCS#8 key rejected: {e}"))?;
                let bits = key.public().modulus_len() * 8;
                if bits < RSA_BITS {
                    return Err(format!("RSA key has {bits} bits, fewer than {RSA_BITS}"));
                }
                let public = ring::signature::RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
                let mut jwk = PublicJwk::new(alg, "RSA");
                jwk.n = Some(URL_SAFE_NO_PAD.encode(&public.n));
                jwk.e = Some(URL_SAFE_NO_PAD.encode(&public.e));
                Ok((PrivateKey::Rs256(key), with_thumbprint(jwk)?))
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
                // PKCS#1 v1.5 (RFC 7518 §3.3); *ring* blinds the private-key operation.
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    message_and_out.as_bytes(),
                    &mut signature,
                )
                .map_err(|e| failed(&e))?;
                message_and_out.push('.');
                URL_SAFE_NO_PAD.encode_string(&signature, message_and_out);
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
    pub(super) fn new(kid: String, alg: Algorithm, key: PrivateKey) -> IssuerResult<Self> {
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
