//! Sessions a partner's identity provider opened: which connection, and what the
//! provider issued for it (its ID token), sealed with associated data naming the
//! session, so that signing out can end the session at the partner too.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{ConnectionId, SessionId, TenantId};

use crate::schema::sessions;
use gatehouse_core::secrets::Cipher;
use zeroize::Zeroizing;

use crate::error::parse_column;
use crate::schema::federated_sessions as rows;
use crate::{AnyConnection, StoreError, StoreResult};

const TABLE: &str = "federated_sessions";

pub(crate) fn aad(tenant: &str, session: &str, connection: &str) -> Vec<u8> {
    format!("gatehouse/federated-session/v1/{tenant}/{session}/{connection}").into_bytes()
}

/// What a partner issued for a session.
#[derive(Debug, Clone, Copy)]
pub struct Upstream<'a> {
    /// Sealed at rest: the ID token, or the SAML NameID and SessionIndex.
    pub document: &'a str,
    /// A digest that finds the session again from the partner's side (SAML single
    /// logout names the user by NameID).
    pub key: Option<&'a str>,
}

/// Remembers (or, for a session signed in again, replaces) what `connection`
/// issued for `session`.
pub fn remember(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    session: SessionId,
    connection: ConnectionId,
    upstream: Upstream<'_>,
) -> StoreResult<()> {
    let Upstream {
        document: upstream,
        key: upstream_key,
    } = upstream;
    let (tenant, session, connection) = (
        tenant.to_string(),
        session.to_string(),
        connection.to_string(),
    );
    diesel::delete(rows::table.filter(rows::session_id.eq(&session))).execute(conn)?;
    diesel::insert_into(rows::table)
        .values((
            rows::session_id.eq(&session),
            rows::tenant_id.eq(&tenant),
            rows::connection_id.eq(&connection),
            rows::upstream
                .eq(cipher.seal(upstream.as_bytes(), &aad(&tenant, &session, &connection))),
            rows::created_at.eq(now.naive_utc()),
            rows::upstream_key.eq(upstream_key),
        ))
        .execute(conn)?;
    Ok(())
}

/// Takes what a partner issued for the session, if a partner opened it: the
/// connection and the (unsealed) upstream document. The row is gone afterwards.
pub fn take(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    tenant: TenantId,
    session: SessionId,
) -> StoreResult<Option<(ConnectionId, Zeroizing<String>)>> {
    let (tenant, session) = (tenant.to_string(), session.to_string());
    let row: Option<(String, String)> = diesel::delete(
        rows::table
            .filter(rows::session_id.eq(&session))
            .filter(rows::tenant_id.eq(&tenant)),
    )
    .returning((rows::connection_id, rows::upstream))
    .get_result(conn)
    .optional()?;
    let Some((connection, sealed)) = row else {
        return Ok(None);
    };
    let plain = cipher.open(&sealed, &aad(&tenant, &session, &connection))?;
    let text = String::from_utf8(plain.to_vec()).map_err(|e| StoreError::corrupt(TABLE, e))?;
    Ok(Some((
        parse_column(TABLE, &connection)?,
        Zeroizing::new(text),
    )))
}

/// The sessions `connection` opened that have not ended, with their users.
pub fn open_by_connection(
    conn: &mut AnyConnection,
    tenant: TenantId,
    connection: ConnectionId,
) -> StoreResult<Vec<(SessionId, gatehouse_core::ids::UserId)>> {
    let rows: Vec<(String, String)> = rows::table
        .inner_join(sessions::table.on(sessions::id.eq(rows::session_id)))
        .filter(rows::tenant_id.eq(tenant.to_string()))
        .filter(rows::connection_id.eq(connection.to_string()))
        .filter(sessions::ended_at.is_null())
        .select((rows::session_id, sessions::user_id))
        .load(conn)?;
    rows.into_iter()
        .map(|(session, user)| Ok((parse_column(TABLE, &session)?, parse_column(TABLE, &user)?)))
        .collect()
}

/// The live sessions `connection` opened under `upstream_key` (a digest naming the
/// user at the partner), with their users and what the partner issued for each.
pub fn open_by_upstream_key(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    tenant: TenantId,
    connection: ConnectionId,
    upstream_key: &str,
) -> StoreResult<Vec<(SessionId, gatehouse_core::ids::UserId, Zeroizing<String>)>> {
    let (tenant, connection) = (tenant.to_string(), connection.to_string());
    let rows: Vec<(String, String, String)> = rows::table
        .inner_join(sessions::table.on(sessions::id.eq(rows::session_id)))
        .filter(rows::tenant_id.eq(&tenant))
        .filter(rows::connection_id.eq(&connection))
        .filter(rows::upstream_key.eq(upstream_key))
        .filter(sessions::ended_at.is_null())
        .select((rows::session_id, sessions::user_id, rows::upstream))
        .load(conn)?;
    rows.into_iter()
        .map(|(session, user, sealed)| {
            let plain = cipher.open(&sealed, &aad(&tenant, &session, &connection))?;
            let text =
                String::from_utf8(plain.to_vec()).map_err(|e| StoreError::corrupt(TABLE, e))?;
            Ok((
                parse_column(TABLE, &session)?,
                parse_column(TABLE, &user)?,
                Zeroizing::new(text),
            ))
        })
        .collect()
}
