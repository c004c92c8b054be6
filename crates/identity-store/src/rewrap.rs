//! Master-key rotation: every value sealed under a master key other than the active
//! one is opened and sealed again under the active key, row by row in short
//! transactions, while the nodes keep serving. Once [`status`] shows no value under
//! the old key, the key can leave the configuration.
//!
//! A row is rewritten only if it still holds what was read (compare-and-set), so a
//! write racing the re-wrap (a password rehash, a key rotation) is never undone.
//! Each table is read once, in key order (keyset batches, never from the start
//! again), so a million credentials cost a million reads.
//! Short-lived rows (federation requests, WebAuthn challenges) are not re-wrapped:
//! they expire within minutes, and [`status`] counts them so the operator waits.

use std::collections::BTreeMap;

use diesel::prelude::*;
use gatehouse_core::ids::{ConnectionId, CredentialId, TenantId, UserId};
use gatehouse_core::secrets::{Cipher, sealed_key_id};

use crate::schema::{
    audit_heads, audit_subject_keys, credentials, federated_sessions, federation_connections,
    master_key_canary, signing_keys,
};
use crate::{AnyConnection, StoreError, StoreResult};

/// Every column that holds a value sealed under a master key: (table, column).
pub const SEALED_COLUMNS: &[(&str, &str)] = &[
    ("credentials", "data"),
    ("signing_keys", "private_key"),
    ("federation_connections", "secrets"),
    ("federated_sessions", "upstream"),
    ("audit_heads", "sealed_key"),
    ("audit_subject_keys", "sealed_key"),
    ("master_key_canary", "sealed"),
    ("federation_requests", "state"),
    ("webauthn_challenges", "state"),
];

/// How many values of one column are sealed under each master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCount {
    pub table: &'static str,
    pub column: &'static str,
    /// Master key id → values sealed under it (`?` for an unreadable envelope).
    pub by_key: BTreeMap<String, u64>,
}

#[derive(QueryableByName)]
struct Sealed {
    #[diesel(sql_type = diesel::sql_types::Text)]
    sealed: String,
}

/// Counts, for every sealed column, the values under each master key. Reads every
/// sealed value once (the key id is in its envelope, in clear).
pub fn status(conn: &mut AnyConnection) -> StoreResult<Vec<SealedCount>> {
    let mut counts = Vec::new();
    for (table, column) in SEALED_COLUMNS {
        // Table and column names are the constants above, never input.
        let query = format!("SELECT {column} AS sealed FROM {table} WHERE {column} IS NOT NULL");
        let rows: Vec<Sealed> = (diesel::sql_query(query)).load(conn)?;
        let mut by_key = BTreeMap::new();
        for row in rows {
            let kid = sealed_key_id(&row.sealed).unwrap_or("?").to_owned();
            *by_key.entry(kid).or_insert(0) += 1;
        }
        counts.push(SealedCount {
            table,
            column,
            by_key,
        });
    }
    Ok(counts)
}

/// What one re-wrap pass did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrapped {
    pub table: &'static str,
    /// Values now sealed under the active key.
    pub rewrapped: u64,
    /// Values changed by someone else between read and write (left as they are:
    /// whoever wrote them sealed them afresh).
    pub raced: u64,
}

/// Re-wraps every long-lived sealed value not under `cipher`'s active key, `batch`
/// rows per transaction. A value the configured keys cannot open stops it with an
/// error naming the table: that key must not be retired yet.
pub fn rewrap(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    batch: i64,
) -> StoreResult<Vec<Rewrapped>> {
    let batch = batch.max(1);
    Ok(vec![
        run("credentials", conn, batch, |c, n, after| {
            credentials_batch(c, cipher, n, after)
        })?,
        run("signing_keys", conn, batch, |c, n, after| {
            signing_keys_batch(c, cipher, n, after)
        })?,
        run("federation_connections", conn, batch, |c, n, after| {
            connections_batch(c, cipher, n, after)
        })?,
        run("federated_sessions", conn, batch, |c, n, after| {
            federated_sessions_batch(c, cipher, n, after)
        })?,
        run("audit_heads", conn, batch, |c, n, after| {
            audit_heads_batch(c, cipher, n, after)
        })?,
        run("audit_subject_keys", conn, batch, |c, n, after| {
            subject_keys_batch(c, cipher, n, after)
        })?,
        run("master_key_canary", conn, batch, |c, n, after| {
            canary_batch(c, cipher, n, after)
        })?,
    ])
}

/// One batch's result: (re-wrapped, raced, rows read).
type Batch = (u64, u64, usize);

/// Where the next batch starts: the key of the last row read (empty: the start).
/// Keyset order, so a pass reads each row once however many are re-wrapped.
type Cursor = [String; 2];

/// Runs batches in key order until one reads fewer rows than asked. A row that
/// changed between read and write is left for the next pass (`status` shows it).
fn run(
    table: &'static str,
    conn: &mut AnyConnection,
    batch: i64,
    mut step: impl FnMut(&mut AnyConnection, i64, &mut Cursor) -> StoreResult<Batch>,
) -> StoreResult<Rewrapped> {
    let mut done = Rewrapped {
        table,
        rewrapped: 0,
        raced: 0,
    };
    let mut cursor = Cursor::default();
    loop {
        let (rewrapped, raced, read) =
            crate::db::transaction(conn, |conn| step(conn, batch, &mut cursor))
                .map_err(|e| name(table, e))?;
        done.rewrapped += rewrapped;
        done.raced += raced;
        if usize::try_from(batch).is_ok_and(|b| read < b) {
            return Ok(done);
        }
    }
}

fn name(table: &'static str, error: StoreError) -> StoreError {
    match error {
        StoreError::Secret(e) => StoreError::Invalid {
            entity: table,
            message: format!(
                "a value cannot be opened with the configured master keys ({e}): keep the \
                 key it was sealed under configured"
            ),
        },
        other => other,
    }
}

/// `LIKE` pattern matching values sealed under the active key (`_` escaped: key
/// ids may contain it).
fn active_pattern(cipher: &Cipher) -> String {
    format!("v1.{}.%", cipher.active_key_id().replace('_', "\\_"))
}

fn reseal(cipher: &Cipher, sealed: &str, aad: &[u8]) -> StoreResult<String> {
    let plain = cipher.open(sealed, aad)?;
    Ok(cipher.seal(&plain, aad))
}

fn parse<T: std::str::FromStr>(table: &'static str, value: &str) -> StoreResult<T> {
    value
        .parse()
        .map_err(|_| StoreError::corrupt(table, format!("bad id {value}")))
}

/// A sealed value read for re-wrapping: its row's key (the next batch's cursor),
/// the associated data it was sealed with, and the value.
struct SealedRow {
    key: Cursor,
    aad: Vec<u8>,
    sealed: String,
}

impl SealedRow {
    fn new(key: [&str; 2], aad: Vec<u8>, sealed: String) -> SealedRow {
        SealedRow {
            key: [key[0].to_owned(), key[1].to_owned()],
            aad,
            sealed,
        }
    }
}

/// Re-seals `rows` (one batch, in key order) and writes each back with `write(conn,
/// key, old, new)`, which changes the row only if it still holds `old` and says
/// how many rows it changed (0: someone else wrote it meanwhile).
fn reseal_batch(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    rows: Vec<SealedRow>,
    after: &mut Cursor,
    mut write: impl FnMut(&mut AnyConnection, &Cursor, &str, &str) -> StoreResult<usize>,
) -> StoreResult<Batch> {
    let mut result = (0, 0, rows.len());
    if let Some(last) = rows.last() {
        after.clone_from(&last.key);
    }
    for row in rows {
        let fresh = reseal(cipher, &row.sealed, &row.aad)?;
        if write(conn, &row.key, &row.sealed, &fresh)? == 1 {
            result.0 += 1;
        } else {
            result.1 += 1;
        }
    }
    Ok(result)
}

fn credentials_batch(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    n: i64,
    after: &mut Cursor,
) -> StoreResult<Batch> {
    use crate::schema::credentials::dsl as c;
    let found: Vec<(String, String, String, String, String)> = c::credentials
        .filter(c::data.not_like(active_pattern(cipher)).escape('\\'))
        .filter(c::id.gt(&after[0]))
        .select((c::id, c::tenant_id, c::user_id, c::kind, c::data))
        .order(c::id)
        .limit(n)
        .load(conn)?;
    let mut rows = Vec::with_capacity(found.len());
    for (id, tenant, user, kind, data) in found {
        let aad = crate::credentials::aad(
            parse::<TenantId>("credentials", &tenant)?,
            parse::<UserId>("credentials", &user)?,
            parse::<CredentialId>("credentials", &id)?,
            crate::credentials::CredentialKind::parse(&kind)?,
        );
        rows.push(SealedRow::new([&id, ""], aad, data));
    }
    reseal_batch(conn, cipher, rows, after, |conn, key, old, new| {
        Ok(
            diesel::update(credentials::table.filter(c::id.eq(&key[0]).and(c::data.eq(old))))
                .set(c::data.eq(new))
                .execute(conn)?,
        )
    })
}

fn signing_keys_batch(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    n: i64,
    after: &mut Cursor,
) -> StoreResult<Batch> {
    use crate::schema::signing_keys::dsl as k;
    let found: Vec<(String, String, String, String)> = k::signing_keys
        .filter(k::private_key.not_like(active_pattern(cipher)).escape('\\'))
        .filter(k::kid.gt(&after[0]))
        .select((k::kid, k::tenant_id, k::alg, k::private_key))
        .order(k::kid)
        .limit(n)
        .load(conn)?;
    let mut rows = Vec::with_capacity(found.len());
    for (kid, tenant, alg, sealed) in found {
        let alg = crate::signing_keys::KeyAlgorithm::parse(&alg)
            .ok_or_else(|| StoreError::corrupt("signing_keys", format!("unknown alg {alg}")))?;
        let aad = crate::signing_keys::aad(parse("signing_keys", &tenant)?, &kid, alg);
        rows.push(SealedRow::new([&kid, ""], aad, sealed));
    }
    reseal_batch(conn, cipher, rows, after, |conn, key, old, new| {
        Ok(diesel::update(
            signing_keys::table.filter(k::kid.eq(&key[0]).and(k::private_key.eq(old))),
        )
        .set(k::private_key.eq(new))
        .execute(conn)?)
    })
}

fn connections_batch(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    n: i64,
    after: &mut Cursor,
) -> StoreResult<Batch> {
    use crate::schema::federation_connections::dsl as f;
    let found: Vec<(String, String, Option<String>)> = f::federation_connections
        .filter(f::secrets.not_like(active_pattern(cipher)).escape('\\'))
        .filter(f::id.gt(&after[0]))
        .select((f::id, f::tenant_id, f::secrets))
        .order(f::id)
        .limit(n)
        .load(conn)?;
    let mut rows = Vec::with_capacity(found.len());
    for (id, tenant, sealed) in found {
        let Some(sealed) = sealed else { continue };
        let aad = crate::federation_connections::aad(
            parse("federation_connections", &tenant)?,
            parse::<ConnectionId>("federation_connections", &id)?,
        );
        rows.push(SealedRow::new([&id, ""], aad, sealed));
    }
    reseal_batch(conn, cipher, rows, after, |conn, key, old, new| {
        Ok(diesel::update(
            federation_connections::table.filter(f::id.eq(&key[0]).and(f::secrets.eq(old))),
        )
        .set(f::secrets.eq(new))
        .execute(conn)?)
    })
}

fn federated_sessions_batch(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    n: i64,
    after: &mut Cursor,
) -> StoreResult<Batch> {
    use crate::schema::federated_sessions::dsl as s;
    let found: Vec<(String, String, String, String)> = s::federated_sessions
        .filter(s::upstream.not_like(active_pattern(cipher)).escape('\\'))
        .filter(s::session_id.gt(&after[0]))
        .select((s::session_id, s::tenant_id, s::connection_id, s::upstream))
        .order(s::session_id)
        .limit(n)
        .load(conn)?;
    let rows = found
        .into_iter()
        .map(|(session, tenant, connection, sealed)| {
            let aad = crate::federated_sessions::aad(&tenant, &session, &connection);
            SealedRow::new([&session, ""], aad, sealed)
        })
        .collect();
    reseal_batch(conn, cipher, rows, after, |conn, key, old, new| {
        Ok(diesel::update(
            federated_sessions::table.filter(s::session_id.eq(&key[0]).and(s::upstream.eq(old))),
        )
        .set(s::upstream.eq(new))
        .execute(conn)?)
    })
}

fn audit_heads_batch(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    n: i64,
    after: &mut Cursor,
) -> StoreResult<Batch> {
    use crate::schema::audit_heads::dsl as h;
    let found: Vec<(String, Option<String>)> = h::audit_heads
        .filter(h::sealed_key.not_like(active_pattern(cipher)).escape('\\'))
        .filter(h::tenant_id.gt(&after[0]))
        .select((h::tenant_id, h::sealed_key))
        .order(h::tenant_id)
        .limit(n)
        .load(conn)?;
    let rows = found
        .into_iter()
        .filter_map(|(tenant, sealed)| {
            let aad = crate::audit::chain_key_aad(&tenant);
            Some(SealedRow::new([&tenant, ""], aad, sealed?))
        })
        .collect();
    reseal_batch(conn, cipher, rows, after, |conn, key, old, new| {
        Ok(diesel::update(
            audit_heads::table.filter(h::tenant_id.eq(&key[0]).and(h::sealed_key.eq(old))),
        )
        .set(h::sealed_key.eq(new))
        .execute(conn)?)
    })
}

fn subject_keys_batch(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    n: i64,
    after: &mut Cursor,
) -> StoreResult<Batch> {
    use crate::schema::audit_subject_keys::dsl as k;
    let found: Vec<(String, String, Option<String>)> = k::audit_subject_keys
        .filter(k::sealed_key.not_like(active_pattern(cipher)).escape('\\'))
        .filter(
            k::tenant_id
                .gt(&after[0])
                .or(k::tenant_id.eq(&after[0]).and(k::subject.gt(&after[1]))),
        )
        .select((k::tenant_id, k::subject, k::sealed_key))
        .order((k::tenant_id, k::subject))
        .limit(n)
        .load(conn)?;
    let rows = found
        .into_iter()
        .filter_map(|(tenant, subject, sealed)| {
            let aad = crate::audit::personal::key_aad(&tenant, &subject);
            Some(SealedRow::new([&tenant, &subject], aad, sealed?))
        })
        .collect();
    reseal_batch(conn, cipher, rows, after, |conn, key, old, new| {
        Ok(diesel::update(
            audit_subject_keys::table.filter(
                k::tenant_id
                    .eq(&key[0])
                    .and(k::subject.eq(&key[1]))
                    .and(k::sealed_key.eq(old)),
            ),
        )
        .set(k::sealed_key.eq(new))
        .execute(conn)?)
    })
}

fn canary_batch(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    n: i64,
    after: &mut Cursor,
) -> StoreResult<Batch> {
    use crate::schema::master_key_canary::dsl as m;
    let found: Vec<(String, String)> = m::master_key_canary
        .filter(m::sealed.not_like(active_pattern(cipher)).escape('\\'))
        .filter(m::id.gt(&after[0]))
        .select((m::id, m::sealed))
        .order(m::id)
        .limit(n)
        .load(conn)?;
    let rows = found
        .into_iter()
        .map(|(id, sealed)| SealedRow::new([&id, ""], crate::key_canary::AAD.to_vec(), sealed))
        .collect();
    reseal_batch(conn, cipher, rows, after, |conn, key, old, new| {
        Ok(diesel::update(
            master_key_canary::table.filter(m::id.eq(&key[0]).and(m::sealed.eq(old))),
        )
        .set(m::sealed.eq(new))
        .execute(conn)?)
    })
}
