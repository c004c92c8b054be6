//! The tenant's theme: colours, logo, custom CSS and its own words. A theme is
//! checked before it is saved and applies at once on every node (a tenant change).
//! Template overrides live in a directory on the server's disk, so only the
//! platform's operator names one (`gatehouse themes apply`, which checks that every
//! override compiles); a page whose override still fails when rendered is served by
//! the built-in template.

use actix_web::{HttpResponse, web};
use gatehouse_admin::TenantChange;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{Caller, ok, respond};
use crate::api::problem::invalid_field;
use crate::http::answer::answered;
use crate::ui::{THEME_SETTINGS_KEY, ThemeSettings};

#[derive(Serialize, ToSchema)]
pub(super) struct ThemeView {
    /// The theme as stored (`null` when the defaults apply).
    pub theme: Value,
    /// Fields of the stored theme the pages ignore because they are invalid (a
    /// theme saved before it was checked); empty when it is all in use.
    pub problems: Vec<String>,
}

/// The tenant's theme.
#[utoipa::path(get, path = "/theme", tag = "theme",
    responses((status = 200, description = "The theme", body = ThemeView)))]
pub(super) async fn show_theme(caller: Caller) -> HttpResponse {
    respond(caller.admin().tenant_view(caller.slug()).await, |view| {
        let settings = view.tenant.typed_settings();
        let (_, problems) = ThemeSettings::read_lenient(&settings);
        ok(ThemeView {
            theme: settings.theme.unwrap_or(Value::Null),
            problems,
        })
    })
}

/// Checks and saves the tenant's theme.
///
/// Unknown fields are refused (they are typos); colours must be `#rgb` or
/// `#rrggbb`, the logo `https://` or a path on this server. A template directory
/// (a path on the server) is the platform operator's to set, with
/// `gatehouse themes apply`, which also checks that every override compiles.
/// Nothing is saved unless all of it passes.
#[utoipa::path(put, path = "/theme", tag = "theme",
    request_body(content = serde_json::Value, description = "The theme's fields (all optional)"),
    responses((status = 200, description = "Saved and applied", body = ThemeView)))]
pub(super) async fn save_theme(
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let theme: Value = super::body(&bytes)?;
    checked_from_api(&caller, &theme)?;
    Ok(change_theme(&caller, theme).await)
}

/// Removes the tenant's theme: the defaults apply again.
#[utoipa::path(delete, path = "/theme", tag = "theme",
    responses((status = 200, description = "Removed", body = ThemeView)))]
pub(super) async fn remove_theme(caller: Caller) -> HttpResponse {
    change_theme(&caller, Value::Null).await
}

/// Saves `theme` (`null` removes it) as the tenant's theme section. A template
/// directory the platform's operator set stays: the tenant changes only its own
/// fields.
async fn change_theme(caller: &Caller, theme: Value) -> HttpResponse {
    // Read from the store, not this node's cached tenant: an operator may have set
    // the directory a moment ago on another node.
    let stored = match caller.admin().tenant_view(caller.slug()).await {
        Ok(view) => view.tenant.settings,
        Err(e) => return crate::api::problem::admin_failure(&e),
    };
    let operators_dir = stored
        .get(THEME_SETTINGS_KEY)
        .and_then(|stored| stored.get("template_dir"))
        .filter(|dir| !dir.is_null())
        .cloned();
    let theme = match (theme, operators_dir) {
        (Value::Null, Some(dir)) => {
            Value::Object(Map::from_iter([("template_dir".to_owned(), dir)]))
        }
        (Value::Object(mut fields), Some(dir)) => {
            fields.insert("template_dir".to_owned(), dir);
            Value::Object(fields)
        }
        (theme, _) => theme,
    };
    let change = TenantChange {
        display_name: None,
        settings: Map::from_iter([(THEME_SETTINGS_KEY.to_owned(), theme.clone())]),
        expected_version: None,
    };
    let done = caller
        .admin()
        .update_tenant(&caller.operator, caller.slug(), change)
        .await;
    respond(done, |view| {
        caller.tenant_changed(view.tenant.id);
        ok(ThemeView {
            theme,
            problems: Vec::new(),
        })
    })
}

/// A theme sent through the API, checked as the renderer will read it. A template
/// directory is a path on the server's own disk: the platform's operator sets it
/// there (`gatehouse themes apply`), never an API client.
pub(super) fn checked_from_api(caller: &Caller, theme: &Value) -> Result<(), actix_web::Error> {
    if theme.get("template_dir").is_some_and(|dir| !dir.is_null()) {
        return Err(answered(invalid_field(
            "template_dir",
            "template directories are set by the platform operator (gatehouse themes apply)",
        )));
    }
    caller
        .state
        .ui
        .check_theme(theme)
        .map(|_| ())
        .map_err(|(field, why)| answered(invalid_field(field, &why)))
}
