//! The audit log: append-only and hash-chained per tenant.
//!
//! Each event's hash covers its content and the previous event's hash, so changing,
//! removing or reordering a stored event breaks the chain and [`verify`] reports it.
//! Database triggers refuse UPDATE and DELETE on `audit_events`; the chain catches
//! what someone with enough privilege to drop those triggers does anyway. Cutting off
//! the newest events is caught by comparing with `audit_heads` (and, against an
//! attacker who rewrites both, only by anchoring the head hash outside the database,
//! which operators can do by exporting it).

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{AuditEventId, TenantId};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::is_unique_violation;
use crate::schema::{audit_events, audit_heads};
use crate::{AnyConnection, Page, PageRequest, StoreError, StoreResult};

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const APPEND_ATTEMPTS: usize = 5;
const VERIFY_BATCH: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    /// Who acted: "user:<id>", "client:<id>", "admin:<id>", "system".
    pub actor: String,
    /// What happened, dotted: "user.created", "login.failed", "audit.verified".
    pub action: String,
    pub target: Option<String>,
    pub outcome: Outcome,
    pub ip: Option<String>,
    /// Extra context. Must never contain a secret.
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub id: AuditEventId,
    pub tenant_id: String,
    pub seq: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub ip: Option<String>,
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
struct AuditRow {
    id: String,
    tenant_id: String,
    seq: i64,
    occurred_at: NaiveDateTime,
    actor: String,
    action: String,
    target: Option<String>,
    outcome: String,
    ip: Option<String>,
    details: String,
    prev_hash: String,
    hash: String,
}

impl AuditRow {
    /// The hash over this row's content and its predecessor's hash. The encoding is a
    /// JSON array, so field boundaries are unambiguous.
    fn compute_hash(&self) -> String {
        let canonical = serde_json::json!([
            self.prev_hash,
            self.id,
            self.tenant_id,
            self.seq,
            self.occurred_at
                .and_utc()
                .to_rfc3339_opts(SecondsFormat::Micros, true),
            self.actor,
            self.action,
            self.target,
            self.outcome,
            self.ip,
            self.details,
        ]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;
    fn try_from(row: AuditRow) -> StoreResult<AuditEvent> {
        Ok(AuditEvent {
            id: row
                .id
                .parse()
                .map_err(|e| StoreError::corrupt("audit_events", e))?,
            tenant_id: row.tenant_id,
            seq: row.seq,
            occurred_at: row.occurred_at.and_utc(),
            actor: row.actor,
            action: row.action,
            target: row.target,
            outcome: row.outcome,
            ip: row.ip,
            details: row.details,
            prev_hash: row.prev_hash,
            hash: row.hash,
        })
    }
}

/// Appends an event to the tenant's chain. Appends to one tenant are serialised by
/// locking its head row first (a write, so SQLite takes its write lock at once instead
/// of failing to upgrade a read lock later).
pub fn append(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    event: NewAuditEvent,
) -> StoreResult<AuditEvent> {
    let tenant_key = tenant.to_string();
    let details = event.details.to_string();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = conn.transaction(|conn| {
            let locked = diesel::update(audit_heads::table.find(&tenant_key))
                .set(audit_heads::last_seq.eq(audit_heads::last_seq))
                .execute(conn)?;
            let (last_seq, last_hash) = if locked == 0 {
                // First event of this tenant. A concurrent first append makes one of the
                // two inserts fail on the primary key; that one retries.
                diesel::insert_into(audit_heads::table)
                    .values((
                        audit_heads::tenant_id.eq(&tenant_key),
                        audit_heads::last_seq.eq(0_i64),
                        audit_heads::last_hash.eq(GENESIS_HASH),
                    ))
                    .execute(conn)?;
                (0, GENESIS_HASH.to_owned())
            } else {
                audit_heads::table
                    .find(&tenant_key)
                    .select((audit_heads::last_seq, audit_heads::last_hash))
                    .first::<(i64, String)>(conn)?
            };
            let mut row = AuditRow {
                id: AuditEventId::new().to_string(),
                tenant_id: tenant_key.clone(),
                seq: last_seq + 1,
                occurred_at: now.naive_utc(),
                actor: event.actor.clone(),
                action: event.action.clone(),
                target: event.target.clone(),
                outcome: event.outcome.as_str().to_owned(),
                ip: event.ip.clone(),
                details: details.clone(),
                prev_hash: last_hash,
                hash: String::new(),
            };
            row.hash = row.compute_hash();
            diesel::insert_into(audit_events::table)
                .values(&row)
                .execute(conn)?;
            diesel::update(audit_heads::table.find(&tenant_key))
                .set((
                    audit_heads::last_seq.eq(row.seq),
                    audit_heads::last_hash.eq(&row.hash),
                ))
                .execute(conn)?;
            Ok::<_, diesel::result::Error>(row)
        });
        match result {
            Ok(row) => return row.try_into(),
            Err(e) if is_unique_violation(&e) && attempt < APPEND_ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A tenant's events in order; the cursor is the last `seq` returned.
pub fn list(
    conn: &mut AnyConnection,
    tenant: TenantId,
    page: &PageRequest,
) -> StoreResult<Page<AuditEvent>> {
    let after: i64 = match page.after.as_deref() {
        None => 0,
        Some(cursor) => cursor.parse().map_err(|_| {
            StoreError::invalid("page request", "audit cursor must be a sequence number")
        })?,
    };
    let rows: Vec<AuditRow> = audit_events::table
        .filter(audit_events::tenant_id.eq(tenant.to_string()))
        .filter(audit_events::seq.gt(after))
        .order(audit_events::seq.asc())
        .limit(page.fetch_limit()?)
        .select(AuditRow::as_select())
        .load(conn)?;
    let items = rows
        .into_iter()
        .map(AuditEvent::try_from)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page::from_rows(items, page, |e| e.seq.to_string()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    pub tenant_id: String,
    pub seq: i64,
    pub problem: String,
}

#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub tenants: usize,
    pub events: u64,
    pub problems: Vec<ChainProblem>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Walks every tenant's chain and reports each place where it does not hold.
pub fn verify(conn: &mut AnyConnection) -> StoreResult<VerifyReport> {
    let mut tenants: Vec<String> = audit_events::table
        .select(audit_events::tenant_id)
        .distinct()
        .load(conn)?;
    let heads: Vec<(String, i64, String)> = audit_heads::table
        .select((
            audit_heads::tenant_id,
            audit_heads::last_seq,
            audit_heads::last_hash,
        ))
        .load(conn)?;
    for (tenant, _, _) in &heads {
        if !tenants.contains(tenant) {
            tenants.push(tenant.clone());
        }
    }
    tenants.sort();

    let mut report = VerifyReport {
        tenants: tenants.len(),
        ..VerifyReport::default()
    };
    for tenant in tenants {
        let mut problem = |seq: i64, text: String| {
            report.problems.push(ChainProblem {
                tenant_id: tenant.clone(),
                seq,
                problem: text,
            })
        };
        let mut expected_seq = 1_i64;
        let mut prev_hash = GENESIS_HASH.to_owned();
        let mut after = 0_i64;
        loop {
            let batch: Vec<AuditRow> = audit_events::table
                .filter(audit_events::tenant_id.eq(&tenant))
                .filter(audit_events::seq.gt(after))
                .order(audit_events::seq.asc())
                .limit(VERIFY_BATCH)
                .select(AuditRow::as_select())
                .load(conn)?;
            let Some(last) = batch.last() else { break };
            after = last.seq;
            for row in &batch {
                report.events += 1;
                if row.seq != expected_seq {
                    problem(
                        row.seq,
                        format!("sequence gap: expected {expected_seq}, found {}", row.seq),
                    );
                }
                if row.prev_hash != prev_hash {
                    problem(row.seq, "previous-hash link broken (an event was removed or altered before this one)".into());
                }
                if row.compute_hash() != row.hash {
                    problem(
                        row.seq,
                        "content does not match its hash (the event was altered)".into(),
                    );
                }
                expected_seq = row.seq + 1;
                prev_hash = row.hash.clone();
            }
        }
        match heads.iter().find(|(t, _, _)| *t == tenant) {
            Some((_, last_seq, last_hash)) => {
                if *last_seq != expected_seq - 1 || *last_hash != prev_hash {
                    problem(
                        *last_seq,
                        format!(
                            "chain ends at event {} but the head records event {last_seq}: events were cut off or the head was altered",
                            expected_seq - 1
                        ),
                    );
                }
            }
            None => problem(
                expected_seq - 1,
                "events exist but the chain head is missing".into(),
            ),
        }
    }
    Ok(report)
}
