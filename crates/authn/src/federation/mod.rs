//! Federation in: users of a partner sign in with the partner's own identity
//! provider, over OpenID Connect ([`oidc`]) or SAML 2.0 ([`saml`]).
//!
//! A connection is a tenant's configuration of one partner provider. The sign-in
//! is two requests: [`Authn::begin_federation`] remembers a single-use request
//! bound to the browser and sends the browser upstream; [`Authn::finish_federation`]
//! takes the request back by the `state` the partner returns, checks the answer
//! (the code exchanged with PKCE, the ID token verified against the provider's
//! advertised keys and algorithms, the nonce, the issuer) and then, in one
//! transaction settles it. A SAML response arrives as a cross-site POST without
//! the browser's cookies: [`Authn::saml_acs`] verifies it, takes the request by its
//! RelayState and keeps the result under a fresh handle bound to the same browser;
//! [`Authn::finish_saml`], a GET that has the cookies, takes it and settles:
//! - an identity already linked signs its user in, the mapping rules applied again;
//! - a signed-in user linking a connection gets the identity linked to them;
//! - an identity whose email belongs to a local account gets **nothing**: the
//!   person must sign in to that account and link the connection from the account
//!   page (a matching email alone never opens an account — the "nOAuth" class);
//! - otherwise, where the connection allows it, a new account is made just in time.
//!
//! No pooled connection is held across a call to the partner: read, release,
//! call, write.

pub mod client_key;
pub mod mapping;
mod oidc;
pub mod saml;

use std::collections::BTreeMap;

use chrono::Duration;
use gatehouse_core::events::DomainEvent;
use gatehouse_core::ids::{ConnectionId, FederatedIdentityId, GroupId, RoleId, TenantId, UserId};
use gatehouse_identity_store::audit::Outcome;
use gatehouse_identity_store::federation_connections::{self as connections, Connection};
use gatehouse_identity_store::federation_requests::{self as requests, NewRequest};
use gatehouse_identity_store::one_time_tokens;
use gatehouse_identity_store::sessions::{self, AuthMethod, Session};
use gatehouse_identity_store::users::{self, User};
use gatehouse_identity_store::{
    AnyConnection, StoreError, credentials, db, federated_identities, federated_sessions, grants,
    groups, rate_limits, roles, saml_replay, tenants,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::mail_render::{Mail, MailKind};
use crate::registration::LinkBase;
use crate::second_factor::SignedIn;
use crate::service::{Authn, ClientInfo, Inner};
use crate::{AuthnError, secrets};
use mapping::{Claims, MappedProfile, Mapping};
pub use saml::{RequestBinding, SamlSecrets, SamlSettings, SpUrls};

/// Where a federated sign-in goes next: the browser is sent to a URL, or posts a
/// form to the partner (SAML HTTP-POST binding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamStep {
    Redirect(String),
    Post {
        action: String,
        fields: Vec<(String, String)>,
    },
}

pub(crate) use oidc::Upstream;

/// How long a sign-in may stay upstream.
pub const REQUEST_MINUTES: i64 = 10;

/// The settings of an upstream OpenID provider (what is not secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The provider's issuer identifier; discovery is read from it.
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Scopes asked for besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Whether to read the UserInfo endpoint too (its claims fill in what the ID
    /// token lacks; the ID token wins).
    #[serde(default)]
    pub userinfo: bool,
    /// The provider's `acr` values and the assurance level each stands for (1–3);
    /// any other counts as 1.
    #[serde(default)]
    pub acr_levels: BTreeMap<String, i32>,
    /// Signing out here signs out at the provider too (RP-initiated logout), when
    /// it offers an end-session endpoint.
    #[serde(default = "yes")]
    pub logout: bool,
}

fn yes() -> bool {
    true
}

fn default_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}

/// How Gatehouse authenticates to the provider's token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
    /// A JWT signed with the connection's own key (its public half at
    /// `/federation/{slug}/jwks`).
    PrivateKeyJwt,
}

impl OidcSettings {
    /// Parses and checks settings as stored or submitted; the error names the field.
    pub fn parse(value: &serde_json::Value) -> Result<OidcSettings, String> {
        let settings: OidcSettings =
            serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        let issuer =
            url::Url::parse(&settings.issuer).map_err(|_| "issuer: not a URL".to_owned())?;
        if !matches!(issuer.scheme(), "https" | "http")
            || issuer.query().is_some()
            || issuer.fragment().is_some()
        {
            return Err("issuer: an https URL without query or fragment".into());
        }
        if settings.client_id.trim().is_empty() {
            return Err("client_id: must not be empty".into());
        }
        if let Some(bad) = settings
            .scopes
            .iter()
            .find(|scope| scope.is_empty() || scope.contains(char::is_whitespace))
        {
            return Err(format!("scopes: `{bad}` is not a scope token"));
        }
        if let Some((acr, level)) = settings
            .acr_levels
            .iter()
            .find(|(_, level)| !(1..=3).contains(*level))
        {
            return Err(format!("acr_levels: `{acr}` maps to {level}, not 1–3"));
        }
        Ok(settings)
    }
}

/// The secrets of an upstream OpenID provider connection (sealed at rest).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSecrets {
    /// For `client_secret_basic` and `client_secret_post`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// For `private_key_jwt`: the connection's P-256 key, PKCS#8 PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

/// A connection as the sign-in page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionButton {
    pub slug: String,
    pub display_name: String,
    pub logo_url: Option<String>,
}

/// What a federated sign-in is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    SignIn,
    /// A signed-in user adding this connection to their account.
    Link {
        user: UserId,
    },
    /// A user signed in through this connection proving more (a stronger
    /// authentication at the partner) for an assurance level of at least `aal`.
    StepUp {
        user: UserId,
        aal: i32,
    },
}

/// The start of a federated sign-in.
#[derive(Debug)]
pub struct Begin {
    pub purpose: Purpose,
    /// Names the browser (its CSRF cookie); the answer must come back to it.
    pub binding: String,
    /// The tenant's absolute base URL; the connection's callback or ACS is below it.
    pub base: String,
    /// Where to go after (an authorization request to resume), already checked.
    pub return_to: Option<String>,
    pub login_hint: Option<String>,
    /// Who asked, for the audit record of a refusal.
    pub client: ClientInfo,
}

/// The partner's answer as the callback received it.
#[derive(Debug, Default)]
pub struct Answer {
    pub state: String,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub iss: Option<String>,
}

/// How a federated sign-in ended.
#[derive(Debug)]
pub enum Finished {
    SignedIn {
        signed_in: Box<SignedIn>,
        return_to: Option<String>,
    },
    /// The identity is now linked to the signed-in user.
    Linked { return_to: Option<String> },
    /// The partner's email belongs to a local account: sign in to it, then link.
    AccountExists { connection: String },
    /// The partner's verified email belongs to a local account and the tenant
    /// trusts this connection's verified emails: a link that links the identity
    /// waits to be mailed to that address (send it with
    /// [`Authn::send_link_mail`] once the page is answered).
    LinkMailSent {
        connection: String,
        mail: PendingLinkMail,
    },
    /// No linked account, and the connection makes none.
    NoAccount { connection: String },
}

/// Why a federated sign-in was refused: `code` is stable (shown to the user as a
/// reference, audited), `detail` for the log and the audit record only.
#[derive(Debug, Clone, thiserror::Error)]
#[error("federated sign-in refused ({code}): {detail}")]
pub struct Refusal {
    pub code: &'static str,
    pub detail: String,
}

impl Refusal {
    pub(crate) fn error(code: &'static str, detail: impl Into<String>) -> AuthnError {
        AuthnError::Federation(Refusal {
            code,
            detail: detail.into(),
        })
    }
}

/// A user's linked identity, for the account page and the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct LinkedIdentity {
    pub id: FederatedIdentityId,
    pub connection: String,
    pub display_name: String,
    pub subject: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_sign_in_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What the upstream check established.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) subject: String,
    /// What signing out at the partner needs, kept with the session: the ID token
    /// as received (OIDC), or the NameID and SessionIndex as JSON (SAML).
    pub(crate) upstream_session: String,
    /// Finds the session again by the partner's name for the user (SAML: the
    /// SHA-256 of the NameID), for logout the partner starts.
    pub(crate) upstream_key: Option<String>,
    pub(crate) claims: Claims,
    pub(crate) aal: i32,
}

/// A SAML sign-in in flight (sealed in its request row).
#[derive(Serialize, Deserialize)]
struct SamlRequestState {
    request_id: String,
    return_to: Option<String>,
}

/// A verified SAML response waiting for its browser (sealed in its row).
#[derive(Serialize, Deserialize)]
struct SamlResult {
    subject: String,
    upstream_session: String,
    upstream_key: String,
    claims: BTreeMap<String, Vec<String>>,
    aal: i32,
    return_to: Option<String>,
}

/// The callback URL of an OIDC connection on a tenant (registered at the partner).
pub fn oidc_callback_url(base: &str, slug: &str) -> String {
    format!("{base}/federation/{slug}/callback")
}

/// The connection kinds.
pub const KIND_OIDC: &str = "oidc";
pub const KIND_SAML: &str = "saml";

/// The sealed state of a request in flight.
#[derive(Serialize, Deserialize)]
struct RequestState {
    pkce_verifier: String,
    nonce: String,
    redirect_uri: String,
    return_to: Option<String>,
}

const PURPOSE_SIGN_IN: &str = "sign_in";
/// Followed by the wanted assurance level: `step_up:2`.
const PURPOSE_STEP_UP: &str = "step_up:";
/// A verified IdP-initiated SAML sign-in waiting for the person to confirm it.
const PURPOSE_UNSOLICITED: &str = "saml_unsolicited";
/// The binding of an unsolicited result: no browser's digest (those are hex).
const UNSOLICITED_BINDING: &str = "unsolicited";
/// How the handle of an unsolicited result starts, so its finish asks first.
pub const UNSOLICITED_HANDLE: &str = "u.";

/// A SAML sign-out waiting for the identity provider's LogoutResponse.
const PURPOSE_LOGOUT: &str = "saml_logout";

/// A SAML sign-out in flight (sealed in its request row).
#[derive(Serialize, Deserialize)]
struct SamlLogoutState {
    request_id: String,
}

/// Who an IdP-initiated sign-in would sign in.
#[derive(Debug, Clone)]
pub struct UnsolicitedPreview {
    pub partner: String,
    pub account: String,
}

/// What the SAML single-logout endpoint did.
#[derive(Debug)]
pub enum SingleLogout {
    /// The identity provider confirmed a sign-out begun here.
    SignedOut,
    /// The identity provider signed its user out: send the browser to this URL
    /// (Gatehouse's LogoutResponse).
    Answer(String),
}
const PURPOSE_LINK: &str = "link";

/// What the sign-in page offers besides the password.
#[derive(Debug, Clone, Default)]
pub struct SignInOptions {
    pub buttons: Vec<ConnectionButton>,
    /// Some email domains route to a partner: the password may be left empty.
    pub home_realm: bool,
}

impl Authn {
    /// The sign-in page's partner buttons and whether it routes by domain.
    pub async fn sign_in_options(&self, tenant: TenantId) -> Result<SignInOptions, AuthnError> {
        self.blocking(move |_, conn| {
            let buttons = buttons(conn, tenant)?;
            let home_realm = !buttons.is_empty() && connections::any_domains(conn, tenant)?;
            Ok(SignInOptions {
                buttons,
                home_realm,
            })
        })
        .await
    }

    /// The tenant's enabled connections, for the sign-in page's buttons.
    pub async fn sign_in_buttons(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<ConnectionButton>, AuthnError> {
        self.blocking(move |_, conn| buttons(conn, tenant)).await
    }

    /// The enabled connection an email's domain routes to (home-realm discovery).
    pub async fn connection_for_email(
        &self,
        tenant: TenantId,
        email: String,
    ) -> Result<Option<String>, AuthnError> {
        let Some(domain) = email_domain(&email) else {
            return Ok(None);
        };
        self.blocking(move |_, conn| {
            Ok(connections::find_by_domain(conn, tenant, &domain)?
                .filter(|c| c.enabled)
                .map(|c| c.slug))
        })
        .await
    }

    /// Starts a federated sign-in: the URL to send the browser to.
    pub async fn begin_federation(
        &self,
        tenant: TenantId,
        slug: String,
        begin: Begin,
    ) -> Result<UpstreamStep, AuthnError> {
        let mut connection_id = None;
        let client = begin.client.clone();
        let result = self
            .begin_checked(tenant, slug.clone(), begin, &mut connection_id)
            .await;
        self.log_refusal(tenant, &slug, connection_id, &result, client)
            .await;
        result
    }

    async fn begin_checked(
        &self,
        tenant: TenantId,
        slug: String,
        begin: Begin,
        connection_id: &mut Option<ConnectionId>,
    ) -> Result<UpstreamStep, AuthnError> {
        let connection = self
            .blocking(move |_, conn| usable_connection(conn, tenant, &slug, None))
            .await?;
        *connection_id = Some(connection.id);
        if connection.kind == KIND_SAML {
            return self.begin_saml(tenant, connection, begin).await;
        }
        let redirect_uri = oidc_callback_url(&begin.base, &connection.slug);
        let settings = OidcSettings::parse(&connection.settings)
            .map_err(|e| Refusal::error("connection_invalid", e))?;
        let provider = self
            .inner
            .upstream
            .provider(&self.inner, &connection, &settings)
            .await?;
        let (state, state_hash) = secrets::generate();
        let (nonce, _) = secrets::generate();
        let (url, pkce_verifier) = oidc::authorization_url(
            &provider,
            &settings,
            &redirect_uri,
            &state,
            &nonce,
            begin.login_hint.as_deref(),
            step_up_values(begin.purpose, &settings.acr_levels).as_deref(),
        )?;
        let sealed = serde_json::to_vec(&RequestState {
            pkce_verifier,
            nonce,
            redirect_uri,
            return_to: begin.return_to,
        })
        .map_err(|e| AuthnError::Internal(e.to_string()))?;
        self.remember_request(
            tenant,
            connection.id,
            begin.purpose,
            secrets::digest(&begin.binding),
            state_hash,
            sealed,
        )
        .await?;
        Ok(UpstreamStep::Redirect(url))
    }

    /// Keeps a sign-in in flight (or a verified SAML result) under `id_hash`,
    /// bound to the browser `binding` names.
    async fn remember_request(
        &self,
        tenant: TenantId,
        connection: ConnectionId,
        purpose: Purpose,
        binding: String,
        id_hash: String,
        sealed: Vec<u8>,
    ) -> Result<(), AuthnError> {
        self.blocking(move |inner, conn| {
            let now = inner.now();
            let (purpose, user) = purpose_row(purpose);
            let purpose = purpose.as_str();
            requests::insert(
                conn,
                &inner.cipher,
                now,
                tenant,
                &id_hash,
                NewRequest {
                    connection,
                    purpose,
                    user,
                    binding: &binding,
                    state: &sealed,
                    expires_at: now + Duration::minutes(REQUEST_MINUTES),
                },
            )?;
            Ok(())
        })
        .await
    }

    /// The SAML start: a signed AuthnRequest over the redirect binding, the
    /// request remembered under the SHA-256 of its RelayState.
    async fn begin_saml(
        &self,
        tenant: TenantId,
        connection: Connection,
        begin: Begin,
    ) -> Result<UpstreamStep, AuthnError> {
        let settings = SamlSettings::parse(&connection.settings)
            .map_err(|e| Refusal::error("connection_invalid", e))?;
        let keys = self.saml_secrets(tenant, connection.id).await?;
        let urls = SpUrls::new(&begin.base, &connection.slug);
        let (relay_state, relay_hash) = secrets::generate();
        let request_id = saml::new_id();
        let step_up = step_up_values(begin.purpose, &settings.authn_context_levels);
        let now = self.inner.now();
        let step = match settings.authn_request_binding {
            RequestBinding::Redirect => UpstreamStep::Redirect(saml::authn_request_url(
                &settings,
                &keys,
                &urls,
                &request_id,
                &relay_state,
                step_up.as_deref(),
                now,
            )?),
            RequestBinding::Post => UpstreamStep::Post {
                action: settings.sso_url.clone(),
                fields: saml::authn_request_form(
                    &settings,
                    &keys,
                    &urls,
                    &request_id,
                    &relay_state,
                    step_up.as_deref(),
                    now,
                )?,
            },
        };
        let sealed = serde_json::to_vec(&SamlRequestState {
            request_id,
            return_to: begin.return_to,
        })
        .map_err(|e| AuthnError::Internal(e.to_string()))?;
        self.remember_request(
            tenant,
            connection.id,
            begin.purpose,
            secrets::digest(&begin.binding),
            relay_hash,
            sealed,
        )
        .await?;
        Ok(step)
    }

    async fn saml_secrets(
        &self,
        tenant: TenantId,
        connection: ConnectionId,
    ) -> Result<SamlSecrets, AuthnError> {
        let text = self
            .blocking(move |inner, conn| {
                Ok(connections::secrets(
                    conn,
                    &inner.cipher,
                    tenant,
                    connection,
                )?)
            })
            .await?
            .ok_or_else(|| Refusal::error("connection_invalid", "the connection has no SP key"))?;
        serde_json::from_str(&text)
            .map_err(|e| AuthnError::Internal(format!("connection secrets: {e}")))
    }

    /// The connection's SP metadata (signed): what the partner's identity provider
    /// is configured with. `base` is the tenant's absolute base URL.
    pub async fn saml_metadata(
        &self,
        tenant: TenantId,
        slug: String,
        base: String,
    ) -> Result<String, AuthnError> {
        let connection = self
            .blocking(move |_, conn| usable_connection(conn, tenant, &slug, Some(KIND_SAML)))
            .await?;
        let settings = SamlSettings::parse(&connection.settings)
            .map_err(|e| Refusal::error("connection_invalid", e))?;
        let keys = self.saml_secrets(tenant, connection.id).await?;
        let urls = SpUrls::new(&base, &connection.slug);
        saml::sp_metadata(&settings, &keys, &urls, self.inner.now())
    }

    /// The assertion consumer service: verifies a `SAMLResponse`, takes the
    /// request its RelayState names, refuses a replay (on every node: the
    /// assertion's ID is stored until it expires), and keeps the result for the
    /// browser that began the sign-in. Returns the handle [`Authn::finish_saml`]
    /// takes it by. A refusal is audited and changes nothing else.
    pub async fn saml_acs(
        &self,
        tenant: TenantId,
        slug: String,
        base: String,
        response: String,
        relay_state: String,
        client: ClientInfo,
    ) -> Result<String, AuthnError> {
        // Every post costs XML parsing and signature checks: an address whose posts
        // keep being refused is turned away before any of that, on every node.
        let bucket = client.ip.as_deref().map(acs_bucket);
        if let Some(bucket) = bucket.clone() {
            let locked = self
                .blocking(move |inner, conn| {
                    Ok(rate_limits::get(conn, tenant, &bucket)?
                        .is_some_and(|counter| counter.is_locked(inner.now())))
                })
                .await?;
            if locked {
                return Err(Refusal::error(
                    "acs_throttled",
                    "too many refused responses from this address",
                ));
            }
        }
        let mut connection_id = None;
        let result = self
            .saml_acs_checked(
                tenant,
                slug.clone(),
                base,
                response,
                relay_state,
                &mut connection_id,
            )
            .await;
        if let (Some(bucket), Err(AuthnError::Federation(_))) = (bucket, &result) {
            let counted = self
                .blocking(move |inner, conn| {
                    rate_limits::record_failure(
                        conn,
                        inner.now(),
                        tenant,
                        &bucket,
                        Duration::minutes(ACS_REFUSAL_WINDOW_MINUTES),
                        |failures| {
                            (failures >= ACS_REFUSALS_BEFORE_LOCK)
                                .then(|| Duration::minutes(ACS_REFUSAL_WINDOW_MINUTES))
                        },
                    )
                    .map_err(AuthnError::from)
                })
                .await;
            if let Err(error) = counted {
                tracing::error!(%error, "a refused SAML response could not be counted");
            }
        }
        self.log_refusal(tenant, &slug, connection_id, &result, client)
            .await;
        result
    }

    async fn saml_acs_checked(
        &self,
        tenant: TenantId,
        slug: String,
        base: String,
        response: String,
        relay_state: String,
        connection_id: &mut Option<ConnectionId>,
    ) -> Result<String, AuthnError> {
        let connection = self
            .blocking(move |_, conn| usable_connection(conn, tenant, &slug, Some(KIND_SAML)))
            .await?;
        *connection_id = Some(connection.id);
        let settings = SamlSettings::parse(&connection.settings)
            .map_err(|e| Refusal::error("connection_invalid", e))?;
        let urls = SpUrls::new(&base, &connection.slug);
        let now = self.inner.now();
        let keys = self.saml_secrets(tenant, connection.id).await?;
        let allow_unsolicited = settings.allow_idp_initiated;
        // Signature checks are CPU work: off the async threads, and no pooled
        // connection held meanwhile.
        let asserted = tokio::task::spawn_blocking(move || {
            saml::verify_response(&settings, &urls, Some(&keys), &response, now)
        })
        .await
        .map_err(|e| AuthnError::Internal(e.to_string()))??;
        let relay_hash = secrets::digest(&relay_state);
        let id = connection.id;
        // Taken in its own statement: a request answered wrongly is used up too.
        let taken = self
            .blocking(move |inner, conn| {
                Ok(requests::take(
                    conn,
                    &inner.cipher,
                    inner.now(),
                    tenant,
                    &relay_hash,
                    id,
                    None,
                )?)
            })
            .await?;
        // Only a sign-in in flight answers here: not a sign-out's row, not a result.
        let taken =
            taken.filter(|row| row.purpose != PURPOSE_LOGOUT && row.purpose != PURPOSE_UNSOLICITED);
        let (purpose, row_purpose, binding, return_to, handle_prefix) = match taken {
            Some(taken) => {
                let state: SamlRequestState =
                    serde_json::from_slice(&taken.state).map_err(|_| {
                        Refusal::error("saml_state", "the RelayState names no SAML request")
                    })?;
                if asserted.in_response_to.as_deref() != Some(state.request_id.as_str()) {
                    return Err(Refusal::error(
                        "saml_in_response_to",
                        "the response answers another request",
                    ));
                }
                let purpose = purpose_of(&taken);
                (
                    purpose,
                    purpose_row(purpose).0,
                    taken.binding,
                    state.return_to,
                    "",
                )
            }
            // IdP-initiated: nobody here began it, so no browser is bound to it
            // yet. Its finish asks the person first (a brake on login CSRF).
            None if allow_unsolicited && asserted.in_response_to.is_none() => (
                Purpose::SignIn,
                PURPOSE_UNSOLICITED.to_owned(),
                UNSOLICITED_BINDING.to_owned(),
                None,
                UNSOLICITED_HANDLE,
            ),
            None => {
                return Err(Refusal::error(
                    "saml_state",
                    "unknown, used or expired RelayState, and no unsolicited response is accepted",
                ));
            }
        };
        let (handle, _) = secrets::generate();
        let handle = format!("{handle_prefix}{handle}");
        let handle_hash = secrets::digest(&handle);
        let sealed = serde_json::to_vec(&SamlResult {
            subject: asserted.subject.clone(),
            upstream_key: saml::name_id_key(&asserted.name_id),
            upstream_session: json!({
                "name_id": asserted.name_id,
                "format": asserted.name_id_format,
                "session_index": asserted.session_index,
            })
            .to_string(),
            claims: asserted.claims.0.clone(),
            aal: asserted.aal,
            return_to,
        })
        .map_err(|e| AuthnError::Internal(e.to_string()))?;
        self.blocking(move |inner, conn| {
            db::transaction_with(conn, |conn| {
                let now = inner.now();
                saml_replay::remember(
                    conn,
                    tenant,
                    id,
                    &asserted.assertion_id,
                    asserted.remember_until,
                )
                .map_err(|e| match e {
                    StoreError::Conflict { .. } => {
                        Refusal::error("saml_replay", "the assertion was used before")
                    }
                    StoreError::Invalid { message, .. } => {
                        Refusal::error("saml_structure", message)
                    }
                    other => other.into(),
                })?;
                let user = purpose_row(purpose).1;
                let purpose = row_purpose.as_str();
                requests::insert(
                    conn,
                    &inner.cipher,
                    now,
                    tenant,
                    &handle_hash,
                    NewRequest {
                        connection: id,
                        purpose,
                        user,
                        binding: &binding,
                        state: &sealed,
                        expires_at: now + Duration::minutes(REQUEST_MINUTES),
                    },
                )?;
                Ok(())
            })
        })
        .await?;
        Ok(handle)
    }

    /// Ends a SAML sign-in in the browser that began it: takes the verified
    /// result by the handle the ACS gave and settles it as any federated sign-in.
    pub async fn finish_saml(
        &self,
        tenant: TenantId,
        slug: String,
        handle: String,
        binding: String,
        previous_secret: Option<String>,
        client: ClientInfo,
    ) -> Result<Finished, AuthnError> {
        let mut connection_id = None;
        let result = self
            .finish_saml_checked(
                tenant,
                slug.clone(),
                handle,
                binding,
                previous_secret,
                client.clone(),
                &mut connection_id,
            )
            .await;
        self.log_refusal(tenant, &slug, connection_id, &result, client)
            .await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_saml_checked(
        &self,
        tenant: TenantId,
        slug: String,
        handle: String,
        binding: String,
        previous_secret: Option<String>,
        client: ClientInfo,
        connection_id: &mut Option<ConnectionId>,
    ) -> Result<Finished, AuthnError> {
        let binding = secrets::digest(&binding);
        let browser = binding.clone();
        let handle_hash = secrets::digest(&handle);
        let (connection, taken) = self
            .blocking(move |inner, conn| {
                let connection = usable_connection(conn, tenant, &slug, Some(KIND_SAML))?;
                let taken = requests::take(
                    conn,
                    &inner.cipher,
                    inner.now(),
                    tenant,
                    &handle_hash,
                    connection.id,
                    Some(&binding),
                )?;
                Ok((connection, taken))
            })
            .await?;
        *connection_id = Some(connection.id);
        let taken = taken.ok_or_else(|| {
            Refusal::error(
                "saml_state",
                "unknown, used, expired or another browser's sign-in",
            )
        })?;
        let result: SamlResult = serde_json::from_slice(&taken.state)
            .map_err(|_| Refusal::error("saml_state", "not a verified SAML sign-in"))?;
        let verified = Verified {
            subject: result.subject,
            upstream_session: result.upstream_session,
            upstream_key: Some(result.upstream_key),
            claims: Claims(result.claims),
            aal: result.aal,
        };
        self.conclude(
            tenant,
            connection,
            purpose_of(&taken),
            verified,
            result.return_to,
            previous_secret,
            Some(browser),
            client,
        )
        .await
    }

    /// Finishes a federated sign-in with the partner's answer. A refusal is audited
    /// (`federation.refused` with its code) and changes nothing else.
    pub async fn finish_federation(
        &self,
        tenant: TenantId,
        slug: String,
        answer: Answer,
        binding: String,
        previous_secret: Option<String>,
        client: ClientInfo,
    ) -> Result<Finished, AuthnError> {
        let mut connection_id = None;
        let result = self
            .finish_checked(
                tenant,
                slug.clone(),
                answer,
                binding,
                previous_secret,
                client.clone(),
                &mut connection_id,
            )
            .await;
        self.log_refusal(tenant, &slug, connection_id, &result, client)
            .await;
        result
    }

    /// Audits a refused federated sign-in (`federation.refused` with its code) and,
    /// where the connection itself is at fault (its provider unreachable or
    /// misdescribed, a mapping rule that cannot apply), records it as the
    /// connection's last error for operators. A failure to log is logged.
    async fn log_refusal<T: Send + 'static>(
        &self,
        tenant: TenantId,
        slug: &str,
        connection: Option<ConnectionId>,
        result: &Result<T, AuthnError>,
        client: ClientInfo,
    ) {
        let Err(AuthnError::Federation(refusal)) = result else {
            return;
        };
        let refusal = refusal.clone();
        let slug = slug.to_owned();
        let logged = self
            .blocking(move |inner, conn| {
                if let Some(id) = connection
                    && matches!(refusal.code, "mapping" | "oidc_discovery")
                {
                    connections::record_error(
                        conn,
                        inner.now(),
                        tenant,
                        id,
                        Some(&refusal.detail),
                    )?;
                }
                inner.audit(
                    conn,
                    tenant,
                    "anonymous".into(),
                    "federation.refused",
                    Some(format!("connection:{slug}")),
                    Outcome::Denied,
                    &client,
                    json!({ "code": refusal.code, "detail": refusal.detail }),
                )
            })
            .await;
        if let Err(error) = logged {
            tracing::error!(%error, "a refused federated sign-in could not be audited");
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_checked(
        &self,
        tenant: TenantId,
        slug: String,
        answer: Answer,
        binding: String,
        previous_secret: Option<String>,
        client: ClientInfo,
        connection_id: &mut Option<ConnectionId>,
    ) -> Result<Finished, AuthnError> {
        let binding = secrets::digest(&binding);
        let browser = binding.clone();
        let state_hash = secrets::digest(&answer.state);
        let (connection, taken, secret) = self
            .blocking(move |inner, conn| {
                let connection = usable_connection(conn, tenant, &slug, Some(KIND_OIDC))?;
                let taken = requests::take(
                    conn,
                    &inner.cipher,
                    inner.now(),
                    tenant,
                    &state_hash,
                    connection.id,
                    Some(&binding),
                )?;
                let secret = connections::secrets(conn, &inner.cipher, tenant, connection.id)?;
                Ok((connection, taken, secret))
            })
            .await?;
        *connection_id = Some(connection.id);
        let taken = taken.ok_or_else(|| {
            Refusal::error(
                "oidc_state",
                "unknown, used, expired or another browser's state",
            )
        })?;
        let state: RequestState = serde_json::from_slice(&taken.state)
            .map_err(|e| AuthnError::Internal(e.to_string()))?;
        if let Some(error) = &answer.error {
            return Err(Refusal::error(
                "upstream_error",
                format!(
                    "the provider answered {error}: {}",
                    answer.error_description.as_deref().unwrap_or("")
                ),
            ));
        }
        let settings = OidcSettings::parse(&connection.settings)
            .map_err(|e| Refusal::error("connection_invalid", e))?;
        let secrets: OidcSecrets = secret
            .as_deref()
            .map(|text| serde_json::from_str(text))
            .transpose()
            .map_err(|e| AuthnError::Internal(format!("connection secrets: {e}")))?
            .ok_or_else(|| Refusal::error("connection_invalid", "no client secret is set"))?;
        let code = answer
            .code
            .clone()
            .ok_or_else(|| Refusal::error("oidc_code", "the answer has no code"))?;
        let verified = self
            .inner
            .upstream
            .verify(
                &self.inner,
                &connection,
                &settings,
                &secrets,
                oidc::Exchange {
                    code,
                    pkce_verifier: state.pkce_verifier,
                    nonce: state.nonce,
                    redirect_uri: state.redirect_uri,
                    iss: answer.iss,
                },
            )
            .await?;
        self.conclude(
            tenant,
            connection,
            purpose_of(&taken),
            verified,
            state.return_to,
            previous_secret,
            Some(browser),
            client,
        )
        .await
    }

    /// What every verified federated sign-in ends with: the mapping applied and
    /// the settling transaction.
    #[allow(clippy::too_many_arguments)]
    async fn conclude(
        &self,
        tenant: TenantId,
        connection: Connection,
        purpose: Purpose,
        verified: Verified,
        return_to: Option<String>,
        previous_secret: Option<String>,
        binding: Option<String>,
        client: ClientInfo,
    ) -> Result<Finished, AuthnError> {
        let mapping = Mapping::from_json(&connection.mapping)
            .map_err(|e| Refusal::error("mapping", e.to_string()))?;
        let profile = mapping
            .apply(&verified.claims)
            .map_err(|e| Refusal::error("mapping", e.to_string()))?;
        let (finished, changed) = self
            .blocking(move |inner, conn| {
                db::transaction_with(conn, |conn| {
                    inner
                        .settle(
                            conn,
                            tenant,
                            &connection,
                            purpose,
                            &verified,
                            &profile,
                            previous_secret,
                            binding.as_deref(),
                            &client,
                            return_to,
                        )
                        // What the partner sent that the store will not take (an
                        // over-long subject or name): the partner's fault, refused
                        // like any other bad answer, never a server error.
                        .map_err(|error| match error {
                            AuthnError::Store(StoreError::Invalid { message, .. }) => {
                                Refusal::error("upstream_invalid", message)
                            }
                            other => other,
                        })
                })
            })
            .await?;
        if let Some(Changed {
            user,
            grants_revoked,
        }) = changed
        {
            self.inner
                .announce(DomainEvent::UserChanged { tenant, user });
            // Tokens that carried a role the partner no longer gives are revoked:
            // their relying parties hear it (back-channel logout) from this node.
            if !grants_revoked.is_empty() {
                self.inner.announce(DomainEvent::GrantsRevoked {
                    tenant,
                    user,
                    grants: grants_revoked,
                });
            }
        }
        Ok(finished)
    }

    /// Where to send the browser to end `session` at the partner that opened it
    /// (OpenID Connect RP-initiated logout, with the ID token as hint; SAML single
    /// logout, a signed LogoutRequest), if one did, its connection signs out
    /// upstream, and the provider offers it. `base` is the tenant's absolute base
    /// URL: the provider sends the browser back to
    /// `{base}/federation/{slug}/logged-out` (SAML: `…/saml/slo`). `binding` names
    /// the browser, which the SAML answer must come back to. Call before ending the session here;
    /// what it remembered for the partner is gone afterwards either way.
    pub async fn upstream_logout_url(
        &self,
        session: &Session,
        base: String,
        binding: String,
    ) -> Result<Option<String>, AuthnError> {
        let (tenant, session_id) = (session.tenant_id, session.id);
        let found = self
            .blocking(move |inner, conn| {
                let Some((connection, id_token)) =
                    federated_sessions::take(conn, &inner.cipher, tenant, session_id)?
                else {
                    return Ok(None);
                };
                match connections::get(conn, tenant, connection) {
                    Ok(connection) => Ok(Some((connection, id_token))),
                    Err(StoreError::NotFound { .. }) => Ok(None),
                    Err(other) => Err(other.into()),
                }
            })
            .await?;
        let Some((connection, id_token)) = found else {
            return Ok(None);
        };
        if !connection.enabled {
            return Ok(None);
        }
        if connection.kind == KIND_SAML {
            return self
                .saml_logout_url(connection, &id_token, base, binding)
                .await;
        }
        let Ok(settings) = OidcSettings::parse(&connection.settings) else {
            return Ok(None);
        };
        if !settings.logout || !connection.enabled {
            return Ok(None);
        }
        let metadata = self
            .inner
            .upstream
            .provider(&self.inner, &connection, &settings)
            .await?;
        let back = format!("{base}/federation/{}/logged-out", connection.slug);
        oidc::logout_url(&metadata, &settings, &id_token, &back)
    }

    /// The SAML side of signing out: a signed LogoutRequest to the identity
    /// provider that opened the session, remembered (bound to this browser, under
    /// the SHA-256 of its RelayState) so its LogoutResponse can be matched.
    async fn saml_logout_url(
        &self,
        connection: Connection,
        upstream: &str,
        base: String,
        binding: String,
    ) -> Result<Option<String>, AuthnError> {
        let Ok(settings) = SamlSettings::parse(&connection.settings) else {
            return Ok(None);
        };
        let Some(target) = saml::slo::slo_target(&settings) else {
            return Ok(None);
        };
        let Ok(session) = serde_json::from_str::<saml::slo::UpstreamSession>(upstream) else {
            return Ok(None);
        };
        let tenant = connection.tenant_id;
        let keys = self.saml_secrets(tenant, connection.id).await?;
        let urls = SpUrls::new(&base, &connection.slug);
        let (relay_state, relay_hash) = secrets::generate();
        let request_id = saml::new_id();
        let url = saml::slo::logout_request_url(
            target,
            &keys,
            &urls,
            &session,
            &request_id,
            &relay_state,
            self.inner.now(),
        )?;
        let sealed = serde_json::to_vec(&SamlLogoutState { request_id })
            .map_err(|e| AuthnError::Internal(e.to_string()))?;
        self.blocking(move |inner, conn| {
            let now = inner.now();
            requests::insert(
                conn,
                &inner.cipher,
                now,
                tenant,
                &relay_hash,
                NewRequest {
                    connection: connection.id,
                    purpose: PURPOSE_LOGOUT,
                    user: None,
                    binding: &secrets::digest(&binding),
                    state: &sealed,
                    expires_at: now + Duration::minutes(REQUEST_MINUTES),
                },
            )?;
            Ok(())
        })
        .await?;
        Ok(Some(url))
    }

    /// The single-logout endpoint of a SAML connection (HTTP-Redirect), given the
    /// query as received. A LogoutResponse ends a sign-out begun here (it must
    /// answer this browser's request); a LogoutRequest is the identity provider
    /// signing its user out: every session it opened for that user (and that
    /// SessionIndex, when it names one) ends here, relying parties are told, and
    /// the answer is a signed LogoutResponse to send the browser back with.
    pub async fn saml_single_logout(
        &self,
        tenant: TenantId,
        slug: String,
        base: String,
        raw_query: String,
        binding: String,
        client: ClientInfo,
    ) -> Result<SingleLogout, AuthnError> {
        let mut connection_id = None;
        let result = self
            .saml_single_logout_checked(
                tenant,
                slug.clone(),
                base,
                raw_query,
                binding,
                client.clone(),
                &mut connection_id,
            )
            .await;
        self.log_refusal(tenant, &slug, connection_id, &result, client)
            .await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn saml_single_logout_checked(
        &self,
        tenant: TenantId,
        slug: String,
        base: String,
        raw_query: String,
        binding: String,
        client: ClientInfo,
        connection_id: &mut Option<ConnectionId>,
    ) -> Result<SingleLogout, AuthnError> {
        let connection = self
            .blocking(move |_, conn| usable_connection(conn, tenant, &slug, Some(KIND_SAML)))
            .await?;
        *connection_id = Some(connection.id);
        let settings = SamlSettings::parse(&connection.settings)
            .map_err(|e| Refusal::error("connection_invalid", e))?;
        let urls = SpUrls::new(&base, &connection.slug);
        let id = connection.id;
        if raw_query.contains("SAMLResponse=") {
            let received = saml::slo::receive(&settings, &raw_query, "SAMLResponse")?;
            let relay_hash = secrets::digest(received.relay_state.as_deref().unwrap_or_default());
            let binding = secrets::digest(&binding);
            let taken = self
                .blocking(move |inner, conn| {
                    Ok(requests::take(
                        conn,
                        &inner.cipher,
                        inner.now(),
                        tenant,
                        &relay_hash,
                        id,
                        Some(&binding),
                    )?)
                })
                .await?
                .filter(|taken| taken.purpose == PURPOSE_LOGOUT)
                .ok_or_else(|| {
                    Refusal::error(
                        "saml_state",
                        "no sign-out of this browser awaits this answer",
                    )
                })?;
            let state: SamlLogoutState = serde_json::from_slice(&taken.state)
                .map_err(|_| Refusal::error("saml_state", "not a sign-out"))?;
            let succeeded = saml::slo::check_logout_response(
                &settings,
                &urls,
                &received.xml,
                &state.request_id,
            )?;
            if !succeeded {
                tracing::info!(connection = %connection.slug, "the identity provider did not end its session");
            }
            return Ok(SingleLogout::SignedOut);
        }
        let received = saml::slo::receive(&settings, &raw_query, "SAMLRequest")?;
        let now = self.inner.now();
        let order = saml::slo::check_logout_request(&settings, &urls, &received.xml, now)?;
        let target = settings.slo_url.clone().ok_or_else(|| {
            Refusal::error(
                "connection_invalid",
                "the identity provider has no SLO endpoint",
            )
        })?;
        let keys = self.saml_secrets(tenant, id).await?;
        let key = saml::name_id_key(&order.name_id);
        let remember = order.clone();
        let ended = self
            .blocking(move |inner, conn| {
                db::transaction_with(conn, |conn| {
                    let now = inner.now();
                    saml_replay::remember(conn, tenant, id, &remember.id, remember.remember_until)
                        .map_err(|e| match e {
                            StoreError::Conflict { .. } => {
                                Refusal::error("saml_replay", "the LogoutRequest was used before")
                            }
                            StoreError::Invalid { message, .. } => {
                                Refusal::error("saml_structure", message)
                            }
                            other => other.into(),
                        })?;
                    let mut ended = Vec::new();
                    for (session, user, upstream) in federated_sessions::open_by_upstream_key(
                        conn,
                        &inner.cipher,
                        tenant,
                        id,
                        &key,
                    )? {
                        let index = serde_json::from_str::<saml::slo::UpstreamSession>(&upstream)
                            .ok()
                            .and_then(|s| s.session_index);
                        if remember.session_index.is_some() && index != remember.session_index {
                            continue;
                        }
                        if sessions::end(conn, now, tenant, session, None, "partner_signed_out")? {
                            inner.audit(
                                conn,
                                tenant,
                                format!("user:{user}"),
                                "session.signed_out",
                                Some(format!("session:{session}")),
                                Outcome::Success,
                                &client,
                                json!({ "by": "identity_provider" }),
                            )?;
                            ended.push((user, session));
                        }
                    }
                    Ok(ended)
                })
            })
            .await?;
        for (user, session) in ended {
            self.inner.sessions_ended(tenant, user, vec![session]);
        }
        let url = saml::slo::logout_response_url(
            &target,
            &keys,
            &urls,
            &order.id,
            received.relay_state.as_deref(),
            now,
        )?;
        Ok(SingleLogout::Answer(url))
    }

    /// What an IdP-initiated sign-in would sign in as, for the page that asks
    /// before it does: the partner's name and the account's email (or the
    /// partner's name for the user). Reads without using it up.
    pub async fn unsolicited_preview(
        &self,
        tenant: TenantId,
        slug: String,
        handle: String,
    ) -> Result<UnsolicitedPreview, AuthnError> {
        let handle_hash = secrets::digest(&handle);
        let (connection, peeked) = self
            .blocking(move |inner, conn| {
                let connection = usable_connection(conn, tenant, &slug, Some(KIND_SAML))?;
                let peeked = requests::peek(
                    conn,
                    &inner.cipher,
                    inner.now(),
                    tenant,
                    &handle_hash,
                    connection.id,
                )?;
                Ok((connection, peeked))
            })
            .await?;
        let result = peeked
            .filter(|row| row.purpose == PURPOSE_UNSOLICITED)
            .and_then(|row| serde_json::from_slice::<SamlResult>(&row.state).ok())
            .ok_or_else(|| Refusal::error("saml_state", "unknown, used or expired sign-in"))?;
        let email = Mapping::from_json(&connection.mapping)
            .ok()
            .and_then(|mapping| mapping.apply(&Claims(result.claims)).ok())
            .and_then(|profile| profile.email);
        Ok(UnsolicitedPreview {
            partner: connection.display_name,
            account: email.unwrap_or(result.subject),
        })
    }

    /// Ends an IdP-initiated sign-in the person confirmed (on a CSRF-protected
    /// form of this site): takes the result and settles it.
    pub async fn finish_unsolicited(
        &self,
        tenant: TenantId,
        slug: String,
        handle: String,
        previous_secret: Option<String>,
        client: ClientInfo,
    ) -> Result<Finished, AuthnError> {
        let mut connection_id = None;
        let handle_hash = secrets::digest(&handle);
        let logged_slug = slug.clone();
        let result = async {
            let (connection, taken) = self
                .blocking(move |inner, conn| {
                    let connection = usable_connection(conn, tenant, &slug, Some(KIND_SAML))?;
                    let taken = requests::take(
                        conn,
                        &inner.cipher,
                        inner.now(),
                        tenant,
                        &handle_hash,
                        connection.id,
                        Some(UNSOLICITED_BINDING),
                    )?;
                    Ok((connection, taken))
                })
                .await?;
            connection_id = Some(connection.id);
            let result: SamlResult = taken
                .filter(|row| row.purpose == PURPOSE_UNSOLICITED)
                .and_then(|row| serde_json::from_slice(&row.state).ok())
                .ok_or_else(|| Refusal::error("saml_state", "unknown, used or expired sign-in"))?;
            let verified = Verified {
                subject: result.subject,
                upstream_session: result.upstream_session,
                upstream_key: Some(result.upstream_key),
                claims: Claims(result.claims),
                aal: result.aal,
            };
            self.conclude(
                tenant,
                connection,
                Purpose::SignIn,
                verified,
                None,
                previous_secret,
                // Begun by no browser of ours: no mailed link is offered (it would
                // bind to whoever was sent to confirm).
                None,
                client.clone(),
            )
            .await
        }
        .await;
        self.log_refusal(tenant, &logged_slug, connection_id, &result, client)
            .await;
        result
    }

    /// The public key an OIDC connection authenticates with (`private_key_jwt`),
    /// as a JWK Set for the partner to register or fetch.
    pub async fn connection_jwks(
        &self,
        tenant: TenantId,
        slug: String,
    ) -> Result<serde_json::Value, AuthnError> {
        let (connection, secret) = self
            .blocking(move |inner, conn| {
                let connection = usable_connection(conn, tenant, &slug, Some(KIND_OIDC))?;
                let secret = connections::secrets(conn, &inner.cipher, tenant, connection.id)?;
                Ok((connection, secret))
            })
            .await?;
        let key = secret
            .as_deref()
            .and_then(|text| serde_json::from_str::<OidcSecrets>(text).ok())
            .and_then(|secrets| secrets.private_key)
            .ok_or_else(|| {
                Refusal::error(
                    "connection_unknown",
                    format!("`{}` authenticates with no key", connection.slug),
                )
            })?;
        Ok(json!({ "keys": [client_key::public_jwk(&key)?] }))
    }

    /// Where to send the browser so that the partner that signed `session` in
    /// signs its user in again, more strongly, for assurance level `aal` (OIDC
    /// `acr_values` with `prompt=login`; SAML `ForceAuthn` with a
    /// RequestedAuthnContext). `None` when the session did not come from a
    /// partner, or the partner has nothing that counts as `aal`: the caller then
    /// steps up with a local factor. The answer must name the same person.
    pub async fn upstream_step_up(
        &self,
        session: &Session,
        aal: i32,
        base: String,
        binding: String,
        return_to: String,
        client: ClientInfo,
    ) -> Result<Option<UpstreamStep>, AuthnError> {
        let Some(slug) = session
            .auth_methods
            .iter()
            .filter(|m| m.method == "fed")
            .max_by_key(|m| m.at)
            .and_then(|m| m.idp.clone())
        else {
            return Ok(None);
        };
        let tenant = session.tenant_id;
        let lookup = slug.clone();
        let Some(connection) = self
            .blocking(move |_, conn| Ok(connections::find_by_slug(conn, tenant, &lookup)?))
            .await?
            .filter(|c| c.enabled)
        else {
            return Ok(None);
        };
        let reachable = match connection.kind.as_str() {
            KIND_OIDC => OidcSettings::parse(&connection.settings)
                .is_ok_and(|s| can_step_up(&s.acr_levels, aal)),
            KIND_SAML => SamlSettings::parse(&connection.settings)
                .is_ok_and(|s| can_step_up(&s.authn_context_levels, aal)),
            _ => false,
        };
        if !reachable {
            return Ok(None);
        }
        let begin = Begin {
            purpose: Purpose::StepUp {
                user: session.user_id,
                aal,
            },
            binding,
            base,
            return_to: Some(return_to),
            login_hint: None,
            client,
        };
        self.begin_federation(tenant, slug, begin).await.map(Some)
    }

    /// The user's linked identities.
    pub async fn linked_identities(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Vec<LinkedIdentity>, AuthnError> {
        self.blocking(move |_, conn| linked(conn, tenant, user))
            .await
    }

    /// Mails the link of a [`Finished::LinkMailSent`], after the answer (the page
    /// never waits for SMTP). `base` is the tenant's absolute base for links.
    pub fn send_link_mail(&self, tenant: TenantId, pending: PendingLinkMail, base: &LinkBase) {
        // Tokens are URL-safe base64, as in every mailed link.
        let link = format!("{}/federation/link?token={}", base.0, pending.token);
        let mail = Mail {
            to: pending.to,
            locale: pending.locale,
            kind: MailKind::ConfirmLink {
                partner: pending.partner,
                link,
                valid_minutes: LINK_MAIL_MINUTES,
            },
        };
        self.send_in_background(tenant, mail, "federation link");
    }

    /// What a mailed link would link, without spending it (mail scanners open
    /// links); [`AuthnError::InvalidLink`] when it is unknown, used or expired.
    pub async fn link_offer(
        &self,
        tenant: TenantId,
        token: String,
        binding: String,
    ) -> Result<LinkOffer, AuthnError> {
        self.blocking(move |inner, conn| {
            let found = one_time_tokens::find(
                conn,
                inner.now(),
                tenant,
                one_time_tokens::Purpose::FederationLink,
                &secrets::digest(&token),
            )?
            .ok_or(AuthnError::InvalidLink)?;
            let (connection, _) = link_target(conn, tenant, &found.payload, &binding)?;
            let user = users::get(conn, tenant, found.user_id)?;
            Ok(LinkOffer {
                partner: connection.display_name,
                account: user.data.user_name,
            })
        })
        .await
    }

    /// Links the partner's identity a mailed link names to the account it was
    /// mailed for, once its owner confirms (a CSRF-protected form of this site):
    /// the link proves the address, the partner's sign-in the identity. Audited;
    /// the partner's display name is returned for the page.
    pub async fn confirm_link(
        &self,
        tenant: TenantId,
        token: String,
        binding: String,
        client: ClientInfo,
    ) -> Result<String, AuthnError> {
        let (partner, user) = self
            .blocking(move |inner, conn| {
                let now = inner.now();
                db::transaction_with(conn, |conn| {
                    let consumed = one_time_tokens::consume(
                        conn,
                        now,
                        tenant,
                        one_time_tokens::Purpose::FederationLink,
                        &secrets::digest(&token),
                    )?
                    .ok_or(AuthnError::InvalidLink)?;
                    let (connection, subject) =
                        link_target(conn, tenant, &consumed.payload, &binding)?;
                    let user = users::get(conn, tenant, consumed.user_id)?;
                    // What held when the link was mailed must hold now: the address
                    // still the account's verified sign-in address, the connection
                    // still trusted, neither identity linked meanwhile.
                    let mailed = consumed.payload["email"].as_str().unwrap_or_default();
                    let still_holds = user.primary_email().is_some_and(|primary| {
                        primary.verified && primary.value.eq_ignore_ascii_case(mailed)
                    });
                    let linked_here = federated_identities::of_user(conn, tenant, user.id)?
                        .iter()
                        .any(|identity| identity.connection_id == connection.id);
                    if !connection.enabled
                        || !connection.trust_verified_email
                        || !user.data.active
                        || !still_holds
                        || linked_here
                        || federated_identities::find(conn, tenant, connection.id, &subject)?
                            .is_some()
                    {
                        return Err(AuthnError::InvalidLink);
                    }
                    federated_identities::link(
                        conn,
                        now,
                        tenant,
                        connection.id,
                        &subject,
                        user.id,
                    )?;
                    inner.audit(
                        conn,
                        tenant,
                        format!("user:{}", user.id),
                        "federation.linked",
                        Some(format!("user:{}", user.id)),
                        Outcome::Success,
                        &client,
                        json!({ "connection": connection.slug, "subject": subject, "proof": "email" }),
                    )?;
                    Ok::<_, AuthnError>((connection.display_name, user.id))
                })
            })
            .await?;
        self.inner
            .announce(DomainEvent::UserChanged { tenant, user });
        Ok(partner)
    }

    /// Removes one of the session user's linked identities: a sensitive action
    /// (a recent second factor where the account has one), and never the last way
    /// the user can sign in.
    pub async fn unlink_identity(
        &self,
        session: Session,
        identity: FederatedIdentityId,
        client: ClientInfo,
    ) -> Result<(), AuthnError> {
        let tenant = session.tenant_id;
        let user = session.user_id;
        self.blocking(move |inner, conn| {
            db::transaction_with(conn, |conn| {
                inner.ensure_stepped_up(conn, &session)?;
                let identities = federated_identities::of_user(conn, tenant, user)?;
                let has_credential = credentials::list_for_user(conn, tenant, user, None)?
                    .iter()
                    .any(|c| {
                        matches!(
                            c.kind,
                            credentials::CredentialKind::Password
                                | credentials::CredentialKind::Webauthn
                        )
                    });
                if !has_credential && identities.len() <= 1 {
                    return Err(AuthnError::LastSignInMethod);
                }
                let removed = federated_identities::unlink(conn, tenant, user, identity)?.ok_or(
                    StoreError::NotFound {
                        entity: "federated identity",
                    },
                )?;
                inner.audit(
                    conn,
                    tenant,
                    format!("user:{user}"),
                    "federation.unlinked",
                    Some(format!("user:{user}")),
                    Outcome::Success,
                    &client,
                    json!({ "connection": removed.connection_id.to_string() }),
                )?;
                Ok(())
            })
        })
        .await?;
        self.inner
            .announce(DomainEvent::UserChanged { tenant, user });
        Ok(())
    }
}

fn buttons(
    conn: &mut AnyConnection,
    tenant: TenantId,
) -> Result<Vec<ConnectionButton>, AuthnError> {
    Ok(connections::list(conn, tenant)?
        .into_iter()
        .filter(|c| c.enabled)
        .map(|c| ConnectionButton {
            slug: c.slug,
            display_name: c.display_name,
            logo_url: c.logo_url,
        })
        .collect())
}

/// The user's identities with their connections' names.
pub fn linked(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
) -> Result<Vec<LinkedIdentity>, AuthnError> {
    let identities = federated_identities::of_user(conn, tenant, user)?;
    if identities.is_empty() {
        return Ok(Vec::new());
    }
    let all = connections::list(conn, tenant)?;
    Ok(identities
        .into_iter()
        .filter_map(|identity| {
            let connection = all.iter().find(|c| c.id == identity.connection_id)?;
            Some(LinkedIdentity {
                id: identity.id,
                connection: connection.slug.clone(),
                display_name: connection.display_name.clone(),
                subject: identity.subject,
                created_at: identity.created_at,
                last_sign_in_at: identity.last_sign_in_at,
            })
        })
        .collect())
}

/// The domain of an email address, lower-case ASCII (IDNA), if it has one.
pub fn email_domain(email: &str) -> Option<String> {
    let (_, domain) = email.trim().rsplit_once('@')?;
    normalise_domain(domain)
}

/// A domain as routing stores it: IDNA ASCII, lower case, no trailing dot.
pub fn normalise_domain(domain: &str) -> Option<String> {
    let domain = domain.trim().trim_end_matches('.');
    if domain.is_empty() || !domain.contains('.') {
        return None;
    }
    let host = url::Host::parse(domain).ok()?;
    match host {
        url::Host::Domain(ascii) => Some(ascii.to_ascii_lowercase()),
        _ => None,
    }
}

/// For a step-up, the partner's values (OIDC `acr`, SAML AuthnContextClassRef)
/// that stand for at least the wanted level.
fn step_up_values(purpose: Purpose, levels: &BTreeMap<String, i32>) -> Option<Vec<String>> {
    let Purpose::StepUp { aal, .. } = purpose else {
        return None;
    };
    Some(
        levels
            .iter()
            .filter(|(_, level)| **level >= aal)
            .map(|(value, _)| value.clone())
            .collect(),
    )
}

/// Whether the partner can be asked for `aal` at all.
fn can_step_up(levels: &BTreeMap<String, i32>, aal: i32) -> bool {
    levels.values().any(|level| *level >= aal)
}

fn purpose_row(purpose: Purpose) -> (String, Option<UserId>) {
    match purpose {
        Purpose::SignIn => (PURPOSE_SIGN_IN.into(), None),
        Purpose::Link { user } => (PURPOSE_LINK.into(), Some(user)),
        Purpose::StepUp { user, aal } => (format!("{PURPOSE_STEP_UP}{aal}"), Some(user)),
    }
}

fn purpose_of(taken: &requests::TakenRequest) -> Purpose {
    let step_up = taken
        .purpose
        .strip_prefix(PURPOSE_STEP_UP)
        .and_then(|aal| aal.parse().ok());
    match (taken.purpose.as_str(), taken.user_id, step_up) {
        (PURPOSE_LINK, Some(user), _) => Purpose::Link { user },
        (_, Some(user), Some(aal)) => Purpose::StepUp { user, aal },
        _ => Purpose::SignIn,
    }
}

/// The tenant's enabled connection `slug`, of `kind` where one is named.
fn usable_connection(
    conn: &mut AnyConnection,
    tenant: TenantId,
    slug: &str,
    kind: Option<&str>,
) -> Result<Connection, AuthnError> {
    match connections::find_by_slug(conn, tenant, slug)? {
        Some(connection)
            if connection.enabled && kind.is_none_or(|kind| connection.kind == kind) =>
        {
            Ok(connection)
        }
        _ => Err(Refusal::error(
            "connection_unknown",
            format!("no enabled connection `{slug}`"),
        )),
    }
}

impl Inner {
    /// The transaction that ends a verified federated sign-in; see the module
    /// documentation. Returns the user whose data changed, for the event.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        connection: &Connection,
        purpose: Purpose,
        verified: &Verified,
        profile: &MappedProfile,
        previous_secret: Option<String>,
        binding: Option<&str>,
        client: &ClientInfo,
        return_to: Option<String>,
    ) -> Result<(Finished, Option<Changed>), AuthnError> {
        let now = self.now();
        let existing = federated_identities::find(conn, tenant, connection.id, &verified.subject)?;
        if let Purpose::Link { user } = purpose {
            match existing {
                Some(identity) if identity.user_id == user => {}
                Some(_) => {
                    return Err(Refusal::error(
                        "identity_taken",
                        "the partner identity is linked to another account",
                    ));
                }
                None => {
                    federated_identities::link(
                        conn,
                        now,
                        tenant,
                        connection.id,
                        &verified.subject,
                        user,
                    )
                    .map_err(|e| match e {
                        StoreError::Conflict { .. } => Refusal::error(
                            "already_linked",
                            "the account has another identity at this connection",
                        ),
                        other => other.into(),
                    })?;
                    self.audit(
                        conn,
                        tenant,
                        format!("user:{user}"),
                        "federation.linked",
                        Some(format!("user:{user}")),
                        Outcome::Success,
                        client,
                        json!({ "connection": connection.slug }),
                    )?;
                }
            }
            let user = users::get(conn, tenant, user)?;
            let applied = self.apply_profile(conn, tenant, connection, &user, profile, client)?;
            return Ok((
                Finished::Linked { return_to },
                Some(Changed {
                    user: user.id,
                    grants_revoked: applied.grants_revoked,
                }),
            ));
        }
        if let Purpose::StepUp { user, aal } = purpose {
            // The same person, more strongly: never another account, never less.
            if existing
                .as_ref()
                .is_none_or(|identity| identity.user_id != user)
            {
                return Err(Refusal::error(
                    "step_up_subject",
                    "the partner answered for someone other than the signed-in user",
                ));
            }
            if verified.aal < aal {
                return Err(Refusal::error(
                    "step_up_insufficient",
                    format!(
                        "the partner's authentication counts as level {}, {aal} is needed",
                        verified.aal
                    ),
                ));
            }
        }
        let (user, created) = match existing {
            Some(identity) => {
                federated_identities::touch(conn, now, tenant, identity.id)?;
                (users::get(conn, tenant, identity.user_id)?, false)
            }
            None => {
                let no_account = || {
                    let connection = connection.display_name.clone();
                    Ok((Finished::NoAccount { connection }, None))
                };
                let Some(email) = profile.email.clone() else {
                    if !connection.jit_provisioning {
                        return no_account();
                    }
                    return Err(Refusal::error(
                        "mapping",
                        "a new account needs an email: no rule maps one",
                    ));
                };
                if local_account_holds(conn, tenant, &email)? {
                    if let Some(offer) = self.offer_link_by_mail(
                        conn, tenant, connection, verified, &email, binding, client,
                    )? {
                        return Ok((offer, None));
                    }
                    self.audit(
                        conn,
                        tenant,
                        "anonymous".into(),
                        "federation.link_required",
                        Some(format!("connection:{}", connection.slug)),
                        Outcome::Denied,
                        client,
                        json!({ "identifier": email }),
                    )?;
                    return Ok((
                        Finished::AccountExists {
                            connection: connection.display_name.clone(),
                        },
                        None,
                    ));
                }
                if !connection.jit_provisioning {
                    return no_account();
                }
                if !crate::registration::valid_new_email(&email) {
                    return Err(Refusal::error(
                        "upstream_invalid",
                        "the partner's email is not a usable address",
                    ));
                }
                let verified_email = connection.trust_verified_email
                    && verified
                        .claims
                        .get("email_verified")
                        .iter()
                        .any(|v| v == "true");
                let data = crate::registration::new_user_data(
                    &email,
                    profile.given_name.clone(),
                    profile.family_name.clone(),
                    verified_email,
                );
                let user = users::create(conn, now, tenant, data).map_err(|e| match e {
                    StoreError::Conflict { .. } => Refusal::error(
                        "account_conflict",
                        "the partner's email or a look-alike of it is taken",
                    ),
                    other => other.into(),
                })?;
                federated_identities::link(
                    conn,
                    now,
                    tenant,
                    connection.id,
                    &verified.subject,
                    user.id,
                )?;
                self.audit(
                    conn,
                    tenant,
                    format!("user:{}", user.id),
                    "user.created",
                    Some(format!("user:{}", user.id)),
                    Outcome::Success,
                    client,
                    json!({ "source": "federation", "connection": connection.slug, "verified": verified_email }),
                )?;
                self.audit(
                    conn,
                    tenant,
                    format!("user:{}", user.id),
                    "federation.linked",
                    Some(format!("user:{}", user.id)),
                    Outcome::Success,
                    client,
                    json!({ "connection": connection.slug, "just_in_time": true }),
                )?;
                (user, true)
            }
        };
        if !user.data.active {
            return Err(Refusal::error(
                "account_inactive",
                "the linked account is disabled",
            ));
        }
        let applied = self.apply_profile(conn, tenant, connection, &user, profile, client)?;
        let changed = applied.changed || created;
        let method = AuthMethod {
            aal: Some(verified.aal),
            idp: Some(connection.slug.clone()),
            ..AuthMethod::new("fed", now)
        };
        let signed_in =
            self.open_session(conn, tenant, user.id, vec![method], previous_secret, client)?;
        federated_sessions::remember(
            conn,
            &self.cipher,
            now,
            tenant,
            signed_in.session.id,
            connection.id,
            federated_sessions::Upstream {
                document: &verified.upstream_session,
                key: verified.upstream_key.as_deref(),
            },
        )?;
        Ok((
            Finished::SignedIn {
                signed_in: Box::new(signed_in),
                return_to,
            },
            changed.then_some(Changed {
                user: user.id,
                grants_revoked: applied.grants_revoked,
            }),
        ))
    }

    /// The fresh email verification that may link a partner's identity to the
    /// local account holding the same address: only where the tenant trusts this
    /// connection's verified emails, the partner says the address is verified, and
    /// the account is active and holds that address verified as its sign-in name
    /// (never a look-alike). Links nothing itself: the mailed link does, opened in
    /// the browser that signed in at the partner, once the person confirms. `None`
    /// where the conditions do not hold.
    #[allow(clippy::too_many_arguments)]
    fn offer_link_by_mail(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        connection: &Connection,
        verified: &Verified,
        email: &str,
        binding: Option<&str>,
        client: &ClientInfo,
    ) -> Result<Option<Finished>, AuthnError> {
        let partner_verified = verified
            .claims
            .get("email_verified")
            .iter()
            .any(|v| v == "true");
        let Some(binding) = binding else {
            return Ok(None);
        };
        if !connection.trust_verified_email || !partner_verified {
            return Ok(None);
        }
        let Some(user) = users::find_by_user_name(conn, tenant, email)? else {
            return Ok(None);
        };
        let holds_verified = user
            .primary_email()
            .is_some_and(|primary| primary.verified && primary.value.eq_ignore_ascii_case(email));
        // An account with an identity at this connection already: one per account.
        let linked_here = federated_identities::of_user(conn, tenant, user.id)?
            .iter()
            .any(|identity| identity.connection_id == connection.id);
        if !user.data.active || !holds_verified || linked_here {
            return Ok(None);
        }
        let now = self.now();
        // One link waits at a time: a new one replaces the last (repeated partner
        // sign-ins do not pile up live links in the owner's mailbox).
        one_time_tokens::revoke_for_user(
            conn,
            now,
            tenant,
            user.id,
            one_time_tokens::Purpose::FederationLink,
        )?;
        let (token, token_hash) = secrets::generate();
        one_time_tokens::issue(
            conn,
            now,
            tenant,
            user.id,
            one_time_tokens::Purpose::FederationLink,
            &token_hash,
            chrono::Duration::minutes(LINK_MAIL_MINUTES),
            &json!({
                "connection": connection.id.to_string(),
                "subject": verified.subject,
                // Only the browser that signed in at the partner can use the link:
                // whoever controls the partner identity cannot have the account's
                // owner click it into their account.
                "binding": binding,
                "email": email,
            }),
        )?;
        self.audit(
            conn,
            tenant,
            format!("connection:{}", connection.slug),
            "federation.link_mailed",
            Some(format!("user:{}", user.id)),
            Outcome::Success,
            client,
            json!({ "connection": connection.slug, "subject": verified.subject }),
        )?;
        let address = user
            .primary_email()
            .map(|primary| primary.value.clone())
            .unwrap_or_else(|| email.to_owned());
        Ok(Some(Finished::LinkMailSent {
            connection: connection.display_name.clone(),
            mail: PendingLinkMail {
                to: address,
                locale: client.locale.clone(),
                partner: connection.display_name.clone(),
                token,
            },
        }))
    }

    /// Applies what the mapping says to the user: names and custom attributes
    /// (never the email: it is set when the account is made), and the group
    /// memberships and roles this connection's rules give. A role the rules no
    /// longer give is taken back, audited, and the grants whose tokens carried roles
    /// are revoked, as when an operator removes one.
    fn apply_profile(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        connection: &Connection,
        user: &User,
        profile: &MappedProfile,
        client: &ClientInfo,
    ) -> Result<Applied, AuthnError> {
        let now = self.now();
        let mut data = user.data.clone();
        if let Some(given) = &profile.given_name {
            data.name.given_name = Some(given.clone());
        }
        if let Some(family) = &profile.family_name {
            data.name.family_name = Some(family.clone());
        }
        if let Some(display) = &profile.display_name {
            data.display_name = Some(display.clone());
        }
        if !profile.custom.is_empty() {
            let extension = tenants::get(conn, tenant)?
                .typed_settings()
                .user_extension
                .ok_or_else(|| {
                    Refusal::error(
                        "mapping",
                        "custom attributes are mapped, but the tenant defines no user extension",
                    )
                })?;
            let mut values = data
                .custom_attributes
                .get(&extension.id)
                .and_then(|v| v.as_object().cloned())
                .unwrap_or_default();
            for (name, mapped) in &profile.custom {
                let attribute = extension.attribute(name).ok_or_else(|| {
                    Refusal::error(
                        "mapping",
                        format!("custom:{name} is not an attribute of the tenant's user extension"),
                    )
                })?;
                let value = if attribute.multi_valued {
                    json!(mapped)
                } else if mapped.len() == 1 {
                    json!(mapped[0])
                } else {
                    return Err(Refusal::error(
                        "mapping",
                        format!(
                            "custom:{name} is single-valued, {} values mapped",
                            mapped.len()
                        ),
                    ));
                };
                values.insert(attribute.name.clone(), value);
            }
            data.custom_attributes
                .insert(extension.id.clone(), serde_json::Value::Object(values));
        }
        let mut changed = data != user.data;
        if changed {
            users::update(conn, now, tenant, user.id, user.version, data)?;
        }
        let wanted: Vec<GroupId> = existing("group", &profile.groups, |name| {
            Ok(groups::find_by_display_name(conn, tenant, name)?.map(|group| group.id))
        })?;
        let source = format!("connection:{}", connection.id);
        changed |= groups::reconcile_sourced(conn, now, tenant, user.id, &source, &wanted)?;
        let wanted_roles: Vec<RoleId> = existing("role", &profile.roles, |name| {
            Ok(roles::find_by_name(conn, tenant, name)?.map(|role| role.id))
        })?;
        let reconciled =
            roles::reconcile_sourced(conn, now, tenant, user.id, &source, &wanted_roles)?;
        let grants_revoked = if reconciled.removed.is_empty() {
            Vec::new()
        } else {
            let carrying = crate::lifecycle::scopes_releasing(
                &tenants::get(conn, tenant)?.typed_settings(),
                crate::lifecycle::ROLES_CLAIM,
            );
            grants::revoke_for_user_with_scopes(
                conn,
                now,
                tenant,
                user.id,
                &carrying,
                "role_removed",
            )?
        };
        for (action, ids) in [
            ("user.role_assigned", &reconciled.added),
            ("user.role_removed", &reconciled.removed),
        ] {
            for role in ids {
                let role = roles::get(conn, tenant, *role)?;
                let mut details = json!({ "role": role.name, "connection": connection.slug });
                if action == "user.role_removed" {
                    details["grants_revoked"] = json!(grants_revoked);
                }
                self.audit(
                    conn,
                    tenant,
                    source.clone(),
                    action,
                    Some(format!("user:{}", user.id)),
                    Outcome::Success,
                    client,
                    details,
                )?;
            }
        }
        changed |= !reconciled.added.is_empty() || !reconciled.removed.is_empty();
        Ok(Applied {
            changed,
            grants_revoked,
        })
    }
}

/// The connection and partner subject a federation-link token names.
/// In another browser than the one that signed in at the partner, the link is
/// [`AuthnError::InvalidLink`] (the page says where to open it).
fn link_target(
    conn: &mut AnyConnection,
    tenant: TenantId,
    payload: &serde_json::Value,
    binding: &str,
) -> Result<(Connection, String), AuthnError> {
    let corrupt = || AuthnError::Internal("a federation link token without its target".into());
    let bound = payload["binding"].as_str().ok_or_else(corrupt)?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        bound.as_bytes(),
        secrets::digest(binding).as_bytes(),
    )) {
        return Err(AuthnError::InvalidLink);
    }
    let connection: ConnectionId = payload["connection"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .ok_or_else(corrupt)?;
    let subject = payload["subject"].as_str().ok_or_else(corrupt)?.to_owned();
    let connection = match connections::get(conn, tenant, connection) {
        Ok(connection) => connection,
        // The connection was removed since: the link links nothing.
        Err(StoreError::NotFound { .. }) => return Err(AuthnError::InvalidLink),
        Err(other) => return Err(other.into()),
    };
    Ok((connection, subject))
}

/// Refused SAML responses an address may post within the window before its posts
/// are turned away unread for the window: far above a person retrying, far below
/// what a flood of crafted XML needs.
const ACS_REFUSALS_BEFORE_LOCK: i32 = 30;
const ACS_REFUSAL_WINDOW_MINUTES: i64 = 10;

fn acs_bucket(address: &str) -> String {
    format!("saml_acs:{address}")
}

/// How long a mailed link to link a partner's identity stays usable.
const LINK_MAIL_MINUTES: i64 = 30;

/// A link mail to send: the address, the language, the partner and the single-use
/// token (never printed).
pub struct PendingLinkMail {
    to: String,
    locale: Option<String>,
    partner: String,
    token: String,
}

impl std::fmt::Debug for PendingLinkMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLinkMail")
            .field("partner", &self.partner)
            .finish_non_exhaustive()
    }
}

/// A link waiting in a mailed token: who asked, through which partner, for which
/// account (shown before the person confirms).
#[derive(Debug, Clone)]
pub struct LinkOffer {
    pub partner: String,
    pub account: String,
}

/// The ids of the groups or roles (`kind`) the mapping names; one the tenant does
/// not have is a mapping error the operator sees, never a silent drop.
fn existing<T>(
    kind: &str,
    names: &std::collections::BTreeSet<String>,
    mut find: impl FnMut(&str) -> Result<Option<T>, StoreError>,
) -> Result<Vec<T>, AuthnError> {
    names
        .iter()
        .map(|name| {
            find(name)?.ok_or_else(|| {
                Refusal::error(
                    "mapping",
                    format!("{kind} `{name}` does not exist in the tenant"),
                )
            })
        })
        .collect()
}

/// What applying a mapped profile changed.
struct Applied {
    changed: bool,
    /// Grants revoked because a role their tokens carried was taken back.
    grants_revoked: Vec<String>,
}

/// A user the settling transaction changed, to announce once it has committed.
struct Changed {
    user: UserId,
    grants_revoked: Vec<String>,
}

/// Whether a local account holds `email` (or a look-alike of it) already.
fn local_account_holds(
    conn: &mut AnyConnection,
    tenant: TenantId,
    email: &str,
) -> Result<bool, AuthnError> {
    Ok(users::find_by_user_name(conn, tenant, email)?.is_some()
        || users::primary_email_look_alike_holder(conn, tenant, email)?.is_some())
}
