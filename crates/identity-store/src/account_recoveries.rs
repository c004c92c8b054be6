//! Account recoveries: an owner who lost every second factor asks, from a password
//! reset link, to have them removed. Nothing happens at once: the recovery becomes
//! usable only after a cooling-off period (`ready_at`), and the owner, mailed at the
//! start, can cancel it until it completes. After `expires_at` it is void.
//!
//! The recovery link and the cancel link carry random tokens; only their SHA-256
//! digests are stored. Each state change is one conditional UPDATE, so a cancel and
//! a completion racing each other cannot both win, and neither happens twice.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::query_builder::BoxedUpdateStatement;
use gatehouse_core::ids::{TenantId, UserId};
use uuid::Uuid;

use crate::db::MultiBackend;
use crate::error::{map_missing_reference, parse_column};
use crate::query::{FromRow, LoadItems, closed, tenant_row, tenant_rows};
use crate::schema::account_recoveries;
use crate::{AnyConnection, StoreError, StoreResult};

/// Where a recovery stands at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryState {
    /// Started, still cooling off: it cannot complete before `ready_at`.
    Waiting,
    /// The cooling-off has passed: it can complete until `expires_at`.
    Ready,
    Cancelled,
    Completed,
    /// Never completed in time.
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub id: String,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub ready_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Why it was cancelled: by the owner, superseded by a newer one, a factor used
    /// meanwhile, and so on (the caller's words).
    pub cancel_reason: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Recovery {
    pub fn state(&self, now: DateTime<Utc>) -> RecoveryState {
        if self.completed_at.is_some() {
            RecoveryState::Completed
        } else if self.cancelled_at.is_some() {
            RecoveryState::Cancelled
        } else if now >= self.expires_at {
            RecoveryState::Expired
        } else if now < self.ready_at {
            RecoveryState::Waiting
        } else {
            RecoveryState::Ready
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewRecovery<'a> {
    pub user: UserId,
    /// SHA-256 of the token in the link that completes the recovery.
    pub recovery_token_hash: &'a str,
    /// SHA-256 of the token in the link that cancels it.
    pub cancel_token_hash: &'a str,
    /// From the start until it can complete.
    pub cooling_off: Duration,
    /// From `ready_at` until it is void.
    pub completion_window: Duration,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = account_recoveries)]
pub(crate) struct RecoveryRow {
    id: String,
    tenant_id: String,
    user_id: String,
    created_at: NaiveDateTime,
    ready_at: NaiveDateTime,
    expires_at: NaiveDateTime,
    cancelled_at: Option<NaiveDateTime>,
    cancel_reason: Option<String>,
    completed_at: Option<NaiveDateTime>,
}

impl FromRow for Recovery {
    type Row = RecoveryRow;
    fn from_row(row: RecoveryRow) -> StoreResult<Recovery> {
        Ok(Recovery {
            id: row.id,
            tenant_id: parse_column("account_recoveries", &row.tenant_id)?,
            user_id: parse_column("account_recoveries", &row.user_id)?,
            created_at: row.created_at.and_utc(),
            ready_at: row.ready_at.and_utc(),
            expires_at: row.expires_at.and_utc(),
            cancelled_at: row.cancelled_at.map(|t| t.and_utc()),
            cancel_reason: row.cancel_reason,
            completed_at: row.completed_at.map(|t| t.and_utc()),
        })
    }
}

/// Neither cancelled nor completed, and not yet void.
fn open_ones(
    tenant: TenantId,
    now: DateTime<Utc>,
) -> account_recoveries::BoxedQuery<'static, MultiBackend> {
    tenant_rows!(account_recoveries, tenant)
        .filter(account_recoveries::cancelled_at.is_null())
        .filter(account_recoveries::completed_at.is_null())
        .filter(account_recoveries::expires_at.gt(now.naive_utc()))
        .into_boxed()
}

type RecoveryUpdate<'a> = BoxedUpdateStatement<'a, MultiBackend, account_recoveries::table>;

/// The tenant's recoveries neither cancelled nor completed, to be updated: every
/// state change is an update of these, so none happens twice.
fn unsettled<'a>(tenant: TenantId) -> RecoveryUpdate<'a> {
    diesel::update(tenant_rows!(account_recoveries, tenant))
        .filter(account_recoveries::cancelled_at.is_null())
        .filter(account_recoveries::completed_at.is_null())
        .into_boxed()
}

/// Cancels the recoveries `which` picks, for `reason`; returns how many.
fn cancel_where(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    which: RecoveryUpdate<'_>,
    reason: &str,
) -> StoreResult<usize> {
    let cancelled = closed(
        account_recoveries::cancelled_at,
        account_recoveries::cancel_reason,
        now,
        reason,
    );
    Ok(which.set(cancelled).execute(conn)?)
}

/// Starts a recovery for `new.user`. Open recoveries of the user are cancelled
/// (reason `superseded`) in the same transaction: at most one runs, and starting
/// again never shortens the wait.
pub fn start(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    new: NewRecovery<'_>,
) -> StoreResult<Recovery> {
    let id = Uuid::now_v7().simple().to_string();
    let ready_at = now + new.cooling_off;
    crate::db::transaction(conn, |conn| {
        cancel_open_for_user(conn, now, tenant, new.user, "superseded")?;
        diesel::insert_into(account_recoveries::table)
            .values((
                account_recoveries::id.eq(&id),
                account_recoveries::tenant_id.eq(tenant.to_string()),
                account_recoveries::user_id.eq(new.user.to_string()),
                account_recoveries::recovery_token_hash.eq(new.recovery_token_hash),
                account_recoveries::cancel_token_hash.eq(new.cancel_token_hash),
                account_recoveries::created_at.eq(now.naive_utc()),
                account_recoveries::ready_at.eq(ready_at.naive_utc()),
                account_recoveries::expires_at.eq((ready_at + new.completion_window).naive_utc()),
            ))
            .execute(conn)
            .map_err(map_missing_reference("user"))?;
        get(conn, tenant, &id)?.ok_or(StoreError::NotFound {
            entity: "account recovery",
        })
    })
}

pub fn get(conn: &mut AnyConnection, tenant: TenantId, id: &str) -> StoreResult<Option<Recovery>> {
    tenant_row!(account_recoveries, tenant, id).first_item(conn)
}

/// The recovery whose completion link carries a token with this digest, in any
/// state (the caller tells "not yet" from "cancelled" from "gone").
pub fn find_by_recovery_token(
    conn: &mut AnyConnection,
    tenant: TenantId,
    recovery_token_hash: &str,
) -> StoreResult<Option<Recovery>> {
    tenant_rows!(account_recoveries, tenant)
        .filter(account_recoveries::recovery_token_hash.eq(recovery_token_hash))
        .first_item(conn)
}

/// The open recovery of a user, if any (for the account page and the sign-in
/// notice).
pub fn open_for_user(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
) -> StoreResult<Option<Recovery>> {
    open_ones(tenant, now)
        .filter(account_recoveries::user_id.eq(user.to_string()))
        .order(account_recoveries::created_at.desc())
        .first_item(conn)
}

/// Cancels the open recovery whose cancel link carries a token with this digest.
/// `Some` with the cancelled recovery only for the call that cancelled it: the link
/// works once, and not for a recovery already completed, cancelled or void.
pub fn cancel_by_token(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    cancel_token_hash: &str,
    reason: &str,
) -> StoreResult<Option<Recovery>> {
    crate::db::transaction(conn, |conn| {
        let open_with_token = unsettled(tenant)
            .filter(account_recoveries::cancel_token_hash.eq(cancel_token_hash))
            .filter(account_recoveries::expires_at.gt(now.naive_utc()));
        if cancel_where(conn, now, open_with_token, reason)? == 0 {
            return Ok(None);
        }
        tenant_rows!(account_recoveries, tenant)
            .filter(account_recoveries::cancel_token_hash.eq(cancel_token_hash))
            .first_item(conn)
    })
}

/// Cancels one recovery if it is still open; false if it was not.
pub fn cancel(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    id: &str,
    reason: &str,
) -> StoreResult<bool> {
    let this_one = unsettled(tenant).filter(account_recoveries::id.eq(id));
    Ok(cancel_where(conn, now, this_one, reason)? > 0)
}

/// Cancels every open recovery of a user (a newer one, a password reset passed with
/// a second factor, a second factor used, an administrator's reset); returns how
/// many. Void ones are left as they are: nothing is left to cancel there.
pub fn cancel_open_for_user(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    reason: &str,
) -> StoreResult<usize> {
    let open_of_user = unsettled(tenant)
        .filter(account_recoveries::user_id.eq(user.to_string()))
        .filter(account_recoveries::expires_at.gt(now.naive_utc()));
    cancel_where(conn, now, open_of_user, reason)
}

/// Marks the recovery completed, if it is ready now: past its cooling-off, before
/// it is void, neither cancelled nor completed. False otherwise, so of a completion
/// and a cancel (or two completions) racing, exactly one wins.
pub fn complete(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    id: &str,
) -> StoreResult<bool> {
    let completed = unsettled(tenant)
        .filter(account_recoveries::id.eq(id))
        .filter(account_recoveries::ready_at.le(now.naive_utc()))
        .filter(account_recoveries::expires_at.gt(now.naive_utc()))
        .set(account_recoveries::completed_at.eq(Some(now.naive_utc())))
        .execute(conn)?;
    Ok(completed > 0)
}
