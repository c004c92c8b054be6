//! Reads every SAML identity provider's metadata again from its URL, every few
//! hours, so a signing-certificate rollover or a moved endpoint is taken up
//! without an operator. Every node runs it; the change is saved at the version
//! read, so when two nodes race one saves and the other finds it done.

use std::time::Duration;

use crate::state::AppState;

/// How often metadata is read again (SAML metadata commonly asks for a day or
/// less; a rollover publishes the next certificate well ahead).
const EVERY: Duration = Duration::from_secs(6 * 60 * 60);

/// Starts the periodic refresh. Call inside the runtime, once per server.
pub fn spawn(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        // Not at start-up: connections were read when they were made.
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
        loop {
            ticks.tick().await;
            match state.admin.refresh_saml_metadata(None).await {
                Ok(0) => {}
                Ok(changed) => tracing::info!(changed, "SAML metadata refreshed"),
                Err(error) => tracing::error!(%error, "SAML metadata refresh failed"),
            }
        }
    });
}
