//! Per-tenant Cedar policy sets, append-only: each save is a new version and the
//! highest version serves. The store keeps text only; parsing and validation belong
//! to the policy decision point (`gatehouse-consent`), which calls [`insert`] only
//! with a set it has validated.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::TenantId;

use crate::error::{is_unique_violation, parse_column};
use crate::query::{FromRow, LoadItems, tenant_rows};
use crate::schema::policy_sets;
use crate::{AnyConnection, StoreError, StoreResult};

const ENTITY: &str = "policy set";
/// A concurrent save takes the same version number; the loser tries again.
const INSERT_ATTEMPTS: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySet {
    pub tenant_id: TenantId,
    pub version: i64,
    pub text: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// A version without its text, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySetVersion {
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub size: usize,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = policy_sets)]
pub(crate) struct Row {
    tenant_id: String,
    version: i64,
    text: String,
    created_at: NaiveDateTime,
    created_by: String,
}

impl FromRow for PolicySet {
    type Row = Row;
    fn from_row(row: Row) -> StoreResult<PolicySet> {
        Ok(PolicySet {
            tenant_id: parse_column("policy_sets", &row.tenant_id)?,
            version: row.version,
            text: row.text,
            created_at: row.created_at.and_utc(),
            created_by: row.created_by,
        })
    }
}

/// Stores `text` as the tenant's next version and returns it.
pub fn insert(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    text: &str,
    created_by: &str,
) -> StoreResult<PolicySet> {
    if created_by.trim().is_empty() {
        return Err(StoreError::invalid(ENTITY, "created_by must not be empty"));
    }
    let tenant_key = tenant.to_string();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = conn.transaction(|conn| {
            let version: Option<i64> = policy_sets::table
                .filter(policy_sets::tenant_id.eq(&tenant_key))
                .select(diesel::dsl::max(policy_sets::version))
                .first(conn)?;
            let row = Row {
                tenant_id: tenant_key.clone(),
                version: version.unwrap_or(0) + 1,
                text: text.to_owned(),
                created_at: now.naive_utc(),
                created_by: created_by.to_owned(),
            };
            diesel::insert_into(policy_sets::table)
                .values(&row)
                .execute(conn)?;
            Ok::<_, diesel::result::Error>(row)
        });
        match result {
            Ok(row) => return PolicySet::from_row(row),
            Err(e) if is_unique_violation(&e) && attempt < INSERT_ATTEMPTS => continue,
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::StaleVersion { entity: ENTITY });
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The serving version number: one indexed lookup, cheap enough to poll.
pub fn latest_version(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<Option<i64>> {
    Ok(tenant_rows!(policy_sets, tenant)
        .select(diesel::dsl::max(policy_sets::version))
        .first::<Option<i64>>(conn)?)
}

/// The serving set, if the tenant has saved one.
pub fn latest(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<Option<PolicySet>> {
    tenant_rows!(policy_sets, tenant)
        .order(policy_sets::version.desc())
        .first_item(conn)
}

pub fn get(conn: &mut AnyConnection, tenant: TenantId, version: i64) -> StoreResult<PolicySet> {
    tenant_rows!(policy_sets, tenant)
        .filter(policy_sets::version.eq(version))
        .one_item(conn, ENTITY)
}

/// Every version of the tenant's set, newest first.
pub fn list(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<Vec<PolicySetVersion>> {
    let rows: Vec<Row> = tenant_rows!(policy_sets, tenant)
        .order(policy_sets::version.desc())
        .select(Row::as_select())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|row| PolicySetVersion {
            version: row.version,
            created_at: row.created_at.and_utc(),
            created_by: row.created_by,
            size: row.text.len(),
        })
        .collect())
}
