//! The consent service: purposes, grants and withdrawals, and what a withdrawal
//! takes with it. Methods are synchronous (they hold a pooled connection); the
//! server runs them on the blocking pool, like the token service.
//!
//! A withdrawal is enforced, not just recorded: in the same transaction as the
//! withdrawal row, the user's OAuth grants to that client that hold any scope of the
//! purpose are revoked — so their refresh tokens fail and introspection of their
//! access tokens answers inactive at once, on every node, because both check the
//! grant in the database — and the scopes are forgotten by the consent page, so the
//! next authorization asks again. `ConsentWithdrawn` is published after the commit
//! for caches (the PDP's); correctness never depends on it arriving.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_core::SharedClock;
use gatehouse_core::events::{DomainEvent, EventBus};
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::audit::{self, NewAuditEvent, Outcome};
use gatehouse_identity_store::consent_records::{
    self, ConsentEvent, ConsentEventKind, CurrentConsent, NewGrant, NewWithdrawal,
};
use gatehouse_identity_store::purposes::{self, LegalBasis, Purpose, PurposeChange, PurposeData};
use gatehouse_identity_store::{
    AnyConnection, Pool, StoreError, StoreResult, clients, consents, db, grants,
};
use serde::Serialize;
use serde_json::json;

use crate::ConsentError;

/// Where a consent was given or withdrawn; recorded with every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The consent page of an OAuth authorization.
    OauthConsentPage,
    /// The user's own account pages.
    AccountPage,
    /// A client calling the API on the user's behalf.
    Api,
    /// An administrator (a support request, a legal order).
    Admin,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::OauthConsentPage => "oauth_consent_page",
            Channel::AccountPage => "account_page",
            Channel::Api => "api",
            Channel::Admin => "admin",
        }
    }

    /// Who the audit log names as having acted.
    fn actor(self, user: UserId, client_id: &str) -> String {
        match self {
            Channel::OauthConsentPage | Channel::AccountPage => format!("user:{user}"),
            Channel::Api => format!("client:{client_id}"),
            Channel::Admin => "admin".to_owned(),
        }
    }
}

/// Who withdraws, as the audit log records it: through which channel, the actor,
/// and an operator's reason.
struct Acting<'a> {
    channel: Channel,
    actor: String,
    reason: Option<&'a str>,
}

impl Acting<'_> {
    fn by_channel(channel: Channel, user: UserId, client_id: &str) -> Acting<'static> {
        Acting {
            channel,
            actor: channel.actor(user, client_id),
            reason: None,
        }
    }
}

/// What one withdrawal did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Withdrawal {
    pub client_id: String,
    pub purpose: String,
    /// The withdrawal row; `None` when no grant was left to withdraw (the grants
    /// covering the purpose are revoked all the same).
    pub event: Option<ConsentEvent>,
    /// The OAuth grants revoked with it.
    pub grants_revoked: Vec<String>,
}

/// What revoking an app did: a withdrawal per purpose it held, every grant revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppRevocation {
    pub client_id: String,
    pub withdrawn: Vec<ConsentEvent>,
    pub grants_revoked: Vec<String>,
}

/// One history entry of a receipt, with the purpose text the user saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReceiptEntry {
    pub id: String,
    pub event: ConsentEventKind,
    pub at: DateTime<Utc>,
    pub client_id: String,
    pub purpose: String,
    pub purpose_version: i32,
    pub purpose_name: Option<String>,
    pub purpose_description: Option<String>,
    pub scopes: Vec<String>,
    pub legal_basis: Option<LegalBasis>,
    pub expires_at: Option<DateTime<Utc>>,
    pub channel: String,
}

/// A user's consent receipt: everything they agreed to and withdrew, and what is in
/// force now. Serialised as the JSON the user downloads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Receipt {
    pub tenant: TenantId,
    pub user: UserId,
    pub issued_at: DateTime<Utc>,
    pub in_force: Vec<CurrentConsent>,
    pub history: Vec<ReceiptEntry>,
}

/// A purpose in force for an app, with the text of the version accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurposeInForce {
    pub slug: String,
    pub version: i32,
    pub name: String,
    pub description: String,
    pub scopes: Vec<String>,
    pub legal_basis: LegalBasis,
    pub granted_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The purpose has a newer version than the one accepted.
    pub outdated: bool,
}

/// An app (client) as the user's "apps and consents" page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct App {
    pub client_id: String,
    /// The client's registered name; its id if it no longer exists.
    pub name: String,
    pub purposes: Vec<PurposeInForce>,
    /// The scopes the user allowed on the consent page.
    pub scopes: Vec<String>,
    /// Whether the app holds a live grant (it can get tokens without asking).
    pub has_access: bool,
}

/// A purpose the consent page asks about.
#[derive(Debug, Clone, Serialize)]
pub struct PurposeToApprove {
    pub purpose: Purpose,
    /// Set when the user accepted an older version for this client.
    pub change: Option<PurposeChanges>,
}

/// How the latest version of a purpose differs from the one the user accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurposeChanges {
    pub accepted_version: i32,
    pub name_before: Option<String>,
    pub description_before: Option<String>,
    pub scopes_added: Vec<String>,
    pub scopes_removed: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Consents {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    /// Keys the audit chain (its key is sealed under the master key).
    cipher: Cipher,
    clock: SharedClock,
    events: EventBus,
}

type Result<T> = std::result::Result<T, ConsentError>;

impl Consents {
    pub fn new(pool: Pool, cipher: Cipher, clock: SharedClock, events: EventBus) -> Consents {
        Consents {
            inner: Arc::new(Inner {
                pool,
                cipher,
                clock,
                events,
            }),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    fn conn(&self) -> Result<gatehouse_identity_store::PooledConnection> {
        Ok(self.inner.pool.get().map_err(StoreError::from)?)
    }

    /// Defines a new purpose (version 1). `actor` is who defines it, for the audit
    /// log ("admin:<id>", "system").
    pub fn define_purpose(
        &self,
        tenant: TenantId,
        actor: &str,
        data: PurposeData,
    ) -> Result<Purpose> {
        self.audited_purpose_change(tenant, actor, "purpose.created", |conn, now| {
            purposes::create(conn, now, tenant, data)
        })
    }

    /// Changes a purpose's wording or scopes: a new version. Consents to the old
    /// version stay in force (they say which version they accepted); whether a use
    /// needs the latest is the policy's decision.
    pub fn update_purpose(
        &self,
        tenant: TenantId,
        actor: &str,
        slug: &str,
        expected_version: i32,
        change: PurposeChange,
    ) -> Result<Purpose> {
        self.audited_purpose_change(tenant, actor, "purpose.versioned", |conn, now| {
            purposes::new_version(conn, now, tenant, slug, expected_version, change)
        })
    }

    /// Applies `change` to a purpose and audits it as `action`, in one transaction.
    fn audited_purpose_change(
        &self,
        tenant: TenantId,
        actor: &str,
        action: &str,
        change: impl FnOnce(&mut AnyConnection, DateTime<Utc>) -> StoreResult<Purpose>,
    ) -> Result<Purpose> {
        let now = self.now();
        let mut conn = self.conn()?;
        db::transaction_with(&mut conn, |conn| {
            let purpose = change(conn, now)?;
            audit_purpose(
                conn,
                &self.inner.cipher,
                now,
                tenant,
                actor,
                action,
                &purpose,
            )?;
            Ok(purpose)
        })
    }

    /// The latest version of every purpose of the tenant.
    pub fn purposes(&self, tenant: TenantId) -> Result<Vec<Purpose>> {
        Ok(purposes::list(&mut *self.conn()?, tenant)?)
    }

    pub fn purpose(&self, tenant: TenantId, slug: &str) -> Result<Purpose> {
        purposes::get(&mut *self.conn()?, tenant, slug)?.ok_or(ConsentError::NotFound("purpose"))
    }

    /// Records that the user accepted `version` of a purpose for a client. The
    /// version must be the latest: a user who saw an older text is asked again
    /// ([`ConsentError::OutdatedVersion`]). An `expires_at` that is not in the
    /// future is refused (`Invalid`): such a consent would never be in force.
    #[allow(clippy::too_many_arguments)]
    pub fn grant(
        &self,
        tenant: TenantId,
        user: UserId,
        client_id: &str,
        purpose: &str,
        version: i32,
        channel: Channel,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<ConsentEvent> {
        let now = self.now();
        if let Some(at) = expires_at
            && at <= now
        {
            return Err(ConsentError::Invalid(format!(
                "expires_at ({}) must be in the future",
                at.to_rfc3339()
            )));
        }
        let mut conn = self.conn()?;
        db::transaction_with(&mut conn, |conn| {
            ensure_latest(&latest_purpose(conn, tenant, purpose)?, version)?;
            if clients::get_by_client_id(conn, tenant, client_id)?.is_none() {
                return Err(ConsentError::NotFound("client"));
            }
            let grant = NewGrant {
                user,
                client_id,
                purpose,
                version,
                expires_at,
                channel: channel.as_str(),
            };
            record_grant(conn, &self.inner.cipher, now, tenant, channel, grant)
        })
        .inspect(|_| self.announce_granted(tenant, user, client_id, purpose))
    }

    /// The purposes (latest versions) based on consent that cover any of `scopes`:
    /// what the OAuth consent page shows and records with an approval.
    pub fn purposes_for_scopes(&self, tenant: TenantId, scopes: &[String]) -> Result<Vec<Purpose>> {
        Ok(purposes::list(&mut *self.conn()?, tenant)?
            .into_iter()
            .filter(|p| p.legal_basis == LegalBasis::Consent)
            .filter(|p| p.scopes.iter().any(|s| scopes.contains(s)))
            .collect())
    }

    /// [`Self::purposes_for_scopes`] for one user and client, each with what changed
    /// since the version the user last accepted for that client (if an older one).
    pub fn purposes_to_approve(
        &self,
        tenant: TenantId,
        user: UserId,
        client_id: &str,
        scopes: &[String],
    ) -> Result<Vec<PurposeToApprove>> {
        let now = self.now();
        let asked = self.purposes_for_scopes(tenant, scopes)?;
        let mut conn = self.conn()?;
        let in_force = consent_records::current_for(&mut conn, now, tenant, user, client_id)?;
        let mut out = Vec::with_capacity(asked.len());
        for purpose in asked {
            let earlier = match in_force.iter().find(|c| c.purpose == purpose.slug) {
                Some(c) if c.version < purpose.version => {
                    purposes::get_version(&mut conn, tenant, &purpose.slug, c.version)?
                }
                _ => None,
            };
            let change = earlier.map(|before| PurposeChanges {
                accepted_version: before.version,
                name_before: (before.name != purpose.name).then(|| before.name.clone()),
                description_before: (before.description != purpose.description)
                    .then(|| before.description.clone()),
                scopes_added: purpose
                    .scopes
                    .iter()
                    .filter(|s| !before.scopes.contains(s))
                    .cloned()
                    .collect(),
                scopes_removed: before
                    .scopes
                    .iter()
                    .filter(|s| !purpose.scopes.contains(s))
                    .cloned()
                    .collect(),
            });
            out.push(PurposeToApprove { purpose, change });
        }
        Ok(out)
    }

    /// Records the purposes an OAuth approval covered, `(slug, version)` as the
    /// consent page showed them, in one transaction: all or none. A purpose that
    /// covers none of `scopes` is refused (`Invalid`), so a tampered form cannot
    /// record consent to something the page did not ask about.
    pub fn grant_for_approval(
        &self,
        tenant: TenantId,
        user: UserId,
        client_id: &str,
        scopes: &[String],
        shown: &[(String, i32)],
    ) -> Result<Vec<ConsentEvent>> {
        let now = self.now();
        let mut conn = self.conn()?;
        db::transaction_with(&mut conn, |conn| {
            let mut events = Vec::new();
            for (slug, version) in shown {
                let current = latest_purpose(conn, tenant, slug)?;
                if !current.scopes.iter().any(|s| scopes.contains(s)) {
                    return Err(ConsentError::Invalid(format!(
                        "purpose {slug} covers none of the approved scopes"
                    )));
                }
                ensure_latest(&current, *version)?;
                let channel = Channel::OauthConsentPage;
                let grant = NewGrant {
                    user,
                    client_id,
                    purpose: slug,
                    version: *version,
                    expires_at: None,
                    channel: channel.as_str(),
                };
                events.push(record_grant(
                    conn,
                    &self.inner.cipher,
                    now,
                    tenant,
                    channel,
                    grant,
                )?);
            }
            Ok(events)
        })
        .inspect(|_| {
            for (slug, _) in shown {
                self.announce_granted(tenant, user, client_id, slug);
            }
        })
    }

    /// Withdraws the user's consent for a purpose given to a client, and revokes at
    /// once the grants of that client holding any scope the purpose covers.
    pub fn withdraw(
        &self,
        tenant: TenantId,
        user: UserId,
        client_id: &str,
        purpose: &str,
        channel: Channel,
    ) -> Result<Withdrawal> {
        let acting = Acting::by_channel(channel, user, client_id);
        self.withdraw_acting(tenant, user, client_id, purpose, &acting)
    }

    /// [`Consents::withdraw`] by an operator (a support request, a legal order):
    /// the audit log names the operator (`actor`) and keeps the reason.
    pub fn withdraw_as_operator(
        &self,
        tenant: TenantId,
        user: UserId,
        client_id: &str,
        purpose: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Withdrawal> {
        let acting = Acting {
            channel: Channel::Admin,
            actor: actor.to_owned(),
            reason: Some(reason),
        };
        self.withdraw_acting(tenant, user, client_id, purpose, &acting)
    }

    fn withdraw_acting(
        &self,
        tenant: TenantId,
        user: UserId,
        client_id: &str,
        purpose: &str,
        acting: &Acting<'_>,
    ) -> Result<Withdrawal> {
        let now = self.now();
        let mut conn = self.conn()?;
        let withdrawal = db::transaction_with(&mut conn, |conn| {
            withdraw_one(
                conn,
                &self.inner.cipher,
                now,
                tenant,
                user,
                client_id,
                purpose,
                acting,
            )
        })?;
        if withdrawal.event.is_some() {
            self.announce(tenant, user, client_id, purpose);
        }
        self.announce_revoked(tenant, user, &withdrawal.grants_revoked);
        Ok(withdrawal)
    }

    /// Revokes an app: withdraws every purpose the user granted the client, revokes
    /// all the user's grants to it and forgets every scope the consent page
    /// remembered, in one transaction.
    pub fn revoke_app(
        &self,
        tenant: TenantId,
        user: UserId,
        client_id: &str,
        channel: Channel,
    ) -> Result<AppRevocation> {
        let acting = Acting::by_channel(channel, user, client_id);
        self.revoke_app_acting(tenant, user, client_id, &acting)
    }

    /// [`Consents::revoke_app`] by an operator: the audit log names the operator
    /// (`actor`) and keeps the reason.
    pub fn revoke_app_as_operator(
        &self,
        tenant: TenantId,
        user: UserId,
        client_id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<AppRevocation> {
        let acting = Acting {
            channel: Channel::Admin,
            actor: actor.to_owned(),
            reason: Some(reason),
        };
        self.revoke_app_acting(tenant, user, client_id, &acting)
    }

    fn revoke_app_acting(
        &self,
        tenant: TenantId,
        user: UserId,
        client_id: &str,
        acting: &Acting<'_>,
    ) -> Result<AppRevocation> {
        let channel = acting.channel;
        let now = self.now();
        let mut conn = self.conn()?;
        let revocation = db::transaction_with(&mut conn, |conn| {
            let mut withdrawn = Vec::new();
            let mut grants_revoked = Vec::new();
            for purpose in granted_purposes(conn, tenant, user, client_id)? {
                let done = withdraw_one(
                    conn,
                    &self.inner.cipher,
                    now,
                    tenant,
                    user,
                    client_id,
                    &purpose,
                    acting,
                )?;
                withdrawn.extend(done.event);
                grants_revoked.extend(done.grants_revoked);
            }
            grants_revoked.extend(grants::revoke_for_user_and_client(
                conn,
                now,
                tenant,
                user,
                client_id,
                None,
                "app_revoked",
            )?);
            consents::forget(conn, tenant, user, client_id, None)?;
            append_audit(
                conn,
                &self.inner.cipher,
                now,
                tenant,
                acting.actor.clone(),
                "consent.app_revoked",
                user,
                json!({
                    "client_id": client_id,
                    "channel": channel.as_str(),
                    "purposes": withdrawn.iter().map(|e| e.purpose.as_str()).collect::<Vec<_>>(),
                    "grants_revoked": grants_revoked.len(),
                    "reason": acting.reason,
                }),
            )?;
            Ok::<_, ConsentError>(AppRevocation {
                client_id: client_id.to_owned(),
                withdrawn,
                grants_revoked,
            })
        })?;
        for event in &revocation.withdrawn {
            self.announce(tenant, user, client_id, &event.purpose);
        }
        self.announce_revoked(tenant, user, &revocation.grants_revoked);
        Ok(revocation)
    }

    /// The user's consents in force now.
    pub fn current(&self, tenant: TenantId, user: UserId) -> Result<Vec<CurrentConsent>> {
        Ok(consent_records::current_for_user(
            &mut *self.conn()?,
            self.now(),
            tenant,
            user,
        )?)
    }

    /// Every app the user has a consent in force for, allowed scopes to or that
    /// holds a live grant, by client id.
    pub fn apps(&self, tenant: TenantId, user: UserId) -> Result<Vec<App>> {
        let now = self.now();
        let mut conn = self.conn()?;
        let conn = &mut *conn;
        let mut apps: BTreeMap<String, App> = BTreeMap::new();
        let current = consent_records::current_for_user(conn, now, tenant, user)?;
        let remembered = consents::for_user(conn, tenant, user)?;
        let live = grants::live_clients_for_user(conn, now, tenant, user)?;
        let ids = current
            .iter()
            .map(|c| &c.client_id)
            .chain(remembered.iter().map(|(id, _)| id))
            .chain(live.iter());
        for id in ids {
            apps.entry(id.clone()).or_insert_with(|| App {
                client_id: id.clone(),
                name: id.clone(),
                purposes: Vec::new(),
                scopes: Vec::new(),
                has_access: false,
            });
        }
        for entry in apps.values_mut() {
            if let Some(client) = clients::get_by_client_id(conn, tenant, &entry.client_id)? {
                entry.name = client.data.name;
            }
            entry.has_access = live.contains(&entry.client_id);
        }
        for (client_id, scopes) in remembered {
            if let Some(entry) = apps.get_mut(&client_id) {
                entry.scopes = scopes;
            }
        }
        let mut latest: BTreeMap<String, i32> = BTreeMap::new();
        for consent in current {
            let Some(text) =
                purposes::get_version(conn, tenant, &consent.purpose, consent.version)?
            else {
                continue;
            };
            let newest = match latest.get(&consent.purpose) {
                Some(version) => *version,
                None => {
                    let version = purposes::get(conn, tenant, &consent.purpose)?
                        .map_or(consent.version, |p| p.version);
                    latest.insert(consent.purpose.clone(), version);
                    version
                }
            };
            if let Some(entry) = apps.get_mut(&consent.client_id) {
                entry.purposes.push(PurposeInForce {
                    slug: consent.purpose,
                    version: consent.version,
                    name: text.name,
                    description: text.description,
                    scopes: text.scopes,
                    legal_basis: text.legal_basis,
                    granted_at: consent.granted_at,
                    expires_at: consent.expires_at,
                    outdated: newest > consent.version,
                });
            }
        }
        Ok(apps.into_values().collect())
    }

    /// The user's whole consent history, oldest first.
    pub fn history(&self, tenant: TenantId, user: UserId) -> Result<Vec<ConsentEvent>> {
        Ok(consent_records::history_for_user(
            &mut *self.conn()?,
            tenant,
            user,
        )?)
    }

    /// The user's receipt: the whole history with the text of each purpose version
    /// as it was accepted, and what is in force now.
    pub fn receipt(&self, tenant: TenantId, user: UserId) -> Result<Receipt> {
        let now = self.now();
        let mut conn = self.conn()?;
        let history = consent_records::history_for_user(&mut conn, tenant, user)?;
        let in_force = consent_records::current_for_user(&mut conn, now, tenant, user)?;
        let mut texts: BTreeMap<(String, i32), Option<Purpose>> = BTreeMap::new();
        for event in &history {
            let key = (event.purpose.clone(), event.version);
            if let Entry::Vacant(slot) = texts.entry(key) {
                let text = purposes::get_version(&mut conn, tenant, &event.purpose, event.version)?;
                slot.insert(text);
            }
        }
        let history = history
            .into_iter()
            .map(|event| {
                let text = texts
                    .get(&(event.purpose.clone(), event.version))
                    .and_then(Option::as_ref);
                ReceiptEntry {
                    purpose_name: text.map(|p| p.name.clone()),
                    purpose_description: text.map(|p| p.description.clone()),
                    scopes: text.map(|p| p.scopes.clone()).unwrap_or_default(),
                    legal_basis: text.map(|p| p.legal_basis),
                    id: event.id,
                    event: event.kind,
                    at: event.occurred_at,
                    client_id: event.client_id,
                    purpose: event.purpose,
                    purpose_version: event.version,
                    expires_at: event.expires_at,
                    channel: event.channel,
                }
            })
            .collect();
        Ok(Receipt {
            tenant,
            user,
            issued_at: now,
            in_force,
            history,
        })
    }

    /// Tells relying parties (through the node's reactions) that the sessions they
    /// built on these grants are over.
    fn announce_revoked(&self, tenant: TenantId, user: UserId, grants: &[String]) {
        if grants.is_empty() {
            return;
        }
        let event = DomainEvent::GrantsRevoked {
            tenant,
            user,
            grants: grants.to_vec(),
        };
        self.inner.events.announce(event);
    }

    /// Caches of the user's consents (the PDP's) learn of it at once on this node and
    /// within milliseconds elsewhere; without the event they would deny for up to
    /// their lifetime.
    fn announce_granted(&self, tenant: TenantId, user: UserId, client_id: &str, purpose: &str) {
        self.inner.events.announce(DomainEvent::ConsentGranted {
            tenant,
            user,
            client_id: client_id.to_owned(),
            purpose: purpose.to_owned(),
        });
    }

    fn announce(&self, tenant: TenantId, user: UserId, client_id: &str, purpose: &str) {
        // The revocation is committed; only other nodes' caches hear of it late.
        self.inner.events.announce(DomainEvent::ConsentWithdrawn {
            tenant,
            user,
            client_id: client_id.to_owned(),
            purpose: purpose.to_owned(),
        });
    }
}

/// The purposes whose latest event for this client is a grant (expired or not: an
/// expired grant is withdrawn too, so the history says it ended by the user's hand).
fn granted_purposes(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
    client_id: &str,
) -> Result<Vec<String>> {
    let mut latest: BTreeMap<String, ConsentEventKind> = BTreeMap::new();
    for event in consent_records::history_for_user(conn, tenant, user)? {
        if event.client_id == client_id {
            latest.insert(event.purpose, event.kind);
        }
    }
    Ok(latest
        .into_iter()
        .filter(|(_, kind)| *kind == ConsentEventKind::Granted)
        .map(|(purpose, _)| purpose)
        .collect())
}

/// The latest version of the purpose `slug`.
fn latest_purpose(conn: &mut AnyConnection, tenant: TenantId, slug: &str) -> Result<Purpose> {
    purposes::get(conn, tenant, slug)?.ok_or(ConsentError::NotFound("purpose"))
}

/// Only the latest version of a purpose can be accepted: a user who saw an older
/// text is asked again.
fn ensure_latest(latest: &Purpose, version: i32) -> Result<()> {
    if latest.version == version {
        return Ok(());
    }
    Err(ConsentError::OutdatedVersion {
        purpose: latest.slug.clone(),
        latest: latest.version,
    })
}

/// Appends a grant and its audit event inside the caller's transaction.
fn record_grant(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    channel: Channel,
    grant: NewGrant<'_>,
) -> Result<ConsentEvent> {
    let event = consent_records::append_grant(conn, now, tenant, grant)?;
    let actor = channel.actor(event.user_id, &event.client_id);
    audit_event(conn, cipher, now, tenant, actor, &event, json!({}))?;
    Ok(event)
}

/// One withdrawal inside the caller's transaction.
#[allow(clippy::too_many_arguments)]
fn withdraw_one(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    client_id: &str,
    purpose: &str,
    acting: &Acting<'_>,
) -> Result<Withdrawal> {
    let channel = acting.channel;
    let latest_text = latest_purpose(conn, tenant, purpose)?;
    let previous = consent_records::latest(conn, tenant, user, client_id, purpose)?;
    let granted = previous.filter(|e| e.kind == ConsentEventKind::Granted);
    // The scopes of the version granted and of the latest: a grant made under either
    // depended on this consent.
    let mut scopes: BTreeSet<String> = latest_text.scopes.iter().cloned().collect();
    if let Some(grant) = &granted
        && grant.version != latest_text.version
        && let Some(text) = purposes::get_version(conn, tenant, purpose, grant.version)?
    {
        scopes.extend(text.scopes);
    }
    let scopes: Vec<String> = scopes.into_iter().collect();
    let event = match &granted {
        Some(grant) => Some(consent_records::append_withdrawal(
            conn,
            now,
            tenant,
            NewWithdrawal {
                user,
                client_id,
                purpose,
                version: grant.version,
                channel: channel.as_str(),
            },
        )?),
        None => None,
    };
    let grants_revoked = if scopes.is_empty() {
        Vec::new()
    } else {
        grants::revoke_for_user_and_client(
            conn,
            now,
            tenant,
            user,
            client_id,
            Some(&scopes),
            "consent_withdrawn",
        )?
    };
    consents::forget(conn, tenant, user, client_id, Some(&scopes))?;
    if let Some(event) = &event {
        let mut details = json!({ "grants_revoked": grants_revoked.len() });
        if let Some(reason) = acting.reason {
            details["reason"] = json!(reason);
        }
        audit_event(
            conn,
            cipher,
            now,
            tenant,
            acting.actor.clone(),
            event,
            details,
        )?;
    }
    Ok(Withdrawal {
        client_id: client_id.to_owned(),
        purpose: purpose.to_owned(),
        event,
        grants_revoked,
    })
}

#[allow(clippy::too_many_arguments)]
fn append_audit(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    actor: String,
    action: &str,
    user: UserId,
    details: serde_json::Value,
) -> Result<()> {
    // Failing to audit fails the change: consent must be provable.
    audit::append(
        conn,
        cipher,
        now,
        tenant,
        NewAuditEvent {
            actor,
            action: action.to_owned(),
            target: Some(format!("user:{user}")),
            outcome: Outcome::Success,
            ip: None,
            details,
        },
    )?;
    Ok(())
}

fn audit_event(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    actor: String,
    event: &ConsentEvent,
    mut details: serde_json::Value,
) -> Result<()> {
    let action = match event.kind {
        ConsentEventKind::Granted => "consent.granted",
        ConsentEventKind::Withdrawn => "consent.withdrawn",
    };
    if let Some(map) = details.as_object_mut() {
        map.insert("client_id".into(), json!(event.client_id));
        map.insert("purpose".into(), json!(event.purpose));
        map.insert("version".into(), json!(event.version));
        map.insert("channel".into(), json!(event.channel));
        map.insert("consent_event".into(), json!(event.id));
    }
    append_audit(
        conn,
        cipher,
        now,
        tenant,
        actor,
        action,
        event.user_id,
        details,
    )
}

fn audit_purpose(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    actor: &str,
    action: &str,
    purpose: &Purpose,
) -> Result<()> {
    audit::append(
        conn,
        cipher,
        now,
        tenant,
        NewAuditEvent {
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: Some(format!("purpose:{}", purpose.slug)),
            outcome: Outcome::Success,
            ip: None,
            details: json!({
                "version": purpose.version,
                "scopes": purpose.scopes,
                "legal_basis": purpose.legal_basis,
            }),
        },
    )?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;

    use chrono::Duration;
    use gatehouse_core::ManualClock;
    use gatehouse_core::events::{DomainEvent, EventBus, EventSubscription};
    use gatehouse_core::ids::{SessionId, TenantId, UserId};
    use gatehouse_identity_store::audit;
    use gatehouse_identity_store::clients::{self, ClientData};
    use gatehouse_identity_store::consents;
    use gatehouse_identity_store::grants::{self, Authentication, NewGrant};
    use gatehouse_identity_store::page::PageRequest;
    use gatehouse_identity_store::purposes::{LegalBasis, PurposeChange, PurposeData};
    use gatehouse_identity_store::tenants::{self, TenantData};
    use gatehouse_identity_store::testing::TestDb;
    use gatehouse_identity_store::users::{self, UserData};

    use super::{Channel, Consents};
    use crate::ConsentError;

    struct Setup {
        db: TestDb,
        clock: ManualClock,
        consents: Consents,
        events: EventSubscription,
        tenant: TenantId,
        user: UserId,
    }

    fn client(client_id: &str) -> ClientData {
        ClientData {
            secret_hash: Some("x".into()),
            redirect_uris: vec!["https://app.example/cb".into()],
            grant_types: vec!["authorization_code".into()],
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            ..ClientData::new(client_id, client_id)
        }
    }

    fn purpose(slug: &str, scope: &str) -> PurposeData {
        PurposeData {
            slug: slug.into(),
            name: format!("The {slug}"),
            description: format!("Uses your {scope}."),
            scopes: vec![scope.into()],
            legal_basis: LegalBasis::Consent,
        }
    }

    impl Setup {
        fn new(db: TestDb) -> Setup {
            let clock = ManualClock::fixed();
            let now = gatehouse_core::Clock::now(&clock);
            let mut conn = db.conn();
            let tenant = tenants::create(
                &mut conn,
                now,
                TenantData {
                    slug: "acme".into(),
                    display_name: "Acme".into(),
                    ..TenantData::default()
                },
            )
            .unwrap()
            .id;
            let user = users::create(&mut conn, now, tenant, UserData::new("alice"))
                .unwrap()
                .id;
            for id in ["shop", "blog"] {
                clients::create(&mut conn, now, tenant, client(id)).unwrap();
            }
            drop(conn);
            let bus = EventBus::in_process();
            let events = bus.subscribe();
            let consents = Consents::new(
                db.pool().clone(),
                gatehouse_identity_store::testing::test_cipher(),
                Arc::new(clock.clone()),
                bus,
            );
            consents
                .define_purpose(tenant, "admin", purpose("newsletter", "email"))
                .unwrap();
            consents
                .define_purpose(tenant, "admin", purpose("personalisation", "profile"))
                .unwrap();
            Setup {
                db,
                clock,
                consents,
                events,
                tenant,
                user,
            }
        }

        fn oauth_grant(&self, client_id: &str, scope: &str) -> String {
            let now = gatehouse_core::Clock::now(&self.clock);
            let authentication = Authentication {
                user_id: self.user,
                session_id: SessionId::new(),
                auth_time: now,
                acr: None,
                amr: vec!["pwd".into()],
            };
            grants::create(
                &mut self.db.conn(),
                now,
                self.tenant,
                NewGrant {
                    client_id: client_id.into(),
                    issuer: None,
                    authentication: Some(authentication),
                    scope: scope.into(),
                    resources: vec![],
                    purposes: vec![],
                    lifetime: Duration::days(1),
                },
            )
            .unwrap()
            .id
        }

        fn active(&self, grant: &str) -> bool {
            let now = gatehouse_core::Clock::now(&self.clock);
            grants::get(&mut self.db.conn(), self.tenant, grant)
                .unwrap()
                .unwrap()
                .is_active(now)
        }

        fn grant(&self, client_id: &str, purpose: &str) {
            self.consents
                .grant(
                    self.tenant,
                    self.user,
                    client_id,
                    purpose,
                    1,
                    Channel::OauthConsentPage,
                    None,
                )
                .unwrap();
        }

        fn published(&mut self) -> Vec<DomainEvent> {
            std::iter::from_fn(|| self.events.try_next())
                .map(|e| e.event.clone())
                .collect()
        }

        fn actions(&self) -> Vec<String> {
            let mut conn = self.db.conn();
            assert!(
                audit::verify(&mut conn, &self.consents.inner.cipher)
                    .unwrap()
                    .is_intact()
            );
            audit::list(&mut conn, self.tenant, &PageRequest::first(100))
                .unwrap()
                .items
                .into_iter()
                .map(|e| e.action)
                .collect()
        }
    }

    fn withdrawal_revokes_the_grants_that_hold_its_scopes(
        backend: gatehouse_identity_store::Backend,
    ) {
        let db = TestDb::new(backend);
        let mut s = Setup::new(db);
        s.grant("shop", "newsletter");
        s.grant("shop", "personalisation");
        s.grant("blog", "newsletter");
        let emailing = s.oauth_grant("shop", "openid email");
        let profiling = s.oauth_grant("shop", "openid profile");
        let blog = s.oauth_grant("blog", "openid email");
        let remembered = [
            "openid".to_owned(),
            "email".to_owned(),
            "profile".to_owned(),
        ];
        let now = gatehouse_core::Clock::now(&s.clock);
        consents::grant(&mut s.db.conn(), now, s.tenant, s.user, "shop", &remembered).unwrap();
        s.published();

        s.clock.advance(Duration::minutes(5));
        let done = s
            .consents
            .withdraw(s.tenant, s.user, "shop", "newsletter", Channel::AccountPage)
            .unwrap();
        assert!(done.event.is_some());
        assert_eq!(done.grants_revoked, vec![emailing.clone()]);
        assert!(!s.active(&emailing) && s.active(&profiling) && s.active(&blog));
        assert_eq!(
            consents::scopes(&mut s.db.conn(), s.tenant, s.user, "shop").unwrap(),
            ["openid", "profile"],
            "the consent page still remembers the withdrawn scope"
        );
        assert_eq!(
            s.published(),
            vec![
                DomainEvent::ConsentWithdrawn {
                    tenant: s.tenant,
                    user: s.user,
                    client_id: "shop".into(),
                    purpose: "newsletter".into(),
                },
                DomainEvent::GrantsRevoked {
                    tenant: s.tenant,
                    user: s.user,
                    grants: vec![emailing.clone()],
                }
            ]
        );
        let current: Vec<_> = s
            .consents
            .current(s.tenant, s.user)
            .unwrap()
            .into_iter()
            .map(|c| (c.client_id, c.purpose))
            .collect();
        assert_eq!(
            current,
            [
                ("blog".to_owned(), "newsletter".to_owned()),
                ("shop".to_owned(), "personalisation".to_owned())
            ]
        );

        // Nothing left to withdraw: no row, no event.
        let again = s
            .consents
            .withdraw(s.tenant, s.user, "shop", "newsletter", Channel::AccountPage)
            .unwrap();
        assert_eq!((again.event, again.grants_revoked.len()), (None, 0));
        assert!(s.published().is_empty());
        assert_eq!(
            s.actions()
                .iter()
                .filter(|a| a.starts_with("consent."))
                .collect::<Vec<_>>(),
            [
                "consent.granted",
                "consent.granted",
                "consent.granted",
                "consent.withdrawn"
            ]
        );
    }

    fn revoking_an_app_withdraws_everything_it_held(backend: gatehouse_identity_store::Backend) {
        let db = TestDb::new(backend);
        let mut s = Setup::new(db);
        s.grant("shop", "newsletter");
        s.grant("shop", "personalisation");
        s.grant("blog", "newsletter");
        let first = s.oauth_grant("shop", "openid");
        let second = s.oauth_grant("shop", "openid profile");
        let blog = s.oauth_grant("blog", "openid email");
        s.published();
        let apps = s.consents.apps(s.tenant, s.user).unwrap();
        let listed: Vec<_> = apps
            .iter()
            .map(|a| (a.client_id.as_str(), a.purposes.len(), a.has_access))
            .collect();
        assert_eq!(listed, [("blog", 1, true), ("shop", 2, true)]);
        assert_eq!(apps[1].purposes[0].name, "The newsletter");
        assert!(!apps[1].purposes[0].outdated);

        let done = s
            .consents
            .revoke_app(s.tenant, s.user, "shop", Channel::AccountPage)
            .unwrap();
        let purposes: Vec<_> = done.withdrawn.iter().map(|e| e.purpose.as_str()).collect();
        assert_eq!(purposes, ["newsletter", "personalisation"]);
        assert_eq!(done.grants_revoked.len(), 2, "{done:?}");
        assert!(!s.active(&first) && !s.active(&second) && s.active(&blog));
        let published = s.published();
        assert_eq!(published.len(), 3, "{published:?}");
        let DomainEvent::GrantsRevoked { grants, .. } = &published[2] else {
            panic!("no GrantsRevoked after the withdrawals: {published:?}");
        };
        let mut grants = grants.clone();
        grants.sort();
        let mut expected = vec![first.clone(), second.clone()];
        expected.sort();
        assert_eq!(grants, expected);
        let current = s.consents.current(s.tenant, s.user).unwrap();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0].client_id, "blog");
        assert!(s.actions().contains(&"consent.app_revoked".to_owned()));
        let apps = s.consents.apps(s.tenant, s.user).unwrap();
        assert_eq!(apps.len(), 1, "a revoked app is still listed: {apps:?}");
    }

    fn a_grant_must_name_the_latest_version_and_a_known_client(
        backend: gatehouse_identity_store::Backend,
    ) {
        let db = TestDb::new(backend);
        let s = Setup::new(db);
        let change = PurposeChange {
            name: "Newsletter, weekly".into(),
            description: "Weekly.".into(),
            scopes: vec!["email".into()],
        };
        let v2 = s
            .consents
            .update_purpose(s.tenant, "admin", "newsletter", 1, change)
            .unwrap();
        assert_eq!(v2.version, 2);
        let outdated = s.consents.grant(
            s.tenant,
            s.user,
            "shop",
            "newsletter",
            1,
            Channel::Api,
            None,
        );
        assert!(
            matches!(
                outdated,
                Err(ConsentError::OutdatedVersion { latest: 2, .. })
            ),
            "{outdated:?}"
        );
        let unknown = s.consents.grant(
            s.tenant,
            s.user,
            "nobody",
            "newsletter",
            2,
            Channel::Api,
            None,
        );
        assert!(
            matches!(unknown, Err(ConsentError::NotFound("client"))),
            "{unknown:?}"
        );
        let missing = s
            .consents
            .grant(s.tenant, s.user, "shop", "nothing", 1, Channel::Api, None);
        assert!(
            matches!(missing, Err(ConsentError::NotFound("purpose"))),
            "{missing:?}"
        );
        let now = gatehouse_core::Clock::now(&s.clock);
        for expired in [now - Duration::days(1), now] {
            let refused = s.consents.grant(
                s.tenant,
                s.user,
                "shop",
                "newsletter",
                2,
                Channel::Api,
                Some(expired),
            );
            assert!(
                matches!(&refused, Err(ConsentError::Invalid(m)) if m.contains("expires_at")),
                "a consent that would never be in force: {refused:?}"
            );
        }
        let event = s
            .consents
            .grant(
                s.tenant,
                s.user,
                "shop",
                "newsletter",
                2,
                Channel::Api,
                None,
            )
            .unwrap();
        assert_eq!(event.channel, "api");
    }

    fn an_approval_records_the_purposes_the_consent_page_showed(
        backend: gatehouse_identity_store::Backend,
    ) {
        let db = TestDb::new(backend);
        let s = Setup::new(db);
        let scopes = ["openid".to_owned(), "email".to_owned()];
        let shown = s.consents.purposes_for_scopes(s.tenant, &scopes).unwrap();
        let slugs: Vec<_> = shown.iter().map(|p| (p.slug.clone(), p.version)).collect();
        assert_eq!(slugs, [("newsletter".to_owned(), 1)]);
        let unrelated = [("personalisation".to_owned(), 1)];
        let refused = s
            .consents
            .grant_for_approval(s.tenant, s.user, "shop", &scopes, &unrelated);
        assert!(
            matches!(refused, Err(ConsentError::Invalid(_))),
            "{refused:?}"
        );
        let stale = [("newsletter".to_owned(), 1), ("newsletter".to_owned(), 7)];
        let refused = s
            .consents
            .grant_for_approval(s.tenant, s.user, "shop", &scopes, &stale);
        assert!(matches!(refused, Err(ConsentError::OutdatedVersion { .. })));
        assert!(
            s.consents.current(s.tenant, s.user).unwrap().is_empty(),
            "a refused approval recorded part of itself"
        );
        let events = s
            .consents
            .grant_for_approval(s.tenant, s.user, "shop", &scopes, &slugs)
            .unwrap();
        assert_eq!(events[0].channel, "oauth_consent_page");
        assert_eq!(s.consents.current(s.tenant, s.user).unwrap().len(), 1);
    }

    fn the_receipt_carries_the_whole_history_with_the_accepted_texts(
        backend: gatehouse_identity_store::Backend,
    ) {
        let db = TestDb::new(backend);
        let s = Setup::new(db);
        s.grant("shop", "newsletter");
        s.clock.advance(Duration::days(1));
        let change = PurposeChange {
            name: "Newsletter v2".into(),
            description: "More mail.".into(),
            scopes: vec!["email".into()],
        };
        s.consents
            .update_purpose(s.tenant, "admin", "newsletter", 1, change)
            .unwrap();
        s.consents
            .withdraw(s.tenant, s.user, "shop", "newsletter", Channel::AccountPage)
            .unwrap();
        s.consents
            .grant(
                s.tenant,
                s.user,
                "shop",
                "newsletter",
                2,
                Channel::AccountPage,
                None,
            )
            .unwrap();
        let receipt = s.consents.receipt(s.tenant, s.user).unwrap();
        let json = serde_json::to_value(&receipt).unwrap();
        let history = json["history"].as_array().unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[0]["event"], "granted");
        assert_eq!(
            history[0]["purpose_name"], "The newsletter",
            "the text accepted, not the latest"
        );
        assert_eq!(history[0]["channel"], "oauth_consent_page");
        assert_eq!(history[0]["legal_basis"], "consent");
        assert_eq!(history[1]["event"], "withdrawn");
        assert_eq!(history[1]["purpose_version"], 1);
        assert_eq!(history[2]["purpose_name"], "Newsletter v2");
        assert_eq!(json["in_force"].as_array().unwrap().len(), 1);
        assert_eq!(json["in_force"][0]["version"], 2);
        assert_eq!(json["user"], s.user.to_string());
    }

    gatehouse_identity_store::on_both_backends!(
        withdrawal_revokes_the_grants_that_hold_its_scopes,
        revoking_an_app_withdraws_everything_it_held,
        a_grant_must_name_the_latest_version_and_a_known_client,
        the_receipt_carries_the_whole_history_with_the_accepted_texts,
        an_approval_records_the_purposes_the_consent_page_showed,
    );
}
