//! What this node does when domain events arrive, from this node or (on PostgreSQL)
//! any other: drop caches, and tell relying parties about ended sessions.
//!
//! Work with effects outside this process (back-channel logout calls) is done only
//! by the node where the event happened, so each relying party hears once.

use gatehouse_core::events::{DomainEvent, EventEnvelope};
use gatehouse_token_issuer::IssuerResult;
use gatehouse_token_issuer::backchannel::BackchannelSender;
use gatehouse_token_issuer::logout::BackchannelNotice;
use gatehouse_token_issuer::service::Issuer;

use crate::state::AppState;

/// Starts the event consumers. Call inside the runtime, once per server.
pub fn start(state: &AppState) {
    state.tenants.watch(&state.events);
    let mut subscription = state.events.subscribe();
    let state = state.clone();
    let node = state.events.node_id();
    let sender = match gatehouse_outbound::Outbound::from_config(&state.config.outbound) {
        Ok(http) => BackchannelSender::new(http),
        Err(error) => {
            tracing::error!(%error, "back-channel logout disabled");
            return;
        }
    };
    tokio::spawn(async move {
        while let Some(envelope) = subscription.next().await {
            react(&state, &sender, node == envelope.origin, &envelope).await;
        }
    });
}

async fn react(
    state: &AppState,
    sender: &BackchannelSender,
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
            send_all(sender, notices.await);
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
            send_all(sender, notices.await);
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

fn send_all(sender: &BackchannelSender, notices: Result<Vec<BackchannelNotice>, String>) {
    match notices {
        Ok(notices) => {
            for notice in notices {
                let sender = sender.clone();
                tokio::spawn(async move { sender.deliver(&notice).await });
            }
        }
        Err(error) => tracing::error!(%error, "back-channel logout notices not made"),
    }
}
