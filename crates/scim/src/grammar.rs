//! The winnow grammar behind [`crate::filter`] and [`crate::path`]: RFC 7644
//! Figure 1 and the PATCH `PATH` rule.
//!
//! Recursive descent, one function per precedence level. `and`/`or` chains
//! are built in a loop; only parentheses, `not (…)` and value paths recurse,
//! and those are counted against [`MAX_FILTER_DEPTH`], so no input can
//! exhaust the stack. Keyword probes (`and`, `or`, `not (`) rewind by hand;
//! every other failure is a cut, so the error keeps the position where the
//! input stopped making sense.

use winnow::ascii::{Caseless, digit0, digit1};
use winnow::combinator::{alt, cut_err, opt};
use winnow::error::{AddContext, ErrMode, ParserError};
use winnow::prelude::*;
use winnow::stream::Stream;
use winnow::token::{one_of, take, take_while};

use crate::error::ScimError;
use crate::filter::{AttrPath, CompValue, CompareOp, Filter, MAX_FILTER_DEPTH, MAX_FILTER_LEN};
use crate::path::PatchPath;

/// Whether the parser is inside `attr[…]`, where the ABNF (`valFilter`) has no
/// further value paths.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nesting {
    TopLevel,
    InValuePath,
}

const OPERATORS: &str = "eq, ne, co, sw, ew, gt, ge, lt, le or pr";

pub(crate) fn parse_filter(text: &str) -> Result<Filter, ScimError> {
    check_length(text, "filter").map_err(ScimError::invalid_filter)?;
    let mut whole_filter = |input: &mut &str| -> ModalResult<Filter> {
        skip_spaces(input);
        let filter = or_expr(input, 0, Nesting::TopLevel)?;
        skip_spaces(input);
        end(input, "`and`, `or` or the end of the filter")?;
        Ok(filter)
    };
    whole_filter.parse(text).map_err(|error| {
        ScimError::invalid_filter(describe("filter", text, error.offset(), error.inner()))
    })
}

pub(crate) fn parse_patch_path(text: &str) -> Result<PatchPath, ScimError> {
    check_length(text, "path").map_err(ScimError::invalid_path)?;
    let mut whole_path = |input: &mut &str| -> ModalResult<PatchPath> {
        skip_spaces(input);
        let attr = attr_path(input)?;
        skip_spaces(input);
        if !input.starts_with('[') {
            end(input, "`[` or the end of the path")?;
            return Ok(PatchPath::Attribute(attr));
        }
        if attr.sub.is_some() {
            return Err(problem(
                "a value filter selects values of a multi-valued attribute, not of a sub-attribute",
            ));
        }
        let filter = bracketed_filter(input, 0)?;
        let sub_attr = if input.starts_with('.') {
            *input = &input[1..];
            Some(sub_attr_name(input)?)
        } else {
            None
        };
        skip_spaces(input);
        end(input, "`.subAttribute` or the end of the path")?;
        Ok(PatchPath::Filtered {
            attr,
            filter,
            sub_attr,
        })
    };
    whole_path.parse(text).map_err(|error| {
        ScimError::invalid_path(describe("path", text, error.offset(), error.inner()))
    })
}

pub(crate) fn parse_attr_path(text: &str) -> Result<AttrPath, ScimError> {
    check_length(text, "attribute path").map_err(ScimError::invalid_path)?;
    let mut whole_path = |input: &mut &str| -> ModalResult<AttrPath> {
        skip_spaces(input);
        let attr = attr_path(input)?;
        skip_spaces(input);
        end(input, "the end of the attribute path")?;
        Ok(attr)
    };
    whole_path.parse(text).map_err(|error| {
        ScimError::invalid_path(describe(
            "attribute path",
            text,
            error.offset(),
            error.inner(),
        ))
    })
}

fn check_length(text: &str, subject: &str) -> Result<(), String> {
    if text.len() > MAX_FILTER_LEN {
        return Err(format!(
            "the {subject} is {} bytes long; at most {MAX_FILTER_LEN} are accepted",
            text.len()
        ));
    }
    if text.trim_matches(is_space).is_empty() {
        return Err(format!("the {subject} is empty"));
    }
    Ok(())
}

/// `invalid filter at position 9 (at `"x"`): expected …`, the position
/// counted in characters from 0.
fn describe(subject: &str, text: &str, offset: usize, error: &GrammarError) -> String {
    let consumed = text.get(..offset).unwrap_or(text);
    let rest = text.get(offset..).unwrap_or("");
    let position = consumed.chars().count();
    let place = if rest.is_empty() {
        "at the end".to_owned()
    } else {
        let excerpt: String = rest.chars().take(20).collect();
        let ellipsis = if rest.chars().nth(20).is_some() {
            "…"
        } else {
            ""
        };
        format!("at `{excerpt}{ellipsis}`")
    };
    let reason = match (&error.message, error.expected.as_slice()) {
        (Some(message), _) => message.clone(),
        (None, []) => "syntax error".to_owned(),
        (None, expected) => format!("expected {}", expected.join(" or ")),
    };
    format!("invalid {subject} at position {position} ({place}): {reason}")
}

/// Why parsing stopped: a message built from the input, or what the grammar
/// expected there. (winnow's `ContextError` keeps built messages only with
/// its `std` feature, which would add a dependency edge to the lock file.)
#[derive(Debug, Default)]
struct GrammarError {
    message: Option<String>,
    expected: Vec<&'static str>,
}

impl<I: Stream> ParserError<I> for GrammarError {
    type Inner = Self;

    fn from_input(_input: &I) -> Self {
        Self::default()
    }

    fn into_inner(self) -> Result<Self::Inner, Self> {
        Ok(self)
    }
}

impl<I: Stream> AddContext<I, &'static str> for GrammarError {
    fn add_context(
        mut self,
        _input: &I,
        _token_start: &<I as Stream>::Checkpoint,
        expected: &'static str,
    ) -> Self {
        self.expected.push(expected);
        self
    }
}

type ModalResult<T> = Result<T, ErrMode<GrammarError>>;

/// A problem whose message is fixed by the grammar: "expected …".
fn expected(what: &'static str) -> ErrMode<GrammarError> {
    ErrMode::Cut(GrammarError {
        message: None,
        expected: vec![what],
    })
}

/// A problem with a message built from the input. Reported at the input's
/// position when the error is returned, so callers rewind to the culprit first.
fn problem(message: impl Into<String>) -> ErrMode<GrammarError> {
    ErrMode::Cut(GrammarError {
        message: Some(message.into()),
        expected: Vec::new(),
    })
}

fn is_space(c: char) -> bool {
    // SP in the ABNF; tabs and line breaks too, for filters sent in JSON bodies.
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// `nameChar` of the ABNF, plus `$` for `$ref`.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '$')
}

/// Characters of `[URI ":"] ATTRNAME ["." ATTRNAME]`, as SCIM schema URNs
/// spell them.
fn is_path_char(c: char) -> bool {
    is_name_char(c) || matches!(c, ':' | '.')
}

fn skip_spaces(input: &mut &str) {
    *input = input.trim_start_matches(is_space);
}

/// Consumes one or more spaces; false if there were none.
fn spaces1(input: &mut &str) -> bool {
    let before = input.len();
    skip_spaces(input);
    input.len() < before
}

fn end(input: &mut &str, what: &'static str) -> ModalResult<()> {
    if input.is_empty() {
        Ok(())
    } else {
        Err(expected(what))
    }
}

fn check_depth(depth: usize) -> ModalResult<()> {
    if depth > MAX_FILTER_DEPTH {
        return Err(problem(format!(
            "the filter nests parentheses, `not` and value paths deeper than {MAX_FILTER_DEPTH} levels"
        )));
    }
    Ok(())
}

/// `FILTER SP "or" SP FILTER`, the loosest level.
fn or_expr(input: &mut &str, depth: usize, nesting: Nesting) -> ModalResult<Filter> {
    let mut filter = and_expr(input, depth, nesting)?;
    while logical_keyword(input, "or")? {
        let right = and_expr(input, depth, nesting)?;
        filter = Filter::Or(Box::new(filter), Box::new(right));
    }
    Ok(filter)
}

/// `FILTER SP "and" SP FILTER`: binds tighter than `or`.
fn and_expr(input: &mut &str, depth: usize, nesting: Nesting) -> ModalResult<Filter> {
    let mut filter = not_expr(input, depth, nesting)?;
    while logical_keyword(input, "and")? {
        let right = not_expr(input, depth, nesting)?;
        filter = Filter::And(Box::new(filter), Box::new(right));
    }
    Ok(filter)
}

/// Consumes ` and ` / ` or ` (any case) if it comes next. The keyword needs
/// spaces on both sides (ABNF `SP`); without the leading one, or followed by
/// more name characters, it is not a keyword and nothing is consumed.
fn logical_keyword(input: &mut &str, keyword: &'static str) -> ModalResult<bool> {
    let before = *input;
    if !spaces1(input) {
        return Ok(false);
    }
    let matched: Option<&str> = opt(Caseless(keyword)).parse_next(input)?;
    if matched.is_none() || input.starts_with(is_name_char) {
        *input = before;
        return Ok(false);
    }
    if !spaces1(input) {
        return Err(match (input.is_empty(), keyword) {
            (true, "or") => expected("a filter after `or`"),
            (true, _) => expected("a filter after `and`"),
            (false, "or") => expected("a space after `or`"),
            (false, _) => expected("a space after `and`"),
        });
    }
    Ok(true)
}

/// `"not" "(" FILTER ")"` — the space before `(` is optional (RFC 7644
/// erratum 7319: the RFC's own examples have one, its ABNF does not). `not`
/// not followed by `(` is an attribute named "not".
fn not_expr(input: &mut &str, depth: usize, nesting: Nesting) -> ModalResult<Filter> {
    let before = *input;
    let keyword: Option<&str> = opt(Caseless("not")).parse_next(input)?;
    if keyword.is_some() {
        skip_spaces(input);
        if input.starts_with('(') {
            let inner = parenthesised(input, depth, nesting)?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        *input = before;
    }
    operand(input, depth, nesting)
}

/// `"(" FILTER ")"`, spaces allowed inside.
fn parenthesised(input: &mut &str, depth: usize, nesting: Nesting) -> ModalResult<Filter> {
    check_depth(depth + 1)?;
    *input = &input[1..];
    skip_spaces(input);
    let inner = or_expr(input, depth + 1, nesting)?;
    skip_spaces(input);
    if !input.starts_with(')') {
        return Err(expected("`)`"));
    }
    *input = &input[1..];
    Ok(inner)
}

/// `"[" valFilter "]"`, spaces allowed inside.
fn bracketed_filter(input: &mut &str, depth: usize) -> ModalResult<Filter> {
    check_depth(depth + 1)?;
    *input = &input[1..];
    skip_spaces(input);
    let inner = or_expr(input, depth + 1, Nesting::InValuePath)?;
    skip_spaces(input);
    if !input.starts_with(']') {
        return Err(expected("`]`"));
    }
    *input = &input[1..];
    Ok(inner)
}

/// A grouped filter, a value path or an attribute expression
/// (`attrPath SP "pr"` / `attrPath SP compareOp SP compValue`).
fn operand(input: &mut &str, depth: usize, nesting: Nesting) -> ModalResult<Filter> {
    if input.starts_with('(') {
        return parenthesised(input, depth, nesting);
    }
    let path = attr_path(input)?;
    let had_space = spaces1(input);
    if input.starts_with('[') {
        if nesting == Nesting::InValuePath {
            return Err(problem(
                "value paths cannot be nested: inside `[…]` the filter compares sub-attributes",
            ));
        }
        let filter = bracketed_filter(input, depth)?;
        return Ok(Filter::ValuePath {
            path,
            filter: Box::new(filter),
        });
    }
    if !had_space {
        return Err(expected(
            "a space, then an operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr)",
        ));
    }

    let operator_start = *input;
    let word: &str = take_while(0.., is_name_char).parse_next(input)?;
    if word.is_empty() {
        return Err(expected(
            "an operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr)",
        ));
    }
    if word.eq_ignore_ascii_case("pr") {
        return Ok(Filter::Present(path));
    }
    let Some(op) = CompareOp::from_keyword(word) else {
        *input = operator_start;
        return Err(problem(format!(
            "unknown operator `{word}`; the operators are {OPERATORS}"
        )));
    };
    if !spaces1(input) {
        return Err(if input.is_empty() {
            expected("a value after the operator")
        } else {
            expected("a space, then a value")
        });
    }
    let value_start = *input;
    let value = comp_value(input)?;
    // RFC 7644 Table 3: `co`/`sw`/`ew` are substring tests, and ordering a
    // boolean "SHALL cause a failed response ... invalidFilter".
    if op.is_substring() && !matches!(value, CompValue::String(_)) {
        *input = value_start;
        return Err(problem(format!(
            "`{op}` tests substrings, so its value must be a quoted string"
        )));
    }
    if op.is_ordering() && matches!(value, CompValue::Bool(_) | CompValue::Null) {
        *input = value_start;
        return Err(problem(format!(
            "`{op}` orders values; it cannot compare with {value}"
        )));
    }
    Ok(Filter::Compare { path, op, value })
}

/// `attrPath = [URI ":"] ATTRNAME *1subAttr`.
///
/// Takes the longest run of path characters, then splits it at the last `:`:
/// whatever precedes is the schema URN (which contains colons and dots of its
/// own, e.g. `urn:ietf:params:scim:schemas:core:2.0:User`).
fn attr_path(input: &mut &str) -> ModalResult<AttrPath> {
    let start = *input;
    let token: &str = take_while(0.., is_path_char).parse_next(input)?;
    if token.is_empty() {
        return Err(expected("an attribute name"));
    }
    split_attr_path(token).map_err(|message| {
        *input = start;
        problem(message)
    })
}

fn split_attr_path(token: &str) -> Result<AttrPath, String> {
    let (urn, rest) = match token.rfind(':') {
        Some(colon) => (Some(&token[..colon]), &token[colon + 1..]),
        None => (None, token),
    };
    if let Some(urn) = urn {
        check_urn(urn)?;
    }
    if rest.is_empty() {
        return Err(format!("expected an attribute name after `{token}`"));
    }
    let mut names = rest.split('.');
    let name = names.next().unwrap_or_default();
    let sub = names.next();
    if names.next().is_some() {
        return Err(format!(
            "`{rest}` has too many parts: SCIM paths go at most one sub-attribute deep"
        ));
    }
    check_attr_name(name)?;
    if let Some(sub) = sub {
        check_attr_name(sub)?;
    }
    Ok(AttrPath {
        urn: urn.map(str::to_owned),
        name: name.to_owned(),
        sub: sub.map(str::to_owned),
    })
}

/// A schema URI: a scheme, then colon-separated segments, none empty. (The
/// ABNF allows any RFC 3986 URI; SCIM schema URNs use only these characters.)
fn check_urn(urn: &str) -> Result<(), String> {
    let starts_with_letter = urn.starts_with(|c: char| c.is_ascii_alphabetic());
    let well_formed = starts_with_letter
        && urn.contains(':')
        && !urn.contains('$')
        && urn.split(':').all(|segment| !segment.is_empty());
    if well_formed {
        Ok(())
    } else {
        Err(format!("`{urn}` is not a schema URN"))
    }
}

/// `ATTRNAME = ALPHA *(nameChar)`, or `$ref`.
fn check_attr_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("expected an attribute name after `.`".to_owned());
    }
    if name.eq_ignore_ascii_case("$ref") {
        return Ok(());
    }
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !starts_with_letter {
        return Err(format!(
            "`{name}` is not an attribute name: names start with a letter"
        ));
    }
    if let Some(bad) = chars.find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
        return Err(format!(
            "`{name}` is not an attribute name: `{bad}` is not allowed"
        ));
    }
    Ok(())
}

/// The `subAttr` after a PATCH value path: `emails[type eq "work"].value`.
fn sub_attr_name(input: &mut &str) -> ModalResult<String> {
    let start = *input;
    let name: &str = take_while(0.., is_path_char).parse_next(input)?;
    if name.is_empty() {
        return Err(expected("a sub-attribute name after `.`"));
    }
    check_attr_name(name).map_err(|message| {
        *input = start;
        problem(message)
    })?;
    Ok(name.to_owned())
}

/// `compValue = false / null / true / number / string` (JSON, RFC 8259).
/// The literals are accepted in any case, as the operators are.
fn comp_value(input: &mut &str) -> ModalResult<CompValue> {
    match input.chars().next() {
        Some('"') => json_string(input).map(CompValue::String),
        Some(c) if c == '-' || c.is_ascii_digit() => json_number(input).map(CompValue::Number),
        Some(c) if c.is_ascii_alphabetic() => {
            let start = *input;
            let word: &str = take_while(1.., is_name_char).parse_next(input)?;
            if word.eq_ignore_ascii_case("true") {
                Ok(CompValue::Bool(true))
            } else if word.eq_ignore_ascii_case("false") {
                Ok(CompValue::Bool(false))
            } else if word.eq_ignore_ascii_case("null") {
                Ok(CompValue::Null)
            } else {
                *input = start;
                Err(problem(format!(
                    "`{word}` is not a value: strings are quoted, e.g. \"{word}\""
                )))
            }
        }
        _ => Err(expected(
            "a value: a quoted string, a number, true, false or null",
        )),
    }
}

/// `number = [ minus ] int [ frac ] [ exp ]` of RFC 8259 §6.
fn json_number(input: &mut &str) -> ModalResult<serde_json::Number> {
    let start = *input;
    let text: &str = (
        opt('-'),
        cut_err(alt(("0", (one_of('1'..='9'), digit0).take()))).context("digits"),
        opt(('.', cut_err(digit1).context("digits"))),
        opt((
            one_of(['e', 'E']),
            opt(one_of(['+', '-'])),
            cut_err(digit1).context("digits"),
        )),
    )
        .take()
        .parse_next(input)?;
    if input.starts_with(|c: char| is_path_char(c) || c == '"') {
        let junk: String = input.chars().take_while(|&c| is_path_char(c)).collect();
        *input = start;
        return Err(problem(format!("`{text}{junk}` is not a number")));
    }
    number_from_json_text(text).ok_or_else(|| {
        *input = start;
        problem(format!("the number {text} is out of range"))
    })
}

/// Integers as integers while they fit i64/u64, as serde_json reads them;
/// anything else through `f64::from_str`, which rounds correctly (serde_json
/// without its `float_roundtrip` feature may be off by one unit in the last
/// place, and the canonical text must read back as the same number).
fn number_from_json_text(text: &str) -> Option<serde_json::Number> {
    let is_integer = !text.contains(['.', 'e', 'E']);
    if is_integer {
        if let Ok(unsigned) = text.parse::<u64>() {
            return Some(unsigned.into());
        }
        if let Ok(signed) = text.parse::<i64>() {
            return Some(signed.into());
        }
    }
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
}

/// A JSON string with its escapes decoded, surrogate pairs included.
fn json_string(input: &mut &str) -> ModalResult<String> {
    let start = *input;
    *input = &input[1..];
    let mut text = String::new();
    loop {
        // RFC 8259 §7: anything but `"`, `\` and control characters stands
        // for itself.
        let plain: &str =
            take_while(0.., |c: char| c != '"' && c != '\\' && c >= ' ').parse_next(input)?;
        text.push_str(plain);
        match input.chars().next() {
            None => {
                *input = start;
                return Err(problem("this string has no closing `\"`"));
            }
            Some('"') => {
                *input = &input[1..];
                return Ok(text);
            }
            Some('\\') => text.push(escape(input)?),
            Some(control) => {
                return Err(problem(format!(
                    "control character U+{:04X} must be escaped in a string",
                    u32::from(control)
                )));
            }
        }
    }
}

/// One escape, at its backslash.
fn escape(input: &mut &str) -> ModalResult<char> {
    let start = *input;
    *input = &input[1..];
    let Some(letter) = input.chars().next() else {
        *input = start;
        return Err(problem("this string has no closing `\"`"));
    };
    *input = &input[letter.len_utf8()..];
    let decoded = match letter {
        '"' => '"',
        '\\' => '\\',
        '/' => '/',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'u' => unicode_escape(input, start)?,
        other => {
            *input = start;
            return Err(problem(format!(
                "`\\{other}` is not a JSON escape; use \\\" \\\\ \\/ \\b \\f \\n \\r \\t or \\uXXXX"
            )));
        }
    };
    Ok(decoded)
}

/// The `XXXX` of `\uXXXX`, and its low surrogate if it is a high one.
fn unicode_escape<'i>(input: &mut &'i str, escape_start: &'i str) -> ModalResult<char> {
    let unpaired = |input: &mut &'i str| {
        *input = escape_start;
        problem("unpaired UTF-16 surrogate in a `\\u` escape")
    };
    let unit = hex4(input, escape_start)?;
    match unit {
        0xD800..=0xDBFF => {
            if !input.starts_with("\\u") {
                return Err(unpaired(input));
            }
            *input = &input[2..];
            let low = hex4(input, escape_start)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return Err(unpaired(input));
            }
            let scalar = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
            char::from_u32(scalar).ok_or_else(|| unpaired(input))
        }
        0xDC00..=0xDFFF => Err(unpaired(input)),
        _ => char::from_u32(unit).ok_or_else(|| unpaired(input)),
    }
}

fn hex4<'i>(input: &mut &'i str, escape_start: &'i str) -> ModalResult<u32> {
    let digits: Option<&str> = opt(take(4usize)).parse_next(input)?;
    match digits {
        Some(digits) if digits.chars().all(|c| c.is_ascii_hexdigit()) => {
            u32::from_str_radix(digits, 16).map_err(|_| expected("four hex digits"))
        }
        _ => {
            *input = escape_start;
            Err(problem("`\\u` needs four hex digits"))
        }
    }
}
