//! Scope → claims: which user claims each scope releases (OIDC Core §5.4 defaults),
//! overridable per tenant in its settings (`"scopes": {"scope": ["claim", …]}`), and
//! how each claim resolves from the user record, custom attributes, roles and groups.

use std::collections::BTreeMap;

use gatehouse_core::tenant_settings::TenantSettings;
use gatehouse_identity_store::users::User;
use serde_json::{Map, Value, json};

/// The scopes OpenID Connect defines (Core §5.4, §11): each is about a user.
pub const OPENID_SCOPES: [&str; 5] = ["openid", "profile", "email", "phone", "offline_access"];

/// The scopes every tenant starts with and the claims they release.
pub fn default_scope_claims() -> BTreeMap<String, Vec<String>> {
    let mut scopes = BTreeMap::new();
    let mut put = |scope: &str, claims: &[&str]| {
        scopes.insert(
            scope.to_owned(),
            claims.iter().map(|c| (*c).to_owned()).collect(),
        );
    };
    put("openid", &["sub"]);
    put(
        "profile",
        &[
            "name",
            "family_name",
            "given_name",
            "middle_name",
            "nickname",
            "preferred_username",
            "locale",
            "zoneinfo",
            "updated_at",
        ],
    );
    put("email", &["email", "email_verified"]);
    put("phone", &["phone_number", "phone_number_verified"]);
    put("offline_access", &[]);
    scopes
}

/// The tenant's scope table: defaults, with the tenant's own entries added or replacing.
pub fn scope_claims(tenant_settings: &TenantSettings) -> BTreeMap<String, Vec<String>> {
    let mut scopes = default_scope_claims();
    for (scope, claims) in &tenant_settings.scopes {
        scopes.insert(scope.clone(), claims.clone());
    }
    scopes
}

/// Resolves one claim for a user; `None` when the user has no value for it.
fn resolve(claim: &str, user: &User, roles: &[String], groups: &[String]) -> Option<Value> {
    let data = &user.data;
    let text = |v: &Option<String>| v.as_ref().map(|s| json!(s));
    match claim {
        "sub" => Some(json!(user.id.to_string())),
        "name" => data
            .display_name
            .clone()
            .or_else(|| {
                let parts: Vec<&str> = [
                    data.name.given_name.as_deref(),
                    data.name.family_name.as_deref(),
                ]
                .into_iter()
                .flatten()
                .collect();
                (!parts.is_empty()).then(|| parts.join(" "))
            })
            .map(|n| json!(n)),
        "given_name" => text(&data.name.given_name),
        "family_name" => text(&data.name.family_name),
        "middle_name" => text(&data.name.middle_name),
        "nickname" => text(&data.nick_name),
        "preferred_username" => Some(json!(data.user_name)),
        "locale" => text(&data.locale),
        "zoneinfo" => text(&data.timezone),
        "updated_at" => Some(json!(user.updated_at.timestamp())),
        "email" => user.primary_email().map(|e| json!(e.value)),
        "email_verified" => user.primary_email().map(|e| json!(e.verified)),
        "phone_number" => data
            .phone_numbers
            .iter()
            .find(|p| p.primary)
            .or(data.phone_numbers.first())
            .map(|p| json!(p.value)),
        "phone_number_verified" => data.phone_numbers.first().map(|_| json!(false)),
        "roles" => Some(json!(roles)),
        "groups" => Some(json!(groups)),
        other => data
            .custom_attributes
            .get(other.strip_prefix("custom:").unwrap_or(other))
            .cloned(),
    }
}

/// The claims `scopes` release for `user` under the tenant's scope table.
pub fn claims_for(
    table: &BTreeMap<String, Vec<String>>,
    scopes: &[&str],
    user: &User,
    roles: &[String],
    groups: &[String],
) -> Map<String, Value> {
    let mut claims = Map::new();
    for scope in scopes {
        for claim in table.get(*scope).into_iter().flatten() {
            if let Some(value) = resolve(claim, user, roles, groups) {
                claims.insert(claim.clone(), value);
            }
        }
    }
    claims
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use gatehouse_core::ids::{TenantId, UserId};
    use gatehouse_identity_store::users::{Email, Name, UserData};

    use super::*;

    fn alice() -> User {
        let mut data = UserData::new("alice");
        data.name = Name {
            given_name: Some("Alice".into()),
            family_name: Some("Liddell".into()),
            ..Name::default()
        };
        data.emails = vec![Email {
            value: "alice@example.com".into(),
            kind: None,
            primary: true,
            verified: true,
        }];
        data.custom_attributes
            .insert("loyalty_tier".into(), json!("gold"));
        User {
            id: UserId::new(),
            tenant_id: TenantId::new(),
            data,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 1,
        }
    }

    #[test]
    fn scopes_release_only_their_claims() {
        let user = alice();
        let table = default_scope_claims();
        let email_only = claims_for(&table, &["openid", "email"], &user, &[], &[]);
        assert_eq!(email_only["email"], "alice@example.com");
        assert_eq!(email_only["email_verified"], true);
        assert!(
            email_only.get("given_name").is_none(),
            "profile claim released without the profile scope"
        );
        let profile = claims_for(&table, &["profile"], &user, &[], &[]);
        assert_eq!(profile["name"], "Alice Liddell");
        assert_eq!(profile["preferred_username"], "alice");
    }

    #[test]
    fn tenants_add_scopes_for_roles_groups_and_custom_attributes() {
        let settings: Map<String, Value> = serde_json::from_value(json!({
            "scopes": { "loyalty": ["loyalty_tier", "roles", "groups"] }
        }))
        .unwrap();
        let table = scope_claims(&TenantSettings::from_map(&settings).unwrap());
        let claims = claims_for(
            &table,
            &["loyalty"],
            &alice(),
            &["vip".into()],
            &["staff".into()],
        );
        assert_eq!(claims["loyalty_tier"], "gold");
        assert_eq!(claims["roles"], json!(["vip"]));
        assert_eq!(claims["groups"], json!(["staff"]));
        assert!(table.contains_key("profile"), "defaults were lost");
    }
}
