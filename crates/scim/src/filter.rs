//! SCIM filters (RFC 7644 §3.4.2.2): the syntax tree, its parser and its
//! canonical text.
//!
//! [`parse_filter`] reads the `filter` query parameter (or the `filter` member
//! of a `POST /.search` body). [`Filter`]'s `Display` writes the canonical form:
//! lower-case operators, single spaces, JSON-encoded values and only the
//! parentheses the tree needs, so that `parse_filter(&f.to_string()) == f`.

use std::fmt;
use std::str::FromStr;

use crate::error::ScimError;
use crate::grammar;

/// Longest filter accepted, in bytes. Real filters are a few hundred bytes;
/// the limit bounds parsing work and the size of the tree.
pub const MAX_FILTER_LEN: usize = 8 * 1024;

/// Deepest nesting of parentheses, `not (…)` and value paths accepted. The
/// parser recurses once per level, so this bounds its stack use.
pub const MAX_FILTER_DEPTH: usize = 32;

/// Parses a SCIM filter. Errors are 400 `invalidFilter` with the position of
/// the problem.
///
/// ```
/// use gatehouse_scim::filter::{parse_filter, CompareOp, Filter};
///
/// let filter = parse_filter(r#"userName Eq "bjensen" and not (emails pr)"#)?;
/// assert!(matches!(filter, Filter::And(..)));
/// assert_eq!(filter.to_string(), r#"userName eq "bjensen" and not (emails pr)"#);
/// # Ok::<(), gatehouse_scim::ScimError>(())
/// ```
pub fn parse_filter(text: &str) -> Result<Filter, ScimError> {
    grammar::parse_filter(text)
}

/// Parses a bare attribute path (`userName`, `name.familyName`,
/// `urn:…:enterprise:2.0:User:manager.value`), as found in `sortBy`,
/// `attributes` and `excludedAttributes`. Errors are 400 `invalidPath`.
pub fn parse_attr_path(text: &str) -> Result<AttrPath, ScimError> {
    grammar::parse_attr_path(text)
}

/// A parsed filter.
///
/// `And` and `Or` are binary and left-associative, as parsed: `a and b and c`
/// is `And(And(a, b), c)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Both sides match.
    And(Box<Filter>, Box<Filter>),
    /// Either side matches.
    Or(Box<Filter>, Box<Filter>),
    /// The inner filter does not match: `not (…)`.
    Not(Box<Filter>),
    /// `path op value`, e.g. `userName eq "bjensen"`.
    Compare {
        /// The attribute compared.
        path: AttrPath,
        /// The comparison.
        op: CompareOp,
        /// The value compared with.
        value: CompValue,
    },
    /// `path pr`: the attribute has a non-empty value.
    Present(AttrPath),
    /// `path[filter]`: some value of a (multi-valued) complex attribute matches
    /// the inner filter, whose paths name sub-attributes of `path`.
    ValuePath {
        /// The complex attribute.
        path: AttrPath,
        /// The filter applied to each of its values.
        filter: Box<Filter>,
    },
}

impl FromStr for Filter {
    type Err = ScimError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_filter(text)
    }
}

/// The comparison operators of RFC 7644 §3.4.2.2, Table 3 (`pr` is
/// [`Filter::Present`]). Parsed case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `eq`: equal.
    Eq,
    /// `ne`: not equal.
    Ne,
    /// `co`: contains (strings).
    Co,
    /// `sw`: starts with (strings).
    Sw,
    /// `ew`: ends with (strings).
    Ew,
    /// `gt`: greater than.
    Gt,
    /// `ge`: greater than or equal.
    Ge,
    /// `lt`: less than.
    Lt,
    /// `le`: less than or equal.
    Le,
}

impl CompareOp {
    /// Every operator, in the order of the RFC's table.
    pub const ALL: [CompareOp; 9] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ];

    /// The canonical (lower-case) keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// The operator for a keyword, compared case-insensitively.
    pub fn from_keyword(keyword: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(keyword))
    }

    /// Whether the operator orders values (`gt`, `ge`, `lt`, `le`), which RFC
    /// 7644 forbids on booleans.
    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }

    /// Whether the operator works on substrings (`co`, `sw`, `ew`), so takes a
    /// string value.
    pub fn is_substring(self) -> bool {
        matches!(self, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comparison value: the JSON `false / null / true / number / string`.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A JSON number.
    Number(serde_json::Number),
    /// A JSON string, escapes decoded.
    String(String),
}

impl CompValue {
    /// The value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            CompValue::Null => serde_json::Value::Null,
            CompValue::Bool(flag) => serde_json::Value::Bool(*flag),
            CompValue::Number(number) => serde_json::Value::Number(number.clone()),
            CompValue::String(text) => serde_json::Value::String(text.clone()),
        }
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Null => f.write_str("null"),
            CompValue::Bool(flag) => write!(f, "{flag}"),
            CompValue::Number(number) => write!(f, "{number}"),
            // serde_json writes the JSON escapes the parser decodes.
            CompValue::String(text) => write!(f, "{}", serde_json::Value::String(text.clone())),
        }
    }
}

/// An attribute path: `[URN ":"] name ["." sub]`.
///
/// Names keep the client's spelling; SCIM compares them case-insensitively,
/// so compare with [`AttrPath::eq_ignore_ascii_case`] or [`AttrPath::key`],
/// not `==` (which is exact, for round-trip tests).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// Schema URN prefix, e.g. `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`.
    pub urn: Option<String>,
    /// Attribute name, e.g. `emails`.
    pub name: String,
    /// Sub-attribute name, e.g. `value` in `emails.value`.
    pub sub: Option<String>,
}

impl AttrPath {
    /// A path to a top-level attribute of the core schema.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            urn: None,
            name: name.into(),
            sub: None,
        }
    }

    /// The same path with a schema URN prefix.
    pub fn with_urn(mut self, urn: impl Into<String>) -> Self {
        self.urn = Some(urn.into());
        self
    }

    /// The same path with a sub-attribute.
    pub fn with_sub(mut self, sub: impl Into<String>) -> Self {
        self.sub = Some(sub.into());
        self
    }

    /// The lower-cased text of the path: a key for maps and sets that treats
    /// paths as SCIM does.
    pub fn key(&self) -> String {
        self.to_string().to_ascii_lowercase()
    }

    /// Whether both paths name the same attribute, ignoring ASCII case.
    pub fn eq_ignore_ascii_case(&self, other: &AttrPath) -> bool {
        fn same(left: Option<&str>, right: Option<&str>) -> bool {
            match (left, right) {
                (Some(left), Some(right)) => left.eq_ignore_ascii_case(right),
                (None, None) => true,
                _ => false,
            }
        }
        same(self.urn.as_deref(), other.urn.as_deref())
            && self.name.eq_ignore_ascii_case(&other.name)
            && same(self.sub.as_deref(), other.sub.as_deref())
    }

    /// Whether the attribute is `name`, ignoring ASCII case (URN and
    /// sub-attribute not considered).
    pub fn is_named(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// Whether the sub-attribute is `sub`, ignoring ASCII case.
    pub fn sub_is_named(&self, sub: &str) -> bool {
        self.sub
            .as_deref()
            .is_some_and(|own| own.eq_ignore_ascii_case(sub))
    }
}

impl FromStr for AttrPath {
    type Err = ScimError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_attr_path(text)
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// Binding strength, for deciding where `Display` needs parentheses.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Precedence {
    Or,
    And,
    Operand,
}

impl Filter {
    fn precedence(&self) -> Precedence {
        match self {
            Filter::Or(..) => Precedence::Or,
            Filter::And(..) => Precedence::And,
            _ => Precedence::Operand,
        }
    }

    /// The operands of a left-deep chain of the same logical operator, in
    /// order: `[a, b, c]` for `a and b and c`. Walking the chain with a loop
    /// keeps long `a or b or c …` filters from recursing once per term.
    pub(crate) fn chain_operands(&self) -> Vec<&Filter> {
        let mut operands = Vec::new();
        let mut leftmost = self;
        while let (Filter::And(left, right), Filter::And(..))
        | (Filter::Or(left, right), Filter::Or(..)) = (leftmost, self)
        {
            operands.push(right.as_ref());
            leftmost = left;
        }
        operands.push(leftmost);
        operands.reverse();
        operands
    }

    fn write_chain(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let precedence = self.precedence();
        let keyword = if precedence == Precedence::Or {
            " or "
        } else {
            " and "
        };
        // The leftmost operand needs parentheses only if it binds more loosely
        // (an `or` under an `and`); the others also when they are the same
        // operator, since the parser groups to the left.
        for (index, operand) in self.chain_operands().into_iter().enumerate() {
            if index == 0 {
                write_operand(f, operand, operand.precedence() < precedence)?;
            } else {
                f.write_str(keyword)?;
                write_operand(f, operand, operand.precedence() <= precedence)?;
            }
        }
        Ok(())
    }
}

fn write_operand(f: &mut fmt::Formatter<'_>, operand: &Filter, parenthesise: bool) -> fmt::Result {
    if parenthesise {
        write!(f, "({operand})")
    } else {
        write!(f, "{operand}")
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::And(..) | Filter::Or(..) => self.write_chain(f),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}
