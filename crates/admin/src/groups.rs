//! Operator actions on groups: list, create, add and remove members. Membership
//! shows in the `groups` claim and in policy decisions, so a change announces
//! `UserChanged` for the member (caches of the user's facts drop it on every node).

use gatehouse_core::events::DomainEvent;
use gatehouse_core::ids::TenantId;
use gatehouse_identity_store::StoreError;
use gatehouse_identity_store::groups::{self, Group, GroupData};
use serde_json::json;

use crate::{Admin, AdminError, AdminResult, NOT_EMPTY, Operator, UserKey, required_text};

impl Admin {
    /// Every group of the tenant.
    pub async fn groups(&self, tenant: &str) -> AdminResult<Vec<Group>> {
        self.read_all(tenant, groups::list).await
    }

    /// Creates a group; its display name is unique in the tenant.
    pub async fn create_group(
        &self,
        operator: &Operator,
        tenant: &str,
        display_name: &str,
    ) -> AdminResult<Group> {
        let display_name = required_text("name", display_name, NOT_EMPTY)?.to_owned();
        let tenant = self.tenant(tenant).await?;
        let (admin, actor, now) = (self.clone(), operator.actor(), self.now());
        let slug = tenant.slug.clone();
        self.blocking(move |conn| {
            gatehouse_identity_store::db::transaction_with(conn, |conn| {
                let data = GroupData {
                    display_name: display_name.clone(),
                    external_id: None,
                };
                let group = groups::create(conn, now, tenant.id, data).map_err(|e| match e {
                    StoreError::Conflict { .. } => AdminError::Conflict(format!(
                        "tenant `{slug}` already has a group named `{display_name}`"
                    )),
                    other => other.into(),
                })?;
                admin.audit(
                    conn,
                    tenant.id,
                    actor,
                    "group.created",
                    format!("group:{}", group.id),
                    json!({ "name": group.display_name }),
                )?;
                Ok(group)
            })
        })
        .await
    }

    /// Adds the user `who` names to the group; false when
    /// they were a member already (nothing is written then).
    pub async fn add_to_group(
        &self,
        operator: &Operator,
        tenant: &str,
        group: &str,
        who: impl Into<UserKey>,
    ) -> AdminResult<bool> {
        self.change_membership(operator, tenant, group, who.into(), true)
            .await
    }

    /// Removes the user from the group; false when they were not a member.
    pub async fn remove_from_group(
        &self,
        operator: &Operator,
        tenant: &str,
        group: &str,
        who: impl Into<UserKey>,
    ) -> AdminResult<bool> {
        self.change_membership(operator, tenant, group, who.into(), false)
            .await
    }

    async fn change_membership(
        &self,
        operator: &Operator,
        tenant: &str,
        group: &str,
        who: UserKey,
        add: bool,
    ) -> AdminResult<bool> {
        let (tenant, user) = self.user(tenant, who).await?;
        let group = self.group(tenant.id, group).await?;
        let (admin, actor, now) = (self.clone(), operator.actor(), self.now());
        let changed = self
            .blocking(move |conn| {
                gatehouse_identity_store::db::transaction_with(conn, |conn| {
                    let changed = if add {
                        groups::add_member(conn, now, tenant.id, group.id, user.id)?
                    } else {
                        groups::remove_member(conn, tenant.id, group.id, user.id)?
                    };
                    if changed {
                        admin.audit(
                            conn,
                            tenant.id,
                            actor,
                            if add {
                                "group.member_added"
                            } else {
                                "group.member_removed"
                            },
                            format!("user:{}", user.id),
                            json!({ "group": group.display_name, "group_id": group.id.to_string() }),
                        )?;
                    }
                    Ok(changed)
                })
            })
            .await?;
        if changed {
            self.announce(DomainEvent::UserChanged {
                tenant: tenant.id,
                user: user.id,
            });
        }
        Ok(changed)
    }

    /// The group named `name` in the tenant.
    async fn group(&self, tenant: TenantId, name: &str) -> AdminResult<Group> {
        self.named("group", tenant, name, groups::find_by_display_name)
            .await
    }
}
