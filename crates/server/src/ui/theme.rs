//! Per-tenant theme settings: colours, logo, custom CSS and template overrides.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, PathBuf};

use serde::{Deserialize, Serialize};

use gatehouse_core::tenant_settings::TenantSettings;

use super::{Locale, UiError};

/// Blue 700: 6.7:1 against white, so white button text and blue links both pass AA.
pub const DEFAULT_PRIMARY_COLOR: &str = "#1d4ed8";
pub const DEFAULT_BACKGROUND_COLOR: &str = "#ffffff";
/// Grey 800: 14.7:1 against white.
pub const DEFAULT_TEXT_COLOR: &str = "#1f2937";

/// The key under which a tenant's settings JSON holds its theme.
pub const SETTINGS_KEY: &str = "theme";

const MAX_DISPLAY_NAME_CHARS: usize = 200;
const MAX_LOGO_URL_BYTES: usize = 2048;
const MAX_CUSTOM_CSS_BYTES: usize = 64 * 1024;
/// Per-tenant messages: at most this many in all, each at most this long.
const MAX_MESSAGES: usize = 500;
const MAX_MESSAGE_CHARS: usize = 1000;

/// How a tenant's pages look. Stored in the tenant's settings JSON under `"theme"`;
/// every field is optional and unknown fields are rejected (they are typos).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ThemeSettings {
    /// Shown in the header and page titles instead of the tenant's name.
    pub display_name: Option<String>,
    /// `https://…` or a same-origin path starting with `/`.
    pub logo_url: Option<String>,
    /// `#rgb` or `#rrggbb`: buttons, links and focus rings.
    pub primary_color: String,
    pub background_color: String,
    pub text_color: String,
    /// Appended to `theme.css` after the generated custom properties.
    pub custom_css: Option<String>,
    /// An absolute directory whose templates replace the built-in ones of the same name.
    pub template_dir: Option<PathBuf>,
    /// This tenant's own words: language code → catalogue key → text. They win over
    /// the built-in catalogues (`scope.loyalty` describes a tenant's own scope).
    pub messages: BTreeMap<String, BTreeMap<String, String>>,
}

impl Default for ThemeSettings {
    fn default() -> Self {
        ThemeSettings {
            display_name: None,
            logo_url: None,
            primary_color: DEFAULT_PRIMARY_COLOR.to_owned(),
            background_color: DEFAULT_BACKGROUND_COLOR.to_owned(),
            text_color: DEFAULT_TEXT_COLOR.to_owned(),
            custom_css: None,
            template_dir: None,
            messages: BTreeMap::new(),
        }
    }
}

impl ThemeSettings {
    /// Reads and validates the `"theme"` entry of a tenant's settings; the defaults
    /// when there is none (or it is `null`).
    pub fn from_tenant_settings(settings: &TenantSettings) -> Result<ThemeSettings, UiError> {
        match &settings.theme {
            None | Some(serde_json::Value::Null) => Ok(ThemeSettings::default()),
            Some(value) => ThemeSettings::deserialize_checked(value),
        }
    }

    /// A theme given as JSON, checked as one about to be saved: unknown fields and
    /// invalid values are refused.
    pub fn deserialize_checked(value: &serde_json::Value) -> Result<ThemeSettings, UiError> {
        let theme =
            ThemeSettings::deserialize(value).map_err(|e| UiError::InvalidTheme(e.to_string()))?;
        theme.validate()?;
        Ok(theme)
    }

    /// Reads the `"theme"` entry field by field: a field that is misspelt, mistyped or
    /// invalid is left at its default and named in the problems, and the rest of the
    /// theme still applies (one typo must not drop the tenant's whole look).
    pub fn read_lenient(settings: &TenantSettings) -> (ThemeSettings, Vec<String>) {
        let mut theme = ThemeSettings::default();
        let mut problems = Vec::new();
        let map = match &settings.theme {
            None | Some(serde_json::Value::Null) => return (theme, problems),
            Some(serde_json::Value::Object(map)) => map,
            Some(other) => {
                problems.push(format!("the theme must be an object, not {other}"));
                return (theme, problems);
            }
        };
        for (name, value) in map {
            let single =
                serde_json::Value::Object([(name.clone(), value.clone())].into_iter().collect());
            // One field at a time, with every other field at its (valid) default.
            let parsed = ThemeSettings::deserialize(&single)
                .map_err(|e| e.to_string())
                .and_then(|one| one.validate().map(|()| one).map_err(|e| e.to_string()));
            match parsed {
                Ok(one) => theme.take_field(name, one),
                Err(error) => problems.push(error),
            }
        }
        (theme, problems)
    }

    fn take_field(&mut self, name: &str, from: ThemeSettings) {
        match name {
            "display_name" => self.display_name = from.display_name,
            "logo_url" => self.logo_url = from.logo_url,
            "primary_color" => self.primary_color = from.primary_color,
            "background_color" => self.background_color = from.background_color,
            "text_color" => self.text_color = from.text_color,
            "custom_css" => self.custom_css = from.custom_css,
            "template_dir" => self.template_dir = from.template_dir,
            "messages" => self.messages = from.messages,
            _ => {}
        }
    }

    /// Checks every field that ends up in CSS or HTML attributes.
    pub fn validate(&self) -> Result<(), UiError> {
        for (field, value) in [
            ("primary_color", &self.primary_color),
            ("background_color", &self.background_color),
            ("text_color", &self.text_color),
        ] {
            if parse_color(value).is_none() {
                return Err(UiError::InvalidTheme(format!(
                    "{field} must be a colour written as #rgb or #rrggbb, not {value:?}"
                )));
            }
        }
        if let Some(name) = &self.display_name
            && !display_name_ok(name)
        {
            return Err(UiError::InvalidTheme(format!(
                "display_name must be 1 to {MAX_DISPLAY_NAME_CHARS} characters without control characters"
            )));
        }
        if let Some(url) = &self.logo_url
            && !logo_url_ok(url)
        {
            return Err(UiError::InvalidTheme(format!(
                "logo_url must start with https:// or with a single / (a path on this server), not {url:?}"
            )));
        }
        if let Some(css) = &self.custom_css
            && !custom_css_ok(css)
        {
            return Err(UiError::InvalidTheme(format!(
                "custom_css must be at most {MAX_CUSTOM_CSS_BYTES} bytes without NUL characters"
            )));
        }
        if !messages_ok(&self.messages) {
            return Err(UiError::InvalidTheme(format!(
                "messages must map a supported language code to keys (letters, digits, \"_\", \".\") and texts of at most {MAX_MESSAGE_CHARS} characters without control characters, at most {MAX_MESSAGES} in all"
            )));
        }
        if let Some(dir) = &self.template_dir
            && !template_dir_ok(dir)
        {
            return Err(UiError::InvalidTheme(format!(
                "template_dir must be an absolute path without \"..\", not {:?}",
                dir.display().to_string()
            )));
        }
        Ok(())
    }

    /// A copy safe to render even if it was never validated: each invalid field is
    /// replaced by its default (colours) or dropped (everything else).
    pub(crate) fn sanitized(&self) -> ThemeSettings {
        let color = |value: &str, default: &str| {
            if parse_color(value).is_some() {
                value.to_ascii_lowercase()
            } else {
                tracing::warn!(value, "ignoring an invalid theme colour");
                default.to_owned()
            }
        };
        ThemeSettings {
            display_name: self.display_name.clone().filter(|n| display_name_ok(n)),
            logo_url: self.logo_url.clone().filter(|u| logo_url_ok(u)),
            primary_color: color(&self.primary_color, DEFAULT_PRIMARY_COLOR),
            background_color: color(&self.background_color, DEFAULT_BACKGROUND_COLOR),
            text_color: color(&self.text_color, DEFAULT_TEXT_COLOR),
            custom_css: self.custom_css.clone().filter(|c| custom_css_ok(c)),
            template_dir: self.template_dir.clone().filter(|d| template_dir_ok(d)),
            messages: if messages_ok(&self.messages) {
                self.messages.clone()
            } else {
                BTreeMap::new()
            },
        }
    }
}

/// The stylesheet served at `{base_path}/theme.css`.
pub(crate) fn theme_css(theme: &ThemeSettings) -> String {
    let theme = theme.sanitized();
    let on_primary = parse_color(&theme.primary_color)
        .map(best_text_on)
        .unwrap_or("#ffffff");
    let mut css = String::from("/* Generated from the tenant's theme settings. */\n:root {\n");
    for (property, value) in [
        ("--gh-primary", theme.primary_color.as_str()),
        ("--gh-on-primary", on_primary),
        ("--gh-bg", theme.background_color.as_str()),
        ("--gh-text", theme.text_color.as_str()),
    ] {
        let _ = writeln!(css, "  {property}: {value};");
    }
    css.push_str("}\n");
    if let Some(custom) = theme.custom_css.as_deref().filter(|c| !c.trim().is_empty()) {
        css.push_str("\n/* Tenant custom CSS */\n");
        css.push_str(custom);
        if !custom.ends_with('\n') {
            css.push('\n');
        }
    }
    css
}

/// `#rgb` or `#rrggbb` (either case) as 8-bit channels; nothing else is a colour here,
/// so a value can never break out of its CSS declaration.
pub(crate) fn parse_color(value: &str) -> Option<[u8; 3]> {
    let hex = value.strip_prefix('#')?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let channel = |digits: &str| u8::from_str_radix(digits, 16).ok();
    match hex.len() {
        // #abc is #aabbcc: each digit times 0x11.
        3 => Some([
            channel(hex.get(0..1)?)? * 17,
            channel(hex.get(1..2)?)? * 17,
            channel(hex.get(2..3)?)? * 17,
        ]),
        6 => Some([
            channel(hex.get(0..2)?)?,
            channel(hex.get(2..4)?)?,
            channel(hex.get(4..6)?)?,
        ]),
        _ => None,
    }
}

/// WCAG 2 relative luminance.
pub(crate) fn relative_luminance([r, g, b]: [u8; 3]) -> f64 {
    let linear = |channel: u8| {
        let c = f64::from(channel) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
}

/// WCAG 2 contrast ratio, from 1 (none) to 21 (black on white).
pub(crate) fn contrast_ratio(a: [u8; 3], b: [u8; 3]) -> f64 {
    let (la, lb) = (relative_luminance(a), relative_luminance(b));
    let (lighter, darker) = if la >= lb { (la, lb) } else { (lb, la) };
    (lighter + 0.05) / (darker + 0.05)
}

/// White or black, whichever reads better on `background` (button text on the
/// primary colour, so a light brand colour still gets legible buttons).
pub(crate) fn best_text_on(background: [u8; 3]) -> &'static str {
    if contrast_ratio(background, [255, 255, 255]) >= contrast_ratio(background, [0, 0, 0]) {
        "#ffffff"
    } else {
        "#000000"
    }
}

fn display_name_ok(name: &str) -> bool {
    let count = name.chars().count();
    (1..=MAX_DISPLAY_NAME_CHARS).contains(&count)
        && !name.trim().is_empty()
        && !name.chars().any(char::is_control)
}

fn logo_url_ok(url: &str) -> bool {
    if url.len() > MAX_LOGO_URL_BYTES
        || url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return false;
    }
    if let Some(rest) = url.strip_prefix("https://") {
        // A host must follow; "https:///x" would be a path after all.
        return rest
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '[');
    }
    // "//host/…" is protocol-relative, i.e. another origin.
    url.starts_with('/') && !url.starts_with("//")
}

fn custom_css_ok(css: &str) -> bool {
    css.len() <= MAX_CUSTOM_CSS_BYTES && !css.contains('\0')
}

/// The tenant's messages: known languages, catalogue-shaped keys, bounded text.
fn messages_ok(messages: &BTreeMap<String, BTreeMap<String, String>>) -> bool {
    let total: usize = messages.values().map(BTreeMap::len).sum();
    total <= MAX_MESSAGES
        && messages.iter().all(|(code, texts)| {
            Locale::ALL.iter().any(|locale| locale.code == code)
                && texts.iter().all(|(key, text)| {
                    (1..=128).contains(&key.len())
                        && key
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'))
                        && text.chars().count() <= MAX_MESSAGE_CHARS
                        && !text.chars().any(char::is_control)
                })
        })
}

fn template_dir_ok(dir: &std::path::Path) -> bool {
    dir.is_absolute() && !dir.components().any(|c| matches!(c, Component::ParentDir))
}
