//! Consent records: what a user agreed to, per client and purpose, as an
//! append-only history. A grant names the purpose version the user accepted; a
//! withdrawal is a new row (the table refuses UPDATE), so the history proves both
//! that consent was given and when it ended.
//!
//! What is in force is derived: for each (client, purpose) the latest event counts,
//! and only a grant that has not expired is a consent in force. Events are ordered
//! by `occurred_at`, then by id (UUIDv7, increasing within a process), so a grant
//! and a withdrawal at the same instant keep the order they were written in.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{TenantId, UserId};
use serde::Serialize;
use uuid::Uuid;

use crate::error::map_missing_reference;
use crate::query::{FromRow, LoadItems, tenant_rows};
use crate::schema::consent_events;
use crate::{AnyConnection, StoreError, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentEventKind {
    Granted,
    Withdrawn,
}

impl ConsentEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentEventKind::Granted => "granted",
            ConsentEventKind::Withdrawn => "withdrawn",
        }
    }

    fn parse(text: &str) -> Option<ConsentEventKind> {
        match text {
            "granted" => Some(ConsentEventKind::Granted),
            "withdrawn" => Some(ConsentEventKind::Withdrawn),
            _ => None,
        }
    }
}

impl fmt::Display for ConsentEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of a user's consent history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentEvent {
    pub id: String,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub client_id: String,
    pub purpose: String,
    /// The purpose version granted; for a withdrawal, the version it ends.
    pub version: i32,
    pub kind: ConsentEventKind,
    pub occurred_at: DateTime<Utc>,
    /// For a grant given for a limited time.
    pub expires_at: Option<DateTime<Utc>>,
    /// Where it happened: "oauth_consent_page", "account_page", "api", "admin".
    pub channel: String,
}

impl ConsentEvent {
    /// A grant that has not expired at `now` (whether it is still the latest event is
    /// the history's business).
    pub fn grants_at(&self, now: DateTime<Utc>) -> bool {
        self.kind == ConsentEventKind::Granted && self.expires_at.is_none_or(|at| at > now)
    }
}

/// A consent in force: the latest event of its (client, purpose) is a grant that has
/// not expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrentConsent {
    pub client_id: String,
    pub purpose: String,
    pub version: i32,
    pub granted_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewGrant<'a> {
    pub user: UserId,
    pub client_id: &'a str,
    pub purpose: &'a str,
    pub version: i32,
    pub expires_at: Option<DateTime<Utc>>,
    pub channel: &'a str,
}

#[derive(Debug, Clone)]
pub struct NewWithdrawal<'a> {
    pub user: UserId,
    pub client_id: &'a str,
    pub purpose: &'a str,
    /// The version the withdrawal ends (that of the grant in force).
    pub version: i32,
    pub channel: &'a str,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = consent_events)]
pub(crate) struct EventRow {
    id: String,
    tenant_id: String,
    user_id: String,
    client_id: String,
    purpose: String,
    version: i32,
    kind: String,
    occurred_at: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
    channel: String,
}

impl FromRow for ConsentEvent {
    type Row = EventRow;
    fn from_row(row: EventRow) -> StoreResult<ConsentEvent> {
        let bad = |e: &dyn fmt::Display| StoreError::corrupt("consent_events", e);
        Ok(ConsentEvent {
            tenant_id: row.tenant_id.parse().map_err(|e| bad(&e))?,
            user_id: row.user_id.parse().map_err(|e| bad(&e))?,
            kind: ConsentEventKind::parse(&row.kind)
                .ok_or_else(|| bad(&format!("unknown kind `{}`", row.kind)))?,
            id: row.id,
            client_id: row.client_id,
            purpose: row.purpose,
            version: row.version,
            occurred_at: row.occurred_at.and_utc(),
            expires_at: row.expires_at.map(|t| t.and_utc()),
            channel: row.channel,
        })
    }
}

fn check_channel(channel: &str) -> StoreResult<()> {
    let plain = channel
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if channel.is_empty() || channel.len() > 64 || !plain {
        return Err(StoreError::invalid(
            "consent",
            "the channel must be a plain word",
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn append(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    client_id: &str,
    purpose: &str,
    version: i32,
    kind: ConsentEventKind,
    expires_at: Option<DateTime<Utc>>,
    channel: &str,
) -> StoreResult<ConsentEvent> {
    check_channel(channel)?;
    let event = ConsentEvent {
        id: Uuid::now_v7().simple().to_string(),
        tenant_id: tenant,
        user_id: user,
        client_id: client_id.to_owned(),
        purpose: purpose.to_owned(),
        version,
        kind,
        occurred_at: now,
        expires_at,
        channel: channel.to_owned(),
    };
    diesel::insert_into(consent_events::table)
        .values((
            consent_events::id.eq(&event.id),
            consent_events::tenant_id.eq(tenant.to_string()),
            consent_events::user_id.eq(user.to_string()),
            consent_events::client_id.eq(client_id),
            consent_events::purpose.eq(purpose),
            consent_events::version.eq(version),
            consent_events::kind.eq(kind.as_str()),
            consent_events::occurred_at.eq(now.naive_utc()),
            consent_events::expires_at.eq(expires_at.map(|t| t.naive_utc())),
            consent_events::channel.eq(channel),
        ))
        .execute(conn)
        // The user, or that version of the purpose, is not in this tenant.
        .map_err(map_missing_reference("user or purpose version"))?;
    Ok(event)
}

/// Records that the user accepted `version` of the purpose for the client. A grant
/// that is already in force is not replaced: this one becomes the latest.
pub fn append_grant(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    grant: NewGrant<'_>,
) -> StoreResult<ConsentEvent> {
    if grant.expires_at.is_some_and(|at| at <= now) {
        return Err(StoreError::invalid(
            "consent",
            "it would expire before it starts",
        ));
    }
    append(
        conn,
        now,
        tenant,
        grant.user,
        grant.client_id,
        grant.purpose,
        grant.version,
        ConsentEventKind::Granted,
        grant.expires_at,
        grant.channel,
    )
}

/// Records that the user withdrew consent. Whether there was anything to withdraw is
/// the caller's question ([`latest`]); the store only appends.
pub fn append_withdrawal(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    withdrawal: NewWithdrawal<'_>,
) -> StoreResult<ConsentEvent> {
    append(
        conn,
        now,
        tenant,
        withdrawal.user,
        withdrawal.client_id,
        withdrawal.purpose,
        withdrawal.version,
        ConsentEventKind::Withdrawn,
        None,
        withdrawal.channel,
    )
}

fn of_user(
    tenant: TenantId,
    user: UserId,
) -> consent_events::BoxedQuery<'static, crate::db::MultiBackend> {
    tenant_rows!(consent_events, tenant)
        .filter(consent_events::user_id.eq(user.to_string()))
        .into_boxed()
}

fn load(
    query: consent_events::BoxedQuery<'static, crate::db::MultiBackend>,
    conn: &mut AnyConnection,
) -> StoreResult<Vec<ConsentEvent>> {
    query
        .order((consent_events::occurred_at.asc(), consent_events::id.asc()))
        .load_items(conn)
}

/// The latest event of one (user, client, purpose), grant or withdrawal, expired or
/// not.
pub fn latest(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
    client_id: &str,
    purpose: &str,
) -> StoreResult<Option<ConsentEvent>> {
    of_user(tenant, user)
        .filter(consent_events::client_id.eq(client_id.to_owned()))
        .filter(consent_events::purpose.eq(purpose.to_owned()))
        .order((
            consent_events::occurred_at.desc(),
            consent_events::id.desc(),
        ))
        .first_item(conn)
}

/// The consents in force from a history in write order, by (client, purpose).
fn in_force(events: Vec<ConsentEvent>, now: DateTime<Utc>) -> Vec<CurrentConsent> {
    let mut latest: BTreeMap<(String, String), ConsentEvent> = BTreeMap::new();
    for event in events {
        latest.insert((event.client_id.clone(), event.purpose.clone()), event);
    }
    latest
        .into_values()
        .filter(|event| event.grants_at(now))
        .map(|event| CurrentConsent {
            client_id: event.client_id,
            purpose: event.purpose,
            version: event.version,
            granted_at: event.occurred_at,
            expires_at: event.expires_at,
        })
        .collect()
}

/// Every consent of the user in force at `now`, by client, then purpose.
pub fn current_for_user(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
) -> StoreResult<Vec<CurrentConsent>> {
    Ok(in_force(load(of_user(tenant, user), conn)?, now))
}

/// [`current_for_user`] for each of `users` (at most [`crate::MAX_BATCH`]); users
/// without a consent in force are left out. One query for all.
pub fn current_for_users(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    users: &[UserId],
) -> StoreResult<HashMap<UserId, Vec<CurrentConsent>>> {
    let ids = crate::batch_ids(users)?;
    let query = tenant_rows!(consent_events, tenant)
        .filter(consent_events::user_id.eq_any(ids))
        .into_boxed();
    let mut histories: HashMap<UserId, Vec<ConsentEvent>> = HashMap::new();
    for event in load(query, conn)? {
        histories.entry(event.user_id).or_default().push(event);
    }
    Ok(histories
        .into_iter()
        .map(|(user, events)| (user, in_force(events, now)))
        .filter(|(_, current)| !current.is_empty())
        .collect())
}

/// The user's consents for one client in force at `now`, by purpose.
pub fn current_for(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    client_id: &str,
) -> StoreResult<Vec<CurrentConsent>> {
    let query = of_user(tenant, user).filter(consent_events::client_id.eq(client_id.to_owned()));
    Ok(in_force(load(query, conn)?, now))
}

/// The user's whole consent history, oldest first.
pub fn history_for_user(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
) -> StoreResult<Vec<ConsentEvent>> {
    load(of_user(tenant, user), conn)
}
