//! Pushed authorization requests (RFC 9126): parameters a client sent to the
//! authorization server directly, found again by the hash of their `request_uri`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::TenantId;

use crate::query::tenant_rows;
use crate::schema::pushed_authorization_requests as par;
use crate::{AnyConnection, StoreError, StoreResult};

/// A live pushed request: who pushed it and the parameters, in their original order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedRequest {
    pub client_id: String,
    pub parameters: Vec<(String, String)>,
    pub expires_at: DateTime<Utc>,
}

pub fn insert(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    request_uri_hash: &str,
    client_id: &str,
    parameters: &[(String, String)],
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    let parameters = serde_json::to_string(parameters).map_err(|e| StoreError::Invalid {
        entity: "pushed authorization request",
        message: e.to_string(),
    })?;
    diesel::insert_into(par::table)
        .values((
            par::request_uri_hash.eq(request_uri_hash),
            par::tenant_id.eq(tenant.to_string()),
            par::client_id.eq(client_id),
            par::parameters.eq(parameters),
            par::created_at.eq(now.naive_utc()),
            par::expires_at.eq(expires_at.naive_utc()),
        ))
        .execute(conn)?;
    Ok(())
}

/// The request behind `request_uri_hash`, if it exists in this tenant, has not
/// expired and has not been consumed.
pub fn find_live(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    request_uri_hash: &str,
) -> StoreResult<Option<PushedRequest>> {
    let row: Option<(String, String, chrono::NaiveDateTime)> = tenant_rows!(par, tenant)
        .filter(par::request_uri_hash.eq(request_uri_hash))
        .filter(par::expires_at.gt(now.naive_utc()))
        .filter(par::consumed_at.is_null())
        .select((par::client_id, par::parameters, par::expires_at))
        .first(conn)
        .optional()?;
    row.map(|(client_id, parameters, expires_at)| {
        let parameters = serde_json::from_str(&parameters).map_err(|e| StoreError::Invalid {
            entity: "pushed authorization request",
            message: e.to_string(),
        })?;
        Ok(PushedRequest {
            client_id,
            parameters,
            expires_at: expires_at.and_utc(),
        })
    })
    .transpose()
}

/// Marks the request used; false if it was already consumed or has expired, so two
/// racing redemptions cannot both succeed.
pub fn consume(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    request_uri_hash: &str,
) -> StoreResult<bool> {
    let updated = diesel::update(par::table)
        .filter(par::request_uri_hash.eq(request_uri_hash))
        .filter(par::tenant_id.eq(tenant.to_string()))
        .filter(par::expires_at.gt(now.naive_utc()))
        .filter(par::consumed_at.is_null())
        .set(par::consumed_at.eq(Some(now.naive_utc())))
        .execute(conn)?;
    Ok(updated > 0)
}

/// Deletes expired requests.
pub fn prune(conn: &mut AnyConnection, now: DateTime<Utc>) -> StoreResult<usize> {
    Ok(diesel::delete(par::table.filter(par::expires_at.le(now.naive_utc()))).execute(conn)?)
}
