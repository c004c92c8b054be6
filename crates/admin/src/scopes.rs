//! What the tenant's users carry beyond the defaults: scopes and the claims they
//! release (the OpenID Connect defaults, Core §5.4, with the tenant's own entries,
//! which add a scope or replace a default's claims) and the tenant's own SCIM User
//! extension. Kept in the tenant's settings (`scopes`, `user_extension`), so a
//! change is a tenant change: audited, announced, read again by every node.

use std::collections::BTreeMap;

use gatehouse_core::tenant_settings::{claim_problem, scope_problem};
use gatehouse_token_issuer::claims::{OPENID_SCOPES, default_scope_claims};
use serde_json::{Map, Value};

use crate::{Admin, AdminError, AdminResult, Operator, TenantChange};

/// The settings section the tenant's scope table lives in.
const SECTION: &str = "scopes";

/// One scope as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeView {
    pub scope: String,
    /// The claims it releases (a `custom:` name, or any other unknown name, reads
    /// the user's custom attribute of that name).
    pub claims: Vec<String>,
    /// Defined by OpenID Connect (`openid`, `profile`, `email`, `phone`,
    /// `offline_access`).
    pub standard: bool,
    /// The tenant's own entry (a new scope, or a standard one's claims replaced).
    pub customised: bool,
}

fn scope_token(scope: &str) -> AdminResult<()> {
    match scope_problem(scope) {
        None => Ok(()),
        Some(message) => Err(AdminError::Invalid {
            field: "scope",
            message,
        }),
    }
}

fn claim_names(claims: &[String]) -> AdminResult<()> {
    match claims.iter().find_map(|claim| claim_problem(claim)) {
        None => Ok(()),
        Some(message) => Err(AdminError::Invalid {
            field: "claims",
            message,
        }),
    }
}

impl Admin {
    /// The tenant's scopes, by name: the defaults and the tenant's own entries.
    pub async fn scopes(&self, tenant: &str) -> AdminResult<Vec<ScopeView>> {
        let own = self.tenant(tenant).await?.typed_settings().scopes;
        let mut table: BTreeMap<String, ScopeView> = default_scope_claims()
            .into_iter()
            .map(|(scope, claims)| {
                let view = ScopeView {
                    standard: OPENID_SCOPES.contains(&scope.as_str()),
                    customised: false,
                    scope: scope.clone(),
                    claims,
                };
                (scope, view)
            })
            .collect();
        for (scope, claims) in own {
            table.insert(
                scope.clone(),
                ScopeView {
                    standard: OPENID_SCOPES.contains(&scope.as_str()),
                    customised: true,
                    scope,
                    claims,
                },
            );
        }
        Ok(table.into_values().collect())
    }

    /// Makes `scope` release `claims` (a new scope, or a standard one's claims
    /// replaced). `openid` stays as OpenID Connect defines it.
    pub async fn set_scope(
        &self,
        operator: &Operator,
        tenant: &str,
        scope: &str,
        claims: Vec<String>,
    ) -> AdminResult<ScopeView> {
        scope_token(scope)?;
        if scope == "openid" {
            return Err(AdminError::Invalid {
                field: "scope",
                message: "`openid` releases `sub` as OpenID Connect defines it".into(),
            });
        }
        claim_names(&claims)?;
        // Each claim once, in the order given.
        let mut seen = std::collections::BTreeSet::new();
        let claims: Vec<String> = claims
            .into_iter()
            .filter(|claim| seen.insert(claim.clone()))
            .collect();
        self.change_scopes(operator, tenant, |table| {
            table.insert(
                scope.to_owned(),
                Value::Array(claims.iter().cloned().map(Value::String).collect()),
            );
        })
        .await?;
        Ok(ScopeView {
            standard: OPENID_SCOPES.contains(&scope),
            customised: true,
            scope: scope.to_owned(),
            claims,
        })
    }

    /// Removes the tenant's own entry for `scope`: a standard scope releases its
    /// default claims again, any other scope is gone. False when there was none.
    pub async fn remove_scope(
        &self,
        operator: &Operator,
        tenant: &str,
        scope: &str,
    ) -> AdminResult<bool> {
        let had = self
            .tenant(tenant)
            .await?
            .typed_settings()
            .scopes
            .contains_key(scope);
        if had {
            self.change_scopes(operator, tenant, |table| {
                table.remove(scope);
            })
            .await?;
        }
        Ok(had)
    }

    /// Rewrites the tenant's `scopes` section at the version read, so concurrent
    /// changes to it conflict instead of one overwriting the other.
    async fn change_scopes(
        &self,
        operator: &Operator,
        tenant: &str,
        change: impl FnOnce(&mut Map<String, Value>),
    ) -> AdminResult<()> {
        let current = self.tenant(tenant).await?;
        let mut table = match current.settings.get(SECTION) {
            Some(Value::Object(table)) => table.clone(),
            _ => Map::new(),
        };
        change(&mut table);
        let section = if table.is_empty() {
            Value::Null
        } else {
            Value::Object(table)
        };
        let change = TenantChange {
            display_name: None,
            settings: Map::from_iter([(SECTION.to_owned(), section)]),
            expected_version: Some(current.version),
        };
        self.update_tenant(operator, tenant, change).await?;
        Ok(())
    }
}

impl Admin {
    /// The tenant's own SCIM User extension (`None`: it defines none).
    pub async fn user_extension(
        &self,
        tenant: &str,
    ) -> AdminResult<Option<gatehouse_core::tenant_settings::UserExtension>> {
        Ok(self.tenant(tenant).await?.typed_settings().user_extension)
    }

    /// Defines (or, with `Value::Null`, removes) the tenant's own SCIM User
    /// extension; checked before it is saved (`settings` names what is wrong).
    /// Values users already hold under a removed or changed extension stay in their
    /// custom attributes.
    pub async fn set_user_extension(
        &self,
        operator: &Operator,
        tenant: &str,
        extension: Value,
    ) -> AdminResult<Option<gatehouse_core::tenant_settings::UserExtension>> {
        let current = self.tenant(tenant).await?;
        let change = TenantChange {
            display_name: None,
            settings: Map::from_iter([("user_extension".to_owned(), extension)]),
            expected_version: Some(current.version),
        };
        let view = self.update_tenant(operator, tenant, change).await?;
        Ok(view.tenant.typed_settings().user_extension)
    }
}
