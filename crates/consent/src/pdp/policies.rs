//! Compiling policy sets: parse, give each policy its `@id`, validate against the
//! Gatehouse schema, and read the reason annotations that turn a Cedar denial into
//! an AuthZEN reason code.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Effect, EntityUid, Policy, PolicyId, PolicySet, Response, Schema,
    ValidationMode, Validator,
};
use serde_json::Value;

use miette::Diagnostic;

use crate::ConsentError;

pub const SCHEMA_TEXT: &str = include_str!("../../policies/schema.cedarschema");
pub const DEFAULT_POLICIES: &str = include_str!("../../policies/default.cedar");

/// Reason codes the PDP reports in the decision context.
pub mod reason {
    /// The action is governed by a purpose (a forbid policy with this reason says
    /// so, e.g. `unless { context has consent }`) and the request named none.
    pub const PURPOSE_MISSING: &str = "purpose_missing";
    pub const CONSENT_WITHDRAWN: &str = "consent_withdrawn";
    pub const INSUFFICIENT_AUTHENTICATION: &str = "insufficient_authentication";
    pub const ENTITLEMENT_MISSING: &str = "entitlement_missing";
    pub const RISK_TOO_HIGH: &str = "risk_too_high";
    /// A forbid policy without `@reason` decided.
    pub const DENIED_BY_POLICY: &str = "denied_by_policy";
    /// The subject is not a user of this tenant.
    pub const UNKNOWN_SUBJECT: &str = "unknown_subject";
}

pub fn schema() -> Result<Schema, ConsentError> {
    let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA_TEXT)
        .map_err(|e| ConsentError::Internal(format!("built-in Cedar schema: {e}")))?;
    Ok(schema)
}

/// Parses `text`, renames policies after their `@id` annotations and validates the
/// set in strict mode. The error carries every parser or validator message.
pub fn compile(schema: &Schema, text: &str) -> Result<PolicySet, ConsentError> {
    let parsed = PolicySet::from_str(text)
        .map_err(|e| ConsentError::Policy(format!("parse error: {}", render(&e))))?;
    if parsed.templates().next().is_some() {
        return Err(ConsentError::Policy(
            "templates are not supported; write plain policies".into(),
        ));
    }
    let mut named = PolicySet::new();
    for policy in parsed.policies() {
        let policy = match policy.annotation("id") {
            Some(id) if id.trim().is_empty() => {
                return Err(ConsentError::Policy("an @id annotation is empty".into()));
            }
            Some(id) => policy.new_id(PolicyId::new(id)),
            None => policy.clone(),
        };
        let id = policy.id().clone();
        named
            .add(policy)
            .map_err(|_| ConsentError::Policy(format!("policy id `{id}` is used twice")))?;
    }
    let result = Validator::new(schema.clone()).validate(&named, ValidationMode::Strict);
    if !result.validation_passed() {
        // One line: it reaches operators as the CLI's single error line.
        let mut message = String::from("validation failed");
        for (index, error) in result.validation_errors().enumerate() {
            let _ = write!(
                message,
                "{} {}",
                if index == 0 { ":" } else { ";" },
                render(error)
            );
        }
        return Err(ConsentError::Policy(message));
    }
    Ok(named)
}

/// A diagnostic with its help text and related errors, on one line.
fn render(error: &dyn Diagnostic) -> String {
    let mut text = error.to_string();
    for inner in error.related().into_iter().flatten() {
        text.push_str("; ");
        text.push_str(&render(inner));
    }
    if let Some(help) = error.help() {
        text.push_str(" (");
        text.push_str(&help.to_string());
        text.push(')');
    }
    text
}

/// Where a denial comes from, with what the PEP should do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    pub reason: Option<String>,
    pub acr_values: Option<String>,
    pub max_age: Option<i64>,
    pub policies: Vec<String>,
}

/// Which reason wins when several forbid policies apply: first the PEP's own
/// mistake (no purpose: nothing else can be judged), then what stepping up cannot
/// cure, so a PEP is never sent to re-authenticate for nothing.
fn rank(reason: &str) -> u8 {
    match reason {
        reason::PURPOSE_MISSING => 0,
        reason::CONSENT_WITHDRAWN => 1,
        reason::RISK_TOO_HIGH => 2,
        reason::ENTITLEMENT_MISSING => 3,
        reason::INSUFFICIENT_AUTHENTICATION => 5,
        _ => 4,
    }
}

/// What the PDP reads from a policy's annotations, read once when the set is
/// loaded: `Policy::annotation` runs Cedar's identifier parser (with a fresh lexer)
/// on every call, which cost 4 % of a busy node's CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    pub forbid: bool,
    pub reason: Option<String>,
    pub acr_values: Option<String>,
    pub max_age: Option<i64>,
}

/// The [`Notes`] of every policy of `set`.
pub fn notes(set: &PolicySet) -> HashMap<PolicyId, Notes> {
    set.policies()
        .map(|policy| {
            let note = |key: &str| policy.annotation(key).map(str::to_owned);
            (
                policy.id().clone(),
                Notes {
                    forbid: policy.effect() == Effect::Forbid,
                    reason: note("reason"),
                    acr_values: note("acr_values"),
                    max_age: note("max_age").and_then(|v| v.parse().ok()),
                },
            )
        })
        .collect()
}

pub fn outcome(notes: &HashMap<PolicyId, Notes>, response: &Response) -> Outcome {
    let policies: Vec<String> = response
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    if response.decision() == cedar_policy::Decision::Allow {
        return Outcome {
            allowed: true,
            reason: None,
            acr_values: None,
            max_age: None,
            policies,
        };
    }
    let determining = || {
        response
            .diagnostics()
            .reason()
            .filter_map(|id| notes.get(id))
    };
    let mut best: Option<&str> = None;
    for note in determining().filter(|note| note.forbid) {
        let code = note.reason.as_deref().unwrap_or(reason::DENIED_BY_POLICY);
        if best.is_none_or(|current| rank(code) < rank(current)) {
            best = Some(code);
        }
    }
    let Some(code) = best else {
        return Outcome {
            allowed: false,
            reason: Some(reason::ENTITLEMENT_MISSING.to_owned()),
            acr_values: None,
            max_age: None,
            policies,
        };
    };
    let (acr_values, max_age) = if code == reason::INSUFFICIENT_AUTHENTICATION {
        // Several step-up policies may apply: ask for the strongest level any names
        // (our acr URNs sort by level) and the shortest age.
        let mut acr: Option<&str> = None;
        let mut age: Option<i64> = None;
        for note in determining()
            .filter(|note| note.reason.as_deref() == Some(reason::INSUFFICIENT_AUTHENTICATION))
        {
            if let Some(value) = note.acr_values.as_deref() {
                acr = Some(acr.map_or(value, |current| current.max(value)));
            }
            if let Some(value) = note.max_age {
                age = Some(age.map_or(value, |current: i64| current.min(value)));
            }
        }
        (acr.map(str::to_owned), age)
    } else {
        (None, None)
    };
    Outcome {
        allowed: false,
        reason: Some(code.to_owned()),
        acr_values,
        max_age,
        policies,
    }
}

/// The policies that can apply to one action, sliced again by resource type.
#[derive(Debug, Clone)]
pub struct ActionSlice {
    /// The action's policies whose conditions name no resource type.
    any_type: PolicySet,
    /// Per resource type some condition names: `any_type` and the policies whose
    /// conditions can hold for that type.
    by_type: HashMap<String, PolicySet>,
}

impl ActionSlice {
    /// The policies that can apply to a resource of type `kind`.
    pub fn for_type(&self, kind: &str) -> &PolicySet {
        self.by_type.get(kind).unwrap_or(&self.any_type)
    }

    #[cfg(test)]
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }
}

/// One [`ActionSlice`] per action the schema declares, holding only the policies
/// whose action scope can match that action, keyed by the action's id (`read`, …),
/// and within it only those whose conditions can hold for the resource's type.
///
/// Cedar checks every policy of the set it is given; most of a realistic set names
/// other actions or other resource types, so a slice gives the same answer for less
/// work. A policy goes into an action's slice when its scope is unconstrained,
/// equals the action, or is `in` a list naming the action or any of the action's
/// groups in the schema. That is a superset of the policies that can match (the PDP
/// passes no action entities, so at evaluation `in` matches only the action
/// itself). By type, a policy is left out only where its `when` conditions require
/// `resource.type` to be one of some strings (see [`required_types`]) that do not
/// include the type: such a policy cannot be satisfied, so leaving it out changes
/// neither the decision nor the determining policies. Actions the schema does not
/// declare have no slice and are evaluated against the whole set.
pub fn slices(
    schema: &Schema,
    set: &PolicySet,
) -> Result<HashMap<String, ActionSlice>, ConsentError> {
    let hierarchy = schema
        .action_entities()
        .map_err(|e| ConsentError::Internal(format!("schema actions: {e}")))?;
    let typed: Vec<(&Policy, Option<BTreeSet<String>>)> = set
        .policies()
        .map(|policy| (policy, required_types(policy)))
        .collect();
    let add = |slice: &mut PolicySet, policy: &Policy| {
        slice
            .add(policy.clone())
            .map_err(|e| ConsentError::Internal(format!("policy slice: {e}")))
    };
    let mut out = HashMap::new();
    for action in schema.actions() {
        // The action itself and every group it belongs to, per the schema.
        let mut names: Vec<&EntityUid> = vec![action];
        if let Some(groups) = hierarchy.ancestors(action) {
            names.extend(groups);
        }
        let applying: Vec<&(&Policy, Option<BTreeSet<String>>)> = typed
            .iter()
            .filter(|(policy, _)| match policy.action_constraint() {
                ActionConstraint::Any => true,
                ActionConstraint::Eq(uid) => uid == *action,
                ActionConstraint::In(list) => list.iter().any(|uid| names.contains(&uid)),
            })
            .collect();
        let mut any_type = PolicySet::new();
        let mut kinds = BTreeSet::new();
        for (policy, types) in &applying {
            match types {
                None => add(&mut any_type, policy)?,
                Some(types) => kinds.extend(types.iter().cloned()),
            }
        }
        let mut by_type = HashMap::new();
        for kind in kinds {
            let mut slice = PolicySet::new();
            for (policy, types) in &applying {
                if types.as_ref().is_none_or(|types| types.contains(&kind)) {
                    add(&mut slice, policy)?;
                }
            }
            by_type.insert(kind, slice);
        }
        out.insert(
            action.id().unescaped().to_owned(),
            ActionSlice { any_type, by_type },
        );
    }
    Ok(out)
}

/// The resource types for which `policy` can be satisfied, when its `when`
/// conditions say so: `resource.type == "…"` (either way round), joined by `&&`
/// (both must hold: the intersection) or `||` (either: the union). `None`: any type.
///
/// Read from the policy's JSON form, where those appear as
/// `{"==": {"left": {".": {"left": {"Var": "resource"}, "attr": "type"}}, "right": {"Value": "…"}}}`.
/// Anything not understood counts as "any type", so the analysis can only keep
/// policies in, never leave one out wrongly.
pub fn required_types(policy: &Policy) -> Option<BTreeSet<String>> {
    let json = policy.to_json().ok()?;
    let mut required: Option<BTreeSet<String>> = None;
    for condition in json.get("conditions")?.as_array()? {
        if condition.get("kind").and_then(Value::as_str) != Some("when") {
            continue;
        }
        if let Some(types) = condition.get("body").and_then(types_of) {
            required = Some(match required {
                None => types,
                Some(known) => known.intersection(&types).cloned().collect(),
            });
        }
    }
    required
}

fn types_of(expr: &Value) -> Option<BTreeSet<String>> {
    let (op, operands) = expr.as_object()?.iter().next()?;
    let left = operands.get("left");
    let right = operands.get("right");
    match op.as_str() {
        "==" => {
            let (left, right) = (left?, right?);
            let literal = |v: &Value| v.get("Value").and_then(Value::as_str).map(str::to_owned);
            let kind = if is_resource_type(left) {
                literal(right)?
            } else if is_resource_type(right) {
                literal(left)?
            } else {
                return None;
            };
            Some(BTreeSet::from([kind]))
        }
        "&&" => match (left.and_then(types_of), right.and_then(types_of)) {
            (Some(a), Some(b)) => Some(a.intersection(&b).cloned().collect()),
            (Some(one), None) | (None, Some(one)) => Some(one),
            (None, None) => None,
        },
        "||" => {
            let (a, b) = (left.and_then(types_of)?, right.and_then(types_of)?);
            Some(a.union(&b).cloned().collect())
        }
        _ => None,
    }
}

/// `resource.type`
fn is_resource_type(expr: &Value) -> bool {
    expr.get(".").is_some_and(|access| {
        access.get("attr").and_then(Value::as_str) == Some("type")
            && access
                .get("left")
                .and_then(|l| l.get("Var"))
                .and_then(Value::as_str)
                == Some("resource")
    })
}
