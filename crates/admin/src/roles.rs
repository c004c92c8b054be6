//! Operator actions on roles: list, create, assign, remove.

use gatehouse_authn::{AuthnError, ClientInfo};
use gatehouse_identity_store::StoreError;
use gatehouse_identity_store::roles::{self, Role, RoleData};
use gatehouse_token_issuer::backchannel::Delivery;

use crate::{Admin, AdminError, AdminResult, NOT_EMPTY, Operator, UserKey, required_text};

/// What removing a role did.
#[derive(Debug)]
pub struct RoleRemoved {
    /// False when the user did not have the role; then nothing was revoked.
    pub was_assigned: bool,
    /// Grants revoked because their tokens carried the role.
    pub grants_revoked: usize,
    pub deliveries: Vec<Delivery>,
}

impl Admin {
    /// Every role of the tenant, by name.
    pub async fn roles(&self, tenant: &str) -> AdminResult<Vec<Role>> {
        self.read_all(tenant, roles::list).await
    }

    /// Creates a role; its name is how policies and the `roles` claim name it.
    pub async fn create_role(
        &self,
        operator: &Operator,
        tenant: &str,
        name: &str,
        description: Option<&str>,
    ) -> AdminResult<Role> {
        let name = required_text("name", name, NOT_EMPTY)?;
        let tenant = self.tenant(tenant).await?;
        let data = RoleData {
            name: name.to_owned(),
            description: description
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(str::to_owned),
        };
        self.authn
            .create_role(tenant.id, operator.actor(), data, ClientInfo::default())
            .await
            .map_err(|e| match e {
                AuthnError::Store(StoreError::Conflict { .. }) => AdminError::Conflict(format!(
                    "tenant `{}` already has a role named `{name}`",
                    tenant.slug
                )),
                other => other.into(),
            })
    }

    /// The role named `role` of the tenant `tenant`.
    async fn role(&self, tenant: gatehouse_core::ids::TenantId, role: &str) -> AdminResult<Role> {
        self.named("role", tenant, role, roles::find_by_name).await
    }

    /// Gives the user the role; false when they had it already.
    pub async fn assign_role(
        &self,
        operator: &Operator,
        tenant: &str,
        who: impl Into<UserKey>,
        role: &str,
    ) -> AdminResult<bool> {
        let (tenant, user) = self.user(tenant, who).await?;
        let role = self.role(tenant.id, role).await?;
        Ok(self
            .authn
            .assign_role(
                tenant.id,
                operator.actor(),
                user.id,
                role.id,
                ClientInfo::default(),
            )
            .await?)
    }

    /// Takes the role away; grants whose tokens carry roles are revoked and their
    /// relying parties told.
    pub async fn remove_role(
        &self,
        operator: &Operator,
        tenant: &str,
        who: impl Into<UserKey>,
        role: &str,
    ) -> AdminResult<RoleRemoved> {
        let (tenant, user) = self.user(tenant, who).await?;
        let role = self.role(tenant.id, role).await?;
        let removal = self
            .authn
            .remove_role(
                tenant.id,
                operator.actor(),
                user.id,
                role.id,
                ClientInfo::default(),
            )
            .await?;
        let revoked = removal.grants_revoked.clone();
        let deliveries = if revoked.is_empty() {
            Vec::new()
        } else {
            self.tell_relying_parties(tenant.id, user.id, move |issuer, tenant, url, user| {
                issuer.grants_revoked(tenant, url, user, &revoked)
            })
            .await
        };
        Ok(RoleRemoved {
            was_assigned: removal.was_assigned,
            grants_revoked: removal.grants_revoked.len(),
            deliveries,
        })
    }
}
