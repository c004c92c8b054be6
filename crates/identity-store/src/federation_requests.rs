//! Federated sign-ins between the redirect to the partner and the partner's
//! answer, kept as passkey ceremonies are (see [`crate::webauthn_challenges`]):
//! found by the SHA-256 of the `state` handed upstream, bound to the browser that
//! began it, the state (PKCE verifier, nonce, where to go after) sealed with
//! associated data naming the row, and taken by one `DELETE … RETURNING` so that
//! an answer is used at most once, whatever its outcome.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{ConnectionId, TenantId, UserId};
use gatehouse_core::secrets::Cipher;
use zeroize::Zeroizing;

use crate::error::{map_missing_reference, parse_column};
use crate::schema::federation_requests as requests;
use crate::{AnyConnection, StoreError, StoreResult};

const TABLE: &str = "federation_requests";

/// A sign-in to remember until `expires_at`.
#[derive(Debug)]
pub struct NewRequest<'a> {
    pub connection: ConnectionId,
    /// `sign_in`, or `link` (a signed-in user adding an identity).
    pub purpose: &'a str,
    pub user: Option<UserId>,
    /// A digest naming the browser.
    pub binding: &'a str,
    /// Sealed before it is stored.
    pub state: &'a [u8],
    pub expires_at: DateTime<Utc>,
}

/// A request taken back; it no longer exists in the database.
pub struct TakenRequest {
    pub connection_id: ConnectionId,
    pub purpose: String,
    pub user_id: Option<UserId>,
    /// The digest naming the browser that began it.
    pub binding: String,
    pub created_at: DateTime<Utc>,
    pub state: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for TakenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TakenRequest")
            .field("connection_id", &self.connection_id)
            .field("purpose", &self.purpose)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

fn aad(
    tenant: &str,
    id_hash: &str,
    connection: &str,
    purpose: &str,
    user: Option<&str>,
    binding: &str,
) -> Vec<u8> {
    format!(
        "gatehouse/federation-request/v1/{tenant}/{id_hash}/{connection}/{purpose}/{}/{binding}",
        user.unwrap_or("-")
    )
    .into_bytes()
}

pub fn insert(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    id_hash: &str,
    new: NewRequest<'_>,
) -> StoreResult<()> {
    if new.binding.is_empty() {
        return Err(StoreError::invalid(
            "federation request",
            "a sign-in must be bound to a browser",
        ));
    }
    let tenant = tenant.to_string();
    let connection = new.connection.to_string();
    let user = new.user.map(|user| user.to_string());
    let sealed = cipher.seal(
        new.state,
        &aad(
            &tenant,
            id_hash,
            &connection,
            new.purpose,
            user.as_deref(),
            new.binding,
        ),
    );
    diesel::insert_into(requests::table)
        .values((
            requests::id_hash.eq(id_hash),
            requests::tenant_id.eq(&tenant),
            requests::connection_id.eq(&connection),
            requests::purpose.eq(new.purpose),
            requests::user_id.eq(user.as_deref()),
            requests::binding.eq(new.binding),
            requests::state.eq(sealed),
            requests::created_at.eq(now.naive_utc()),
            requests::expires_at.eq(new.expires_at.naive_utc()),
        ))
        .execute(conn)
        .map_err(map_missing_reference("connection"))?;
    Ok(())
}

type Row = (
    String,
    String,
    Option<String>,
    String,
    String,
    NaiveDateTime,
    NaiveDateTime,
);

/// Takes the request `id_hash` of this tenant and connection and returns it if it
/// is not expired at `now` and, when `binding` is given, bound to it. `None` for an
/// unknown, taken, expired, other-connection or other-browser request (one answer);
/// the row is gone afterwards in every case but the unknown one. Without a
/// `binding` (a SAML response, posted cross-site without the browser's cookies)
/// the caller carries the stored binding on to the step that has the cookies.
pub fn take(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    id_hash: &str,
    connection: ConnectionId,
    binding: Option<&str>,
) -> StoreResult<Option<TakenRequest>> {
    let tenant = tenant.to_string();
    let row: Option<Row> = diesel::delete(
        requests::table
            .filter(requests::id_hash.eq(id_hash))
            .filter(requests::tenant_id.eq(&tenant)),
    )
    .returning((
        requests::connection_id,
        requests::purpose,
        requests::user_id,
        requests::binding,
        requests::state,
        requests::created_at,
        requests::expires_at,
    ))
    .get_result(conn)
    .optional()?;
    let Some((stored_connection, purpose, user, stored_binding, sealed, created_at, expires_at)) =
        row
    else {
        return Ok(None);
    };
    let live = expires_at.and_utc() > now;
    if !live
        || stored_connection != connection.to_string()
        || binding
            .is_some_and(|binding| !crate::webauthn_challenges::same(&stored_binding, binding))
    {
        return Ok(None);
    }
    opened(
        cipher,
        &tenant,
        id_hash,
        (
            stored_connection,
            purpose,
            user,
            stored_binding,
            sealed,
            created_at,
            expires_at,
        ),
    )
    .map(Some)
}

/// A row as the caller gets it: its state unsealed (which checks it belongs to
/// this row), its columns parsed.
fn opened(cipher: &Cipher, tenant: &str, id_hash: &str, row: Row) -> StoreResult<TakenRequest> {
    let (connection, purpose, user, binding, sealed, created_at, _) = row;
    let state = cipher.open(
        &sealed,
        &aad(
            tenant,
            id_hash,
            &connection,
            &purpose,
            user.as_deref(),
            &binding,
        ),
    )?;
    Ok(TakenRequest {
        connection_id: parse_column(TABLE, &connection)?,
        user_id: user.map(|u| parse_column(TABLE, &u)).transpose()?,
        purpose,
        binding,
        created_at: created_at.and_utc(),
        state,
    })
}

/// Reads the live request `id_hash` of this tenant and connection without taking
/// it (a page that asks before it is used).
pub fn peek(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    id_hash: &str,
    connection: ConnectionId,
) -> StoreResult<Option<TakenRequest>> {
    let tenant = tenant.to_string();
    let row: Option<Row> = requests::table
        .filter(requests::id_hash.eq(id_hash))
        .filter(requests::tenant_id.eq(&tenant))
        .filter(requests::connection_id.eq(connection.to_string()))
        .filter(requests::expires_at.gt(now.naive_utc()))
        .select((
            requests::connection_id,
            requests::purpose,
            requests::user_id,
            requests::binding,
            requests::state,
            requests::created_at,
            requests::expires_at,
        ))
        .first(conn)
        .optional()?;
    row.map(|row| opened(cipher, &tenant, id_hash, row))
        .transpose()
}

/// Deletes every request that expired at or before `now`; returns how many went.
pub fn prune_expired(conn: &mut AnyConnection, now: DateTime<Utc>) -> StoreResult<usize> {
    Ok(
        diesel::delete(requests::table.filter(requests::expires_at.le(now.naive_utc())))
            .execute(conn)?,
    )
}
