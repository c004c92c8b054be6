//! Delivery of back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0
//! §2.5): one implementation for every place that ends sessions or revokes grants —
//! the server's event reactions and the operator's actions alike.
//!
//! A relying party that cannot be reached is reported, never an error of the action
//! that caused the logout: the grants are already revoked in the database, so its
//! tokens are refused whatever it hears.

use std::time::Duration;

use gatehouse_outbound::Outbound;
use gatehouse_outbound::reqwest::Method;

use crate::logout::BackchannelNotice;

/// Calls per notice before it is given up.
pub const ATTEMPTS: u32 = 3;
/// The wait before the second attempt; it grows linearly after that.
const BACKOFF: Duration = Duration::from_millis(500);

/// Sends logout tokens through the shared outbound client (its timeout — the RP
/// must answer promptly, §2.8 —, no redirects, no private targets unless
/// configured). Cheap to clone.
#[derive(Debug, Clone)]
pub struct BackchannelSender {
    http: Outbound,
}

/// What happened to one notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub client_id: String,
    pub delivered: bool,
}

impl BackchannelSender {
    pub fn new(http: Outbound) -> BackchannelSender {
        BackchannelSender { http }
    }

    /// POSTs `logout_token` as a form (§2.5), up to [`ATTEMPTS`] times; 2xx is
    /// success. Logs each failed attempt.
    pub async fn deliver(&self, notice: &BackchannelNotice) -> Delivery {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("logout_token", &notice.logout_token)
            .finish();
        for attempt in 1..=ATTEMPTS {
            let request = match self.http.request(Method::POST, &notice.uri) {
                Ok(request) => request,
                // A refused target stays refused: no point in trying again.
                Err(error) => {
                    tracing::warn!(client_id = %notice.client_id, %error, "back-channel logout not sent");
                    break;
                }
            };
            let sent = request
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cache-control", "no-store")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    tracing::info!(client_id = %notice.client_id, "back-channel logout delivered");
                    return Delivery {
                        client_id: notice.client_id.clone(),
                        delivered: true,
                    };
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
            if attempt < ATTEMPTS {
                tokio::time::sleep(BACKOFF * attempt).await;
            }
        }
        Delivery {
            client_id: notice.client_id.clone(),
            delivered: false,
        }
    }

    /// Delivers every notice, all at once, and reports each.
    pub async fn deliver_all(&self, notices: &[BackchannelNotice]) -> Vec<Delivery> {
        let mut pending = tokio::task::JoinSet::new();
        for notice in notices {
            let (sender, notice) = (self.clone(), notice.clone());
            pending.spawn(async move { sender.deliver(&notice).await });
        }
        let mut done = Vec::with_capacity(notices.len());
        while let Some(joined) = pending.join_next().await {
            match joined {
                Ok(delivery) => done.push(delivery),
                Err(error) => tracing::error!(%error, "back-channel logout task failed"),
            }
        }
        done
    }
}
