//! A tenant's settings, typed: one struct per section, checked when they are written
//! (the store refuses a bad value with a message naming the field) and read through
//! one accessor, instead of each feature picking at a JSON bag.
//!
//! Stored as a JSON object (`tenants.settings`); a section that is absent takes its
//! defaults. Sections: `registration`, `mfa`, `scopes`, `hosts`, `mail` (the
//! sender of the tenant's mail), `theme` (the theme's own fields are the server's;
//! here it is carried as JSON and checked for shape only), `user_extension` (the
//! tenant's own SCIM User extension schema).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Every section of a tenant's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    pub registration: RegistrationSettings,
    pub mfa: MfaSettings,
    /// Scope → the claims it releases; an entry replaces the default of the same
    /// name (`openid`, `profile`, `email`, …). Only tenant entries can release
    /// `roles` or `groups`.
    pub scopes: BTreeMap<String, Vec<String>>,
    /// Host names that serve the tenant, lower-case; the first is its issuer host.
    pub hosts: Vec<String>,
    /// Who the tenant's mail comes from.
    pub mail: MailSettings,
    /// The tenant's theme; its fields are checked by the server's theme module.
    pub theme: Option<Value>,
    /// The tenant's own extension of the SCIM User resource.
    pub user_extension: Option<UserExtension>,
}

/// Claims a scope may never release: they are the token's own (who issued it, to
/// whom, until when, how the user signed in), and a user attribute of the same name
/// must never stand in for them.
pub const RESERVED_CLAIMS: [&str; 22] = [
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

/// Why `scope` cannot name a scope: RFC 6749 §3.3 `scope-token = 1*( %x21 /
/// %x23-5B / %x5D-7E )`, at most 100 characters.
pub fn scope_problem(scope: &str) -> Option<String> {
    let valid = !scope.is_empty()
        && scope.len() <= 100
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
    (!valid).then(|| {
        format!(
            "`{scope}` is not an OAuth scope token (printable ASCII without space, `\"` or `\\`, at most 100 characters)"
        )
    })
}

/// Why a scope cannot release `claim`: a malformed name, or one of the token's own.
pub fn claim_problem(claim: &str) -> Option<String> {
    let plain = claim.strip_prefix("custom:").unwrap_or(claim);
    let valid = !plain.is_empty()
        && claim.len() <= 100
        && plain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !valid {
        return Some(format!(
            "`{claim}` is not a claim name (letters, digits, `_`, `-`, `.`)"
        ));
    }
    RESERVED_CLAIMS
        .contains(&claim)
        .then(|| format!("`{claim}` is the token's own claim, never a scope's"))
}

/// Why the tenant's scope table cannot be taken; `openid` stays as OpenID Connect
/// defines it.
fn scopes_problem(scopes: &BTreeMap<String, Vec<String>>) -> Option<String> {
    scopes.iter().find_map(|(scope, claims)| {
        if scope == "openid" {
            return Some("`openid` releases `sub` as OpenID Connect defines it".to_owned());
        }
        scope_problem(scope).or_else(|| claims.iter().find_map(|c| claim_problem(c)))
    })
}

/// The URNs of SCIM's own User schemas, which no tenant extension may take.
const SCIM_USER_SCHEMAS: [&str; 2] = [
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
];

/// The most attributes one extension defines.
pub const MAX_EXTENSION_ATTRIBUTES: usize = 50;

/// A tenant's own extension of the SCIM User (RFC 7643 §3.3, §7): the attributes
/// its provisioning systems send besides the core and enterprise ones, kept in each
/// user's custom attributes under the extension's URN and released as claims like
/// any custom attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserExtension {
    /// The schema's URN (`urn:acme:params:scim:schemas:extension:acme:2.0:User`).
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub attributes: Vec<ExtensionAttribute>,
}

/// One attribute of a tenant's extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionAttribute {
    /// RFC 7643 §2.1 `ATTRNAME`: a letter, then letters, digits, `-` or `_`.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: AttributeKind,
    #[serde(default)]
    pub multi_valued: bool,
    /// Must be sent whenever the extension is.
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub description: Option<String>,
}

/// The simple SCIM types an extension attribute takes (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttributeKind {
    String,
    Boolean,
    Integer,
    Decimal,
    DateTime,
}

impl AttributeKind {
    /// The type's name in a SCIM schema.
    pub fn scim_name(self) -> &'static str {
        match self {
            AttributeKind::String => "string",
            AttributeKind::Boolean => "boolean",
            AttributeKind::Integer => "integer",
            AttributeKind::Decimal => "decimal",
            AttributeKind::DateTime => "dateTime",
        }
    }
}

impl UserExtension {
    fn check(&self) -> Result<(), String> {
        let id_ok = self.id.len() <= 200
            && self.id.starts_with("urn:")
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
        if !id_ok {
            return Err(format!("id `{}` is not a schema URN (`urn:…`)", self.id));
        }
        if SCIM_USER_SCHEMAS
            .iter()
            .any(|own| own.eq_ignore_ascii_case(&self.id))
            || self
                .id
                .to_ascii_lowercase()
                .starts_with("urn:ietf:params:scim:")
        {
            return Err(format!("id `{}` is in SCIM's own namespace", self.id));
        }
        if self.name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        if self.attributes.is_empty() || self.attributes.len() > MAX_EXTENSION_ATTRIBUTES {
            return Err(format!(
                "attributes: 1 to {MAX_EXTENSION_ATTRIBUTES} are defined"
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for attribute in &self.attributes {
            let name = &attribute.name;
            let valid = name.len() <= 64
                && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(format!("attribute `{name}` is not an attribute name"));
            }
            if !seen.insert(name.to_ascii_lowercase()) {
                return Err(format!("attribute `{name}` is defined twice"));
            }
        }
        Ok(())
    }

    /// The attribute named `name`, whatever its case (attribute names are
    /// case-insensitive, RFC 7643 §2.1).
    pub fn attribute(&self, name: &str) -> Option<&ExtensionAttribute> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// The sender of a tenant's mail. Unset, mail comes from the configured
/// `mail.from` address under the tenant's display name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailSettings {
    /// The sender address (`no-reply@acme.example`); the SMTP server must accept it.
    pub from: Option<String>,
    /// The sender's name as mail clients show it; the display name when unset.
    pub sender_name: Option<String>,
}

/// The longest sender name kept, in characters.
pub const SENDER_NAME_MAX_CHARS: usize = 100;

/// A bare address as a sender: `local@domain`, no display name, brackets, spaces
/// or control characters (those would be header injection), at most 254 bytes.
/// The mailer parses it again and falls back to the configured sender if it refuses.
pub fn valid_sender_address(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    address.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && !address
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "<>()[],;:\\\"".contains(c))
        && valid_host(domain)
        && domain.contains('.')
}

/// A sender name: some text, no control characters, not too long.
pub fn valid_sender_name(name: &str) -> bool {
    !name.trim().is_empty()
        && name.chars().count() <= SENDER_NAME_MAX_CHARS
        && !name.chars().any(char::is_control)
}

/// Who may sign up, and what they must prove first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationSettings {
    /// Sign-up is open.
    pub enabled: bool,
    /// Sign-in waits for the address to be verified.
    pub require_verified_email: bool,
}

impl Default for RegistrationSettings {
    fn default() -> Self {
        RegistrationSettings {
            enabled: true,
            require_verified_email: true,
        }
    }
}

/// When a second factor is needed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MfaSettings {
    /// Every user needs one; a user without is sent to enrol first.
    pub required: bool,
    /// Authorization requests from these clients need one.
    pub clients: Vec<String>,
    /// … and requests for any of these scopes.
    pub scopes: Vec<String>,
}

/// A setting that cannot be taken, naming it (`mfa.required`, `hosts`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant setting `{field}`: {message}")]
pub struct SettingsError {
    pub field: String,
    pub message: String,
}

/// The sections, each parsed on its own so an error names its section.
const SECTIONS: [&str; 7] = [
    "registration",
    "mfa",
    "scopes",
    "hosts",
    "mail",
    "theme",
    "user_extension",
];

impl TenantSettings {
    /// Strict: what a write must pass. Unknown sections and unknown or mistyped
    /// fields are refused, naming them.
    pub fn from_map(map: &Map<String, Value>) -> Result<TenantSettings, SettingsError> {
        if let Some(unknown) = map.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
            return Err(SettingsError {
                field: unknown.clone(),
                message: format!("unknown setting; known are {}", SECTIONS.join(", ")),
            });
        }
        let mut settings = TenantSettings::default();
        for (section, value) in map {
            settings
                .set(section, value)
                .map_err(|message| SettingsError {
                    field: section.clone(),
                    message,
                })?;
        }
        settings.hosts = settings
            .hosts
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        if let Some(bad) = settings.hosts.iter().find(|h| !valid_host(h)) {
            return Err(SettingsError {
                field: "hosts".into(),
                message: format!("`{bad}` is not a host name"),
            });
        }
        if let Some(from) = &settings.mail.from
            && !valid_sender_address(from)
        {
            return Err(SettingsError {
                field: "mail.from".into(),
                message: format!("`{from}` is not a plain email address (local@domain)"),
            });
        }
        if let Some(name) = &settings.mail.sender_name
            && !valid_sender_name(name)
        {
            return Err(SettingsError {
                field: "mail.sender_name".into(),
                message: format!(
                    "must be text of 1 to {SENDER_NAME_MAX_CHARS} characters without control characters"
                ),
            });
        }
        if let Some(message) = scopes_problem(&settings.scopes) {
            return Err(SettingsError {
                field: "scopes".into(),
                message,
            });
        }
        if let Some(extension) = &settings.user_extension {
            extension.check().map_err(|message| SettingsError {
                field: "user_extension".into(),
                message,
            })?;
        }
        if let Some(theme) = &settings.theme
            && !(theme.is_object() || theme.is_null())
        {
            return Err(SettingsError {
                field: "theme".into(),
                message: "must be an object".into(),
            });
        }
        Ok(settings)
    }

    /// Lenient: how stored settings are read. Rows written before settings were
    /// checked may hold anything, so each field is read on its own: a field of the
    /// wrong type takes its default, a list keeps its strings, an unknown field or
    /// section is ignored (and logged). One exception fails closed: an `mfa.required`
    /// that is present but not a boolean counts as `true`.
    pub fn read(map: &Map<String, Value>) -> TenantSettings {
        let mut settings = TenantSettings::default();
        let strings = |value: Option<&Value>| -> Vec<String> {
            value
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        for (section, value) in map {
            match section.as_str() {
                "registration" => {
                    let flag = |name: &str, default: bool| {
                        value.get(name).and_then(Value::as_bool).unwrap_or(default)
                    };
                    settings.registration = RegistrationSettings {
                        enabled: flag("enabled", true),
                        require_verified_email: flag("require_verified_email", true),
                    };
                }
                "mfa" => {
                    settings.mfa = MfaSettings {
                        required: match value.get("required") {
                            None | Some(Value::Null) => false,
                            Some(Value::Bool(required)) => *required,
                            Some(_) => {
                                tracing::warn!(
                                    "tenant setting mfa.required is not a boolean; requiring MFA"
                                );
                                true
                            }
                        },
                        clients: strings(value.get("clients")),
                        scopes: strings(value.get("scopes")),
                    };
                }
                // A stored entry that would not pass today is not served: a scope
                // never releases a claim that would stand in for the token's own.
                "scopes" => {
                    if let Some(table) = value.as_object() {
                        settings.scopes = table
                            .iter()
                            .filter(|(scope, claims)| {
                                claims.is_array()
                                    && scope.as_str() != "openid"
                                    && scope_problem(scope).is_none()
                            })
                            .map(|(scope, claims)| {
                                let kept: Vec<String> = strings(Some(claims))
                                    .into_iter()
                                    .filter(|claim| claim_problem(claim).is_none())
                                    .collect();
                                (scope.clone(), kept)
                            })
                            .collect();
                    }
                }
                "hosts" => {
                    settings.hosts = strings(Some(value))
                        .iter()
                        .map(|h| h.trim().to_ascii_lowercase())
                        .filter(|h| !h.is_empty())
                        .collect();
                }
                // A stored sender that would not pass today is dropped: mail then
                // comes from the configured sender rather than from a bad header.
                "mail" => {
                    let text = |name: &str| value.get(name).and_then(Value::as_str);
                    settings.mail = MailSettings {
                        from: text("from")
                            .filter(|from| valid_sender_address(from))
                            .map(str::to_owned),
                        sender_name: text("sender_name")
                            .filter(|name| valid_sender_name(name))
                            .map(str::to_owned),
                    };
                }
                "theme" => settings.theme = (!value.is_null()).then(|| value.clone()),
                // An extension that would not pass today is not served: its
                // attributes are refused until an operator fixes it.
                "user_extension" => {
                    settings.user_extension = UserExtension::deserialize(value)
                        .ok()
                        .filter(|extension| extension.check().is_ok());
                    if settings.user_extension.is_none() && !value.is_null() {
                        tracing::warn!("tenant setting user_extension is not valid; ignored");
                    }
                }
                other => tracing::warn!(section = other, "unknown tenant setting ignored"),
            }
        }
        settings
    }

    /// The stored form of checked settings: what a write keeps (host names
    /// normalised as they are matched).
    pub fn normalised(map: &Map<String, Value>) -> Result<Map<String, Value>, SettingsError> {
        let checked = TenantSettings::from_map(map)?;
        let mut stored = map.clone();
        if stored.contains_key("hosts") {
            stored.insert("hosts".into(), Value::from(checked.hosts));
        }
        Ok(stored)
    }

    fn set(&mut self, section: &str, value: &Value) -> Result<(), String> {
        fn parse<T: serde::de::DeserializeOwned + Default>(value: &Value) -> Result<T, String> {
            if value.is_null() {
                return Ok(T::default());
            }
            T::deserialize(value).map_err(|e| e.to_string())
        }
        match section {
            "registration" => self.registration = parse(value)?,
            "mfa" => self.mfa = parse(value)?,
            "scopes" => self.scopes = parse(value)?,
            "hosts" => self.hosts = parse(value)?,
            "mail" => self.mail = parse(value)?,
            "theme" => self.theme = (!value.is_null()).then(|| value.clone()),
            "user_extension" => self.user_extension = parse(value)?,
            other => return Err(format!("unknown setting `{other}`")),
        }
        Ok(())
    }
}

/// A DNS host name (optionally with a port): labels of letters, digits and `-`.
fn valid_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => name,
        _ => host,
    };
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn absent_sections_take_their_defaults() {
        let settings = TenantSettings::from_map(&Map::new()).unwrap();
        assert!(settings.registration.enabled && settings.registration.require_verified_email);
        assert!(!settings.mfa.required);
        assert!(settings.scopes.is_empty() && settings.hosts.is_empty());
        assert_eq!(settings, TenantSettings::read(&Map::new()));
    }

    #[test]
    fn sections_are_read_into_their_types() {
        let settings = TenantSettings::from_map(&map(json!({
            "registration": {"enabled": false},
            "mfa": {"required": true, "clients": ["bank"], "scopes": ["payments"]},
            "scopes": {"staff": ["roles", "groups"]},
            "hosts": ["Login.Initech.TEST"],
            "theme": {"primary_color": "#123456"},
        })))
        .unwrap();
        assert!(!settings.registration.enabled);
        assert!(
            settings.registration.require_verified_email,
            "the default stays"
        );
        assert_eq!(settings.mfa.clients, ["bank"]);
        assert_eq!(settings.scopes["staff"], ["roles", "groups"]);
        assert_eq!(settings.hosts, ["login.initech.test"]);
        assert!(settings.theme.is_some());
    }

    #[test]
    fn a_bad_value_is_refused_naming_the_field() {
        for (value, field, needle) in [
            (
                json!({"mfa": {"required": "yes"}}),
                "mfa",
                "expected a boolean",
            ),
            (
                json!({"mfa": {"requried": true}}),
                "mfa",
                "unknown field `requried`",
            ),
            (json!({"registraton": {}}), "registraton", "unknown setting"),
            (
                json!({"scopes": {"x": "email"}}),
                "scopes",
                "expected a sequence",
            ),
            (
                json!({"hosts": ["evil.example/path"]}),
                "hosts",
                "not a host name",
            ),
            (
                json!({"hosts": "login.example"}),
                "hosts",
                "expected a sequence",
            ),
            (json!({"theme": "dark"}), "theme", "must be an object"),
            (
                json!({"mail": {"from": "Acme <no-reply@acme.example>"}}),
                "mail.from",
                "plain email address",
            ),
            (
                json!({"mail": {"from": "no-reply@acme.example\r\nBcc: x@evil.example"}}),
                "mail.from",
                "plain email address",
            ),
            (
                json!({"mail": {"sender_name": "Acme\r\nBcc: x@evil.example"}}),
                "mail.sender_name",
                "control characters",
            ),
            (
                json!({"mail": {"form": "no-reply@acme.example"}}),
                "mail",
                "unknown field `form`",
            ),
        ] {
            let error = TenantSettings::from_map(&map(value.clone())).unwrap_err();
            assert_eq!(error.field, field, "{value}");
            assert!(error.message.contains(needle), "{value}: {error}");
            assert!(error.to_string().contains(field));
        }
    }

    #[test]
    fn reading_stored_settings_never_fails_and_keeps_what_it_can() {
        let settings = TenantSettings::read(&map(json!({
            "mfa": {"required": true, "note": "x", "clients": ["bank", 7]},
            "registration": {"enabled": false, "colour": "blue"},
            "scopes": {"staff": ["roles", 1], "broken": "roles"},
            "hosts": [" Login.Acme.Example ", 3],
            "legacy": 1,
        })));
        assert!(
            settings.mfa.required,
            "a stray field does not switch MFA off"
        );
        assert_eq!(settings.mfa.clients, ["bank"]);
        assert!(!settings.registration.enabled);
        assert_eq!(settings.scopes.len(), 1);
        assert_eq!(settings.scopes["staff"], ["roles"]);
        assert_eq!(settings.hosts, ["login.acme.example"]);
    }

    #[test]
    fn a_tenant_names_its_sender() {
        let settings = TenantSettings::from_map(&map(json!({
            "mail": {"from": "no-reply@acme.example", "sender_name": "Acme Login"},
        })))
        .unwrap();
        assert_eq!(settings.mail.from.as_deref(), Some("no-reply@acme.example"));
        assert_eq!(settings.mail.sender_name.as_deref(), Some("Acme Login"));
        let stored = TenantSettings::read(&map(json!({
            "mail": {"from": "not an address", "sender_name": "Acme"},
        })));
        assert_eq!(stored.mail.from, None, "a bad stored sender is not used");
        assert_eq!(stored.mail.sender_name.as_deref(), Some("Acme"));
    }

    #[test]
    fn a_mistyped_mfa_requirement_fails_closed() {
        let settings = TenantSettings::read(&map(json!({"mfa": {"required": "no"}})));
        assert!(settings.mfa.required);
    }

    #[test]
    fn writes_store_host_names_as_they_are_matched() {
        let stored =
            TenantSettings::normalised(&map(json!({"hosts": [" Login.Acme.Example"]}))).unwrap();
        assert_eq!(stored["hosts"], json!(["login.acme.example"]));
    }

    #[test]
    fn scopes_never_release_the_tokens_own_claims() {
        for (table, why) in [
            (json!({"staff": ["aud"]}), "a registered claim"),
            (json!({"staff": ["roles", "iss"]}), "one among others"),
            (json!({"openid": ["email"]}), "openid remapped"),
            (json!({"has space": ["roles"]}), "not a scope token"),
            (json!({"staff": ["a b"]}), "not a claim name"),
        ] {
            let map = Map::from_iter([("scopes".to_owned(), table.clone())]);
            let refused = TenantSettings::from_map(&map).unwrap_err();
            assert_eq!(refused.field, "scopes", "{why}: {table}");
            // Stored before the rule, it is not served.
            let read = TenantSettings::read(&map);
            assert!(
                read.scopes
                    .values()
                    .flatten()
                    .all(|claim| claim_problem(claim).is_none())
                    && !read.scopes.contains_key("openid"),
                "{why}: {:?}",
                read.scopes
            );
        }
        let fine = Map::from_iter([(
            "scopes".to_owned(),
            json!({"staff": ["roles", "custom:badge"]}),
        )]);
        assert!(TenantSettings::from_map(&fine).is_ok());
    }

    #[test]
    fn a_user_extension_stays_out_of_scims_own_namespace() {
        let extension = |id: &str| {
            Map::from_iter([(
                "user_extension".to_owned(),
                json!({"id": id, "name": "X", "attributes": [{"name": "a", "type": "string"}]}),
            )])
        };
        assert!(TenantSettings::from_map(&extension("urn:acme:scim:User")).is_ok());
        for taken in [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:core:2.0:Foo",
            "URN:IETF:PARAMS:SCIM:schemas:extension:enterprise:2.0:User",
        ] {
            let refused = TenantSettings::from_map(&extension(taken)).unwrap_err();
            assert_eq!(refused.field, "user_extension", "{taken}");
        }
    }
}
