//! Minting and checking JWTs: access tokens (RFC 9068) and ID tokens (OIDC Core).
//!
//! Signing writes the JWS compact form directly with the ring's pre-parsed key and
//! pre-encoded header, so the hot path is one JSON serialization, one base64 pass and
//! one signature. Verification checks the header itself, then the signature with the
//! key named by `kid` and only that key's algorithm (public key decoded when the key
//! ring was built; *ring* for all three, through `gatehouse-jose`), and only then
//! decodes the claims. The tests also check tokens with `jsonwebtoken`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use gatehouse_jose::{Algorithm, CompactJws, JoseError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha512};

use crate::error::{IssuerError, IssuerResult, Rejection};
use crate::keys::{ClientKey, KeyRing};
pub use crate::token_kind::TokenKind;

/// Clock leeway for `exp` and `nbf` when verifying, unless the caller chooses one.
pub const DEFAULT_LEEWAY: Duration = Duration::seconds(5);
/// Larger leeways are capped here: a token is not valid minutes after it expired.
pub const MAX_LEEWAY: Duration = Duration::seconds(30);
/// Longer tokens are rejected before any parsing.
pub const MAX_TOKEN_LEN: usize = gatehouse_jose::MAX_JWS_LEN;

/// Claims that [`sign`] can sign.
pub trait TokenClaims: Serialize {
    const KIND: TokenKind;
    /// Claim names set by the issuer; configured (`extra`) claims may not reuse them.
    const REGISTERED: &'static [&'static str];
    fn extra(&self) -> &Map<String, Value>;
}

/// `aud`: one string or an array (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(one) => one == audience,
            Audience::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

/// JWT access token claims, RFC 9068 §2.2. Times are seconds since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
    pub client_id: String,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// Configured claims (roles, groups, entitlements, custom attributes).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AccessTokenClaims {
    /// Claims valid from `issued_at` for `lifetime`, with a random `jti`.
    pub fn new(
        issuer: impl Into<String>,
        subject: impl Into<String>,
        audience: Audience,
        client_id: impl Into<String>,
        issued_at: DateTime<Utc>,
        lifetime: Duration,
    ) -> Self {
        AccessTokenClaims {
            iss: issuer.into(),
            sub: subject.into(),
            aud: audience,
            exp: (issued_at + lifetime).timestamp(),
            iat: issued_at.timestamp(),
            nbf: None,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            client_id: client_id.into(),
            scope: None,
            auth_time: None,
            acr: None,
            amr: None,
            extra: Map::new(),
        }
    }
}

impl TokenClaims for AccessTokenClaims {
    const KIND: TokenKind = TokenKind::Access;
    const REGISTERED: &'static [&'static str] = &[
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "client_id",
        "scope",
        "auth_time",
        "acr",
        "amr",
    ];
    fn extra(&self) -> &Map<String, Value> {
        &self.extra
    }
}

/// ID token claims, OIDC Core §2 and §3.1.3.6.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// See [`at_hash`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// Configured and scope-derived claims (`email`, `name`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl IdTokenClaims {
    pub fn new(
        issuer: impl Into<String>,
        subject: impl Into<String>,
        audience: Audience,
        issued_at: DateTime<Utc>,
        lifetime: Duration,
    ) -> Self {
        IdTokenClaims {
            iss: issuer.into(),
            sub: subject.into(),
            aud: audience,
            exp: (issued_at + lifetime).timestamp(),
            iat: issued_at.timestamp(),
            auth_time: None,
            nonce: None,
            acr: None,
            amr: None,
            azp: None,
            sid: None,
            at_hash: None,
            extra: Map::new(),
        }
    }
}

impl TokenClaims for IdTokenClaims {
    const KIND: TokenKind = TokenKind::Id;
    const REGISTERED: &'static [&'static str] = &[
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "azp",
        "sid",
        "at_hash",
        "c_hash",
    ];
    fn extra(&self) -> &Map<String, Value> {
        &self.extra
    }
}

/// `at_hash` (OIDC Core §3.1.3.6; `c_hash` works the same way): the left-most half
/// of the hash of the access token's ASCII octets, base64url without padding.
///
/// The hash is the one of the ID token's `alg`: SHA-256 for ES256 and RS256. JWA
/// names no hash for EdDSA; like other OpenID providers (and the OpenID Foundation's
/// certification suite) we use SHA-512 for Ed25519, the hash Ed25519 is built on,
/// giving a 32-byte (43-character) value.
pub fn at_hash(alg: Algorithm, access_token: &str) -> String {
    match alg {
        Algorithm::ES256 | Algorithm::RS256 => {
            let digest = Sha256::digest(access_token.as_bytes());
            URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
        }
        Algorithm::EdDSA => {
            let digest = Sha512::digest(access_token.as_bytes());
            URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
        }
    }
}

/// Signs `claims` with the ring's active key for `alg`, with header
/// `{"alg", "typ", "kid"}` (`typ` from [`TokenClaims::KIND`]).
pub fn sign<C: TokenClaims>(ring: &KeyRing, alg: Algorithm, claims: &C) -> IssuerResult<String> {
    let signer = ring.signer(alg).ok_or(IssuerError::NoSigningKey { alg })?;
    if let Some(name) = claims
        .extra()
        .keys()
        .find(|name| C::REGISTERED.contains(&name.as_str()))
    {
        return Err(IssuerError::Claims(format!(
            "claim `{name}` is set by the issuer and cannot be configured"
        )));
    }
    let payload = serde_json::to_vec(claims).map_err(|e| IssuerError::Claims(e.to_string()))?;
    let header = signer.encoded_header(C::KIND);
    // header . payload . signature (RSA-2048: 342 characters; others 86).
    let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 350);
    token.push_str(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    signer.sign_appending(&mut token)?;
    Ok(token)
}

/// Verifies an access token issued by this tenant: see
/// [`verify_access_token_with_leeway`], with [`DEFAULT_LEEWAY`].
pub fn verify_access_token(
    ring: &KeyRing,
    token: &str,
    expected_issuer: &str,
    now: DateTime<Utc>,
) -> IssuerResult<AccessTokenClaims> {
    verify_access_token_with_leeway(ring, token, expected_issuer, now, DEFAULT_LEEWAY)
}

/// Verifies an access token (RFC 9068 §4):
/// - the header `typ` is `at+jwt` or `application/at+jwt` (case-insensitive);
/// - `kid` names a key in the ring (published: `next`, `active`, or `retired` before
///   its `publish_until` at `now`), and `alg` is exactly that key's algorithm, so
///   `none` and alg confusion (HS256 keyed with the public key) are refused;
/// - no `crit` header (no extension is understood);
/// - the signature;
/// - `iss` equals `expected_issuer`;
/// - `exp` is after `now` and `nbf` (if present) not after it, each give or take
///   `leeway` (capped at [`MAX_LEEWAY`]).
///
/// The audience is the resource server's business and is not checked here.
pub fn verify_access_token_with_leeway(
    ring: &KeyRing,
    token: &str,
    expected_issuer: &str,
    now: DateTime<Utc>,
    leeway: Duration,
) -> IssuerResult<AccessTokenClaims> {
    let claims: AccessTokenClaims = verify_jws(ring, token, TokenKind::Access, now)?;
    if claims.iss != expected_issuer {
        return Err(Rejection::WrongIssuer.into());
    }
    check_times(claims.exp, claims.nbf, now, leeway)?;
    Ok(claims)
}

/// Verifies an ID token this tenant issued, presented back as an `id_token_hint`
/// (OIDC RP-Initiated Logout 1.0 §2): type, key, signature and issuer as for access
/// tokens, but not its expiry — an RP logs out long after its ID token expired.
pub fn verify_id_token_hint(
    ring: &KeyRing,
    token: &str,
    expected_issuer: &str,
    now: DateTime<Utc>,
) -> IssuerResult<IdTokenClaims> {
    let claims: IdTokenClaims = verify_jws(ring, token, TokenKind::Id, now)?;
    if claims.iss != expected_issuer {
        return Err(Rejection::WrongIssuer.into());
    }
    Ok(claims)
}

fn is_expected_type(kind: TokenKind, typ: &str) -> bool {
    match kind {
        TokenKind::Access => {
            typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
        }
        TokenKind::Id => typ.eq_ignore_ascii_case("JWT"),
        TokenKind::Logout => typ.eq_ignore_ascii_case("logout+jwt"),
    }
}

/// Splits a compact JWS and decodes its header, refusing `crit` (no extension is
/// understood). Nothing of the payload is read.
fn split_jws(token: &str) -> Result<CompactJws<'_>, Rejection> {
    let jws = CompactJws::parse(token).map_err(|_| Rejection::Malformed)?;
    if jws.header.crit.is_some() {
        return Err(Rejection::CriticalHeader);
    }
    Ok(jws)
}

/// Decodes the claims; only call once the signature holds.
fn verified_claims<C: DeserializeOwned>(jws: &CompactJws<'_>) -> Result<C, Rejection> {
    jws.payload().map_err(|error| match error {
        JoseError::Payload(_) => Rejection::BadClaims,
        _ => Rejection::Malformed,
    })
}

/// The decoded signature.
fn signature(jws: &CompactJws<'_>) -> Result<Vec<u8>, Rejection> {
    jws.signature().map_err(|_| Rejection::Malformed)
}

/// Header checks, key selection and signature; returns the claims unchecked.
fn verify_jws<C: DeserializeOwned>(
    ring: &KeyRing,
    token: &str,
    kind: TokenKind,
    now: DateTime<Utc>,
) -> IssuerResult<C> {
    let jws = split_jws(token)?;
    if !jws
        .header
        .typ
        .as_deref()
        .is_some_and(|typ| is_expected_type(kind, typ))
    {
        return Err(Rejection::WrongType.into());
    }
    let key = jws
        .header
        .kid
        .as_deref()
        .and_then(|kid| ring.verification_key(kid))
        .ok_or(Rejection::UnknownKey)?;
    if jws.header.alg != key.alg.as_str() {
        return Err(Rejection::AlgorithmNotAllowed.into());
    }
    if !key.is_published_at(now) {
        return Err(Rejection::KeyWithdrawn.into());
    }
    let signature = signature(&jws)?;
    if !key.signed(jws.signing_input(), &signature) {
        return Err(Rejection::BadSignature.into());
    }
    // Nothing of the payload is looked at before the signature holds.
    Ok(verified_claims(&jws)?)
}

/// The claims of a client assertion (RFC 7523 §3, OIDC Core §9), as sent: which
/// are required, and what they must say, is for the caller to decide.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct AssertionClaims {
    #[serde(default)]
    pub(crate) iss: Option<String>,
    #[serde(default)]
    pub(crate) sub: Option<String>,
    #[serde(default)]
    pub(crate) aud: Option<Audience>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) iat: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) nbf: Option<i64>,
    #[serde(default)]
    pub(crate) jti: Option<String>,
}

/// RFC 7519 §2 NumericDate: seconds, which may carry a fraction (dropped here).
fn numeric_date<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    let seconds = Option::<f64>::deserialize(deserializer)?;
    match seconds {
        // `as` saturates: an absurd date stays absurd, and is refused as such.
        Some(value) if value.is_finite() => Ok(Some(value.floor() as i64)),
        Some(_) => Err(serde::de::Error::custom("NumericDate is not finite")),
        None => Ok(None),
    }
}

/// The claims of a client assertion before its signature is checked, so the
/// authenticating client can be found (its `sub`, RFC 7523 §3). Never trust them
/// beyond that look-up.
pub(crate) fn unverified_assertion_claims(token: &str) -> Option<AssertionClaims> {
    let jws = split_jws(token).ok()?;
    verified_claims(&jws).ok()
}

fn is_assertion_type(typ: &str) -> bool {
    let typ = typ
        .get(..12)
        .filter(|prefix| prefix.eq_ignore_ascii_case("application/"))
        .map_or(typ, |_| &typ[12..]);
    typ.eq_ignore_ascii_case("JWT") || typ.eq_ignore_ascii_case("client-authentication+jwt")
}

/// Verifies a client assertion's signature with one of the client's registered keys
/// (RFC 7523 §3, item 9) and returns its claims, not yet checked:
/// - `alg` must be ES256, RS256 or EdDSA: never `none`, and never an HMAC, whose
///   key would be a secret shared with the server;
/// - `typ`, if sent, must say JWT (or `client-authentication+jwt`), so a token of
///   another kind signed by the same key does not pass;
/// - no `crit` header;
/// - a key of that algorithm verifies the signature: the key named by `kid`, or,
///   without one, any of the client's keys for the algorithm.
pub(crate) fn verify_client_assertion(
    keys: &[ClientKey],
    token: &str,
) -> Result<AssertionClaims, Rejection> {
    let jws = split_jws(token)?;
    let alg: Algorithm = jws
        .header
        .alg
        .parse()
        .map_err(|_| Rejection::AlgorithmNotAllowed)?;
    if jws
        .header
        .typ
        .as_deref()
        .is_some_and(|typ| !is_assertion_type(typ))
    {
        return Err(Rejection::WrongType);
    }
    if !keys.iter().any(|key| key.alg == alg) {
        return Err(Rejection::AlgorithmNotAllowed);
    }
    // A registered key without a kid may sign under any kid; one with a kid, only
    // under its own (or none).
    let candidates: Vec<&ClientKey> = keys
        .iter()
        .filter(|key| key.alg == alg)
        .filter(
            |key| match (jws.header.kid.as_deref(), key.kid.as_deref()) {
                (Some(wanted), Some(kid)) => wanted == kid,
                _ => true,
            },
        )
        .collect();
    if candidates.is_empty() {
        return Err(Rejection::UnknownKey);
    }
    let signature = signature(&jws)?;
    if !candidates
        .iter()
        .any(|key| key.signed(jws.signing_input(), &signature))
    {
        return Err(Rejection::BadSignature);
    }
    verified_claims(&jws)
}

fn check_times(
    exp: i64,
    nbf: Option<i64>,
    now: DateTime<Utc>,
    leeway: Duration,
) -> Result<(), Rejection> {
    let leeway = leeway.clamp(Duration::zero(), MAX_LEEWAY).num_seconds();
    let now = now.timestamp();
    // RFC 7519 §4.1.4: not accepted "on or after" exp.
    if now >= exp.saturating_add(leeway) {
        return Err(Rejection::Expired);
    }
    if nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
        return Err(Rejection::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use gatehouse_core::ids::TenantId;
    use gatehouse_identity_store::signing_keys::KeyState;
    use serde_json::json;

    use super::*;
    use crate::keys::tests::{b64, full_ring as ring, material, other_ring, signed_with, t0};

    const ISSUER: &str = "https://id.example.com/t/acme";

    fn claims() -> AccessTokenClaims {
        let mut claims = AccessTokenClaims::new(
            ISSUER,
            "0190c9e8-0000-7000-8000-000000000001",
            Audience::Many(vec![
                "https://api.example.com".into(),
                "https://billing.example.com".into(),
            ]),
            "web-app",
            t0(),
            Duration::minutes(10),
        );
        claims.scope = Some("openid profile orders:read".into());
        claims.auth_time = Some(t0().timestamp() - 60);
        claims.acr = Some("urn:gatehouse:aal1".into());
        claims.amr = Some(vec!["pwd".into()]);
        claims
            .extra
            .insert("roles".into(), json!(["admin", "auditor"]));
        claims
    }

    fn header(alg: &str, typ: &str, kid: &str) -> Value {
        json!({"alg": alg, "typ": typ, "kid": kid})
    }

    fn kid(alg: Algorithm) -> &'static str {
        ring().signer(alg).unwrap().kid()
    }

    fn rejection(result: IssuerResult<AccessTokenClaims>) -> Rejection {
        match result {
            Err(IssuerError::Rejected(reason)) => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn verify(token: &str) -> IssuerResult<AccessTokenClaims> {
        verify_access_token(ring(), token, ISSUER, t0())
    }

    #[test]
    fn access_tokens_round_trip_for_each_algorithm() {
        for alg in Algorithm::ALL {
            let claims = claims();
            let token = sign(ring(), alg, &claims).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(header.kid.as_deref(), Some(kid(alg)));
            assert_eq!(format!("{:?}", header.alg), alg.as_str());
            assert_eq!(verify(&token).unwrap(), claims, "{alg}");

            // The payload is exactly the RFC 9068 claim set plus the extra claims.
            let payload: Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(token.split('.').nth(1).unwrap())
                    .unwrap(),
            )
            .unwrap();
            let mut names: Vec<&str> = payload
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            names.sort_unstable();
            assert_eq!(
                names,
                [
                    "acr",
                    "amr",
                    "aud",
                    "auth_time",
                    "client_id",
                    "exp",
                    "iat",
                    "iss",
                    "jti",
                    "roles",
                    "scope",
                    "sub"
                ]
            );
        }
        // ES256 and EdDSA signatures are 64 bytes (r || s, not DER); RS256 256.
        let sig_len = |alg| {
            let token = sign(ring(), alg, &claims()).unwrap();
            URL_SAFE_NO_PAD
                .decode(token.rsplit('.').next().unwrap())
                .unwrap()
                .len()
        };
        assert_eq!(
            [
                sig_len(Algorithm::ES256),
                sig_len(Algorithm::EdDSA),
                sig_len(Algorithm::RS256)
            ],
            [64, 64, 256]
        );
    }

    #[test]
    fn id_tokens_carry_typ_jwt_and_do_not_pass_as_access_tokens() {
        let access = sign(ring(), Algorithm::ES256, &claims()).unwrap();
        for alg in Algorithm::ALL {
            let mut id = IdTokenClaims::new(
                ISSUER,
                "user-1",
                Audience::One("web-app".into()),
                t0(),
                Duration::minutes(5),
            );
            id.nonce = Some("n-0S6_WzA2Mj".into());
            id.auth_time = Some(t0().timestamp());
            id.azp = Some("web-app".into());
            id.sid = Some("0190c9e8-session".into());
            id.at_hash = Some(at_hash(alg, &access));
            id.extra.insert("email".into(), json!("alice@example.com"));
            let token = sign(ring(), alg, &id).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.typ.as_deref(), Some("JWT"));
            let decoded: IdTokenClaims = verify_jws(ring(), &token, TokenKind::Id, t0()).unwrap();
            assert_eq!(decoded, id);
            assert_eq!(rejection(verify(&token)), Rejection::WrongType);
        }
    }

    #[test]
    fn alg_none_is_rejected() {
        let payload = serde_json::to_value(claims()).unwrap();
        for alg in ["none", "None", "NONE"] {
            let unsigned = format!(
                "{}.{}.",
                b64(&header(alg, "at+jwt", kid(Algorithm::ES256))),
                b64(&payload)
            );
            assert_eq!(
                rejection(verify(&unsigned)),
                Rejection::AlgorithmNotAllowed,
                "{alg}"
            );
        }
        // Even with a signature segment attached.
        let signed = sign(ring(), Algorithm::ES256, &claims()).unwrap();
        let signature = signed.rsplit('.').next().unwrap();
        let forged = format!(
            "{}.{}.{signature}",
            b64(&header("none", "at+jwt", kid(Algorithm::ES256))),
            b64(&payload)
        );
        assert!(verify(&forged).is_err());
    }

    #[test]
    fn hmac_with_the_public_key_is_rejected() {
        // The classic confusion: HS256 keyed with the published public key.
        let jwks: Value = serde_json::from_slice(ring().jwks_json()).unwrap();
        for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
            let jwk = jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kid"] == kid(alg))
                .unwrap();
            for secret in [jwk.to_string(), jwk["x"].to_string(), jwk["n"].to_string()] {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                h.typ = Some("at+jwt".into());
                h.kid = Some(kid(alg).into());
                let token = jsonwebtoken::encode(
                    &h,
                    &claims(),
                    &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
                )
                .unwrap();
                assert_eq!(rejection(verify(&token)), Rejection::AlgorithmNotAllowed);
            }
        }
        // Nor may one asymmetric algorithm pose as another's key.
        let payload = serde_json::to_value(claims()).unwrap();
        let token = signed_with(
            ring(),
            Algorithm::EdDSA,
            &header("EdDSA", "at+jwt", kid(Algorithm::ES256)),
            &payload,
        );
        assert_eq!(rejection(verify(&token)), Rejection::AlgorithmNotAllowed);
    }

    #[test]
    fn es256_signatures_must_be_fixed_size_r_and_s() {
        let token = sign(ring(), Algorithm::ES256, &claims()).unwrap();
        let (signed, encoded) = token.rsplit_once('.').unwrap();
        let fixed = URL_SAFE_NO_PAD.decode(encoded).unwrap();
        let with = |signature: &[u8]| format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature));
        verify(&with(&fixed)).unwrap();
        // The same signature in DER (what X.509 and plain ECDSA APIs use) is not JWS.
        let der = p256::ecdsa::Signature::from_slice(&fixed).unwrap().to_der();
        assert_eq!(
            rejection(verify(&with(der.as_bytes()))),
            Rejection::BadSignature
        );
        // Neither are r || s with a byte more or less, nor zero or out-of-range values.
        let mut longer = fixed.clone();
        longer.push(0);
        let mut r_zero = fixed.clone();
        r_zero[..32].fill(0);
        let mut s_too_big = fixed.clone();
        s_too_big[32..].fill(0xff);
        for bad in [
            &fixed[..63],
            &longer,
            &r_zero,
            &s_too_big,
            &[0; 64][..],
            &[],
        ] {
            assert_eq!(rejection(verify(&with(bad))), Rejection::BadSignature);
        }
        // A signature segment that is not canonical base64url is malformed.
        assert_eq!(
            rejection(verify(&format!("{token}="))),
            Rejection::Malformed
        );
    }

    #[test]
    fn a_token_signed_by_another_key_under_our_kid_is_rejected() {
        let payload = serde_json::to_value(claims()).unwrap();
        let impostor = other_ring();
        for alg in [Algorithm::ES256, Algorithm::EdDSA] {
            let token = signed_with(
                &impostor,
                alg,
                &header(alg.as_str(), "at+jwt", kid(alg)),
                &payload,
            );
            assert_eq!(rejection(verify(&token)), Rejection::BadSignature, "{alg}");
        }
        // And a token from another tenant's ring names a kid this ring does not know.
        let foreign = sign(&impostor, Algorithm::ES256, &claims()).unwrap();
        assert_eq!(rejection(verify(&foreign)), Rejection::UnknownKey);
    }

    #[test]
    fn tampered_tokens_are_rejected() {
        for alg in Algorithm::ALL {
            let token = sign(ring(), alg, &claims()).unwrap();
            let parts: Vec<&str> = token.split('.').collect();
            let mut changed = claims();
            changed.sub = "someone-else".into();
            let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&changed).unwrap());
            let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
            assert_eq!(
                rejection(verify(&tampered)),
                Rejection::BadSignature,
                "{alg}"
            );

            // A flipped signature bit.
            let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
            signature[10] ^= 1;
            let flipped = format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                URL_SAFE_NO_PAD.encode(&signature)
            );
            assert_eq!(
                rejection(verify(&flipped)),
                Rejection::BadSignature,
                "{alg}"
            );
        }
        for garbage in [
            "",
            ".",
            "..",
            "a.b.c",
            "e30.e30.",
            "not a token",
            &"A".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert!(verify(garbage).is_err(), "{garbage}");
        }
        let token = sign(ring(), Algorithm::ES256, &claims()).unwrap();
        let (header, rest) = token.split_once('.').unwrap();
        for extended in [format!("{token}."), format!("{header}.{header}.{rest}")] {
            assert_eq!(rejection(verify(&extended)), Rejection::Malformed);
        }
    }

    #[test]
    fn typ_must_be_at_jwt() {
        let payload = serde_json::to_value(claims()).unwrap();
        let es = kid(Algorithm::ES256);
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/AT+JWT",
        ] {
            let token = signed_with(
                ring(),
                Algorithm::ES256,
                &header("ES256", typ, es),
                &payload,
            );
            verify(&token).unwrap_or_else(|e| panic!("{typ}: {e}"));
        }
        for typ in ["JWT", "jwt", "at+JWT2", "application/jwt", ""] {
            let token = signed_with(
                ring(),
                Algorithm::ES256,
                &header("ES256", typ, es),
                &payload,
            );
            assert_eq!(rejection(verify(&token)), Rejection::WrongType, "{typ}");
        }
        let untyped = signed_with(
            ring(),
            Algorithm::ES256,
            &json!({"alg": "ES256", "kid": es}),
            &payload,
        );
        assert_eq!(rejection(verify(&untyped)), Rejection::WrongType);
    }

    #[test]
    fn unknown_or_missing_kid_and_crit_are_rejected() {
        let payload = serde_json::to_value(claims()).unwrap();
        let unknown = signed_with(
            ring(),
            Algorithm::ES256,
            &header("ES256", "at+jwt", "no-such-key"),
            &payload,
        );
        assert_eq!(rejection(verify(&unknown)), Rejection::UnknownKey);
        let missing = signed_with(
            ring(),
            Algorithm::ES256,
            &json!({"alg": "ES256", "typ": "at+jwt"}),
            &payload,
        );
        assert_eq!(rejection(verify(&missing)), Rejection::UnknownKey);
        let crit = signed_with(
            ring(),
            Algorithm::ES256,
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": kid(Algorithm::ES256), "crit": ["exp"], "exp": 1}),
            &payload,
        );
        assert_eq!(rejection(verify(&crit)), Rejection::CriticalHeader);
    }

    #[test]
    fn expiry_and_not_before_use_the_given_now() {
        let token = sign(ring(), Algorithm::ES256, &claims()).unwrap();
        let exp = DateTime::from_timestamp(claims().exp, 0).unwrap();
        let none = Duration::zero();
        let at = |now, leeway| verify_access_token_with_leeway(ring(), &token, ISSUER, now, leeway);
        at(exp - Duration::seconds(1), none).unwrap();
        assert_eq!(rejection(at(exp, none)), Rejection::Expired);
        assert_eq!(
            rejection(at(exp + Duration::days(365), none)),
            Rejection::Expired
        );
        // The default leeway is small, and any leeway is capped.
        verify_access_token(
            ring(),
            &token,
            ISSUER,
            exp + DEFAULT_LEEWAY - Duration::seconds(1),
        )
        .unwrap();
        assert_eq!(
            rejection(verify_access_token(
                ring(),
                &token,
                ISSUER,
                exp + DEFAULT_LEEWAY
            )),
            Rejection::Expired
        );
        at(exp + Duration::seconds(29), Duration::hours(1)).unwrap();
        assert_eq!(
            rejection(at(exp + Duration::seconds(30), Duration::hours(1))),
            Rejection::Expired
        );

        let mut early = claims();
        early.nbf = Some(t0().timestamp() + 60);
        let token = sign(ring(), Algorithm::ES256, &early).unwrap();
        let at = |now| verify_access_token_with_leeway(ring(), &token, ISSUER, now, none);
        assert_eq!(rejection(at(t0())), Rejection::NotYetValid);
        at(t0() + Duration::seconds(60)).unwrap();
    }

    #[test]
    fn the_issuer_must_match() {
        let token = sign(ring(), Algorithm::ES256, &claims()).unwrap();
        let result = verify_access_token(ring(), &token, "https://id.example.com/t/other", t0());
        assert_eq!(rejection(result), Rejection::WrongIssuer);
    }

    #[test]
    fn claims_missing_a_required_member_are_rejected() {
        let mut payload = serde_json::to_value(claims()).unwrap();
        payload.as_object_mut().unwrap().remove("client_id");
        let token = signed_with(
            ring(),
            Algorithm::ES256,
            &header("ES256", "at+jwt", kid(Algorithm::ES256)),
            &payload,
        );
        assert_eq!(rejection(verify(&token)), Rejection::BadClaims);
    }

    #[test]
    fn configured_claims_cannot_override_registered_ones() {
        for name in ["sub", "iss", "exp", "client_id", "scope"] {
            let mut claims = claims();
            claims.extra.insert(name.into(), json!("evil"));
            let error = sign(ring(), Algorithm::ES256, &claims).unwrap_err();
            assert!(matches!(error, IssuerError::Claims(_)), "{name}: {error}");
        }
        let mut id = IdTokenClaims::new(
            ISSUER,
            "u",
            Audience::One("c".into()),
            t0(),
            Duration::minutes(1),
        );
        id.extra.insert("nonce".into(), json!("x"));
        assert!(matches!(
            sign(ring(), Algorithm::ES256, &id),
            Err(IssuerError::Claims(_))
        ));
    }

    #[test]
    fn next_keys_verify_but_do_not_sign() {
        // Node B already promoted the key; node A's ring still lists it as `next`.
        let promoted = material(Algorithm::ES256, KeyState::Active, t0());
        let listed_as_next = crate::keys::key_ring::KeyMaterial {
            kid: promoted.kid.clone(),
            alg: Algorithm::ES256,
            state: KeyState::Next,
            created_at: t0(),
            publish_until: None,
            public_jwk: promoted.public_jwk.clone(),
            private_pkcs8: None,
        };
        let tenant = TenantId::new();
        let node_a = KeyRing::build(tenant, t0(), vec![listed_as_next]).unwrap();
        let node_b = KeyRing::build(tenant, t0(), vec![promoted]).unwrap();
        assert!(matches!(
            sign(&node_a, Algorithm::ES256, &claims()),
            Err(IssuerError::NoSigningKey {
                alg: Algorithm::ES256
            })
        ));
        let token = sign(&node_b, Algorithm::ES256, &claims()).unwrap();
        verify_access_token(&node_a, &token, ISSUER, t0()).unwrap();
    }

    /// A separate, deliberately plain implementation: hash, halve, base64url by hand.
    fn at_hash_by_hand(token: &str, use_sha512: bool) -> String {
        let digest: Vec<u8> = if use_sha512 {
            Sha512::digest(token.as_bytes()).to_vec()
        } else {
            Sha256::digest(token.as_bytes()).to_vec()
        };
        let half = &digest[..digest.len() / 2];
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bits: u32 = 0;
        let mut count = 0;
        let mut out = String::new();
        for byte in half {
            bits = (bits << 8) | u32::from(*byte);
            count += 8;
            while count >= 6 {
                count -= 6;
                out.push(ALPHABET[((bits >> count) & 63) as usize] as char);
            }
        }
        if count > 0 {
            out.push(ALPHABET[((bits << (6 - count)) & 63) as usize] as char);
        }
        out
    }

    #[test]
    fn at_hash_matches_the_spec_and_a_plain_implementation() {
        // OIDC Core 1.0, Appendix A.4 (an RS256 ID token).
        assert_eq!(
            at_hash(
                Algorithm::RS256,
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        for alg in Algorithm::ALL {
            let token = sign(ring(), alg, &claims()).unwrap();
            let expected = at_hash_by_hand(&token, alg == Algorithm::EdDSA);
            assert_eq!(at_hash(alg, &token), expected, "{alg}");
        }
        assert_eq!(at_hash(Algorithm::ES256, "x").len(), 22);
        assert_eq!(at_hash(Algorithm::EdDSA, "x").len(), 43);
    }

    #[test]
    fn audience_is_a_string_or_an_array() {
        assert_eq!(
            serde_json::to_value(Audience::One("a".into())).unwrap(),
            json!("a")
        );
        assert_eq!(
            serde_json::to_value(Audience::Many(vec!["a".into(), "b".into()])).unwrap(),
            json!(["a", "b"])
        );
        let many: Audience = serde_json::from_value(json!(["a", "b"])).unwrap();
        assert!(many.contains("b") && !many.contains("c"));
        let one: Audience = serde_json::from_value(json!("a")).unwrap();
        assert!(one.contains("a"));
    }

    /// Signing throughput, for the token endpoint's budget. Run in release:
    /// `cargo test -p gatehouse-token-issuer --release -- --ignored --nocapture signing_speed`
    #[test]
    #[ignore = "measurement; run in release"]
    fn signing_speed() {
        use std::time::Instant;
        let claims = claims();
        let rate = |name: &str, n: u32, mut f: Box<dyn FnMut() + '_>| {
            for _ in 0..n / 10 {
                f();
            }
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{name:<44} {:>9.0}/s  {:>8.1} us",
                f64::from(n) / secs,
                secs * 1e6 / f64::from(n)
            );
        };
        for (alg, n) in [
            (Algorithm::ES256, 5_000),
            (Algorithm::EdDSA, 20_000),
            (Algorithm::RS256, 300),
        ] {
            rate(
                &format!("gatehouse sign {alg} (cached key)"),
                n,
                Box::new(|| {
                    std::hint::black_box(sign(ring(), alg, &claims).unwrap());
                }),
            );
        }
        // jsonwebtoken::encode with the same keys: it decodes the DER on every call.
        let der = |alg| match alg {
            Algorithm::RS256 => {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                use rsa::pkcs8::DecodePrivateKey;
                let key =
                    rsa::RsaPrivateKey::from_pkcs8_der(crate::keys::tests::shared_rsa_pkcs8())
                        .unwrap();
                jsonwebtoken::EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes())
            }
            _ => {
                let m = material(alg, KeyState::Active, t0());
                let der = m.private_pkcs8.unwrap();
                if alg == Algorithm::ES256 {
                    jsonwebtoken::EncodingKey::from_ec_der(&der)
                } else {
                    jsonwebtoken::EncodingKey::from_ed_der(&der)
                }
            }
        };
        for (alg, jose, n) in [
            (Algorithm::ES256, jsonwebtoken::Algorithm::ES256, 2_000),
            (Algorithm::EdDSA, jsonwebtoken::Algorithm::EdDSA, 20_000),
            (Algorithm::RS256, jsonwebtoken::Algorithm::RS256, 300),
        ] {
            let key = der(alg);
            let mut header = jsonwebtoken::Header::new(jose);
            header.typ = Some("at+jwt".into());
            header.kid = Some("k".into());
            rate(
                &format!("jsonwebtoken::encode {alg} (rust_crypto)"),
                n,
                Box::new(|| {
                    std::hint::black_box(jsonwebtoken::encode(&header, &claims, &key).unwrap());
                }),
            );
        }
        for (alg, n) in [
            (Algorithm::ES256, 2_000),
            (Algorithm::EdDSA, 10_000),
            (Algorithm::RS256, 2_000),
        ] {
            let token = sign(ring(), alg, &claims).unwrap();
            rate(
                &format!("gatehouse verify {alg}"),
                n,
                Box::new(|| {
                    std::hint::black_box(verify(&token).unwrap());
                }),
            );
        }
        // jsonwebtoken::decode with the same public keys (what verification used
        // before: it re-reads the key from its components on every call).
        let jwks: Value = serde_json::from_slice(ring().jwks_json()).unwrap();
        for (alg, n) in [
            (Algorithm::ES256, 2_000),
            (Algorithm::EdDSA, 10_000),
            (Algorithm::RS256, 2_000),
        ] {
            let jwk = jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kid"] == kid(alg))
                .unwrap();
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
            let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let mut validation = jsonwebtoken::Validation::new(alg.as_str().parse().unwrap());
            validation.validate_exp = false;
            validation.validate_aud = false;
            validation.required_spec_claims.clear();
            let token = sign(ring(), alg, &claims).unwrap();
            rate(
                &format!("jsonwebtoken::decode {alg} (rust_crypto)"),
                n,
                Box::new(|| {
                    std::hint::black_box(
                        jsonwebtoken::decode::<AccessTokenClaims>(&token, &key, &validation)
                            .unwrap(),
                    );
                }),
            );
        }
        // The primitives alone, over a message the size of a typical header.payload:
        // what chose the backend per algorithm (ring against the RustCrypto crates).
        use ring::signature::{
            ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, KeyPair,
            UnparsedPublicKey,
        };
        let message = [0x5a_u8; 400];
        let system_random = ring::rand::SystemRandom::new();
        let es_der = material(Algorithm::ES256, KeyState::Active, t0())
            .private_pkcs8
            .unwrap();
        let ed_der = material(Algorithm::EdDSA, KeyState::Active, t0())
            .private_pkcs8
            .unwrap();
        {
            use p256::ecdsa::signature::{Signer, Verifier};
            use p256::pkcs8::DecodePrivateKey;
            let key = p256::ecdsa::SigningKey::from_pkcs8_der(&es_der).unwrap();
            rate(
                "primitive: p256 ECDSA P-256 sign",
                2_000,
                Box::new(|| {
                    let signature: p256::ecdsa::Signature = key.sign(&message);
                    std::hint::black_box(signature);
                }),
            );
            let signature: p256::ecdsa::Signature = key.sign(&message);
            rate(
                "primitive: p256 ECDSA P-256 verify",
                2_000,
                Box::new(|| {
                    key.verifying_key().verify(&message, &signature).unwrap();
                }),
            );
        }
        {
            let key = ring::signature::EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &es_der,
                &system_random,
            )
            .unwrap();
            rate(
                "primitive: ring ECDSA P-256 sign",
                10_000,
                Box::new(|| {
                    std::hint::black_box(key.sign(&system_random, &message).unwrap());
                }),
            );
            let signature = key.sign(&system_random, &message).unwrap();
            let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key());
            rate(
                "primitive: ring ECDSA P-256 verify",
                5_000,
                Box::new(|| {
                    public.verify(&message, signature.as_ref()).unwrap();
                }),
            );
        }
        {
            use ed25519_dalek::pkcs8::DecodePrivateKey;
            use ed25519_dalek::{Signer, Verifier};
            let key = ed25519_dalek::SigningKey::from_pkcs8_der(&ed_der).unwrap();
            rate(
                "primitive: ed25519-dalek sign",
                20_000,
                Box::new(|| {
                    std::hint::black_box(key.sign(&message));
                }),
            );
            let signature = key.sign(&message);
            rate(
                "primitive: ed25519-dalek verify",
                10_000,
                Box::new(|| {
                    key.verifying_key().verify(&message, &signature).unwrap();
                }),
            );
        }
        {
            let key = ring::signature::Ed25519KeyPair::from_pkcs8(&ed_der).unwrap();
            rate(
                "primitive: ring Ed25519 sign",
                20_000,
                Box::new(|| {
                    std::hint::black_box(key.sign(&message));
                }),
            );
            let signature = key.sign(&message);
            let public = UnparsedPublicKey::new(&ED25519, key.public_key());
            rate(
                "primitive: ring Ed25519 verify",
                10_000,
                Box::new(|| {
                    public.verify(&message, signature.as_ref()).unwrap();
                }),
            );
        }
    }

    /// Tokens across rotations: a key signs only once published, and what a retired
    /// key signed verifies until its publication ends.
    mod rotated_rings {
        use chrono::DateTime;
        use gatehouse_identity_store::StoreError;
        use gatehouse_identity_store::signing_keys::{self, KeyState};

        use super::super::*;
        use crate::keys::tests::{cipher, t0, tenant};
        use crate::keys::{KeyRing, ensure_keys, prune, rotate};

        const ISSUER: &str = "https://id.example.com";

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
            ring.published_kids()
                .map(|kid| (kid.to_owned(), ring.verification_key(kid).unwrap().state))
                .collect()
        }

        fn jwks_value(ring: &KeyRing) -> Value {
            serde_json::from_slice(ring.jwks_json()).unwrap()
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

        }
    }
}
