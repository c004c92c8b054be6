//! What the admin API answers with: one type per shape, serialised as the answer
//! and described in the OpenAPI document from the same definition.

use chrono::{DateTime, Utc};
use gatehouse_identity_store::clients::Client;
use gatehouse_identity_store::groups::Group;
use gatehouse_identity_store::roles::Role;
use gatehouse_identity_store::sessions::Session;
use gatehouse_identity_store::users::{Email, User};
use gatehouse_token_issuer::backchannel::Delivery;
use serde::Serialize;
use utoipa::ToSchema;

/// A list of `T`.
#[derive(Serialize, ToSchema)]
pub(super) struct Items<T> {
    pub items: Vec<T>,
}

impl<T> Items<T> {
    pub fn of<'a, S>(things: &'a [S], view: impl Fn(&'a S) -> T) -> Items<T> {
        Items {
            items: things.iter().map(view).collect(),
        }
    }
}

impl<S, T> From<Vec<S>> for Items<T>
where
    T: for<'a> From<&'a S>,
{
    fn from(things: Vec<S>) -> Self {
        Items::of(&things, T::from)
    }
}

/// One page of users; `next_cursor`, when present, is the `after` of the next.
#[derive(Serialize, ToSchema)]
pub(super) struct UserPage {
    pub items: Vec<UserView>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct TenantView {
    pub id: String,
    pub slug: String,
    pub display_name: String,
    /// The tenant's issuer identifier, as this request reached it.
    pub issuer: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct EmailView {
    pub value: String,
    pub primary: bool,
    pub verified: bool,
}

impl From<&Email> for EmailView {
    fn from(email: &Email) -> Self {
        EmailView {
            value: email.value.clone(),
            primary: email.primary,
            verified: email.verified,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct UserView {
    pub id: String,
    pub user_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub emails: Vec<EmailView>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    /// False for a disabled account.
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Changes with every write; its `ETag` goes in `If-Match`.
    pub version: i64,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        let data = &user.data;
        UserView {
            id: user.id.to_string(),
            user_name: data.user_name.clone(),
            given_name: data.name.given_name.clone(),
            family_name: data.name.family_name.clone(),
            emails: data.emails.iter().map(EmailView::from).collect(),
            locale: data.locale.clone(),
            timezone: data.timezone.clone(),
            active: data.active,
            created_at: user.created_at,
            updated_at: user.updated_at,
            version: user.version,
        }
    }
}

/// A user just created.
#[derive(Serialize, ToSchema)]
pub(super) struct CreatedUser {
    #[serde(flatten)]
    pub user: UserView,
    /// Whether the invitation to choose a password went out; `null` when none was
    /// asked for.
    pub invitation_sent: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct SessionView {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The authentication assurance level reached (1 or 2).
    pub aal: i32,
    pub authenticated_with: Vec<AuthStep>,
}

/// One authentication step of a session (RFC 8176 method).
#[derive(Serialize, ToSchema)]
pub(super) struct AuthStep {
    pub method: String,
    pub at: DateTime<Utc>,
}

impl From<&Session> for SessionView {
    fn from(session: &Session) -> Self {
        SessionView {
            id: session.id.to_string(),
            created_at: session.created_at,
            last_seen_at: session.last_seen_at,
            ip: session.ip.clone(),
            user_agent: session.user_agent.clone(),
            aal: session.aal,
            authenticated_with: session
                .auth_methods
                .iter()
                .map(|step| AuthStep {
                    method: step.method.clone(),
                    at: step.at,
                })
                .collect(),
        }
    }
}

/// A relying party told of ended sessions (OpenID Connect Back-Channel Logout).
#[derive(Serialize, ToSchema)]
pub(super) struct LogoutDelivery {
    pub client_id: String,
    /// Whether it acknowledged the logout token.
    pub delivered: bool,
}

fn deliveries(deliveries: &[Delivery]) -> Vec<LogoutDelivery> {
    deliveries
        .iter()
        .map(|d| LogoutDelivery {
            client_id: d.client_id.clone(),
            delivered: d.delivered,
        })
        .collect()
}

#[derive(Serialize, ToSchema)]
pub(super) struct DisabledView {
    /// False when the account was already disabled.
    pub was_active: bool,
    pub sessions_ended: usize,
    pub grants_revoked: usize,
    pub backchannel_logout: Vec<LogoutDelivery>,
}

impl From<gatehouse_admin::Disabled> for DisabledView {
    fn from(done: gatehouse_admin::Disabled) -> Self {
        DisabledView {
            was_active: done.was_active,
            sessions_ended: done.sessions_ended,
            grants_revoked: done.grants_revoked,
            backchannel_logout: deliveries(&done.deliveries),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct EnabledView {
    /// False when the account was already active.
    pub was_disabled: bool,
}

impl From<bool> for EnabledView {
    fn from(was_disabled: bool) -> Self {
        EnabledView { was_disabled }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct ResetView {
    pub factors_removed: usize,
    pub sessions_ended: usize,
    pub grants_revoked: usize,
    /// Whether the mail with the link to choose a new password went out.
    pub link_sent: bool,
    pub backchannel_logout: Vec<LogoutDelivery>,
}

impl From<gatehouse_admin::Reset> for ResetView {
    fn from(done: gatehouse_admin::Reset) -> Self {
        ResetView {
            factors_removed: done.factors_removed,
            sessions_ended: done.sessions_ended,
            grants_revoked: done.grants_revoked,
            link_sent: done.link_sent,
            backchannel_logout: deliveries(&done.deliveries),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct SessionsEnded {
    pub sessions_ended: usize,
    pub backchannel_logout: Vec<LogoutDelivery>,
}

impl From<(usize, Vec<Delivery>)> for SessionsEnded {
    fn from((ended, delivered): (usize, Vec<Delivery>)) -> Self {
        SessionsEnded {
            sessions_ended: ended,
            backchannel_logout: deliveries(&delivered),
        }
    }
}

/// Whether an idempotent change changed anything.
#[derive(Serialize, ToSchema)]
pub(super) struct Changed {
    pub changed: bool,
}

impl From<bool> for Changed {
    fn from(changed: bool) -> Self {
        Changed { changed }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct RoleRemovedView {
    /// False when the user did not have the role.
    pub changed: bool,
    /// Grants revoked because their tokens carried the role.
    pub grants_revoked: usize,
    pub backchannel_logout: Vec<LogoutDelivery>,
}

impl From<gatehouse_admin::RoleRemoved> for RoleRemovedView {
    fn from(done: gatehouse_admin::RoleRemoved) -> Self {
        RoleRemovedView {
            changed: done.was_assigned,
            grants_revoked: done.grants_revoked,
            backchannel_logout: deliveries(&done.deliveries),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct RoleView {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
}

impl From<&Role> for RoleView {
    fn from(role: &Role) -> Self {
        RoleView {
            id: role.id.to_string(),
            name: role.name.clone(),
            description: role.description.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct GroupView {
    pub id: String,
    pub display_name: String,
}

impl From<&Group> for GroupView {
    fn from(group: &Group) -> Self {
        GroupView {
            id: group.id.to_string(),
            display_name: group.display_name.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct ClientView {
    pub client_id: String,
    pub name: String,
    /// `confidential` or `public`.
    #[serde(rename = "type")]
    pub client_type: String,
    pub auth_method: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    /// Web origins a browser app may call the token endpoints from.
    pub cors_origins: Vec<String>,
    pub grants: Vec<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub access_token_ttl_secs: i64,
    pub id_token_alg: String,
    pub require_pkce: bool,
    pub require_par: bool,
    pub first_party: bool,
    pub created_at: DateTime<Utc>,
    pub version: i64,
}

impl From<&Client> for ClientView {
    fn from(client: &Client) -> Self {
        let d = &client.data;
        ClientView {
            client_id: d.client_id.clone(),
            name: d.name.clone(),
            client_type: d.client_type.clone(),
            auth_method: d.auth_method.clone(),
            redirect_uris: d.redirect_uris.clone(),
            post_logout_redirect_uris: d.post_logout_redirect_uris.clone(),
            backchannel_logout_uri: d.backchannel_logout_uri.clone(),
            cors_origins: d.allowed_origins.clone(),
            grants: d.grant_types.clone(),
            scopes: d.scopes.clone(),
            audiences: d.audiences.clone(),
            access_token_ttl_secs: d.access_token_ttl_secs,
            id_token_alg: d.id_token_alg.clone(),
            require_pkce: d.require_pkce,
            require_par: d.require_par,
            first_party: d.first_party,
            created_at: client.created_at,
            version: client.version,
        }
    }
}

/// A client just registered; a generated secret is in this answer only.
#[derive(Serialize, ToSchema)]
pub(super) struct CreatedClient {
    #[serde(flatten)]
    pub client: ClientView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// A client's new secret, in this answer only.
#[derive(Serialize, ToSchema)]
pub(super) struct NewSecret {
    pub client_id: String,
    pub client_secret: String,
}

/// One audit event, as `gatehouse_admin::event_view` writes it (the CLI's view
/// too); described here for the contract.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct AuditEvent {
    /// Its place in the tenant's log.
    seq: i64,
    occurred_at: DateTime<Utc>,
    /// `user:<id>`, `client:<client_id>`, `operator:<name>` or `system`.
    actor: String,
    /// What happened (`user.disabled`, `client.secret_rotated`, …).
    action: String,
    target: Option<String>,
    /// `success` or `failure`.
    outcome: String,
    ip: Option<String>,
    /// What changed and why, by action.
    details: serde_json::Value,
}

/// An RFC 9457 problem details object (`application/problem+json`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct Problem {
    /// `urn:gatehouse:problem:{code}`.
    r#type: String,
    title: String,
    status: u16,
    detail: String,
    /// The code of `type`, as earlier answers named it.
    error: String,
    error_description: String,
    /// The member, query parameter or header at fault.
    field: Option<String>,
    /// A refusal by the operator policies (`forbidden`): the action refused.
    action: Option<String>,
    /// A refusal by the operator policies: its reason code, as in the decision log.
    reason: Option<String>,
    /// A refusal a stronger sign-in would lift: the assurance level to step up to.
    acr_values: Option<String>,
}

/// A bearer-token refusal with a body (RFC 6750 §3.1).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct BearerError {
    /// `insufficient_scope`.
    error: String,
    error_description: String,
}

/// A consent in force.
#[derive(Serialize, ToSchema)]
pub(super) struct ConsentView {
    pub client_id: String,
    /// The purpose's slug.
    pub purpose: String,
    /// The purpose version consented to.
    pub version: i32,
    pub granted_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// One event of a user's consent history.
#[derive(Serialize, ToSchema)]
pub(super) struct ConsentEventView {
    pub client_id: String,
    pub purpose: String,
    pub version: i32,
    /// `granted` or `withdrawn`.
    pub kind: String,
    pub occurred_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Where it happened (`page`, `api`, …).
    pub channel: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct UserConsentsView {
    pub current: Vec<ConsentView>,
    pub history: Vec<ConsentEventView>,
}

impl From<gatehouse_admin::UserConsents> for UserConsentsView {
    fn from(consents: gatehouse_admin::UserConsents) -> Self {
        UserConsentsView {
            current: consents
                .current
                .into_iter()
                .map(|c| ConsentView {
                    client_id: c.client_id,
                    purpose: c.purpose,
                    version: c.version,
                    granted_at: c.granted_at,
                    expires_at: c.expires_at,
                })
                .collect(),
            history: consents
                .history
                .into_iter()
                .map(|e| ConsentEventView {
                    client_id: e.client_id,
                    purpose: e.purpose,
                    version: e.version,
                    kind: e.kind.as_str().to_owned(),
                    occurred_at: e.occurred_at,
                    expires_at: e.expires_at,
                    channel: e.channel,
                })
                .collect(),
        }
    }
}
