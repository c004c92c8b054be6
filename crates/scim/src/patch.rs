//! PATCH (RFC 7644 §3.5.2): the request body and its application to a
//! resource held as JSON.
//!
//! [`apply_patch`] works on a copy and writes it back only if every operation
//! succeeds: RFC 7644 §3.5.2 makes a PATCH request atomic. What it does per
//! operation:
//!
//! | operation | target | effect |
//! |---|---|---|
//! | add, no `path` | resource | each member of `value` is added at its name |
//! | add | unassigned attribute | set to `value` |
//! | add | multi-valued attribute | `value` (one or an array) appended; a value equal to one present is merged into it instead |
//! | add | complex attribute | `value`'s sub-attributes set, others kept |
//! | add | single-valued attribute | replaced |
//! | add | `attr[filter]`, `attr[filter].sub` | matching values updated; none matching: see below |
//! | replace, no `path` | resource | each member of `value` replaced at its name |
//! | replace | complex attribute | `value`'s sub-attributes set, others kept (§3.5.2.3) |
//! | replace | any other attribute | replaced (multi-valued: all values); unassigned: added |
//! | replace | `attr[filter]`, `attr[filter].sub` | matching values (or their sub-attribute) replaced; none matching: `noTarget` |
//! | remove, no `path` | — | `noTarget` (§3.5.2.2) |
//! | remove | attribute | removed (unassigned: nothing to do) |
//! | remove | `attr[filter]` | matching values removed; none matching: nothing to do |
//! | remove | `attr[filter].sub` | the sub-attribute removed from matching values |
//!
//! A `null` value means unassigned (RFC 7643 §2.5): replacing with `null`
//! removes, and `null` members of a complex value remove those
//! sub-attributes. Setting `primary` to `true` on one value of a multi-valued
//! attribute sets it to `false` on the others (RFC 7643 §2.4). An empty
//! multi-valued or complex attribute left by a removal is removed, and so is
//! an empty extension object, with its URN taken out of `schemas`; writing to
//! an extension adds its object and lists its URN in `schemas` (RFC 7643 §3).
//!
//! Interpretations where RFC 7644 is silent or loose:
//!
//! - `add` with a value filter that matches nothing adds a new value when the
//!   filter is `eq` comparisons joined by `and` (`emails[type eq "work"].value`
//!   adds `{"type": "work", "value": …}`), which is what Microsoft Entra ID
//!   expects (RFC 7644 erratum 8097); otherwise it is `noTarget`.
//! - `remove` with a value filter that matches nothing succeeds without
//!   change, so that repeating a removal (a client retrying) is harmless.
//!   §3.12 could be read as asking `noTarget`; §3.5.2.2 does not list it.
//! - `remove` of a multi-valued attribute with a `value` (Entra ID sends
//!   `{"op": "remove", "path": "members", "value": [{"value": "…"}]}`) removes
//!   only the listed values rather than all of them.
//! - Two values of a multi-valued attribute are "equal" for `add` when their
//!   `value` sub-attributes are equal (and their `type`s, if both have one);
//!   values without `value` must be equal as JSON.
//! - A sub-attribute of a multi-valued attribute without a filter
//!   (`emails.value`) is `invalidPath`: which values are meant is unclear.
//!
//! The crate knows nothing of mutability: [`PatchOutcome::touched`] lists the
//! attributes each operation aimed at, for the server to refuse changes to
//! read-only or immutable ones (`mutability`), and the server validates the
//! patched resource against its schema.

use std::fmt;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::{AttrPath, CompValue, CompareOp, Filter, parse_attr_path};
use crate::path::{PatchPath, parse_patch_path};
use crate::schema::{DefaultSchema, Schema, Target, get_ci, key_ci, resolve};

/// URN of the PATCH request message (RFC 7644 §3.5.2).
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The `op` of a PATCH operation; parsed case-insensitively (clients send
/// `Add`, `Replace`, `Remove` as well).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchOpKind {
    /// `add`.
    Add,
    /// `replace`.
    Replace,
    /// `remove`.
    Remove,
}

impl PatchOpKind {
    /// The canonical (lower-case) keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Replace => "replace",
            PatchOpKind::Remove => "remove",
        }
    }

    /// The operation for a keyword, compared case-insensitively.
    pub fn from_keyword(keyword: &str) -> Option<Self> {
        [PatchOpKind::Add, PatchOpKind::Replace, PatchOpKind::Remove]
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(keyword))
    }
}

impl fmt::Display for PatchOpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One PATCH operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    /// What to do.
    pub op: PatchOpKind,
    /// Where; `None` means the resource itself.
    pub path: Option<PatchPath>,
    /// The value; required for `add` and `replace`. `Some(Value::Null)` when
    /// the client sent `null`.
    pub value: Option<Value>,
}

impl PatchOp {
    /// Reads one member of `Operations`. Member names are matched ignoring
    /// case, as SCIM attribute names are. Errors: `invalidSyntax` for the
    /// shape, `invalidPath` for the path.
    pub fn from_json(operation: &Value) -> Result<Self, ScimError> {
        let Value::Object(members) = operation else {
            return Err(ScimError::invalid_syntax(
                "an operation must be a JSON object",
            ));
        };
        let op = match get_ci(members, "op") {
            Some(Value::String(keyword)) => {
                PatchOpKind::from_keyword(keyword).ok_or_else(|| {
                    ScimError::invalid_syntax(format!(
                        "unknown op `{keyword}`; expected add, replace or remove"
                    ))
                })?
            }
            Some(_) => return Err(ScimError::invalid_syntax("`op` must be a string")),
            None => return Err(ScimError::invalid_syntax("the operation has no `op`")),
        };
        let path = match get_ci(members, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(path)) => Some(parse_patch_path(path)?),
            Some(_) => return Err(ScimError::invalid_path("`path` must be a string")),
        };
        Ok(Self {
            op,
            path,
            value: get_ci(members, "value").cloned(),
        })
    }
}

impl<'de> Deserialize<'de> for PatchOp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let operation = Value::deserialize(deserializer)?;
        Self::from_json(&operation).map_err(serde::de::Error::custom)
    }
}

/// A PATCH request body:
/// `{"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [...]}`.
///
/// Prefer [`PatchRequest::from_slice`] / [`PatchRequest::from_json`] to serde:
/// they keep the `scimType` of what went wrong, where `Deserialize` can only
/// give a message.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    /// The operations, in order.
    pub operations: Vec<PatchOp>,
}

impl PatchRequest {
    /// Reads a request body. Errors: `invalidSyntax` for a body that is not
    /// JSON or not a PatchOp message, and as [`PatchOp::from_json`].
    pub fn from_slice(body: &[u8]) -> Result<Self, ScimError> {
        let body: Value = serde_json::from_slice(body)
            .map_err(|error| ScimError::invalid_syntax(format!("the body is not JSON: {error}")))?;
        Self::from_json(&body)
    }

    /// Reads a request body already parsed as JSON.
    pub fn from_json(body: &Value) -> Result<Self, ScimError> {
        let Value::Object(members) = body else {
            return Err(ScimError::invalid_syntax(
                "a PATCH body must be a JSON object",
            ));
        };
        let lists_patch_schema = get_ci(members, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|schemas| {
                schemas
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|schema| schema.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
            });
        if !lists_patch_schema {
            return Err(ScimError::invalid_syntax(format!(
                "`schemas` must list {PATCH_OP_SCHEMA}"
            )));
        }
        let operations = match get_ci(members, "Operations") {
            Some(Value::Array(operations)) if !operations.is_empty() => operations,
            Some(Value::Array(_)) => {
                return Err(ScimError::invalid_syntax(
                    "`Operations` is empty; a PATCH request needs at least one",
                ));
            }
            _ => {
                return Err(ScimError::invalid_syntax(
                    "a PATCH body needs an `Operations` array",
                ));
            }
        };
        let operations = operations
            .iter()
            .enumerate()
            .map(|(index, operation)| {
                PatchOp::from_json(operation)
                    .map_err(|error| error.prefixed(&format!("Operations[{index}]: ")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { operations })
    }
}

impl<'de> Deserialize<'de> for PatchRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let body = Value::deserialize(deserializer)?;
        Self::from_json(&body).map_err(serde::de::Error::custom)
    }
}

/// What a successful PATCH did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatchOutcome {
    /// The top-level attributes the operations aimed at, each once, whether or
    /// not its value changed: `urn` is the extension's URN (`None` for the
    /// core schema), `sub` is always `None`. Compare with
    /// [`AttrPath::eq_ignore_ascii_case`] to refuse read-only attributes.
    pub touched: Vec<AttrPath>,
    /// Whether the resource differs from before.
    pub changed: bool,
}

/// Applies PATCH operations with the RFC 7643 defaults ([`DefaultSchema`]).
/// See the [module documentation](self) for the semantics.
pub fn apply_patch(resource: &mut Value, ops: &[PatchOp]) -> Result<PatchOutcome, ScimError> {
    apply_patch_with(resource, ops, &DefaultSchema)
}

/// Applies PATCH operations, all or none: on error `resource` is unchanged
/// and the error's detail starts with `Operations[i]: `.
pub fn apply_patch_with(
    resource: &mut Value,
    ops: &[PatchOp],
    schema: &dyn Schema,
) -> Result<PatchOutcome, ScimError> {
    if !resource.is_object() {
        return Err(not_an_object());
    }
    let mut patched = resource.clone();
    let mut touched = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        let mut patcher = Patcher {
            resource: &mut patched,
            schema,
            touched: &mut touched,
        };
        patcher
            .apply(op)
            .map_err(|error| error.prefixed(&format!("Operations[{index}]: ")))?;
    }
    let changed = patched != *resource;
    *resource = patched;
    Ok(PatchOutcome { touched, changed })
}

fn not_an_object() -> ScimError {
    ScimError::new(500, None, "the resource to patch is not a JSON object")
}

/// An operation reduced to its effect.
#[derive(Clone, Copy)]
enum Action<'v> {
    Add(&'v Value),
    Replace(&'v Value),
    /// `listed`: remove only these values of a multi-valued attribute.
    Remove {
        listed: Option<&'v Value>,
    },
}

impl<'v> Action<'v> {
    fn new(kind: PatchOpKind, value: Option<&'v Value>) -> Result<Self, ScimError> {
        match (kind, value) {
            (PatchOpKind::Add, None | Some(Value::Null)) => Err(ScimError::invalid_value(
                "`add` needs a `value` that is not null",
            )),
            (PatchOpKind::Add, Some(value)) => Ok(Action::Add(value)),
            (PatchOpKind::Replace, None) => {
                Err(ScimError::invalid_value("`replace` needs a `value`"))
            }
            // RFC 7643 §2.5: null is unassigned.
            (PatchOpKind::Replace, Some(Value::Null)) => Ok(Action::Remove { listed: None }),
            (PatchOpKind::Replace, Some(value)) => Ok(Action::Replace(value)),
            (PatchOpKind::Remove, listed) => Ok(Action::Remove {
                listed: listed.filter(|listed| !listed.is_null()),
            }),
        }
    }

    /// The action for one member of an object value (no path, or a whole
    /// extension): a `null` member adds nothing.
    fn for_member(kind: PatchOpKind, value: &'v Value) -> Option<Self> {
        match (kind, value) {
            (PatchOpKind::Add, Value::Null) => None,
            (PatchOpKind::Add, value) => Some(Action::Add(value)),
            (_, Value::Null) => Some(Action::Remove { listed: None }),
            (_, value) => Some(Action::Replace(value)),
        }
    }

    fn kind(self) -> PatchOpKind {
        match self {
            Action::Add(_) => PatchOpKind::Add,
            Action::Replace(_) => PatchOpKind::Replace,
            Action::Remove { .. } => PatchOpKind::Remove,
        }
    }
}

struct Patcher<'a> {
    resource: &'a mut Value,
    schema: &'a dyn Schema,
    touched: &'a mut Vec<AttrPath>,
}

impl Patcher<'_> {
    fn apply(&mut self, op: &PatchOp) -> Result<(), ScimError> {
        match &op.path {
            None if op.op == PatchOpKind::Remove => Err(ScimError::no_target(
                "`remove` needs a `path` (RFC 7644 §3.5.2.2)",
            )),
            None => match Action::new(op.op, op.value.as_ref())? {
                Action::Add(value) | Action::Replace(value) => self.apply_to_resource(op.op, value),
                Action::Remove { .. } => Err(ScimError::invalid_value(
                    "without a `path`, `value` must be an object of attributes",
                )),
            },
            Some(PatchPath::Attribute(attr)) => {
                let action = Action::new(op.op, op.value.as_ref())?;
                self.apply_to_path(action, attr)
            }
            Some(PatchPath::Filtered {
                attr,
                filter,
                sub_attr,
            }) => {
                let action = Action::new(op.op, op.value.as_ref())?;
                self.apply_to_filtered(action, attr, filter, sub_attr.as_deref())
            }
        }
    }

    /// No path: `value` is an object of attributes, each applied at its name.
    /// Names may be paths (`name.givenName`, `urn:…:User:manager`) or a whole
    /// extension's URN with an object of its attributes.
    fn apply_to_resource(&mut self, kind: PatchOpKind, value: &Value) -> Result<(), ScimError> {
        let Value::Object(attributes) = value else {
            return Err(ScimError::invalid_value(
                "without a `path`, `value` must be an object of attributes",
            ));
        };
        for (name, member) in attributes {
            let path = parse_attr_path(name).map_err(|error| {
                ScimError::invalid_path(format!("`value` member `{name}`: {}", error.detail))
            })?;
            if let Some(action) = Action::for_member(kind, member) {
                self.apply_to_path(action, &path)?;
            }
        }
        Ok(())
    }

    fn apply_to_path(&mut self, action: Action<'_>, attr: &AttrPath) -> Result<(), ScimError> {
        match resolve(attr, self.resource, self.schema) {
            Target::WholeSchema { extension: None } => match action {
                Action::Add(value) | Action::Replace(value) => {
                    self.apply_to_resource(action.kind(), value)
                }
                Action::Remove { .. } => Err(ScimError::invalid_path(format!(
                    "`{attr}` is the core schema; remove its attributes one by one"
                ))),
            },
            Target::WholeSchema {
                extension: Some(urn),
            } => self.apply_to_extension(action, &urn),
            Target::Attribute {
                extension,
                name,
                sub,
            } => self.apply_to_attribute(action, extension, name, sub),
        }
    }

    /// A whole extension object: `path` is its URN.
    fn apply_to_extension(&mut self, action: Action<'_>, urn: &str) -> Result<(), ScimError> {
        match action {
            Action::Add(value) | Action::Replace(value) => {
                let Value::Object(attributes) = value else {
                    return Err(ScimError::invalid_value(format!(
                        "the value for `{urn}` must be an object of its attributes"
                    )));
                };
                for (name, member) in attributes {
                    if let Some(action) = Action::for_member(action.kind(), member) {
                        self.apply_to_attribute(action, Some(urn), name, None)?;
                    }
                }
                Ok(())
            }
            Action::Remove { .. } => {
                let root = root_mut(self.resource)?;
                if let Some(key) = key_ci(root, urn) {
                    if let Some(Value::Object(attributes)) = root.get(&key) {
                        for name in attributes.keys() {
                            record(self.touched, Some(urn), name);
                        }
                    }
                    root.remove(&key);
                }
                unlist_schema(root, urn);
                Ok(())
            }
        }
    }

    /// An attribute or `attribute.sub`, no filter.
    fn apply_to_attribute(
        &mut self,
        action: Action<'_>,
        extension: Option<&str>,
        name: &str,
        sub: Option<&str>,
    ) -> Result<(), ScimError> {
        let schema = self.schema;
        let attr = resolved(extension, name, None);
        let spelling = schema
            .canonical_name(&attr)
            .unwrap_or_else(|| name.to_owned());
        record(self.touched, extension, &spelling);
        let value_case_exact = schema.is_case_exact(&resolved(extension, name, Some("value")));

        let value = match action {
            Action::Add(value) | Action::Replace(value) => value,
            Action::Remove { listed } => {
                self.remove_attribute(extension, name, sub, listed, value_case_exact)?;
                return self.tidy_extension(extension);
            }
        };
        let is_add = matches!(action, Action::Add(_));
        let container = self
            .container_mut(extension, true)?
            .ok_or_else(not_an_object)?;
        let Some(sub) = sub else {
            let value = canonical_members(schema, &attr, value.clone());
            let (slot, written) = match key_ci(container, name) {
                None => {
                    let slot = container.entry(spelling).or_insert(without_nulls(value));
                    let written = all_indices(slot);
                    (slot, written)
                }
                Some(key) => {
                    let slot = container.entry(key).or_insert(Value::Null);
                    let written = if is_add {
                        add_into(slot, value, value_case_exact)
                    } else {
                        replace_into(slot, value)
                    };
                    (slot, written)
                }
            };
            return settle_primary(slot, &written);
        };

        let sub_spelling = canonical_sub(schema, &attr, sub);
        let parent_key = key_ci(container, name).unwrap_or(spelling);
        let parent = container.entry(parent_key).or_insert(Value::Null);
        match parent {
            Value::Null => {
                let mut members = Map::new();
                members.insert(sub_spelling, value.clone());
                *parent = Value::Object(members);
                Ok(())
            }
            Value::Object(members) => {
                set_member(
                    members,
                    sub_spelling,
                    value.clone(),
                    is_add,
                    value_case_exact,
                );
                Ok(())
            }
            Value::Array(_) => Err(multi_valued_needs_filter(name, sub)),
            _ => Err(not_complex(name)),
        }
    }

    fn remove_attribute(
        &mut self,
        extension: Option<&str>,
        name: &str,
        sub: Option<&str>,
        listed: Option<&Value>,
        value_case_exact: bool,
    ) -> Result<(), ScimError> {
        let Some(container) = self.container_mut(extension, false)? else {
            return Ok(());
        };
        let Some(key) = key_ci(container, name) else {
            return Ok(());
        };
        match (sub, container.get_mut(&key), listed) {
            (None, Some(Value::Array(items)), Some(listed)) => {
                let listed: &[Value] = match listed {
                    Value::Array(listed) => listed,
                    single => std::slice::from_ref(single),
                };
                items.retain(|item| {
                    !listed
                        .iter()
                        .any(|listed| same_value(item, listed, value_case_exact))
                });
                if items.is_empty() {
                    container.remove(&key);
                }
            }
            (None, _, _) => {
                container.remove(&key);
            }
            (Some(sub), Some(Value::Object(members)), _) => {
                if let Some(sub_key) = key_ci(members, sub) {
                    members.remove(&sub_key);
                }
                if members.is_empty() {
                    container.remove(&key);
                }
            }
            (Some(_), Some(Value::Null) | None, _) => {}
            (Some(sub), Some(Value::Array(_)), _) => {
                return Err(multi_valued_needs_filter(name, sub));
            }
            (Some(_), Some(_), _) => return Err(not_complex(name)),
        }
        Ok(())
    }

    /// `attr[filter]` or `attr[filter].sub`.
    fn apply_to_filtered(
        &mut self,
        action: Action<'_>,
        attr: &AttrPath,
        filter: &Filter,
        sub: Option<&str>,
    ) -> Result<(), ScimError> {
        let schema = self.schema;
        let (extension, name) = match resolve(attr, self.resource, schema) {
            Target::Attribute {
                extension,
                name,
                sub: None,
            } => (extension, name),
            _ => {
                return Err(ScimError::invalid_path(format!(
                    "a value filter needs a multi-valued attribute; `{attr}` is not one"
                )));
            }
        };
        let parent = resolved(extension, name, None);
        let spelling = schema
            .canonical_name(&parent)
            .unwrap_or_else(|| name.to_owned());
        record(self.touched, extension, &spelling);
        let value_case_exact = schema.is_case_exact(&resolved(extension, name, Some("value")));

        let creates = matches!(action, Action::Add(_));
        let Some(container) = self.container_mut(extension, creates)? else {
            // Remove from an extension the resource does not have.
            return Ok(());
        };
        let key = key_ci(container, name);
        let matched: Vec<usize> = match key.as_ref().and_then(|key| container.get(key)) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter(|(_, item)| filter.matches_element(item, &parent, schema))
                .map(|(index, _)| index)
                .collect(),
            Some(_) => {
                return Err(ScimError::invalid_path(format!(
                    "`{name}` is not multi-valued, so a value filter cannot select from it"
                )));
            }
        };

        if matched.is_empty() {
            let no_match =
                || ScimError::no_target(format!("no value of `{name}` matches `{filter}`"));
            return match action {
                Action::Remove { .. } => self.tidy_extension(extension),
                Action::Replace(_) => Err(no_match()),
                Action::Add(value) => {
                    let Some(element) = element_from_filter(schema, &parent, filter, sub, value)
                    else {
                        return Err(no_match());
                    };
                    let slot = container
                        .entry(key.unwrap_or(spelling))
                        .or_insert(Value::Null);
                    // A value filter implies a multi-valued attribute.
                    if slot.is_null() {
                        *slot = Value::Array(Vec::new());
                    }
                    let written = add_into(slot, element, value_case_exact);
                    settle_primary(slot, &written)
                }
            };
        }

        let Some(Value::Array(items)) = key.and_then(|key| container.get_mut(&key)) else {
            return Ok(());
        };
        match action {
            Action::Remove { .. } => {
                match sub {
                    None => {
                        for &index in matched.iter().rev() {
                            items.remove(index);
                        }
                    }
                    Some(sub) => {
                        for &index in &matched {
                            if let Some(Value::Object(members)) = items.get_mut(index)
                                && let Some(sub_key) = key_ci(members, sub)
                            {
                                members.remove(&sub_key);
                            }
                        }
                    }
                }
                self.remove_if_empty(extension, name)?;
                self.tidy_extension(extension)
            }
            Action::Add(value) | Action::Replace(value) => {
                let is_add = matches!(action, Action::Add(_));
                let value = match sub {
                    None => canonical_members(schema, &parent, value.clone()),
                    Some(_) => value.clone(),
                };
                let sub_spelling = sub.map(|sub| canonical_sub(schema, &parent, sub));
                for &index in &matched {
                    let Some(element) = items.get_mut(index) else {
                        continue;
                    };
                    match (&sub_spelling, element) {
                        (None, element) => {
                            replace_into(element, value.clone());
                        }
                        (Some(sub), Value::Object(members)) => {
                            set_member(
                                members,
                                sub.clone(),
                                value.clone(),
                                is_add,
                                value_case_exact,
                            );
                        }
                        // A simple multi-valued attribute's values are `value`.
                        (Some(sub), simple) if sub.eq_ignore_ascii_case("value") => {
                            *simple = value.clone();
                        }
                        (Some(_), _) => return Err(not_complex(name)),
                    }
                }
                settle_primary_items(items, &matched)
            }
        }
    }

    /// The object holding the attributes of `extension` (the resource itself
    /// for the core schema). With `create`, a missing extension object is
    /// added and its URN listed in `schemas`.
    fn container_mut(
        &mut self,
        extension: Option<&str>,
        create: bool,
    ) -> Result<Option<&mut Map<String, Value>>, ScimError> {
        let root = root_mut(self.resource)?;
        let Some(urn) = extension else {
            return Ok(Some(root));
        };
        let key = match key_ci(root, urn) {
            Some(key) => key,
            None if create => {
                let spelling = listed_spelling(root, urn).unwrap_or_else(|| urn.to_owned());
                root.insert(spelling.clone(), Value::Object(Map::new()));
                spelling
            }
            None => return Ok(None),
        };
        if create {
            list_schema(root, urn);
            if let Some(slot @ Value::Null) = root.get_mut(&key) {
                *slot = Value::Object(Map::new());
            }
        }
        match root.get_mut(&key) {
            Some(Value::Object(attributes)) => Ok(Some(attributes)),
            Some(_) if create => Err(ScimError::invalid_value(format!(
                "the resource's `{urn}` member is not an object of extension attributes"
            ))),
            _ => Ok(None),
        }
    }

    fn remove_if_empty(&mut self, extension: Option<&str>, name: &str) -> Result<(), ScimError> {
        if let Some(container) = self.container_mut(extension, false)?
            && let Some(key) = key_ci(container, name)
            && matches!(container.get(&key), Some(Value::Array(items)) if items.is_empty())
        {
            container.remove(&key);
        }
        Ok(())
    }

    /// An extension left without attributes is dropped, and its URN with it.
    fn tidy_extension(&mut self, extension: Option<&str>) -> Result<(), ScimError> {
        let Some(urn) = extension else {
            return Ok(());
        };
        let root = root_mut(self.resource)?;
        if let Some(key) = key_ci(root, urn) {
            let is_empty = match root.get(&key) {
                Some(Value::Object(attributes)) => attributes.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if is_empty {
                root.remove(&key);
                unlist_schema(root, urn);
            }
        }
        Ok(())
    }
}

fn root_mut(resource: &mut Value) -> Result<&mut Map<String, Value>, ScimError> {
    resource.as_object_mut().ok_or_else(not_an_object)
}

fn resolved(extension: Option<&str>, name: &str, sub: Option<&str>) -> AttrPath {
    AttrPath {
        urn: extension.map(str::to_owned),
        name: name.to_owned(),
        sub: sub.map(str::to_owned),
    }
}

fn record(touched: &mut Vec<AttrPath>, extension: Option<&str>, name: &str) {
    let attr = resolved(extension, name, None);
    if !touched.iter().any(|seen| seen.eq_ignore_ascii_case(&attr)) {
        touched.push(attr);
    }
}

fn multi_valued_needs_filter(name: &str, sub: &str) -> ScimError {
    ScimError::invalid_path(format!(
        "`{name}` is multi-valued: choose values with a filter, e.g. `{name}[type eq \"work\"].{sub}`"
    ))
}

fn not_complex(name: &str) -> ScimError {
    ScimError::invalid_path(format!(
        "`{name}` is not a complex attribute: it has no sub-attributes"
    ))
}

fn canonical_sub(schema: &dyn Schema, attr: &AttrPath, sub: &str) -> String {
    schema
        .canonical_name(&attr.clone().with_sub(sub))
        .unwrap_or_else(|| sub.to_owned())
}

/// The value with its sub-attribute names spelled as the schema wants.
fn canonical_members(schema: &dyn Schema, attr: &AttrPath, value: Value) -> Value {
    let respell = |members: Map<String, Value>| -> Map<String, Value> {
        members
            .into_iter()
            .map(|(name, member)| (canonical_sub(schema, attr, &name), member))
            .collect()
    };
    match value {
        Value::Object(members) => Value::Object(respell(members)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(members) => Value::Object(respell(members)),
                    other => other,
                })
                .collect(),
        ),
        other => other,
    }
}

/// `listed` as spelled in the resource's `schemas`, if there.
fn listed_spelling(root: &Map<String, Value>, urn: &str) -> Option<String> {
    get_ci(root, "schemas")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|listed| listed.eq_ignore_ascii_case(urn))
        .map(str::to_owned)
}

fn list_schema(root: &mut Map<String, Value>, urn: &str) {
    let Some(key) = key_ci(root, "schemas") else {
        return;
    };
    if let Some(Value::Array(schemas)) = root.get_mut(&key) {
        let listed = schemas
            .iter()
            .filter_map(Value::as_str)
            .any(|listed| listed.eq_ignore_ascii_case(urn));
        if !listed {
            schemas.push(Value::from(urn));
        }
    }
}

fn unlist_schema(root: &mut Map<String, Value>, urn: &str) {
    let Some(key) = key_ci(root, "schemas") else {
        return;
    };
    if let Some(Value::Array(schemas)) = root.get_mut(&key) {
        schemas.retain(|listed| {
            !listed
                .as_str()
                .is_some_and(|listed| listed.eq_ignore_ascii_case(urn))
        });
    }
}

/// `add` onto an existing value. Returns the indices of the values written,
/// when `slot` is multi-valued.
fn add_into(slot: &mut Value, new: Value, value_case_exact: bool) -> Vec<usize> {
    match slot {
        Value::Array(items) => {
            let additions = match new {
                Value::Array(additions) => additions,
                single => vec![single],
            };
            additions
                .into_iter()
                .map(|addition| push_unique(items, addition, value_case_exact))
                .collect()
        }
        Value::Object(members) => match new {
            Value::Object(new_members) => {
                merge(members, new_members);
                Vec::new()
            }
            other => {
                *slot = without_nulls(other);
                all_indices(slot)
            }
        },
        _ => {
            *slot = without_nulls(new);
            all_indices(slot)
        }
    }
}

/// `replace` of an existing value: a complex value keeps the sub-attributes
/// not given (RFC 7644 §3.5.2.3); anything else is replaced whole.
fn replace_into(slot: &mut Value, new: Value) -> Vec<usize> {
    match (&mut *slot, new) {
        (Value::Object(members), Value::Object(new_members)) => {
            merge(members, new_members);
            Vec::new()
        }
        (_, new) => {
            *slot = without_nulls(new);
            all_indices(slot)
        }
    }
}

/// A new value without its `null` sub-attributes: null is unassigned (RFC
/// 7643 §2.5), so there is nothing to store. (When merging into an existing
/// value, a `null` removes instead; see [`merge`].)
fn without_nulls(value: Value) -> Value {
    fn drop_null_members(value: Value) -> Value {
        match value {
            Value::Object(members) => Value::Object(
                members
                    .into_iter()
                    .filter(|(_, member)| !member.is_null())
                    .collect(),
            ),
            other => other,
        }
    }
    match value {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .filter(|item| !item.is_null())
                .map(drop_null_members)
                .collect(),
        ),
        other => drop_null_members(other),
    }
}

fn all_indices(value: &Value) -> Vec<usize> {
    match value {
        Value::Array(items) => (0..items.len()).collect(),
        _ => Vec::new(),
    }
}

/// Sets sub-attributes, matching names ignoring case; `null` unassigns.
fn merge(members: &mut Map<String, Value>, new_members: Map<String, Value>) {
    for (name, value) in new_members {
        let key = key_ci(members, &name).unwrap_or(name);
        if value.is_null() {
            members.remove(&key);
        } else {
            members.insert(key, value);
        }
    }
}

/// Sets one sub-attribute: `add` appends to a multi-valued one, anything
/// else replaces.
fn set_member(
    members: &mut Map<String, Value>,
    name: String,
    value: Value,
    is_add: bool,
    value_case_exact: bool,
) {
    let key = key_ci(members, &name).unwrap_or(name);
    if value.is_null() {
        members.remove(&key);
        return;
    }
    match members.get_mut(&key) {
        Some(existing @ Value::Array(_)) if is_add => {
            add_into(existing, value, value_case_exact);
        }
        _ => {
            members.insert(key, value);
        }
    }
}

/// Appends unless an equal value is there, in which case the new one's
/// sub-attributes are merged into it. Returns the index written.
fn push_unique(items: &mut Vec<Value>, new: Value, value_case_exact: bool) -> usize {
    let Some(index) = items
        .iter()
        .position(|item| same_value(item, &new, value_case_exact))
    else {
        items.push(without_nulls(new));
        return items.len() - 1;
    };
    if let (Some(Value::Object(members)), Value::Object(new_members)) = (items.get_mut(index), new)
    {
        merge(members, new_members);
    }
    index
}

/// Whether two values of a multi-valued attribute are the same value: by
/// `value` (and `type` when both have one) for complex values, as JSON
/// otherwise. Strings compare ignoring case unless `value` is `caseExact`.
fn same_value(left: &Value, right: &Value, value_case_exact: bool) -> bool {
    match (left, right) {
        (Value::Object(left), Value::Object(right)) => {
            match (get_ci(left, "value"), get_ci(right, "value")) {
                (Some(left_value), Some(right_value)) => {
                    let same_type = match (get_ci(left, "type"), get_ci(right, "type")) {
                        (Some(left_type), Some(right_type)) => {
                            same_simple_value(left_type, right_type, false)
                        }
                        _ => true,
                    };
                    same_type && same_simple_value(left_value, right_value, value_case_exact)
                }
                _ => {
                    left.len() == right.len()
                        && left.iter().all(|(name, value)| {
                            get_ci(right, name).is_some_and(|other| other == value)
                        })
                }
            }
        }
        _ => same_simple_value(left, right, value_case_exact),
    }
}

fn same_simple_value(left: &Value, right: &Value, case_exact: bool) -> bool {
    match (left, right) {
        (Value::String(left), Value::String(right)) if !case_exact => left
            .chars()
            .flat_map(char::to_lowercase)
            .eq(right.chars().flat_map(char::to_lowercase)),
        _ => left == right,
    }
}

fn is_primary(value: &Value) -> bool {
    matches!(value, Value::Object(members) if get_ci(members, "primary") == Some(&Value::Bool(true)))
}

fn settle_primary(slot: &mut Value, written: &[usize]) -> Result<(), ScimError> {
    match slot {
        Value::Array(items) => settle_primary_items(items, written),
        _ => Ok(()),
    }
}

/// RFC 7643 §2.4: `primary: true` appears at most once; RFC 7644 §3.5.2: a
/// value newly made primary takes the flag from the others.
fn settle_primary_items(items: &mut [Value], written: &[usize]) -> Result<(), ScimError> {
    let mut newly_primary: Vec<usize> = written
        .iter()
        .copied()
        .filter(|&index| items.get(index).is_some_and(is_primary))
        .collect();
    newly_primary.sort_unstable();
    newly_primary.dedup();
    match newly_primary.as_slice() {
        [] => Ok(()),
        [keep] => {
            for (index, item) in items.iter_mut().enumerate() {
                if index != *keep
                    && is_primary(item)
                    && let Value::Object(members) = item
                    && let Some(key) = key_ci(members, "primary")
                {
                    members.insert(key, Value::Bool(false));
                }
            }
            Ok(())
        }
        _ => Err(ScimError::invalid_value(
            "more than one value is marked primary; RFC 7643 §2.4 allows one",
        )),
    }
}

/// For `add` with a value filter that matched nothing: the value the filter
/// describes, when it is `eq` comparisons joined by `and`, completed with the
/// operation's value.
fn element_from_filter(
    schema: &dyn Schema,
    parent: &AttrPath,
    filter: &Filter,
    sub: Option<&str>,
    value: &Value,
) -> Option<Value> {
    let mut element = Map::new();
    let mut pending = vec![filter];
    while let Some(node) = pending.pop() {
        match node {
            Filter::And(left, right) => {
                pending.push(right);
                pending.push(left);
            }
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value: compared,
            } if path.urn.is_none() && path.sub.is_none() && *compared != CompValue::Null => {
                element.insert(
                    canonical_sub(schema, parent, &path.name),
                    compared.to_json(),
                );
            }
            _ => return None,
        }
    }
    match (sub, value) {
        (Some(sub), value) => {
            element.insert(canonical_sub(schema, parent, sub), value.clone());
        }
        (None, Value::Object(members)) => {
            let members = match canonical_members(schema, parent, Value::Object(members.clone())) {
                Value::Object(members) => members,
                _ => Map::new(),
            };
            merge(&mut element, members);
        }
        (None, _) => return None,
    }
    Some(Value::Object(element))
}
