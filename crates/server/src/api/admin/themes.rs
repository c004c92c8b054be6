//! The tenant's theme: colours, logo, custom CSS, its own words and template
//! overrides. A theme is checked before it is saved — every field, and every
//! override in its template directory must compile — and applies at once on every
//! node (a tenant change). A page whose override still fails when rendered is
//! served by the built-in template.

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
/// `#rrggbb`, the logo `https://` or a path on this server, and every template in
/// `template_dir` must compile. Nothing is saved unless all of it passes.
#[utoipa::path(put, path = "/theme", tag = "theme",
    request_body(content = serde_json::Value, description = "The theme's fields (all optional)"),
    responses((status = 200, description = "Saved and applied", body = ThemeView)))]
pub(super) async fn save_theme(
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let theme: Value = super::body(&bytes)?;
    caller
        .state
        .ui
        .check_theme(&theme)
        .map_err(|(field, why)| answered(invalid_field(field, &why)))?;
    Ok(change_theme(&caller, theme).await)
}

/// Removes the tenant's theme: the defaults apply again.
#[utoipa::path(delete, path = "/theme", tag = "theme",
    responses((status = 200, description = "Removed", body = ThemeView)))]
pub(super) async fn remove_theme(caller: Caller) -> HttpResponse {
    change_theme(&caller, Value::Null).await
}

/// Saves `theme` (`null` removes it) as the tenant's theme section.
async fn change_theme(caller: &Caller, theme: Value) -> HttpResponse {
    let change = TenantChange {
        display_name: None,
        settings: Map::from_iter([(THEME_SETTINGS_KEY.to_owned(), theme.clone())]),
    };
    let done = caller
        .admin()
        .update_tenant(&caller.operator, caller.slug(), change)
        .await;
    respond(done, |_| {
        ok(ThemeView {
            theme,
            problems: Vec::new(),
        })
    })
}
