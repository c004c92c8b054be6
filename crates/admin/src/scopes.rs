//! What the tenant's users carry beyond the defaults: scopes and the claims they
//! release (the OpenID Connect defaults, Core §5.4, with the tenant's own entries,
//! which add a scope or replace a default's claims) and the tenant's own SCIM User
//! extension. Kept in the tenant's settings (`scopes`, `user_extension`), so a
//! change is a tenant change: audited, announced, read again by every node.

use std::collections::BTreeMap;

use gatehouse_token_issuer::claims::{OPENID_SCOPES, default_scope_claims};
use serde_json::{Map, Value};

use crate::{Admin, AdminError, AdminResult, Operator, TenantChange};

/// The settings section the tenant's scope table lives in.
const SECTION: &str = "scopes";

/// Claims a scope may never release: they are the token's own (who issued it, to
/// whom, until when, how the user signed in), and a user attribute of the same
/// name must never stand in for them.
const RESERVED_CLAIMS: [&str; 22] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "client_id",
    "scope",
    "auth_time",
    "acr",
    "amr",
    "nonce",
    "azp",
    "at_hash",
    "c_hash",
    "s_hash",
    "sid",
    "cnf",
    "act",
    "may_act",
    "typ",
];

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

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn scope_token(scope: &str) -> AdminResult<()> {
    let valid = !scope.is_empty()
        && scope.len() <= 100
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
    if valid {
        Ok(())
    } else {
        Err(AdminError::Invalid {
            field: "scope",
            message: "must be an OAuth scope token (printable ASCII without space, `\"` or `\\`, at most 100 characters)".into(),
        })
    }
}

fn claim_names(claims: &[String]) -> AdminResult<()> {
    for claim in claims {
        let plain = claim.strip_prefix("custom:").unwrap_or(claim);
        let valid = !plain.is_empty()
            && claim.len() <= 100
            && plain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !valid {
            return Err(AdminError::Invalid {
                field: "claims",
                message: format!("`{claim}` is not a claim name (letters, digits, `_`, `-`, `.`)"),
            });
        }
        if RESERVED_CLAIMS.contains(&claim.as_str()) {
            return Err(AdminError::Invalid {
                field: "claims",
                message: format!("`{claim}` is the token's own claim, never a scope's"),
            });
        }
    }
    Ok(())
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
        let mut claims = claims;
        claims.dedup();
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
