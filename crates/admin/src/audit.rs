//! Reading the audit log: a tenant's events filtered by actor, action and time,
//! and the check of every tenant's keyed hash chain.

use chrono::{DateTime, Utc};
use gatehouse_identity_store::PageRequest;
use gatehouse_identity_store::audit::{self, AuditEvent, VerifyReport};

use crate::{Admin, AdminError, AdminResult};

/// Which events to read; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// The actor as recorded (`operator:alice`, `user:…`, `client:…`).
    pub actor: Option<String>,
    /// The action, or a prefix ending in `.` (`user.` for every user event).
    pub action: Option<String>,
    /// The target as recorded (`user:…`, `client:…`).
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// At most this many events (1..=1000), the oldest first.
    pub limit: usize,
}

impl AuditQuery {
    fn matches(&self, event: &AuditEvent) -> bool {
        self.actor.as_ref().is_none_or(|a| &event.actor == a)
            && self.action.as_ref().is_none_or(|a| {
                if a.ends_with('.') {
                    event.action.starts_with(a.as_str())
                } else {
                    &event.action == a
                }
            })
            && self
                .target
                .as_ref()
                .is_none_or(|t| event.target.as_deref() == Some(t.as_str()))
            && self.since.is_none_or(|since| event.occurred_at >= since)
            && self.until.is_none_or(|until| event.occurred_at < until)
    }
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
        self.blocking(move |conn| {
            let mut found = Vec::new();
            let mut request = PageRequest::first(500);
            loop {
                let page = audit::list(conn, tenant, &request)?;
                for event in page.items {
                    if query.until.is_some_and(|until| event.occurred_at >= until) {
                        return Ok(found);
                    }
                    if query.matches(&event) {
                        found.push(event);
                        if found.len() == query.limit {
                            return Ok(found);
                        }
                    }
                }
                match page.next_cursor {
                    Some(cursor) => request = PageRequest::after(cursor, 500),
                    None => return Ok(found),
                }
            }
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
