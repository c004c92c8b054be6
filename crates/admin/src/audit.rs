//! Reading the audit log: a tenant's events filtered by actor, action and time,
//! and the check of every tenant's keyed hash chain.

use gatehouse_identity_store::PageRequest;
use gatehouse_identity_store::audit::{self, AuditEvent, AuditFilter, VerifyReport};

use crate::{Admin, AdminError, AdminResult};

/// Which events to read: the store's filter and how many at most (1..=1000),
/// the oldest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    pub limit: usize,
}

/// An audit event as operators read it (the CLI, the admin API, a user's export):
/// its record with the details as JSON; the chain's hashes stay out.
pub fn event_view(event: &AuditEvent) -> serde_json::Value {
    serde_json::json!({
        "seq": event.seq,
        "occurred_at": event.occurred_at,
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "ip": event.ip,
        "details": serde_json::from_str::<serde_json::Value>(&event.details)
            .unwrap_or(serde_json::Value::Null),
        // The user the event was about was erased: what it said of them is gone.
        "erased": event.erased,
        // Its sealed personal data does not open: altered in the database.
        "unreadable": event.unreadable,
    })
}

/// The most events one query reads.
pub const MAX_AUDIT_EVENTS: usize = 1000;

impl Admin {
    /// The tenant's audit events that match, in the order they were written.
    pub async fn audit_events(
        &self,
        tenant: &str,
        query: AuditQuery,
    ) -> AdminResult<Vec<AuditEvent>> {
        if !(1..=MAX_AUDIT_EVENTS).contains(&query.limit) {
            return Err(AdminError::Invalid {
                field: "limit",
                message: format!("must be between 1 and {MAX_AUDIT_EVENTS}"),
            });
        }
        let tenant = self.tenant(tenant).await?.id;
        let cipher = self.cipher.clone();
        self.blocking(move |conn| {
            // Read in the store's pages (at most MAX_PAGE_SIZE each) up to the limit.
            let mut events = Vec::new();
            let mut page = PageRequest::first(0);
            loop {
                let wanted = query.limit - events.len();
                page.limit =
                    wanted.min(gatehouse_identity_store::page::MAX_PAGE_SIZE as usize) as u32;
                let read = audit::search(conn, tenant, &query.filter, &page)?;
                events.extend(read.items);
                match read.next_cursor {
                    Some(next) if events.len() < query.limit => page.after = Some(next),
                    _ => break,
                }
            }
            audit::personal::open(conn, &cipher, &mut events)?;
            Ok(events)
        })
        .await
    }

    /// Checks every tenant's chain: each record's keyed hash and its link to the
    /// one before, and the chain's head.
    pub async fn verify_audit(&self) -> AdminResult<VerifyReport> {
        let cipher = self.cipher.clone();
        self.blocking(move |conn| Ok(audit::verify(conn, &cipher)?))
            .await
    }
}
