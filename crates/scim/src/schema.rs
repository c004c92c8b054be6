//! What filter evaluation and PATCH need to know about the server's schemas,
//! and how an attribute path finds its place in a resource.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::filter::AttrPath;

/// `urn:ietf:params:scim:schemas:core:2.0:User` (RFC 7643 §4.1).
pub const CORE_USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// `urn:ietf:params:scim:schemas:core:2.0:Group` (RFC 7643 §4.2).
pub const CORE_GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User` (RFC 7643 §4.3).
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Schema knowledge the crate cannot get from the JSON alone. Every method
/// has a default that follows RFC 7643 for the standard schemas; a server
/// with its own extensions or `caseExact` attributes overrides some.
///
/// Paths given to the methods are resolved: `urn` is the extension schema's
/// URN, or `None` for an attribute of the core schema (whether or not the
/// client wrote the core URN prefix).
pub trait Schema {
    /// Whether string comparisons on the attribute are case-sensitive (RFC
    /// 7643 §2.2 `caseExact`). Default: [`is_case_exact_by_default`].
    fn is_case_exact(&self, attr: &AttrPath) -> bool {
        is_case_exact_by_default(attr)
    }

    /// Whether a URN prefix names the resource's core schema, whose
    /// attributes sit at the top level of the JSON, rather than an extension,
    /// whose attributes sit in an object named by its URN (RFC 7643 §3).
    /// Default: the `urn:ietf:params:scim:schemas:core:` schemas.
    fn is_core_schema(&self, urn: &str) -> bool {
        urn.get(..CORE_PREFIX.len())
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case(CORE_PREFIX))
    }

    /// Whether `urn` is a whole schema URN. Needed because the path grammar
    /// cannot tell `urn:…:enterprise:2.0:User` (the extension) from
    /// `urn:…:enterprise:2.0` + attribute `User`. URNs listed in the
    /// resource's `schemas`, or present as one of its members, count as well.
    /// Default: the three schemas of RFC 7643 §4.
    fn is_schema_urn(&self, urn: &str) -> bool {
        [CORE_USER_SCHEMA, CORE_GROUP_SCHEMA, ENTERPRISE_USER_SCHEMA]
            .iter()
            .any(|known| known.eq_ignore_ascii_case(urn))
    }

    /// The spelling to store when PATCH creates the attribute (`attr.sub`
    /// set: the sub-attribute). Names are case-insensitive, so a client may
    /// write `DisplayName`; `None` keeps the client's spelling.
    fn canonical_name(&self, attr: &AttrPath) -> Option<String> {
        let _ = attr;
        None
    }
}

const CORE_PREFIX: &str = "urn:ietf:params:scim:schemas:core:";

/// The `caseExact` attributes among the common attributes of RFC 7643 §3.1:
/// `id` and `externalId` ("caseExact" as "true"), and `meta.version`, an
/// entity tag, which compares exactly (RFC 7232 §2.3.2). Everything else,
/// `userName` included, compares ignoring case.
pub fn is_case_exact_by_default(attr: &AttrPath) -> bool {
    if attr.urn.is_some() {
        return false;
    }
    match &attr.sub {
        None => attr.is_named("id") || attr.is_named("externalId"),
        Some(sub) => attr.is_named("meta") && sub.eq_ignore_ascii_case("version"),
    }
}

/// RFC 7643 defaults only.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultSchema;

impl Schema for DefaultSchema {}

/// Where an attribute path points in a resource.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target<'p> {
    /// A whole schema: the resource itself (`extension: None`) or the object
    /// of an extension.
    WholeSchema { extension: Option<Cow<'p, str>> },
    /// An attribute of the core schema (`extension: None`) or of an extension.
    Attribute {
        extension: Option<&'p str>,
        name: &'p str,
        sub: Option<&'p str>,
    },
}

/// Resolves a path against a resource: which schema's attributes it names,
/// and whether it names the schema itself.
pub(crate) fn resolve<'p>(path: &'p AttrPath, resource: &Value, schema: &dyn Schema) -> Target<'p> {
    let Some(urn) = path.urn.as_deref() else {
        return Target::Attribute {
            extension: None,
            name: &path.name,
            sub: path.sub.as_deref(),
        };
    };
    if path.sub.is_none() {
        let whole = format!("{urn}:{}", path.name);
        if names_a_schema(&whole, resource, schema) {
            let extension = (!schema.is_core_schema(&whole)).then_some(Cow::Owned(whole));
            return Target::WholeSchema { extension };
        }
    }
    let extension = (!schema.is_core_schema(urn)).then_some(urn);
    Target::Attribute {
        extension,
        name: &path.name,
        sub: path.sub.as_deref(),
    }
}

fn names_a_schema(urn: &str, resource: &Value, schema: &dyn Schema) -> bool {
    if schema.is_schema_urn(urn) {
        return true;
    }
    let Value::Object(members) = resource else {
        return false;
    };
    let listed = get_ci(members, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|schemas| {
            schemas
                .iter()
                .filter_map(Value::as_str)
                .any(|listed| listed.eq_ignore_ascii_case(urn))
        });
    listed || matches!(get_ci(members, urn), Some(Value::Object(_)))
}

/// The member named `name`, ignoring ASCII case. An exact match wins if the
/// object (against SCIM's rules) has several spellings.
pub(crate) fn get_ci<'v>(members: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    members.get(name).or_else(|| {
        members
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    })
}

/// The key of the member named `name`, ignoring ASCII case.
pub(crate) fn key_ci(members: &Map<String, Value>, name: &str) -> Option<String> {
    if members.contains_key(name) {
        return Some(name.to_owned());
    }
    members
        .keys()
        .find(|key| key.eq_ignore_ascii_case(name))
        .cloned()
}
