//! The token service: what the OAuth endpoints call. Methods are synchronous (they may
//! touch the database); the HTTP layer runs them on the blocking pool.
//!
//! Hot-path state lives in memory: each tenant's key ring and its registered clients.
//! Rings are reloaded when `refresh_at` passes or a `SigningKeysChanged` event
//! arrives; clients are cached for at most `CLIENT_TTL`, so a change made by another
//! process (the CLI on SQLite, which has no cross-process events) is seen within that
//! bound, and at once when an event arrives.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use gatehouse_core::SharedClock;
use gatehouse_core::ids::TenantId;
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::clients::{self, Client};
use gatehouse_identity_store::{Pool, StoreError, grants, revoked_tokens};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::bearer_cache::{self, BearerCache};
use crate::client_auth::{AssertionRejection, PresentedClient, authenticate, verify_assertion};
use crate::jwt::{AccessTokenClaims, Audience, sign, verify_access_token_with_leeway};
use crate::keys::{Algorithm, KeyRing, ensure_active};
use crate::oauth_error::{ErrorCode, OAuthError};
use crate::{IssuerError, IssuerResult};

const CLIENT_TTL: StdDuration = StdDuration::from_secs(30);
/// Rings are re-read at least this often, so a rotation made by another process
/// (`gatehouse keys rotate`) reaches every node within a minute.
const RING_TTL: Duration = Duration::seconds(60);

/// Registered clients by (tenant, client_id), with when each was loaded.
type ClientCache = HashMap<(TenantId, String), (Arc<Client>, Instant)>;
/// Every web origin some client of a tenant registered, with when it was loaded.
type OriginCache = HashMap<TenantId, (Arc<BTreeSet<String>>, Instant)>;

#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Issuer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    cipher: Cipher,
    clock: SharedClock,
    rings: RwLock<HashMap<TenantId, KeyRing>>,
    clients: RwLock<ClientCache>,
    origins: RwLock<OriginCache>,
    bearers: BearerCache,
}

/// A cached value still younger than [`CLIENT_TTL`].
fn fresh<K: Eq + std::hash::Hash, V: Clone>(
    cache: &RwLock<HashMap<K, (V, Instant)>>,
    key: &K,
) -> Option<V> {
    cache
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(key)
        .filter(|(_, at)| at.elapsed() < CLIENT_TTL)
        .map(|(value, _)| value.clone())
}

pub(crate) fn internal(error: impl std::fmt::Display) -> OAuthError {
    tracing::error!(%error, "token service failure");
    OAuthError::server_error()
}

impl Issuer {
    pub fn new(pool: Pool, cipher: Cipher, clock: SharedClock) -> Self {
        Issuer {
            inner: Arc::new(Inner {
                pool,
                cipher,
                clock,
                rings: RwLock::new(HashMap::new()),
                clients: RwLock::new(HashMap::new()),
                origins: RwLock::new(HashMap::new()),
                bearers: BearerCache::default(),
            }),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    pub(crate) fn clock_now(&self) -> DateTime<Utc> {
        self.now()
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The tenant's key ring, creating its first key on first use.
    pub fn key_ring(&self, tenant: TenantId) -> IssuerResult<KeyRing> {
        let now = self.now();
        if let Some(ring) = self
            .inner
            .rings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant)
            && ring.refresh_at().is_none_or(|at| at > now)
            && now - ring.loaded_at() < RING_TTL
        {
            return Ok(ring.clone());
        }
        self.reload_ring(tenant, Algorithm::default())
    }

    /// Makes sure `alg` has an active key, then reloads and caches the ring.
    fn reload_ring(&self, tenant: TenantId, alg: Algorithm) -> IssuerResult<KeyRing> {
        let now = self.now();
        let mut conn = self.inner.pool.get().map_err(StoreError::from)?;
        ensure_active(&mut conn, &self.inner.cipher, now, tenant, alg)?;
        let ring = KeyRing::load(&mut conn, &self.inner.cipher, now, tenant)?;
        self.inner
            .rings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant, ring.clone());
        Ok(ring)
    }

    /// The tenant's key ring with an active key for `alg`. ES256 exists from the
    /// tenant's first token; another algorithm gets its key when a client first needs
    /// it, unless registering the client created it already (which publishes it
    /// before anything is signed with it).
    pub(crate) fn signing_ring(&self, tenant: TenantId, alg: Algorithm) -> IssuerResult<KeyRing> {
        let ring = self.key_ring(tenant)?;
        if ring.signer(alg).is_some() {
            return Ok(ring);
        }
        self.reload_ring(tenant, alg)
    }

    /// Forgets cached keys and clients (on `SigningKeysChanged`, `Resync`, or for one tenant).
    pub fn invalidate(&self, tenant: Option<TenantId>) {
        let mut rings = self.inner.rings.write().unwrap_or_else(|p| p.into_inner());
        let mut clients = self
            .inner
            .clients
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let mut origins = self
            .inner
            .origins
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match tenant {
            Some(tenant) => {
                rings.remove(&tenant);
                clients.retain(|(t, _), _| *t != tenant);
                origins.remove(&tenant);
            }
            None => {
                rings.clear();
                clients.clear();
                origins.clear();
            }
        }
        self.inner.bearers.forget(tenant);
    }

    pub(crate) fn client_for(
        &self,
        tenant: TenantId,
        client_id: &str,
    ) -> IssuerResult<Option<Arc<Client>>> {
        let key = (tenant, client_id.to_owned());
        if let Some(client) = fresh(&self.inner.clients, &key) {
            return Ok(Some(client));
        }
        let mut conn = self.inner.pool.get().map_err(StoreError::from)?;
        let Some(client) = clients::get_by_client_id(&mut conn, tenant, client_id)? else {
            return Ok(None);
        };
        let client = Arc::new(client);
        self.inner
            .clients
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (Arc::clone(&client), Instant::now()));
        Ok(Some(client))
    }

    /// Whether a browser app at `origin` may read the answer (CORS): `origin` must be
    /// registered by `client` when the request named one, else by some client of the
    /// tenant (a preflight carries no body, so it names no client). `None` when the
    /// answer is not in memory and `load` is false.
    pub fn allows_origin(
        &self,
        tenant: TenantId,
        client: Option<&str>,
        origin: &str,
        load: bool,
    ) -> IssuerResult<Option<bool>> {
        if let Some(client_id) = client {
            let cached = fresh(&self.inner.clients, &(tenant, client_id.to_owned()));
            let client = match cached {
                Some(client) => Some(client),
                None if load => self.client_for(tenant, client_id)?,
                None => return Ok(None),
            };
            return Ok(Some(client.is_some_and(|c| {
                c.data.allowed_origins.iter().any(|o| o == origin)
            })));
        }
        let origins = match fresh(&self.inner.origins, &tenant) {
            Some(origins) => origins,
            None if load => {
                let mut conn = self.inner.pool.get().map_err(StoreError::from)?;
                let origins: Arc<BTreeSet<String>> = Arc::new(
                    clients::web_origins(&mut conn, tenant)?
                        .into_iter()
                        .collect(),
                );
                self.inner
                    .origins
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(tenant, (Arc::clone(&origins), Instant::now()));
                origins
            }
            None => return Ok(None),
        };
        Ok(Some(origins.contains(origin)))
    }

    /// Authenticates the calling client (RFC 6749 §2.3); unknown and wrong look alike.
    pub fn authenticate_client(
        &self,
        tenant: TenantId,
        presented: &PresentedClient,
    ) -> Result<Arc<Client>, OAuthError> {
        let client = self
            .client_for(tenant, presented.client_id())
            .map_err(internal)?
            .ok_or_else(|| OAuthError::invalid_client(presented.used_basic()))?;
        let PresentedClient::JwtBearer {
            assertion,
            audiences,
            ..
        } = presented
        else {
            authenticate(&client.data, presented)?;
            return Ok(client);
        };
        let now = self.now();
        let refused = |reason: AssertionRejection| {
            tracing::info!(client_id = %client.data.client_id, ?reason, "client assertion refused");
            OAuthError::invalid_client(false)
        };
        let verified =
            verify_assertion(&client.data, assertion, audiences, now).map_err(refused)?;
        // Recorded only once everything else holds, so a forged assertion cannot
        // use up a jti the client is about to send.
        let mut conn = self.inner.pool.get().map_err(internal)?;
        let first_use = clients::use_assertion_jti(
            &mut conn,
            now,
            tenant,
            &client.data.client_id,
            &verified.jti,
            verified.usable_until,
        )
        .map_err(internal)?;
        if !first_use {
            return Err(refused(AssertionRejection::Replayed));
        }
        Ok(client)
    }

    /// The client credentials grant (RFC 6749 §4.4) with resource indicators (RFC 8707).
    pub fn client_credentials(
        &self,
        tenant: TenantId,
        issuer: &str,
        presented: &PresentedClient,
        scope: Option<&str>,
        resources: &[String],
    ) -> Result<TokenResponse, OAuthError> {
        let client = self.authenticate_client(tenant, presented)?;
        let data = &client.data;
        if data.client_type != "confidential"
            || !data.grant_types.iter().any(|g| g == "client_credentials")
        {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use client_credentials",
            ));
        }
        // OpenID Connect's scopes ask for a user's claims or a user's offline access;
        // a client acting for itself has no user.
        let for_users = |scope: &str| crate::claims::OPENID_SCOPES.contains(&scope);
        let granted: Vec<&str> = match scope.map(str::trim).filter(|s| !s.is_empty()) {
            Some(requested) => {
                let requested: Vec<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
                if let Some(bad) = requested
                    .iter()
                    .find(|s| !data.scopes.iter().any(|allowed| allowed == *s) || for_users(s))
                {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!("scope `{bad}` is not allowed for this client"),
                    ));
                }
                requested
            }
            // No scope asked for: the client's API scopes.
            None => data
                .scopes
                .iter()
                .map(String::as_str)
                .filter(|s| !for_users(s))
                .collect(),
        };
        let audience = audience_for(&data.audiences, data.default_audience.as_deref(), resources)?;
        let now = self.now();
        let lifetime = Duration::seconds(data.access_token_ttl_secs.max(1));
        let mut claims = AccessTokenClaims::new(
            issuer,
            data.client_id.clone(),
            audience,
            data.client_id.clone(),
            now,
            lifetime,
        );
        let scope = (!granted.is_empty()).then(|| granted.join(" "));
        claims.scope = scope.clone();
        let ring = self.key_ring(tenant).map_err(internal)?;
        let alg: Algorithm = Algorithm::default();
        let access_token = sign(&ring, alg, &claims).map_err(internal)?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: lifetime.num_seconds(),
            scope,
            id_token: None,
            refresh_token: None,
        })
    }

    fn verified(
        &self,
        tenant: TenantId,
        issuer: &str,
        token: &str,
    ) -> Result<Option<AccessTokenClaims>, OAuthError> {
        let ring = self.key_ring(tenant).map_err(internal)?;
        // No leeway: this is the issuer's own clock, so expiry shows at once.
        match verify_access_token_with_leeway(&ring, token, issuer, self.now(), Duration::zero()) {
            Ok(claims) => Ok(Some(claims)),
            Err(IssuerError::Rejected(_)) => Ok(None),
            Err(other) => Err(internal(other)),
        }
    }

    /// A bearer access token presented to one of the issuer's own APIs (AuthZEN, the
    /// consent API): signature, issuer, expiry and revocation. `None` for any token
    /// that is not currently valid; the caller checks scope. A client-credentials
    /// token that passed is taken as live for up to a second (`bearer_cache`).
    pub fn verify_bearer(
        &self,
        tenant: TenantId,
        issuer: &str,
        token: &str,
    ) -> Result<Option<Arc<AccessTokenClaims>>, OAuthError> {
        let key = bearer_cache::digest(token);
        if let Some(claims) = self.inner.bearers.get(&key, tenant, issuer, self.now()) {
            return Ok(Some(claims));
        }
        let epoch = self.inner.bearers.epoch();
        let Some(claims) = self.verified(tenant, issuer, token)? else {
            return Ok(None);
        };
        let now = self.now();
        if !self
            .token_is_live(tenant, &claims.jti, now)
            .map_err(internal)?
        {
            return Ok(None);
        }
        let claims = Arc::new(claims);
        if bearer_cache::cacheable(&claims) {
            self.inner
                .bearers
                .keep(key, tenant, issuer, &claims, now, epoch);
        }
        Ok(Some(claims))
    }

    /// [`Issuer::verify_bearer`] from memory only: `None` when the token is not in
    /// the cache (the caller then verifies it on the blocking pool). Lets a handler
    /// answer without a thread hop.
    pub fn cached_bearer(
        &self,
        tenant: TenantId,
        issuer: &str,
        token: &str,
    ) -> Option<Arc<AccessTokenClaims>> {
        self.inner
            .bearers
            .get(&bearer_cache::digest(token), tenant, issuer, self.now())
    }

    /// Token introspection (RFC 7662). Only the calling client's authentication is an
    /// error; any token that is not currently valid is simply `{"active": false}`.
    pub fn introspect(
        &self,
        tenant: TenantId,
        issuer: &str,
        presented: &PresentedClient,
        token: &str,
    ) -> Result<Value, OAuthError> {
        let caller = self.authenticate_client(tenant, presented)?;
        if caller.data.client_type != "confidential" {
            return Err(OAuthError::invalid_client(presented.used_basic()));
        }
        let Some(claims) = self.verified(tenant, issuer, token)? else {
            // Not an access token of this issuer: perhaps a refresh token (RFC 7662
            // §2.1 asks the server to look through all its token types).
            return self.introspect_refresh_token(tenant, &caller, token);
        };
        let Some(grant) = self
            .token_state(tenant, &claims.jti, self.now())
            .map_err(internal)?
        else {
            return Ok(json!({ "active": false }));
        };
        let mut answer = Map::new();
        answer.insert("active".into(), Value::Bool(true));
        answer.insert("token_type".into(), json!("Bearer"));
        for (name, value) in [
            ("iss", json!(claims.iss)),
            ("sub", json!(claims.sub)),
            (
                "aud",
                serde_json::to_value(&claims.aud).unwrap_or(Value::Null),
            ),
            ("exp", json!(claims.exp)),
            ("iat", json!(claims.iat)),
            ("jti", json!(claims.jti)),
            ("client_id", json!(claims.client_id)),
        ] {
            answer.insert(name.into(), value);
        }
        if let Some(scope) = claims.scope {
            answer.insert("scope".into(), json!(scope));
        }
        if let Some(auth_time) = claims.auth_time {
            answer.insert("auth_time".into(), json!(auth_time));
        }
        if let Some(acr) = claims.acr {
            answer.insert("acr".into(), json!(acr));
        }
        // An extension member (RFC 7662 §2.2): what the token was issued for and the
        // state of the consent behind it, for resource servers that must honour it.
        if let Some(live) = grant {
            let purposes = self.purposes_status(tenant, &live).map_err(internal)?;
            if !purposes.is_empty() {
                answer.insert("purposes".into(), Value::Array(purposes));
            }
        }
        Ok(Value::Object(answer))
    }

    /// A refresh token introspected by the client it was issued to: active while it
    /// could be spent (unused, not idle too long, its grant live); inactive for
    /// anyone else, so one client cannot learn about another's tokens.
    fn introspect_refresh_token(
        &self,
        tenant: TenantId,
        caller: &Client,
        token: &str,
    ) -> Result<Value, OAuthError> {
        let inactive = || Ok(json!({ "active": false }));
        let now = self.now();
        let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        let mut conn = self.inner.pool.get().map_err(internal)?;
        let Some(refresh) =
            grants::live_refresh_token(&mut conn, now, tenant, &hash).map_err(internal)?
        else {
            return inactive();
        };
        let Some(live) = self
            .live_grant(&mut conn, tenant, &refresh.grant_id, now)
            .map_err(internal)?
        else {
            return inactive();
        };
        let grant = &live.grant;
        if grant.client_id != caller.data.client_id {
            return inactive();
        }
        let mut answer = Map::new();
        answer.insert("active".into(), Value::Bool(true));
        answer.insert("client_id".into(), json!(grant.client_id));
        answer.insert("scope".into(), json!(grant.scope));
        answer.insert("iat".into(), json!(refresh.created_at.timestamp()));
        // Whichever ends it first: the idle limit or the grant's own lifetime.
        let exp = refresh.idle_expires_at.min(grant.expires_at);
        answer.insert("exp".into(), json!(exp.timestamp()));
        if let Some(user) = grant.user_id {
            answer.insert("sub".into(), json!(user.to_string()));
        }
        if let Some(issuer) = &grant.issuer {
            answer.insert("iss".into(), json!(issuer));
        }
        Ok(Value::Object(answer))
    }

    /// Token revocation (RFC 7009). Invalid or unknown tokens answer success, as the
    /// RFC requires; a valid token issued to another client is refused.
    pub fn revoke(
        &self,
        tenant: TenantId,
        issuer: &str,
        presented: &PresentedClient,
        token: &str,
    ) -> Result<(), OAuthError> {
        let caller = self.authenticate_client(tenant, presented)?;
        let Some(claims) = self.verified(tenant, issuer, token)? else {
            // Not an access token: perhaps a refresh token, which revokes its grant.
            return self.revoke_refresh_token(tenant, &caller, token);
        };
        if claims.client_id != caller.data.client_id {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "the token was not issued to this client",
            ));
        }
        let expires_at = DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(|| self.now());
        let mut conn = self.inner.pool.get().map_err(internal)?;
        revoked_tokens::revoke(&mut conn, self.now(), tenant, &claims.jti, expires_at)
            .map_err(internal)?;
        // After the commit: a verification racing with this one either saw the row
        // or is dropped here.
        self.inner.bearers.forget(Some(tenant));
        Ok(())
    }

    fn revoke_refresh_token(
        &self,
        tenant: TenantId,
        caller: &Client,
        token: &str,
    ) -> Result<(), OAuthError> {
        let mut conn = self.inner.pool.get().map_err(internal)?;
        let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        let Some(grant_id) =
            grants::refresh_token_grant(&mut conn, tenant, &hash).map_err(internal)?
        else {
            return Ok(());
        };
        let Some(grant) = grants::get(&mut conn, tenant, &grant_id).map_err(internal)? else {
            return Ok(());
        };
        if grant.client_id != caller.data.client_id {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "the token was not issued to this client",
            ));
        }
        grants::revoke(
            &mut conn,
            self.now(),
            tenant,
            &grant_id,
            "revoked_by_client",
        )
        .map_err(internal)?;
        Ok(())
    }

    /// JWKS bytes for the tenant (pre-serialised in the ring).
    pub fn jwks(&self, tenant: TenantId) -> IssuerResult<Arc<[u8]>> {
        Ok(self.key_ring(tenant)?.jwks())
    }
}

/// RFC 8707: every requested resource must be registered for the client; without one,
/// the client's default API is the audience.
fn audience_for(
    allowed: &[String],
    default: Option<&str>,
    resources: &[String],
) -> Result<Audience, OAuthError> {
    if resources.is_empty() {
        return default.map(|d| Audience::One(d.to_owned())).ok_or_else(|| {
            OAuthError::new(
                ErrorCode::InvalidTarget,
                "no resource requested and the client has no default audience",
            )
        });
    }
    if let Some(bad) = resources.iter().find(|r| !allowed.contains(r)) {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            format!("resource `{bad}` is not allowed for this client"),
        ));
    }
    Ok(match resources {
        [one] => Audience::One(one.clone()),
        many => Audience::Many(many.to_vec()),
    })
}

/// Authorization-server metadata (RFC 8414), also served as OpenID Provider
/// metadata (OpenID Connect Discovery 1.0): only what is implemented.
///
/// `ui_locales` are the languages the pages are written in. Only scopes and claims
/// the user model can fill are advertised: it has no postal address, and no
/// self-service or provisioning path fills phone numbers or middle names yet.
pub fn server_metadata(issuer: &str, ui_locales: &[&str]) -> Value {
    json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "authorization_endpoint": format!("{issuer}/authorize"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_modes_supported": ["query", "form_post"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid", "name", "given_name", "family_name", "nickname", "preferred_username", "locale", "zoneinfo", "updated_at", "email", "email_verified"],
        "claims_parameter_supported": false,
        "ui_locales_supported": ui_locales,
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "introspection_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
        // Public clients revoke their own tokens with just their client_id (RFC 7009 §5).
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
        "response_types_supported": ["code"],
        "pushed_authorization_request_endpoint": format!("{issuer}/oauth2/par"),
        "require_pushed_authorization_requests": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "acr_values_supported": crate::acr::REACHABLE,
        "prompt_values_supported": ["none", "login", "consent"],
        "end_session_endpoint": format!("{issuer}/oauth2/logout"),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    })
}
