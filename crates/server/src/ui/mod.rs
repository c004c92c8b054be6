//! The presentation layer of the end-user pages and of mail: templates, translations,
//! per-tenant themes and the static files they need. Handlers build a [`PageCommon`]
//! plus a page-specific context and call [`Ui::render`]; authn's mail goes through
//! [`Ui::render_mail`] (`Ui` is its `MailRenderer`). Nothing here touches HTTP.
//!
//! Operators' view of this module (settings, overrides, languages) is
//! `docs/theming.md`.

mod assets;
mod i18n;
mod mail;
mod templates;
mod theme;

#[cfg(test)]
mod mail_tests;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind};
use serde::Serialize;

pub use assets::Asset;
pub use i18n::Locale;
pub use mail::RenderedMail;
pub use theme::{
    DEFAULT_BACKGROUND_COLOR, DEFAULT_PRIMARY_COLOR, DEFAULT_TEXT_COLOR,
    SETTINGS_KEY as THEME_SETTINGS_KEY, ThemeSettings,
};

use i18n::Catalogues;

/// The embedded catalogues, one per [`Locale::ALL`] entry.
const CATALOGUES: &[(Locale, &str)] = &[
    (Locale::EN, include_str!("../../../../web/i18n/en.toml")),
    (Locale::DE, include_str!("../../../../web/i18n/de.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("message catalogue {locale:?}: {message}")]
    Catalogue {
        locale: &'static str,
        message: String,
    },
    #[error("invalid theme settings: {0}")]
    InvalidTheme(String),
    #[error("no template named {0:?}")]
    UnknownTemplate(String),
    #[error("page context: {0}")]
    Context(String),
    /// Compiling or rendering failed. The message names template and line; it leaves
    /// out minijinja's debug dump of the context, which would include the CSRF token.
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
}

/// What every page needs; the handlers fill it in.
#[derive(Serialize, Clone, Debug, Default)]
pub struct PageCommon {
    /// The tenant's display name (the theme's `display_name` wins when set).
    pub tenant_name: String,
    /// `""` for the default or a host-routed tenant, `"/t/acme"` for a path-routed one.
    pub base_path: String,
    pub locale: Locale,
    /// The path of this page without query.
    pub current_path: String,
    /// The query this page can be opened again with, `lang` left out; `None` when it
    /// cannot be (the answer to a form post), and then no language switcher is shown:
    /// its link would lose the page (a POST-only URL, recovery codes shown once).
    pub reopen_query: Option<String>,
    /// Put into every POST form as `csrf_token`.
    pub csrf_token: String,
    /// For any `<script>`/`<style>` element a template adds (the built-in ones add none).
    pub csp_nonce: String,
    pub theme: ThemeSettings,
    /// Display name or email of the signed-in user: the header then shows it and a
    /// sign-out button.
    pub signed_in_as: Option<String>,
}

/// This page again in `code`: the same path and query (an authorization request's
/// parameters, a `return_to`), with `lang` set; the page then keeps it in a cookie.
pub(crate) fn language_href(path: &str, query: &str, code: &str) -> String {
    let mut href = format!("{path}?");
    if !query.is_empty() {
        href.push_str(query);
        href.push('&');
    }
    href.push_str("lang=");
    href.push_str(code);
    href
}

/// Renders the end-user pages. Cheap to clone.
#[derive(Clone)]
pub struct Ui {
    inner: Arc<Inner>,
}

struct Inner {
    catalogues: Arc<Catalogues>,
    builtin: Arc<Environment<'static>>,
    /// One environment per template override directory, created on first use.
    overrides: Mutex<HashMap<PathBuf, Arc<Environment<'static>>>>,
    /// Theme and template problems already logged: the operator hears of each once,
    /// not once per request.
    warned: Mutex<HashSet<String>>,
}

/// At most this many distinct problems are remembered; past it the memory starts
/// over (and a problem may be logged once more), so it cannot grow without bound.
const MAX_WARNED: usize = 4096;

impl fmt::Debug for Ui {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let override_dirs = self
            .inner
            .overrides
            .lock()
            .map_or(0, |overrides| overrides.len());
        f.debug_struct("Ui")
            .field("locales", &Locale::ALL)
            .field("override_dirs", &override_dirs)
            .finish_non_exhaustive()
    }
}

impl Ui {
    /// The built-in theme and catalogues, embedded in the binary.
    pub fn embedded() -> Result<Ui, UiError> {
        let catalogues = Arc::new(Catalogues::parse(CATALOGUES)?);
        let builtin = templates::builtin_environment(Arc::clone(&catalogues))?;
        Ok(Ui {
            inner: Arc::new(Inner {
                catalogues,
                builtin: Arc::new(builtin),
                overrides: Mutex::new(HashMap::new()),
                warned: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// Renders `template` (e.g. `"sign_in.html"`) with `common` and the page-specific
    /// `page` context (a struct or map). Common fields win over page fields of the same
    /// name. The tenant's template directory, when set, is searched first.
    pub fn render<S: Serialize>(
        &self,
        template: &str,
        common: &PageCommon,
        page: &S,
    ) -> Result<String, UiError> {
        if !templates::is_safe_name(template) {
            return Err(UiError::UnknownTemplate(template.to_owned()));
        }
        let theme = common.theme.sanitized();
        let context = self.context(common, &theme, page)?;
        let render = |env: &Environment<'static>| {
            env.get_template(template)
                .and_then(|compiled| compiled.render(&context))
        };
        let builtin_error = |e: minijinja::Error| match e.kind() {
            ErrorKind::TemplateNotFound => UiError::UnknownTemplate(template.to_owned()),
            _ => UiError::Template(e),
        };
        match (render(&self.environment(&theme)), &theme.template_dir) {
            (Ok(html), _) => Ok(html),
            // A broken override (syntax, an unknown variable, an include it may not
            // reach) must not take the page down: the built-in template serves it, and
            // the operator is told once. A name no template has fails there too.
            (Err(error), Some(dir)) => {
                let problem = format!("{}: {template}: {error}", dir.display());
                if self.first_time(&problem) {
                    tracing::warn!(template_dir = %dir.display(), template, %error,
                        "a template override failed; using the built-in template (logged once until it changes)");
                }
                render(&self.inner.builtin).map_err(builtin_error)
            }
            (Err(error), _) => Err(builtin_error(error)),
        }
    }

    /// A theme (JSON) checked as one about to be saved: its fields, and every
    /// template override in its directory must compile. The refusal names the field
    /// at fault (`theme` or `template_dir`) and why.
    pub fn check_theme(
        &self,
        theme: &serde_json::Value,
    ) -> Result<ThemeSettings, (&'static str, String)> {
        let checked =
            ThemeSettings::deserialize_checked(theme).map_err(|e| ("theme", e.to_string()))?;
        if let Some(dir) = &checked.template_dir {
            let problems = self.check_overrides(dir);
            if !problems.is_empty() {
                return Err((
                    "template_dir",
                    format!("template overrides do not compile: {}", problems.join("; ")),
                ));
            }
        }
        Ok(checked)
    }

    /// What is wrong with the template overrides in `dir`: every override of a
    /// built-in template must compile. Empty when all do (a name the directory
    /// lacks falls back to the built-in).
    fn check_overrides(&self, dir: &std::path::Path) -> Vec<String> {
        let env =
            templates::override_environment(Arc::clone(&self.inner.catalogues), dir.to_path_buf());
        templates::BUILTIN
            .iter()
            .filter_map(|(name, _)| env.get_template(name).err().map(|e| format!("{name}: {e}")))
            .collect()
    }

    /// A tenant's theme, read leniently: each invalid field is left at its default
    /// and logged once (per tenant and problem), not on every request.
    pub fn tenant_theme(
        &self,
        tenant: &str,
        settings: &gatehouse_core::tenant_settings::TenantSettings,
    ) -> ThemeSettings {
        let (theme, problems) = ThemeSettings::read_lenient(settings);
        for problem in problems {
            if self.first_time(&format!("theme:{tenant}:{problem}")) {
                tracing::warn!(tenant, %problem,
                    "invalid theme setting ignored; the rest of the theme applies (logged once)");
            }
        }
        theme
    }

    /// Whether `problem` is new: true once, false after, so each is logged once.
    fn first_time(&self, problem: &str) -> bool {
        let mut warned = self
            .inner
            .warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if warned.contains(problem) {
            return false;
        }
        if warned.len() >= MAX_WARNED {
            warned.clear();
        }
        warned.insert(problem.to_owned())
    }

    /// `?lang=` wins, then the `gatehouse_lang` cookie, then Accept-Language
    /// (q-values honoured); English when nothing matches.
    pub fn negotiate_locale(
        &self,
        query_lang: Option<&str>,
        cookie_lang: Option<&str>,
        accept_language: Option<&str>,
    ) -> Locale {
        i18n::negotiate(query_lang, cookie_lang, accept_language)
    }

    /// The message for `key` in `locale`, else in English, else the key itself.
    pub fn translate(&self, locale: &Locale, key: &str) -> String {
        self.inner.catalogues.translate(locale, key)
    }

    /// Whether the English catalogue (the fallback every locale has) holds `key`.
    pub fn has_message(&self, key: &str) -> bool {
        self.inner.catalogues.lookup(&Locale::EN, key).is_some()
    }

    /// Whether a page of this tenant has words for `key`: its own (`theme.messages`,
    /// in any language) or the catalogue's.
    pub fn has_tenant_message(&self, theme: &ThemeSettings, key: &str) -> bool {
        theme.messages.values().any(|texts| texts.contains_key(key)) || self.has_message(key)
    }

    /// A moment for a reader in `locale` (`7 December 2026, 14:05 UTC`, `7. Dezember
    /// 2026, 14:05 UTC`): in UTC, since the reader's time zone is unknown, with the
    /// month named so day and month cannot be swapped.
    pub fn format_time(&self, locale: &Locale, at: chrono::DateTime<chrono::Utc>) -> String {
        use chrono::Datelike;
        let months = self.translate(locale, "time.months");
        let month = months.split(',').nth(at.month0() as usize).map_or_else(
            || at.format("%m").to_string(),
            |name| name.trim().to_owned(),
        );
        i18n::interpolate(
            &self.translate(locale, "time.datetime"),
            |name| match name {
                "day" => Some(at.day().to_string()),
                "month" => Some(month.clone()),
                "year" => Some(at.year().to_string()),
                "time" => Some(at.format("%H:%M").to_string()),
                _ => None,
            },
        )
    }

    /// The stylesheet for `{base_path}/theme.css`: the theme's colours as CSS custom
    /// properties, then the tenant's custom CSS. Invalid colours fall back to defaults.
    pub fn theme_css(&self, theme: &ThemeSettings) -> String {
        theme::theme_css(theme)
    }

    /// The embedded file for `/static/{path}`; `None` for anything but a known file.
    pub fn asset(&self, path: &str) -> Option<Asset> {
        assets::lookup(path)
    }

    fn environment(&self, theme: &ThemeSettings) -> Arc<Environment<'static>> {
        let Some(dir) = &theme.template_dir else {
            return Arc::clone(&self.inner.builtin);
        };
        let mut overrides = self
            .inner
            .overrides
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let env = overrides.entry(dir.clone()).or_insert_with(|| {
            Arc::new(templates::override_environment(
                Arc::clone(&self.inner.catalogues),
                dir.clone(),
            ))
        });
        Arc::clone(env)
    }

    /// The page context, then the common fields, then what the layout derives.
    fn context<S: Serialize>(
        &self,
        common: &PageCommon,
        theme: &ThemeSettings,
        page: &S,
    ) -> Result<minijinja::Value, UiError> {
        let mut context = match serde_json::to_value(page) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(serde_json::Value::Null) => serde_json::Map::new(),
            Ok(_) => {
                return Err(UiError::Context(
                    "the page context must serialize to a map".into(),
                ));
            }
            Err(e) => return Err(UiError::Context(e.to_string())),
        };
        let common_value = serde_json::to_value(PageCommon {
            theme: theme.clone(),
            ..common.clone()
        })
        .map_err(|e| UiError::Context(e.to_string()))?;
        if let serde_json::Value::Object(common_map) = common_value {
            context.extend(common_map);
        }
        let brand_name = theme
            .display_name
            .clone()
            .unwrap_or_else(|| common.tenant_name.clone());
        let languages: Vec<serde_json::Value> = Locale::ALL
            .iter()
            .map(|locale| {
                serde_json::json!({
                    "code": locale.code,
                    "name": self.inner.catalogues.translate(locale, "language.name"),
                    "current": *locale == common.locale,
                    "href": common.reopen_query.as_deref().map(|query| {
                        language_href(&common.current_path, query, locale.code)
                    }),
                })
            })
            .collect();
        context.insert(
            "language_switch".into(),
            common.reopen_query.is_some().into(),
        );
        context.insert(templates::LANG_VARIABLE.into(), common.locale.code.into());
        context.insert("brand_name".into(), brand_name.into());
        context.insert("languages".into(), languages.into());
        Ok(minijinja::Value::from(Serde(serde_json::Value::Object(
            context,
        ))))
    }
}
