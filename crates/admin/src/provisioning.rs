//! What a provisioning system (SCIM) does: users found by filter and written whole,
//! groups written whole with their members. Accounts go through authn (password
//! policy, deactivation, audit); groups are written here, every membership change
//! audited beside the change and announced for the member.

use std::collections::{BTreeSet, HashMap};

use gatehouse_core::events::DomainEvent;
use gatehouse_core::ids::{GroupId, TenantId, UserId};
use gatehouse_identity_store::groups::{self, Group, GroupData};
use gatehouse_identity_store::page::every;
use gatehouse_identity_store::users::search::{Found, UserFilter, UserQuery};
use gatehouse_identity_store::users::{self, User, UserData};
use gatehouse_identity_store::{AnyConnection, StoreError, db};
use serde_json::json;
use zeroize::Zeroizing;

use crate::{Admin, AdminError, AdminResult, Operator};

/// A group with its members' ids.
#[derive(Debug, Clone)]
pub struct GroupWithMembers {
    pub group: Group,
    pub members: Vec<UserId>,
}

fn taken(what: &str) -> impl Fn(StoreError) -> AdminError + '_ {
    move |e| match e {
        StoreError::Conflict { field, .. } => {
            AdminError::Conflict(format!("another {what} has that {field}"))
        }
        other => other.into(),
    }
}

fn members_of(
    conn: &mut AnyConnection,
    tenant: TenantId,
    group: GroupId,
) -> Result<Vec<UserId>, StoreError> {
    every(500, |page| groups::members(conn, tenant, group, page))
}

impl Admin {
    /// The tenant's users matching `query`, one page of them, with the total.
    pub async fn search_users(&self, tenant: &str, query: UserQuery) -> AdminResult<Found> {
        self.read(tenant, move |conn, tenant| {
            users::search::search(conn, tenant, &query)
        })
        .await
    }

    /// One page of the users matching `filter`, in creation order (the admin API's
    /// filtered listing).
    pub async fn users_matching(
        &self,
        tenant: &str,
        filter: UserFilter,
        page: gatehouse_identity_store::PageRequest,
    ) -> AdminResult<gatehouse_identity_store::Page<User>> {
        self.read(tenant, move |conn, tenant| {
            users::search::matching(conn, tenant, &filter, &page)
        })
        .await
    }

    /// The user with this id, by id only.
    pub async fn user_by_id(&self, tenant: &str, id: UserId) -> AdminResult<User> {
        self.read(tenant, move |conn, tenant| users::get(conn, tenant, id))
            .await
    }

    /// The groups of each of `users` (SCIM's read-only `groups` attribute).
    pub async fn groups_of_users(
        &self,
        tenant: &str,
        users: Vec<UserId>,
    ) -> AdminResult<HashMap<UserId, Vec<Group>>> {
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        self.read(tenant, move |conn, tenant| {
            groups::groups_of_users(conn, tenant, &users)
        })
        .await
    }

    /// Creates an account from a provisioning system's profile (see
    /// `gatehouse_authn::provisioning`).
    pub async fn provision_user(
        &self,
        operator: &Operator,
        tenant: &str,
        data: UserData,
        password: Option<Zeroizing<String>>,
    ) -> AdminResult<User> {
        let tenant = self.tenant(tenant).await?;
        self.authn
            .provision_account(tenant.id, operator.actor(), data, password)
            .await
            .map_err(provisioning_failure)
    }

    /// Replaces an account's profile with a provisioning system's, at
    /// `expected_version` when given.
    pub async fn replace_user(
        &self,
        operator: &Operator,
        tenant: &str,
        id: UserId,
        expected_version: Option<i64>,
        data: UserData,
        password: Option<Zeroizing<String>>,
    ) -> AdminResult<User> {
        let tenant = self.tenant(tenant).await?;
        self.authn
            .replace_account(
                tenant.id,
                operator.actor(),
                id,
                expected_version,
                data,
                password,
            )
            .await
            .map_err(provisioning_failure)
    }

    /// Every group of the tenant with its members.
    pub async fn groups_with_members(&self, tenant: &str) -> AdminResult<Vec<GroupWithMembers>> {
        self.read(tenant, move |conn, tenant| {
            let all = every(500, |page| groups::list(conn, tenant, page))?;
            all.into_iter()
                .map(|group| {
                    let members = members_of(conn, tenant, group.id)?;
                    Ok(GroupWithMembers { group, members })
                })
                .collect()
        })
        .await
    }

    /// One group with its members.
    pub async fn group_by_id(&self, tenant: &str, id: GroupId) -> AdminResult<GroupWithMembers> {
        self.read(tenant, move |conn, tenant| {
            let group = groups::get(conn, tenant, id)?;
            let members = members_of(conn, tenant, id)?;
            Ok(GroupWithMembers { group, members })
        })
        .await
    }

    /// Creates a group with its members, audited `group.created` and a
    /// `group.member_added` for each member.
    pub async fn provision_group(
        &self,
        operator: &Operator,
        tenant: &str,
        data: GroupData,
        members: Vec<UserId>,
    ) -> AdminResult<GroupWithMembers> {
        let tenant = self.tenant(tenant).await?;
        let (admin, actor, now) = (self.clone(), operator.actor(), self.now());
        let made = self
            .blocking(move |conn| {
                db::transaction_with(conn, |conn| {
                    let group =
                        groups::create(conn, now, tenant.id, data).map_err(taken("group"))?;
                    admin.audit(
                        conn,
                        tenant.id,
                        actor.clone(),
                        "group.created",
                        format!("group:{}", group.id),
                        json!({ "name": group.display_name, "provisioned": true }),
                    )?;
                    let wanted: BTreeSet<UserId> = members.into_iter().collect();
                    admin.set_members(
                        conn,
                        tenant.id,
                        &actor,
                        &group,
                        &BTreeSet::new(),
                        &wanted,
                    )?;
                    Ok(GroupWithMembers {
                        group,
                        members: wanted.into_iter().collect(),
                    })
                })
            })
            .await?;
        for user in &made.members {
            self.announce(DomainEvent::UserChanged {
                tenant: tenant.id,
                user: *user,
            });
        }
        Ok(made)
    }

    /// Replaces a group's name and members, at `expected_version` when given;
    /// audited `group.updated` and per member added or removed.
    pub async fn replace_group(
        &self,
        operator: &Operator,
        tenant: &str,
        id: GroupId,
        expected_version: Option<i64>,
        data: GroupData,
        members: Vec<UserId>,
    ) -> AdminResult<GroupWithMembers> {
        let tenant = self.tenant(tenant).await?;
        let (admin, actor, now) = (self.clone(), operator.actor(), self.now());
        let (replaced, changed) = self
            .blocking(move |conn| {
                db::transaction_with(conn, |conn| {
                    let current = groups::get(conn, tenant.id, id)?;
                    let version = expected_version.unwrap_or(current.version);
                    let renamed = current.display_name != data.display_name
                        || current.external_id != data.external_id;
                    let group = groups::update(conn, now, tenant.id, id, version, data)
                        .map_err(taken("group"))?;
                    let had: BTreeSet<UserId> =
                        members_of(conn, tenant.id, id)?.into_iter().collect();
                    let wanted: BTreeSet<UserId> = members.into_iter().collect();
                    let changed =
                        admin.set_members(conn, tenant.id, &actor, &group, &had, &wanted)?;
                    admin.audit(
                        conn,
                        tenant.id,
                        actor,
                        "group.updated",
                        format!("group:{}", group.id),
                        json!({ "renamed": renamed, "members_changed": changed.len() }),
                    )?;
                    Ok((
                        GroupWithMembers {
                            group,
                            members: wanted.into_iter().collect(),
                        },
                        changed,
                    ))
                })
            })
            .await?;
        for user in changed {
            self.announce(DomainEvent::UserChanged {
                tenant: tenant.id,
                user,
            });
        }
        Ok(replaced)
    }

    /// Deletes a group; its members lose it at once (audited `group.deleted`).
    pub async fn delete_group(
        &self,
        operator: &Operator,
        tenant: &str,
        id: GroupId,
    ) -> AdminResult<()> {
        let tenant = self.tenant(tenant).await?;
        let (admin, actor) = (self.clone(), operator.actor());
        let members = self
            .blocking(move |conn| {
                db::transaction_with(conn, |conn| {
                    let group = groups::get(conn, tenant.id, id)?;
                    let members = members_of(conn, tenant.id, id)?;
                    groups::delete(conn, tenant.id, id)?;
                    admin.audit(
                        conn,
                        tenant.id,
                        actor,
                        "group.deleted",
                        format!("group:{id}"),
                        json!({ "name": group.display_name, "members": members.len() }),
                    )?;
                    Ok(members)
                })
            })
            .await?;
        for user in members {
            self.announce(DomainEvent::UserChanged {
                tenant: tenant.id,
                user,
            });
        }
        Ok(())
    }

    /// Inside the caller's transaction: makes `group`'s members `wanted`, given that
    /// they are `had`; each change audited. Returns the users whose membership
    /// changed. A member who is no user of the tenant is `NotFound`.
    fn set_members(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        actor: &str,
        group: &Group,
        had: &BTreeSet<UserId>,
        wanted: &BTreeSet<UserId>,
    ) -> AdminResult<Vec<UserId>> {
        let now = self.now();
        let mut changed = Vec::new();
        for user in wanted.difference(had) {
            users::get(conn, tenant, *user).map_err(|e| match e {
                StoreError::NotFound { .. } => AdminError::Invalid {
                    field: "members",
                    message: format!("`{user}` is no user of this tenant"),
                },
                other => other.into(),
            })?;
            groups::add_member(conn, now, tenant, group.id, *user)?;
            changed.push(*user);
        }
        for user in had.difference(wanted) {
            groups::remove_member(conn, tenant, group.id, *user)?;
            changed.push(*user);
        }
        for user in &changed {
            let action = if wanted.contains(user) {
                "group.member_added"
            } else {
                "group.member_removed"
            };
            self.audit(
                conn,
                tenant,
                actor.to_owned(),
                action,
                format!("user:{user}"),
                json!({ "group": group.display_name, "group_id": group.id.to_string() }),
            )?;
        }
        Ok(changed)
    }
}

/// An account write's refusal in the admin layer's terms.
fn provisioning_failure(e: gatehouse_authn::AuthnError) -> AdminError {
    use gatehouse_authn::AuthnError;
    match e {
        AuthnError::Store(StoreError::Conflict { field, .. }) => {
            AdminError::Conflict(format!("another user has that {field}"))
        }
        AuthnError::InvalidEmail => AdminError::Invalid {
            field: "emails",
            message: "holds an address Gatehouse cannot send to".into(),
        },
        other => other.into(),
    }
}
