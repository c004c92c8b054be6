//! Operator actions on a tenant's Cedar policy sets (validate and save, list, test
//! a request) and reading the decision log. A saved set serves at once on every
//! node: the save is audited with the operator and announced.

use gatehouse_consent::pdp::EvaluationRequest;
use gatehouse_core::events::DomainEvent;
use gatehouse_identity_store::decision_log::{self, Decision};
use gatehouse_identity_store::policy_sets::{self, PolicySetVersion};
use serde_json::{Value, json};

use crate::{Admin, AdminError, AdminResult, Operator};

impl Admin {
    /// Validates `text` against the tenant schema and makes it the serving set;
    /// the previous set keeps serving when it does not validate.
    pub async fn save_policies(
        &self,
        operator: &Operator,
        tenant: &str,
        text: &str,
    ) -> AdminResult<i64> {
        let summary = self
            .pdp
            .check_policies(text)
            .map_err(|e| AdminError::Invalid {
                field: "policies",
                message: e.to_string(),
            })?;
        let tenant = self.tenant(tenant).await?.id;
        let (admin, actor, text) = (self.clone(), operator.actor(), text.to_owned());
        let version = self
            .blocking(move |conn| {
                let now = admin.now();
                gatehouse_identity_store::db::transaction_with(conn, |conn| {
                    let saved = policy_sets::insert(conn, now, tenant, &text, &actor)?;
                    admin.audit(
                        conn,
                        tenant,
                        actor.clone(),
                        "policies.saved",
                        format!("policy_set:{}", saved.version),
                        json!({ "policies": summary.policies, "bytes": text.len() }),
                    )?;
                    Ok::<_, AdminError>(saved.version)
                })
            })
            .await?;
        self.pdp.invalidate(Some(tenant));
        self.announce(DomainEvent::TenantChanged { tenant });
        Ok(version)
    }

    /// The tenant's policy set versions, newest (serving) first.
    pub async fn policy_versions(&self, tenant: &str) -> AdminResult<Vec<PolicySetVersion>> {
        self.read(tenant, policy_sets::list).await
    }

    /// Evaluates an AuthZEN evaluation request (JSON) against the serving set as
    /// `client`, without logging the decision: the decision, its policies and the
    /// set's version.
    pub async fn test_policies(
        &self,
        tenant: &str,
        client: &str,
        request: &[u8],
    ) -> AdminResult<Value> {
        let parsed = EvaluationRequest::from_json(request).map_err(|e| AdminError::Invalid {
            field: "request",
            message: e.to_string(),
        })?;
        let tenant = self.tenant(tenant).await?.id;
        let (pdp, client) = (self.pdp.clone(), client.to_owned());
        self.off_pool(move || {
            let decision = pdp.dry_run(tenant, &client, &parsed)?;
            let mut out = decision.to_authzen();
            out["policies"] = json!(decision.policies);
            out["policy_version"] = json!(decision.policy_version);
            Ok(out)
        })
        .await
    }

    /// The tenant's most recent decisions, newest first.
    pub async fn decisions(&self, tenant: &str, limit: i64) -> AdminResult<Vec<Decision>> {
        self.read(tenant, move |conn, tenant| {
            decision_log::recent(conn, tenant, limit)
        })
        .await
    }
}
