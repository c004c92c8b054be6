//! Cedar entities and context from store facts and the AuthZEN request, shaped
//! exactly as `policies/schema.cedarschema` declares them.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::RwLock;

use cedar_policy::{Context, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};
use chrono::{DateTime, Timelike, Utc};
use serde_json::{Map, Value};

use super::authzen::{EvaluationRequest, Resource};
use super::facts::UserFacts;
use crate::ConsentError;

const ACR_PREFIX: &str = "urn:gatehouse:aal";
const MAX_RISK: i64 = 100;

/// The context members the PDP reads (see [`build`]); the request may carry others
/// (AuthZEN lets it), which [`unknown_keys`] reports.
const CONTEXT_KEYS: [&str; 7] = [
    "acr",
    "auth_time",
    "ip",
    "device",
    "risk_score",
    "purpose",
    "client_id",
];

/// Unknown members reported per request at most, and the longest name kept: the
/// request itself is in the log, this list is for finding typos.
const MAX_UNKNOWN: usize = 32;
const MAX_UNKNOWN_NAME: usize = 128;

/// IP expressions kept at most (a full cache starts again).
const IP_CAPACITY: usize = 4096;

/// What building a request would otherwise parse again and again: the schema's
/// entity type names, parsed once, and the `ip(...)` context values of recent
/// addresses. Parsing a name runs Cedar's parser (a regex-driven lexer), and so does
/// `RestrictedExpression::new_ip`, for the extension function's name, on every call.
#[derive(Debug)]
pub(crate) struct Names {
    user: EntityTypeName,
    role: EntityTypeName,
    group: EntityTypeName,
    resource: EntityTypeName,
    action: EntityTypeName,
    ips: RwLock<HashMap<Box<str>, RestrictedExpression>>,
}

impl Names {
    pub(crate) fn new() -> Result<Names, ConsentError> {
        let name = |kind: &str| {
            EntityTypeName::from_str(kind)
                .map_err(|e| ConsentError::Internal(format!("entity type {kind}: {e}")))
        };
        Ok(Names {
            user: name("Gatehouse::User")?,
            role: name("Gatehouse::Role")?,
            group: name("Gatehouse::Group")?,
            resource: name("Gatehouse::Resource")?,
            action: name("Gatehouse::Action")?,
            ips: RwLock::new(HashMap::new()),
        })
    }

    /// `ip(address)` for an address already checked to parse.
    fn ip(&self, address: &str) -> RestrictedExpression {
        if let Some(known) = self
            .ips
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(address)
        {
            return known.clone();
        }
        let built = RestrictedExpression::new_ip(address);
        let mut ips = self.ips.write().unwrap_or_else(|p| p.into_inner());
        if ips.len() >= IP_CAPACITY {
            ips.clear();
        }
        ips.insert(address.into(), built.clone());
        built
    }
}

fn uid(kind: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(kind.clone(), EntityId::new(id))
}

fn strings<'a>(values: impl IntoIterator<Item = &'a String>) -> RestrictedExpression {
    RestrictedExpression::new_set(
        values
            .into_iter()
            .map(|v| RestrictedExpression::new_string(v.clone())),
    )
}

pub(crate) fn user_entity(names: &Names, user: &UserFacts) -> Result<Entity, ConsentError> {
    let mut parents = Vec::with_capacity(user.roles.len() + user.groups.len());
    for role in &user.roles {
        parents.push(uid(&names.role, role));
    }
    for group in &user.groups {
        parents.push(uid(&names.group, group));
    }
    let attrs = [
        (
            "id".to_owned(),
            RestrictedExpression::new_string(user.id.clone()),
        ),
        (
            "user_name".to_owned(),
            RestrictedExpression::new_string(user.user_name.clone()),
        ),
        (
            "active".to_owned(),
            RestrictedExpression::new_bool(user.active),
        ),
        (
            "email_verified".to_owned(),
            RestrictedExpression::new_bool(user.email_verified),
        ),
        ("roles".to_owned(), strings(&user.roles)),
        ("groups".to_owned(), strings(&user.groups)),
        ("idps".to_owned(), strings(&user.idps)),
        ("partners".to_owned(), strings(&user.partners)),
        ("consents".to_owned(), strings(&user.consents)),
    ];
    let tags = user.attributes.iter().map(|(name, value)| {
        (
            name.clone(),
            RestrictedExpression::new_string(value.clone()),
        )
    });
    Entity::new_with_tags(uid(&names.user, &user.id), attrs, parents, tags)
        .map_err(|e| ConsentError::Internal(format!("user entity: {e}")))
}

/// `name`, cut to a length fit for a log line or a metric label.
fn shown(name: &str) -> &str {
    match name.char_indices().nth(MAX_UNKNOWN_NAME) {
        Some((end, _)) => &name[..end],
        None => name,
    }
}

/// The request's members that no policy can see, as paths (`context.consent`,
/// `subject.properties.department`, `action.properties.x`), sorted: context keys
/// the PDP does not read (the schema's `Env` is built from [`CONTEXT_KEYS`] alone),
/// and subject and action properties (the subject comes from the store; actions
/// carry no attributes). Resource properties are all tags, so all are seen.
pub(crate) fn unknown_keys(request: &EvaluationRequest) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut add = |prefix: &str, name: &str| {
        if unknown.len() < MAX_UNKNOWN {
            unknown.push(format!("{prefix}{}", shown(name)));
        }
    };
    for name in request.context.keys() {
        if !CONTEXT_KEYS.contains(&name.as_str()) {
            add("context.", name);
        }
    }
    for name in request.subject.properties.keys() {
        add("subject.properties.", name);
    }
    for name in request.action.properties.keys() {
        add("action.properties.", name);
    }
    unknown.sort_unstable();
    unknown
}

/// Resource properties become tags, which the schema declares as strings: a string
/// is taken as it is, `null` as absent, anything else is refused with its name (a
/// number or a list would otherwise compare as its JSON text, which no policy
/// author expects).
pub(crate) fn resource_entity(names: &Names, resource: &Resource) -> Result<Entity, ConsentError> {
    // The uid is type and id together, so two types sharing an id stay apart.
    let id = format!("{}/{}", resource.kind, resource.id);
    let attrs = [
        (
            "type".to_owned(),
            RestrictedExpression::new_string(resource.kind.clone()),
        ),
        (
            "id".to_owned(),
            RestrictedExpression::new_string(resource.id.clone()),
        ),
    ];
    let mut tags = Vec::with_capacity(resource.properties.len());
    for (name, value) in &resource.properties {
        match value {
            Value::String(text) => {
                tags.push((name.clone(), RestrictedExpression::new_string(text.clone())));
            }
            Value::Null => {}
            _ => {
                return Err(ConsentError::Invalid(format!(
                    "resource.properties.{} must be a string",
                    shown(name)
                )));
            }
        }
    }
    Entity::new_with_tags(uid(&names.resource, &id), attrs, [], tags)
        .map_err(|e| ConsentError::Internal(format!("resource entity: {e}")))
}

/// An action the schema does not declare matches no policy: the answer is a denial.
pub(crate) fn action_uid(names: &Names, name: &str) -> EntityUid {
    uid(&names.action, name)
}

fn long(context: &Map<String, Value>, key: &str) -> Result<Option<i64>, ConsentError> {
    match context.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ConsentError::Invalid(format!("context.{key} must be an integer"))),
        Some(_) => Err(ConsentError::Invalid(format!(
            "context.{key} must be an integer"
        ))),
    }
}

fn text<'a>(context: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ConsentError> {
    match context.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ConsentError::Invalid(format!(
            "context.{key} must be a string"
        ))),
    }
}

/// The assurance level: an acr URN of ours or a bare number, 1..3; 0 when absent.
fn acr_level(context: &Map<String, Value>) -> Result<i64, ConsentError> {
    let bad = || ConsentError::Invalid(format!("context.acr must be {ACR_PREFIX}1..3 or 1..3"));
    let level = match context.get("acr") {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::String(s)) => s
            .strip_prefix(ACR_PREFIX)
            .unwrap_or(s)
            .parse::<i64>()
            .map_err(|_| bad())?,
        Some(Value::Number(n)) => n.as_i64().ok_or_else(bad)?,
        Some(_) => return Err(bad()),
    };
    if (1..=3).contains(&level) {
        Ok(level)
    } else {
        Err(bad())
    }
}

/// The Cedar context from the request's context members (see the schema's `Env`).
/// The PDP's clock decides `time`; a PEP cannot set it.
pub(crate) fn build(
    names: &Names,
    context: &Map<String, Value>,
    caller: &str,
    now: DateTime<Utc>,
) -> Result<Context, ConsentError> {
    let mut pairs: Vec<(String, RestrictedExpression)> = Vec::with_capacity(8);
    pairs.push((
        "acr".into(),
        RestrictedExpression::new_long(acr_level(context)?),
    ));
    if let Some(auth_time) = long(context, "auth_time")? {
        pairs.push((
            "auth_age".into(),
            RestrictedExpression::new_long((now.timestamp() - auth_time).max(0)),
        ));
    }
    if let Some(ip) = text(context, "ip")? {
        if std::net::IpAddr::from_str(ip).is_err() {
            return Err(ConsentError::Invalid(
                "context.ip is not an IP address".into(),
            ));
        }
        pairs.push(("ip".into(), names.ip(ip)));
    }
    if let Some(device) = text(context, "device")? {
        pairs.push((
            "device".into(),
            RestrictedExpression::new_string(device.to_owned()),
        ));
    }
    let risk = long(context, "risk_score")?.unwrap_or(0);
    if !(0..=MAX_RISK).contains(&risk) {
        return Err(ConsentError::Invalid(format!(
            "context.risk_score must be 0..{MAX_RISK}"
        )));
    }
    pairs.push(("risk_score".into(), RestrictedExpression::new_long(risk)));
    pairs.push((
        "time".into(),
        RestrictedExpression::new_long(now.timestamp()),
    ));
    pairs.push((
        "hour".into(),
        RestrictedExpression::new_long(i64::from(now.hour())),
    ));
    let client = text(context, "client_id")?;
    if let Some(purpose) = text(context, "purpose")? {
        if purpose.is_empty() {
            return Err(ConsentError::Invalid(
                "context.purpose must not be empty".into(),
            ));
        }
        let client = client.unwrap_or(caller);
        pairs.push((
            "consent".into(),
            RestrictedExpression::new_string(format!("{client}:{purpose}")),
        ));
    }
    Context::from_pairs(pairs).map_err(|e| ConsentError::Invalid(format!("context: {e}")))
}
