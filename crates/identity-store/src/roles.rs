//! Roles and their assignment to users: the entitlements that claims and policies read.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{RoleId, TenantId, UserId};

use crate::error::{linked, map_unique, touched_one};
use crate::keys::fold;
use crate::schema::{role_assignments, roles};
use crate::{AnyConnection, Page, PageRequest, StoreError, StoreResult};

const ENTITY: &str = "role";

#[derive(Debug, Clone, PartialEq)]
pub struct Role {
    pub id: RoleId,
    pub tenant_id: TenantId,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RoleData {
    pub name: String,
    pub description: Option<String>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = roles)]
struct RoleRow {
    id: String,
    tenant_id: String,
    name: String,
    name_key: String,
    description: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    version: i64,
}

impl TryFrom<RoleRow> for Role {
    type Error = StoreError;
    fn try_from(row: RoleRow) -> StoreResult<Role> {
        let corrupt = |e: uuid::Error| StoreError::corrupt("roles", e);
        Ok(Role {
            id: row.id.parse().map_err(corrupt)?,
            tenant_id: row.tenant_id.parse().map_err(corrupt)?,
            name: row.name,
            description: row.description,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
            version: row.version,
        })
    }
}

fn conflict() -> impl Fn(diesel::result::Error) -> StoreError {
    map_unique(ENTITY, &[("roles_name_key", "roles.name_key", "name")])
}

fn validate(data: &RoleData) -> StoreResult<()> {
    let name = data.name.trim();
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(StoreError::invalid(
            ENTITY,
            "name must be one word, not empty",
        ));
    }
    Ok(())
}

pub fn create(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    data: RoleData,
) -> StoreResult<Role> {
    validate(&data)?;
    let row = RoleRow {
        id: RoleId::new().to_string(),
        tenant_id: tenant.to_string(),
        name_key: fold(&data.name),
        name: data.name.trim().to_owned(),
        description: data.description,
        created_at: now.naive_utc(),
        updated_at: now.naive_utc(),
        version: 1,
    };
    diesel::insert_into(roles::table)
        .values(&row)
        .execute(conn)
        .map_err(conflict())?;
    row.try_into()
}

pub fn get(conn: &mut AnyConnection, tenant: TenantId, id: RoleId) -> StoreResult<Role> {
    roles::table
        .filter(roles::tenant_id.eq(tenant.to_string()))
        .filter(roles::id.eq(id.to_string()))
        .select(RoleRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound { entity: ENTITY })?
        .try_into()
}

pub fn find_by_name(
    conn: &mut AnyConnection,
    tenant: TenantId,
    name: &str,
) -> StoreResult<Option<Role>> {
    roles::table
        .filter(roles::tenant_id.eq(tenant.to_string()))
        .filter(roles::name_key.eq(fold(name)))
        .select(RoleRow::as_select())
        .first(conn)
        .optional()?
        .map(Role::try_from)
        .transpose()
}

pub fn update(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    id: RoleId,
    expected_version: i64,
    data: RoleData,
) -> StoreResult<Role> {
    validate(&data)?;
    let updated = diesel::update(
        roles::table
            .filter(roles::tenant_id.eq(tenant.to_string()))
            .filter(roles::id.eq(id.to_string()))
            .filter(roles::version.eq(expected_version)),
    )
    .set((
        roles::name.eq(data.name.trim()),
        roles::name_key.eq(fold(&data.name)),
        roles::description.eq(data.description),
        roles::updated_at.eq(now.naive_utc()),
        roles::version.eq(expected_version + 1),
    ))
    .execute(conn)
    .map_err(conflict())?;
    if updated == 0 {
        get(conn, tenant, id)?;
        return Err(StoreError::StaleVersion { entity: ENTITY });
    }
    get(conn, tenant, id)
}

pub fn delete(conn: &mut AnyConnection, tenant: TenantId, id: RoleId) -> StoreResult<()> {
    let deleted = diesel::delete(
        roles::table
            .filter(roles::tenant_id.eq(tenant.to_string()))
            .filter(roles::id.eq(id.to_string())),
    )
    .execute(conn)?;
    touched_one(deleted, ENTITY)
}

pub fn list(
    conn: &mut AnyConnection,
    tenant: TenantId,
    page: &PageRequest,
) -> StoreResult<Page<Role>> {
    let rows: Vec<RoleRow> = roles::table
        .filter(roles::tenant_id.eq(tenant.to_string()))
        .filter(roles::id.gt(page.cursor()))
        .order(roles::id.asc())
        .limit(page.fetch_limit()?)
        .select(RoleRow::as_select())
        .load(conn)?;
    Page::convert_rows(rows, page, |r: &Role| r.id.to_string())
}

/// Assigns a role; returns false if the user already had it.
pub fn assign(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    role: RoleId,
    user: UserId,
) -> StoreResult<bool> {
    let inserted = diesel::insert_into(role_assignments::table)
        .values((
            role_assignments::tenant_id.eq(tenant.to_string()),
            role_assignments::role_id.eq(role.to_string()),
            role_assignments::user_id.eq(user.to_string()),
            role_assignments::created_at.eq(now.naive_utc()),
        ))
        .execute(conn);
    linked(inserted, "role assignee")
}

/// Removes an assignment; returns false if there was none.
pub fn unassign(
    conn: &mut AnyConnection,
    tenant: TenantId,
    role: RoleId,
    user: UserId,
) -> StoreResult<bool> {
    let deleted = diesel::delete(
        role_assignments::table
            .filter(role_assignments::tenant_id.eq(tenant.to_string()))
            .filter(role_assignments::role_id.eq(role.to_string()))
            .filter(role_assignments::user_id.eq(user.to_string())),
    )
    .execute(conn)?;
    Ok(deleted > 0)
}

/// The roles of each of `users` (at most [`crate::MAX_BATCH`]), by name; users
/// without a role are left out. One query for all.
pub fn roles_of_users(
    conn: &mut AnyConnection,
    tenant: TenantId,
    users: &[UserId],
) -> StoreResult<HashMap<UserId, Vec<Role>>> {
    let ids = crate::batch_ids(users)?;
    let rows: Vec<(String, RoleRow)> = roles::table
        .inner_join(role_assignments::table.on(role_assignments::role_id.eq(roles::id)))
        .filter(role_assignments::tenant_id.eq(tenant.to_string()))
        .filter(role_assignments::user_id.eq_any(&ids))
        .order((role_assignments::user_id.asc(), roles::name_key.asc()))
        .select((role_assignments::user_id, RoleRow::as_select()))
        .load(conn)?;
    let mut out: HashMap<UserId, Vec<Role>> = HashMap::new();
    for (user, row) in rows {
        let user = user
            .parse()
            .map_err(|e| StoreError::corrupt("role_assignments", &e))?;
        out.entry(user).or_default().push(Role::try_from(row)?);
    }
    Ok(out)
}

pub fn roles_of_user(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
) -> StoreResult<Vec<Role>> {
    let rows: Vec<RoleRow> = roles::table
        .inner_join(role_assignments::table.on(role_assignments::role_id.eq(roles::id)))
        .filter(role_assignments::tenant_id.eq(tenant.to_string()))
        .filter(role_assignments::user_id.eq(user.to_string()))
        .order(roles::name_key.asc())
        .select(RoleRow::as_select())
        .load(conn)?;
    rows.into_iter().map(Role::try_from).collect()
}
