//! Access-token verification against the issuer's published keys (RFC 9068 §4).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatehouse_jose::{CompactJws, JoseError, PublicKey};
use serde::Deserialize;

use crate::claims::Claims;
use crate::error::{Rejection, VerifyError};
use crate::jwk::{Algorithm, parse_jwks};

/// Clock leeway for `exp` and `nbf`, unless the builder chooses another.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);
/// Larger leeways are capped: a token is not valid minutes after it expired.
pub const MAX_LEEWAY: Duration = Duration::from_secs(30);
/// At most one fetch of the keys per this interval, whatever tokens arrive.
pub const DEFAULT_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
/// Cached keys are fetched again after this long, so that a key the issuer
/// withdrew stops being accepted.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);
/// Larger discovery documents or JWK Sets are refused.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The time, as seconds since the Unix epoch. Tests pass a clock of their own, so
/// that expiry, `max_age` and the refetch cool-down can be tested without sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> i64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// Why a [`Verifier`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the issuer must be an https:// (or, for development, http://) URL: `{0}`")]
    Issuer(String),
    #[error("the audience must not be empty")]
    Audience,
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// Configures a [`Verifier`]; see [`Verifier::builder`].
#[derive(Debug)]
pub struct VerifierBuilder {
    issuer: String,
    audience: String,
    leeway: Duration,
    refetch_cooldown: Duration,
    jwks_max_age: Duration,
    clock: Arc<dyn Clock>,
}

impl VerifierBuilder {
    /// Clock leeway for `exp` and `nbf` (default 5 s, at most 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.min(MAX_LEEWAY);
        self
    }

    /// The least time between two fetches of the keys (default 30 s). A token with
    /// an unknown `kid` triggers a fetch only when the last one is this old, so
    /// forged tokens cannot make the API hammer the issuer.
    pub fn refetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.refetch_cooldown = cooldown;
        self
    }

    /// How long fetched keys are used before they are fetched again (default 5 min).
    pub fn jwks_max_age(mut self, max_age: Duration) -> Self {
        self.jwks_max_age = max_age;
        self
    }

    /// The clock (default [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn build(self) -> Result<Verifier, BuildError> {
        let issuer = self.issuer;
        let is_https = issuer.starts_with("https://");
        if !(is_https || issuer.starts_with("http://")) || issuer.contains(['?', '#']) {
            return Err(BuildError::Issuer(issuer));
        }
        if !is_https {
            tracing::warn!(%issuer, "the issuer is not https: for development only");
        }
        if self.audience.is_empty() {
            return Err(BuildError::Audience);
        }
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            // The issuer answers at its own URLs; a redirect is a misconfiguration.
            .redirect(reqwest::redirect::Policy::none())
            // Fetches are rare, so nothing is lost by not pooling; and a pooled
            // connection belongs to the runtime that opened it, while actix runs one
            // runtime per worker and a shared verifier is called from all of them.
            .pool_max_idle_per_host(0)
            .user_agent(concat!(
                "gatehouse-resource-server/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| BuildError::Http(e.to_string()))?;
        // OpenID Connect Discovery 1.0 §4: the issuer without a trailing slash.
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuer,
                audience: self.audience,
                discovery_url,
                leeway: seconds(self.leeway),
                refetch_cooldown: seconds(self.refetch_cooldown),
                jwks_max_age: seconds(self.jwks_max_age),
                clock: self.clock,
                http,
                keys: RwLock::new(Arc::new(KeySet::default())),
                fetch: tokio::sync::Mutex::new(FetchState::default()),
            }),
        })
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Verifies Gatehouse access tokens for one API (one audience) of one issuer.
///
/// Cheap to clone (the key cache is shared). Keys come from the `jwks_uri` of the
/// issuer's discovery document, `{issuer}/.well-known/openid-configuration`, whose
/// `issuer` must equal the configured one. They are fetched on first use, again
/// after [`VerifierBuilder::jwks_max_age`], and again when a token names an unknown
/// `kid` (a rotated-in key), never more often than once per
/// [`VerifierBuilder::refetch_cooldown`]. When a fetch fails the keys already held
/// stay in use: an issuer briefly unreachable does not take the API down.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    audience: String,
    discovery_url: String,
    leeway: i64,
    refetch_cooldown: i64,
    jwks_max_age: i64,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    /// Read on every request, replaced after a fetch; never held across an await.
    keys: RwLock<Arc<KeySet>>,
    /// Held for the whole fetch, so concurrent requests wait for one fetch instead
    /// of starting their own.
    fetch: tokio::sync::Mutex<FetchState>,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Arc<PublicKey>>,
    fetched_at: Option<i64>,
    /// Counts successful fetches, so a waiter can tell that another fetched.
    generation: u64,
}

#[derive(Default)]
struct FetchState {
    jwks_uri: Option<String>,
    last_attempt: Option<i64>,
    last_error: Option<String>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .finish_non_exhaustive()
    }
}

/// A compact JWS with its header checked; nothing of the payload read yet.
struct Jws<'a> {
    alg: Algorithm,
    kid: String,
    jws: CompactJws<'a>,
}

/// Splits the token and checks the header: `typ` is `at+jwt` (RFC 9068 §2.1, so an
/// ID token or another JWT of the issuer cannot pass), no `crit`, an algorithm from
/// [`Algorithm`] (so `none` and HMAC fail here, before any key is looked up), a `kid`.
fn split(token: &str) -> Result<Jws<'_>, Rejection> {
    let jws = CompactJws::parse(token).map_err(|_| Rejection::Malformed)?;
    let header = &jws.header;
    if !header.typ.as_deref().is_some_and(|typ| {
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
    }) {
        return Err(Rejection::WrongType);
    }
    if header.crit.is_some() {
        return Err(Rejection::CriticalHeader);
    }
    let alg = Algorithm::from_name(&header.alg).ok_or(Rejection::AlgorithmNotAllowed)?;
    let kid = header.kid.clone().ok_or(Rejection::MissingKeyId)?;
    Ok(Jws { alg, kid, jws })
}

impl Verifier {
    /// A verifier for tokens from `issuer` (exactly as in the tokens' `iss`, e.g.
    /// `https://id.example.com` or `https://id.example.com/t/acme`) meant for
    /// `audience` (this API's resource indicator, RFC 8707).
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
            refetch_cooldown: DEFAULT_REFETCH_COOLDOWN,
            jwks_max_age: DEFAULT_JWKS_MAX_AGE,
            clock: Arc::new(SystemClock),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// The verifier's clock, as seconds since the epoch.
    pub fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    /// Fetches the keys now (subject to the cool-down), e.g. at start-up so that a
    /// wrong issuer shows at once rather than on the first request.
    pub async fn refresh(&self) -> Result<(), VerifyError> {
        let generation = self.snapshot().generation;
        match self.refresh_after(generation).await {
            Some(error) => Err(VerifyError::KeysUnavailable(error)),
            None => Ok(()),
        }
    }

    /// Verifies `token` (RFC 9068 §4) and returns its claims:
    /// - the header: see [`split`] (`typ`, `crit`, `alg`, `kid`);
    /// - `kid` names a key of the issuer whose `alg` is the header's (so a token
    ///   cannot have its ES256 key used as an HMAC secret, or as anything else);
    /// - the signature, before anything of the payload is read;
    /// - `iss` equals the issuer exactly, `aud` contains the audience;
    /// - `exp` is after now and `nbf` (if any) not after it, give or take the leeway.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let jws = split(token)?;
        let key = self.key(&jws.kid).await?;
        if key.alg() != jws.alg {
            return Err(Rejection::AlgorithmNotAllowed.into());
        }
        let signature = jws.jws.signature().map_err(|_| Rejection::Malformed)?;
        if !key.verifies(jws.jws.signing_input(), &signature) {
            return Err(Rejection::BadSignature.into());
        }
        let claims: Claims = jws.jws.payload().map_err(|error| match error {
            JoseError::Payload(_) => Rejection::BadClaims,
            _ => Rejection::Malformed,
        })?;
        if claims.iss != self.inner.issuer {
            return Err(Rejection::WrongIssuer.into());
        }
        if !claims.aud.iter().any(|aud| *aud == self.inner.audience) {
            return Err(Rejection::WrongAudience.into());
        }
        let (now, leeway) = (self.now(), self.inner.leeway);
        // RFC 7519 §4.1.4: not accepted "on or after" exp.
        if now >= claims.exp.saturating_add(leeway) {
            return Err(Rejection::Expired.into());
        }
        if claims
            .nbf
            .is_some_and(|nbf| now.saturating_add(leeway) < nbf)
        {
            return Err(Rejection::NotYetValid.into());
        }
        Ok(claims)
    }

    fn snapshot(&self) -> Arc<KeySet> {
        // A panic elsewhere while swapping an Arc cannot leave the set half-written.
        Arc::clone(
            &self
                .inner
                .keys
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// The key named `kid`, fetching the keys first when they are stale or do not
    /// include it (each subject to the cool-down).
    async fn key(&self, kid: &str) -> Result<Arc<PublicKey>, VerifyError> {
        let cached = self.snapshot();
        let fresh = cached
            .fetched_at
            .is_some_and(|at| self.now().saturating_sub(at) < self.inner.jwks_max_age);
        if fresh && let Some(key) = cached.keys.get(kid) {
            return Ok(Arc::clone(key));
        }
        let error = self.refresh_after(cached.generation).await;
        let current = self.snapshot();
        match current.keys.get(kid) {
            Some(key) => Ok(Arc::clone(key)),
            None if current.fetched_at.is_none() => {
                Err(VerifyError::KeysUnavailable(error.unwrap_or_else(|| {
                    "the keys have not been fetched".to_owned()
                })))
            }
            None => Err(Rejection::UnknownKey.into()),
        }
    }

    /// Fetches the keys unless another task did so since `seen` (a generation) or
    /// the last attempt is more recent than the cool-down. Returns the error of the
    /// fetch, or of the last failed one when it was skipped.
    async fn refresh_after(&self, seen: u64) -> Option<String> {
        let mut state = self.inner.fetch.lock().await;
        if self.snapshot().generation != seen {
            return None;
        }
        let now = self.now();
        if state
            .last_attempt
            .is_some_and(|at| now.saturating_sub(at) < self.inner.refetch_cooldown)
        {
            return state.last_error.clone();
        }
        state.last_attempt = Some(now);
        match self.fetch(&mut state).await {
            Ok(keys) => {
                tracing::debug!(issuer = %self.inner.issuer, keys = keys.len(), "fetched the issuer's JWK Set");
                let mut slot = self
                    .inner
                    .keys
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                let generation = slot.generation + 1;
                *slot = Arc::new(KeySet {
                    keys,
                    fetched_at: Some(now),
                    generation,
                });
                state.last_error = None;
                None
            }
            Err(error) => {
                tracing::warn!(issuer = %self.inner.issuer, %error, "cannot fetch the issuer's keys");
                state.last_error = Some(error.clone());
                Some(error)
            }
        }
    }

    async fn fetch(
        &self,
        state: &mut FetchState,
    ) -> Result<HashMap<String, Arc<PublicKey>>, String> {
        let jwks_uri = match &state.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let uri = self.discover().await?;
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let body = match self.get(&jwks_uri).await {
            Ok(body) => body,
            Err(error) => {
                // Discover again next time, in case the issuer moved its JWK Set.
                state.jwks_uri = None;
                return Err(error);
            }
        };
        let keys = parse_jwks(&body)?;
        Ok(keys
            .into_iter()
            .map(|(kid, key)| (kid, Arc::new(key)))
            .collect())
    }

    /// The `jwks_uri` of the issuer's metadata, whose `issuer` must be the one
    /// configured (OpenID Connect Discovery 1.0 §4.3), so a misrouted or
    /// impersonating host is not trusted for keys.
    async fn discover(&self) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Metadata {
            issuer: String,
            jwks_uri: String,
        }
        let url = &self.inner.discovery_url;
        let body = self.get(url).await?;
        let metadata: Metadata =
            serde_json::from_slice(&body).map_err(|e| format!("{url}: not valid metadata: {e}"))?;
        if metadata.issuer != self.inner.issuer {
            return Err(format!(
                "{url} names the issuer `{}`, not `{}`",
                metadata.issuer, self.inner.issuer
            ));
        }
        Ok(metadata.jwks_uri)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .inner
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn encode(value: serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn header_only(header: serde_json::Value) -> Result<(), Rejection> {
        split(&format!("{}.e30.c2ln", encode(header))).map(|_| ())
    }

    #[test]
    fn the_header_is_checked_before_any_key_is_needed() {
        use serde_json::json;
        assert_eq!(
            header_only(json!({"alg": "ES256", "typ": "at+jwt", "kid": "k"})),
            Ok(())
        );
        assert_eq!(
            header_only(json!({"alg": "ES256", "typ": "Application/AT+JWT", "kid": "k"})),
            Ok(())
        );
        assert_eq!(
            header_only(json!({"alg": "ES256", "typ": "JWT", "kid": "k"})),
            Err(Rejection::WrongType)
        );
        assert_eq!(
            header_only(json!({"alg": "ES256", "kid": "k"})),
            Err(Rejection::WrongType)
        );
        assert_eq!(
            header_only(json!({"alg": "none", "typ": "at+jwt", "kid": "k"})),
            Err(Rejection::AlgorithmNotAllowed)
        );
        assert_eq!(
            header_only(json!({"alg": "HS256", "typ": "at+jwt", "kid": "k"})),
            Err(Rejection::AlgorithmNotAllowed)
        );
        assert_eq!(
            header_only(json!({"alg": "ES256", "typ": "at+jwt"})),
            Err(Rejection::MissingKeyId)
        );
        assert_eq!(
            header_only(json!({"alg": "ES256", "typ": "at+jwt", "kid": "k", "crit": ["exp"]})),
            Err(Rejection::CriticalHeader)
        );
        for malformed in ["", "a.b", "a.b.c.d.e", "!!.e30.c2ln", "e30.e30.c2ln"] {
            assert!(split(malformed).is_err(), "{malformed}");
        }
        assert_eq!(
            split(&"a".repeat(gatehouse_jose::MAX_JWS_LEN + 1)).err(),
            Some(Rejection::Malformed)
        );
    }

    #[test]
    fn the_builder_refuses_what_cannot_be_an_issuer_or_audience() {
        for bad in [
            "id.example.com",
            "ftp://id.example.com",
            "https://id.example.com?x=1",
        ] {
            assert!(matches!(
                Verifier::builder(bad, "api").build(),
                Err(BuildError::Issuer(_))
            ));
        }
        assert!(matches!(
            Verifier::builder("https://id.example.com", "").build(),
            Err(BuildError::Audience)
        ));
        let verifier = Verifier::builder("https://id.example.com/", "api")
            .build()
            .unwrap();
        assert_eq!(
            verifier.inner.discovery_url,
            "https://id.example.com/.well-known/openid-configuration"
        );
    }
}
