//! Locales, message catalogues and locale negotiation.
//!
//! Catalogues are TOML files with one `key = "text"` line per message. Dotted keys
//! (`sign_in.title = "…"`) are read back as the flat key `"sign_in.title"`, so the
//! files stay one flat list even though TOML models dots as nesting.

use std::collections::BTreeMap;

use serde::Serialize;

use super::UiError;

/// A language the end-user pages are available in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Locale {
    /// The primary language subtag: `"en"` or `"de"`.
    pub code: &'static str,
}

impl Locale {
    pub const EN: Locale = Locale { code: "en" };
    pub const DE: Locale = Locale { code: "de" };
    /// Every supported locale, the fallback (English) first.
    pub const ALL: &'static [Locale] = &[Locale::EN, Locale::DE];

    /// The supported locale for a language tag (`"de"`, `"de-CH"`, `"DE_ch"`), by its
    /// primary subtag; `None` for anything unsupported or malformed.
    pub fn from_tag(tag: &str) -> Option<Locale> {
        let primary = tag.trim().split(['-', '_']).next()?;
        if primary.is_empty()
            || primary.len() > 8
            || !primary.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return None;
        }
        Locale::ALL
            .iter()
            .find(|locale| locale.code.eq_ignore_ascii_case(primary))
            .cloned()
    }
}

impl Default for Locale {
    fn default() -> Self {
        Locale::EN
    }
}

/// At most this many Accept-Language entries are looked at; the header is untrusted.
const MAX_ACCEPT_LANGUAGE_ENTRIES: usize = 32;

/// `?lang=` wins, then the cookie, then Accept-Language; English when none names a
/// supported locale. An unsupported value at one step falls through to the next.
pub(crate) fn negotiate(
    query_lang: Option<&str>,
    cookie_lang: Option<&str>,
    accept_language: Option<&str>,
) -> Locale {
    query_lang
        .and_then(Locale::from_tag)
        .or_else(|| cookie_lang.and_then(Locale::from_tag))
        .or_else(|| accept_language.and_then(from_accept_language))
        .unwrap_or_default()
}

/// The best supported locale in an Accept-Language header: highest q-value first,
/// header order among equals; `q=0` means "not acceptable".
fn from_accept_language(header: &str) -> Option<Locale> {
    let mut best: Option<(u16, Locale)> = None;
    for entry in header.split(',').take(MAX_ACCEPT_LANGUAGE_ENTRIES) {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or_default();
        let mut quality = Some(1000);
        for parameter in parts {
            let parameter = parameter.trim();
            if let Some((name, value)) = parameter.split_once('=')
                && name.trim().eq_ignore_ascii_case("q")
            {
                quality = parse_quality(value.trim());
            }
        }
        let Some(quality) = quality.filter(|q| *q > 0) else {
            continue;
        };
        let Some(locale) = Locale::from_tag(tag) else {
            continue;
        };
        if best
            .as_ref()
            .is_none_or(|(best_quality, _)| quality > *best_quality)
        {
            best = Some((quality, locale));
        }
    }
    best.map(|(_, locale)| locale)
}

/// An RFC 9110 qvalue (`0`, `0.5`, `1.000`) in thousandths; `None` when malformed.
fn parse_quality(value: &str) -> Option<u16> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (position, digit) in fraction.bytes().enumerate() {
        let scale = [100, 10, 1][position];
        thousandths += u16::from(digit - b'0') * scale;
    }
    let quality = whole + thousandths;
    (quality <= 1000).then_some(quality)
}

/// Every locale's messages.
#[derive(Debug)]
pub(crate) struct Catalogues {
    messages: BTreeMap<&'static str, BTreeMap<String, String>>,
}

impl Catalogues {
    /// Parses one TOML catalogue per locale.
    pub(crate) fn parse(sources: &[(Locale, &str)]) -> Result<Catalogues, UiError> {
        let mut messages = BTreeMap::new();
        for (locale, source) in sources {
            let table: toml::Table = toml::from_str(source).map_err(|e| UiError::Catalogue {
                locale: locale.code,
                message: e.to_string(),
            })?;
            let mut flat = BTreeMap::new();
            flatten(locale.code, "", &table, &mut flat)?;
            messages.insert(locale.code, flat);
        }
        if !messages.contains_key(Locale::EN.code) {
            return Err(UiError::Catalogue {
                locale: Locale::EN.code,
                message: "the English catalogue is required (it is the fallback)".into(),
            });
        }
        Ok(Catalogues { messages })
    }

    /// The message in `locale` only.
    pub(crate) fn lookup(&self, locale: &Locale, key: &str) -> Option<&str> {
        self.messages
            .get(locale.code)
            .and_then(|messages| messages.get(key))
            .map(String::as_str)
    }

    /// The message in `locale`, else in English, else the key itself (so a missing
    /// message shows up on the page instead of breaking it).
    pub(crate) fn translate(&self, locale: &Locale, key: &str) -> String {
        self.lookup(locale, key)
            .or_else(|| self.lookup(&Locale::EN, key))
            .unwrap_or(key)
            .to_owned()
    }

    #[cfg(test)]
    pub(crate) fn keys(&self, locale: &Locale) -> Vec<&str> {
        self.messages
            .get(locale.code)
            .map(|messages| messages.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

fn flatten(
    locale: &'static str,
    prefix: &str,
    table: &toml::Table,
    out: &mut BTreeMap<String, String>,
) -> Result<(), UiError> {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::String(text) => {
                out.insert(key, text.clone());
            }
            toml::Value::Table(inner) => flatten(locale, &key, inner, out)?,
            other => {
                return Err(UiError::Catalogue {
                    locale,
                    message: format!("{key}: expected a string, found a {}", other.type_str()),
                });
            }
        }
    }
    Ok(())
}

/// Replaces `{name}` with `value(name)`; placeholders without a value stay as they are.
pub(crate) fn interpolate(text: &str, mut value: impl FnMut(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let replaced = after.find('}').and_then(|close| {
            let name = &after[..close];
            let is_name =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            is_name.then(|| value(name)).flatten().map(|v| (v, close))
        });
        match replaced {
            Some((value, close)) => {
                out.push_str(&value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `{name}` placeholders in a message, sorted (tests compare them across locales).
#[cfg(test)]
pub(crate) fn placeholders(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let _ = interpolate(text, |name| {
        names.push(name.to_owned());
        None
    });
    names.sort();
    names
}
