//! Partners' identity providers (federation connections) and the email domains
//! that route to them (home-realm discovery).
//!
//! The store keeps a connection's settings, mapping rules as JSON documents and
//! leaves their meaning to the authentication crate, which parses them strictly.
//! The secrets (client secret, private keys) are one JSON document sealed with the
//! master key, with associated data naming the tenant and the connection, so a
//! sealed value copied into another row does not open.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{ConnectionId, TenantId};
use gatehouse_core::secrets::Cipher;
use zeroize::Zeroizing;

use crate::error::{map_missing_reference, map_unique, parse_column, touched_one, versioned};
use crate::query::{FromRow, LoadItems, tenant_row, tenant_rows};
use crate::schema::{federation_connections as connections, federation_domains as domains};
use crate::{AnyConnection, StoreError, StoreResult};

const ENTITY: &str = "connection";
const TABLE: &str = "federation_connections";

/// A connection as stored (its secrets only as whether there are any).
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub id: ConnectionId,
    pub tenant_id: TenantId,
    pub slug: String,
    /// `oidc` (later `saml`).
    pub kind: String,
    pub display_name: String,
    pub logo_url: Option<String>,
    pub enabled: bool,
    pub jit_provisioning: bool,
    pub trust_verified_email: bool,
    pub settings: serde_json::Value,
    pub mapping: serde_json::Value,
    pub has_secrets: bool,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// What a caller sets on a connection (all of it: an update replaces it).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionData {
    pub display_name: String,
    pub logo_url: Option<String>,
    pub enabled: bool,
    pub jit_provisioning: bool,
    pub trust_verified_email: bool,
    pub settings: serde_json::Value,
    pub mapping: serde_json::Value,
}

/// What an update does to the sealed secrets.
#[derive(Debug)]
pub enum SecretsChange<'a> {
    Keep,
    /// Replace them with this JSON document (sealed before it is stored).
    Set(&'a str),
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = connections)]
pub(crate) struct ConnectionRow {
    id: String,
    tenant_id: String,
    slug: String,
    kind: String,
    display_name: String,
    logo_url: Option<String>,
    enabled: bool,
    jit_provisioning: bool,
    trust_verified_email: bool,
    settings: String,
    mapping: String,
    secrets: Option<String>,
    last_error: Option<String>,
    last_error_at: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    version: i64,
}

impl FromRow for Connection {
    type Row = ConnectionRow;
    fn from_row(row: ConnectionRow) -> StoreResult<Connection> {
        let json = |text: &str| -> StoreResult<serde_json::Value> {
            serde_json::from_str(text).map_err(|e| StoreError::corrupt(TABLE, e))
        };
        Ok(Connection {
            id: parse_column(TABLE, &row.id)?,
            tenant_id: parse_column(TABLE, &row.tenant_id)?,
            settings: json(&row.settings)?,
            mapping: json(&row.mapping)?,
            slug: row.slug,
            kind: row.kind,
            display_name: row.display_name,
            logo_url: row.logo_url,
            enabled: row.enabled,
            jit_provisioning: row.jit_provisioning,
            trust_verified_email: row.trust_verified_email,
            has_secrets: row.secrets.is_some(),
            last_error: row.last_error,
            last_error_at: row.last_error_at.map(|at| at.and_utc()),
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
            version: row.version,
        })
    }
}

pub(crate) fn aad(tenant: TenantId, id: ConnectionId) -> Vec<u8> {
    format!("gatehouse/federation-connection/v1/{tenant}/{id}").into_bytes()
}

fn conflict() -> impl Fn(diesel::result::Error) -> StoreError {
    map_unique(
        ENTITY,
        &[(
            "federation_connections_tenant_id_slug_key",
            "federation_connections.slug",
            "slug",
        )],
    )
}

/// A slug is part of URLs (the redirect URI): lower-case ASCII letters, digits and
/// inner hyphens, at most 40.
pub fn valid_slug(slug: &str) -> bool {
    (1..=40).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-')
}

fn validate(data: &ConnectionData) -> StoreResult<()> {
    if data.display_name.trim().is_empty() {
        return Err(StoreError::invalid(ENTITY, "displayName must not be empty"));
    }
    Ok(())
}

fn text(value: &serde_json::Value) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::invalid(ENTITY, e.to_string()))
}

#[allow(clippy::too_many_arguments)]
pub fn create(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    slug: &str,
    kind: &str,
    data: ConnectionData,
    secrets: Option<&str>,
) -> StoreResult<Connection> {
    if !valid_slug(slug) {
        return Err(StoreError::invalid(
            ENTITY,
            "slug must be 1–40 lower-case letters, digits or inner hyphens",
        ));
    }
    validate(&data)?;
    let id = ConnectionId::new();
    let row = ConnectionRow {
        id: id.to_string(),
        tenant_id: tenant.to_string(),
        slug: slug.to_owned(),
        kind: kind.to_owned(),
        display_name: data.display_name.trim().to_owned(),
        logo_url: data.logo_url,
        enabled: data.enabled,
        jit_provisioning: data.jit_provisioning,
        trust_verified_email: data.trust_verified_email,
        settings: text(&data.settings)?,
        mapping: text(&data.mapping)?,
        secrets: secrets.map(|plain| cipher.seal(plain.as_bytes(), &aad(tenant, id))),
        last_error: None,
        last_error_at: None,
        created_at: now.naive_utc(),
        updated_at: now.naive_utc(),
        version: 1,
    };
    diesel::insert_into(connections::table)
        .values(&row)
        .execute(conn)
        .map_err(|e| match map_missing_reference("tenant")(e) {
            StoreError::Database(e) => conflict()(e),
            other => other,
        })?;
    Connection::from_row(row)
}

pub fn get(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: ConnectionId,
) -> StoreResult<Connection> {
    tenant_row!(connections, tenant, id).one_item(conn, ENTITY)
}

pub fn find_by_slug(
    conn: &mut AnyConnection,
    tenant: TenantId,
    slug: &str,
) -> StoreResult<Option<Connection>> {
    tenant_rows!(connections, tenant)
        .filter(connections::slug.eq(slug))
        .first_item(conn)
}

/// Every connection of the tenant, by slug.
pub fn list(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<Vec<Connection>> {
    tenant_rows!(connections, tenant)
        .order(connections::slug.asc())
        .load_items(conn)
}

/// The connection's secrets as given to [`create`] or [`update`], unsealed.
pub fn secrets(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    tenant: TenantId,
    id: ConnectionId,
) -> StoreResult<Option<Zeroizing<String>>> {
    let sealed: Option<Option<String>> = tenant_row!(connections, tenant, id)
        .select(connections::secrets)
        .first(conn)
        .optional()?;
    let Some(sealed) = sealed.ok_or(StoreError::NotFound { entity: ENTITY })? else {
        return Ok(None);
    };
    let plain = cipher.open(&sealed, &aad(tenant, id))?;
    let text = String::from_utf8(plain.to_vec()).map_err(|e| StoreError::corrupt(TABLE, e))?;
    Ok(Some(Zeroizing::new(text)))
}

/// Replaces what the caller sets, at the version they read.
#[allow(clippy::too_many_arguments)]
pub fn update(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    id: ConnectionId,
    expected_version: i64,
    data: ConnectionData,
    secrets: SecretsChange<'_>,
) -> StoreResult<Connection> {
    validate(&data)?;
    let target =
        tenant_row!(connections, tenant, id).filter(connections::version.eq(expected_version));
    let values = (
        connections::display_name.eq(data.display_name.trim().to_owned()),
        connections::logo_url.eq(data.logo_url),
        connections::enabled.eq(data.enabled),
        connections::jit_provisioning.eq(data.jit_provisioning),
        connections::trust_verified_email.eq(data.trust_verified_email),
        connections::settings.eq(text(&data.settings)?),
        connections::mapping.eq(text(&data.mapping)?),
        connections::updated_at.eq(now.naive_utc()),
        connections::version.eq(expected_version + 1),
    );
    let updated = match secrets {
        SecretsChange::Keep => diesel::update(target).set(values).execute(conn)?,
        SecretsChange::Set(plain) => diesel::update(target)
            .set((
                values,
                connections::secrets.eq(cipher.seal(plain.as_bytes(), &aad(tenant, id))),
            ))
            .execute(conn)?,
    };
    versioned(updated, ENTITY, || get(conn, tenant, id))
}

/// Records what went wrong with the connection at `now` (shown to operators), or
/// clears it with `None`.
pub fn record_error(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    id: ConnectionId,
    error: Option<&str>,
) -> StoreResult<()> {
    let updated = diesel::update(tenant_row!(connections, tenant, id))
        .set((
            connections::last_error.eq(error),
            connections::last_error_at.eq(error.map(|_| now.naive_utc())),
        ))
        .execute(conn)?;
    touched_one(updated, ENTITY)
}

/// Deletes the connection with its domains, linked identities and sign-ins in
/// flight (by cascade).
pub fn delete(conn: &mut AnyConnection, tenant: TenantId, id: ConnectionId) -> StoreResult<()> {
    let deleted = diesel::delete(tenant_row!(connections, tenant, id)).execute(conn)?;
    touched_one(deleted, ENTITY)
}

/// The email domains routed to the connection, in order.
pub fn domains_of(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: ConnectionId,
) -> StoreResult<Vec<String>> {
    Ok(tenant_rows!(domains, tenant)
        .filter(domains::connection_id.eq(id.to_string()))
        .order(domains::domain.asc())
        .select(domains::domain)
        .load(conn)?)
}

/// Routes exactly `wanted` (normalised domains) to the connection; a domain routed
/// to another connection of the tenant is a `Conflict` on `domain`.
pub fn set_domains(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: ConnectionId,
    wanted: &[String],
) -> StoreResult<()> {
    diesel::delete(tenant_rows!(domains, tenant).filter(domains::connection_id.eq(id.to_string())))
        .execute(conn)?;
    for domain in wanted {
        diesel::insert_into(domains::table)
            .values((
                domains::tenant_id.eq(tenant.to_string()),
                domains::domain.eq(domain),
                domains::connection_id.eq(id.to_string()),
            ))
            .execute(conn)
            .map_err(|e| match map_missing_reference(ENTITY)(e) {
                StoreError::Database(e) => map_unique(
                    ENTITY,
                    &[(
                        "federation_domains_pkey",
                        "federation_domains.domain",
                        "domain",
                    )],
                )(e),
                other => other,
            })?;
    }
    Ok(())
}

/// The connection an email domain (normalised) routes to.
pub fn find_by_domain(
    conn: &mut AnyConnection,
    tenant: TenantId,
    domain: &str,
) -> StoreResult<Option<Connection>> {
    let id: Option<String> = tenant_rows!(domains, tenant)
        .filter(domains::domain.eq(domain))
        .select(domains::connection_id)
        .first(conn)
        .optional()?;
    match id {
        Some(id) => Ok(Some(get(
            conn,
            tenant,
            parse_column("federation_domains", &id)?,
        )?)),
        None => Ok(None),
    }
}

/// Whether the tenant routes any email domain (the sign-in page then asks for the
/// identifier first).
pub fn any_domains(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<bool> {
    let found: Option<String> = tenant_rows!(domains, tenant)
        .select(domains::domain)
        .first(conn)
        .optional()?;
    Ok(found.is_some())
}
