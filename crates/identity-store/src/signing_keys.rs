//! Token signing keys (JWS keys for access and ID tokens), per tenant and algorithm.
//!
//! A key moves through three states and never back:
//! `next` (published in the JWKS, not yet signing) → `active` (signs) → `retired`
//! (no longer signs, still published until `publish_until` so that tokens it signed
//! can be verified until they expire; then [`prune`] deletes it). At most one key per
//! tenant and algorithm is `next` and at most one is `active`: a unique partial index
//! enforces it, so two nodes rotating at once cannot both win.
//!
//! The private key is sealed with the master key before it reaches the database, with
//! associated data naming tenant, kid and algorithm, so a sealed key copied onto
//! another row (or another tenant) does not open. The store never holds it in clear;
//! generating keys and deciding when to rotate belong to the token issuer.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::TenantId;
use gatehouse_core::secrets::Cipher;
use zeroize::Zeroizing;

use crate::error::{map_missing_reference, map_unique, parse_column};
use crate::query::{FromRow, LoadItems, tenant_rows};
use crate::schema::signing_keys;
use crate::{AnyConnection, StoreError, StoreResult};

const ENTITY: &str = "signing key";
const TABLE: &str = "signing_keys";

/// JWS algorithm of a key. Stored as its JOSE name (`ES256`, `RS256`, `EdDSA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    Es256,
    Rs256,
    EdDsa,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 3] = [
        KeyAlgorithm::Es256,
        KeyAlgorithm::Rs256,
        KeyAlgorithm::EdDsa,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Es256 => "ES256",
            KeyAlgorithm::Rs256 => "RS256",
            KeyAlgorithm::EdDsa => "EdDSA",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        KeyAlgorithm::ALL
            .into_iter()
            .find(|alg| alg.as_str() == value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyState {
    /// Published in the JWKS so relying parties can cache it; does not sign yet.
    Next,
    /// The one key of its tenant and algorithm that signs.
    Active,
    /// No longer signs; published until `publish_until`.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }

    fn parse(value: &str) -> StoreResult<Self> {
        Ok(match value {
            "next" => KeyState::Next,
            "active" => KeyState::Active,
            "retired" => KeyState::Retired,
            other => return Err(StoreError::corrupt(TABLE, format!("unknown state {other}"))),
        })
    }
}

#[derive(Debug, Clone)]
pub struct SigningKey {
    pub kid: String,
    pub tenant_id: TenantId,
    pub alg: KeyAlgorithm,
    /// The public key as a JWK (JSON text), as published.
    pub public_jwk: String,
    pub state: KeyState,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
    /// Set when the key retires: the end of its publication in the JWKS.
    pub publish_until: Option<DateTime<Utc>>,
    sealed: String,
}

impl SigningKey {
    /// Opens the private key. Done on demand, so listing or publishing keys never
    /// decrypts them.
    pub fn private_key(&self, cipher: &Cipher) -> StoreResult<Zeroizing<Vec<u8>>> {
        Ok(cipher.open(&self.sealed, &aad(self.tenant_id, &self.kid, self.alg))?)
    }

    /// Whether the key belongs in the JWKS at `now`.
    pub fn is_published_at(&self, now: DateTime<Utc>) -> bool {
        match self.state {
            KeyState::Next | KeyState::Active => true,
            KeyState::Retired => self.publish_until.is_some_and(|until| until > now),
        }
    }
}

pub(crate) fn aad(tenant: TenantId, kid: &str, alg: KeyAlgorithm) -> Vec<u8> {
    format!("gatehouse/signing-key/v1/{tenant}/{kid}/{}", alg.as_str()).into_bytes()
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
pub(crate) struct SigningKeyRow {
    kid: String,
    tenant_id: String,
    alg: String,
    private_key: String,
    public_jwk: String,
    state: String,
    created_at: NaiveDateTime,
    activated_at: Option<NaiveDateTime>,
    retired_at: Option<NaiveDateTime>,
    publish_until: Option<NaiveDateTime>,
}

impl FromRow for SigningKey {
    type Row = SigningKeyRow;
    fn from_row(row: SigningKeyRow) -> StoreResult<SigningKey> {
        Ok(SigningKey {
            tenant_id: parse_column(TABLE, &row.tenant_id)?,
            alg: KeyAlgorithm::parse(&row.alg).ok_or_else(|| {
                StoreError::corrupt(TABLE, format!("unknown algorithm {}", row.alg))
            })?,
            state: KeyState::parse(&row.state)?,
            kid: row.kid,
            public_jwk: row.public_jwk,
            created_at: row.created_at.and_utc(),
            activated_at: row.activated_at.map(|t| t.and_utc()),
            retired_at: row.retired_at.map(|t| t.and_utc()),
            publish_until: row.publish_until.map(|t| t.and_utc()),
            sealed: row.private_key,
        })
    }
}

#[derive(Debug)]
pub struct NewSigningKey<'a> {
    /// Globally unique (the primary key); the issuer uses the RFC 7638 thumbprint.
    pub kid: String,
    pub alg: KeyAlgorithm,
    /// The private key in clear (PKCS#8 DER); sealed here before it is stored.
    pub private_key: &'a [u8],
    pub public_jwk: String,
    /// `Next` or `Active`: a key is never created retired.
    pub state: KeyState,
}

/// Stores a new key. Fails with `Conflict { field: "state" }` when the tenant already
/// has a key of this algorithm in that state, `Conflict { field: "kid" }` for a
/// duplicate kid, and `NotFound` for an unknown tenant.
pub fn insert(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    new: NewSigningKey<'_>,
) -> StoreResult<SigningKey> {
    if new.state == KeyState::Retired {
        return Err(StoreError::invalid(ENTITY, "a new key cannot be retired"));
    }
    if new.kid.is_empty() {
        return Err(StoreError::invalid(ENTITY, "empty kid"));
    }
    let row = SigningKeyRow {
        private_key: cipher.seal(new.private_key, &aad(tenant, &new.kid, new.alg)),
        kid: new.kid,
        tenant_id: tenant.to_string(),
        alg: new.alg.as_str().to_owned(),
        public_jwk: new.public_jwk,
        state: new.state.as_str().to_owned(),
        created_at: now.naive_utc(),
        activated_at: (new.state == KeyState::Active).then(|| now.naive_utc()),
        retired_at: None,
        publish_until: None,
    };
    diesel::insert_into(signing_keys::table)
        .values(&row)
        .execute(conn)
        .map_err(|e| match map_missing_reference("tenant")(e) {
            StoreError::Database(e) => map_unique(
                ENTITY,
                &[
                    ("signing_keys_pkey", "signing_keys.kid", "kid"),
                    (
                        "signing_keys_one_per_state_key",
                        "signing_keys.state",
                        "state",
                    ),
                ],
            )(e),
            other => other,
        })?;
    SigningKey::from_row(row)
}

pub fn get(conn: &mut AnyConnection, tenant: TenantId, kid: &str) -> StoreResult<SigningKey> {
    tenant_rows!(signing_keys, tenant)
        .filter(signing_keys::kid.eq(kid))
        .one_item(conn, ENTITY)
}

/// Every key of the tenant, retired and past publication included, oldest first.
pub fn list(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<Vec<SigningKey>> {
    tenant_rows!(signing_keys, tenant)
        .order((signing_keys::created_at.asc(), signing_keys::kid.asc()))
        .load_items(conn)
}

/// The keys that belong in the tenant's JWKS at `now`: `next`, `active`, and
/// `retired` ones whose `publish_until` is still ahead. Oldest first.
pub fn list_published(
    conn: &mut AnyConnection,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> StoreResult<Vec<SigningKey>> {
    tenant_rows!(signing_keys, tenant)
        .filter(
            signing_keys::state
                .eq_any([KeyState::Next.as_str(), KeyState::Active.as_str()])
                .or(signing_keys::state
                    .eq(KeyState::Retired.as_str())
                    .and(signing_keys::publish_until.gt(now.naive_utc()))),
        )
        .order((signing_keys::created_at.asc(), signing_keys::kid.asc()))
        .load_items(conn)
}

/// The tenant's key of `alg` in `state` (`Next` or `Active`, of which there is at
/// most one); for `Retired` the newest.
pub fn find(
    conn: &mut AnyConnection,
    tenant: TenantId,
    alg: KeyAlgorithm,
    state: KeyState,
) -> StoreResult<Option<SigningKey>> {
    tenant_rows!(signing_keys, tenant)
        .filter(signing_keys::alg.eq(alg.as_str()))
        .filter(signing_keys::state.eq(state.as_str()))
        .order((signing_keys::created_at.desc(), signing_keys::kid.desc()))
        .first_item(conn)
}

/// The key that signs for `alg`, if any.
pub fn active(
    conn: &mut AnyConnection,
    tenant: TenantId,
    alg: KeyAlgorithm,
) -> StoreResult<Option<SigningKey>> {
    find(conn, tenant, alg, KeyState::Active)
}

/// Serialises rotation decisions for a tenant until the surrounding transaction
/// ends, so two nodes that both find a rotation due cannot rotate twice in a row
/// (the second would activate a key published a moment ago). PostgreSQL: a
/// transaction-scoped advisory lock. SQLite: a write that takes the database's
/// write lock (SQLite has one writer anyway).
pub fn lock_for_rotation(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<()> {
    use diesel::sql_types::Text;
    match conn.backend() {
        crate::Backend::Postgres => {
            diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind::<Text, _>(format!("gatehouse/signing-keys/{tenant}"))
                .execute(conn)?;
        }
        crate::Backend::Sqlite => {
            diesel::sql_query("UPDATE signing_keys SET kid = kid WHERE tenant_id = ? AND 0")
                .bind::<Text, _>(tenant.to_string())
                .execute(conn)?;
        }
    }
    Ok(())
}

/// What [`advance`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advanced {
    /// The kid that went from `active` to `retired`.
    pub retired: Option<String>,
    /// The kid that went from `next` to `active`.
    pub activated: Option<String>,
}

/// Moves the tenant's keys of `alg` one step along, if there is a `next` key: the
/// `active` key retires (published until `retired_publish_until`) and the `next`
/// key becomes active. Without a `next` key nothing changes, so a tenant is never
/// left without a signing key.
///
/// Both steps are conditional updates on the current state (no read first): the
/// first statement is a write, so SQLite takes its write lock at once, and a
/// concurrent advance either finds nothing left to move or trips the unique index
/// (`Conflict`). Run it inside a transaction together with inserting the new `next`.
pub fn advance(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    alg: KeyAlgorithm,
    retired_publish_until: DateTime<Utc>,
) -> StoreResult<Advanced> {
    let next_keys = diesel::alias!(signing_keys as next_keys);
    let has_next = diesel::dsl::exists(
        next_keys
            .filter(
                next_keys
                    .field(signing_keys::tenant_id)
                    .eq(tenant.to_string()),
            )
            .filter(next_keys.field(signing_keys::alg).eq(alg.as_str()))
            .filter(
                next_keys
                    .field(signing_keys::state)
                    .eq(KeyState::Next.as_str()),
            )
            .select(next_keys.field(signing_keys::kid)),
    );
    let conflict = || {
        map_unique(
            ENTITY,
            &[(
                "signing_keys_one_per_state_key",
                "signing_keys.state",
                "state",
            )],
        )
    };
    let retired: Vec<String> = diesel::update(
        tenant_rows!(signing_keys, tenant)
            .filter(signing_keys::alg.eq(alg.as_str()))
            .filter(signing_keys::state.eq(KeyState::Active.as_str()))
            .filter(has_next),
    )
    .set((
        signing_keys::state.eq(KeyState::Retired.as_str()),
        signing_keys::retired_at.eq(Some(now.naive_utc())),
        signing_keys::publish_until.eq(Some(retired_publish_until.naive_utc())),
    ))
    .returning(signing_keys::kid)
    .get_results(conn)
    .map_err(conflict())?;
    let activated: Vec<String> = diesel::update(
        tenant_rows!(signing_keys, tenant)
            .filter(signing_keys::alg.eq(alg.as_str()))
            .filter(signing_keys::state.eq(KeyState::Next.as_str())),
    )
    .set((
        signing_keys::state.eq(KeyState::Active.as_str()),
        signing_keys::activated_at.eq(Some(now.naive_utc())),
    ))
    .returning(signing_keys::kid)
    .get_results(conn)
    .map_err(conflict())?;
    Ok(Advanced {
        retired: retired.into_iter().next(),
        activated: activated.into_iter().next(),
    })
}

/// Deletes the tenant's retired keys whose publication has ended (`publish_until`
/// at or before `now`); returns how many went.
pub fn prune(conn: &mut AnyConnection, now: DateTime<Utc>, tenant: TenantId) -> StoreResult<usize> {
    Ok(diesel::delete(
        tenant_rows!(signing_keys, tenant)
            .filter(signing_keys::state.eq(KeyState::Retired.as_str()))
            .filter(
                signing_keys::publish_until
                    .le(now.naive_utc())
                    .or(signing_keys::publish_until.is_null()),
            ),
    )
    .execute(conn)?)
}
