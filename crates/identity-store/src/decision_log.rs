//! The policy decision point's log: input, decision, reason code and determining
//! policies of each evaluation. Written in batches by a background writer (the PDP
//! never writes on the request path); read by operators.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::TenantId;

use crate::schema::decision_log;
use crate::{AnyConnection, StoreError, StoreResult};

pub const MAX_LIST: i64 = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct NewDecision {
    pub tenant_id: TenantId,
    pub at: DateTime<Utc>,
    /// The evaluation request as JSON (subject, resource, action, context).
    pub request: serde_json::Value,
    pub decision: bool,
    pub reason: Option<String>,
    pub policies: Vec<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// UUIDv7: sorts by time of writing.
    pub id: String,
    pub tenant_id: TenantId,
    pub at: DateTime<Utc>,
    pub request: serde_json::Value,
    pub decision: bool,
    pub reason: Option<String>,
    pub policies: Vec<String>,
    pub request_id: Option<String>,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = decision_log)]
struct Row {
    id: String,
    tenant_id: String,
    at: NaiveDateTime,
    request: String,
    decision: bool,
    reason: Option<String>,
    policies: String,
    request_id: Option<String>,
}

impl TryFrom<Row> for Decision {
    type Error = StoreError;
    fn try_from(row: Row) -> StoreResult<Decision> {
        let corrupt = |e: &dyn std::fmt::Display| StoreError::corrupt("decision_log", e);
        Ok(Decision {
            tenant_id: row.tenant_id.parse().map_err(|e| corrupt(&e))?,
            request: serde_json::from_str(&row.request).map_err(|e| corrupt(&e))?,
            policies: serde_json::from_str(&row.policies).map_err(|e| corrupt(&e))?,
            id: row.id,
            at: row.at.and_utc(),
            decision: row.decision,
            reason: row.reason,
            request_id: row.request_id,
        })
    }
}

/// Writes a batch in one transaction; returns how many rows were written.
pub fn append(conn: &mut AnyConnection, batch: &[NewDecision]) -> StoreResult<usize> {
    if batch.is_empty() {
        return Ok(0);
    }
    let rows: Vec<Row> = batch
        .iter()
        .map(|d| Row {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: d.tenant_id.to_string(),
            at: d.at.naive_utc(),
            request: d.request.to_string(),
            decision: d.decision,
            reason: d.reason.clone(),
            policies: serde_json::Value::from(d.policies.clone()).to_string(),
            request_id: d.request_id.clone(),
        })
        .collect();
    // Row by row inside one transaction: MultiConnection has no portable multi-row
    // INSERT, and the transaction makes the batch one commit (one fsync) anyway.
    crate::db::transaction(conn, |conn| {
        for row in &rows {
            diesel::insert_into(decision_log::table)
                .values(row)
                .execute(conn)?;
        }
        Ok(rows.len())
    })
}

/// The tenant's newest decisions, newest first (at most [`MAX_LIST`]).
pub fn recent(
    conn: &mut AnyConnection,
    tenant: TenantId,
    limit: i64,
) -> StoreResult<Vec<Decision>> {
    let rows: Vec<Row> = decision_log::table
        .filter(decision_log::tenant_id.eq(tenant.to_string()))
        .order((decision_log::at.desc(), decision_log::id.desc()))
        .limit(limit.clamp(1, MAX_LIST))
        .select(Row::as_select())
        .load(conn)?;
    rows.into_iter().map(Decision::try_from).collect()
}

/// Forgets decisions taken before `before` (retention).
pub fn prune(conn: &mut AnyConnection, before: DateTime<Utc>) -> StoreResult<usize> {
    Ok(
        diesel::delete(decision_log::table.filter(decision_log::at.lt(before.naive_utc())))
            .execute(conn)?,
    )
}
