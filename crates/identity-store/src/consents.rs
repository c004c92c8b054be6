//! Which scopes a user has allowed a client. The consent issue grows this into
//! purposes, versions and an append-only history; for now one row per user and client.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{TenantId, UserId};

use crate::query::tenant_rows;
use crate::schema::oauth_consents;
use crate::{AnyConnection, StoreError, StoreResult};

pub fn scopes(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
    client_id: &str,
) -> StoreResult<Vec<String>> {
    let stored: Option<String> = tenant_rows!(oauth_consents, tenant)
        .filter(oauth_consents::user_id.eq(user.to_string()))
        .filter(oauth_consents::client_id.eq(client_id))
        .select(oauth_consents::scopes)
        .first(conn)
        .optional()?;
    match stored {
        Some(text) => {
            serde_json::from_str(&text).map_err(|e| StoreError::corrupt("oauth_consents", e))
        }
        None => Ok(Vec::new()),
    }
}

/// Adds `granted` to what the user has allowed the client.
pub fn grant(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    client_id: &str,
    granted: &[String],
) -> StoreResult<()> {
    crate::db::transaction(conn, |conn| {
        let mut all = scopes(conn, tenant, user, client_id)?;
        for scope in granted {
            if !all.contains(scope) {
                all.push(scope.clone());
            }
        }
        let text = serde_json::Value::from(all).to_string();
        let target = tenant_rows!(oauth_consents, tenant)
            .filter(oauth_consents::user_id.eq(user.to_string()))
            .filter(oauth_consents::client_id.eq(client_id));
        let updated = diesel::update(target)
            .set((
                oauth_consents::scopes.eq(&text),
                oauth_consents::granted_at.eq(now.naive_utc()),
            ))
            .execute(conn)?;
        if updated == 0 {
            diesel::insert_into(oauth_consents::table)
                .values((
                    oauth_consents::tenant_id.eq(tenant.to_string()),
                    oauth_consents::user_id.eq(user.to_string()),
                    oauth_consents::client_id.eq(client_id),
                    oauth_consents::scopes.eq(&text),
                    oauth_consents::granted_at.eq(now.naive_utc()),
                ))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Forgets what the user allowed the client: the given scopes, or everything
/// (`None`). The consent page then asks again before tokens carry them.
pub fn forget(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
    client_id: &str,
    withdrawn: Option<&[String]>,
) -> StoreResult<()> {
    let target = || {
        tenant_rows!(oauth_consents, tenant)
            .filter(oauth_consents::user_id.eq(user.to_string()))
            .filter(oauth_consents::client_id.eq(client_id))
    };
    let Some(withdrawn) = withdrawn else {
        diesel::delete(target()).execute(conn)?;
        return Ok(());
    };
    let kept: Vec<String> = scopes(conn, tenant, user, client_id)?
        .into_iter()
        .filter(|scope| !withdrawn.contains(scope))
        .collect();
    diesel::update(target())
        .set(oauth_consents::scopes.eq(serde_json::Value::from(kept).to_string()))
        .execute(conn)?;
    Ok(())
}

/// Every client the user has allowed scopes, with those scopes, by client id.
pub fn for_user(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
) -> StoreResult<Vec<(String, Vec<String>)>> {
    let rows: Vec<(String, String)> = tenant_rows!(oauth_consents, tenant)
        .filter(oauth_consents::user_id.eq(user.to_string()))
        .order(oauth_consents::client_id.asc())
        .select((oauth_consents::client_id, oauth_consents::scopes))
        .load(conn)?;
    rows.into_iter()
        .map(|(client_id, text)| {
            let scopes = serde_json::from_str(&text)
                .map_err(|e| StoreError::corrupt("oauth_consents", e))?;
            Ok((client_id, scopes))
        })
        .collect()
}
