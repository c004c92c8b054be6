//! `private_key_jwt` (OpenID Connect Core §9, RFC 7523): Gatehouse proves itself
//! to a partner's token endpoint with a short-lived JWT signed by the
//! connection's own P-256 key instead of a shared secret. The key is made when
//! the connection is (sealed at rest); its public half is what the partner
//! registers, served at `/federation/{slug}/jwks`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{MessageDigest, hash};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use serde_json::{Value, json};

use crate::AuthnError;

/// The `client_assertion_type` of a JWT assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn failure(error: impl std::fmt::Display) -> AuthnError {
    AuthnError::Internal(format!("client key: {error}"))
}

/// A fresh P-256 key, PKCS#8 PEM.
pub fn generate() -> Result<String, AuthnError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(failure)?;
    let key = EcKey::generate(&group).map_err(failure)?;
    let pem = PKey::from_ec_key(key)
        .and_then(|key| key.private_key_to_pem_pkcs8())
        .map_err(failure)?;
    String::from_utf8(pem).map_err(failure)
}

fn key(pem: &str) -> Result<EcKey<Private>, AuthnError> {
    EcKey::private_key_from_pem(pem.as_bytes()).map_err(failure)
}

/// The public key as a JWK (with its RFC 7638 thumbprint as `kid`).
pub fn public_jwk(pem: &str) -> Result<Value, AuthnError> {
    let key = key(pem)?;
    let mut context = BigNumContext::new().map_err(failure)?;
    let point = key
        .public_key()
        .to_bytes(key.group(), PointConversionForm::UNCOMPRESSED, &mut context)
        .map_err(failure)?;
    // 0x04 || x (32 bytes) || y (32 bytes)
    let (x, y) = (&point[1..33], &point[33..65]);
    let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
    let thumbprint_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = URL_SAFE_NO_PAD
        .encode(hash(MessageDigest::sha256(), thumbprint_input.as_bytes()).map_err(failure)?);
    Ok(
        json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256"}),
    )
}

/// A client assertion for `client_id` at the token endpoint `audience`, valid a
/// minute from `now` (seconds since the epoch), with a fresh `jti`.
pub fn assertion(
    pem: &str,
    client_id: &str,
    audience: &str,
    now: i64,
) -> Result<String, AuthnError> {
    let jwk = public_jwk(pem)?;
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": jwk["kid"]});
    let (jti, _) = crate::secrets::generate();
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": jti,
        "iat": now,
        "exp": now + 60,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let digest = hash(MessageDigest::sha256(), input.as_bytes()).map_err(failure)?;
    let private = key(pem)?;
    let signature = EcdsaSig::sign(&digest, &private).map_err(failure)?;
    // JWS ES256 is r || s, each 32 bytes (RFC 7518 §3.4), not DER.
    let mut raw = signature.r().to_vec_padded(32).map_err(failure)?;
    raw.extend(signature.s().to_vec_padded(32).map_err(failure)?);
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(raw)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use openssl::bn::BigNum;

    #[test]
    fn the_assertion_verifies_with_the_published_key() {
        let pem = generate().unwrap();
        let jwk = public_jwk(&pem).unwrap();
        let jwt = assertion(&pem, "gatehouse", "https://op.example/token", 1_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], "https://op.example/token");
        assert_eq!(claims["exp"], 1_060);
        assert_eq!(claims["iss"], claims["sub"]);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["kid"], jwk["kid"]);
        // Verify as a relying party would, from the JWK alone.
        let coordinate = |name: &str| {
            BigNum::from_slice(&URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap())
                .unwrap()
        };
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let public =
            EcKey::from_public_key_affine_coordinates(&group, &coordinate("x"), &coordinate("y"))
                .unwrap();
        let raw = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let signature = EcdsaSig::from_private_components(
            BigNum::from_slice(&raw[..32]).unwrap(),
            BigNum::from_slice(&raw[32..]).unwrap(),
        )
        .unwrap();
        let digest = hash(
            MessageDigest::sha256(),
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
        )
        .unwrap();
        assert!(signature.verify(&digest, &public).unwrap());
        assert!(public_jwk(&pem).unwrap().get("d").is_none(), "public only");
    }
}
