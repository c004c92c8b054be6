//! The audit log: append-only and chained per tenant under a secret key.
//!
//! Each event's hash is an HMAC-SHA256 over its content and the previous event's
//! hash, keyed with the tenant's audit key: a random key stored in `audit_heads`
//! sealed under the master key. Changing, removing or reordering a stored event
//! breaks the chain and [`verify`] reports it — and someone with write access to the
//! database but not the master key cannot re-hash the chain after editing it (a
//! plain SHA-256 chain they could). The head row (last seq and hash) carries its own
//! HMAC, so cutting off the newest events and moving the head back is caught too.
//! Database triggers refuse UPDATE and DELETE on `audit_events`.
//!
//! Chains written before keying (plain SHA-256) stay verifiable: the head records
//! the first keyed `seq`, under the head's HMAC, and the first keyed event's MAC
//! covers the last unkeyed hash, so rewriting the old part breaks the link.
//!
//! An event about a user keeps its personal data sealed with that user's own key
//! ([`personal`]), which erasing the user destroys.

pub mod personal;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{AuditEventId, TenantId};
use gatehouse_core::secrets::Cipher;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{is_unique_violation, parse_column};
use crate::query::{FromRow, LoadItems, tenant_rows};
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
    /// The user whose key seals `ip` and `details` as stored; [`personal::open`]
    /// opens them.
    pub sealed_for: Option<String>,
    /// The user the event was about was erased: its personal data is gone.
    pub erased: bool,
    /// Its sealed personal data does not open (altered in the database).
    pub unreadable: bool,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub(crate) struct AuditRow {
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
    sealed_for: Option<String>,
}

/// A tenant's audit key, opened from its sealed form in `audit_heads`.
struct ChainKey(Zeroizing<Vec<u8>>);

/// The associated data a tenant's chain key is sealed with (for re-wrapping).
pub(crate) fn chain_key_aad(tenant: &str) -> Vec<u8> {
    ChainKey::aad(tenant)
}

impl ChainKey {
    fn generate() -> ChainKey {
        let mut key = Zeroizing::new(vec![0_u8; 32]);
        rand::rng().fill_bytes(&mut key);
        ChainKey(key)
    }

    pub(crate) fn aad(tenant: &str) -> Vec<u8> {
        format!("gatehouse audit chain key\0{tenant}").into_bytes()
    }

    fn open(cipher: &Cipher, tenant: &str, sealed: &str) -> StoreResult<ChainKey> {
        Ok(ChainKey(cipher.open(sealed, &Self::aad(tenant))?))
    }

    fn seal(&self, cipher: &Cipher, tenant: &str) -> String {
        cipher.seal(&self.0, &Self::aad(tenant))
    }

    fn mac(&self, message: &[u8]) -> String {
        // HMAC takes keys of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(message);
        hex::encode(mac.finalize().into_bytes())
    }

    /// The head's own MAC: binds the tip (so a cut-off tail shows) and the first
    /// keyed sequence number (so the keyed part cannot be declared unkeyed).
    fn head_mac(&self, tenant: &str, last_seq: i64, last_hash: &str, keyed_from: i64) -> String {
        let canonical = serde_json::json!(["head", tenant, last_seq, last_hash, keyed_from]);
        self.mac(canonical.to_string().as_bytes())
    }
}

/// The head row as stored.
#[derive(Queryable)]
struct Head {
    last_seq: i64,
    last_hash: String,
    sealed_key: Option<String>,
    keyed_from_seq: Option<i64>,
    head_mac: Option<String>,
}

const HEAD_COLUMNS: (
    audit_heads::last_seq,
    audit_heads::last_hash,
    audit_heads::sealed_key,
    audit_heads::keyed_from_seq,
    audit_heads::head_mac,
) = (
    audit_heads::last_seq,
    audit_heads::last_hash,
    audit_heads::sealed_key,
    audit_heads::keyed_from_seq,
    audit_heads::head_mac,
);

impl AuditRow {
    /// The canonical encoding of this row's content and its predecessor's hash: a
    /// JSON array, so field boundaries are unambiguous.
    fn canonical(&self) -> String {
        let mut fields = serde_json::json!([
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
        // Only sealed events name their subject; older events hash as they always did.
        if let (Some(subject), Some(fields)) = (&self.sealed_for, fields.as_array_mut()) {
            fields.push(serde_json::Value::String(subject.clone()));
        }
        fields.to_string()
    }

    /// The unkeyed hash of events written before chains were keyed.
    fn legacy_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical().as_bytes()))
    }

    fn keyed_hash(&self, key: &ChainKey) -> String {
        key.mac(self.canonical().as_bytes())
    }
}

impl FromRow for AuditEvent {
    type Row = AuditRow;
    fn from_row(row: AuditRow) -> StoreResult<AuditEvent> {
        Ok(AuditEvent {
            id: parse_column("audit_events", &row.id)?,
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
            sealed_for: row.sealed_for,
            erased: false,
            unreadable: false,
        })
    }
}

/// Appends an event to the tenant's chain, keyed with the tenant's audit key (made
/// on the tenant's first event, or on the first event after an upgrade from unkeyed
/// chains). Appends to one tenant are serialised by locking its head row first (a
/// write, so SQLite takes its write lock at once instead of failing to upgrade a
/// read lock later). Call it inside the transaction that makes the change it
/// records, so both commit or neither does.
pub fn append(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    event: NewAuditEvent,
) -> StoreResult<AuditEvent> {
    let tenant_key = tenant.to_string();
    let details = event.details.to_string();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = crate::db::transaction(conn, |conn| {
            let locked = diesel::update(audit_heads::table.find(&tenant_key))
                .set(audit_heads::last_seq.eq(audit_heads::last_seq))
                .execute(conn)?;
            let head = if locked == 0 {
                // First event of this tenant. A concurrent first append makes one of the
                // two inserts fail on the primary key; that one retries.
                diesel::insert_into(audit_heads::table)
                    .values((
                        audit_heads::tenant_id.eq(&tenant_key),
                        audit_heads::last_seq.eq(0_i64),
                        audit_heads::last_hash.eq(GENESIS_HASH),
                    ))
                    .execute(conn)?;
                Head {
                    last_seq: 0,
                    last_hash: GENESIS_HASH.to_owned(),
                    sealed_key: None,
                    keyed_from_seq: None,
                    head_mac: None,
                }
            } else {
                audit_heads::table
                    .find(&tenant_key)
                    .select(HEAD_COLUMNS)
                    .first::<Head>(conn)?
            };
            let (key, keyed_from, sealed) = match (&head.sealed_key, head.keyed_from_seq) {
                (Some(sealed), Some(from)) => (
                    ChainKey::open(cipher, &tenant_key, sealed)?,
                    from,
                    sealed.clone(),
                ),
                _ => {
                    let key = ChainKey::generate();
                    let sealed = key.seal(cipher, &tenant_key);
                    (key, head.last_seq + 1, sealed)
                }
            };
            let id = AuditEventId::new().to_string();
            // Whose personal data the event holds: a user it names, or else the
            // identifier someone typed (a failed sign-in, a recovery request), under
            // a pseudonym only the chain's key computes.
            let subject = personal::subject_of(&event.actor, event.target.as_deref())
                .map(str::to_owned)
                .or_else(|| {
                    event
                        .details
                        .get("identifier")
                        .and_then(serde_json::Value::as_str)
                        .map(|typed| identifier_subject(&key, typed))
                });
            let subject_key = match &subject {
                Some(subject) => personal::key_for_append(conn, cipher, now, &tenant_key, subject)?
                    .map(|key| (subject.clone(), key)),
                None => None,
            };
            let (ip, stored_details, sealed_for) = match &subject_key {
                Some((subject, key)) => (
                    None,
                    key.seal(&tenant_key, &id, event.ip.as_deref(), &details),
                    Some(subject.clone()),
                ),
                // An erased subject: what is left is written in clear, but not where
                // the request came from.
                None if subject.is_some() => (None, details.clone(), None),
                None => (event.ip.clone(), details.clone(), None),
            };
            let mut row = AuditRow {
                id,
                tenant_id: tenant_key.clone(),
                seq: head.last_seq + 1,
                occurred_at: now.naive_utc(),
                actor: event.actor.clone(),
                action: event.action.clone(),
                target: event.target.clone(),
                outcome: event.outcome.as_str().to_owned(),
                ip,
                details: stored_details,
                prev_hash: head.last_hash,
                hash: String::new(),
                sealed_for,
            };
            row.hash = row.keyed_hash(&key);
            diesel::insert_into(audit_events::table)
                .values(&row)
                .execute(conn)?;
            diesel::update(audit_heads::table.find(&tenant_key))
                .set((
                    audit_heads::last_seq.eq(row.seq),
                    audit_heads::last_hash.eq(&row.hash),
                    audit_heads::sealed_key.eq(&sealed),
                    audit_heads::keyed_from_seq.eq(keyed_from),
                    audit_heads::head_mac.eq(key.head_mac(
                        &tenant_key,
                        row.seq,
                        &row.hash,
                        keyed_from,
                    )),
                ))
                .execute(conn)?;
            Ok(row)
        });
        match result {
            Ok(row) => return AuditEvent::from_row(row),
            Err(StoreError::Database(e))
                if is_unique_violation(&e) && attempt < APPEND_ATTEMPTS =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Which of a tenant's events to read; every field narrows the result, and all of
/// them are conditions of the query (an index on `(tenant_id, seq)` orders it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// The actor as recorded (`operator:alice`, `user:…`, `client:…`).
    pub actor: Option<String>,
    /// The action, or a prefix ending in `.` (`user.` for every user event).
    /// Actions are lower case; the filter is compared lower-cased, so both backends
    /// answer alike (SQLite's `LIKE` ignores ASCII case, PostgreSQL's does not).
    pub action: Option<String>,
    /// The target as recorded (`user:…`, `client:…`).
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// Exclusive.
    pub until: Option<DateTime<Utc>>,
}

/// `LIKE` pattern for "starts with `prefix`", its wildcards escaped with `\`.
fn starts_with_pattern(prefix: &str) -> String {
    format!("{}%", crate::query::like_literal(prefix))
}

/// A tenant's events that match `filter`, in order; the cursor is the last `seq`
/// returned, as for [`list`].
pub fn search(
    conn: &mut AnyConnection,
    tenant: TenantId,
    filter: &AuditFilter,
    page: &PageRequest,
) -> StoreResult<Page<AuditEvent>> {
    let after: i64 = match page.after.as_deref() {
        None => 0,
        Some(cursor) => cursor.parse().map_err(|_| {
            StoreError::invalid("page request", "audit cursor must be a sequence number")
        })?,
    };
    let mut query = tenant_rows!(audit_events, tenant)
        .filter(audit_events::seq.gt(after))
        .into_boxed();
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_events::actor.eq(actor.clone()));
    }
    match filter
        .action
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some(prefix) if prefix.ends_with('.') => {
            query = query.filter(
                audit_events::action
                    .like(starts_with_pattern(prefix))
                    .escape('\\'),
            );
        }
        Some(action) => query = query.filter(audit_events::action.eq(action.to_owned())),
        None => {}
    }
    if let Some(target) = &filter.target {
        query = query.filter(audit_events::target.eq(target.clone()));
    }
    if let Some(since) = filter.since {
        query = query.filter(audit_events::occurred_at.ge(since.naive_utc()));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_events::occurred_at.lt(until.naive_utc()));
    }
    let events = query
        .order(audit_events::seq.asc())
        .limit(page.fetch_limit()?)
        .load_items(conn)?;
    Ok(Page::from_rows(events, page, |e: &AuditEvent| {
        e.seq.to_string()
    }))
}

/// A tenant's events in order; the cursor is the last `seq` returned.
pub fn list(
    conn: &mut AnyConnection,
    tenant: TenantId,
    page: &PageRequest,
) -> StoreResult<Page<AuditEvent>> {
    search(conn, tenant, &AuditFilter::default(), page)
}

/// The subject an identifier's events are sealed for: a keyed pseudonym, so the
/// table of subject keys does not list the addresses people typed.
fn identifier_subject(key: &ChainKey, identifier: &str) -> String {
    let mac = key.mac(format!("audit subject\0{identifier}").as_bytes());
    format!("identifier:{}", &mac[..32])
}

/// Erases what the tenant's audit log holds under each of `identifiers` (folded, as
/// sign-in and recovery record them): their keys are destroyed, so those events
/// read as erased. No tombstone stays — the next person to type the identifier is
/// someone new, whose events get a new key. Call it in the transaction that deletes
/// the user who owned them.
pub fn erase_identifiers(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    tenant: TenantId,
    identifiers: &[String],
) -> StoreResult<()> {
    use crate::schema::audit_subject_keys;
    let tenant_key = tenant.to_string();
    let sealed: Option<Option<String>> = audit_heads::table
        .find(&tenant_key)
        .select(audit_heads::sealed_key)
        .first(conn)
        .optional()?;
    let Some(Some(sealed)) = sealed else {
        // No keyed chain, so no event was sealed for an identifier.
        return Ok(());
    };
    let key = ChainKey::open(cipher, &tenant_key, &sealed)?;
    let subjects: Vec<String> = identifiers
        .iter()
        .map(|identifier| identifier_subject(&key, identifier))
        .collect();
    diesel::delete(
        audit_subject_keys::table
            .filter(audit_subject_keys::tenant_id.eq(&tenant_key))
            .filter(audit_subject_keys::subject.eq_any(&subjects)),
    )
    .execute(conn)?;
    Ok(())
}

/// Deletes a deleted tenant's trail: its events, chain head and subject keys. The
/// database refuses it while the tenant row exists, so call it in the transaction
/// that deletes the tenant, after the row is gone.
pub fn delete_for_deleted_tenant(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<usize> {
    use crate::schema::audit_subject_keys;
    let key = tenant.to_string();
    let events = diesel::delete(audit_events::table.filter(audit_events::tenant_id.eq(&key)))
        .execute(conn)?;
    diesel::delete(audit_heads::table.find(&key)).execute(conn)?;
    diesel::delete(audit_subject_keys::table.filter(audit_subject_keys::tenant_id.eq(&key)))
        .execute(conn)?;
    Ok(events)
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

/// MACs compared in constant time: how much of one matched must not show.
fn same_mac(expected: &str, found: &str) -> bool {
    use subtle::ConstantTimeEq;
    expected.len() == found.len() && bool::from(expected.as_bytes().ct_eq(found.as_bytes()))
}

/// Walks every tenant's chain and reports each place where it does not hold. Needs
/// the master keys: the chain is keyed, and a chain that cannot be checked (its key
/// is missing or does not open) is reported, never passed.
pub fn verify(conn: &mut AnyConnection, cipher: &Cipher) -> StoreResult<VerifyReport> {
    let mut tenants: Vec<String> = audit_events::table
        .select(audit_events::tenant_id)
        .distinct()
        .load(conn)?;
    let heads: Vec<(String, Head)> = audit_heads::table
        .select((audit_heads::tenant_id, HEAD_COLUMNS))
        .load(conn)?;
    for (tenant, _) in &heads {
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
        let head = heads.iter().find(|(t, _)| *t == tenant).map(|(_, h)| h);
        // The key and where keyed events start; without them nothing can be trusted.
        let keyed = match head.map(|h| (&h.sealed_key, h.keyed_from_seq, &h.head_mac)) {
            Some((Some(sealed), Some(from), Some(head_mac))) => {
                match ChainKey::open(cipher, &tenant, sealed) {
                    Ok(key) => Some((key, from, head_mac.clone())),
                    Err(_) => {
                        problem(0, "the chain's key does not open with the configured master keys (wrong keys, or the key was replaced)".into());
                        None
                    }
                }
            }
            Some(_) => {
                problem(0, "the chain head has no key: the chain cannot be checked (keyed chains never lose their key)".into());
                None
            }
            None => None,
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
                let expected_hash = match &keyed {
                    Some((key, from, _)) if row.seq >= *from => Some(row.keyed_hash(key)),
                    Some(_) => Some(row.legacy_hash()),
                    None => None,
                };
                if expected_hash.is_some_and(|hash| !same_mac(&hash, &row.hash)) {
                    problem(
                        row.seq,
                        "content does not match its keyed hash (the event was altered or the chain re-hashed)".into(),
                    );
                }
                expected_seq = row.seq + 1;
                prev_hash = row.hash.clone();
            }
        }
        match head {
            Some(head) => {
                if head.last_seq != expected_seq - 1 || head.last_hash != prev_hash {
                    problem(
                        head.last_seq,
                        format!(
                            "chain ends at event {} but the head records event {}: events were cut off or the head was altered",
                            expected_seq - 1,
                            head.last_seq
                        ),
                    );
                }
                if let Some((key, from, head_mac)) = &keyed
                    && !same_mac(
                        &key.head_mac(&tenant, head.last_seq, &head.last_hash, *from),
                        head_mac,
                    )
                {
                    problem(
                        head.last_seq,
                        "the chain head does not match its MAC: the head was moved (events cut off) or rewritten".into(),
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
