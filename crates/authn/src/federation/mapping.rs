//! Mapping rules: what a partner asserts about a user (OIDC claims, later SAML
//! attributes) turned into the user's attributes, custom attributes and groups.
//!
//! Rules are data, parsed strictly (unknown fields refused) and evaluated at every
//! federated sign-in, so changes upstream flow in. Every source is a list of
//! strings: arrays as they are, scalars as one value. A rule that cannot do what it
//! says (a required claim missing, a transform that fails, two values for a
//! single-valued target) is a [`MappingError`] naming the rule — never a silent
//! drop — and the sign-in is refused.

use std::collections::{BTreeMap, BTreeSet};

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// Upstream claims, flattened: each claim's values as strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims(pub BTreeMap<String, Vec<String>>);

impl Claims {
    /// Claims from a JSON object: strings, numbers and booleans as one value,
    /// arrays of those as many; objects and nulls are left out.
    pub fn from_json(object: &serde_json::Map<String, serde_json::Value>) -> Claims {
        fn scalar(value: &serde_json::Value) -> Option<String> {
            match value {
                serde_json::Value::String(text) => Some(text.clone()),
                serde_json::Value::Bool(flag) => Some(flag.to_string()),
                serde_json::Value::Number(number) => Some(number.to_string()),
                _ => None,
            }
        }
        let mut claims = BTreeMap::new();
        for (name, value) in object {
            let values: Vec<String> = match value {
                serde_json::Value::Array(items) => items.iter().filter_map(scalar).collect(),
                other => scalar(other).into_iter().collect(),
            };
            if !values.is_empty() || value.is_array() {
                claims.insert(name.clone(), values);
            }
        }
        Claims(claims)
    }

    /// Adds the claims of `other` this one lacks (UserInfo under the ID token).
    pub fn fill_from(&mut self, other: Claims) {
        for (name, values) in other.0 {
            self.0.entry(name).or_insert(values);
        }
    }

    pub fn get(&self, name: &str) -> &[String] {
        self.0.get(name).map_or(&[], Vec::as_slice)
    }
}

/// The rules as an operator writes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The claim read; or `const`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A fixed value instead of a claim.
    #[serde(default, rename = "const", skip_serializing_if = "Option::is_none")]
    pub constant: Option<String>,
    /// `email`, `given_name`, `family_name`, `display_name`, `group`, `role` or
    /// `custom:<attribute of the tenant's user extension>`.
    pub to: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<TransformSpec>,
    /// A sign-in whose claims do not give this rule a value is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// The rule applies only when this holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TransformSpec {
    /// `"lower"`.
    Named(NamedTransform),
    /// `{"split": ","}`: each value split at the separator, parts trimmed, empty
    /// parts dropped.
    Split { split: String },
    /// `{"regex": "^sales-(.+)$", "capture": 1}`: values the expression does not
    /// match are dropped; matches give the capture group.
    Regex {
        regex: String,
        #[serde(default = "first_group")]
        capture: usize,
    },
}

fn first_group() -> usize {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamedTransform {
    Lower,
}

/// `{"claim": "email_verified", "equals": "true"}`; without `equals` or
/// `contains`, the claim must be present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub claim: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
}

/// Where a rule's values go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Email,
    GivenName,
    FamilyName,
    DisplayName,
    Group,
    Role,
    Custom(String),
}

impl Target {
    fn parse(text: &str) -> Result<Target, String> {
        Ok(match text {
            "email" => Target::Email,
            "given_name" => Target::GivenName,
            "family_name" => Target::FamilyName,
            "display_name" => Target::DisplayName,
            "group" => Target::Group,
            "role" => Target::Role,
            other => match other.strip_prefix("custom:") {
                Some(name) if !name.is_empty() => Target::Custom(name.to_owned()),
                _ => {
                    return Err(format!(
                        "`to` must be email, given_name, family_name, display_name, group, role or custom:<attribute>, not `{other}`"
                    ));
                }
            },
        })
    }

    fn single_valued(&self) -> bool {
        !matches!(self, Target::Group | Target::Role | Target::Custom(_))
    }
}

enum Transform {
    Lower,
    Split(String),
    Capture(Regex, usize),
}

enum Source {
    Claim(String),
    Constant(String),
}

struct Rule {
    source: Source,
    target: Target,
    transforms: Vec<Transform>,
    required: bool,
    when: Option<Condition>,
}

/// Parsed rules, ready to apply.
pub struct Mapping {
    rules: Vec<Rule>,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// A rule that could not be applied, or (when saving) one that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mapping rule {rule}: {reason}")]
pub struct MappingError {
    /// The rule's position, from 1.
    pub rule: usize,
    pub reason: String,
}

/// What the rules made of the claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappedProfile {
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    /// By the name of an attribute of the tenant's user extension.
    pub custom: BTreeMap<String, Vec<String>>,
    /// Group display names.
    pub groups: BTreeSet<String>,
    /// Role names.
    pub roles: BTreeSet<String>,
}

/// Rules from the claims that hold the email (lower-cased), given name, family
/// name and display name, in that order.
fn standard(from: [&str; 4]) -> MappingSpec {
    let targets = ["email", "given_name", "family_name", "display_name"];
    MappingSpec {
        rules: from
            .iter()
            .zip(targets)
            .map(|(from, to)| RuleSpec {
                from: Some((*from).into()),
                constant: None,
                to: to.into(),
                transforms: if to == "email" {
                    vec![TransformSpec::Named(NamedTransform::Lower)]
                } else {
                    vec![]
                },
                required: false,
                when: None,
            })
            .collect(),
    }
}

/// The longest compiled regular expression a rule may hold.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

impl Mapping {
    /// The standard OpenID Connect claims onto the user's own attributes.
    pub fn standard_oidc() -> MappingSpec {
        standard(["email", "given_name", "family_name", "name"])
    }

    /// The common SAML attributes (LDAP names, as most identity providers
    /// release them) onto the user's own attributes.
    pub fn standard_saml() -> MappingSpec {
        standard(["mail", "givenName", "sn", "displayName"])
    }

    /// Parses stored or submitted rules; the error names the rule at fault.
    pub fn from_json(value: &serde_json::Value) -> Result<Mapping, MappingError> {
        let spec: MappingSpec =
            serde_json::from_value(value.clone()).map_err(|e| MappingError {
                rule: 0,
                reason: e.to_string(),
            })?;
        Mapping::new(&spec)
    }

    pub fn new(spec: &MappingSpec) -> Result<Mapping, MappingError> {
        let rules = spec
            .rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                compile(rule).map_err(|reason| MappingError {
                    rule: index + 1,
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Mapping { rules })
    }

    /// The custom attributes the rules write, for checking against the tenant's
    /// user extension.
    pub fn custom_targets(&self) -> impl Iterator<Item = (usize, &str)> {
        self.rules
            .iter()
            .enumerate()
            .filter_map(|(index, rule)| match &rule.target {
                Target::Custom(name) => Some((index + 1, name.as_str())),
                _ => None,
            })
    }

    pub fn apply(&self, claims: &Claims) -> Result<MappedProfile, MappingError> {
        let mut profile = MappedProfile::default();
        for (index, rule) in self.rules.iter().enumerate() {
            let fail = |reason: String| MappingError {
                rule: index + 1,
                reason,
            };
            if let Some(condition) = &rule.when
                && !holds(condition, claims)
            {
                continue;
            }
            let mut values: Vec<String> = match &rule.source {
                Source::Claim(name) => claims.get(name).to_vec(),
                Source::Constant(value) => vec![value.clone()],
            };
            for transform in &rule.transforms {
                values = apply_transform(transform, values);
            }
            values.retain(|value| !value.trim().is_empty());
            if values.is_empty() {
                if rule.required {
                    return Err(fail(match &rule.source {
                        Source::Claim(name) => format!("the required claim `{name}` has no value"),
                        Source::Constant(_) => "the transforms left no value".into(),
                    }));
                }
                continue;
            }
            if rule.target.single_valued() && values.len() > 1 {
                return Err(fail(format!(
                    "{} values for a single-valued target",
                    values.len()
                )));
            }
            let mut values = values.into_iter();
            let mut single = || values.next();
            match &rule.target {
                Target::Email => profile.email = single(),
                Target::GivenName => profile.given_name = single(),
                Target::FamilyName => profile.family_name = single(),
                Target::DisplayName => profile.display_name = single(),
                Target::Group => profile.groups.extend(values),
                Target::Role => profile.roles.extend(values),
                Target::Custom(name) => profile
                    .custom
                    .entry(name.clone())
                    .or_default()
                    .extend(values),
            }
        }
        Ok(profile)
    }
}

fn compile(rule: &RuleSpec) -> Result<Rule, String> {
    let source = match (&rule.from, &rule.constant) {
        (Some(claim), None) if !claim.is_empty() => Source::Claim(claim.clone()),
        (None, Some(value)) => Source::Constant(value.clone()),
        _ => return Err("give exactly one of `from` (a claim) and `const`".into()),
    };
    let transforms = rule
        .transforms
        .iter()
        .map(|transform| {
            Ok(match transform {
                TransformSpec::Named(NamedTransform::Lower) => Transform::Lower,
                TransformSpec::Split { split } if split.is_empty() => {
                    return Err("`split` needs a separator".to_owned());
                }
                TransformSpec::Split { split } => Transform::Split(split.clone()),
                TransformSpec::Regex { regex, capture } => {
                    let compiled = RegexBuilder::new(regex)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| format!("`regex`: {e}"))?;
                    if *capture >= compiled.captures_len() {
                        return Err(format!(
                            "`capture` {capture}: the expression has {} group(s)",
                            compiled.captures_len() - 1
                        ));
                    }
                    Transform::Capture(compiled, *capture)
                }
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    if let Some(condition) = &rule.when
        && condition.claim.is_empty()
    {
        return Err("`when` needs a claim".into());
    }
    Ok(Rule {
        source,
        target: Target::parse(&rule.to)?,
        transforms,
        required: rule.required,
        when: rule.when.clone(),
    })
}

fn holds(condition: &Condition, claims: &Claims) -> bool {
    let values = claims.get(&condition.claim);
    match (&condition.equals, &condition.contains) {
        (Some(wanted), _) => values.iter().any(|value| value == wanted),
        (None, Some(part)) => values.iter().any(|value| value.contains(part.as_str())),
        (None, None) => !values.is_empty(),
    }
}

fn apply_transform(transform: &Transform, values: Vec<String>) -> Vec<String> {
    match transform {
        Transform::Lower => values.into_iter().map(|v| v.to_lowercase()).collect(),
        Transform::Split(separator) => values
            .iter()
            .flat_map(|value| value.split(separator.as_str()))
            .map(|part| part.trim().to_owned())
            .filter(|part| !part.is_empty())
            .collect(),
        Transform::Capture(regex, group) => values
            .iter()
            .filter_map(|value| {
                regex
                    .captures(value)
                    .and_then(|captures| captures.get(*group))
                    .map(|found| found.as_str().to_owned())
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: serde_json::Value) -> Claims {
        Claims::from_json(value.as_object().unwrap())
    }

    #[test]
    fn maps_claims_with_transforms_and_conditions() {
        let mapping = Mapping::from_json(&json!({"rules": [
            {"from": "email", "to": "email", "transforms": ["lower"], "required": true},
            {"from": "groups", "to": "group", "transforms": [{"regex": "^sales-(.+)$"}]},
            {"from": "department", "to": "custom:department", "transforms": [{"split": ","}]},
            {"const": "acme", "to": "custom:partner", "when": {"claim": "email_verified", "equals": "true"}},
            {"const": "never", "to": "custom:other", "when": {"claim": "missing"}}
        ]}))
        .unwrap();
        let profile = mapping
            .apply(&claims(json!({
                "email": "Alice@Partner.Example",
                "email_verified": true,
                "groups": ["sales-emea", "sales-apac", "engineering"],
                "department": "north, south,,"
            })))
            .unwrap();
        assert_eq!(profile.email.as_deref(), Some("alice@partner.example"));
        assert_eq!(
            profile
                .groups
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["apac", "emea"]
        );
        assert_eq!(profile.custom["department"], ["north", "south"]);
        assert_eq!(profile.custom["partner"], ["acme"]);
        assert!(!profile.custom.contains_key("other"));
    }

    #[test]
    fn a_rule_that_cannot_apply_is_an_error_naming_it() {
        let mapping = Mapping::from_json(&json!({"rules": [
            {"from": "name", "to": "display_name"},
            {"from": "email", "to": "email", "required": true}
        ]}))
        .unwrap();
        let error = mapping.apply(&claims(json!({"name": "A"}))).unwrap_err();
        assert_eq!(error.rule, 2);
        assert!(error.reason.contains("`email`"), "{error}");
        let two = Mapping::from_json(&json!({"rules": [{"from": "mail", "to": "email"}]})).unwrap();
        let error = two
            .apply(&claims(json!({"mail": ["a@x.example", "b@x.example"]})))
            .unwrap_err();
        assert!(error.reason.contains("single-valued"), "{error}");
    }

    #[test]
    fn bad_rules_are_refused_when_parsed() {
        for (rules, expected) in [
            (json!({"rules": [{"from": "a", "to": "owner"}]}), "`to`"),
            (
                json!({"rules": [{"from": "a", "const": "b", "to": "email"}]}),
                "exactly one",
            ),
            (
                json!({"rules": [{"from": "a", "to": "group", "transforms": [{"regex": "("}]}]}),
                "regex",
            ),
            (
                json!({"rules": [{"from": "a", "to": "group", "transforms": [{"regex": "a", "capture": 1}]}]}),
                "capture",
            ),
            (
                json!({"rules": [{"from": "a", "to": "email", "extra": 1}]}),
                "unknown field",
            ),
            (
                json!({"rules": [{"from": "a", "to": "email", "transforms": ["upper"]}]}),
                "did not match",
            ),
        ] {
            let error = Mapping::from_json(&rules).unwrap_err().to_string();
            assert!(error.contains(expected), "{rules}: {error}");
        }
    }

    #[test]
    fn the_standard_mapping_reads_the_standard_claims() {
        let mapping = Mapping::new(&Mapping::standard_oidc()).unwrap();
        let profile = mapping
            .apply(&claims(json!({"email": "B@X.Example", "given_name": "B", "family_name": "C", "name": "B C"})))
            .unwrap();
        assert_eq!(profile.email.as_deref(), Some("b@x.example"));
        assert_eq!(profile.display_name.as_deref(), Some("B C"));
    }
}
