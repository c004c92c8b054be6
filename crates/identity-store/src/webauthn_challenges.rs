//! Passkey (WebAuthn) ceremonies between their two steps: the server half of a
//! registration or authentication (challenge, allowed credentials), kept here while
//! the browser talks to the authenticator.
//!
//! A row is found by the SHA-256 of a random id handed to the browser, belongs to one
//! tenant, one purpose and (for registrations and second-factor authentications) one
//! user, and is bound to the browser that began it: `binding` is a digest the caller
//! derives from that browser's cookie, and [`take`] gives the state only to a caller
//! presenting the same. The state is sealed with the master key, with associated
//! data naming the row, so a state copied into another row does not open.
//!
//! [`take`] is one `DELETE … RETURNING`: the first attempt to finish a ceremony
//! removes the row whatever its outcome, so of two concurrent attempts only one
//! sees the state, and a replay finds nothing.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_core::secrets::Cipher;
use zeroize::Zeroizing;

use crate::error::map_missing_reference;
use crate::schema::webauthn_challenges as challenges;
use crate::{AnyConnection, StoreError, StoreResult};

const TABLE: &str = "webauthn_challenges";

/// What a ceremony is for. A challenge begun for one cannot finish the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    Registration,
    Authentication,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Registration => "registration",
            Purpose::Authentication => "authentication",
        }
    }

    fn parse(value: &str) -> StoreResult<Self> {
        match value {
            "registration" => Ok(Purpose::Registration),
            "authentication" => Ok(Purpose::Authentication),
            other => Err(StoreError::corrupt(
                TABLE,
                format!("unknown purpose {other}"),
            )),
        }
    }
}

/// A ceremony to remember until `expires_at`.
#[derive(Debug)]
pub struct NewChallenge<'a> {
    pub purpose: Purpose,
    /// Whose ceremony it is, when that is known at the start.
    pub user: Option<UserId>,
    /// A digest naming the browser; see the module documentation.
    pub binding: &'a str,
    /// The ceremony state (sealed before it is stored).
    pub state: &'a [u8],
    pub expires_at: DateTime<Utc>,
}

/// A ceremony taken back to be finished; it no longer exists in the database.
pub struct Challenge {
    pub purpose: Purpose,
    pub user_id: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The state as given to [`insert`], unsealed.
    pub state: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Challenge")
            .field("purpose", &self.purpose)
            .field("user_id", &self.user_id)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

fn aad(tenant: &str, id_hash: &str, purpose: &str, user: Option<&str>, binding: &str) -> Vec<u8> {
    format!(
        "gatehouse/webauthn-challenge/v1/{tenant}/{id_hash}/{purpose}/{}/{binding}",
        user.unwrap_or("-")
    )
    .into_bytes()
}

/// Remembers a ceremony under `id_hash` (the SHA-256 of the id the browser holds).
pub fn insert(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    id_hash: &str,
    new: NewChallenge<'_>,
) -> StoreResult<()> {
    if new.binding.is_empty() {
        return Err(StoreError::invalid(
            "webauthn challenge",
            "a ceremony must be bound to a browser",
        ));
    }
    let tenant = tenant.to_string();
    let user = new.user.map(|user| user.to_string());
    let purpose = new.purpose.as_str();
    let sealed = cipher.seal(
        new.state,
        &aad(&tenant, id_hash, purpose, user.as_deref(), new.binding),
    );
    diesel::insert_into(challenges::table)
        .values((
            challenges::id_hash.eq(id_hash),
            challenges::tenant_id.eq(&tenant),
            challenges::purpose.eq(purpose),
            challenges::user_id.eq(user.as_deref()),
            challenges::binding.eq(new.binding),
            challenges::state.eq(sealed),
            challenges::created_at.eq(now.naive_utc()),
            challenges::expires_at.eq(new.expires_at.naive_utc()),
        ))
        .execute(conn)
        .map_err(map_missing_reference("user"))?;
    Ok(())
}

type Row = (
    String,
    Option<String>,
    String,
    String,
    NaiveDateTime,
    NaiveDateTime,
);

/// Takes the ceremony `id_hash` of this tenant out of the database and returns it
/// if it is for `purpose`, bound to `binding` and not expired at `now`. `None` for
/// an unknown, already taken, expired, other-purpose or other-binding challenge
/// (deliberately one answer); in every case but the unknown one the row is gone
/// afterwards, so a challenge is presented at most once.
pub fn take(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    id_hash: &str,
    purpose: Purpose,
    binding: &str,
) -> StoreResult<Option<Challenge>> {
    let tenant = tenant.to_string();
    let row: Option<Row> = diesel::delete(
        challenges::table
            .filter(challenges::id_hash.eq(id_hash))
            .filter(challenges::tenant_id.eq(&tenant)),
    )
    .returning((
        challenges::purpose,
        challenges::user_id,
        challenges::binding,
        challenges::state,
        challenges::created_at,
        challenges::expires_at,
    ))
    .get_result(conn)
    .optional()?;
    let Some((stored_purpose, user, stored_binding, sealed, created_at, expires_at)) = row else {
        return Ok(None);
    };
    let live = expires_at.and_utc() > now;
    if !live || stored_purpose != purpose.as_str() || !same(&stored_binding, binding) {
        return Ok(None);
    }
    let state = cipher.open(
        &sealed,
        &aad(
            &tenant,
            id_hash,
            &stored_purpose,
            user.as_deref(),
            &stored_binding,
        ),
    )?;
    Ok(Some(Challenge {
        purpose: Purpose::parse(&stored_purpose)?,
        user_id: user
            .map(|user| user.parse().map_err(|e| StoreError::corrupt(TABLE, e)))
            .transpose()?,
        created_at: created_at.and_utc(),
        expires_at: expires_at.and_utc(),
        state,
    }))
}

/// Compares without an early exit, so the time taken says nothing about how much of
/// a binding matched.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0_u8, |difference, (x, y)| difference | (x ^ y))
            == 0
}

/// Deletes every challenge that expired at or before `now` (abandoned ceremonies);
/// returns how many went.
pub fn prune_expired(conn: &mut AnyConnection, now: DateTime<Utc>) -> StoreResult<usize> {
    Ok(
        diesel::delete(challenges::table.filter(challenges::expires_at.le(now.naive_utc())))
            .execute(conn)?,
    )
}
