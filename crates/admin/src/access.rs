//! Who may do what: the roles an operator holds and the PDP's decision on each
//! admin action. The rules are Gatehouse's shipped operator policies
//! (`consent/policies/operators.cedar`), so every decision lands in the decision log
//! with its reason code, like any AuthZEN evaluation.

use gatehouse_consent::pdp::OperatorRequest;
use gatehouse_identity_store::tenants::Tenant;

use crate::{Admin, AdminError, AdminResult, Operator, PLATFORM_SCOPE};

/// An administrator's role. API clients hold a role by the scope their token
/// carries and their registration still grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdminRole {
    /// Operates the tenants themselves (the platform's own tenant only).
    PlatformAdministrator,
    /// Everything about one tenant.
    TenantAdministrator,
    /// Reads users; resets their factors, ends their sessions, disables and enables
    /// them. No client, policy or key changes.
    Helpdesk,
    /// Reads everything, changes nothing.
    Auditor,
    /// A provisioning system (SCIM): creates, changes and removes users and groups.
    Provisioner,
}

impl AdminRole {
    pub const ALL: [AdminRole; 5] = [
        AdminRole::PlatformAdministrator,
        AdminRole::TenantAdministrator,
        AdminRole::Helpdesk,
        AdminRole::Auditor,
        AdminRole::Provisioner,
    ];

    /// The roles the admin API takes tokens for.
    pub const ADMIN_API: [AdminRole; 4] = [
        AdminRole::PlatformAdministrator,
        AdminRole::TenantAdministrator,
        AdminRole::Helpdesk,
        AdminRole::Auditor,
    ];

    /// The roles SCIM takes tokens for.
    pub const SCIM: [AdminRole; 1] = [AdminRole::Provisioner];

    /// The scope an API client's token carries for the role.
    pub fn scope(self) -> &'static str {
        match self {
            AdminRole::PlatformAdministrator => PLATFORM_SCOPE,
            AdminRole::TenantAdministrator => "admin",
            AdminRole::Helpdesk => "admin:helpdesk",
            AdminRole::Auditor => "admin:audit",
            AdminRole::Provisioner => "scim",
        }
    }

    pub fn from_scope(scope: &str) -> Option<AdminRole> {
        AdminRole::ALL
            .into_iter()
            .find(|role| role.scope() == scope)
    }

    /// The role's name in the operator policies.
    pub fn name(self) -> &'static str {
        match self {
            AdminRole::PlatformAdministrator => "platform_administrator",
            AdminRole::TenantAdministrator => "tenant_administrator",
            AdminRole::Helpdesk => "helpdesk",
            AdminRole::Auditor => "auditor",
            AdminRole::Provisioner => "provisioner",
        }
    }
}

/// What an operator asks to do: one action of the operator policies' schema
/// (`users.reset`, `clients.write`, …) on one tenant.
#[derive(Debug, Clone, Copy)]
pub struct AdminAction<'a> {
    pub name: &'a str,
    pub tenant: &'a Tenant,
    /// The tenant is the platform's own.
    pub platform_tenant: bool,
    /// The roles the API asked through takes (what a refusal names as the way in).
    pub roles: &'a [AdminRole],
    /// Whether the user the action touches administers Gatehouse, once the caller
    /// knows which user that is.
    pub target_administrator: Option<bool>,
}

impl Admin {
    /// Whether `operator`, holding `roles`, may take `action`: the PDP decides by
    /// the shipped operator policies and logs the decision (with `request_id`).
    /// A denial is [`AdminError::Denied`] with the reason code.
    pub async fn authorize(
        &self,
        operator: &Operator,
        roles: &[AdminRole],
        action: AdminAction<'_>,
        request_id: Option<String>,
    ) -> AdminResult<()> {
        let request = OperatorRequest {
            operator: operator.actor(),
            roles: roles.iter().map(|role| role.name().to_owned()).collect(),
            interactive: false,
            acr: 0,
            action: action.name.to_owned(),
            tenant_slug: action.tenant.slug.clone(),
            platform_tenant: action.platform_tenant,
            target_administrator: action.target_administrator,
        };
        let (pdp, tenant) = (self.pdp.clone(), action.tenant.id);
        let decision = self
            .off_pool(move || {
                Ok(pdp.authorize_operator(tenant, &request, request_id.as_deref())?)
            })
            .await?;
        if decision.allowed {
            return Ok(());
        }
        Err(AdminError::Denied {
            action: action.name.to_owned(),
            reason: decision
                .reason
                .unwrap_or_else(|| "entitlement_missing".to_owned()),
            acr_values: decision.acr_values,
            scopes: self
                .roles_permitted(action.name, action.roles)
                .into_iter()
                .map(|role| role.scope().to_owned())
                .collect(),
        })
    }

    /// The roles `among` that the operator policies let an API client take
    /// `action` with (on the platform's own tenant, where every role applies),
    /// decided without logging: what an API's contract states about each operation.
    pub fn roles_permitted(&self, action: &str, among: &[AdminRole]) -> Vec<AdminRole> {
        among
            .iter()
            .copied()
            .filter(|role| {
                let request = OperatorRequest {
                    operator: "contract".to_owned(),
                    roles: vec![role.name().to_owned()],
                    interactive: false,
                    acr: 0,
                    action: action.to_owned(),
                    tenant_slug: "contract".to_owned(),
                    platform_tenant: true,
                    target_administrator: None,
                };
                self.pdp
                    .judge_operator(&request)
                    .is_ok_and(|decision| decision.allowed)
            })
            .collect()
    }

    /// Whether the user holds the role of Gatehouse's own administrators.
    pub async fn is_administrator(
        &self,
        tenant: &str,
        user: gatehouse_core::ids::UserId,
    ) -> AdminResult<bool> {
        self.any_administrator(tenant, vec![user]).await
    }

    /// Whether any of `users` holds the role of Gatehouse's own administrators
    /// (read a batch at a time).
    pub async fn any_administrator(
        &self,
        tenant: &str,
        users: Vec<gatehouse_core::ids::UserId>,
    ) -> AdminResult<bool> {
        use gatehouse_identity_store::roles;
        self.read(tenant, move |conn, tenant| {
            for batch in users.chunks(gatehouse_identity_store::MAX_BATCH) {
                let held = roles::roles_of_users(conn, tenant, batch)?;
                if held
                    .values()
                    .flatten()
                    .any(|role| role.name == roles::ADMINISTRATOR)
                {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await
    }

    /// Whether the operator policies know `action` (a route naming another would
    /// be refused on every call; the server's tests check its table with this).
    pub fn knows_action(&self, action: &str) -> bool {
        self.pdp.knows_operator_action(action)
    }
}
