//! An orders API protected by Gatehouse access tokens.
//!
//! ```sh
//! ISSUER=http://localhost:8080 AUDIENCE=https://orders.example.com LISTEN=127.0.0.1:8081 \
//!     cargo run -p gatehouse-resource-server --example protected_api
//! ```
//!
//! - `GET /public`: no token needed.
//! - `GET /orders`: a token with scope `orders:read` (guarded by middleware).
//! - `GET /orders/export`: also a user who signed in at AAL2 (`urn:gatehouse:aal2`)
//!   at most 300 s ago (checked in the handler); otherwise the RFC 9470
//!   `insufficient_user_authentication` challenge tells the client to step up.
//!
//! See docs/resource-server.md for a walk-through against `gatehouse serve`.

use actix_web::{App, HttpResponse, HttpServer, web};
use gatehouse_resource_server::{
    AccessToken, BearerError, RequireToken, Requirement, Verifier, acr,
};
use serde_json::json;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn public() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "message": "anyone may read this" }))
}

/// Reached only through `RequireToken`, which has already checked the scope.
async fn orders(token: AccessToken) -> HttpResponse {
    let claims = token.claims();
    HttpResponse::Ok().json(json!({
        "caller": { "sub": claims.sub, "client_id": claims.client_id },
        "orders": [{ "id": 1001, "total": "42.00" }, { "id": 1002, "total": "7.50" }],
    }))
}

/// Checks its own requirement: a handler can decide after looking at the request.
async fn export(token: AccessToken) -> Result<HttpResponse, BearerError> {
    token.require(
        &Requirement::default()
            .scope("orders:read")
            .acr(acr::AAL2)
            .max_age(300),
    )?;
    let claims = token.claims();
    Ok(HttpResponse::Ok().json(json!({
        "exported_for": claims.sub,
        "acr": claims.acr,
        "amr": claims.amr,
        "auth_time": claims.auth_time,
    })))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let issuer = env_or("ISSUER", "http://localhost:8080");
    let audience = env_or("AUDIENCE", "https://orders.example.com");
    let listen = env_or("LISTEN", "127.0.0.1:8081");

    let verifier = Verifier::builder(&issuer, &audience)
        .build()
        .map_err(std::io::Error::other)?;
    // Fail at start-up, not on the first request, when the issuer is wrong or down.
    if let Err(error) = verifier.refresh().await {
        eprintln!("cannot load the keys of {issuer}: {error}");
        std::process::exit(1);
    }
    eprintln!("protected_api: issuer {issuer}, audience {audience}, listening on http://{listen}");

    HttpServer::new(move || {
        App::new()
            .app_data(verifier.clone())
            .route("/public", web::get().to(public))
            .service(
                web::resource("/orders")
                    .wrap(RequireToken::new(
                        Requirement::default().scope("orders:read"),
                    ))
                    .route(web::get().to(orders)),
            )
            .route("/orders/export", web::get().to(export))
    })
    .bind(&listen)?
    .run()
    .await
}
