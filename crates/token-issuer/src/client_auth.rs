//! Client registration rules and client authentication at the token, introspection
//! and revocation endpoints (RFC 6749 §2.3: client_secret_basic and
//! client_secret_post; public clients send only their client_id; private_key_jwt,
//! OIDC Core §9 and RFC 7523 §2.2: a JWT signed with a key the client registered).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use gatehouse_identity_store::clients::ClientData;
use gatehouse_jose::{Algorithm, JoseError};

use crate::error::Rejection;
use crate::jwt::{Audience, MAX_LEEWAY, unverified_assertion_claims, verify_client_assertion};
use crate::keys::client_keys;
use crate::oauth_error::{ErrorCode, OAuthError};

/// `client_assertion_type` for a JWT (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How far in the future a client assertion's `exp` may lie. Assertions are meant
/// to be minted per request; the bound caps how long a leaked, unused one stays
/// good and how long its `jti` must be remembered. An hour matches what common
/// client libraries default to (authlib mints hour-long assertions).
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::hours(1);

/// Skew allowed to the client's clock, which is not ours to keep right.
const ASSERTION_LEEWAY: Duration = MAX_LEEWAY;

/// `jti`s are stored until the assertion expires; a bound keeps rows small.
const MAX_JTI_LEN: usize = 256;

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
    /// private_key_jwt. `client_id` is the assertion's (still unverified) `sub`;
    /// `audiences` are the values that name this server, chosen by the endpoint
    /// that received the request, never by the client.
    JwtBearer {
        client_id: String,
        assertion: String,
        audiences: Vec<String>,
    },
}

impl PresentedClient {
    pub fn client_id(&self) -> &str {
        match self {
            PresentedClient::Basic { client_id, .. }
            | PresentedClient::Post { client_id, .. }
            | PresentedClient::IdOnly { client_id }
            | PresentedClient::JwtBearer { client_id, .. } => client_id,
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
        // The header escapes the server's input checks (they read paths, queries and
        // bodies): a control character decoded from it is refused here, as one in a
        // form would be, before it can reach the database.
        let plain = |text: String| (!text.chars().any(char::is_control)).then_some(text);
        let client_id = form_decode(id)
            .and_then(plain)
            .ok_or_else(|| OAuthError::invalid_client(true))?;
        let secret = form_decode(secret)
            .and_then(plain)
            .ok_or_else(|| OAuthError::invalid_client(true))?;
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

/// Reads a client assertion (RFC 7521 §4.2). `other_credentials` says whether the
/// request also carried a secret or an Authorization header: one method only.
/// `audiences` are the identifiers of this server the assertion may be addressed
/// to (its issuer, its token endpoint, the endpoint called).
pub fn presented_assertion(
    other_credentials: bool,
    form_client_id: Option<&str>,
    assertion_type: Option<&str>,
    assertion: Option<&str>,
    audiences: Vec<String>,
) -> Result<PresentedClient, OAuthError> {
    if other_credentials {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "use one client authentication method",
        ));
    }
    let (Some(assertion_type), Some(assertion)) = (assertion_type, assertion) else {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "client_assertion_type and client_assertion go together",
        ));
    };
    if assertion_type != JWT_BEARER {
        return Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "unsupported client_assertion_type",
        ));
    }
    // RFC 7523 §3: for client authentication `sub` is the client_id; the optional
    // client_id parameter must agree with it.
    let subject = unverified_assertion_claims(assertion).and_then(|claims| claims.sub);
    let client_id = match (subject, form_client_id) {
        (Some(subject), Some(form_id)) if subject != form_id => {
            return Err(OAuthError::invalid_client(false));
        }
        (Some(subject), _) => subject,
        (None, _) => return Err(OAuthError::invalid_client(false)),
    };
    if client_id.is_empty() {
        return Err(OAuthError::invalid_client(false));
    }
    Ok(PresentedClient::JwtBearer {
        client_id,
        assertion: assertion.to_owned(),
        audiences,
    })
}

/// A client assertion that passed every check but the replay check, which needs
/// the store: its `jti` must be recorded and stay unique until `usable_until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub jti: String,
    /// After this instant the assertion fails on `exp` by itself.
    pub usable_until: DateTime<Utc>,
}

/// Why a client assertion was refused. The client only ever learns
/// `invalid_client` (unknown and wrong look alike); this is for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionRejection {
    /// The client is registered for another authentication method.
    MethodNotRegistered,
    /// The client's registered JWK Set holds no usable key.
    NoUsableKey,
    /// The JWS itself: algorithm, key, signature, encoding.
    Token(Rejection),
    /// `iss` or `sub` is not the client_id.
    WrongIssuer,
    /// `aud` names none of this server's identifiers.
    WrongAudience,
    MissingClaim(&'static str),
    Expired,
    /// `exp` lies further ahead than [`MAX_ASSERTION_LIFETIME`].
    TooLongLived,
    NotYetValid,
    IssuedInTheFuture,
    /// The `jti` was used before.
    Replayed,
}

/// Checks a client assertion (RFC 7523 §3, OIDC Core §9) against the registered
/// client, except for `jti` reuse (see [`VerifiedAssertion`]).
pub fn verify_assertion(
    client: &ClientData,
    assertion: &str,
    audiences: &[String],
    now: DateTime<Utc>,
) -> Result<VerifiedAssertion, AssertionRejection> {
    if client.auth_method != "private_key_jwt" {
        return Err(AssertionRejection::MethodNotRegistered);
    }
    let keys = client_keys(client.jwks.as_deref().unwrap_or_default()).map_err(|message| {
        tracing::warn!(client_id = %client.client_id, %message, "registered JWK Set unusable");
        AssertionRejection::NoUsableKey
    })?;
    let claims = verify_client_assertion(&keys, assertion).map_err(AssertionRejection::Token)?;
    let is_client = |value: &Option<String>| value.as_deref() == Some(client.client_id.as_str());
    if !is_client(&claims.iss) || !is_client(&claims.sub) {
        return Err(AssertionRejection::WrongIssuer);
    }
    let aud = claims.aud.ok_or(AssertionRejection::MissingClaim("aud"))?;
    // One audience, and it must name us (draft-ietf-oauth-rfc7523bis; the 2025
    // private_key_jwt audience-injection disclosure): an assertion addressed to
    // several parties, or to an endpoint URL another server could advertise as its
    // own, could be replayed here.
    let single = match &aud {
        Audience::One(one) => Some(one.as_str()),
        Audience::Many(many) if many.len() == 1 => Some(many[0].as_str()),
        Audience::Many(_) => None,
    };
    if !single.is_some_and(|aud| audiences.iter().any(|ours| ours == aud)) {
        return Err(AssertionRejection::WrongAudience);
    }
    let exp = claims.exp.ok_or(AssertionRejection::MissingClaim("exp"))?;
    let leeway = ASSERTION_LEEWAY.num_seconds();
    let at = now.timestamp();
    // RFC 7519 §4.1.4: not accepted "on or after" exp.
    if at >= exp.saturating_add(leeway) {
        return Err(AssertionRejection::Expired);
    }
    if exp.saturating_sub(at) > (MAX_ASSERTION_LIFETIME + ASSERTION_LEEWAY).num_seconds() {
        return Err(AssertionRejection::TooLongLived);
    }
    if claims
        .nbf
        .is_some_and(|nbf| at.saturating_add(leeway) < nbf)
    {
        return Err(AssertionRejection::NotYetValid);
    }
    if claims
        .iat
        .is_some_and(|iat| at.saturating_add(leeway) < iat)
    {
        return Err(AssertionRejection::IssuedInTheFuture);
    }
    let jti = claims
        .jti
        .filter(|jti| !jti.is_empty() && jti.len() <= MAX_JTI_LEN)
        .ok_or(AssertionRejection::MissingClaim("jti"))?;
    let usable_until = DateTime::from_timestamp(exp.saturating_add(leeway), 0)
        .ok_or(AssertionRejection::Expired)?;
    Ok(VerifiedAssertion { jti, usable_until })
}

/// Checks a JWK Set offered for registration with private_key_jwt, and names the
/// algorithms its usable keys verify.
pub fn check_jwks(jwks: &str) -> Result<Vec<Algorithm>, String> {
    let mut algs = Vec::new();
    for key in client_keys(jwks)? {
        if !algs.contains(&key.alg) {
            algs.push(key.alg);
        }
    }
    Ok(algs)
}

/// The algorithm the client's ID tokens are signed with (its registered
/// `id_token_signed_response_alg`; ES256 when none is recorded).
pub fn id_token_alg(client: &ClientData) -> Result<Algorithm, JoseError> {
    match client.id_token_alg.trim() {
        "" => Ok(Algorithm::default()),
        name => name.parse(),
    }
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

/// Registration rules for redirect URIs (OAuth 2.0 Security BCP, RFC 9700 §2.1 and
/// §4.1; RFC 8252 §7.3): an absolute URL as a WHATWG parser (the `url` crate, as
/// browsers) reads it, no fragment, no userinfo, https — or http only on a loopback
/// host for native apps and development. Matching at the authorization endpoint is
/// exact string equality, so the rules look at what a browser would do with the
/// registered string: characters a parser rewrites or drops (whitespace, control
/// characters, backslashes) are refused rather than interpreted.
pub fn validate_redirect_uri(uri: &str) -> Result<(), String> {
    if uri
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(format!(
            "{uri:?}: whitespace, control characters and backslashes are not allowed"
        ));
    }
    let parsed = url::Url::parse(uri)
        .map_err(|_| format!("{uri}: must be an absolute https (or loopback http) URL"))?;
    if uri.contains('#') {
        return Err(format!("{uri}: a redirect URI must not contain a fragment"));
    }
    // `http://127.0.0.1:1@evil.example/` goes to evil.example: a host check on the
    // raw text would be fooled, and credentials have no place in a redirect anyway.
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "{uri}: must be an absolute https (or loopback http) URL"
        ));
    }
    // The raw text must say `scheme://authority` itself: a WHATWG parser reads
    // `https:///cb` and `https:app.example` as hosts `cb` and `app.example`, which
    // is not what the operator wrote. It is also where an empty `@` shows.
    let prefix = format!("{}://", parsed.scheme());
    let authority = uri
        .get(..prefix.len())
        .filter(|start| start.eq_ignore_ascii_case(&prefix))
        .map_or("", |_| &uri[prefix.len()..])
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("{uri}: missing host"));
    }
    let raw_userinfo = authority.contains('@');
    if !parsed.username().is_empty() || parsed.password().is_some() || raw_userinfo {
        return Err(format!(
            "{uri}: a redirect URI must not carry a user name or password"
        ));
    }
    let host = parsed.host();
    if host.is_none() {
        return Err(format!("{uri}: missing host"));
    }
    if parsed.scheme() == "https" {
        return Ok(());
    }
    let loopback = match host {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    };
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "{uri}: http is allowed only for loopback hosts; use https"
        ))
    }
}

/// A web origin a browser app may call from (CORS), as browsers send it in
/// `Origin`: `scheme://host[:port]`, https (or http on loopback), nothing after the
/// authority but an optional `/`. Returned ASCII-serialised (lower-case host, IDN
/// as punycode, default port left out), the form requests are compared in.
pub fn web_origin(text: &str) -> Result<String, String> {
    validate_redirect_uri(text).map_err(|e| e.replace("redirect URI", "web origin"))?;
    let parsed = url::Url::parse(text).map_err(|e| format!("{text}: {e}"))?;
    if parsed.path() != "/" || parsed.query().is_some() || text.ends_with('?') {
        return Err(format!(
            "{text}: an origin is scheme, host and port only (no path or query)"
        ));
    }
    Ok(parsed.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_origins_are_normalised_and_only_origins() {
        assert_eq!(
            web_origin("https://App.Example:443/").unwrap(),
            "https://app.example"
        );
        assert_eq!(
            web_origin("http://localhost:5173").unwrap(),
            "http://localhost:5173"
        );
        for bad in [
            "https://app.example/spa",
            "https://app.example?x=1",
            "https://app.example#top",
            "http://app.example",
            "https://user@app.example",
            "*",
            "null",
        ] {
            assert!(web_origin(bad).is_err(), "{bad} accepted");
        }
    }

    fn client(method: &str, secret: Option<&str>) -> ClientData {
        ClientData {
            client_type: if method == "none" {
                "public".into()
            } else {
                "confidential".into()
            },
            auth_method: method.into(),
            secret_hash: secret.map(secret_hash),
            refresh_token_ttl_secs: 0,
            refresh_idle_ttl_secs: 0,
            ..ClientData::new("c1", "c")
        }
    }

    #[test]
    fn basic_credentials_with_control_characters_are_refused() {
        for pair in ["id%00:secret", "id:se%0Acret", "i\u{7}d:secret"] {
            let header = format!("Basic {}", STANDARD.encode(pair));
            assert!(
                presented_client(Some(&header), None, None).is_err(),
                "{pair}"
            );
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

    mod assertions {
        #![allow(clippy::unwrap_used, clippy::expect_used)]

        use gatehouse_core::ids::TenantId;
        use gatehouse_identity_store::signing_keys::KeyState;
        use serde_json::{Value, json};

        use super::*;
        use crate::keys::KeyRing;
        use crate::keys::tests::{
            b64, full_ring as client_keys, material, other_ring as other_keys, signed_with, t0,
        };

        const ISSUER: &str = "https://id.example.com/t/acme";
        const TOKEN_ENDPOINT: &str = "https://id.example.com/t/acme/oauth2/token";

        pub(crate) fn registered(jwks: &[u8]) -> ClientData {
            let mut data = client("private_key_jwt", None);
            data.client_id = "svc".into();
            data.jwks = Some(String::from_utf8(jwks.to_vec()).unwrap());
            data
        }

        fn kid(alg: Algorithm) -> &'static str {
            client_keys().signer(alg).unwrap().kid()
        }

        pub(crate) fn claims(jti: &str) -> Value {
            json!({
                "iss": "svc",
                "sub": "svc",
                "aud": ISSUER,
                "iat": t0().timestamp(),
                "exp": t0().timestamp() + 60,
                "jti": jti,
            })
        }

        fn assertion(alg: Algorithm, payload: &Value) -> String {
            let header = json!({"alg": alg.as_str(), "typ": "JWT", "kid": kid(alg)});
            signed_with(client_keys(), alg, &header, payload)
        }

        fn audiences() -> Vec<String> {
            vec![ISSUER.to_owned()]
        }

        fn check(token: &str) -> Result<VerifiedAssertion, AssertionRejection> {
            let client = registered(client_keys().jwks_json());
            verify_assertion(&client, token, &audiences(), t0())
        }

        #[test]
        fn a_valid_assertion_passes_for_each_algorithm() {
            for alg in Algorithm::ALL {
                let verified = check(&assertion(alg, &claims("j1"))).unwrap();
                assert_eq!(verified.jti, "j1", "{alg}");
                // Remembered as long as it could be accepted: exp plus leeway.
                assert_eq!(
                    verified.usable_until.timestamp(),
                    t0().timestamp() + 60 + ASSERTION_LEEWAY.num_seconds()
                );
            }
            // aud may be a one-element array; kid may be left out.
            let mut payload = claims("j2");
            payload["aud"] = json!([ISSUER]);
            let no_kid = signed_with(
                client_keys(),
                Algorithm::EdDSA,
                &json!({"alg": "EdDSA"}),
                &payload,
            );
            check(&no_kid).unwrap();
        }

        #[test]
        fn another_key_does_not_verify() {
            let forger = other_keys();
            // Claiming the client's kid, signed with another key.
            let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid(Algorithm::ES256)});
            let forged = signed_with(&forger, Algorithm::ES256, &header, &claims("j"));
            assert_eq!(
                check(&forged),
                Err(AssertionRejection::Token(Rejection::BadSignature))
            );
            // Without a kid every key of the algorithm is tried; none verifies.
            let forged = signed_with(
                &forger,
                Algorithm::EdDSA,
                &json!({"alg": "EdDSA"}),
                &claims("j"),
            );
            assert_eq!(
                check(&forged),
                Err(AssertionRejection::Token(Rejection::BadSignature))
            );
            // A kid the client never registered.
            let header =
                json!({"alg": "ES256", "kid": forger.signer(Algorithm::ES256).unwrap().kid()});
            let forged = signed_with(&forger, Algorithm::ES256, &header, &claims("j"));
            assert_eq!(
                check(&forged),
                Err(AssertionRejection::Token(Rejection::UnknownKey))
            );
            // A payload changed after signing.
            let good = assertion(Algorithm::ES256, &claims("j"));
            let parts: Vec<&str> = good.split('.').collect();
            let mut changed = claims("j");
            changed["sub"] = "admin".into();
            let tampered = format!("{}.{}.{}", parts[0], b64(&changed), parts[2]);
            assert_eq!(
                check(&tampered),
                Err(AssertionRejection::Token(Rejection::BadSignature))
            );
        }

        #[test]
        fn expiry_lifetime_and_not_before_are_enforced() {
            let client = registered(client_keys().jwks_json());
            let token = assertion(Algorithm::ES256, &claims("j"));
            let exp = t0() + Duration::seconds(60);
            let at = |now| verify_assertion(&client, &token, &audiences(), now);
            at(exp + ASSERTION_LEEWAY - Duration::seconds(1)).unwrap();
            assert_eq!(at(exp + ASSERTION_LEEWAY), Err(AssertionRejection::Expired));

            let mut payload = claims("j");
            payload.as_object_mut().unwrap().remove("exp");
            assert_eq!(
                check(&assertion(Algorithm::ES256, &payload)),
                Err(AssertionRejection::MissingClaim("exp"))
            );
            payload["exp"] = json!(t0().timestamp() + 2 * 3600);
            assert_eq!(
                check(&assertion(Algorithm::ES256, &payload)),
                Err(AssertionRejection::TooLongLived)
            );
            payload["exp"] = json!(t0().timestamp() + 3600);
            check(&assertion(Algorithm::ES256, &payload)).unwrap();
            // NumericDate may carry a fraction.
            payload["exp"] = json!(t0().timestamp() as f64 + 60.5);
            check(&assertion(Algorithm::ES256, &payload)).unwrap();

            let mut early = claims("j");
            early["nbf"] = json!(t0().timestamp() + 300);
            assert_eq!(
                check(&assertion(Algorithm::ES256, &early)),
                Err(AssertionRejection::NotYetValid)
            );
            let mut future = claims("j");
            future["iat"] = json!(t0().timestamp() + 300);
            assert_eq!(
                check(&assertion(Algorithm::ES256, &future)),
                Err(AssertionRejection::IssuedInTheFuture)
            );
        }

        #[test]
        fn audience_issuer_subject_and_jti_must_be_right() {
            let with = |name: &str, value: Value| {
                let mut payload = claims("j");
                payload[name] = value;
                check(&assertion(Algorithm::ES256, &payload))
            };
            assert_eq!(
                with("aud", json!("https://other-server.example/oauth2/token")),
                Err(AssertionRejection::WrongAudience)
            );
            assert_eq!(
                with("aud", json!([])),
                Err(AssertionRejection::WrongAudience)
            );
            // The token endpoint URL (another server could advertise it as its own)
            // and several audiences at once are refused.
            assert_eq!(
                with("aud", json!(TOKEN_ENDPOINT)),
                Err(AssertionRejection::WrongAudience)
            );
            assert_eq!(
                with("aud", json!([ISSUER, "https://elsewhere.example"])),
                Err(AssertionRejection::WrongAudience)
            );
            assert_eq!(
                with("iss", json!("other")),
                Err(AssertionRejection::WrongIssuer)
            );
            assert_eq!(
                with("sub", json!("other")),
                Err(AssertionRejection::WrongIssuer)
            );
            assert_eq!(
                with("jti", json!("")),
                Err(AssertionRejection::MissingClaim("jti"))
            );
            assert_eq!(
                with("jti", json!("x".repeat(MAX_JTI_LEN + 1))),
                Err(AssertionRejection::MissingClaim("jti"))
            );
            let mut payload = claims("j");
            payload.as_object_mut().unwrap().remove("jti");
            assert_eq!(
                check(&assertion(Algorithm::ES256, &payload)),
                Err(AssertionRejection::MissingClaim("jti"))
            );
            payload = claims("j");
            payload.as_object_mut().unwrap().remove("aud");
            assert_eq!(
                check(&assertion(Algorithm::ES256, &payload)),
                Err(AssertionRejection::MissingClaim("aud"))
            );
            // An endpoint that resolved no tenant offers no audience: nothing matches.
            let client = registered(client_keys().jwks_json());
            assert_eq!(
                verify_assertion(
                    &client,
                    &assertion(Algorithm::ES256, &claims("j")),
                    &[],
                    t0()
                ),
                Err(AssertionRejection::WrongAudience)
            );
        }

        #[test]
        fn none_hmac_and_foreign_token_types_are_refused() {
            let payload = b64(&claims("j"));
            let none = format!("{}.{payload}.", b64(&json!({"alg": "none", "typ": "JWT"})));
            assert_eq!(
                check(&none),
                Err(AssertionRejection::Token(Rejection::AlgorithmNotAllowed))
            );
            // HS256 keyed with what the server knows of the client: its public JWKS.
            let jwks = client_keys().jwks_json();
            for (alg, hmac_alg) in [
                ("HS256", ring::hmac::HMAC_SHA256),
                ("HS512", ring::hmac::HMAC_SHA512),
            ] {
                let input = format!(
                    "{}.{payload}",
                    b64(&json!({"alg": alg, "typ": "JWT", "kid": kid(Algorithm::ES256)}))
                );
                let key = ring::hmac::Key::new(hmac_alg, jwks);
                let tag = ring::hmac::sign(&key, input.as_bytes());
                let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
                assert_eq!(
                    check(&token),
                    Err(AssertionRejection::Token(Rejection::AlgorithmNotAllowed)),
                    "{alg}"
                );
            }
            // An algorithm Gatehouse knows but the client registered no key for.
            let es_only = KeyRing::build(
                TenantId::new(),
                t0(),
                vec![material(Algorithm::ES256, KeyState::Active, t0())],
            )
            .unwrap();
            let client = registered(es_only.jwks_json());
            let ed = signed_with(
                &ed_signer(),
                Algorithm::EdDSA,
                &json!({"alg": "EdDSA"}),
                &claims("j"),
            );
            assert_eq!(
                verify_assertion(&client, &ed, &audiences(), t0()),
                Err(AssertionRejection::Token(Rejection::AlgorithmNotAllowed))
            );
            // Our own access tokens (typ at+jwt) are not client assertions, the
            // explicit assertion type is, and no `crit` extension is understood.
            let es256_kid = kid(Algorithm::ES256);
            for (header, refusal) in [
                (
                    json!({"alg": "ES256", "typ": "at+jwt", "kid": es256_kid}),
                    Some(Rejection::WrongType),
                ),
                (
                    json!({"alg": "ES256", "typ": "client-authentication+jwt", "kid": es256_kid}),
                    None,
                ),
                (
                    json!({"alg": "ES256", "crit": ["exp"], "kid": es256_kid}),
                    Some(Rejection::CriticalHeader),
                ),
            ] {
                let token = signed_with(client_keys(), Algorithm::ES256, &header, &claims("j"));
                assert_eq!(
                    check(&token).err(),
                    refusal.map(AssertionRejection::Token),
                    "{header}"
                );
            }
            assert_eq!(
                check("not.a.jwt"),
                Err(AssertionRejection::Token(Rejection::Malformed))
            );
        }

        fn ed_signer() -> KeyRing {
            KeyRing::build(
                TenantId::new(),
                t0(),
                vec![material(Algorithm::EdDSA, KeyState::Active, t0())],
            )
            .unwrap()
        }

        #[test]
        fn only_private_key_jwt_clients_may_use_assertions() {
            let mut client = registered(client_keys().jwks_json());
            client.auth_method = "client_secret_basic".into();
            let token = assertion(Algorithm::ES256, &claims("j"));
            assert_eq!(
                verify_assertion(&client, &token, &audiences(), t0()),
                Err(AssertionRejection::MethodNotRegistered)
            );
            client.auth_method = "private_key_jwt".into();
            client.jwks = None;
            assert_eq!(
                verify_assertion(&client, &token, &audiences(), t0()),
                Err(AssertionRejection::NoUsableKey)
            );
            // And a private_key_jwt client cannot fall back to a secret.
            let mut client = registered(client_keys().jwks_json());
            client.secret_hash = Some(secret_hash("s"));
            let basic = PresentedClient::Basic {
                client_id: "svc".into(),
                secret: Zeroizing::new("s".into()),
            };
            assert!(authenticate(&client, &basic).is_err());
        }

        #[test]
        fn the_assertion_parameters_are_read_strictly() {
            let token = assertion(Algorithm::ES256, &claims("j"));
            let read = |other, client_id, kind, assertion: Option<&str>| {
                presented_assertion(other, client_id, kind, assertion, audiences())
            };
            let presented = read(false, None, Some(JWT_BEARER), Some(&token)).unwrap();
            assert_eq!(presented.client_id(), "svc");
            assert!(!presented.used_basic());
            assert!(read(false, Some("svc"), Some(JWT_BEARER), Some(&token)).is_ok());
            let mismatch = read(false, Some("other"), Some(JWT_BEARER), Some(&token)).unwrap_err();
            assert_eq!(
                (mismatch.error, mismatch.status),
                (ErrorCode::InvalidClient, 401)
            );
            let two = read(true, None, Some(JWT_BEARER), Some(&token)).unwrap_err();
            assert_eq!(two.error, ErrorCode::InvalidRequest);
            let half = read(false, None, Some(JWT_BEARER), None).unwrap_err();
            assert_eq!(half.error, ErrorCode::InvalidRequest);
            let saml = read(
                false,
                None,
                Some("urn:ietf:params:oauth:client-assertion-type:saml2-bearer"),
                Some(&token),
            )
            .unwrap_err();
            assert_eq!(saml.error, ErrorCode::InvalidClient);
            let garbage = read(false, None, Some(JWT_BEARER), Some("garbage")).unwrap_err();
            assert_eq!(garbage.error, ErrorCode::InvalidClient);
        }

        mod store {
            use std::sync::Arc;

            use gatehouse_core::ManualClock;
            use gatehouse_identity_store::clients;

            use super::*;
            use crate::keys::tests::{cipher, tenant};
            use crate::service::Issuer;

            fn setup(db: &gatehouse_identity_store::testing::TestDb) -> (Issuer, TenantId) {
                let mut conn = db.conn();
                let tenant = tenant(&mut conn);
                clients::create(
                    &mut conn,
                    t0(),
                    tenant,
                    registered(client_keys().jwks_json()),
                )
                .unwrap();
                let issuer = Issuer::new(
                    db.pool().clone(),
                    cipher(),
                    Arc::new(ManualClock::new(t0())),
                );
                (issuer, tenant)
            }

            fn present(token: &str) -> PresentedClient {
                PresentedClient::JwtBearer {
                    client_id: "svc".into(),
                    assertion: token.to_owned(),
                    audiences: audiences(),
                }
            }

            gatehouse_identity_store::backend_tests! {
                fn a_jti_is_accepted_once(db) {
                    let (issuer, tenant) = setup(db);
                    let first = assertion(Algorithm::ES256, &claims("once"));
                    let client = issuer.authenticate_client(tenant, &present(&first)).unwrap();
                    assert_eq!(client.data.client_id, "svc");
                    let replay = issuer.authenticate_client(tenant, &present(&first)).unwrap_err();
                    assert_eq!(
                        (replay.error, replay.status, replay.www_authenticate),
                        (ErrorCode::InvalidClient, 401, None)
                    );
                    // Another signature over the same jti is the same replay.
                    let resigned = assertion(Algorithm::EdDSA, &claims("once"));
                    assert!(issuer.authenticate_client(tenant, &present(&resigned)).is_err());
                    // A forgery is refused before its jti is recorded, so it cannot
                    // use up the one the client is about to send.
                    let forged = signed_with(&other_keys(), Algorithm::ES256, &json!({"alg": "ES256"}), &claims("next"));
                    assert!(issuer.authenticate_client(tenant, &present(&forged)).is_err());
                    let next = assertion(Algorithm::ES256, &claims("next"));
                    issuer.authenticate_client(tenant, &present(&next)).unwrap();
                }

                fn another_algorithm_gets_its_key_when_first_needed(db) {
                    let (issuer, tenant) = setup(db);
                    let ring = issuer.key_ring(tenant).unwrap();
                    assert_eq!(ring.algorithms().collect::<Vec<_>>(), [Algorithm::ES256]);
                    let ring = issuer.signing_ring(tenant, Algorithm::EdDSA).unwrap();
                    assert_eq!(
                        ring.algorithms().collect::<Vec<_>>(),
                        [Algorithm::ES256, Algorithm::EdDSA]
                    );
                    // The cached ring now has it too, and the JWKS publishes it.
                    let cached = issuer.key_ring(tenant).unwrap();
                    assert!(cached.signer(Algorithm::EdDSA).is_some());
                    let jwks: Value = serde_json::from_slice(&issuer.jwks(tenant).unwrap()).unwrap();
                    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
                }
            }
        }

        #[test]
        fn the_registered_id_token_alg_is_read() {
            let mut client = registered(b"{}");
            assert_eq!(id_token_alg(&client), Ok(Algorithm::ES256));
            client.id_token_alg = "EdDSA".into();
            assert_eq!(id_token_alg(&client), Ok(Algorithm::EdDSA));
            client.id_token_alg = String::new();
            assert_eq!(id_token_alg(&client), Ok(Algorithm::ES256));
            client.id_token_alg = "HS256".into();
            assert!(id_token_alg(&client).is_err());
        }

        #[test]
        fn registered_key_sets_are_checked() {
            assert_eq!(
                check_jwks(std::str::from_utf8(client_keys().jwks_json()).unwrap()).unwrap(),
                Algorithm::ALL
            );
            let set = |keys: Value| check_jwks(&json!({ "keys": keys }).to_string());
            let ec: Value =
                serde_json::from_slice::<Value>(client_keys().jwks_json()).unwrap()["keys"][0]
                    .clone();
            assert_eq!(ec["alg"], "ES256");
            // Without alg and kid (the kty and curve say enough), with extra members.
            let mut bare = ec.clone();
            let object = bare.as_object_mut().unwrap();
            object.remove("alg");
            object.remove("kid");
            object.insert("x5t#S256".into(), json!("ignored"));
            assert_eq!(set(json!([bare])).unwrap(), [Algorithm::ES256]);
            // An encryption key alone is no use.
            let mut enc = ec.clone();
            enc["use"] = "enc".into();
            assert!(set(json!([enc])).is_err());
            // A private key, or a symmetric one, is refused outright.
            let mut private = ec.clone();
            private["d"] = "c2VjcmV0".into();
            let error = set(json!([private])).unwrap_err();
            assert!(error.contains("private"), "{error}");
            assert!(set(json!([{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}])).is_err());
            // A short RSA modulus.
            let weak = json!({"kty": "RSA", "alg": "RS256", "n": URL_SAFE_NO_PAD.encode([0xc5_u8; 128]), "e": "AQAB"});
            let error = set(json!([weak])).unwrap_err();
            assert!(error.contains("2048"), "{error}");
            // A key whose alg does not fit its type.
            let mut mislabelled = ec.clone();
            mislabelled["alg"] = "EdDSA".into();
            assert!(set(json!([mislabelled])).is_err());
            assert!(set(json!([])).is_err());
            assert!(check_jwks("[]").is_err());
            assert!(check_jwks("not json").is_err());
        }
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
        assert!(validate_redirect_uri("http://[::1]:8123/cb").is_ok());
        assert!(validate_redirect_uri("https://app.example:8443/cb?x=1").is_ok());
    }

    #[test]
    fn redirect_uris_are_judged_as_a_browser_parses_them() {
        for (uri, why) in [
            ("http://127.0.0.1:1@evil.example/cb", "user name"),
            ("http://localhost@evil.example/cb", "user name"),
            ("https://user:pass@app.example/cb", "user name"),
            ("https://@app.example/cb", "user name"),
            ("http://localhost.evil.example/cb", "loopback"),
            ("http://127.0.0.2.evil.example/cb", "loopback"),
            ("https:\\\\evil.example/cb", "backslash"),
            ("http://localhost\\@evil.example/cb", "backslash"),
            (" https://app.example/cb", "whitespace"),
            ("https://app.example/c b", "whitespace"),
            ("https://app.example/cb\t", "whitespace"),
            ("https:///cb", "host"),
            ("https:app.example/cb", "host"),
            ("https:app.example/cb?x=://y", "host"),
            ("https://", "absolute"),
            ("custom.scheme:/cb", "absolute"),
        ] {
            let error = validate_redirect_uri(uri).expect_err(uri);
            let reason = match why {
                "user name" => "user name or password",
                "loopback" => "only for loopback",
                "backslash" | "whitespace" => "not allowed",
                "host" => "host",
                _ => "absolute",
            };
            assert!(error.contains(reason), "{uri}: {error}");
        }
    }
}
