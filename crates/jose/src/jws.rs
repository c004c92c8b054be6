//! The JWS compact serialization (RFC 7515 §7.1).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::JoseError;

/// Longer tokens are refused before any parsing.
pub const MAX_JWS_LEN: usize = 16 * 1024;

/// The JOSE header members Gatehouse reads. Its policy on each (which `typ`, no
/// `crit`, which `alg` for which key) is the caller's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JoseHeader {
    pub alg: String,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
    /// Present when the token names extensions it requires to be understood.
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// A JWS in compact form, split, with its header decoded. Nothing of the payload
/// has been read: check the signature first, then [`CompactJws::payload`].
#[derive(Debug, Clone)]
pub struct CompactJws<'a> {
    pub header: JoseHeader,
    /// `header.payload` exactly as sent (RFC 7515 §5.2).
    signing_input: &'a str,
    encoded_payload: &'a str,
    encoded_signature: &'a str,
}

impl<'a> CompactJws<'a> {
    /// Splits `token` into exactly three segments (a JWE has five) and decodes the
    /// header; [`JoseError::MalformedJws`] otherwise, or when the token is longer
    /// than [`MAX_JWS_LEN`].
    pub fn parse(token: &'a str) -> Result<Self, JoseError> {
        if token.len() > MAX_JWS_LEN {
            return Err(JoseError::MalformedJws);
        }
        let mut segments = token.split('.');
        let (Some(encoded_header), Some(encoded_payload), Some(encoded_signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(JoseError::MalformedJws);
        };
        let header: JoseHeader = URL_SAFE_NO_PAD
            .decode(encoded_header)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(JoseError::MalformedJws)?;
        Ok(CompactJws {
            header,
            signing_input: &token[..encoded_header.len() + 1 + encoded_payload.len()],
            encoded_payload,
            encoded_signature,
        })
    }

    /// What the signature signs: `header.payload` as sent.
    pub fn signing_input(&self) -> &'a [u8] {
        self.signing_input.as_bytes()
    }

    /// The signature, decoded.
    pub fn signature(&self) -> Result<Vec<u8>, JoseError> {
        URL_SAFE_NO_PAD
            .decode(self.encoded_signature)
            .map_err(|_| JoseError::MalformedJws)
    }

    /// The payload as `T`: [`JoseError::MalformedJws`] when it is not base64url,
    /// [`JoseError::Payload`] when it is not a `T`. Read it only once the signature
    /// holds (or, knowingly, to find out whose key to check it with).
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, JoseError> {
        let payload = URL_SAFE_NO_PAD
            .decode(self.encoded_payload)
            .map_err(|_| JoseError::MalformedJws)?;
        serde_json::from_slice(&payload).map_err(|e| JoseError::Payload(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    fn encode(value: serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn a_compact_jws_is_three_segments_with_a_json_header() {
        let header = encode(json!({"alg": "ES256", "typ": "at+jwt", "kid": "k", "x": 1}));
        let token = format!("{header}.{}.c2ln", encode(json!({"sub": "a"})));
        let jws = CompactJws::parse(&token).unwrap();
        assert_eq!(
            jws.header,
            JoseHeader {
                alg: "ES256".into(),
                typ: Some("at+jwt".into()),
                kid: Some("k".into()),
                crit: None,
            }
        );
        assert_eq!(
            jws.signing_input(),
            token.rsplit_once('.').unwrap().0.as_bytes()
        );
        assert_eq!(jws.signature().unwrap(), b"sig");
        assert_eq!(
            jws.payload::<serde_json::Value>().unwrap(),
            json!({"sub": "a"})
        );
        assert!(matches!(
            jws.payload::<Vec<u8>>(),
            Err(JoseError::Payload(_))
        ));

        let crit = encode(json!({"alg": "ES256", "crit": ["exp"]}));
        let token = format!("{crit}.e30.c2ln");
        let jws = CompactJws::parse(&token).unwrap();
        assert!(jws.header.crit.is_some());

        for malformed in [
            "",
            "a.b",
            "a.b.c.d.e",
            "!!.e30.c2ln",
            "e30.e30.c2ln",
            "W10.e30.c2ln",
        ] {
            assert_eq!(
                CompactJws::parse(malformed).err(),
                Some(JoseError::MalformedJws),
                "{malformed}"
            );
        }
        let long = "a".repeat(MAX_JWS_LEN + 1);
        assert_eq!(
            CompactJws::parse(&long).err(),
            Some(JoseError::MalformedJws)
        );
        let token = format!("{header}.!!.c2ln");
        let bad_payload = CompactJws::parse(&token).unwrap();
        assert_eq!(
            bad_payload.payload::<serde_json::Value>().err(),
            Some(JoseError::MalformedJws)
        );
        let token = format!("{header}.e30.!!");
        let bad_signature = CompactJws::parse(&token).unwrap();
        assert_eq!(
            bad_signature.signature().err(),
            Some(JoseError::MalformedJws)
        );
    }
}
