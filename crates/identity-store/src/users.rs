//! Users: SCIM core attributes (RFC 7643 §4.1), several emails with one primary,
//! custom attributes as JSON, and a version for optimistic concurrency.
//!
//! userName and the primary email are unique per tenant, case-insensitively, on both
//! backends: uniqueness is enforced by indexes on folded `*_key` columns. Look-alikes
//! (`pаypal` with a Cyrillic а) are kept out by unique indexes on `*_skeleton`
//! columns, and a new user's identifiers must pass [`identifier_problem`].

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{TenantId, UserId};
use serde::{Deserialize, Serialize};

use crate::db::MultiBackend;
use crate::error::{is_unique_violation, map_unique, touched_one};
use crate::keys::{fold, identifier_problem, skeleton};
use crate::query::{tenant_row, tenant_rows};
use crate::schema::{user_counts, user_emails, users};
use crate::{AnyConnection, Page, PageRequest, StoreError, StoreResult};

pub mod search;

const ENTITY: &str = "user";
/// Rows a tenant's user count is spread over (see the `user_counts` migration).
const COUNT_SHARDS: i32 = 16;
const MAX_USER_NAME: usize = 256;
const MAX_EMAILS: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Name {
    /// The full name as written (SCIM's `name.formatted`), kept beside its parts.
    pub formatted: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub middle_name: Option<String>,
    pub honorific_prefix: Option<String>,
    pub honorific_suffix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    pub value: String,
    /// SCIM `type`: "work", "home", "other".
    pub kind: Option<String>,
    pub primary: bool,
    pub verified: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneNumber {
    pub value: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub primary: bool,
}

/// Everything about a user that a caller sets; used to create and to replace.
#[derive(Debug, Clone, PartialEq)]
pub struct UserData {
    pub user_name: String,
    pub name: Name,
    pub display_name: Option<String>,
    pub nick_name: Option<String>,
    pub title: Option<String>,
    pub user_type: Option<String>,
    pub preferred_language: Option<String>,
    pub locale: Option<String>,
    pub timezone: Option<String>,
    pub active: bool,
    pub external_id: Option<String>,
    pub emails: Vec<Email>,
    pub phone_numbers: Vec<PhoneNumber>,
    pub custom_attributes: serde_json::Map<String, serde_json::Value>,
}

impl UserData {
    /// A new active user with just a userName; fill in the rest with struct update syntax.
    pub fn new(user_name: impl Into<String>) -> Self {
        UserData {
            user_name: user_name.into(),
            name: Name::default(),
            display_name: None,
            nick_name: None,
            title: None,
            user_type: None,
            preferred_language: None,
            locale: None,
            timezone: None,
            active: true,
            external_id: None,
            emails: Vec::new(),
            phone_numbers: Vec::new(),
            custom_attributes: serde_json::Map::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub data: UserData,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl User {
    pub fn primary_email(&self) -> Option<&Email> {
        self.data.emails.iter().find(|e| e.primary)
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
struct UserRow {
    id: String,
    tenant_id: String,
    user_name: String,
    user_name_key: String,
    /// NULL only on rows written before look-alike keys existed, until
    /// [`backfill_skeletons`] fills them.
    user_name_skeleton: Option<String>,
    name_formatted: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    middle_name: Option<String>,
    honorific_prefix: Option<String>,
    honorific_suffix: Option<String>,
    display_name: Option<String>,
    nick_name: Option<String>,
    title: Option<String>,
    user_type: Option<String>,
    preferred_language: Option<String>,
    locale: Option<String>,
    timezone: Option<String>,
    active: bool,
    external_id: Option<String>,
    phone_numbers: String,
    custom_attributes: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    version: i64,
}

/// The mutable columns, written by create and by replace alike.
#[derive(AsChangeset)]
#[diesel(table_name = users, treat_none_as_null = true)]
struct UserChanges<'a> {
    user_name: &'a str,
    user_name_key: String,
    user_name_skeleton: Option<String>,
    name_formatted: Option<&'a str>,
    given_name: Option<&'a str>,
    family_name: Option<&'a str>,
    middle_name: Option<&'a str>,
    honorific_prefix: Option<&'a str>,
    honorific_suffix: Option<&'a str>,
    display_name: Option<&'a str>,
    nick_name: Option<&'a str>,
    title: Option<&'a str>,
    user_type: Option<&'a str>,
    preferred_language: Option<&'a str>,
    locale: Option<&'a str>,
    timezone: Option<&'a str>,
    active: bool,
    external_id: Option<&'a str>,
    phone_numbers: String,
    custom_attributes: String,
    updated_at: NaiveDateTime,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = user_emails)]
struct EmailRow {
    id: String,
    tenant_id: String,
    user_id: String,
    value: String,
    value_key: String,
    value_skeleton: Option<String>,
    kind: Option<String>,
    is_primary: bool,
    verified: bool,
    position: i32,
}

/// The field of a conflict with a look-alike rather than the same identifier.
pub const USER_NAME_LOOK_ALIKE: &str = "userName look-alike";
pub const EMAIL_LOOK_ALIKE: &str = "email look-alike";

fn conflict() -> impl Fn(diesel::result::Error) -> StoreError {
    // Skeleton indexes first: SQLite names only columns, and the email index's
    // identifying column (`tenant_id`) appears in both of its messages.
    map_unique(
        ENTITY,
        &[
            (
                "users_user_name_skeleton",
                "users.user_name_skeleton",
                USER_NAME_LOOK_ALIKE,
            ),
            (
                "user_emails_primary_value_skeleton",
                "user_emails.value_skeleton",
                EMAIL_LOOK_ALIKE,
            ),
            ("users_user_name_key", "users.user_name_key", "userName"),
            (
                "user_emails_primary_value_key",
                "user_emails.tenant_id",
                "email",
            ),
        ],
    )
}

fn validate(data: &UserData) -> StoreResult<()> {
    let user_name = data.user_name.trim();
    if user_name.is_empty() {
        return Err(StoreError::invalid(ENTITY, "userName must not be empty"));
    }
    if user_name.chars().count() > MAX_USER_NAME {
        return Err(StoreError::invalid(ENTITY, "userName is too long"));
    }
    if data.emails.len() > MAX_EMAILS {
        return Err(StoreError::invalid(ENTITY, "too many emails"));
    }
    if data.emails.iter().filter(|e| e.primary).count() > 1 {
        return Err(StoreError::invalid(
            ENTITY,
            "at most one email may be primary",
        ));
    }
    if data.emails.iter().any(|e| e.value.trim().is_empty()) {
        return Err(StoreError::invalid(
            ENTITY,
            "an email value must not be empty",
        ));
    }
    Ok(())
}

/// What a new user's identifiers must satisfy on top of [`validate`]. Not applied on
/// update, so rows from before the rule keep working; the skeleton indexes still
/// keep their look-alikes out.
fn validate_new_identifiers(data: &UserData) -> StoreResult<()> {
    let values = std::iter::once(("userName", data.user_name.as_str()))
        .chain(data.emails.iter().map(|e| ("email", e.value.as_str())));
    for (field, value) in values {
        if let Some(problem) = identifier_problem(value) {
            return Err(StoreError::invalid(
                ENTITY,
                format!("{field} {}", problem.describe()),
            ));
        }
    }
    Ok(())
}

/// A conflict the skeleton index reported may also be a plain duplicate (SQLite
/// checks the newest index first, PostgreSQL the oldest): name the exact field
/// when another user holds the very same identifier. Runs after the failed
/// statement's (sub)transaction was rolled back.
fn exact_conflict_first(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: Option<UserId>,
    data: &UserData,
    error: StoreError,
) -> StoreError {
    let StoreError::Conflict { field, .. } = &error else {
        return error;
    };
    if *field != USER_NAME_LOOK_ALIKE && *field != EMAIL_LOOK_ALIKE {
        return error;
    }
    let other = user.map(|id| id.to_string()).unwrap_or_default();
    let same_user_name = scoped(tenant)
        .filter(users::user_name_key.eq(fold(&data.user_name)))
        .filter(users::id.ne(&other))
        .count()
        .get_result::<i64>(conn);
    if matches!(same_user_name, Ok(n) if n > 0) {
        return StoreError::Conflict {
            entity: ENTITY,
            field: "userName",
        };
    }
    if let Some(primary) = data.emails.iter().find(|e| e.primary) {
        let same_email = primary_emails(tenant)
            .filter(user_emails::value_key.eq(fold(&primary.value)))
            .filter(user_emails::user_id.ne(other))
            .count()
            .get_result::<i64>(conn);
        if matches!(same_email, Ok(n) if n > 0) {
            return StoreError::Conflict {
                entity: ENTITY,
                field: "email",
            };
        }
    }
    error
}

fn changes(data: &UserData, now: DateTime<Utc>) -> StoreResult<UserChanges<'_>> {
    let json =
        |v: serde_json::Result<String>| v.map_err(|e| StoreError::invalid(ENTITY, e.to_string()));
    Ok(UserChanges {
        user_name: data.user_name.trim(),
        user_name_key: fold(&data.user_name),
        user_name_skeleton: Some(skeleton(&data.user_name)),
        name_formatted: data.name.formatted.as_deref(),
        given_name: data.name.given_name.as_deref(),
        family_name: data.name.family_name.as_deref(),
        middle_name: data.name.middle_name.as_deref(),
        honorific_prefix: data.name.honorific_prefix.as_deref(),
        honorific_suffix: data.name.honorific_suffix.as_deref(),
        display_name: data.display_name.as_deref(),
        nick_name: data.nick_name.as_deref(),
        title: data.title.as_deref(),
        user_type: data.user_type.as_deref(),
        preferred_language: data.preferred_language.as_deref(),
        locale: data.locale.as_deref(),
        timezone: data.timezone.as_deref(),
        active: data.active,
        external_id: data.external_id.as_deref(),
        phone_numbers: json(serde_json::to_string(&data.phone_numbers))?,
        custom_attributes: json(serde_json::to_string(&data.custom_attributes))?,
        updated_at: now.naive_utc(),
    })
}

fn insert_emails(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: &str,
    emails: &[Email],
) -> StoreResult<()> {
    // One statement per row: MultiBackend cannot carry a multi-row VALUES batch.
    let rows = emails.iter().enumerate().map(|(position, email)| EmailRow {
        id: uuid::Uuid::now_v7().to_string(),
        tenant_id: tenant.to_string(),
        user_id: user.to_owned(),
        value: email.value.trim().to_owned(),
        value_key: fold(&email.value),
        value_skeleton: Some(skeleton(&email.value)),
        kind: email.kind.clone(),
        is_primary: email.primary,
        verified: email.verified,
        position: position as i32,
    });
    for row in rows {
        diesel::insert_into(user_emails::table)
            .values(&row)
            .execute(conn)
            .map_err(conflict())?;
    }
    Ok(())
}

pub fn create(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    data: UserData,
) -> StoreResult<User> {
    validate(&data)?;
    validate_new_identifiers(&data)?;
    let id = UserId::new();
    let created = conn.transaction(|conn| {
        let c = changes(&data, now)?;
        let row = UserRow {
            id: id.to_string(),
            tenant_id: tenant.to_string(),
            user_name: c.user_name.to_owned(),
            user_name_key: c.user_name_key,
            user_name_skeleton: c.user_name_skeleton,
            name_formatted: data.name.formatted.clone(),
            given_name: data.name.given_name.clone(),
            family_name: data.name.family_name.clone(),
            middle_name: data.name.middle_name.clone(),
            honorific_prefix: data.name.honorific_prefix.clone(),
            honorific_suffix: data.name.honorific_suffix.clone(),
            display_name: data.display_name.clone(),
            nick_name: data.nick_name.clone(),
            title: data.title.clone(),
            user_type: data.user_type.clone(),
            preferred_language: data.preferred_language.clone(),
            locale: data.locale.clone(),
            timezone: data.timezone.clone(),
            active: data.active,
            external_id: data.external_id.clone(),
            phone_numbers: c.phone_numbers,
            custom_attributes: c.custom_attributes,
            created_at: now.naive_utc(),
            updated_at: now.naive_utc(),
            version: 1,
        };
        diesel::insert_into(users::table)
            .values(&row)
            .execute(conn)
            .map_err(conflict())?;
        insert_emails(conn, tenant, &row.id, &data.emails)?;
        count_change(conn, tenant, id, 1)
    });
    if let Err(error) = created {
        return Err(exact_conflict_first(conn, tenant, None, &data, error));
    }
    get(conn, tenant, id)
}

fn scoped(tenant: TenantId) -> users::BoxedQuery<'static, MultiBackend> {
    tenant_rows!(users, tenant).into_boxed()
}

/// The first user `query` finds, with their emails.
fn first_user(
    conn: &mut AnyConnection,
    query: users::BoxedQuery<'static, MultiBackend>,
) -> StoreResult<Option<User>> {
    let Some(row) = query.select(UserRow::as_select()).first(conn).optional()? else {
        return Ok(None);
    };
    Ok(assemble(conn, vec![row])?.pop())
}

/// The tenant's primary emails (a user has one at most).
fn primary_emails(tenant: TenantId) -> user_emails::BoxedQuery<'static, MultiBackend> {
    tenant_rows!(user_emails, tenant)
        .filter(user_emails::is_primary.eq(true))
        .into_boxed()
}

/// The user whose primary email `query` finds, if any.
fn primary_email_holder(
    conn: &mut AnyConnection,
    query: user_emails::BoxedQuery<'static, MultiBackend>,
) -> StoreResult<Option<UserId>> {
    let user_id: Option<String> = query.select(user_emails::user_id).first(conn).optional()?;
    user_id
        .map(|id| {
            id.parse()
                .map_err(|e| StoreError::corrupt("user_emails", e))
        })
        .transpose()
}

pub fn get(conn: &mut AnyConnection, tenant: TenantId, id: UserId) -> StoreResult<User> {
    first_user(conn, scoped(tenant).filter(users::id.eq(id.to_string())))?
        .ok_or(StoreError::NotFound { entity: ENTITY })
}

/// The users of `ids` (at most [`crate::MAX_BATCH`]) that exist in the tenant, in no
/// particular order. Two queries for all (users, emails).
pub fn get_many(
    conn: &mut AnyConnection,
    tenant: TenantId,
    ids: &[UserId],
) -> StoreResult<Vec<User>> {
    let ids = crate::batch_ids(ids)?;
    let rows = scoped(tenant)
        .filter(users::id.eq_any(ids))
        .select(UserRow::as_select())
        .load(conn)?;
    assemble(conn, rows)
}

pub fn find_by_user_name(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user_name: &str,
) -> StoreResult<Option<User>> {
    first_user(
        conn,
        scoped(tenant).filter(users::user_name_key.eq(fold(user_name))),
    )
}

/// Finds the user whose primary email is `email` (case-insensitive).
pub fn find_by_primary_email(
    conn: &mut AnyConnection,
    tenant: TenantId,
    email: &str,
) -> StoreResult<Option<User>> {
    let holder = primary_emails(tenant).filter(user_emails::value_key.eq(fold(email)));
    match primary_email_holder(conn, holder)? {
        Some(id) => get(conn, tenant, id).map(Some),
        None => Ok(None),
    }
}

/// The user whose primary email is `email` or looks like it (same skeleton).
pub fn primary_email_look_alike_holder(
    conn: &mut AnyConnection,
    tenant: TenantId,
    email: &str,
) -> StoreResult<Option<UserId>> {
    let holder = primary_emails(tenant).filter(user_emails::value_skeleton.eq(skeleton(email)));
    primary_email_holder(conn, holder)
}

pub fn find_by_external_id(
    conn: &mut AnyConnection,
    tenant: TenantId,
    external_id: &str,
) -> StoreResult<Option<User>> {
    first_user(
        conn,
        scoped(tenant).filter(users::external_id.eq(external_id.to_owned())),
    )
}

/// Replaces the user's data if `expected_version` is still current; otherwise
/// `StaleVersion`. Emails are replaced as a set.
pub fn update(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    id: UserId,
    expected_version: i64,
    data: UserData,
) -> StoreResult<User> {
    validate(&data)?;
    let replaced = conn.transaction(|conn| {
        let updated = diesel::update(
            tenant_row!(users, tenant, id).filter(users::version.eq(expected_version)),
        )
        .set((
            changes(&data, now)?,
            users::version.eq(expected_version + 1),
        ))
        .execute(conn)
        .map_err(conflict())?;
        if updated == 0 {
            get(conn, tenant, id)?;
            return Err(StoreError::StaleVersion { entity: ENTITY });
        }
        diesel::delete(
            tenant_rows!(user_emails, tenant).filter(user_emails::user_id.eq(id.to_string())),
        )
        .execute(conn)?;
        insert_emails(conn, tenant, &id.to_string(), &data.emails)
    });
    if let Err(error) = replaced {
        return Err(exact_conflict_first(conn, tenant, Some(id), &data, error));
    }
    get(conn, tenant, id)
}

/// Sets the user's `active` flag (an operator's deactivation or reactivation) and,
/// when it changes, moves `version` on like any update. Unlike [`update`] it names
/// no version: the flag alone is written, so an operator's decision is never lost to
/// a concurrent profile edit, and that edit's stale version still fails. Returns
/// whether the flag changed; `NotFound` for no such user.
pub fn set_active(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    id: UserId,
    active: bool,
) -> StoreResult<bool> {
    let updated = diesel::update(tenant_row!(users, tenant, id).filter(users::active.ne(active)))
        .set((
            users::active.eq(active),
            users::updated_at.eq(now.naive_utc()),
            users::version.eq(users::version + 1),
        ))
        .execute(conn)?;
    if updated == 0 {
        get(conn, tenant, id)?;
    }
    Ok(updated > 0)
}

pub fn delete(conn: &mut AnyConnection, tenant: TenantId, id: UserId) -> StoreResult<()> {
    conn.transaction(|conn| {
        let deleted = diesel::delete(tenant_row!(users, tenant, id)).execute(conn)?;
        touched_one(deleted, ENTITY)?;
        count_change(conn, tenant, id, -1)
    })
}

/// The count row a user is counted in: their id's last hex digit.
fn count_shard(id: UserId) -> i32 {
    id.to_string()
        .chars()
        .last()
        .and_then(|c| c.to_digit(16))
        .map_or(0, |d| d as i32 % COUNT_SHARDS)
}

/// Inside a user's creation or deletion: the tenant's count moves by `delta`.
fn count_change(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: UserId,
    delta: i64,
) -> StoreResult<()> {
    let shard = count_shard(id);
    let row = user_counts::table
        .filter(user_counts::tenant_id.eq(tenant.to_string()))
        .filter(user_counts::shard.eq(shard));
    let updated = diesel::update(row)
        .set(user_counts::users.eq(user_counts::users + delta))
        .execute(conn)?;
    if updated == 0 {
        // A tenant made before its count rows (they are made with the tenant).
        diesel::insert_into(user_counts::table)
            .values((
                user_counts::tenant_id.eq(tenant.to_string()),
                user_counts::shard.eq(shard),
                user_counts::users.eq(delta),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// A new tenant's count rows, so users created at once never race to make them.
pub(crate) fn prepare_counts(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<()> {
    for shard in 0..COUNT_SHARDS {
        diesel::insert_into(user_counts::table)
            .values((
                user_counts::tenant_id.eq(tenant.to_string()),
                user_counts::shard.eq(shard),
                user_counts::users.eq(0_i64),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// How many users the tenant has, from its count rows (no pass over the users).
pub fn total(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<i64> {
    let parts: Vec<i64> = user_counts::table
        .filter(user_counts::tenant_id.eq(tenant.to_string()))
        .select(user_counts::users)
        .load(conn)?;
    Ok(parts.into_iter().sum())
}

pub fn list(
    conn: &mut AnyConnection,
    tenant: TenantId,
    page: &PageRequest,
) -> StoreResult<Page<User>> {
    let rows = page
        .of_rows(scoped(tenant), users::id)?
        .select(UserRow::as_select())
        .load(conn)?;
    let items = assemble(conn, rows)?;
    Ok(Page::from_rows(items, page, |u| u.id.to_string()))
}

pub fn count(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<i64> {
    Ok(scoped(tenant).count().get_result(conn)?)
}

/// Attaches emails to user rows with one query for the whole batch.
fn assemble(conn: &mut AnyConnection, rows: Vec<UserRow>) -> StoreResult<Vec<User>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let email_rows: Vec<EmailRow> = user_emails::table
        .filter(user_emails::user_id.eq_any(&ids))
        .order((user_emails::user_id.asc(), user_emails::position.asc()))
        .select(EmailRow::as_select())
        .load(conn)?;
    let mut emails: HashMap<String, Vec<Email>> = HashMap::new();
    for e in email_rows {
        emails.entry(e.user_id).or_default().push(Email {
            value: e.value,
            kind: e.kind,
            primary: e.is_primary,
            verified: e.verified,
        });
    }
    rows.into_iter()
        .map(|row| {
            let corrupt = |e: &dyn std::fmt::Display| StoreError::corrupt("users", e);
            Ok(User {
                id: row.id.parse().map_err(|e| corrupt(&e))?,
                tenant_id: row.tenant_id.parse().map_err(|e| corrupt(&e))?,
                data: UserData {
                    emails: emails.remove(&row.id).unwrap_or_default(),
                    user_name: row.user_name,
                    name: Name {
                        formatted: row.name_formatted,
                        given_name: row.given_name,
                        family_name: row.family_name,
                        middle_name: row.middle_name,
                        honorific_prefix: row.honorific_prefix,
                        honorific_suffix: row.honorific_suffix,
                    },
                    display_name: row.display_name,
                    nick_name: row.nick_name,
                    title: row.title,
                    user_type: row.user_type,
                    preferred_language: row.preferred_language,
                    locale: row.locale,
                    timezone: row.timezone,
                    active: row.active,
                    external_id: row.external_id,
                    phone_numbers: serde_json::from_str(&row.phone_numbers)
                        .map_err(|e| corrupt(&e))?,
                    custom_attributes: serde_json::from_str(&row.custom_attributes)
                        .map_err(|e| corrupt(&e))?,
                },
                created_at: row.created_at.and_utc(),
                updated_at: row.updated_at.and_utc(),
                version: row.version,
            })
        })
        .collect()
}

/// Rows one backfill transaction covers.
const BACKFILL_BATCH: i64 = 500;

/// What [`backfill_skeletons`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SkeletonBackfill {
    pub filled: usize,
    /// Users (by id) whose userName or primary email looks like another user's:
    /// they keep no skeleton until an operator renames one of the two.
    pub look_alikes: Vec<String>,
}

/// Fills the look-alike keys of rows written before they existed, or by an older
/// node during a rolling deploy. SQL cannot compute UTS #39 skeletons, so this runs
/// in Rust after the migrations, on every start (rows already filled are not read
/// again). A row that would collide keeps NULL and is reported, never guessed at.
pub fn backfill_skeletons(conn: &mut AnyConnection) -> StoreResult<SkeletonBackfill> {
    let mut report = SkeletonBackfill::default();
    // A user row is its own user: its id stands for both.
    backfill_pass(
        conn,
        &mut report,
        |conn, after| {
            users::table
                .filter(users::user_name_skeleton.is_null())
                .filter(users::id.gt(after))
                .order(users::id.asc())
                .limit(BACKFILL_BATCH)
                .select((users::id, users::id, users::user_name))
                .load(conn)
        },
        |conn, id, key| {
            diesel::update(users::table.filter(users::id.eq(id)))
                .set(users::user_name_skeleton.eq(key))
                .execute(conn)
        },
    )?;
    backfill_pass(
        conn,
        &mut report,
        |conn, after| {
            user_emails::table
                .filter(user_emails::value_skeleton.is_null())
                .filter(user_emails::id.gt(after))
                .order(user_emails::id.asc())
                .limit(BACKFILL_BATCH)
                .select((user_emails::id, user_emails::user_id, user_emails::value))
                .load(conn)
        },
        |conn, id, key| {
            diesel::update(user_emails::table.filter(user_emails::id.eq(id)))
                .set(user_emails::value_skeleton.eq(key))
                .execute(conn)
        },
    )?;
    report.look_alikes.sort();
    report.look_alikes.dedup();
    Ok(report)
}

/// One table's part of [`backfill_skeletons`]: `unfilled` reads the next batch of
/// rows without a skeleton after an id, as `(row id, user id, identifier)`, and
/// `fill` stores a row's skeleton; a row whose skeleton collides is reported.
fn backfill_pass(
    conn: &mut AnyConnection,
    report: &mut SkeletonBackfill,
    unfilled: impl Fn(&mut AnyConnection, &str) -> QueryResult<Vec<(String, String, String)>>,
    fill: impl Fn(&mut AnyConnection, &str, String) -> QueryResult<usize>,
) -> StoreResult<()> {
    let mut after = String::new();
    loop {
        let batch = unfilled(conn, &after)?;
        let Some((last, _, _)) = batch.last() else {
            return Ok(());
        };
        after = last.clone();
        conn.transaction(|conn| {
            for (id, user_id, identifier) in &batch {
                // A savepoint per row: one collision must not undo the batch.
                match conn.transaction(|conn| fill(conn, id, skeleton(identifier))) {
                    Ok(_) => report.filled += 1,
                    Err(e) if is_unique_violation(&e) => report.look_alikes.push(user_id.clone()),
                    Err(e) => return Err(StoreError::from(e)),
                }
            }
            Ok::<_, StoreError>(())
        })?;
    }
}
