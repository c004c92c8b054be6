//! Personal data in audit events, sealed per user so it can be erased.
//!
//! An event about a user (its target, or else its actor, is `user:<id>`) keeps its
//! `ip` and `details` sealed with that user's own audit key, a random key stored in
//! `audit_subject_keys` sealed under the master key. The chain's MAC covers the
//! sealed form, so erasing the user — destroying the key — leaves every event in
//! place and the chain verifiable, while what the events said about the person can
//! no longer be read. Events about an erased user are written in clear: there is no
//! one left for them to describe.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_core::secrets::{Cipher, MasterKey};
use rand::RngCore;
use std::collections::HashMap;
use zeroize::Zeroizing;

use super::AuditEvent;
use crate::schema::audit_subject_keys;
use crate::{AnyConnection, StoreError, StoreResult};

const KEY_ID: &str = "subject";

/// The user an event is about, whose key seals its personal data.
pub(super) fn subject_of<'a>(actor: &'a str, target: Option<&'a str>) -> Option<&'a str> {
    let user = |who: &'a str| who.strip_prefix("user:").filter(|id| !id.is_empty());
    target.and_then(user).or_else(|| user(actor))
}

pub(crate) fn key_aad(tenant: &str, subject: &str) -> Vec<u8> {
    format!("gatehouse audit subject key\0{tenant}\0{subject}").into_bytes()
}

fn data_aad(tenant: &str, event: &str) -> Vec<u8> {
    format!("gatehouse audit personal data\0{tenant}\0{event}").into_bytes()
}

/// A user's audit key, ready to seal and open.
pub(super) struct SubjectKey(Cipher);

impl SubjectKey {
    fn open(cipher: &Cipher, tenant: &str, subject: &str, sealed: &str) -> StoreResult<SubjectKey> {
        let bytes = cipher.open(sealed, &key_aad(tenant, subject))?;
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            StoreError::invalid("audit_subject_keys", "a subject key is not 32 bytes")
        })?;
        let key = MasterKey::new(KEY_ID, Zeroizing::new(key))?;
        Ok(SubjectKey(Cipher::new(vec![key])?))
    }

    /// The stored `details` of an event: its personal data sealed, bound to the
    /// tenant and the event.
    pub(super) fn seal(
        &self,
        tenant: &str,
        event: &str,
        ip: Option<&str>,
        details: &str,
    ) -> String {
        let personal = serde_json::json!({ "ip": ip, "details": details });
        let sealed = self
            .0
            .seal(personal.to_string().as_bytes(), &data_aad(tenant, event));
        serde_json::json!({ "sealed": sealed }).to_string()
    }

    fn open_details(
        &self,
        tenant: &str,
        event: &str,
        stored: &str,
    ) -> Option<(Option<String>, String)> {
        let stored: serde_json::Value = serde_json::from_str(stored).ok()?;
        let opened = self
            .0
            .open(stored["sealed"].as_str()?, &data_aad(tenant, event))
            .ok()?;
        let personal: serde_json::Value = serde_json::from_slice(&opened).ok()?;
        Some((
            personal["ip"].as_str().map(str::to_owned),
            personal["details"].as_str()?.to_owned(),
        ))
    }
}

/// The key to seal a new event about `subject` with: made on the subject's first
/// event; `None` once the subject was erased. Runs inside the append's transaction.
pub(super) fn key_for_append(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: &str,
    subject: &str,
) -> StoreResult<Option<SubjectKey>> {
    if let Some(stored) = stored_key(conn, tenant, subject)? {
        return stored
            .map(|sealed| SubjectKey::open(cipher, tenant, subject, &sealed))
            .transpose();
    }
    let mut key = Zeroizing::new([0_u8; 32]);
    rand::rng().fill_bytes(key.as_mut_slice());
    let sealed = cipher.seal(key.as_slice(), &key_aad(tenant, subject));
    // A concurrent first event for the same subject makes this insert fail on the
    // primary key; the append retries and finds theirs.
    diesel::insert_into(audit_subject_keys::table)
        .values((
            audit_subject_keys::tenant_id.eq(tenant),
            audit_subject_keys::subject.eq(subject),
            audit_subject_keys::sealed_key.eq(Some(&sealed)),
            audit_subject_keys::created_at.eq(now.naive_utc()),
        ))
        .execute(conn)?;
    stored_key(conn, tenant, subject)?
        .flatten()
        .map(|sealed| SubjectKey::open(cipher, tenant, subject, &sealed))
        .transpose()
}

/// `Some(Some(sealed))` for a live key, `Some(None)` for an erased subject, `None`
/// when the subject has no key yet.
fn stored_key(
    conn: &mut AnyConnection,
    tenant: &str,
    subject: &str,
) -> StoreResult<Option<Option<String>>> {
    Ok(audit_subject_keys::table
        .find((tenant, subject))
        .select(audit_subject_keys::sealed_key)
        .first::<Option<String>>(conn)
        .optional()?)
}

/// Erases what the audit log holds about `user`: their key is destroyed (a
/// tombstone stays, so later events about them are not sealed with a new one).
/// Call it in the transaction that deletes the user.
pub fn erase(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
) -> StoreResult<()> {
    let (tenant, subject) = (tenant.to_string(), user.to_string());
    let destroyed = diesel::update(audit_subject_keys::table.find((&tenant, &subject)))
        .set((
            audit_subject_keys::sealed_key.eq(None::<String>),
            audit_subject_keys::erased_at.eq(Some(now.naive_utc())),
        ))
        .execute(conn)?;
    if destroyed == 0 {
        diesel::insert_into(audit_subject_keys::table)
            .values((
                audit_subject_keys::tenant_id.eq(&tenant),
                audit_subject_keys::subject.eq(&subject),
                audit_subject_keys::sealed_key.eq(None::<String>),
                audit_subject_keys::created_at.eq(now.naive_utc()),
                audit_subject_keys::erased_at.eq(Some(now.naive_utc())),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Opens the personal data of `events` (read from the store) with their subjects'
/// keys: `ip` and `details` as written. An erased subject's events say so
/// ([`AuditEvent::erased`], empty details); a sealed value that does not open is
/// marked [`AuditEvent::unreadable`], never shown as something else.
pub fn open(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    events: &mut [AuditEvent],
) -> StoreResult<()> {
    let mut keys: HashMap<(String, String), Option<SubjectKey>> = HashMap::new();
    for event in events.iter_mut() {
        let Some(subject) = event.sealed_for.clone() else {
            continue;
        };
        let wanted = (event.tenant_id.clone(), subject);
        if !keys.contains_key(&wanted) {
            let key = stored_key(conn, &wanted.0, &wanted.1)?
                .flatten()
                .map(|sealed| SubjectKey::open(cipher, &wanted.0, &wanted.1, &sealed))
                .transpose()?;
            keys.insert(wanted.clone(), key);
        }
        match &keys[&wanted] {
            Some(key) => {
                match key.open_details(&event.tenant_id, &event.id.to_string(), &event.details) {
                    Some((ip, details)) => {
                        event.ip = ip;
                        event.details = details;
                    }
                    // Altered (or moved from another event): said so, never shown as
                    // something else, and the rest of the page still reads.
                    None => {
                        tracing::warn!(
                            seq = event.seq,
                            "an audit event's personal data does not open"
                        );
                        event.ip = None;
                        event.details = "{}".to_owned();
                        event.unreadable = true;
                    }
                }
            }
            None => {
                event.ip = None;
                event.details = "{}".to_owned();
                event.erased = true;
            }
        }
    }
    Ok(())
}
