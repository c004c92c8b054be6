//! Revoked access tokens, by jti, until they expire.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::TenantId;

use crate::error::is_unique_violation;
use crate::schema::revoked_tokens;
use crate::{AnyConnection, StoreResult};

/// Remembers a revoked token; revoking twice is not an error.
pub fn revoke(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    jti: &str,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    let inserted = diesel::insert_into(revoked_tokens::table)
        .values((
            revoked_tokens::tenant_id.eq(tenant.to_string()),
            revoked_tokens::jti.eq(jti),
            revoked_tokens::expires_at.eq(expires_at.naive_utc()),
            revoked_tokens::revoked_at.eq(now.naive_utc()),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub fn is_revoked(conn: &mut AnyConnection, tenant: TenantId, jti: &str) -> StoreResult<bool> {
    let found: i64 = revoked_tokens::table
        .filter(revoked_tokens::tenant_id.eq(tenant.to_string()))
        .filter(revoked_tokens::jti.eq(jti))
        .count()
        .get_result(conn)?;
    Ok(found > 0)
}

/// Forgets revocations of tokens that have expired anyway.
pub fn prune(conn: &mut AnyConnection, now: DateTime<Utc>) -> StoreResult<usize> {
    Ok(
        diesel::delete(
            revoked_tokens::table.filter(revoked_tokens::expires_at.le(now.naive_utc())),
        )
        .execute(conn)?,
    )
}

/// Forgets every revocation of the tenant (its deletion: no token of it is served).
pub fn delete_for_tenant(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<usize> {
    Ok(diesel::delete(
        revoked_tokens::table.filter(revoked_tokens::tenant_id.eq(tenant.to_string())),
    )
    .execute(conn)?)
}
