//! Credentials: password hashes, TOTP secrets, passkeys, recovery codes.
//!
//! `data` is always sealed with the master key before it reaches the database, with
//! associated data naming the row, so a sealed value copied onto another user's row
//! does not open. The store never holds a credential in clear.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{CredentialId, TenantId, UserId};
use gatehouse_core::secrets::Cipher;
use zeroize::Zeroizing;

use crate::error::{is_unique_violation, map_missing_reference, parse_column, touched_one};
use crate::query::{FromRow, LoadItems, tenant_row, tenant_rows};
use crate::schema::credentials;
use crate::{AnyConnection, StoreError, StoreResult};

const ENTITY: &str = "credential";

/// What a credential is. Stored as text so new kinds need no migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    Password,
    Totp,
    Webauthn,
    RecoveryCode,
    /// The one-time secret that lets the first administrator finish set-up.
    SetupSecret,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Password => "password",
            CredentialKind::Totp => "totp",
            CredentialKind::Webauthn => "webauthn",
            CredentialKind::RecoveryCode => "recovery_code",
            CredentialKind::SetupSecret => "setup_secret",
        }
    }

    pub(crate) fn parse(value: &str) -> StoreResult<Self> {
        Ok(match value {
            "password" => CredentialKind::Password,
            "totp" => CredentialKind::Totp,
            "webauthn" => CredentialKind::Webauthn,
            "recovery_code" => CredentialKind::RecoveryCode,
            "setup_secret" => CredentialKind::SetupSecret,
            other => {
                return Err(StoreError::corrupt(
                    "credentials",
                    format!("unknown kind {other}"),
                ));
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct Credential {
    pub id: CredentialId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub kind: CredentialKind,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// What the credential is found by without knowing its user, unique per tenant
    /// and kind: a passkey's credential id (base64url). `None` for other kinds.
    pub lookup_key: Option<String>,
    sealed: String,
}

impl Credential {
    /// Opens the secret. Done on demand so listings never decrypt what they don't show.
    pub fn secret(&self, cipher: &Cipher) -> StoreResult<Zeroizing<Vec<u8>>> {
        Ok(cipher.open(
            &self.sealed,
            &aad(self.tenant_id, self.user_id, self.id, self.kind),
        )?)
    }
}

pub(crate) fn aad(
    tenant: TenantId,
    user: UserId,
    id: CredentialId,
    kind: CredentialKind,
) -> Vec<u8> {
    format!(
        "gatehouse/credential/v1/{tenant}/{user}/{id}/{}",
        kind.as_str()
    )
    .into_bytes()
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = credentials)]
pub(crate) struct CredentialRow {
    id: String,
    tenant_id: String,
    user_id: String,
    kind: String,
    label: Option<String>,
    data: String,
    created_at: NaiveDateTime,
    last_used_at: Option<NaiveDateTime>,
    lookup_key: Option<String>,
}

impl FromRow for Credential {
    type Row = CredentialRow;
    fn from_row(row: CredentialRow) -> StoreResult<Credential> {
        Ok(Credential {
            id: parse_column("credentials", &row.id)?,
            tenant_id: parse_column("credentials", &row.tenant_id)?,
            user_id: parse_column("credentials", &row.user_id)?,
            kind: CredentialKind::parse(&row.kind)?,
            label: row.label,
            created_at: row.created_at.and_utc(),
            last_used_at: row.last_used_at.map(|t| t.and_utc()),
            lookup_key: row.lookup_key,
            sealed: row.data,
        })
    }
}

#[derive(Debug)]
pub struct NewCredential<'a> {
    pub kind: CredentialKind,
    pub label: Option<String>,
    pub secret: &'a [u8],
}

pub fn create(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    new: NewCredential<'_>,
) -> StoreResult<Credential> {
    insert(conn, cipher, now, tenant, user, new, None)
}

/// [`create`] for a credential found by `lookup_key` (see [`find_by_lookup_key`]).
/// [`StoreError::Conflict`] when the tenant already has a credential of this kind
/// with that key, whoever it belongs to.
pub fn create_with_lookup_key(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    new: NewCredential<'_>,
    lookup_key: &str,
) -> StoreResult<Credential> {
    insert(
        conn,
        cipher,
        now,
        tenant,
        user,
        new,
        Some(lookup_key.to_owned()),
    )
}

fn insert(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    new: NewCredential<'_>,
    lookup_key: Option<String>,
) -> StoreResult<Credential> {
    let id = CredentialId::new();
    let row = CredentialRow {
        id: id.to_string(),
        tenant_id: tenant.to_string(),
        user_id: user.to_string(),
        kind: new.kind.as_str().to_owned(),
        label: new.label,
        data: cipher.seal(new.secret, &aad(tenant, user, id, new.kind)),
        created_at: now.naive_utc(),
        last_used_at: None,
        lookup_key,
    };
    diesel::insert_into(credentials::table)
        .values(&row)
        .execute(conn)
        .map_err(|error| {
            if is_unique_violation(&error) {
                StoreError::Conflict {
                    entity: ENTITY,
                    field: "lookup key",
                }
            } else {
                map_missing_reference("user")(error)
            }
        })?;
    Credential::from_row(row)
}

/// The tenant's credential of `kind` with `lookup_key`, whoever it belongs to.
pub fn find_by_lookup_key(
    conn: &mut AnyConnection,
    tenant: TenantId,
    kind: CredentialKind,
    lookup_key: &str,
) -> StoreResult<Option<Credential>> {
    tenant_rows!(credentials, tenant)
        .filter(credentials::kind.eq(kind.as_str()))
        .filter(credentials::lookup_key.eq(lookup_key))
        .first_item(conn)
}

pub fn get(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: CredentialId,
) -> StoreResult<Credential> {
    tenant_row!(credentials, tenant, id).one_item(conn, ENTITY)
}

/// A user's credentials, oldest first; optionally only one kind. Bounded per user,
/// so no pagination.
pub fn list_for_user(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
    kind: Option<CredentialKind>,
) -> StoreResult<Vec<Credential>> {
    let mut query = tenant_rows!(credentials, tenant)
        .filter(credentials::user_id.eq(user.to_string()))
        .into_boxed();
    if let Some(kind) = kind {
        query = query.filter(credentials::kind.eq(kind.as_str()));
    }
    query.order(credentials::id.asc()).load_items(conn)
}

/// Replaces the secret, e.g. a password rehashed with new parameters.
pub fn replace_secret(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    credential: &Credential,
    secret: &[u8],
) -> StoreResult<()> {
    let sealed = cipher.seal(
        secret,
        &aad(
            credential.tenant_id,
            credential.user_id,
            credential.id,
            credential.kind,
        ),
    );
    let updated = diesel::update(tenant_row!(
        credentials,
        credential.tenant_id,
        credential.id
    ))
    .set(credentials::data.eq(sealed))
    .execute(conn)?;
    touched_one(updated, ENTITY)
}

/// Renames a credential (the name the user gave a passkey).
pub fn set_label(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: CredentialId,
    label: Option<&str>,
) -> StoreResult<()> {
    let updated = diesel::update(tenant_row!(credentials, tenant, id))
        .set(credentials::label.eq(label))
        .execute(conn)?;
    touched_one(updated, ENTITY)
}

pub fn mark_used(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    id: CredentialId,
) -> StoreResult<()> {
    let updated = diesel::update(tenant_row!(credentials, tenant, id))
        .set(credentials::last_used_at.eq(Some(now.naive_utc())))
        .execute(conn)?;
    touched_one(updated, ENTITY)
}

pub fn delete(conn: &mut AnyConnection, tenant: TenantId, id: CredentialId) -> StoreResult<()> {
    let deleted = diesel::delete(tenant_row!(credentials, tenant, id)).execute(conn)?;
    touched_one(deleted, ENTITY)
}

/// Deletes every credential of one kind for a user (e.g. all recovery codes on
/// regeneration); returns how many went.
pub fn delete_kind_for_user(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
    kind: CredentialKind,
) -> StoreResult<usize> {
    Ok(diesel::delete(
        tenant_rows!(credentials, tenant)
            .filter(credentials::user_id.eq(user.to_string()))
            .filter(credentials::kind.eq(kind.as_str())),
    )
    .execute(conn)?)
}
