//! New signing keys.

use std::fmt;

use gatehouse_jose::{Algorithm, PublicJwk};
use zeroize::Zeroizing;

use super::RSA_BITS;
use super::signer::PrivateKey;
use crate::error::{IssuerError, IssuerResult};

/// A freshly generated key: PKCS#8 DER (wiped on drop) and its public JWK.
pub(super) struct GeneratedKey {
    pub(super) pkcs8: Zeroizing<Vec<u8>>,
    pub(super) jwk: PublicJwk,
}

/// Generates a key. RSA takes a while (tens to hundreds of milliseconds in release
/// builds): call this on a blocking thread.
pub(super) fn generate(alg: Algorithm) -> IssuerResult<GeneratedKey> {
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
