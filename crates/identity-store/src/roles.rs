//! Roles and their assignment to users: the entitlements that claims and policies read.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{RoleId, TenantId, UserId};

use crate::error::{linked, map_unique, parse_column, touched_one, versioned};
use crate::keys::fold;
use crate::query::{FromRow, LoadItems, items_by_user, tenant_row, tenant_rows};
use crate::schema::{role_assignments, roles};
use crate::{AnyConnection, Page, PageRequest, StoreError, StoreResult};

const ENTITY: &str = "role";

/// The role of the people who administer Gatehouse itself (the first administrator
/// bootstrapped at first start holds it).
pub const ADMINISTRATOR: &str = "gatehouse-admin";

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
pub(crate) struct RoleRow {
    id: String,
    tenant_id: String,
    name: String,
    name_key: String,
    description: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    version: i64,
}

impl FromRow for Role {
    type Row = RoleRow;
    fn from_row(row: RoleRow) -> StoreResult<Role> {
        Ok(Role {
            id: parse_column("roles", &row.id)?,
            tenant_id: parse_column("roles", &row.tenant_id)?,
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
    Role::from_row(row)
}

pub fn get(conn: &mut AnyConnection, tenant: TenantId, id: RoleId) -> StoreResult<Role> {
    tenant_row!(roles, tenant, id).one_item(conn, ENTITY)
}

pub fn find_by_name(
    conn: &mut AnyConnection,
    tenant: TenantId,
    name: &str,
) -> StoreResult<Option<Role>> {
    tenant_rows!(roles, tenant)
        .filter(roles::name_key.eq(fold(name)))
        .first_item(conn)
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
    let updated =
        diesel::update(tenant_row!(roles, tenant, id).filter(roles::version.eq(expected_version)))
            .set((
                roles::name.eq(data.name.trim()),
                roles::name_key.eq(fold(&data.name)),
                roles::description.eq(data.description),
                roles::updated_at.eq(now.naive_utc()),
                roles::version.eq(expected_version + 1),
            ))
            .execute(conn)
            .map_err(conflict())?;
    versioned(updated, ENTITY, || get(conn, tenant, id))
}

pub fn delete(conn: &mut AnyConnection, tenant: TenantId, id: RoleId) -> StoreResult<()> {
    let deleted = diesel::delete(tenant_row!(roles, tenant, id)).execute(conn)?;
    touched_one(deleted, ENTITY)
}

pub fn list(
    conn: &mut AnyConnection,
    tenant: TenantId,
    page: &PageRequest,
) -> StoreResult<Page<Role>> {
    let roles = page
        .of_rows(tenant_rows!(roles, tenant), roles::id)?
        .load_items(conn)?;
    Ok(Page::from_rows(roles, page, |r: &Role| r.id.to_string()))
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

/// What [`reconcile_sourced`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub added: Vec<RoleId>,
    pub removed: Vec<RoleId>,
}

/// Makes the roles `source` gave the user exactly `wanted` (a partner's mapping
/// rules, `connection:<id>`, at each sign-in): adds those the user lacks, removes
/// those this source gave that are no longer wanted. Assignments made otherwise (an
/// operator's, another connection's) are never removed, and a role the user already
/// holds from elsewhere is not taken over.
pub fn reconcile_sourced(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    source: &str,
    wanted: &[RoleId],
) -> StoreResult<Reconciled> {
    let wanted: Vec<String> = wanted.iter().map(ToString::to_string).collect();
    let stale: Vec<String> = tenant_rows!(role_assignments, tenant)
        .filter(role_assignments::user_id.eq(user.to_string()))
        .filter(role_assignments::source.eq(source))
        .filter(role_assignments::role_id.ne_all(&wanted))
        .select(role_assignments::role_id)
        .load(conn)?;
    diesel::delete(
        tenant_rows!(role_assignments, tenant)
            .filter(role_assignments::user_id.eq(user.to_string()))
            .filter(role_assignments::source.eq(source))
            .filter(role_assignments::role_id.eq_any(&stale)),
    )
    .execute(conn)?;
    let held: Vec<String> = tenant_rows!(role_assignments, tenant)
        .filter(role_assignments::user_id.eq(user.to_string()))
        .select(role_assignments::role_id)
        .load(conn)?;
    let mut added = Vec::new();
    for role in wanted.iter().filter(|role| !held.contains(role)) {
        // A concurrent sign-in (or an operator) may assign it after the read above.
        let inserted = crate::db::insert_unless_present(conn, |conn| {
            diesel::insert_into(role_assignments::table)
                .values((
                    role_assignments::tenant_id.eq(tenant.to_string()),
                    role_assignments::role_id.eq(role),
                    role_assignments::user_id.eq(user.to_string()),
                    role_assignments::created_at.eq(now.naive_utc()),
                    role_assignments::source.eq(source),
                ))
                .execute(conn)
                .map_err(StoreError::from)
        })?;
        if inserted {
            added.push(parse_role_id(role)?);
        }
    }
    Ok(Reconciled {
        added,
        removed: stale
            .iter()
            .map(|role| parse_role_id(role))
            .collect::<StoreResult<_>>()?,
    })
}

fn parse_role_id(id: &str) -> StoreResult<RoleId> {
    id.parse()
        .map_err(|_| StoreError::corrupt("role_assignments", format!("bad role id {id}")))
}

/// Removes an assignment; returns false if there was none.
pub fn unassign(
    conn: &mut AnyConnection,
    tenant: TenantId,
    role: RoleId,
    user: UserId,
) -> StoreResult<bool> {
    let deleted = diesel::delete(
        tenant_rows!(role_assignments, tenant)
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
    items_by_user(rows, "role_assignments")
}

pub fn roles_of_user(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
) -> StoreResult<Vec<Role>> {
    roles::table
        .inner_join(role_assignments::table.on(role_assignments::role_id.eq(roles::id)))
        .filter(role_assignments::tenant_id.eq(tenant.to_string()))
        .filter(role_assignments::user_id.eq(user.to_string()))
        .order(roles::name_key.asc())
        .load_items(conn)
}
