//! Server-side sessions. The cookie carries a random secret; the row stores only its
//! SHA-256, so a database leak yields no usable session. Sessions end (they are never
//! deleted early) so the account page and audits can show what happened.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::query_builder::BoxedUpdateStatement;
use gatehouse_core::ids::{SessionId, TenantId, UserId};
use serde::{Deserialize, Serialize};

use crate::db::MultiBackend;
use crate::error::map_missing_reference;
use crate::query::{FromRow, LoadItems, closed, tenant_row, tenant_rows};
use crate::schema::sessions;
use crate::{AnyConnection, StoreError, StoreResult};

const ENTITY: &str = "session";

/// One authentication step, the source of the `amr` claim (RFC 8176 values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthMethod {
    pub method: String,
    pub at: DateTime<Utc>,
    /// For a sign-in through a partner's identity provider (`fed`): the assurance
    /// level the partner's answer maps to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aal: Option<i32>,
    /// For `fed`: the connection's slug.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
}

impl AuthMethod {
    /// A local method (`pwd`, `otp`, `hwk`, …) used at `at`.
    pub fn new(method: impl Into<String>, at: DateTime<Utc>) -> AuthMethod {
        AuthMethod {
            method: method.into(),
            at,
            aal: None,
            idp: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: SessionId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    pub absolute_expires_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub auth_methods: Vec<AuthMethod>,
    /// Authenticator assurance level (NIST SP 800-63B): 1, 2 or 3.
    pub aal: i32,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
}

impl Session {
    /// When the user last proved who they are (the `auth_time` claim).
    pub fn auth_time(&self) -> DateTime<Utc> {
        self.auth_methods
            .iter()
            .map(|m| m.at)
            .max()
            .unwrap_or(self.created_at)
    }

    /// The `amr` values (RFC 8176): each method once, in the order first used, and
    /// `mfa` when the session reached a multi-factor level.
    pub fn amr(&self) -> Vec<String> {
        let mut amr: Vec<String> = Vec::with_capacity(self.auth_methods.len() + 1);
        for method in &self.auth_methods {
            if !amr.contains(&method.method) {
                amr.push(method.method.clone());
            }
        }
        if self.aal >= 2 && !amr.iter().any(|m| m == "mfa") {
            amr.push("mfa".into());
        }
        amr
    }

    /// When the user last passed a factor other than a password (the time a step-up
    /// is measured from); `None` if they never did in this session.
    pub fn second_factor_at(&self) -> Option<DateTime<Utc>> {
        self.auth_methods
            .iter()
            .filter(|m| m.method != "pwd")
            .map(|m| m.at)
            .max()
    }
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub user_id: UserId,
    pub secret_hash: String,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub auth_methods: Vec<AuthMethod>,
    pub aal: i32,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub(crate) struct SessionRow {
    id: String,
    tenant_id: String,
    user_id: String,
    secret_hash: String,
    created_at: NaiveDateTime,
    last_seen_at: NaiveDateTime,
    idle_expires_at: NaiveDateTime,
    absolute_expires_at: NaiveDateTime,
    ip: Option<String>,
    user_agent: Option<String>,
    auth_methods: String,
    aal: i32,
    ended_at: Option<NaiveDateTime>,
    end_reason: Option<String>,
}

impl FromRow for Session {
    type Row = SessionRow;
    fn from_row(row: SessionRow) -> StoreResult<Session> {
        let corrupt = |e: &dyn std::fmt::Display| StoreError::corrupt("sessions", e);
        Ok(Session {
            id: row.id.parse().map_err(|e| corrupt(&e))?,
            tenant_id: row.tenant_id.parse().map_err(|e| corrupt(&e))?,
            user_id: row.user_id.parse().map_err(|e| corrupt(&e))?,
            created_at: row.created_at.and_utc(),
            last_seen_at: row.last_seen_at.and_utc(),
            idle_expires_at: row.idle_expires_at.and_utc(),
            absolute_expires_at: row.absolute_expires_at.and_utc(),
            ip: row.ip,
            user_agent: row.user_agent,
            auth_methods: serde_json::from_str(&row.auth_methods).map_err(|e| corrupt(&e))?,
            aal: row.aal,
            ended_at: row.ended_at.map(|t| t.and_utc()),
            end_reason: row.end_reason,
        })
    }
}

fn methods_json(methods: &[AuthMethod]) -> StoreResult<String> {
    serde_json::to_string(methods).map_err(|e| StoreError::invalid(ENTITY, e.to_string()))
}

type SessionUpdate<'a> = BoxedUpdateStatement<'a, MultiBackend, sessions::table>;

/// The tenant's sessions not ended yet, to be updated: an ended session is never
/// changed again.
fn unended<'a>(tenant: TenantId) -> SessionUpdate<'a> {
    diesel::update(tenant_rows!(sessions, tenant))
        .filter(sessions::ended_at.is_null())
        .into_boxed()
}

pub fn create(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    new: NewSession,
) -> StoreResult<Session> {
    let absolute = now + new.absolute_timeout;
    let row = SessionRow {
        id: SessionId::new().to_string(),
        tenant_id: tenant.to_string(),
        user_id: new.user_id.to_string(),
        secret_hash: new.secret_hash,
        created_at: now.naive_utc(),
        last_seen_at: now.naive_utc(),
        idle_expires_at: (now + new.idle_timeout).min(absolute).naive_utc(),
        absolute_expires_at: absolute.naive_utc(),
        ip: new.ip,
        user_agent: new.user_agent,
        auth_methods: methods_json(&new.auth_methods)?,
        aal: new.aal,
        ended_at: None,
        end_reason: None,
    };
    diesel::insert_into(sessions::table)
        .values(&row)
        .execute(conn)
        .map_err(map_missing_reference("user"))?;
    Session::from_row(row)
}

/// A new sign-in of the session's own user on the same browser: the cookie secret
/// is replaced (the old cookie stops working, as with a new session) but the
/// session keeps its id, so the `sid` relying parties hold stays valid. Expiry,
/// methods and level start afresh. False if the session is no longer live.
pub fn reauthenticate(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    id: SessionId,
    new: NewSession,
) -> StoreResult<Option<Session>> {
    let absolute = now + new.absolute_timeout;
    let updated = unended(tenant)
        .filter(sessions::id.eq(id.to_string()))
        .filter(sessions::user_id.eq(new.user_id.to_string()))
        .set((
            sessions::secret_hash.eq(new.secret_hash),
            sessions::last_seen_at.eq(now.naive_utc()),
            sessions::idle_expires_at.eq((now + new.idle_timeout).min(absolute).naive_utc()),
            sessions::absolute_expires_at.eq(absolute.naive_utc()),
            sessions::ip.eq(new.ip),
            sessions::user_agent.eq(new.user_agent),
            sessions::auth_methods.eq(methods_json(&new.auth_methods)?),
            sessions::aal.eq(new.aal),
        ))
        .execute(conn)?;
    if updated == 0 {
        return Ok(None);
    }
    get(conn, tenant, id).map(Some)
}

/// A step-up: the session's user passed another factor. The methods and level are
/// replaced by the caller's (which add to the old ones), and the cookie secret
/// rotates, as at any change of privilege. `None` if the session is no longer live.
pub fn elevate(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    session: &Session,
    auth_methods: &[AuthMethod],
    aal: i32,
    secret_hash: String,
) -> StoreResult<Option<Session>> {
    let updated = unended(session.tenant_id)
        .filter(sessions::id.eq(session.id.to_string()))
        .filter(sessions::user_id.eq(session.user_id.to_string()))
        .filter(sessions::absolute_expires_at.gt(now.naive_utc()))
        .set((
            sessions::secret_hash.eq(secret_hash),
            sessions::last_seen_at.eq(now.naive_utc()),
            sessions::auth_methods.eq(methods_json(auth_methods)?),
            sessions::aal.eq(aal),
        ))
        .execute(conn)?;
    if updated == 0 {
        return Ok(None);
    }
    get(conn, session.tenant_id, session.id).map(Some)
}

fn active(tenant: TenantId, now: DateTime<Utc>) -> sessions::BoxedQuery<'static, MultiBackend> {
    tenant_rows!(sessions, tenant)
        .filter(sessions::ended_at.is_null())
        .filter(sessions::idle_expires_at.gt(now.naive_utc()))
        .filter(sessions::absolute_expires_at.gt(now.naive_utc()))
        .into_boxed()
}

/// The live session whose cookie secret hashes to `secret_hash`, if any.
pub fn find_active(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    secret_hash: &str,
) -> StoreResult<Option<Session>> {
    active(tenant, now)
        .filter(sessions::secret_hash.eq(secret_hash.to_owned()))
        .first_item(conn)
}

pub fn get(conn: &mut AnyConnection, tenant: TenantId, id: SessionId) -> StoreResult<Session> {
    tenant_row!(sessions, tenant, id).one_item(conn, ENTITY)
}

/// Records activity and slides the idle expiry, never past the absolute one.
pub fn touch(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    session: &Session,
    idle_timeout: Duration,
) -> StoreResult<()> {
    let idle = (now + idle_timeout).min(session.absolute_expires_at);
    diesel::update(tenant_row!(sessions, session.tenant_id, session.id))
        .set((
            sessions::last_seen_at.eq(now.naive_utc()),
            sessions::idle_expires_at.eq(idle.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Ends one session of the tenant (optionally only if it belongs to `user`);
/// returns false if it was not live.
pub fn end(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    id: SessionId,
    user: Option<UserId>,
    reason: &str,
) -> StoreResult<bool> {
    let mut query = unended(tenant).filter(sessions::id.eq(id.to_string()));
    if let Some(user) = user {
        query = query.filter(sessions::user_id.eq(user.to_string()));
    }
    let ended = query
        .set(closed(
            sessions::ended_at,
            sessions::end_reason,
            now,
            reason,
        ))
        .execute(conn)?;
    Ok(ended > 0)
}

/// Ends every live session of a user except `keep`; returns the ones that ended.
pub fn end_all_for_user(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    keep: Option<SessionId>,
    reason: &str,
) -> StoreResult<Vec<SessionId>> {
    let mut query = unended(tenant).filter(sessions::user_id.eq(user.to_string()));
    if let Some(keep) = keep {
        query = query.filter(sessions::id.ne(keep.to_string()));
    }
    let ended: Vec<String> = query
        .set(closed(
            sessions::ended_at,
            sessions::end_reason,
            now,
            reason,
        ))
        .returning(sessions::id)
        .get_results(conn)?;
    ended
        .iter()
        .map(|id| id.parse().map_err(|e| StoreError::corrupt("sessions", e)))
        .collect()
}

/// A user's live sessions, newest first (bounded: sessions expire).
pub fn list_active_for_user(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
) -> StoreResult<Vec<Session>> {
    active(tenant, now)
        .filter(sessions::user_id.eq(user.to_string()))
        .order(sessions::created_at.desc())
        .load_items(conn)
}
