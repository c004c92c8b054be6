//! Runs the token issuer's key-rotation schedule on every node: each pass rotates
//! what is due (the store lock makes concurrent passes rotate once) and tells every
//! node through the event bus.

use std::time::Duration as StdDuration;

use gatehouse_core::events::DomainEvent;
use gatehouse_identity_store::{PageRequest, StoreError, tenants};
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

/// Starts the periodic pass. Call inside the runtime, once per server.
pub fn spawn(state: &AppState) {
    if state.config.keys.rotation_interval().is_none() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(CHECK_EVERY);
        loop {
            ticks.tick().await;
            let pass = state.clone();
            match tokio::task::spawn_blocking(move || run_once(&pass)).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::error!(%error, "scheduled key rotation failed"),
                Err(error) => tracing::error!(%error, "scheduled key rotation panicked"),
            }
        }
    });
}
