//! What this node does when domain events arrive, from this node or (on PostgreSQL)
//! any other: drop caches, and tell relying parties about ended sessions.
//!
//! Work with effects outside this process (back-channel logout calls) is done only
//! by the node where the event happened, so each relying party hears once.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::events::{DomainEvent, EventEnvelope};
use gatehouse_token_issuer::IssuerResult;
use gatehouse_token_issuer::logout::BackchannelNotice;
use gatehouse_token_issuer::service::Issuer;

use crate::state::AppState;

/// How long one back-channel call may take; the RP must answer promptly (§2.8).
const BACKCHANNEL_TIMEOUT: Duration = Duration::from_secs(5);
const BACKCHANNEL_ATTEMPTS: u32 = 3;

/// Starts the event consumers. Call inside the runtime, once per server.
pub fn start(state: &AppState) {
    state.tenants.watch(&state.events);
    let mut subscription = state.events.subscribe();
    let state = state.clone();
    let node = state.events.node_id();
    let http = reqwest::Client::builder()
        .timeout(BACKCHANNEL_TIMEOUT)
        // A logout URI that redirects is misconfigured; following it could leak the token.
        .redirect(reqwest::redirect::Policy::none())
        .build();
    let http = match http {
        Ok(client) => Arc::new(client),
        Err(error) => {
            tracing::error!(%error, "no HTTP client: back-channel logout disabled");
            return;
        }
    };
    tokio::spawn(async move {
        while let Some(envelope) = subscription.next().await {
            react(&state, &http, node == envelope.origin, &envelope).await;
        }
    });
}

async fn react(
    state: &AppState,
    http: &Arc<reqwest::Client>,
    local: bool,
    envelope: &EventEnvelope,
) {
    match &envelope.event {
        DomainEvent::SigningKeysChanged { tenant } => state.issuer.invalidate(Some(*tenant)),
        DomainEvent::ClientChanged { tenant, .. } => state.issuer.invalidate(Some(*tenant)),
        DomainEvent::Resync => {
            state.issuer.invalidate(None);
            state.pdp.invalidate(None);
        }
        // Policy sets are tenant settings: a save announces TenantChanged.
        DomainEvent::TenantChanged { tenant } => state.pdp.invalidate(Some(*tenant)),
        // The withdrawing node revoked the dependent grants in the database, where
        // the token endpoint and introspection look: no token state to drop here.
        DomainEvent::ConsentWithdrawn { .. } => {}
        DomainEvent::GrantsRevoked {
            tenant,
            user,
            grants,
        } if local => {
            let (tenant, user, grants) = (*tenant, *user, grants.clone());
            let notices = logout_notices(state, tenant, move |issuer, url| {
                issuer.grants_revoked(tenant, url, user, &grants)
            });
            send_all(http, notices.await);
        }
        DomainEvent::SessionsEnded {
            tenant,
            user,
            sessions,
        } if local => {
            let (tenant, user, sessions) = (*tenant, *user, sessions.clone());
            let notices = logout_notices(state, tenant, move |issuer, url| {
                issuer.sessions_ended(tenant, url, user, &sessions)
            });
            send_all(http, notices.await);
        }
        _ => {}
    }
}

/// Runs `work` (revocation and signing: store work) on the blocking pool with the
/// tenant's issuer URL; a tenant without one has nobody to notify.
async fn logout_notices(
    state: &AppState,
    tenant: gatehouse_core::ids::TenantId,
    work: impl FnOnce(&Issuer, &str) -> IssuerResult<Vec<BackchannelNotice>> + Send + 'static,
) -> Result<Vec<BackchannelNotice>, String> {
    let issuer = state.issuer.clone();
    let directory = state.tenants.clone();
    tokio::task::spawn_blocking(move || {
        match directory.issuer_for(tenant).map_err(|e| e.to_string())? {
            Some(url) => work(&issuer, &url).map_err(|e| e.to_string()),
            None => Ok(Vec::new()),
        }
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|inner| inner)
}

fn send_all(http: &Arc<reqwest::Client>, notices: Result<Vec<BackchannelNotice>, String>) {
    match notices {
        Ok(notices) => {
            for notice in notices {
                tokio::spawn(deliver(Arc::clone(http), notice));
            }
        }
        Err(error) => tracing::error!(%error, "back-channel logout notices not made"),
    }
}

/// Back-Channel Logout §2.5: POST `logout_token` as a form; 200 or 204 is success.
async fn deliver(http: Arc<reqwest::Client>, notice: BackchannelNotice) {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", &notice.logout_token)
        .finish();
    for attempt in 1..=BACKCHANNEL_ATTEMPTS {
        let sent = http
            .post(&notice.uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cache-control", "no-store")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                tracing::info!(client_id = %notice.client_id, "back-channel logout delivered");
                return;
            }
            Ok(response) => tracing::warn!(
                client_id = %notice.client_id,
                status = response.status().as_u16(),
                attempt,
                "back-channel logout refused"
            ),
            Err(error) => tracing::warn!(
                client_id = %notice.client_id,
                %error,
                attempt,
                "back-channel logout not delivered"
            ),
        }
        if attempt < BACKCHANNEL_ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
    }
}
