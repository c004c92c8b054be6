//! Operational endpoints: liveness, readiness, metrics.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_identity_store::{StoreError, db};
use serde_json::json;

use crate::state::AppState;

/// The public listener's operations routes. `/metrics` is there only while no
/// operations listener is configured (development); otherwise it is not found.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(public_metrics));
}

/// The operations listener: probes and metrics, nothing else.
pub fn configure_operations(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .default_service(web::to(HttpResponse::NotFound));
}

async fn public_metrics(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if state.config.server.operations_listen.is_some() {
        return crate::pages::not_found(request).await;
    }
    metrics(state).await
}

/// Alive: the process answers. Deliberately touches nothing else.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(json!({ "status": "ok" }))
}

/// Ready: the database answers and every migration is applied, within
/// `server.readiness_timeout_ms` whatever the database does (a black-holed
/// connection included): a load balancer must hear "not ready" promptly.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.pool.clone();
    let deadline = Duration::from_millis(state.config.server.readiness_timeout_ms);
    // The previous check has not come back: the database is not answering.
    let Ok(permit) = Arc::clone(&state.readiness_check).try_acquire_owned() else {
        return not_ready("database unavailable (the previous check is still waiting)");
    };
    let checked = tokio::time::timeout(
        deadline,
        web::block(move || -> Result<usize, StoreError> {
            let _one_at_a_time = permit;
            let mut conn = pool.get_timeout(deadline)?;
            db::ping(&mut conn)?;
            db::pending_migrations(&mut conn)
        }),
    )
    .await;
    let (ready, reason) = match checked {
        Ok(Ok(Ok(0))) => (true, None),
        Ok(Ok(Ok(pending))) => (false, Some(format!("{pending} migration(s) pending"))),
        Ok(Ok(Err(error))) => {
            tracing::warn!(%error, "readiness check failed");
            (false, Some("database unavailable".to_owned()))
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check could not run");
            (false, Some("readiness check failed".to_owned()))
        }
        Err(_) => {
            tracing::warn!(
                deadline_ms = deadline.as_millis() as u64,
                "readiness check: the database did not answer in time"
            );
            (false, Some("database did not answer in time".to_owned()))
        }
    };
    match reason {
        None if ready => HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(json!({ "status": "ready", "reason": null })),
        reason => not_ready(reason.as_deref().unwrap_or("not ready")),
    }
}

fn not_ready(reason: &str) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(json!({ "status": "not_ready", "reason": reason }))
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    if let Some(publisher) = &state.event_publisher {
        state.metrics.record_event_publisher(publisher.stats());
    }
    state.metrics.record_pdp(
        state.pdp.decision_log_stats(),
        &state.pdp.unknown_keys_seen(),
        &state.pdp.decisions_logged(),
    );
    match state.metrics.render(&state.pool) {
        Ok(body) => HttpResponse::Ok()
            .insert_header((
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ))
            .insert_header((CACHE_CONTROL, "no-store"))
            .body(body),
        Err(error) => {
            tracing::error!(%error, "metrics encoding failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}
