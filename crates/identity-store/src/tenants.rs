//! Tenants: the unit of isolation. Every other table is scoped by a tenant id.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::TenantId;
use gatehouse_core::tenant_settings::TenantSettings;

use crate::error::{map_unique, parse_column, touched_one};
use crate::query::{FromRow, LoadItems};
use crate::schema::tenants;
use crate::{AnyConnection, Page, PageRequest, StoreError, StoreResult};

const ENTITY: &str = "tenant";

#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub id: TenantId,
    /// URL-safe name used in `/t/{slug}/…` paths; lowercase, unique.
    pub slug: String,
    pub display_name: String,
    /// Per-tenant settings (theme, registration policy, …) as a JSON object.
    pub settings: serde_json::Map<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    /// Set while an operator has the tenant disabled: nothing of it is served.
    pub disabled_at: Option<DateTime<Utc>>,
}

impl Tenant {
    /// The settings, typed: the one way features read them.
    pub fn typed_settings(&self) -> TenantSettings {
        TenantSettings::read(&self.settings)
    }
}

#[derive(Debug, Clone, Default)]
pub struct TenantData {
    pub slug: String,
    pub display_name: String,
    pub settings: serde_json::Map<String, serde_json::Value>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = tenants)]
pub(crate) struct TenantRow {
    id: String,
    slug: String,
    display_name: String,
    settings: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    version: i64,
    disabled_at: Option<NaiveDateTime>,
}

impl FromRow for Tenant {
    type Row = TenantRow;
    fn from_row(row: TenantRow) -> StoreResult<Tenant> {
        Ok(Tenant {
            id: parse_column("tenants", &row.id)?,
            slug: row.slug,
            display_name: row.display_name,
            settings: serde_json::from_str(&row.settings)
                .map_err(|e| StoreError::corrupt("tenants", e))?,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
            version: row.version,
            disabled_at: row.disabled_at.map(|at| at.and_utc()),
        })
    }
}

fn validate(data: &TenantData) -> StoreResult<String> {
    let slug = data.slug.trim().to_ascii_lowercase();
    let valid = !slug.is_empty()
        && slug.len() <= 63
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if !valid {
        return Err(StoreError::invalid(
            ENTITY,
            "slug must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
        ));
    }
    if data.display_name.trim().is_empty() {
        return Err(StoreError::invalid(
            ENTITY,
            "display name must not be empty",
        ));
    }
    Ok(slug)
}

/// Settings are checked when written, so every reader may trust their types; host
/// names are stored as they are matched.
fn checked_settings(data: &TenantData) -> StoreResult<serde_json::Map<String, serde_json::Value>> {
    TenantSettings::normalised(&data.settings)
        .map_err(|e| StoreError::invalid(ENTITY, e.to_string()))
}

fn conflict() -> impl Fn(diesel::result::Error) -> StoreError {
    map_unique(ENTITY, &[("tenants_slug_key", "tenants.slug", "slug")])
}

pub fn create(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    data: TenantData,
) -> StoreResult<Tenant> {
    let slug = validate(&data)?;
    let row = TenantRow {
        id: TenantId::new().to_string(),
        slug,
        display_name: data.display_name.trim().to_owned(),
        settings: serde_json::Value::Object(checked_settings(&data)?).to_string(),
        created_at: now.naive_utc(),
        updated_at: now.naive_utc(),
        version: 1,
        disabled_at: None,
    };
    let id: TenantId = parse_column("tenants", &row.id)?;
    crate::db::transaction(conn, |conn| {
        diesel::insert_into(tenants::table)
            .values(&row)
            .execute(conn)
            .map_err(conflict())?;
        crate::users::prepare_counts(conn, id)
    })?;
    Tenant::from_row(row)
}

pub fn get(conn: &mut AnyConnection, id: TenantId) -> StoreResult<Tenant> {
    tenants::table.find(id.to_string()).one_item(conn, ENTITY)
}

pub fn find_by_slug(conn: &mut AnyConnection, slug: &str) -> StoreResult<Option<Tenant>> {
    tenants::table
        .filter(tenants::slug.eq(slug.trim().to_ascii_lowercase()))
        .first_item(conn)
}

/// Replaces the tenant's data if `expected_version` is still current.
pub fn update(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    id: TenantId,
    expected_version: i64,
    data: TenantData,
) -> StoreResult<Tenant> {
    let slug = validate(&data)?;
    let updated = diesel::update(
        tenants::table
            .filter(tenants::id.eq(id.to_string()))
            .filter(tenants::version.eq(expected_version)),
    )
    .set((
        tenants::slug.eq(slug),
        tenants::display_name.eq(data.display_name.trim()),
        tenants::settings.eq(serde_json::Value::Object(checked_settings(&data)?).to_string()),
        tenants::updated_at.eq(now.naive_utc()),
        tenants::version.eq(expected_version + 1),
    ))
    .execute(conn)
    .map_err(conflict())?;
    if updated == 0 {
        // Distinguish "gone" from "changed under you".
        get(conn, id)?;
        return Err(StoreError::StaleVersion { entity: ENTITY });
    }
    get(conn, id)
}

/// Deletes the tenant row and, by cascade, everything that references it (users
/// and all that is theirs, clients, grants, keys, policies, purposes, the decision
/// log); the audit trail and the tables keyed by tenant without a reference stay.
/// [`delete_with_everything`] takes those too.
pub fn delete(conn: &mut AnyConnection, id: TenantId) -> StoreResult<()> {
    let deleted = diesel::delete(tenants::table.find(id.to_string())).execute(conn)?;
    touched_one(deleted, ENTITY)
}

/// Deletes the tenant with all of its data, its audit trail included; the number
/// of audit events removed. Run it in one transaction: all of it goes, or none.
pub fn delete_with_everything(conn: &mut AnyConnection, id: TenantId) -> StoreResult<usize> {
    delete(conn, id)?;
    crate::revoked_tokens::delete_for_tenant(conn, id)?;
    crate::rate_limits::delete_for_tenant(conn, id)?;
    crate::audit::delete_for_deleted_tenant(conn, id)
}

pub fn list(conn: &mut AnyConnection, page: &PageRequest) -> StoreResult<Page<Tenant>> {
    let tenants = page
        .of_rows(tenants::table, tenants::id)?
        .load_items(conn)?;
    Ok(Page::from_rows(tenants, page, |t: &Tenant| {
        t.id.to_string()
    }))
}

/// Disables (`true`) or enables the tenant; false when it already was so. A new
/// version, so a change made at the old one conflicts.
pub fn set_disabled(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    id: TenantId,
    disabled: bool,
) -> StoreResult<bool> {
    let state = tenants::table.find(id.to_string());
    let changed = if disabled {
        diesel::update(state.filter(tenants::disabled_at.is_null()))
            .set((
                tenants::disabled_at.eq(Some(now.naive_utc())),
                tenants::updated_at.eq(now.naive_utc()),
                tenants::version.eq(tenants::version + 1),
            ))
            .execute(conn)?
    } else {
        diesel::update(state.filter(tenants::disabled_at.is_not_null()))
            .set((
                tenants::disabled_at.eq(None::<chrono::NaiveDateTime>),
                tenants::updated_at.eq(now.naive_utc()),
                tenants::version.eq(tenants::version + 1),
            ))
            .execute(conn)?
    };
    if changed == 0 {
        // Already so, or no such tenant.
        get(conn, id)?;
    }
    Ok(changed == 1)
}
