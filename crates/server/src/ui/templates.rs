//! The built-in templates and the minijinja environments that render them.
//!
//! One environment holds the built-in templates. Each tenant template directory gets
//! its own environment whose loader looks in that directory first and falls back to
//! the built-in source, so `{% extends "layout.html" %}` picks up an overridden
//! layout when there is one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use minijinja::value::{Kwargs, Value};
use minijinja::{
    AutoEscape, Environment, Error, ErrorKind, Output, State, TemplateSource, UndefinedBehavior,
    escape_formatter,
};

use super::i18n::{Catalogues, Locale, interpolate};

/// The context variable holding the page's locale code; `t()` reads it.
pub(crate) const LANG_VARIABLE: &str = "lang";

/// Override files larger than this are refused rather than compiled.
const MAX_TEMPLATE_BYTES: u64 = 256 * 1024;

macro_rules! builtin {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../../../../web/themes/default/templates/", $name)),
        )
    };
}

/// Every built-in template, by name.
pub(crate) const BUILTIN: &[(&str, &str)] = &[
    builtin!("layout.html"),
    builtin!("sign_in.html"),
    builtin!("sign_up.html"),
    builtin!("check_email.html"),
    builtin!("message.html"),
    builtin!("account.html"),
    builtin!("error.html"),
    builtin!("setup.html"),
    builtin!("consent.html"),
    builtin!("form_post.html"),
    builtin!("federation_redirect.html"),
    builtin!("federation_confirm.html"),
    builtin!("logout.html"),
    builtin!("second_factor.html"),
    builtin!("security.html"),
    builtin!("apps.html"),
    builtin!("totp_enrol.html"),
    builtin!("recovery_codes.html"),
    builtin!("recover.html"),
    // Mail bodies (text), one per `gatehouse_authn::MailKind`.
    builtin!("mail_verify_email.txt"),
    builtin!("mail_already_registered.txt"),
    builtin!("mail_look_alike_address.txt"),
    builtin!("mail_verify_new_email.txt"),
    builtin!("mail_confirm_link.txt"),
    builtin!("mail_email_change_requested.txt"),
    builtin!("mail_password_reset.txt"),
    builtin!("mail_admin_reset.txt"),
    builtin!("mail_invitation.txt"),
    builtin!("mail_factor_recovery.txt"),
    builtin!("mail_sign_in_changed.txt"),
    // The HTML part of every mail, made from its text.
    builtin!("mail.html"),
];

fn builtin_source(name: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, source)| *source)
}

/// A plain file name: letters, digits, `_`, `-` and `.`, no leading dot, no `..`.
/// Anything else (paths, traversal) is never looked up on disk.
pub(crate) fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// An environment with the settings and functions every template relies on.
fn base_environment(catalogues: Arc<Catalogues>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") || name.ends_with(".htm") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    // Optional values may be missing and tested with `if`; printing a missing value
    // is an error, so a misspelt variable does not silently render as nothing.
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_formatter(html_formatter);
    env.add_function(
        "t",
        move |state: &State, key: &str, kwargs: Kwargs| -> Result<String, Error> {
            let locale = state
                .lookup(LANG_VARIABLE)
                .and_then(|lang| lang.as_str().and_then(Locale::from_tag))
                .unwrap_or_default();
            // In the page's language the tenant's words (theme.messages), then the
            // catalogue's; only then English, the tenant's and then the catalogue's.
            let text = tenant_message(state, locale.code, key)
                .or_else(|| catalogues.lookup(&locale, key).map(str::to_owned))
                .or_else(|| tenant_message(state, Locale::EN.code, key))
                .unwrap_or_else(|| catalogues.translate(&locale, key));
            Ok(interpolate(&text, |name| {
                kwargs
                    .get::<Option<Value>>(name)
                    .ok()
                    .flatten()
                    .filter(|value| !value.is_undefined())
                    .map(|value| value.to_string())
            }))
        },
    );
    env
}

/// `theme.messages[code][key]` from the page's context, if the tenant set it.
fn tenant_message(state: &State, code: &str, key: &str) -> Option<String> {
    let text = state
        .lookup("theme")?
        .get_attr("messages")
        .ok()?
        .get_item(&Value::from(code))
        .ok()?
        .get_item(&Value::from(key))
        .ok()?;
    text.as_str().map(str::to_owned)
}

/// Prints `none` as nothing and escapes HTML with the five entities HTML needs
/// (`& < > " '`). minijinja's own escaper also turns `/` into `&#x2f;`, which is
/// valid but makes every URL in the markup unreadable.
fn html_formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    if value.is_none() {
        return Ok(());
    }
    if matches!(state.auto_escape(), AutoEscape::Html) && !value.is_safe() {
        return escape_html(out, &value.to_string()).map_err(Error::from);
    }
    escape_formatter(out, state, value)
}

pub(crate) fn escape_html(out: &mut impl std::fmt::Write, text: &str) -> std::fmt::Result {
    let mut unwritten = 0;
    for (index, c) in text.char_indices() {
        let entity = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#39;",
            _ => continue,
        };
        out.write_str(&text[unwritten..index])?;
        out.write_str(entity)?;
        unwritten = index + c.len_utf8();
    }
    out.write_str(&text[unwritten..])
}

/// The environment with the built-in templates.
pub(crate) fn builtin_environment(
    catalogues: Arc<Catalogues>,
) -> Result<Environment<'static>, Error> {
    let mut env = base_environment(catalogues);
    for (name, source) in BUILTIN {
        env.add_template(name, source)?;
    }
    Ok(env)
}

/// The environment for one override directory. Templates are read on first use and
/// re-read when the file changes, appears or disappears.
pub(crate) fn override_environment(
    catalogues: Arc<Catalogues>,
    dir: PathBuf,
) -> Environment<'static> {
    let mut env = base_environment(catalogues);
    env.set_loader(move |name| load_override(&dir, name));
    env
}

fn load_override(dir: &Path, name: &str) -> Result<Option<TemplateSource>, Error> {
    if !is_safe_name(name) {
        return Ok(None);
    }
    let path = dir.join(name);
    match read_template(&path) {
        Ok(Some((source, modified))) => Ok(Some(
            TemplateSource::new(source)
                .with_uptodate_check(move || modified_time(&path) == modified),
        )),
        Ok(None) => Ok(builtin_source(name)
            .map(|source| TemplateSource::new(source).with_uptodate_check(move || !path.exists()))),
        Err(e) => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot read template override {}: {e}", path.display()),
        )),
    }
}

/// The file's text and modification time; `None` when there is no such file.
fn read_template(path: &Path) -> io::Result<Option<(String, Option<SystemTime>)>> {
    let metadata = match fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !metadata.is_file() {
        return Ok(None);
    }
    if metadata.len() > MAX_TEMPLATE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_TEMPLATE_BYTES} bytes"),
        ));
    }
    let source = fs::read_to_string(path)?;
    Ok(Some((source, metadata.modified().ok())))
}

fn modified_time(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}
