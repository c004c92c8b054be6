//! Users found by a filter (SCIM's `filter`, RFC 7644 §3.4.2.2), sorted and paged
//! by index. The filter is a tree of typed comparisons on known attributes, turned
//! into diesel expressions — values are always bound parameters, never SQL text —
//! so the same query runs on both backends.
//!
//! Missing attributes take part in two-valued logic: `title eq "x"` is false for a
//! user without a title, so `not (title eq "x")` finds them (SQL's NULL would drop
//! them from both). Case-insensitive attributes compare folded: userName and email
//! addresses by their stored keys (the same folding on both backends); the others
//! by SQL `lower`, which on SQLite folds ASCII letters only.

use chrono::{DateTime, Utc};
use diesel::expression::BoxableExpression;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Text};
use gatehouse_core::ids::TenantId;

use super::{User, UserRow, assemble};
use crate::keys::fold;
use crate::query::tenant_rows;
use crate::schema::{user_counts, user_emails, users};
use crate::{AnyConnection, Page, PageRequest, StoreError, StoreResult};

const ENTITY: &str = "user filter";
/// The most users one page holds.
pub const MAX_COUNT: i64 = 1000;
/// The deepest filter tree accepted (a parser bounds it already; this guards the
/// store against any other caller).
const MAX_DEPTH: usize = 64;

diesel::define_sql_function!(fn lower(x: Nullable<Text>) -> Nullable<Text>);

/// A user's single-valued attribute, by its SCIM name in the comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAttribute {
    /// `id` (case-exact).
    Id,
    /// `userName`.
    UserName,
    /// `externalId` (case-exact).
    ExternalId,
    /// `displayName`.
    DisplayName,
    /// `nickName`.
    NickName,
    /// `title`.
    Title,
    /// `userType`.
    UserType,
    /// `preferredLanguage`.
    PreferredLanguage,
    /// `locale`.
    Locale,
    /// `timezone`.
    Timezone,
    /// `name.givenName`.
    GivenName,
    /// `name.familyName`.
    FamilyName,
    /// `name.middleName`.
    MiddleName,
    /// `name.honorificPrefix`.
    HonorificPrefix,
    /// `name.honorificSuffix`.
    HonorificSuffix,
    /// `active` (boolean).
    Active,
    /// `meta.created` (date-time).
    Created,
    /// `meta.lastModified` (date-time).
    LastModified,
}

/// An attribute of one of a user's emails (`emails.value`, `emails[type eq …]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailAttribute {
    Value,
    Type,
    Primary,
    Verified,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Ne,
    Contains,
    StartsWith,
    EndsWith,
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    Text(String),
    Bool(bool),
    Time(DateTime<Utc>),
    /// `null`: `eq null` is "absent", `ne null` is "present".
    Null,
}

/// A condition on one email; a user matches when one of their emails does.
#[derive(Debug, Clone, PartialEq)]
pub enum EmailFilter {
    And(Box<EmailFilter>, Box<EmailFilter>),
    Or(Box<EmailFilter>, Box<EmailFilter>),
    Not(Box<EmailFilter>),
    Compare(EmailAttribute, Comparison, FilterValue),
    Present(EmailAttribute),
}

#[derive(Debug, Clone, PartialEq)]
pub enum UserFilter {
    And(Box<UserFilter>, Box<UserFilter>),
    Or(Box<UserFilter>, Box<UserFilter>),
    Not(Box<UserFilter>),
    Compare(UserAttribute, Comparison, FilterValue),
    Present(UserAttribute),
    /// Some email of the user matches.
    Email(EmailFilter),
}

/// What a search asks for: a filter, an order, and a page by 1-based index.
#[derive(Debug, Clone, PartialEq)]
pub struct UserQuery {
    pub filter: Option<UserFilter>,
    /// The attribute to sort by and whether descending; creation order otherwise.
    pub sort: Option<(UserAttribute, bool)>,
    /// 1-based, as SCIM's `startIndex`.
    pub start_index: i64,
    /// 0 asks only for the total.
    pub count: i64,
    /// Keyset paging instead of an index: only users whose id sorts after this
    /// one (ids sort in creation order), with `sort: None` and `start_index: 1`.
    pub after: Option<String>,
    /// Whether to count every match (SCIM's `totalResults`); a keyset page needs
    /// no total, and counting costs a pass over the matches.
    pub count_total: bool,
}

impl UserQuery {
    /// A page by 1-based index, with the total (SCIM).
    pub fn by_index(
        filter: Option<UserFilter>,
        sort: Option<(UserAttribute, bool)>,
        start_index: i64,
        count: i64,
    ) -> UserQuery {
        UserQuery {
            filter,
            sort,
            start_index,
            count,
            after: None,
            count_total: true,
        }
    }

    /// The next `count` users after `after` in creation order, without a total.
    pub fn after(filter: Option<UserFilter>, after: Option<String>, count: i64) -> UserQuery {
        UserQuery {
            filter,
            sort: None,
            start_index: 1,
            count,
            after,
            count_total: false,
        }
    }
}

/// One page of a search and how many users match in all (when asked).
#[derive(Debug, Clone)]
pub struct Found {
    pub total: Option<i64>,
    pub users: Vec<User>,
}

/// The tenant's users matching `query`, one page of them.
pub fn search(conn: &mut AnyConnection, tenant: TenantId, query: &UserQuery) -> StoreResult<Found> {
    if query.start_index < 1 {
        return Err(StoreError::invalid(ENTITY, "startIndex starts at 1"));
    }
    if query.after.is_some() && (query.sort.is_some() || query.start_index != 1) {
        return Err(StoreError::invalid(
            ENTITY,
            "a page after a cursor is in creation order, from its start",
        ));
    }
    if !(0..=MAX_COUNT).contains(&query.count) {
        return Err(StoreError::invalid(
            ENTITY,
            format!("count must be between 0 and {MAX_COUNT}"),
        ));
    }
    let (total, rows) = match conn {
        AnyConnection::Postgresql(pg) => on_postgres::page(pg, tenant, query)?,
        AnyConnection::Sqlite(sqlite) => on_sqlite::page(sqlite, tenant, query)?,
    };
    Ok(Found {
        total,
        users: assemble(conn, rows)?,
    })
}

/// One page of the users matching `filter`, in creation order after the page's
/// cursor (the admin API's listing with a filter).
pub fn matching(
    conn: &mut AnyConnection,
    tenant: TenantId,
    filter: &UserFilter,
    page: &PageRequest,
) -> StoreResult<Page<User>> {
    let query = UserQuery::after(
        Some(filter.clone()),
        page.after.clone(),
        page.fetch_limit()?,
    );
    let found = search(conn, tenant, &query)?;
    Ok(Page::from_rows(found.users, page, |u| u.id.to_string()))
}

fn too_deep(depth: usize) -> StoreResult<()> {
    if depth > MAX_DEPTH {
        return Err(StoreError::invalid(
            ENTITY,
            "the filter is nested too deeply",
        ));
    }
    Ok(())
}

fn wrong(what: &str) -> StoreError {
    StoreError::invalid(ENTITY, what.to_owned())
}

fn like_pattern(op: Comparison, folded: &str) -> Option<String> {
    let value = crate::query::like_literal(folded);
    match op {
        Comparison::Contains => Some(format!("%{value}%")),
        Comparison::StartsWith => Some(format!("{value}%")),
        Comparison::EndsWith => Some(format!("%{value}")),
        _ => None,
    }
}

fn text(value: &FilterValue, attribute: &str) -> StoreResult<String> {
    match value {
        FilterValue::Text(text) => Ok(text.clone()),
        _ => Err(wrong(&format!("{attribute} compares with a string"))),
    }
}

/// A comparison on a nullable text column, folded by `$fold` (`lower` or nothing)
/// and compared with `$value` (folded the same way by the caller). Absent values
/// give false (true for `ne`), never NULL.
macro_rules! nullable_text {
    ($column:expr, $fold:expr, $op:expr, $value:expr) => {{
        let value: String = $value;
        let pred: UserPredicate = match $op {
            Comparison::Eq => Box::new($column.is_not_null().and($fold.eq(value))),
            Comparison::Ne => Box::new($column.is_null().nullable().or($fold.ne(value))),
            Comparison::Greater => Box::new($column.is_not_null().and($fold.gt(value))),
            Comparison::GreaterOrEqual => Box::new($column.is_not_null().and($fold.ge(value))),
            Comparison::Less => Box::new($column.is_not_null().and($fold.lt(value))),
            Comparison::LessOrEqual => Box::new($column.is_not_null().and($fold.le(value))),
            op => {
                let pattern = like_pattern(op, &value).unwrap_or_default();
                Box::new($column.is_not_null().and($fold.like(pattern).escape('\\')))
            }
        };
        pred
    }};
}

/// A comparison on a text column that always has a value.
macro_rules! required_text {
    ($column:expr, $op:expr, $value:expr, $pred:ty) => {{
        let value: String = $value;
        let pred: $pred = match $op {
            Comparison::Eq => Box::new($column.eq(value).nullable()),
            Comparison::Ne => Box::new($column.ne(value).nullable()),
            Comparison::Greater => Box::new($column.gt(value).nullable()),
            Comparison::GreaterOrEqual => Box::new($column.ge(value).nullable()),
            Comparison::Less => Box::new($column.lt(value).nullable()),
            Comparison::LessOrEqual => Box::new($column.le(value).nullable()),
            op => {
                let pattern = like_pattern(op, &value).unwrap_or_default();
                Box::new($column.like(pattern).escape('\\').nullable())
            }
        };
        pred
    }};
}

/// A comparison on a timestamp column with an RFC 3339 time.
macro_rules! time_comparison {
    ($column:expr, $op:expr, $value:expr) => {{
        let FilterValue::Time(at) = $value else {
            return Err(wrong("a date-time compares with an RFC 3339 time"));
        };
        let at = at.naive_utc();
        let pred: UserPredicate = match $op {
            Comparison::Eq => Box::new($column.eq(at).nullable()),
            Comparison::Ne => Box::new($column.ne(at).nullable()),
            Comparison::Greater => Box::new($column.gt(at).nullable()),
            Comparison::GreaterOrEqual => Box::new($column.ge(at).nullable()),
            Comparison::Less => Box::new($column.lt(at).nullable()),
            Comparison::LessOrEqual => Box::new($column.le(at).nullable()),
            _ => return Err(wrong("a date-time does not compare by text")),
        };
        pred
    }};
}

/// A comparison on a boolean column.
macro_rules! flag_comparison {
    ($column:expr, $op:expr, $flag:expr, $pred:ty) => {{
        let pred: $pred = match $op {
            Comparison::Eq => Box::new($column.eq($flag).nullable()),
            Comparison::Ne => Box::new($column.ne($flag).nullable()),
            _ => return Err(wrong("a boolean compares only with eq and ne")),
        };
        pred
    }};
}

/// The queries for one backend. Written once and instantiated per backend: a
/// filter tree needs boxed expressions, and a subquery over boxed expressions
/// compiles for a concrete backend only (diesel's `MultiBackend` cannot render one).
macro_rules! backend_queries {
    ($module:ident, $backend:ty, $connection:ty) => {
        mod $module {
            use super::*;

            type UserPredicate =
                Box<dyn BoxableExpression<users::table, $backend, SqlType = Nullable<Bool>>>;
            type EmailPredicate =
                Box<dyn BoxableExpression<user_emails::table, $backend, SqlType = Nullable<Bool>>>;

            /// How many users match in all, and the rows of the page asked for.
            pub(super) fn page(
                conn: &mut $connection,
                tenant: TenantId,
                query: &UserQuery,
            ) -> StoreResult<(Option<i64>, Vec<UserRow>)> {
                let matching = || -> StoreResult<users::BoxedQuery<'static, $backend>> {
                    let all = users::table
                        .filter(users::tenant_id.eq(tenant.to_string()))
                        .into_boxed();
                    Ok(match &query.filter {
                        Some(filter) => all.filter(user_predicate(tenant, filter, 0)?),
                        None => all,
                    })
                };
                let total: Option<i64> = match (query.count_total, &query.filter) {
                    (false, _) => None,
                    // Every user: the tenant's kept count, not a pass over them.
                    (true, None) => Some(
                        user_counts::table
                            .filter(user_counts::tenant_id.eq(tenant.to_string()))
                            .select(user_counts::users)
                            .load::<i64>(conn)?
                            .into_iter()
                            .sum(),
                    ),
                    (true, Some(_)) => Some(matching()?.count().get_result(conn)?),
                };
                if query.count == 0 || total.is_some_and(|total| total < query.start_index) {
                    return Ok((total, Vec::new()));
                }
                let mut ordered = match query.sort {
                    Some((attribute, descending)) => sorted(matching()?, attribute, descending)?,
                    None => matching()?,
                };
                if let Some(after) = &query.after {
                    ordered = ordered.filter(users::id.gt(after.clone()));
                }
                // The page's ids first, then their rows: skipping `start_index - 1`
                // matches walks an index of ids alone (the tenant's `(tenant_id, id)`
                // index covers it when unsorted) instead of reading every skipped
                // user's row.
                let ids: Vec<String> = ordered
                    .then_order_by(users::id.asc())
                    .offset(query.start_index - 1)
                    .limit(query.count)
                    .select(users::id)
                    .load(conn)?;
                if ids.is_empty() {
                    return Ok((total, Vec::new()));
                }
                let mut rows: Vec<UserRow> = users::table
                    .filter(users::tenant_id.eq(tenant.to_string()))
                    .filter(users::id.eq_any(&ids))
                    .select(UserRow::as_select())
                    .load(conn)?;
                let position: std::collections::HashMap<&str, usize> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| (id.as_str(), i))
                    .collect();
                rows.sort_by_key(|row| {
                    position.get(row.id.as_str()).copied().unwrap_or(usize::MAX)
                });
                Ok((total, rows))
            }

            fn sorted(
                query: users::BoxedQuery<'static, $backend>,
                attribute: UserAttribute,
                descending: bool,
            ) -> StoreResult<users::BoxedQuery<'static, $backend>> {
                macro_rules! by {
                    ($column:expr) => {
                        if descending {
                            query.order_by($column.desc())
                        } else {
                            query.order_by($column.asc())
                        }
                    };
                }
                use UserAttribute as A;
                Ok(match attribute {
                    A::Id => by!(users::id),
                    A::UserName => by!(users::user_name_key),
                    A::ExternalId => by!(users::external_id),
                    A::DisplayName => by!(lower(users::display_name)),
                    A::NickName => by!(lower(users::nick_name)),
                    A::Title => by!(lower(users::title)),
                    A::UserType => by!(lower(users::user_type)),
                    A::PreferredLanguage => by!(lower(users::preferred_language)),
                    A::Locale => by!(lower(users::locale)),
                    A::Timezone => by!(lower(users::timezone)),
                    A::GivenName => by!(lower(users::given_name)),
                    A::FamilyName => by!(lower(users::family_name)),
                    A::MiddleName => by!(lower(users::middle_name)),
                    A::HonorificPrefix => by!(lower(users::honorific_prefix)),
                    A::HonorificSuffix => by!(lower(users::honorific_suffix)),
                    A::Active => by!(users::active),
                    A::Created => by!(users::created_at),
                    A::LastModified => by!(users::updated_at),
                })
            }

            fn user_predicate(
                tenant: TenantId,
                filter: &UserFilter,
                depth: usize,
            ) -> StoreResult<UserPredicate> {
                too_deep(depth)?;
                Ok(match filter {
                    UserFilter::And(a, b) => {
                        Box::new(user_predicate(tenant, a, depth + 1)?.and(user_predicate(
                            tenant,
                            b,
                            depth + 1,
                        )?))
                    }
                    UserFilter::Or(a, b) => {
                        Box::new(user_predicate(tenant, a, depth + 1)?.or(user_predicate(
                            tenant,
                            b,
                            depth + 1,
                        )?))
                    }
                    // No leaf yields NULL, so NOT is exact.
                    UserFilter::Not(inner) => {
                        Box::new(diesel::dsl::not(user_predicate(tenant, inner, depth + 1)?))
                    }
                    UserFilter::Present(attribute) => present(*attribute),
                    UserFilter::Compare(attribute, op, FilterValue::Null) => match op {
                        Comparison::Eq => Box::new(diesel::dsl::not(present(*attribute))),
                        Comparison::Ne => present(*attribute),
                        _ => return Err(wrong("null compares only with eq and ne")),
                    },
                    UserFilter::Compare(attribute, op, value) => compare(*attribute, *op, value)?,
                    UserFilter::Email(email) => {
                        // The users with a matching address: an uncorrelated subquery the
                        // (tenant, address) index answers.
                        let holders = tenant_rows!(user_emails, tenant)
                            .filter(email_predicate(email, depth + 1)?)
                            .select(user_emails::user_id)
                            .into_boxed();
                        Box::new(users::id.eq_any(holders).nullable())
                    }
                })
            }

            fn present(attribute: UserAttribute) -> UserPredicate {
                macro_rules! text_present {
                    ($column:expr) => {
                        Box::new($column.is_not_null().and($column.ne("")))
                    };
                }
                use UserAttribute as A;
                match attribute {
                    A::Id | A::UserName | A::Active | A::Created | A::LastModified => {
                        Box::new(users::id.is_not_null().nullable())
                    }
                    A::ExternalId => text_present!(users::external_id),
                    A::DisplayName => text_present!(users::display_name),
                    A::NickName => text_present!(users::nick_name),
                    A::Title => text_present!(users::title),
                    A::UserType => text_present!(users::user_type),
                    A::PreferredLanguage => text_present!(users::preferred_language),
                    A::Locale => text_present!(users::locale),
                    A::Timezone => text_present!(users::timezone),
                    A::GivenName => text_present!(users::given_name),
                    A::FamilyName => text_present!(users::family_name),
                    A::MiddleName => text_present!(users::middle_name),
                    A::HonorificPrefix => text_present!(users::honorific_prefix),
                    A::HonorificSuffix => text_present!(users::honorific_suffix),
                }
            }

            fn compare(
                attribute: UserAttribute,
                op: Comparison,
                value: &FilterValue,
            ) -> StoreResult<UserPredicate> {
                use UserAttribute as A;
                macro_rules! ci {
                    ($column:expr, $name:literal) => {
                        nullable_text!(
                            $column,
                            lower($column),
                            op,
                            text(value, $name)?.to_lowercase()
                        )
                    };
                }
                Ok(match attribute {
                    A::Id => required_text!(users::id, op, text(value, "id")?, UserPredicate),
                    A::UserName => {
                        let folded = fold(&text(value, "userName")?);
                        required_text!(users::user_name_key, op, folded, UserPredicate)
                    }
                    A::ExternalId => nullable_text!(
                        users::external_id,
                        users::external_id,
                        op,
                        text(value, "externalId")?
                    ),
                    A::DisplayName => ci!(users::display_name, "displayName"),
                    A::NickName => ci!(users::nick_name, "nickName"),
                    A::Title => ci!(users::title, "title"),
                    A::UserType => ci!(users::user_type, "userType"),
                    A::PreferredLanguage => ci!(users::preferred_language, "preferredLanguage"),
                    A::Locale => ci!(users::locale, "locale"),
                    A::Timezone => ci!(users::timezone, "timezone"),
                    A::GivenName => ci!(users::given_name, "name.givenName"),
                    A::FamilyName => ci!(users::family_name, "name.familyName"),
                    A::MiddleName => ci!(users::middle_name, "name.middleName"),
                    A::HonorificPrefix => ci!(users::honorific_prefix, "name.honorificPrefix"),
                    A::HonorificSuffix => ci!(users::honorific_suffix, "name.honorificSuffix"),
                    A::Active => {
                        let FilterValue::Bool(flag) = value else {
                            return Err(wrong("active compares with true or false"));
                        };
                        flag_comparison!(users::active, op, *flag, UserPredicate)
                    }
                    A::Created => time_comparison!(users::created_at, op, value),
                    A::LastModified => time_comparison!(users::updated_at, op, value),
                })
            }

            fn email_predicate(filter: &EmailFilter, depth: usize) -> StoreResult<EmailPredicate> {
                too_deep(depth)?;
                Ok(match filter {
                    EmailFilter::And(a, b) => {
                        Box::new(email_predicate(a, depth + 1)?.and(email_predicate(b, depth + 1)?))
                    }
                    EmailFilter::Or(a, b) => {
                        Box::new(email_predicate(a, depth + 1)?.or(email_predicate(b, depth + 1)?))
                    }
                    EmailFilter::Not(inner) => {
                        Box::new(diesel::dsl::not(email_predicate(inner, depth + 1)?))
                    }
                    EmailFilter::Present(EmailAttribute::Type) => Box::new(
                        user_emails::kind
                            .is_not_null()
                            .and(user_emails::kind.ne("")),
                    ),
                    EmailFilter::Present(_) => Box::new(user_emails::id.is_not_null().nullable()),
                    EmailFilter::Compare(attribute, op, value) => match (attribute, value) {
                        (EmailAttribute::Value, FilterValue::Text(text)) => {
                            required_text!(user_emails::value_key, *op, fold(text), EmailPredicate)
                        }
                        (EmailAttribute::Type, FilterValue::Text(text)) => {
                            let value = text.to_lowercase();
                            let kind = lower(user_emails::kind);
                            match op {
                                Comparison::Eq => {
                                    Box::new(user_emails::kind.is_not_null().and(kind.eq(value)))
                                }
                                Comparison::Ne => Box::new(
                                    user_emails::kind.is_null().nullable().or(kind.ne(value)),
                                ),
                                op => match like_pattern(*op, &value) {
                                    Some(pattern) => Box::new(
                                        user_emails::kind
                                            .is_not_null()
                                            .and(kind.like(pattern).escape('\\')),
                                    ),
                                    None => return Err(wrong("emails.type does not order")),
                                },
                            }
                        }
                        (EmailAttribute::Primary, FilterValue::Bool(flag)) => {
                            flag_comparison!(user_emails::is_primary, op, *flag, EmailPredicate)
                        }
                        (EmailAttribute::Verified, FilterValue::Bool(flag)) => {
                            flag_comparison!(user_emails::verified, op, *flag, EmailPredicate)
                        }
                        _ => return Err(wrong("the value does not suit the email attribute")),
                    },
                })
            }
        }
    };
}

backend_queries!(on_postgres, diesel::pg::Pg, diesel::PgConnection);
backend_queries!(on_sqlite, diesel::sqlite::Sqlite, diesel::SqliteConnection);
