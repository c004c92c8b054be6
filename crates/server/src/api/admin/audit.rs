//! The tenant itself and its audit log (query, NDJSON export).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use gatehouse_admin::{AuditFilter, AuditQuery, event_view};
use serde::Deserialize;
use utoipa::IntoParams;

use super::users::default_limit;
use super::views::{AuditEvent, Items, TenantView};
use super::{Caller, ok, query, respond};

/// The tenant the token was issued for.
#[utoipa::path(get, path = "/tenant", tag = "tenant",
    responses((status = 200, description = "The tenant", body = TenantView)))]
pub(super) async fn show_tenant(caller: Caller) -> HttpResponse {
    respond(caller.admin().tenant_view(caller.slug()).await, |view| {
        ok(TenantView {
            id: view.tenant.id.to_string(),
            slug: view.tenant.slug.clone(),
            display_name: view.tenant.display_name.clone(),
            issuer: caller.tenant.issuer(),
            created_at: view.tenant.created_at,
        })
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditParams {
    /// Who acted (`client:<client_id>`, `user:<id>`, …).
    actor: Option<String>,
    /// What happened (`user.disabled`, …).
    action: Option<String>,
    /// What it happened to.
    target: Option<String>,
    /// From this instant (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Before this instant (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// How many events at most (1–1000).
    #[serde(default = "default_limit")]
    #[param(default = 100, minimum = 1, maximum = 1000)]
    limit: u32,
}

/// The tenant's audit events.
///
/// Oldest first, as JSON or — with `Accept: application/x-ndjson` — one event a
/// line, for export.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditParams),
    responses((status = 200, description = "The events", content(
        (Items<AuditEvent> = "application/json"),
        (AuditEvent = "application/x-ndjson")))))]
pub(super) async fn audit_events(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let params: AuditParams = query(&req)?;
    let query = AuditQuery {
        filter: AuditFilter {
            actor: params.actor,
            action: params.action,
            target: params.target,
            since: params.since,
            until: params.until,
        },
        limit: params.limit as usize,
    };
    let ndjson = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/x-ndjson"));
    let events = caller.admin().audit_events(caller.slug(), query).await;
    Ok(respond(events, |events| {
        if !ndjson {
            return ok(Items::of(&events, event_view));
        }
        let mut lines = String::new();
        for event in &events {
            lines.push_str(&event_view(event).to_string());
            lines.push('\n');
        }
        HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("application/x-ndjson")
            .body(lines)
    }))
}
