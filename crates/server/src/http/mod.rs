//! The HTTP server: middleware, operational endpoints, and the mount point for every
//! feature crate's routes.

pub(crate) mod answer;
pub(crate) mod bearer;
pub mod client_addr;
pub mod cookies;
pub mod cors;
pub mod csrf;
mod deadline;
pub mod input;
pub mod metrics;
mod observe;
mod ops;
pub mod security;
pub mod tenant;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::ServerError;
use crate::state::AppState;

pub use observe::RequestId;

/// Every route the server answers, so tests and `serve` mount the same thing.
pub fn routes(cfg: &mut web::ServiceConfig) {
    ops::configure(cfg);
    crate::oauth::root_routes(cfg);
    crate::api::authzen::root_routes(cfg);
    crate::pages::root_routes(cfg);
    // One scope for everything under a tenant prefix: actix stops at the first scope
    // whose prefix matches, so two `/t/{tenant}` scopes would hide each other.
    cfg.service(
        web::scope("/t/{tenant}")
            .configure(crate::oauth::tenant_routes)
            .configure(crate::api::authzen::tenant_routes)
            .configure(crate::api::consent::tenant_routes)
            .configure(crate::api::admin::tenant_routes)
            .configure(crate::api::scim::tenant_routes)
            .configure(crate::pages::tenant_routes),
    );
    crate::oauth::tenant_routes(cfg);
    crate::api::authzen::tenant_routes(cfg);
    crate::api::consent::tenant_routes(cfg);
    crate::api::admin::tenant_routes(cfg);
    crate::api::scim::tenant_routes(cfg);
    crate::pages::tenant_routes(cfg);
    cfg.default_service(web::to(crate::pages::not_found));
}

/// Binds the configured address and serves until SIGTERM/SIGINT.
pub async fn serve(state: AppState) -> Result<(), ServerError> {
    let addr = state
        .config
        .server
        .listen_addr()
        .map_err(ServerError::Config)?;
    let bind = |addr: std::net::SocketAddr| {
        std::net::TcpListener::bind(addr).map_err(|source| ServerError::Listen {
            addr: addr.to_string(),
            source,
        })
    };
    let listener = bind(addr)?;
    let operations = match state
        .config
        .server
        .operations_addr()
        .map_err(ServerError::Config)?
    {
        Some(addr) => Some(bind(addr)?),
        None => None,
    };
    serve_with_operations(state, listener, operations).await
}

/// Serves on an already bound listener (tests bind port 0 themselves).
pub async fn serve_on(state: AppState, listener: std::net::TcpListener) -> Result<(), ServerError> {
    serve_with_operations(state, listener, None).await
}

/// Serves the public listener and, when given, the operations listener (probes and
/// metrics) until SIGTERM/SIGINT; both stop together.
pub async fn serve_with_operations(
    state: AppState,
    listener: std::net::TcpListener,
    operations: Option<std::net::TcpListener>,
) -> Result<(), ServerError> {
    let server_config = state.config.server.clone();
    crate::reactions::start(&state);
    crate::key_schedule::spawn(&state);
    crate::federation_schedule::spawn(&state);
    let data = web::Data::new(state);
    let ops_data = data.clone();
    // Decisions still queued for the log are written before the process exits.
    let pdp = data.pdp.clone();
    let bound = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::FormConfig::default().limit(16 * 1024))
            // Raw bodies (OAuth endpoints parse their forms themselves) are small too.
            .app_data(web::PayloadConfig::new(32 * 1024))
            // Innermost: runs after the request id, CSP nonce and deadline are set,
            // before routing, so no handler ever sees refused input.
            .wrap(from_fn(input::refuse_unsafe_input))
            .wrap(from_fn(security::headers))
            .wrap(from_fn(observe::observe))
            .wrap(from_fn(deadline::limit))
            .configure(routes)
    })
    .workers(server_config.worker_count())
    .shutdown_timeout(server_config.shutdown_timeout().as_secs())
    .listen(listener)
    .map_err(|source| ServerError::Listen {
        addr: bound.to_string(),
        source,
    })?;
    tracing::info!("listening on http://{bound}");
    let operations = match operations {
        Some(listener) => {
            let bound = listener.local_addr()?;
            let data = ops_data;
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .wrap(from_fn(security::headers))
                    .configure(ops::configure_operations)
            })
            // Probes and scrapes are small and rare: one worker is plenty.
            .workers(1)
            .shutdown_timeout(server_config.shutdown_timeout().as_secs())
            .listen(listener)
            .map_err(|source| ServerError::Listen {
                addr: bound.to_string(),
                source,
            })?;
            tracing::info!("operations (probes, metrics) on http://{bound}");
            Some(server.run())
        }
        None => None,
    };
    // actix stops accepting on SIGTERM/SIGINT and lets in-flight requests finish
    // within the shutdown timeout; both servers hear the signal.
    match operations {
        Some(operations) => {
            let (public, operations) = tokio::join!(server.run(), operations);
            public?;
            operations?;
        }
        None => server.run().await?,
    }
    pdp.flush_log();
    tracing::info!("stopped");
    Ok(())
}
