//! The JWK Sets clients register for `private_key_jwt` (RFC 7523): read with
//! `gatehouse-jose`, judged here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_jose::{Algorithm, Jwk, JwkSet, PublicKey, private_member};

use super::RSA_BITS;

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

/// More keys than any client rotates through; a set without `kid`s is tried key by
/// key, so the bound is also a bound on work per assertion.
const MAX_CLIENT_KEYS: usize = 16;

/// Reads the JWK Set a client registered for `private_key_jwt`. Keys meant for
/// encryption or for algorithms Gatehouse does not verify (PS256, ES384, …) are
/// passed over; a key without `alg` is taken for what its type and curve imply.
/// A private or symmetric key is refused outright: registering one means the
/// client's secret has left the client. A set with no usable key is an error too,
/// so a registration that could never authenticate is caught at once.
pub(crate) fn client_keys(jwks: &str) -> Result<Vec<ClientKey>, String> {
    let set = JwkSet::parse(jwks.as_bytes()).map_err(|e| e.to_string())?;
    if set.keys.len() > MAX_CLIENT_KEYS {
        return Err(format!(
            "the JWK Set has {} keys; at most {MAX_CLIENT_KEYS} are accepted",
            set.keys.len()
        ));
    }
    let mut keys = Vec::with_capacity(set.keys.len());
    for (index, entry) in set.keys.iter().enumerate() {
        let label = entry
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| format!("key #{index}"), |kid| format!("key `{kid}`"));
        if let Some(member) = private_member(entry) {
            return Err(format!(
                "{label} holds private key material (`{member}`); register the public key only"
            ));
        }
        let jwk = Jwk::from_value(entry).map_err(|e| format!("{label}: {e}"))?;
        if !jwk.use_is_signature() || !jwk.ops_allow_verify() {
            continue;
        }
        let alg = match jwk.declared_alg() {
            Some(Ok(alg)) => alg,
            Some(Err(_)) => continue,
            None => match jwk.implied_alg() {
                Some(alg) => alg,
                None => continue,
            },
        };
        if alg == Algorithm::RS256 && jwk.rsa_modulus_bits().unwrap_or_default() < RSA_BITS {
            return Err(format!(
                "{label}: an RSA key needs a modulus of at least {RSA_BITS} bits"
            ));
        }
        let public = jwk.public_key(alg).map_err(|e| format!("{label}: {e}"))?;
        if alg == Algorithm::EdDSA && !is_ed25519_point(entry) {
            return Err(format!("{label}: JWK member `x` is not an Ed25519 point"));
        }
        keys.push(ClientKey {
            kid: jwk.kid().map(str::to_owned),
            alg,
            public,
        });
    }
    if keys.is_empty() {
        return Err("the JWK Set has no signature key for ES256, RS256 or EdDSA".to_owned());
    }
    Ok(keys)
}

/// Whether the key's `x` is a point on Ed25519. *ring* would only find out when
/// every assertion fails; a registration should fail instead.
fn is_ed25519_point(entry: &serde_json::Value) -> bool {
    entry
        .get("x")
        .and_then(serde_json::Value::as_str)
        .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
        .and_then(|x| <[u8; 32]>::try_from(x).ok())
        .is_some_and(|x| ed25519_dalek::VerifyingKey::from_bytes(&x).is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn an_ed25519_key_must_be_a_point_on_the_curve() {
        let not_a_point = (0..=u8::MAX)
            .map(|byte| [byte; 32])
            .find(|x| ed25519_dalek::VerifyingKey::from_bytes(x).is_err())
            .expect("some repeated byte is not a point");
        let set = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(not_a_point)}]});
        let error = client_keys(&set.to_string()).err().unwrap();
        assert!(error.contains("not an Ed25519 point"), "{error}");
    }
}
