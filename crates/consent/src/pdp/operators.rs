//! Gatehouse's own administration decided by its PDP: may this operator take this
//! admin action on this tenant? The schema and policies ship with the binary
//! (`policies/operators.*`); tenants cannot change them. Decisions go to the same
//! decision log as AuthZEN evaluations, as a request about a subject of type
//! [`SUBJECT_OPERATOR`] by the caller [`ADMIN_PEP`], with their reason codes.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity as CedarEntity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema,
};
use serde_json::{Map, Value};

use super::policies;
use super::{Action, Decision, EvaluationRequest, Resource, Subject};
use crate::ConsentError;

pub const OPERATOR_SCHEMA_TEXT: &str = include_str!("../../policies/operators.cedarschema");
pub const OPERATOR_POLICIES: &str = include_str!("../../policies/operators.cedar");

/// The decision log's subject type for an operator's request.
pub const SUBJECT_OPERATOR: &str = "operator";
/// The decision log's caller (PEP) for admin decisions.
pub const ADMIN_PEP: &str = "gatehouse-admin";

/// An operator's request to take one admin action on one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRequest {
    /// The audit log's actor (`client:<id>`, or a user at the console).
    pub operator: String,
    /// `tenant_administrator`, `helpdesk`, `auditor`, `platform_administrator`.
    pub roles: Vec<String>,
    /// A person at the console (whose session strength counts), not an API client.
    pub interactive: bool,
    /// The session's assurance level, 1..3; 0 for an API client.
    pub acr: u8,
    /// One of the schema's actions (`users.reset`, `clients.write`, …).
    pub action: String,
    pub tenant_slug: String,
    /// The platform's own tenant.
    pub platform_tenant: bool,
    /// Whether the user the action touches administers Gatehouse, where the caller
    /// knows which user that is.
    pub target_administrator: Option<bool>,
}

impl OperatorRequest {
    /// How the decision log records it: an AuthZEN request, so one reader serves both.
    pub(super) fn as_evaluation(&self) -> EvaluationRequest {
        let mut subject = Map::new();
        subject.insert("roles".into(), Value::from(self.roles.clone()));
        if self.interactive {
            subject.insert("acr".into(), Value::from(self.acr));
        }
        let mut resource = Map::new();
        resource.insert("platform".into(), Value::Bool(self.platform_tenant));
        let mut context = Map::new();
        if let Some(administrator) = self.target_administrator {
            context.insert("target_administrator".into(), Value::Bool(administrator));
        }
        EvaluationRequest {
            subject: Subject {
                kind: SUBJECT_OPERATOR.into(),
                id: self.operator.clone(),
                properties: subject,
            },
            action: Action {
                name: self.action.clone(),
                properties: Map::new(),
            },
            resource: Resource {
                kind: "tenant".into(),
                id: self.tenant_slug.clone(),
                properties: resource,
            },
            context,
        }
    }
}

/// The shipped administration policies, compiled once.
#[derive(Debug)]
pub(super) struct OperatorPolicies {
    schema: Schema,
    set: PolicySet,
    notes: HashMap<PolicyId, policies::Notes>,
    actions: HashSet<String>,
    operator_type: EntityTypeName,
    tenant_type: EntityTypeName,
    action_type: EntityTypeName,
}

impl OperatorPolicies {
    pub(super) fn compile() -> Result<OperatorPolicies, ConsentError> {
        let internal = |what: &str, e: &dyn std::fmt::Display| {
            ConsentError::Internal(format!("built-in operator {what}: {e}"))
        };
        let (schema, _warnings) = Schema::from_cedarschema_str(OPERATOR_SCHEMA_TEXT)
            .map_err(|e| internal("schema", &e))?;
        let set =
            policies::compile(&schema, OPERATOR_POLICIES).map_err(|e| internal("policies", &e))?;
        let type_name =
            |name: &str| EntityTypeName::from_str(name).map_err(|e| internal("entity type", &e));
        let actions = schema
            .actions()
            .map(|uid| uid.id().unescaped().to_owned())
            .collect();
        Ok(OperatorPolicies {
            notes: policies::notes(&set),
            operator_type: type_name("GatehouseAdmin::Operator")?,
            tenant_type: type_name("GatehouseAdmin::Tenant")?,
            action_type: type_name("GatehouseAdmin::Action")?,
            actions,
            schema,
            set,
        })
    }

    /// Whether `action` is one the schema declares (a route naming another is a bug
    /// the server's tests catch).
    pub(super) fn knows(&self, action: &str) -> bool {
        self.actions.contains(action)
    }

    pub(super) fn judge(
        &self,
        authorizer: &cedar_policy::Authorizer,
        request: &OperatorRequest,
    ) -> Result<Decision, ConsentError> {
        if !self.knows(&request.action) {
            return Err(ConsentError::Invalid(format!(
                "`{}` is not an admin action",
                request.action
            )));
        }
        let uid = |kind: &EntityTypeName, id: &str| {
            EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
        };
        let principal = uid(&self.operator_type, &request.operator);
        let resource = uid(&self.tenant_type, &request.tenant_slug);
        let roles = request
            .roles
            .iter()
            .map(|role| RestrictedExpression::new_string(role.clone()));
        let operator = CedarEntity::new(
            principal.clone(),
            HashMap::from([
                (
                    "id".to_owned(),
                    RestrictedExpression::new_string(request.operator.clone()),
                ),
                ("roles".to_owned(), RestrictedExpression::new_set(roles)),
                (
                    "interactive".to_owned(),
                    RestrictedExpression::new_bool(request.interactive),
                ),
                (
                    "acr".to_owned(),
                    RestrictedExpression::new_long(i64::from(request.acr)),
                ),
            ]),
            HashSet::new(),
        )
        .map_err(|e| ConsentError::Internal(format!("operator entity: {e}")))?;
        let tenant = CedarEntity::new(
            resource.clone(),
            HashMap::from([
                (
                    "slug".to_owned(),
                    RestrictedExpression::new_string(request.tenant_slug.clone()),
                ),
                (
                    "platform".to_owned(),
                    RestrictedExpression::new_bool(request.platform_tenant),
                ),
            ]),
            HashSet::new(),
        )
        .map_err(|e| ConsentError::Internal(format!("tenant entity: {e}")))?;
        // With the schema: the action groups (`read`, `support`, …) are the schema's
        // action hierarchy, which Cedar takes from it.
        let entities = Entities::from_entities([operator, tenant], Some(&self.schema))
            .map_err(|e| ConsentError::Internal(format!("operator entities: {e}")))?;
        let action = uid(&self.action_type, &request.action);
        let context = match request.target_administrator {
            None => Context::empty(),
            Some(administrator) => Context::from_pairs([(
                "target_administrator".to_owned(),
                RestrictedExpression::new_bool(administrator),
            )])
            .map_err(|e| ConsentError::Internal(format!("operator context: {e}")))?,
        };
        let cedar_request = Request::new(principal, action, resource, context, Some(&self.schema))
            .map_err(|e| ConsentError::Internal(format!("operator request: {e}")))?;
        let response = authorizer.is_authorized(&cedar_request, &self.set, &entities);
        for error in response.diagnostics().errors() {
            tracing::warn!(%error, "operator policy evaluation error (the policy is skipped)");
        }
        let outcome = policies::outcome(&self.notes, &response);
        Ok(Decision {
            allowed: outcome.allowed,
            reason: outcome.reason,
            acr_values: outcome.acr_values,
            max_age: outcome.max_age,
            policies: outcome.policies,
            policy_version: None,
        })
    }
}
