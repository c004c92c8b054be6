//! The PDP's traits on the identity store: live users, roles, groups and consents;
//! policy sets; the decision log.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_identity_store::decision_log::{self, NewDecision};
use gatehouse_identity_store::{
    MAX_BATCH, Pool, StoreError, consent_records, federated_identities, groups, policy_sets, roles,
    users,
};

use super::facts::{DecisionSink, PolicySource, StoredPolicies, SubjectFacts, UserFacts};
use crate::ConsentError;

#[derive(Debug, Clone)]
pub struct StoreFacts {
    pool: Pool,
}

impl StoreFacts {
    pub fn new(pool: Pool) -> Self {
        StoreFacts { pool }
    }
}

fn conn(pool: &Pool) -> Result<gatehouse_identity_store::PooledConnection, ConsentError> {
    Ok(pool.get().map_err(StoreError::from)?)
}

impl SubjectFacts for StoreFacts {
    fn user(
        &self,
        tenant: TenantId,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UserFacts>, ConsentError> {
        let Ok(user_id) = UserId::from_str(id) else {
            return Ok(None);
        };
        let mut conn = conn(&self.pool)?;
        let user = match users::get(&mut conn, tenant, user_id) {
            Ok(user) => user,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(other) => return Err(other.into()),
        };
        let roles = roles::roles_of_user(&mut conn, tenant, user_id)?;
        let groups = groups::groups_of_user(&mut conn, tenant, user_id)?;
        let consents = consent_records::current_for_user(&mut conn, now, tenant, user_id)?;
        let idps = federated_identities::connections_of_users(&mut conn, tenant, &[user_id])?
            .remove(&user_id)
            .unwrap_or_default();
        Ok(Some(facts(user, roles, groups, idps, consents)))
    }

    /// Six queries for up to [`MAX_BATCH`] users, instead of six per user.
    fn users(
        &self,
        tenant: TenantId,
        ids: &[&str],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, UserFacts>, ConsentError> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut conn = conn(&self.pool)?;
        for chunk in ids.chunks(MAX_BATCH) {
            let asked: HashMap<UserId, &str> = chunk
                .iter()
                .filter_map(|id| UserId::from_str(id).ok().map(|user| (user, *id)))
                .collect();
            let user_ids: Vec<UserId> = asked.keys().copied().collect();
            if user_ids.is_empty() {
                // Nothing a user id could be: no such users, no queries.
                continue;
            }
            let mut roles = roles::roles_of_users(&mut conn, tenant, &user_ids)?;
            let mut groups = groups::groups_of_users(&mut conn, tenant, &user_ids)?;
            let mut consents =
                consent_records::current_for_users(&mut conn, now, tenant, &user_ids)?;
            let mut idps =
                federated_identities::connections_of_users(&mut conn, tenant, &user_ids)?;
            for user in users::get_many(&mut conn, tenant, &user_ids)? {
                let id = user.id;
                let Some(asked_as) = asked.get(&id) else {
                    continue;
                };
                let facts = facts(
                    user,
                    roles.remove(&id).unwrap_or_default(),
                    groups.remove(&id).unwrap_or_default(),
                    idps.remove(&id).unwrap_or_default(),
                    consents.remove(&id).unwrap_or_default(),
                );
                found.insert((*asked_as).to_owned(), facts);
            }
        }
        Ok(found)
    }
}

/// A user as policies see it, from the store's records.
fn facts(
    user: users::User,
    roles: Vec<roles::Role>,
    groups: Vec<groups::Group>,
    linked: Vec<federated_identities::LinkedConnection>,
    consents: Vec<consent_records::CurrentConsent>,
) -> UserFacts {
    let attributes = user
        .data
        .custom_attributes
        .iter()
        .map(|(name, value)| {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (name.clone(), text)
        })
        .collect();
    UserFacts {
        id: user.id.to_string(),
        email_verified: user.primary_email().is_some_and(|e| e.verified),
        user_name: user.data.user_name,
        active: user.data.active,
        roles: roles.into_iter().map(|r| r.name).collect(),
        groups: groups.into_iter().map(|g| g.display_name).collect(),
        idps: linked.iter().map(|c| c.slug.clone()).collect(),
        partners: {
            let mut partners: Vec<String> = linked.into_iter().map(|c| c.partner).collect();
            partners.sort();
            partners.dedup();
            partners
        },
        consents: consents
            .into_iter()
            .map(|c| format!("{}:{}", c.client_id, c.purpose))
            .collect(),
        attributes,
    }
}

#[derive(Debug, Clone)]
pub struct StorePolicies {
    pool: Pool,
}

impl StorePolicies {
    pub fn new(pool: Pool) -> Self {
        StorePolicies { pool }
    }
}

impl PolicySource for StorePolicies {
    fn latest_version(&self, tenant: TenantId) -> Result<Option<i64>, ConsentError> {
        Ok(policy_sets::latest_version(
            &mut *conn(&self.pool)?,
            tenant,
        )?)
    }

    fn latest(&self, tenant: TenantId) -> Result<Option<StoredPolicies>, ConsentError> {
        Ok(
            policy_sets::latest(&mut *conn(&self.pool)?, tenant)?.map(|set| StoredPolicies {
                version: set.version,
                text: set.text,
            }),
        )
    }

    fn save(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
        text: &str,
        created_by: &str,
    ) -> Result<i64, ConsentError> {
        Ok(policy_sets::insert(&mut *conn(&self.pool)?, now, tenant, text, created_by)?.version)
    }
}

#[derive(Debug, Clone)]
pub struct StoreDecisionLog {
    pool: Pool,
}

impl StoreDecisionLog {
    pub fn new(pool: Pool) -> Self {
        StoreDecisionLog { pool }
    }
}

impl DecisionSink for StoreDecisionLog {
    fn write(&self, batch: &[NewDecision]) -> Result<usize, ConsentError> {
        Ok(decision_log::append(&mut *conn(&self.pool)?, batch)?)
    }
}
