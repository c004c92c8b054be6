//! The policy decision point's log: input, decision, reason code and determining
//! policies of each evaluation, the request members the PDP did not use, and gap
//! records standing for decisions that were not logged. Written in batches by a
//! background writer (the PDP never writes on the request path); read by operators.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::TenantId;

use crate::query::{FromRow, LoadItems, tenant_rows};
use crate::schema::decision_log;
use crate::{AnyConnection, StoreError, StoreResult};

pub const MAX_LIST: i64 = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct NewDecision {
    pub tenant_id: TenantId,
    pub at: DateTime<Utc>,
    /// The evaluation request as JSON text (subject, resource, action, context):
    /// serialized once by the PDP, stored as is.
    pub request: String,
    pub decision: bool,
    pub reason: Option<String>,
    pub policies: Vec<String>,
    pub request_id: Option<String>,
    /// Request members the PDP did not use (`context.consent`,
    /// `subject.properties.x`, …): a PEP's typo shows here.
    pub unknown_keys: Vec<String>,
    /// `Some` on a gap record only: that many decisions of the tenant, taken from
    /// `at` on, were not logged.
    pub skipped: Option<u64>,
}

impl NewDecision {
    /// A gap record: `skipped` decisions of `tenant`, taken between `from` and
    /// `until`, are not in the log (see [`Decision::skipped`]).
    pub fn gap(
        tenant: TenantId,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        skipped: u64,
    ) -> NewDecision {
        NewDecision {
            tenant_id: tenant,
            at: from,
            request: serde_json::json!({ "skipped": skipped, "until": until }).to_string(),
            decision: false,
            reason: Some(GAP_REASON.to_owned()),
            policies: Vec::new(),
            request_id: None,
            unknown_keys: Vec::new(),
            skipped: Some(skipped),
        }
    }
}

/// The reason a gap record carries, so that a reader that knows nothing of gaps
/// does not take one for a denial by policy.
pub const GAP_REASON: &str = "decision_log_gap";

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
    pub unknown_keys: Vec<String>,
    /// On a gap record: how many decisions it stands for; `None` on a decision.
    pub skipped: Option<i64>,
}

impl Decision {
    pub fn is_gap(&self) -> bool {
        self.skipped.is_some()
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = decision_log)]
pub(crate) struct Row {
    id: String,
    tenant_id: String,
    at: NaiveDateTime,
    request: String,
    decision: bool,
    reason: Option<String>,
    policies: String,
    request_id: Option<String>,
    unknown_keys: Option<String>,
    skipped: Option<i64>,
}

impl FromRow for Decision {
    type Row = Row;
    fn from_row(row: Row) -> StoreResult<Decision> {
        let corrupt = |e: &dyn std::fmt::Display| StoreError::corrupt("decision_log", e);
        Ok(Decision {
            tenant_id: row.tenant_id.parse().map_err(|e| corrupt(&e))?,
            request: serde_json::from_str(&row.request).map_err(|e| corrupt(&e))?,
            policies: serde_json::from_str(&row.policies).map_err(|e| corrupt(&e))?,
            unknown_keys: match row.unknown_keys {
                Some(keys) => serde_json::from_str(&keys).map_err(|e| corrupt(&e))?,
                None => Vec::new(),
            },
            skipped: row.skipped,
            id: row.id,
            at: row.at.and_utc(),
            decision: row.decision,
            reason: row.reason,
            request_id: row.request_id,
        })
    }
}

/// Rows per INSERT statement: one statement is about a quarter of a millisecond of
/// the writer's CPU, the longest a request thread waits for the writer's core (it
/// yields between statements), and far below SQLite's 32,766 bound parameters.
const ROWS_PER_INSERT: usize = 64;

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
            request: d.request.clone(),
            decision: d.decision,
            reason: d.reason.clone(),
            // A list of strings always serializes.
            policies: serde_json::to_string(&d.policies).unwrap_or_else(|_| "[]".to_owned()),
            request_id: d.request_id.clone(),
            unknown_keys: (!d.unknown_keys.is_empty()).then(|| {
                serde_json::to_string(&d.unknown_keys).unwrap_or_else(|_| "[]".to_owned())
            }),
            skipped: d.skipped.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        })
        .collect();
    // Multi-row INSERTs, one per backend: `MultiConnection` has no portable
    // multi-row insert, and one statement per row cost the PDP's writer thread about
    // as much again as the rows themselves.
    crate::db::transaction(conn, |conn| {
        for (index, chunk) in rows.chunks(ROWS_PER_INSERT).enumerate() {
            if index > 0 {
                // The PDP's writer runs beside request threads on a busy node: each
                // statement is under a millisecond of CPU, and between them a
                // request thread waiting for this core gets it now rather than at
                // the end of a scheduler slice. Commits stay large (fewer pages
                // written again), which costs the writer less than small ones.
                std::thread::yield_now();
            }
            match conn {
                AnyConnection::Sqlite(c) => diesel::insert_into(decision_log::table)
                    .values(chunk)
                    .execute(c)?,
                AnyConnection::Postgresql(c) => diesel::insert_into(decision_log::table)
                    .values(chunk)
                    .execute(c)?,
            };
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
    tenant_rows!(decision_log, tenant)
        .order((decision_log::at.desc(), decision_log::id.desc()))
        .limit(limit.clamp(1, MAX_LIST))
        .load_items(conn)
}

/// Forgets decisions taken before `before` (retention).
pub fn prune(conn: &mut AnyConnection, before: DateTime<Utc>) -> StoreResult<usize> {
    Ok(
        diesel::delete(decision_log::table.filter(decision_log::at.lt(before.naive_utc())))
            .execute(conn)?,
    )
}

/// Rows one statement of [`prune_tenant`] deletes at most.
pub const PRUNE_CHUNK: i64 = 10_000;

/// Forgets the tenant's decisions taken before `before`, [`PRUNE_CHUNK`] rows per
/// statement: through the `(tenant_id, at)` index rather than a scan of every
/// tenant's log, and without one huge statement holding SQLite's write lock (or
/// bloating PostgreSQL's WAL) when a busy PDP's backlog falls due.
pub fn prune_tenant(
    conn: &mut AnyConnection,
    tenant: TenantId,
    before: DateTime<Utc>,
) -> StoreResult<usize> {
    let mut total = 0;
    loop {
        // The ids first: a DELETE cannot select from its own table in diesel.
        let due: Vec<String> = tenant_rows!(decision_log, tenant)
            .filter(decision_log::at.lt(before.naive_utc()))
            .select(decision_log::id)
            .limit(PRUNE_CHUNK)
            .load(conn)?;
        if due.is_empty() {
            return Ok(total);
        }
        total += diesel::delete(decision_log::table.filter(decision_log::id.eq_any(&due)))
            .execute(conn)?;
        if i64::try_from(due.len()).unwrap_or(i64::MAX) < PRUNE_CHUNK {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::Duration;
    use gatehouse_core::{Clock, ManualClock};
    use serde_json::json;

    use super::*;
    use crate::tenants::{self, TenantData};

    fn tenant(conn: &mut AnyConnection, slug: &str, now: DateTime<Utc>) -> TenantId {
        tenants::create(
            conn,
            now,
            TenantData {
                slug: slug.into(),
                display_name: slug.into(),
                ..TenantData::default()
            },
        )
        .unwrap()
        .id
    }

    crate::backend_tests! {
        // What the housekeeping does with `pdp.decision_log_retention_days = 90`:
        // `prune_tenant(tenant, now - 90 days)` for every tenant. Older decisions go;
        // the rest stay.
        fn decisions_past_the_retention_go_and_newer_ones_stay(db) {
            let mut conn = db.conn();
            let conn = &mut conn;
            let now = ManualClock::fixed().now();
            let t = tenant(conn, "keep", now);
            let other = tenant(conn, "keep-other", now);
            let retention = Duration::days(90);
            let at = |age: Duration, tenant: TenantId, id: &str| NewDecision {
                tenant_id: tenant,
                at: now - age,
                request: json!({"subject": {"type": "user", "id": "u1"}}).to_string(),
                decision: true,
                reason: None,
                policies: vec![],
                request_id: Some(id.to_owned()),
                unknown_keys: vec![],
                skipped: None,
            };
            let batch = [
                at(Duration::days(400), t, "a-year-old"),
                at(retention + Duration::seconds(1), t, "just-past"),
                at(retention + Duration::days(3), other, "other-tenant-old"),
                at(retention, t, "exactly-at-the-limit"),
                at(retention - Duration::seconds(1), other, "just-inside"),
                at(Duration::zero(), t, "now"),
            ];
            assert_eq!(append(conn, &batch).unwrap(), 6);

            let kept = |conn: &mut AnyConnection, tenant| {
                recent(conn, tenant, 10)
                    .unwrap()
                    .into_iter()
                    .map(|d| d.request_id.unwrap())
                    .collect::<Vec<_>>()
            };
            // Per tenant, as the housekeeping prunes.
            assert_eq!(prune_tenant(conn, t, now - retention).unwrap(), 2);
            assert_eq!(kept(conn, t), vec!["now", "exactly-at-the-limit"]);
            assert_eq!(
                kept(conn, other),
                vec!["just-inside", "other-tenant-old"],
                "another tenant's decisions wait for its own pass"
            );
            assert_eq!(prune_tenant(conn, other, now - retention).unwrap(), 1);
            assert_eq!(kept(conn, other), vec!["just-inside"]);
            assert_eq!(prune_tenant(conn, t, now - retention).unwrap(), 0, "nothing more");
            assert_eq!(prune(conn, now - retention).unwrap(), 0);
        }
    }
}
