//! Evaluating a [`Filter`] against a SCIM resource held as JSON (RFC 7644
//! §3.4.2.2), for resources filtered in memory and for PATCH value filters.
//!
//! The rules, as RFC 7644 states them or as this crate reads them:
//!
//! - Attribute names match ignoring case; string values too, unless the
//!   [`Schema`] says the attribute is `caseExact`.
//! - A multi-valued attribute matches if any of its values matches; that
//!   holds for `ne` too (`emails.type ne "work"` matches a user with a work
//!   and a home address).
//! - `emails.value` looks into every element of `emails`; a comparison on a
//!   complex attribute without a sub-attribute (`emails co "@example.com"`)
//!   compares its `value` sub-attribute (RFC 7643 §2.4).
//! - `pr`: some value is neither null, `""`, `[]` nor `{}`. `eq null` is `not
//!   pr`, and `ne null` is `pr` (RFC 7643 §2.5: null is unassigned).
//! - Strings order lexicographically by code point (after lower-casing when
//!   not `caseExact`); two strings that are both xsd:dateTime compare as
//!   instants, for `eq` and `ne` too. Numbers compare numerically; booleans
//!   only by `eq`/`ne`. A comparison across JSON types never matches.
//! - An unassigned attribute matches nothing but `eq null`.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Number, Value};

use crate::datetime::parse_datetime;
use crate::filter::{AttrPath, CompValue, CompareOp, Filter};
use crate::schema::{DefaultSchema, Schema, Target, get_ci, resolve};

impl Filter {
    /// Whether the resource matches, with the RFC 7643 defaults for
    /// `caseExact` and schemas ([`DefaultSchema`]).
    pub fn matches(&self, resource: &Value) -> bool {
        self.matches_with(resource, &DefaultSchema)
    }

    /// Whether the resource matches, with the server's schema knowledge.
    pub fn matches_with(&self, resource: &Value, schema: &dyn Schema) -> bool {
        let evaluator = Evaluator { schema, resource };
        evaluator.eval(self, &Scope::Resource)
    }

    /// Whether one value of the multi-valued attribute `parent` matches: the
    /// filter of a value path (`emails[type eq "work"]`), whose paths name
    /// sub-attributes. `parent` is resolved (`urn` only for extensions).
    pub(crate) fn matches_element(
        &self,
        element: &Value,
        parent: &AttrPath,
        schema: &dyn Schema,
    ) -> bool {
        let evaluator = Evaluator {
            schema,
            resource: element,
        };
        evaluator.eval(self, &Scope::Element { element, parent })
    }
}

/// What the paths of a filter are relative to.
enum Scope<'a, 'p> {
    /// The resource: paths name attributes.
    Resource,
    /// One value of `parent`: paths name its sub-attributes.
    Element {
        element: &'a Value,
        parent: &'p AttrPath,
    },
}

struct Evaluator<'a> {
    schema: &'a dyn Schema,
    resource: &'a Value,
}

/// The values an attribute path selects, and the resolved path that decides
/// their case sensitivity.
struct Selected<'a> {
    values: Vec<&'a Value>,
    resolved: AttrPath,
}

impl<'a> Evaluator<'a> {
    fn eval(&self, filter: &Filter, scope: &Scope<'a, '_>) -> bool {
        match filter {
            Filter::And(..) => self.eval_chain(filter, scope, true),
            Filter::Or(..) => self.eval_chain(filter, scope, false),
            Filter::Not(inner) => !self.eval(inner, scope),
            Filter::Present(path) => self
                .select(path, scope, false)
                .values
                .into_iter()
                .any(is_present),
            Filter::Compare { path, op, value } => {
                let selected = self.select(path, scope, true);
                self.compare(&selected, *op, value)
            }
            Filter::ValuePath { path, filter } => self.eval_value_path(path, filter, scope),
        }
    }

    /// `a and b and c` is a left-deep tree as long as the filter: evaluate its
    /// operands in a loop rather than recursing once per term.
    fn eval_chain(&self, filter: &Filter, scope: &Scope<'a, '_>, is_and: bool) -> bool {
        let mut operands = filter.chain_operands().into_iter();
        if is_and {
            operands.all(|operand| self.eval(operand, scope))
        } else {
            operands.any(|operand| self.eval(operand, scope))
        }
    }

    fn eval_value_path(&self, path: &AttrPath, inner: &Filter, scope: &Scope<'a, '_>) -> bool {
        let selected = self.select(path, scope, false);
        let parent = &selected.resolved;
        selected.values.iter().copied().any(|element| {
            let element_scope = Scope::Element { element, parent };
            self.eval(inner, &element_scope)
        })
    }

    /// The values `path` selects, multi-valued attributes flattened. With
    /// `implicit_value`, a complex value stands for its `value` sub-attribute.
    fn select(&self, path: &AttrPath, scope: &Scope<'a, '_>, implicit_value: bool) -> Selected<'a> {
        let mut values = Vec::new();
        match scope {
            Scope::Resource => match resolve(path, self.resource, self.schema) {
                Target::WholeSchema { extension } => {
                    let schema_object = match extension {
                        None => Some(self.resource),
                        Some(urn) => member(self.resource, &urn),
                    };
                    values.extend(schema_object);
                    Selected {
                        values,
                        resolved: path.clone(),
                    }
                }
                Target::Attribute {
                    extension,
                    name,
                    sub,
                } => {
                    let container = match extension {
                        None => Some(self.resource),
                        Some(urn) => member(self.resource, urn),
                    };
                    let attribute = container.and_then(|container| member(container, name));
                    let mut resolved = AttrPath {
                        urn: extension.map(str::to_owned),
                        name: name.to_owned(),
                        sub: sub.map(str::to_owned),
                    };
                    if let Some(attribute) = attribute {
                        collect(attribute, sub, implicit_value, &mut values);
                        if implicit_value && sub.is_none() && is_complex(attribute) {
                            resolved.sub = Some("value".to_owned());
                        }
                    }
                    Selected { values, resolved }
                }
            },
            Scope::Element { element, parent } => {
                // `path.name` is a sub-attribute of `parent`.
                let resolved = AttrPath {
                    urn: parent.urn.clone(),
                    name: parent.name.clone(),
                    sub: Some(path.name.clone()),
                };
                match element {
                    Value::Object(members) => {
                        if let Some(found) = get_ci(members, &path.name) {
                            collect(found, path.sub.as_deref(), implicit_value, &mut values);
                        }
                    }
                    // Values of a multi-valued attribute of simple type are
                    // addressed as `value` (RFC 7643 §2.4).
                    simple if path.is_named("value") && path.sub.is_none() => values.push(simple),
                    _ => {}
                }
                Selected { values, resolved }
            }
        }
    }

    fn compare(&self, selected: &Selected<'_>, op: CompareOp, expected: &CompValue) -> bool {
        if let CompValue::Null = expected {
            let present = selected.values.iter().copied().any(is_present);
            return match op {
                CompareOp::Eq => !present,
                CompareOp::Ne => present,
                _ => false,
            };
        }
        let case_exact = matches!(expected, CompValue::String(_))
            && self.schema.is_case_exact(&selected.resolved);
        selected
            .values
            .iter()
            .any(|actual| compare_one(actual, op, expected, case_exact))
    }
}

fn member<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    match value {
        Value::Object(members) => get_ci(members, name),
        _ => None,
    }
}

fn is_complex(value: &Value) -> bool {
    match value {
        Value::Object(_) => true,
        Value::Array(items) => items.iter().any(Value::is_object),
        _ => false,
    }
}

fn collect<'v>(
    value: &'v Value,
    sub: Option<&str>,
    implicit_value: bool,
    out: &mut Vec<&'v Value>,
) {
    match value {
        Value::Array(items) => {
            for item in items {
                collect_one(item, sub, implicit_value, out);
            }
        }
        single => collect_one(single, sub, implicit_value, out),
    }
}

fn collect_one<'v>(
    value: &'v Value,
    sub: Option<&str>,
    implicit_value: bool,
    out: &mut Vec<&'v Value>,
) {
    match (value, sub) {
        (Value::Object(members), Some(sub)) => {
            if let Some(found) = get_ci(members, sub) {
                push_flattened(found, out);
            }
        }
        (Value::Object(members), None) if implicit_value => {
            if let Some(found) = get_ci(members, "value") {
                push_flattened(found, out);
            }
        }
        // Simple values have no sub-attributes.
        (_, Some(_)) => {}
        (other, None) => out.push(other),
    }
}

fn push_flattened<'v>(value: &'v Value, out: &mut Vec<&'v Value>) {
    match value {
        Value::Array(items) => out.extend(items),
        single => out.push(single),
    }
}

/// RFC 7644 `pr`: "a non-empty value, or ... a non-empty node for complex
/// attributes".
pub(crate) fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(members) => members.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn compare_one(actual: &Value, op: CompareOp, expected: &CompValue, case_exact: bool) -> bool {
    match (actual, expected) {
        (Value::String(actual), CompValue::String(expected)) => {
            compare_strings(actual, op, expected, case_exact)
        }
        (Value::Number(actual), CompValue::Number(expected)) => {
            compare_numbers(actual, expected).is_some_and(|order| order_satisfies(op, order))
        }
        (Value::Bool(actual), CompValue::Bool(expected)) => match op {
            CompareOp::Eq => actual == expected,
            CompareOp::Ne => actual != expected,
            _ => false,
        },
        _ => false,
    }
}

fn compare_strings(actual: &str, op: CompareOp, expected: &str, case_exact: bool) -> bool {
    if !op.is_substring()
        && let (Some(actual), Some(expected)) = (parse_datetime(actual), parse_datetime(expected))
    {
        return order_satisfies(op, actual.cmp(&expected));
    }
    let (actual, expected): (Cow<'_, str>, Cow<'_, str>) = if case_exact {
        (Cow::Borrowed(actual), Cow::Borrowed(expected))
    } else {
        (
            Cow::Owned(actual.to_lowercase()),
            Cow::Owned(expected.to_lowercase()),
        )
    };
    match op {
        CompareOp::Co => actual.contains(expected.as_ref()),
        CompareOp::Sw => actual.starts_with(expected.as_ref()),
        CompareOp::Ew => actual.ends_with(expected.as_ref()),
        _ => order_satisfies(op, actual.cmp(&expected)),
    }
}

/// Integers exactly (i64 and u64 both fit in i128), anything else as f64.
fn compare_numbers(actual: &Number, expected: &Number) -> Option<Ordering> {
    fn as_integer(number: &Number) -> Option<i128> {
        number
            .as_i64()
            .map(i128::from)
            .or_else(|| number.as_u64().map(i128::from))
    }
    if let (Some(actual), Some(expected)) = (as_integer(actual), as_integer(expected)) {
        return Some(actual.cmp(&expected));
    }
    actual.as_f64()?.partial_cmp(&expected.as_f64()?)
}

fn order_satisfies(op: CompareOp, order: Ordering) -> bool {
    match op {
        CompareOp::Eq => order == Ordering::Equal,
        CompareOp::Ne => order != Ordering::Equal,
        CompareOp::Gt => order == Ordering::Greater,
        CompareOp::Ge => order != Ordering::Less,
        CompareOp::Lt => order == Ordering::Less,
        CompareOp::Le => order != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}
