//! Operational endpoints: liveness, readiness, metrics.

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpResponse, web};
use gatehouse_identity_store::{StoreError, db};
use serde_json::json;

use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// Alive: the process answers. Deliberately touches nothing else.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(json!({ "status": "ok" }))
}

/// Ready: the database answers and every migration is applied.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.pool.clone();
    let checked = web::block(move || -> Result<usize, StoreError> {
        let mut conn = pool.get()?;
        db::ping(&mut conn)?;
        db::pending_migrations(&mut conn)
    })
    .await;
    let (ready, reason) = match checked {
        Ok(Ok(0)) => (true, None),
        Ok(Ok(pending)) => (false, Some(format!("{pending} migration(s) pending"))),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            (false, Some("database unavailable".to_owned()))
        }
        Err(error) => {
            tracing::warn!(%error, "readiness check could not run");
            (false, Some("readiness check failed".to_owned()))
        }
    };
    let mut response = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    response
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(json!({
            "status": if ready { "ready" } else { "not_ready" },
            "reason": reason,
        }))
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
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
