//! The OpenID AuthZEN Authorization API 1.0 information model: what a policy
//! enforcement point sends (§5–§7) and what the PDP answers. Parsing is strict
//! about the required members and their types, lenient about unknown ones (the spec
//! lets requests carry extensions).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ConsentError;

/// Longest `type`, `id` or action `name` accepted; longer is a malformed request.
const MAX_NAME: usize = 512;

/// A subject (§5.1) or a resource (§5.2): the two have the same members, a `type`, an
/// `id` and optional properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

/// Who asks (§5.1).
pub type Subject = Entity;

/// What is asked about (§5.2).
pub type Resource = Entity;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub name: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub properties: Map<String, Value>,
}

/// One access evaluation (§6.1): subject, action and resource are required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRequest {
    pub subject: Subject,
    pub action: Action,
    pub resource: Resource,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub context: Map<String, Value>,
}

/// An entry of a batch: any member it leaves out comes from the request's top level.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialEvaluation {
    #[serde(default)]
    pub subject: Option<Subject>,
    #[serde(default)]
    pub action: Option<Action>,
    #[serde(default)]
    pub resource: Option<Resource>,
    #[serde(default)]
    pub context: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvaluationsSemantic {
    #[default]
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationsOptions {
    #[serde(default)]
    pub evaluations_semantic: EvaluationsSemantic,
}

/// A batch (§7.1): top-level members are defaults for every entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationsRequest {
    #[serde(flatten)]
    pub defaults: PartialEvaluation,
    #[serde(default)]
    pub evaluations: Option<Vec<PartialEvaluation>>,
    #[serde(default)]
    pub options: Option<EvaluationsOptions>,
}

fn check_name(what: &str, value: &str) -> Result<(), ConsentError> {
    if value.is_empty() {
        return Err(ConsentError::Invalid(format!("{what} must not be empty")));
    }
    if value.len() > MAX_NAME {
        return Err(ConsentError::Invalid(format!("{what} is too long")));
    }
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ConsentError> {
    serde_json::from_slice(body)
        .map_err(|e| ConsentError::Invalid(format!("malformed request: {e}")))
}

impl EvaluationRequest {
    /// Parses and checks a single evaluation request body.
    pub fn from_json(body: &[u8]) -> Result<Self, ConsentError> {
        let request: EvaluationRequest = parse(body)?;
        request.check()?;
        Ok(request)
    }

    pub fn check(&self) -> Result<(), ConsentError> {
        check_name("subject.type", &self.subject.kind)?;
        check_name("subject.id", &self.subject.id)?;
        check_name("resource.type", &self.resource.kind)?;
        check_name("resource.id", &self.resource.id)?;
        check_name("action.name", &self.action.name)
    }
}

impl EvaluationsRequest {
    pub fn from_json(body: &[u8]) -> Result<Self, ConsentError> {
        parse(body)
    }

    pub fn semantic(&self) -> EvaluationsSemantic {
        self.options
            .as_ref()
            .map(|o| o.evaluations_semantic)
            .unwrap_or_default()
    }

    /// Entry `entry` completed from the defaults (§7.1.1: an entry's member replaces
    /// the default one as a whole), or why it cannot be evaluated.
    pub fn resolve(&self, entry: &PartialEvaluation) -> Result<EvaluationRequest, ConsentError> {
        fn required<T: Clone>(
            entry: &Option<T>,
            default: &Option<T>,
            what: &str,
        ) -> Result<T, ConsentError> {
            entry
                .as_ref()
                .or(default.as_ref())
                .cloned()
                .ok_or_else(|| ConsentError::Invalid(format!("{what} is required")))
        }
        let defaults = &self.defaults;
        let request = EvaluationRequest {
            subject: required(&entry.subject, &defaults.subject, "subject")?,
            action: required(&entry.action, &defaults.action, "action")?,
            resource: required(&entry.resource, &defaults.resource, "resource")?,
            context: entry
                .context
                .as_ref()
                .or(defaults.context.as_ref())
                .cloned()
                .unwrap_or_default(),
        };
        request.check()?;
        Ok(request)
    }
}
