//! Single-use tokens for links sent by email (verification, password reset, email
//! change). Only the token's SHA-256 is stored; consuming is one conditional UPDATE,
//! so two concurrent clicks cannot both succeed.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Bool;
use gatehouse_core::ids::{TenantId, UserId};

use crate::db::MultiBackend;
use crate::error::map_missing_reference;
use crate::schema::one_time_tokens;
use crate::{AnyConnection, StoreError, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Purpose {
    VerifyEmail,
    PasswordReset,
    /// A partner's identity waiting to be linked to the account whose address the
    /// mail went to (payload: connection, subject).
    FederationLink,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::PasswordReset => "password_reset",
            Purpose::FederationLink => "federation_link",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsumedToken {
    pub user_id: UserId,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// What [`find`] and [`consume`] read of a token: user, payload, creation time.
type TokenColumns = (
    one_time_tokens::user_id,
    one_time_tokens::payload,
    one_time_tokens::created_at,
);
const TOKEN_COLUMNS: TokenColumns = (
    one_time_tokens::user_id,
    one_time_tokens::payload,
    one_time_tokens::created_at,
);

fn token(
    (user_id, payload, created_at): (String, String, NaiveDateTime),
) -> StoreResult<ConsumedToken> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::corrupt("one_time_tokens", e);
    Ok(ConsumedToken {
        user_id: user_id.parse().map_err(|e| corrupt(&e))?,
        payload: serde_json::from_str(&payload).map_err(|e| corrupt(&e))?,
        created_at: created_at.and_utc(),
    })
}

/// The token with this hash if it can still be used: of this tenant and purpose,
/// not used yet and not expired.
fn usable<'a>(
    now: DateTime<Utc>,
    tenant: TenantId,
    purpose: Purpose,
    token_hash: &'a str,
) -> Box<dyn BoxableExpression<one_time_tokens::table, MultiBackend, SqlType = Bool> + 'a> {
    Box::new(
        one_time_tokens::token_hash
            .eq(token_hash)
            .and(one_time_tokens::tenant_id.eq(tenant.to_string()))
            .and(one_time_tokens::purpose.eq(purpose.as_str()))
            .and(one_time_tokens::consumed_at.is_null())
            .and(one_time_tokens::expires_at.gt(now.naive_utc())),
    )
}

#[allow(clippy::too_many_arguments)]
pub fn issue(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    purpose: Purpose,
    token_hash: &str,
    lifetime: Duration,
    payload: &serde_json::Value,
) -> StoreResult<()> {
    diesel::insert_into(one_time_tokens::table)
        .values((
            one_time_tokens::token_hash.eq(token_hash),
            one_time_tokens::tenant_id.eq(tenant.to_string()),
            one_time_tokens::user_id.eq(user.to_string()),
            one_time_tokens::purpose.eq(purpose.as_str()),
            one_time_tokens::payload.eq(payload.to_string()),
            one_time_tokens::created_at.eq(now.naive_utc()),
            one_time_tokens::expires_at.eq((now + lifetime).naive_utc()),
        ))
        .execute(conn)
        .map_err(map_missing_reference("user"))?;
    Ok(())
}

/// What an outstanding token is for, without spending it: a link that must survive
/// being opened (mail scanners and browsers prefetch links) before the step that
/// uses it up. `None` when [`consume`] would find nothing: unknown, of another
/// purpose or tenant, expired, or already used.
pub fn find(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    purpose: Purpose,
    token_hash: &str,
) -> StoreResult<Option<ConsumedToken>> {
    let row = one_time_tokens::table
        .filter(usable(now, tenant, purpose, token_hash))
        .select(TOKEN_COLUMNS)
        .first(conn)
        .optional()?;
    row.map(token).transpose()
}

/// Marks the token used and returns what it was for; `None` if it is unknown, of
/// another purpose or tenant, expired, or already used.
pub fn consume(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    purpose: Purpose,
    token_hash: &str,
) -> StoreResult<Option<ConsumedToken>> {
    // One statement claims and reads the token, so two clicks cannot both get it.
    let claimed = diesel::update(one_time_tokens::table)
        .filter(usable(now, tenant, purpose, token_hash))
        .set(one_time_tokens::consumed_at.eq(Some(now.naive_utc())))
        .returning(TOKEN_COLUMNS)
        .get_result(conn)
        .optional()?;
    claimed.map(token).transpose()
}

/// Invalidates every outstanding token of a purpose for a user (e.g. after a reset,
/// older reset links must stop working). Returns how many were outstanding.
pub fn revoke_for_user(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    purpose: Purpose,
) -> StoreResult<usize> {
    Ok(diesel::update(one_time_tokens::table)
        .filter(one_time_tokens::tenant_id.eq(tenant.to_string()))
        .filter(one_time_tokens::user_id.eq(user.to_string()))
        .filter(one_time_tokens::purpose.eq(purpose.as_str()))
        .filter(one_time_tokens::consumed_at.is_null())
        .set(one_time_tokens::consumed_at.eq(Some(now.naive_utc())))
        .execute(conn)?)
}
