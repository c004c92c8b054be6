//! Groups and their members (SCIM Group, RFC 7643 §4.2).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{GroupId, TenantId, UserId};

use crate::error::{
    linked, map_missing_reference, map_unique, parse_column, touched_one, versioned,
};
use crate::keys::fold;
use crate::query::{FromRow, LoadItems, items_by_user, tenant_row, tenant_rows};
use crate::schema::{group_members, groups};
use crate::{AnyConnection, Page, PageRequest, StoreError, StoreResult};

const ENTITY: &str = "group";

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: GroupId,
    pub tenant_id: TenantId,
    pub display_name: String,
    pub external_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone, Default)]
pub struct GroupData {
    pub display_name: String,
    pub external_id: Option<String>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = groups)]
pub(crate) struct GroupRow {
    id: String,
    tenant_id: String,
    display_name: String,
    display_name_key: String,
    external_id: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    version: i64,
}

impl FromRow for Group {
    type Row = GroupRow;
    fn from_row(row: GroupRow) -> StoreResult<Group> {
        Ok(Group {
            id: parse_column("groups", &row.id)?,
            tenant_id: parse_column("groups", &row.tenant_id)?,
            display_name: row.display_name,
            external_id: row.external_id,
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
            version: row.version,
        })
    }
}

fn conflict() -> impl Fn(diesel::result::Error) -> StoreError {
    map_unique(
        ENTITY,
        &[(
            "groups_display_name_key",
            "groups.display_name_key",
            "displayName",
        )],
    )
}

fn validate(data: &GroupData) -> StoreResult<()> {
    if data.display_name.trim().is_empty() {
        return Err(StoreError::invalid(ENTITY, "displayName must not be empty"));
    }
    Ok(())
}

pub fn create(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    data: GroupData,
) -> StoreResult<Group> {
    validate(&data)?;
    let row = GroupRow {
        id: GroupId::new().to_string(),
        tenant_id: tenant.to_string(),
        display_name_key: fold(&data.display_name),
        display_name: data.display_name.trim().to_owned(),
        external_id: data.external_id,
        created_at: now.naive_utc(),
        updated_at: now.naive_utc(),
        version: 1,
    };
    diesel::insert_into(groups::table)
        .values(&row)
        .execute(conn)
        .map_err(|e| match map_missing_reference("tenant")(e) {
            StoreError::Database(e) => conflict()(e),
            other => other,
        })?;
    Group::from_row(row)
}

pub fn get(conn: &mut AnyConnection, tenant: TenantId, id: GroupId) -> StoreResult<Group> {
    tenant_row!(groups, tenant, id).one_item(conn, ENTITY)
}

pub fn find_by_display_name(
    conn: &mut AnyConnection,
    tenant: TenantId,
    name: &str,
) -> StoreResult<Option<Group>> {
    tenant_rows!(groups, tenant)
        .filter(groups::display_name_key.eq(fold(name)))
        .first_item(conn)
}

pub fn update(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    id: GroupId,
    expected_version: i64,
    data: GroupData,
) -> StoreResult<Group> {
    validate(&data)?;
    let updated = diesel::update(
        tenant_row!(groups, tenant, id).filter(groups::version.eq(expected_version)),
    )
    .set((
        groups::display_name.eq(data.display_name.trim()),
        groups::display_name_key.eq(fold(&data.display_name)),
        groups::external_id.eq(data.external_id),
        groups::updated_at.eq(now.naive_utc()),
        groups::version.eq(expected_version + 1),
    ))
    .execute(conn)
    .map_err(conflict())?;
    versioned(updated, ENTITY, || get(conn, tenant, id))
}

pub fn delete(conn: &mut AnyConnection, tenant: TenantId, id: GroupId) -> StoreResult<()> {
    let deleted = diesel::delete(tenant_row!(groups, tenant, id)).execute(conn)?;
    touched_one(deleted, ENTITY)
}

pub fn list(
    conn: &mut AnyConnection,
    tenant: TenantId,
    page: &PageRequest,
) -> StoreResult<Page<Group>> {
    let groups = page
        .of_rows(tenant_rows!(groups, tenant), groups::id)?
        .load_items(conn)?;
    Ok(Page::from_rows(groups, page, |g: &Group| g.id.to_string()))
}

/// Adds a member; returns false if they already were one. A user or group of another
/// tenant is `NotFound` (the composite foreign keys refuse it).
pub fn add_member(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    group: GroupId,
    user: UserId,
) -> StoreResult<bool> {
    let inserted = diesel::insert_into(group_members::table)
        .values((
            group_members::tenant_id.eq(tenant.to_string()),
            group_members::group_id.eq(group.to_string()),
            group_members::user_id.eq(user.to_string()),
            group_members::created_at.eq(now.naive_utc()),
        ))
        .execute(conn);
    linked(inserted, "group member")
}

/// Makes the user a member of exactly `wanted` among the memberships `source` made
/// (a connection's mapping: `connection:<id>`): adds the missing ones with that
/// source, removes its others. Memberships made by hand are never touched, and a
/// group the user is in by hand already is not added again. Returns whether
/// anything changed.
pub fn reconcile_sourced(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
    source: &str,
    wanted: &[GroupId],
) -> StoreResult<bool> {
    let wanted: Vec<String> = wanted.iter().map(ToString::to_string).collect();
    let removed = diesel::delete(
        tenant_rows!(group_members, tenant)
            .filter(group_members::user_id.eq(user.to_string()))
            .filter(group_members::source.eq(source))
            .filter(group_members::group_id.ne_all(&wanted)),
    )
    .execute(conn)?;
    let held: Vec<String> = tenant_rows!(group_members, tenant)
        .filter(group_members::user_id.eq(user.to_string()))
        .select(group_members::group_id)
        .load(conn)?;
    let mut added = 0;
    for group in wanted.iter().filter(|group| !held.contains(group)) {
        // A concurrent sign-in may add the member after the read above.
        let inserted = crate::db::insert_unless_present(conn, |conn| {
            diesel::insert_into(group_members::table)
                .values((
                    group_members::tenant_id.eq(tenant.to_string()),
                    group_members::group_id.eq(group),
                    group_members::user_id.eq(user.to_string()),
                    group_members::created_at.eq(now.naive_utc()),
                    group_members::source.eq(source),
                ))
                .execute(conn)
                .map_err(map_missing_reference("group member"))
        })?;
        added += usize::from(inserted);
    }
    Ok(removed + added > 0)
}

/// Removes a member; returns false if they were not one.
pub fn remove_member(
    conn: &mut AnyConnection,
    tenant: TenantId,
    group: GroupId,
    user: UserId,
) -> StoreResult<bool> {
    let deleted = diesel::delete(
        tenant_rows!(group_members, tenant)
            .filter(group_members::group_id.eq(group.to_string()))
            .filter(group_members::user_id.eq(user.to_string())),
    )
    .execute(conn)?;
    Ok(deleted > 0)
}

pub fn members(
    conn: &mut AnyConnection,
    tenant: TenantId,
    group: GroupId,
    page: &PageRequest,
) -> StoreResult<Page<UserId>> {
    let ids: Vec<String> = tenant_rows!(group_members, tenant)
        .filter(group_members::group_id.eq(group.to_string()))
        .filter(group_members::user_id.gt(page.cursor()))
        .order(group_members::user_id.asc())
        .limit(page.fetch_limit()?)
        .select(group_members::user_id)
        .load(conn)?;
    let items = ids
        .into_iter()
        .map(|id| {
            id.parse()
                .map_err(|e| StoreError::corrupt("group_members", e))
        })
        .collect::<StoreResult<Vec<UserId>>>()?;
    Ok(Page::from_rows(items, page, |id| id.to_string()))
}

/// The groups of each of `users` (at most [`crate::MAX_BATCH`]), by name; users
/// in no group are left out. One query for all.
pub fn groups_of_users(
    conn: &mut AnyConnection,
    tenant: TenantId,
    users: &[UserId],
) -> StoreResult<HashMap<UserId, Vec<Group>>> {
    let ids = crate::batch_ids(users)?;
    let rows: Vec<(String, GroupRow)> = groups::table
        .inner_join(group_members::table.on(group_members::group_id.eq(groups::id)))
        .filter(group_members::tenant_id.eq(tenant.to_string()))
        .filter(group_members::user_id.eq_any(&ids))
        .order((group_members::user_id.asc(), groups::display_name_key.asc()))
        .select((group_members::user_id, GroupRow::as_select()))
        .load(conn)?;
    items_by_user(rows, "group_members")
}

pub fn groups_of_user(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
) -> StoreResult<Vec<Group>> {
    groups::table
        .inner_join(group_members::table.on(group_members::group_id.eq(groups::id)))
        .filter(group_members::tenant_id.eq(tenant.to_string()))
        .filter(group_members::user_id.eq(user.to_string()))
        .order(groups::display_name_key.asc())
        .load_items(conn)
}
