//! The `path` of a PATCH operation (RFC 7644 §3.5.2):
//! `PATH = attrPath / valuePath [subAttr]`.

use std::fmt;
use std::str::FromStr;

use crate::error::ScimError;
use crate::filter::{AttrPath, Filter};
use crate::grammar;

/// Parses a PATCH operation's `path`. Errors are 400 `invalidPath`.
///
/// ```
/// use gatehouse_scim::path::{parse_patch_path, PatchPath};
///
/// let path = parse_patch_path(r#"emails[type eq "work"].value"#)?;
/// assert!(matches!(&path, PatchPath::Filtered { sub_attr: Some(sub), .. } if sub == "value"));
/// # Ok::<(), gatehouse_scim::ScimError>(())
/// ```
pub fn parse_patch_path(text: &str) -> Result<PatchPath, ScimError> {
    grammar::parse_patch_path(text)
}

/// Where a PATCH operation applies.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchPath {
    /// An attribute or sub-attribute: `title`, `name.familyName`,
    /// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager`.
    Attribute(AttrPath),
    /// Values of a multi-valued attribute chosen by a filter, optionally one
    /// sub-attribute of them: `members[value eq "2819c223"]`,
    /// `emails[type eq "work"].value`.
    Filtered {
        /// The multi-valued attribute (never with a sub-attribute).
        attr: AttrPath,
        /// Selects values; its paths name sub-attributes of `attr`.
        filter: Filter,
        /// The sub-attribute of the selected values, if any.
        sub_attr: Option<String>,
    },
}

impl PatchPath {
    /// The attribute the path starts from (for a filtered path, the
    /// multi-valued attribute).
    pub fn attr(&self) -> &AttrPath {
        match self {
            PatchPath::Attribute(attr) | PatchPath::Filtered { attr, .. } => attr,
        }
    }
}

impl FromStr for PatchPath {
    type Err = ScimError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_patch_path(text)
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchPath::Attribute(attr) => write!(f, "{attr}"),
            PatchPath::Filtered {
                attr,
                filter,
                sub_attr,
            } => {
                write!(f, "{attr}[{filter}]")?;
                if let Some(sub) = sub_attr {
                    write!(f, ".{sub}")?;
                }
                Ok(())
            }
        }
    }
}
