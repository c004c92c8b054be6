//! The operator's use cases, in one place: tenants (reading), users, groups, roles,
//! clients, keys, consent purposes, policies and the decision log, and reading and
//! checking the audit log. (Themes follow when their validation leaves the server's
//! renderer.) Every action names its acting operator and, where it takes something
//! away, a reason; the feature crates write the change, its revocations and its
//! audit record (the operator as actor) in one transaction and announce it; this
//! layer looks things up by the names operators use, and tells relying parties about
//! what ended (back-channel logout), once, from here.
//!
//! Adapters: the CLI (`gatehouse users|roles …`) today; the admin REST API, SCIM and
//! the console later. No HTTP framework here — an adapter maps [`AdminError`] once.

mod access;
mod audit;
mod client_changes;
mod clients;
mod connections;
mod consents;
mod error;
mod groups;
mod keys;
mod policies;
mod provisioning;
mod purposes;
mod roles;
mod scopes;
mod tenants;
mod users;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_authn::Authn;
use gatehouse_consent::Consents;
use gatehouse_consent::pdp::Pdp;
use gatehouse_core::SharedClock;
use gatehouse_core::events::{DomainEvent, EventBus};
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::audit::{self as audit_log, NewAuditEvent, Outcome};
use gatehouse_identity_store::page::every;
use gatehouse_identity_store::tenants::{self as tenant_store, Tenant};
use gatehouse_identity_store::users::User;
use gatehouse_identity_store::{
    AnyConnection, Page, PageRequest, Pool, StoreResult, users as user_store,
};
use gatehouse_outbound::Outbound;
use gatehouse_token_issuer::IssuerResult;
use gatehouse_token_issuer::backchannel::{BackchannelSender, Delivery};
use gatehouse_token_issuer::logout::BackchannelNotice;
use gatehouse_token_issuer::service::Issuer;

pub use access::{AdminAction, AdminRole};
pub use audit::{AuditQuery, MAX_AUDIT_EVENTS, event_view};
pub use client_changes::ClientChange;
pub use clients::{
    AuthMethod, ClientKind, CreatedClient, GRANTS, MAX_ACCESS_TOKEN_TTL_SECS, NewClient,
};
pub use connections::{ConnectionEdit, ConnectionView, IdpMetadata, NewConnection};
pub use consents::{ConsentWithdrawal, UserConsents};
pub use error::AdminError;
pub use gatehouse_authn::lifecycle::NewAccount;
pub use gatehouse_identity_store::audit::AuditFilter;
pub use provisioning::GroupWithMembers;
pub use purposes::{NewPurpose, PurposeEdit};
pub use roles::RoleRemoved;
pub use scopes::ScopeView;
pub use tenants::{TenantChange, TenantDeleted, TenantView};
pub use users::{Deleted, Disabled, Reset, UserChange};

pub type AdminResult<T> = Result<T, AdminError>;

/// Who is acting: recorded as the actor of every audit record the action writes.
/// An operator at the command line names themselves (whoever can run the binary
/// against the database is trusted); an admin API client is the client its access
/// token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    actor: String,
    /// Acts for the platform (the command line on the server, or a platform
    /// administrator's client): may give the scope `platform`.
    platform: bool,
}

/// The scope that lets a client of the platform's own tenant operate every tenant.
pub const PLATFORM_SCOPE: &str = "platform";

impl Operator {
    /// An operator by the name they give; refused when empty.
    pub fn named(name: &str) -> AdminResult<Operator> {
        let name = required_text(
            "operator",
            name,
            "must not be empty: the audit log records who acted",
        )?;
        Ok(Operator {
            actor: format!("operator:{name}"),
            platform: true,
        })
    }

    /// A tenant's admin API client, authenticated by its access token.
    pub fn api_client(client_id: &str) -> Operator {
        Operator {
            actor: format!("client:{client_id}"),
            platform: false,
        }
    }

    /// A platform administrator's API client (the platform tenant's, with the scope
    /// `platform`).
    pub fn platform_client(client_id: &str) -> Operator {
        Operator {
            platform: true,
            ..Operator::api_client(client_id)
        }
    }

    /// The audit log's actor.
    pub fn actor(&self) -> String {
        self.actor.clone()
    }

    /// Refused unless the operator acts for the platform, when `scopes` gives the
    /// platform's scope: a tenant's administrator must not make a client that
    /// administers every tenant.
    pub(crate) fn may_give(&self, scopes: &[String]) -> AdminResult<()> {
        if !self.platform && scopes.iter().any(|s| s == PLATFORM_SCOPE) {
            return Err(AdminError::Invalid {
                field: "scopes",
                message: format!("`{PLATFORM_SCOPE}` is given only by a platform administrator"),
            });
        }
        Ok(())
    }
}

/// How an action names its user: by primary address (the command line) or by id
/// (the admin API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserKey {
    Email(String),
    Id(UserId),
}

impl From<&str> for UserKey {
    fn from(email: &str) -> Self {
        UserKey::Email(email.to_owned())
    }
}

impl From<&String> for UserKey {
    fn from(email: &String) -> Self {
        UserKey::Email(email.clone())
    }
}

impl From<UserId> for UserKey {
    fn from(id: UserId) -> Self {
        UserKey::Id(id)
    }
}

/// Why an operator acted; required where the action takes something away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    pub fn new(text: &str) -> AdminResult<Reason> {
        let text = required_text(
            "reason",
            text,
            "must not be empty: the audit log records why",
        )?;
        Ok(Reason(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a name left empty is told.
const NOT_EMPTY: &str = "must not be empty";

/// `value` without surrounding white space; `Invalid` for `field` with `message`
/// when nothing is left.
fn required_text<'a>(field: &'static str, value: &'a str, message: &str) -> AdminResult<&'a str> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AdminError::Invalid {
            field,
            message: message.to_owned(),
        });
    }
    Ok(value)
}

/// Where a tenant is served: its issuer URL, which is also the base of the links in
/// its mails. The server knows (host names, `/t/{slug}`); the admin layer asks.
pub trait TenantUrls: Send + Sync {
    fn issuer_for(&self, tenant: TenantId) -> Result<Option<String>, String>;
    /// The slug of the platform's own tenant (served at the root), which is never
    /// disabled: the platform is administered through it.
    fn platform_tenant(&self) -> &str;
    /// The host name of the platform's public URL, which no tenant may claim.
    fn public_host(&self) -> &str;
}

/// What the operator's service is made of; the adapter (the CLI, the server)
/// builds the parts it already has.
pub struct AdminParts {
    pub pool: Pool,
    pub cipher: Cipher,
    pub clock: SharedClock,
    /// Where changes are announced: on PostgreSQL they reach every node.
    pub events: EventBus,
    pub authn: Authn,
    pub issuer: Issuer,
    pub consents: Consents,
    pub pdp: Pdp,
    pub urls: Arc<dyn TenantUrls>,
    /// How back-channel logout reaches relying parties.
    pub outbound: Outbound,
}

impl std::fmt::Debug for AdminParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminParts").finish_non_exhaustive()
    }
}

/// The operator's service. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    pool: Pool,
    cipher: Cipher,
    clock: SharedClock,
    events: EventBus,
    authn: Authn,
    issuer: Issuer,
    consents: Consents,
    pdp: Pdp,
    urls: Arc<dyn TenantUrls>,
    backchannel: BackchannelSender,
    /// Fetches what operators point at (IdP metadata).
    outbound: Outbound,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    pub fn new(parts: AdminParts) -> AdminResult<Admin> {
        let backchannel = BackchannelSender::new(parts.outbound.clone());
        Ok(Admin {
            pool: parts.pool,
            cipher: parts.cipher,
            clock: parts.clock,
            events: parts.events,
            authn: parts.authn,
            issuer: parts.issuer,
            consents: parts.consents,
            pdp: parts.pdp,
            urls: parts.urls,
            backchannel,
            outbound: parts.outbound,
        })
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Writes the audit record of an operator action; call inside the action's
    /// transaction, so the change and its record commit together.
    fn audit(
        &self,
        conn: &mut gatehouse_identity_store::AnyConnection,
        tenant: TenantId,
        actor: String,
        action: &str,
        target: String,
        details: serde_json::Value,
    ) -> AdminResult<()> {
        audit_log::append(
            conn,
            &self.cipher,
            self.now(),
            tenant,
            NewAuditEvent {
                actor,
                action: action.to_owned(),
                target: Some(target),
                outcome: Outcome::Success,
                ip: None,
                details,
            },
        )?;
        Ok(())
    }

    /// Announces a change; a failure to reach other nodes is logged (they pick the
    /// change up on their caches' expiry), never the action's error.
    fn announce(&self, event: DomainEvent) {
        self.events.announce(event);
    }

    /// Runs store work on the blocking pool with a pooled connection.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut gatehouse_identity_store::AnyConnection) -> AdminResult<T>
        + Send
        + 'static,
    ) -> AdminResult<T> {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|e| AdminError::Store(gatehouse_identity_store::StoreError::from(e)))?;
            work(&mut conn)
        })
        .await
        .map_err(|e| AdminError::Unavailable(format!("background task failed: {e}")))?
    }

    /// Runs blocking work of a service that takes its own connections (consent,
    /// the PDP) on the blocking pool, holding none here: holding one while the
    /// service waits for another could exhaust the pool.
    async fn off_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> AdminResult<T> + Send + 'static,
    ) -> AdminResult<T> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AdminError::Unavailable(format!("background task failed: {e}")))?
    }

    /// A store read of the tenant with this slug, on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        tenant: &str,
        read: impl FnOnce(&mut AnyConnection, TenantId) -> StoreResult<T> + Send + 'static,
    ) -> AdminResult<T> {
        let tenant = self.tenant(tenant).await?.id;
        self.blocking(move |conn| Ok(read(conn, tenant)?)).await
    }

    /// Every item of a paged `list` of the tenant, fetched a hundred at a time.
    async fn read_all<T: Send + 'static>(
        &self,
        tenant: &str,
        list: fn(&mut AnyConnection, TenantId, &PageRequest) -> StoreResult<Page<T>>,
    ) -> AdminResult<Vec<T>> {
        self.read(tenant, move |conn, tenant| {
            every(100, |request| list(conn, tenant, request))
        })
        .await
    }

    /// The `kind` (client, group, role) of the tenant that `find` finds by `name`;
    /// `NotFound` naming both when there is none.
    async fn named<T: Send + 'static>(
        &self,
        kind: &'static str,
        tenant: TenantId,
        name: &str,
        find: fn(&mut AnyConnection, TenantId, &str) -> StoreResult<Option<T>>,
    ) -> AdminResult<T> {
        let name = name.to_owned();
        self.blocking(move |conn| {
            find(conn, tenant, &name)?
                .ok_or_else(|| AdminError::NotFound(format!("no {kind} `{name}`")))
        })
        .await
    }

    /// The tenant with this slug.
    pub async fn tenant(&self, slug: &str) -> AdminResult<Tenant> {
        let slug = slug.to_owned();
        self.blocking(move |conn| {
            tenant_store::find_by_slug(conn, &slug)?.ok_or_else(|| {
                AdminError::NotFound(format!(
                    "no tenant `{slug}` (a new installation gets its default tenant on \
                     the first `gatehouse serve`)"
                ))
            })
        })
        .await
    }

    /// The tenant and the user `who` names.
    pub async fn user(&self, slug: &str, who: impl Into<UserKey>) -> AdminResult<(Tenant, User)> {
        let tenant = self.tenant(slug).await?;
        let (id, who) = (tenant.id, who.into());
        let user = self
            .blocking(move |conn| match &who {
                UserKey::Email(email) => user_store::find_by_primary_email(conn, id, email)?
                    .ok_or_else(|| {
                        AdminError::NotFound(format!("no user with the address `{email}`"))
                    }),
                UserKey::Id(user) => match user_store::get(conn, id, *user) {
                    Ok(found) => Ok(found),
                    Err(gatehouse_identity_store::StoreError::NotFound { .. }) => {
                        Err(AdminError::NotFound(format!("no user `{user}`")))
                    }
                    Err(other) => Err(other.into()),
                },
            })
            .await?;
        Ok((tenant, user))
    }

    fn issuer_url(&self, tenant: TenantId) -> AdminResult<String> {
        self.urls
            .issuer_for(tenant)
            .map_err(AdminError::Unavailable)?
            .ok_or_else(|| AdminError::NotFound("the tenant is gone".into()))
    }

    /// Back-channel logout for the user's sessions an action ended.
    async fn tell_sessions_ended(
        &self,
        tenant: TenantId,
        user: gatehouse_core::ids::UserId,
        sessions: Vec<gatehouse_core::ids::SessionId>,
    ) -> Vec<Delivery> {
        self.tell_relying_parties(tenant, user, move |issuer, tenant, url, user| {
            issuer.sessions_ended(tenant, url, user, &sessions)
        })
        .await
    }

    /// Back-channel logout (OIDC Back-Channel Logout 1.0) for what an action ended.
    /// Running servers deliver only for events they published themselves (each
    /// relying party hears once, from the node where it happened), and on SQLite
    /// they hear nothing from another process: so the acting process is that node.
    /// `notices` makes the logout tokens. Failures are reported in the result, not
    /// as errors: the grants are revoked already.
    async fn tell_relying_parties(
        &self,
        tenant: TenantId,
        user: gatehouse_core::ids::UserId,
        notices: impl FnOnce(
            &Issuer,
            TenantId,
            &str,
            gatehouse_core::ids::UserId,
        ) -> IssuerResult<Vec<BackchannelNotice>>
        + Send
        + 'static,
    ) -> Vec<Delivery> {
        let url = match self.issuer_url(tenant) {
            Ok(url) => url,
            Err(error) => {
                tracing::warn!(%error, "back-channel logout not sent");
                return Vec::new();
            }
        };
        let issuer = self.issuer.clone();
        let made = tokio::task::spawn_blocking(move || notices(&issuer, tenant, &url, user)).await;
        match made {
            Ok(Ok(notices)) => self.backchannel.deliver_all(&notices).await,
            Ok(Err(error)) => {
                tracing::warn!(%error, "back-channel logout notices not made");
                Vec::new()
            }
            Err(error) => {
                tracing::warn!(%error, "back-channel logout notices not made");
                Vec::new()
            }
        }
    }
}
