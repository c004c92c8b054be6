//! The SAML replay cache: each assertion a connection accepted, by its ID, until
//! it expires. One insert per accepted assertion; the primary key makes a second
//! one fail on whichever node it reaches, so a captured response works once.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{ConnectionId, TenantId};

use crate::error::is_unique_violation;
use crate::schema::saml_seen_assertions as seen;
use crate::{AnyConnection, StoreError, StoreResult};

/// The longest assertion ID kept; a longer one is refused before it is stored.
pub const MAX_ID_LEN: usize = 256;

/// Remembers `assertion_id` for `connection` until `expires_at`. `Conflict` when
/// it was seen already (a replay).
pub fn remember(
    conn: &mut AnyConnection,
    tenant: TenantId,
    connection: ConnectionId,
    assertion_id: &str,
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    if assertion_id.is_empty() || assertion_id.len() > MAX_ID_LEN {
        return Err(StoreError::invalid(
            "saml assertion",
            "the assertion ID is empty or too long",
        ));
    }
    diesel::insert_into(seen::table)
        .values((
            seen::tenant_id.eq(tenant.to_string()),
            seen::connection_id.eq(connection.to_string()),
            seen::assertion_id.eq(assertion_id),
            seen::expires_at.eq(expires_at.naive_utc()),
        ))
        .execute(conn)
        .map_err(|error| {
            if is_unique_violation(&error) {
                StoreError::Conflict {
                    entity: "saml assertion",
                    field: "assertion_id",
                }
            } else {
                StoreError::Database(error)
            }
        })?;
    Ok(())
}

/// Forgets every assertion that expired at or before `now`; returns how many.
pub fn prune_expired(conn: &mut AnyConnection, now: DateTime<Utc>) -> StoreResult<usize> {
    Ok(diesel::delete(seen::table.filter(seen::expires_at.le(now.naive_utc()))).execute(conn)?)
}
