//! What the PDP reads per evaluation, behind small traits so the engine can be
//! tested (and benchmarked) without a database: the subject's facts, the tenant's
//! policy set, and where the decision log goes. `store` implements them on the
//! identity store.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use gatehouse_core::ids::TenantId;
use gatehouse_identity_store::decision_log::NewDecision;

use crate::ConsentError;

/// A user as policies see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFacts {
    pub id: String,
    pub user_name: String,
    pub active: bool,
    pub email_verified: bool,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    /// The slugs of the federation connections (partners' identity providers) the
    /// user has a linked identity at.
    pub idps: Vec<String>,
    /// The partners (by name) behind those connections.
    pub partners: Vec<String>,
    /// Current (granted, not withdrawn, not expired) consents as "client_id:purpose".
    pub consents: Vec<String>,
    /// Custom attributes, each as text (JSON text when not a string).
    pub attributes: Vec<(String, String)>,
}

pub trait SubjectFacts: Send + Sync + std::fmt::Debug {
    /// The user `id` of `tenant` at `now`; `None` when there is no such user.
    fn user(
        &self,
        tenant: TenantId,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UserFacts>, ConsentError>;

    /// The users of `ids` that exist, by the id as asked. A store answers them
    /// together (a few queries for all); this default asks one by one.
    fn users(
        &self,
        tenant: TenantId,
        ids: &[&str],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, UserFacts>, ConsentError> {
        let mut found = HashMap::with_capacity(ids.len());
        for id in ids {
            if let Some(facts) = self.user(tenant, id, now)? {
                found.insert((*id).to_owned(), facts);
            }
        }
        Ok(found)
    }
}

/// A stored policy set's version and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicies {
    pub version: i64,
    pub text: String,
}

pub trait PolicySource: Send + Sync + std::fmt::Debug {
    /// The serving version: polled, so it must be cheap.
    fn latest_version(&self, tenant: TenantId) -> Result<Option<i64>, ConsentError>;
    fn latest(&self, tenant: TenantId) -> Result<Option<StoredPolicies>, ConsentError>;
    /// Stores an already validated set as the next version; returns the version.
    fn save(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
        text: &str,
        created_by: &str,
    ) -> Result<i64, ConsentError>;
}

pub trait DecisionSink: Send + Sync + std::fmt::Debug {
    fn write(&self, batch: &[NewDecision]) -> Result<usize, ConsentError>;
}
