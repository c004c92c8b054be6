//! Client registration rules and client authentication at the token, introspection
//! and revocation endpoints (RFC 6749 §2.3: client_secret_basic and
//! client_secret_post; public clients send only their client_id).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use gatehouse_identity_store::clients::ClientData;

use crate::oauth_error::{ErrorCode, OAuthError};

/// What the request presented as client credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresentedClient {
    Basic {
        client_id: String,
        secret: Zeroizing<String>,
    },
    Post {
        client_id: String,
        secret: Zeroizing<String>,
    },
    /// A public client identifies itself without a secret.
    IdOnly { client_id: String },
}

impl PresentedClient {
    pub fn client_id(&self) -> &str {
        match self {
            PresentedClient::Basic { client_id, .. }
            | PresentedClient::Post { client_id, .. }
            | PresentedClient::IdOnly { client_id } => client_id,
        }
    }

    pub fn used_basic(&self) -> bool {
        matches!(self, PresentedClient::Basic { .. })
    }
}

/// `application/x-www-form-urlencoded` decoding of the Basic credentials (RFC 6749
/// §2.3.1: client_id and secret are form-encoded before base64).
fn form_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Reads client credentials from the Authorization header or the form. Using more
/// than one method at once is an error (RFC 6749 §2.3).
pub fn presented_client(
    authorization: Option<&str>,
    form_client_id: Option<&str>,
    form_client_secret: Option<&str>,
) -> Result<PresentedClient, OAuthError> {
    if let Some(header) = authorization {
        let Some(encoded) = header
            .strip_prefix("Basic ")
            .or_else(|| header.strip_prefix("basic "))
        else {
            return Err(OAuthError::invalid_client(false));
        };
        if form_client_secret.is_some() {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "use one client authentication method",
            ));
        }
        let decoded = STANDARD
            .decode(encoded.trim())
            .map_err(|_| OAuthError::invalid_client(true))?;
        let decoded = String::from_utf8(decoded).map_err(|_| OAuthError::invalid_client(true))?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or_else(|| OAuthError::invalid_client(true))?;
        let client_id = form_decode(id).ok_or_else(|| OAuthError::invalid_client(true))?;
        let secret = form_decode(secret).ok_or_else(|| OAuthError::invalid_client(true))?;
        if form_client_id.is_some_and(|form_id| form_id != client_id) {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "client_id does not match the credentials",
            ));
        }
        return Ok(PresentedClient::Basic {
            client_id,
            secret: Zeroizing::new(secret),
        });
    }
    let client_id = form_client_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| OAuthError::invalid_client(false))?
        .to_owned();
    Ok(match form_client_secret {
        Some(secret) => PresentedClient::Post {
            client_id,
            secret: Zeroizing::new(secret.to_owned()),
        },
        None => PresentedClient::IdOnly { client_id },
    })
}

pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Checks presented credentials against a registered client, in constant time, and
/// that the method is the one the client registered.
pub fn authenticate(client: &ClientData, presented: &PresentedClient) -> Result<(), OAuthError> {
    let fail = || OAuthError::invalid_client(presented.used_basic());
    let secret = match (client.auth_method.as_str(), presented) {
        ("client_secret_basic", PresentedClient::Basic { secret, .. }) => secret,
        ("client_secret_post", PresentedClient::Post { secret, .. }) => secret,
        ("none", PresentedClient::IdOnly { .. }) => return Ok(()),
        _ => return Err(fail()),
    };
    let stored = client.secret_hash.as_deref().ok_or_else(fail)?;
    let presented_hash = secret_hash(secret);
    if bool::from(presented_hash.as_bytes().ct_eq(stored.as_bytes())) {
        Ok(())
    } else {
        Err(fail())
    }
}

/// A new client secret: 256 random bits, shown once.
pub fn generate_secret() -> Zeroizing<String> {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes))
}

pub fn generate_client_id() -> String {
    let mut bytes = [0_u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Registration rules for redirect URIs (OAuth 2.0 Security BCP): absolute, no
/// fragment, https — or http only on a loopback host for native apps and
/// development. Matching at the authorization endpoint is exact string equality.
pub fn validate_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.contains('#') {
        return Err(format!("{uri}: a redirect URI must not contain a fragment"));
    }
    if let Some(rest) = uri.strip_prefix("https://") {
        return if rest.is_empty() || rest.starts_with('/') {
            Err(format!("{uri}: missing host"))
        } else {
            Ok(())
        };
    }
    if let Some(rest) = uri.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or_default();
        let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
        return if matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
            Ok(())
        } else {
            Err(format!(
                "{uri}: http is allowed only for loopback hosts; use https"
            ))
        };
    }
    Err(format!(
        "{uri}: must be an absolute https (or loopback http) URL"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(method: &str, secret: Option<&str>) -> ClientData {
        ClientData {
            client_id: "c1".into(),
            name: "c".into(),
            client_type: if method == "none" {
                "public".into()
            } else {
                "confidential".into()
            },
            auth_method: method.into(),
            secret_hash: secret.map(secret_hash),
            jwks: None,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            grant_types: vec![],
            scopes: vec![],
            audiences: vec![],
            default_audience: None,
            access_token_ttl_secs: 300,
            refresh_token_ttl_secs: 0,
            refresh_idle_ttl_secs: 0,
            id_token_alg: "ES256".into(),
            require_pkce: true,
            require_par: false,
            first_party: false,
            backchannel_logout_uri: None,
        }
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20client:p%3Ass+word"));
        let presented = presented_client(Some(&header), None, None).unwrap();
        assert_eq!(presented.client_id(), "my client");
        match presented {
            PresentedClient::Basic { secret, .. } => assert_eq!(secret.as_str(), "p:ss word"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_registered_method_and_secret_must_match() {
        let registered = client("client_secret_basic", Some("s3cret"));
        let basic = |secret: &str| PresentedClient::Basic {
            client_id: "c1".into(),
            secret: Zeroizing::new(secret.into()),
        };
        assert!(authenticate(&registered, &basic("s3cret")).is_ok());
        let wrong = authenticate(&registered, &basic("nope")).unwrap_err();
        assert_eq!(
            (wrong.status, wrong.www_authenticate.is_some()),
            (401, true)
        );
        let post = PresentedClient::Post {
            client_id: "c1".into(),
            secret: Zeroizing::new("s3cret".into()),
        };
        assert!(
            authenticate(&registered, &post).is_err(),
            "a basic client authenticated with post"
        );
        let public = client("none", None);
        assert!(
            authenticate(
                &public,
                &PresentedClient::IdOnly {
                    client_id: "c1".into()
                }
            )
            .is_ok()
        );
        assert!(
            authenticate(
                &registered,
                &PresentedClient::IdOnly {
                    client_id: "c1".into()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn two_authentication_methods_at_once_are_refused() {
        let header = format!("Basic {}", STANDARD.encode("c1:x"));
        let error = presented_client(Some(&header), Some("c1"), Some("x")).unwrap_err();
        assert_eq!(error.error, ErrorCode::InvalidRequest);
    }

    #[test]
    fn redirect_uris_follow_the_security_bcp() {
        assert!(validate_redirect_uri("https://app.example/cb").is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:8123/cb").is_ok());
        assert!(validate_redirect_uri("http://localhost/cb").is_ok());
        assert!(validate_redirect_uri("http://app.example/cb").is_err());
        assert!(validate_redirect_uri("https://app.example/cb#frag").is_err());
        assert!(validate_redirect_uri("/relative").is_err());
        assert!(validate_redirect_uri("javascript:alert(1)").is_err());
    }
}
