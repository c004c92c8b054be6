//! Groups and their members (SCIM Group, RFC 7643 §4.2).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{GroupId, TenantId, UserId};

use crate::error::{linked, map_missing_reference, map_unique, touched_one};
use crate::keys::fold;
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
struct GroupRow {
    id: String,
    tenant_id: String,
    display_name: String,
    display_name_key: String,
    external_id: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    version: i64,
}

impl TryFrom<GroupRow> for Group {
    type Error = StoreError;
    fn try_from(row: GroupRow) -> StoreResult<Group> {
        let corrupt = |e: uuid::Error| StoreError::corrupt("groups", e);
        Ok(Group {
            id: row.id.parse().map_err(corrupt)?,
            tenant_id: row.tenant_id.parse().map_err(corrupt)?,
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
    row.try_into()
}

pub fn get(conn: &mut AnyConnection, tenant: TenantId, id: GroupId) -> StoreResult<Group> {
    groups::table
        .filter(groups::tenant_id.eq(tenant.to_string()))
        .filter(groups::id.eq(id.to_string()))
        .select(GroupRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound { entity: ENTITY })?
        .try_into()
}

pub fn find_by_display_name(
    conn: &mut AnyConnection,
    tenant: TenantId,
    name: &str,
) -> StoreResult<Option<Group>> {
    groups::table
        .filter(groups::tenant_id.eq(tenant.to_string()))
        .filter(groups::display_name_key.eq(fold(name)))
        .select(GroupRow::as_select())
        .first(conn)
        .optional()?
        .map(Group::try_from)
        .transpose()
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
        groups::table
            .filter(groups::tenant_id.eq(tenant.to_string()))
            .filter(groups::id.eq(id.to_string()))
            .filter(groups::version.eq(expected_version)),
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
    if updated == 0 {
        get(conn, tenant, id)?;
        return Err(StoreError::StaleVersion { entity: ENTITY });
    }
    get(conn, tenant, id)
}

pub fn delete(conn: &mut AnyConnection, tenant: TenantId, id: GroupId) -> StoreResult<()> {
    let deleted = diesel::delete(
        groups::table
            .filter(groups::tenant_id.eq(tenant.to_string()))
            .filter(groups::id.eq(id.to_string())),
    )
    .execute(conn)?;
    touched_one(deleted, ENTITY)
}

pub fn list(
    conn: &mut AnyConnection,
    tenant: TenantId,
    page: &PageRequest,
) -> StoreResult<Page<Group>> {
    let rows: Vec<GroupRow> = groups::table
        .filter(groups::tenant_id.eq(tenant.to_string()))
        .filter(groups::id.gt(page.cursor()))
        .order(groups::id.asc())
        .limit(page.fetch_limit()?)
        .select(GroupRow::as_select())
        .load(conn)?;
    Page::convert_rows(rows, page, |g: &Group| g.id.to_string())
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

/// Removes a member; returns false if they were not one.
pub fn remove_member(
    conn: &mut AnyConnection,
    tenant: TenantId,
    group: GroupId,
    user: UserId,
) -> StoreResult<bool> {
    let deleted = diesel::delete(
        group_members::table
            .filter(group_members::tenant_id.eq(tenant.to_string()))
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
    let ids: Vec<String> = group_members::table
        .filter(group_members::tenant_id.eq(tenant.to_string()))
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
    let mut out: HashMap<UserId, Vec<Group>> = HashMap::new();
    for (user, row) in rows {
        let user = user
            .parse()
            .map_err(|e| StoreError::corrupt("group_members", &e))?;
        out.entry(user).or_default().push(Group::try_from(row)?);
    }
    Ok(out)
}

pub fn groups_of_user(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
) -> StoreResult<Vec<Group>> {
    let rows: Vec<GroupRow> = groups::table
        .inner_join(group_members::table.on(group_members::group_id.eq(groups::id)))
        .filter(group_members::tenant_id.eq(tenant.to_string()))
        .filter(group_members::user_id.eq(user.to_string()))
        .order(groups::display_name_key.asc())
        .select(GroupRow::as_select())
        .load(conn)?;
    rows.into_iter().map(Group::try_from).collect()
}
