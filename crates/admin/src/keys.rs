//! Operator actions on a tenant's signing keys: list and rotate. A rotation
//! publishes the new key first; it signs from the following rotation on, and the
//! retired key stays published until every token it signed has expired.

use chrono::Duration;
use gatehouse_core::events::DomainEvent;
use gatehouse_identity_store::signing_keys::{self, SigningKey};
use gatehouse_token_issuer::{Algorithm, Rotation, rotate};
use serde_json::json;

use crate::{Admin, AdminError, AdminResult, Operator};

impl Admin {
    /// The tenant's signing keys, oldest first.
    pub async fn signing_keys(&self, tenant: &str) -> AdminResult<Vec<SigningKey>> {
        self.read(tenant, signing_keys::list).await
    }

    /// Rotates the tenant's keys of `alg` (`ES256`, `RS256`, `EdDSA`); the retiring
    /// key stays published for `max_token_lifetime`.
    pub async fn rotate_keys(
        &self,
        operator: &Operator,
        tenant: &str,
        alg: &str,
        max_token_lifetime: Duration,
    ) -> AdminResult<Rotation> {
        let alg: Algorithm = alg.parse().map_err(|_| AdminError::Invalid {
            field: "alg",
            message: format!("unknown algorithm `{alg}`: use ES256, RS256 or EdDSA"),
        })?;
        if max_token_lifetime < Duration::zero() {
            return Err(AdminError::Invalid {
                field: "max_token_lifetime",
                message: "must not be negative".into(),
            });
        }
        let tenant = self.tenant(tenant).await?.id;
        let (admin, actor) = (self.clone(), operator.actor());
        let rotation = self
            .blocking(move |conn| {
                let now = admin.now();
                gatehouse_identity_store::db::transaction_with(conn, |conn| {
                    let rotation =
                        rotate(conn, &admin.cipher, now, tenant, alg, max_token_lifetime)
                            .map_err(|e| AdminError::Unavailable(e.to_string()))?;
                    admin.audit(
                        conn,
                        tenant,
                        actor,
                        "keys.rotated",
                        format!("key:{}", rotation.kid),
                        json!({
                            "alg": alg.as_str(),
                            "activated": rotation.activated,
                            "retired": rotation.retired.as_ref().map(|(kid, _)| kid),
                        }),
                    )?;
                    Ok::<_, AdminError>(rotation)
                })
            })
            .await?;
        self.announce(DomainEvent::SigningKeysChanged { tenant });
        Ok(rotation)
    }
}
