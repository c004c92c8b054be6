//! Periodic housekeeping on every node: the token issuer's key-rotation schedule
//! (the store lock makes concurrent passes rotate once; every node hears of it
//! through the event bus) and the deletion of expired pushed requests and
//! revocation records, and of decisions past the decision log's retention.

use std::time::Duration as StdDuration;

use gatehouse_core::events::DomainEvent;
use gatehouse_identity_store::{
    PageRequest, StoreError, decision_log, federation_requests, pushed_requests, revoked_tokens,
    saml_replay, tenants,
};
use gatehouse_token_issuer::schedule::rotate_due;

use crate::state::AppState;

/// How often each node looks; rotation is due in days, so this only bounds lateness.
const CHECK_EVERY: StdDuration = StdDuration::from_secs(15 * 60);

/// One pass over every tenant; returns the tenants whose keys changed.
/// Blocking: call from a blocking context.
pub fn run_once(state: &AppState) -> Result<usize, String> {
    let Some(every) = state.config.keys.rotation_interval() else {
        return Ok(0);
    };
    let every = chrono::Duration::from_std(every).map_err(|e| e.to_string())?;
    let retired = chrono::Duration::from_std(state.config.keys.retired_publish())
        .map_err(|e| e.to_string())?;
    let now = state.clock.now();
    let mut conn = state
        .pool
        .get()
        .map_err(|e| StoreError::from(e).to_string())?;
    let mut changed = 0;
    let mut request = PageRequest::first(200);
    loop {
        let page = tenants::list(&mut conn, &request).map_err(|e| e.to_string())?;
        for tenant in &page.items {
            let done = rotate_due(&mut conn, &state.cipher, now, tenant.id, every, retired)
                .map_err(|e| format!("tenant {}: {e}", tenant.slug))?;
            for rotation in &done.rotations {
                tracing::info!(tenant = %tenant.slug, kid = %rotation.kid,
                    activated = rotation.activated.as_deref().unwrap_or("-"),
                    "scheduled key rotation");
            }
            if done.changed() {
                changed += 1;
                let _ = state
                    .events
                    .publish(DomainEvent::SigningKeysChanged { tenant: tenant.id });
            }
        }
        match page.next_cursor {
            Some(cursor) => request = PageRequest::after(cursor, 200),
            None => return Ok(changed),
        }
    }
}

/// Deletes what has expired and is kept for nothing: pushed authorization requests,
/// the jtis of revoked tokens past their expiry, federated sign-ins in flight and
/// SAML assertion IDs past theirs, and decisions older than
/// `pdp.decision_log_retention_days`. Blocking.
pub fn prune_expired(state: &AppState) -> Result<usize, String> {
    let now = state.clock.now();
    let mut conn = state
        .pool
        .get()
        .map_err(|e| StoreError::from(e).to_string())?;
    let pushed = pushed_requests::prune(&mut conn, now).map_err(|e| e.to_string())?;
    let revoked = revoked_tokens::prune(&mut conn, now).map_err(|e| e.to_string())?;
    // Federated sign-ins never finished, and SAML assertion IDs past their expiry.
    let federation = federation_requests::prune_expired(&mut conn, now)
        .map_err(|e| e.to_string())?
        + saml_replay::prune_expired(&mut conn, now).map_err(|e| e.to_string())?;
    let mut decisions = 0;
    if let Some(retention) = state.config.pdp.decision_log_retention() {
        let before = now - chrono::Duration::from_std(retention).map_err(|e| e.to_string())?;
        // Per tenant: the log's index is (tenant_id, at).
        let mut request = PageRequest::first(200);
        loop {
            let page = tenants::list(&mut conn, &request).map_err(|e| e.to_string())?;
            for tenant in &page.items {
                decisions += decision_log::prune_tenant(&mut conn, tenant.id, before)
                    .map_err(|e| e.to_string())?;
            }
            match page.next_cursor {
                Some(cursor) => request = PageRequest::after(cursor, 200),
                None => break,
            }
        }
    }
    Ok(pushed + revoked + federation + decisions)
}

/// Starts the periodic pass. Call inside the runtime, once per server.
pub fn spawn(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        // The first pass one period after start-up, not at it: nothing here is urgent
        // (another node, or this one a little later, does it), and a pass racing the
        // start-up of a node would make its first minutes depend on timing.
        let first = tokio::time::Instant::now() + CHECK_EVERY;
        let mut ticks = tokio::time::interval_at(first, CHECK_EVERY);
        loop {
            ticks.tick().await;
            let pass = state.clone();
            let work = move || run_once(&pass).and_then(|_| prune_expired(&pass));
            match tokio::task::spawn_blocking(work).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::error!(%error, "housekeeping failed"),
                Err(error) => tracing::error!(%error, "housekeeping panicked"),
            }
        }
    });
}
