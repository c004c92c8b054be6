//! Ending sessions towards relying parties: OpenID Connect RP-Initiated Logout 1.0
//! (the RP sends the browser to the end-session endpoint) and Back-Channel Logout 1.0
//! (the OP tells each RP's back-channel URI, server to server, that a session ended).
//!
//! As at the authorization endpoint, nothing is redirected until the client and the
//! exact `post_logout_redirect_uri` are known to be good.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Duration;
use gatehouse_core::ids::{SessionId, TenantId, UserId};
use gatehouse_identity_store::clients::Client;
use gatehouse_identity_store::{StoreError, grants};
use serde::Serialize;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::IssuerResult;
use crate::code_flow::random_token;
use crate::jwt::{Audience, TokenClaims, TokenKind, sign, verify_id_token_hint};
use crate::service::Issuer;

/// Logout tokens are delivered at once; a short life limits replay (§2.4).
const LOGOUT_TOKEN_LIFETIME: Duration = Duration::minutes(2);
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The parameters of a logout request (RP-Initiated Logout §2), as received.
#[derive(Debug, Clone, Default)]
pub struct EndSessionRequest {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub logout_hint: Option<String>,
    pub ui_locales: Option<String>,
}

impl EndSessionRequest {
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut request = EndSessionRequest::default();
        for (name, value) in pairs {
            let value = Some(value.to_owned()).filter(|v| !v.is_empty());
            match name {
                "id_token_hint" => request.id_token_hint = value,
                "client_id" => request.client_id = value,
                "post_logout_redirect_uri" => request.post_logout_redirect_uri = value,
                "state" => request.state = value,
                "logout_hint" => request.logout_hint = value,
                "ui_locales" => request.ui_locales = value,
                _ => {}
            }
        }
        request
    }
}

/// A logout request whose parts have been checked.
#[derive(Debug, Clone)]
pub struct ValidEndSession {
    /// The relying party, when the request identified one.
    pub client: Option<Arc<Client>>,
    /// Where to send the browser afterwards: the registered URI plus `state`.
    pub redirect: Option<String>,
    /// `sub` and `sid` of a valid `id_token_hint`: when they name the current
    /// session, the RP proved it holds that session's ID token and no confirmation
    /// is needed.
    pub hinted_subject: Option<String>,
    pub hinted_session: Option<String>,
}

impl ValidEndSession {
    /// Whether the hint was issued for this very session of this user.
    pub fn hint_matches(&self, user: UserId, session: SessionId) -> bool {
        let same = |claimed: &Option<String>, actual: String| {
            claimed
                .as_deref()
                .is_some_and(|c| bool::from(c.as_bytes().ct_eq(actual.as_bytes())))
        };
        same(&self.hinted_subject, user.to_string())
            && same(&self.hinted_session, session.to_string())
    }
}

/// Back-Channel Logout §2.4.
#[derive(Debug, Clone, Serialize)]
pub struct LogoutTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub sid: String,
    pub events: Value,
    #[serde(skip)]
    extra: Map<String, Value>,
}

impl TokenClaims for LogoutTokenClaims {
    const KIND: TokenKind = TokenKind::Logout;
    const REGISTERED: &'static [&'static str] = &[
        "iss", "sub", "aud", "iat", "exp", "jti", "sid", "events", "nonce",
    ];
    fn extra(&self) -> &Map<String, Value> {
        &self.extra
    }
}

/// One logout token for one relying party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackchannelNotice {
    pub client_id: String,
    pub uri: String,
    pub logout_token: String,
}

impl Issuer {
    /// Checks a logout request (RP-Initiated Logout §2–§3). Errors are reasons for
    /// a page; they never redirect.
    pub fn validate_end_session(
        &self,
        tenant: TenantId,
        issuer: &str,
        request: &EndSessionRequest,
    ) -> Result<ValidEndSession, &'static str> {
        // A hint that no longer verifies (its key was pruned after a rotation) must
        // not make logout impossible: it counts as absent, so the user is asked and
        // nothing the hint claims is trusted (§4).
        let hint = match &request.id_token_hint {
            Some(token) => {
                let ring = self
                    .key_ring(tenant)
                    .map_err(|_| "temporarily unavailable")?;
                verify_id_token_hint(&ring, token, issuer, self.clock_now()).ok()
            }
            None => None,
        };
        let hint_refused = request.id_token_hint.is_some() && hint.is_none();
        let hinted_client = hint.as_ref().map(|claims| match &claims.aud {
            Audience::One(aud) => aud.clone(),
            Audience::Many(auds) => claims
                .azp
                .clone()
                .unwrap_or_else(|| auds.first().cloned().unwrap_or_default()),
        });
        let client_id = match (&request.client_id, &hinted_client) {
            (Some(given), Some(hinted)) if given != hinted => {
                return Err("client_id does not match the id_token_hint");
            }
            (Some(given), _) => Some(given.clone()),
            (None, hinted) => hinted.clone(),
        };
        let client = match &client_id {
            Some(id) => Some(
                self.client_for(tenant, id)
                    .map_err(|_| "temporarily unavailable")?
                    .ok_or("unknown client")?,
            ),
            None => None,
        };
        let redirect = match &request.post_logout_redirect_uri {
            None => None,
            // Without a verified hint and without client_id, the RP is unknown.
            Some(_) if hint_refused && request.client_id.is_none() => None,
            Some(uri) => {
                let client = client
                    .as_ref()
                    .ok_or("post_logout_redirect_uri needs a client_id or id_token_hint")?;
                // Exact string comparison, as for redirect_uri.
                if !client
                    .data
                    .post_logout_redirect_uris
                    .iter()
                    .any(|registered| registered == uri)
                {
                    return Err("the post_logout_redirect_uri is not registered for this client");
                }
                Some(match &request.state {
                    Some(state) => {
                        let separator = if uri.contains('?') { '&' } else { '?' };
                        let query = form_urlencoded::Serializer::new(String::new())
                            .append_pair("state", state)
                            .finish();
                        format!("{uri}{separator}{query}")
                    }
                    None => uri.clone(),
                })
            }
        };
        Ok(ValidEndSession {
            client,
            redirect,
            hinted_subject: hint.as_ref().map(|c| c.sub.clone()),
            hinted_session: hint.and_then(|c| c.sid),
        })
    }

    /// For sessions that just ended: revokes the grants issued under them, except
    /// those with `offline_access` (Back-Channel Logout §2.7), and signs a logout
    /// token for every client with a back-channel logout URI that the sessions
    /// signed in to. Delivery is the caller's (it is network I/O).
    pub fn sessions_ended(
        &self,
        tenant: TenantId,
        issuer: &str,
        user: UserId,
        sessions: &[SessionId],
    ) -> IssuerResult<Vec<BackchannelNotice>> {
        let now = self.clock_now();
        let mut conn = self.pool().get().map_err(StoreError::from)?;
        // No transaction: a read followed by writes in one deferred SQLite transaction
        // fails at once (SQLITE_BUSY_SNAPSHOT) when another connection wrote in
        // between, whereas single statements wait. Revoking is idempotent anyway.
        let issued = grants::for_sessions(&mut conn, tenant, sessions)?;
        for grant in &issued {
            let offline = grant.scope.split(' ').any(|s| s == "offline_access");
            if !offline && grant.revoked_at.is_none() {
                grants::revoke(&mut conn, now, tenant, &grant.id, "session_ended")?;
            }
        }
        drop(conn);
        self.logout_notices(tenant, issuer, user, issued)
    }

    /// For grants revoked while their session goes on (a consent withdrawn, an app
    /// revoked): a logout token for each client with a back-channel logout URI, so
    /// the relying party ends its own session built on the grant. The user's session
    /// here is untouched.
    pub fn grants_revoked(
        &self,
        tenant: TenantId,
        issuer: &str,
        user: UserId,
        grant_ids: &[String],
    ) -> IssuerResult<Vec<BackchannelNotice>> {
        let mut conn = self.pool().get().map_err(StoreError::from)?;
        let mut revoked = Vec::with_capacity(grant_ids.len());
        for id in grant_ids {
            if let Some(grant) = grants::get(&mut conn, tenant, id)?
                && grant.user_id == Some(user)
                && grant.revoked_at.is_some()
            {
                revoked.push(grant);
            }
        }
        drop(conn);
        self.logout_notices(tenant, issuer, user, revoked)
    }

    fn logout_notices(
        &self,
        tenant: TenantId,
        issuer: &str,
        user: UserId,
        issued: Vec<grants::Grant>,
    ) -> IssuerResult<Vec<BackchannelNotice>> {
        let now = self.clock_now();
        // Each token carries the issuer its grant was issued under (a tenant can be
        // reached by more than one URL), else the tenant's canonical one.
        let notices_due: BTreeSet<(String, SessionId, String)> = issued
            .into_iter()
            .filter_map(|g| {
                let issuer = g.issuer.unwrap_or_else(|| issuer.to_owned());
                g.session_id.map(|s| (g.client_id, s, issuer))
            })
            .collect();
        let mut notices = Vec::new();
        for (client_id, session, issuer) in notices_due {
            let Some(client) = self.client_for(tenant, &client_id)? else {
                continue;
            };
            let Some(uri) = client.data.backchannel_logout_uri.clone() else {
                continue;
            };
            // Signed like the client's ID tokens, which it is set up to verify.
            let alg = client.data.id_token_alg.parse().unwrap_or_default();
            let ring = self.signing_ring(tenant, alg)?;
            let claims = LogoutTokenClaims {
                iss: issuer,
                sub: user.to_string(),
                aud: Audience::One(client_id.clone()),
                iat: now.timestamp(),
                exp: (now + LOGOUT_TOKEN_LIFETIME).timestamp(),
                jti: random_token(),
                sid: session.to_string(),
                events: json!({ BACKCHANNEL_EVENT: {} }),
                extra: Map::new(),
            };
            let logout_token = sign(&ring, alg, &claims)?;
            notices.push(BackchannelNotice {
                client_id,
                uri,
                logout_token,
            });
        }
        Ok(notices)
    }
}
