//! The HTTP server: middleware, operational endpoints, and the mount point for every
//! feature crate's routes.

pub mod metrics;
mod observe;
mod ops;

use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{App, HttpServer, web};

use crate::ServerError;
use crate::state::AppState;

pub use observe::RequestId;

/// Every route the server answers, so tests and `serve` mount the same thing.
pub fn routes(cfg: &mut web::ServiceConfig) {
    ops::configure(cfg);
}

pub async fn serve(state: AppState) -> Result<(), ServerError> {
    let server_config = state.config.server.clone();
    let addr = server_config.listen_addr().map_err(ServerError::Config)?;
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(
                DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "no-referrer")),
            )
            .wrap(from_fn(observe::observe))
            .configure(routes)
    })
    .workers(server_config.worker_count())
    .shutdown_timeout(server_config.shutdown_timeout().as_secs())
    .bind(addr)
    .map_err(|source| ServerError::Listen {
        addr: addr.to_string(),
        source,
    })?;
    for bound in server.addrs() {
        tracing::info!("listening on http://{bound}");
    }
    // actix stops accepting on SIGTERM/SIGINT and lets in-flight requests finish
    // within the shutdown timeout.
    server.run().await?;
    tracing::info!("stopped");
    Ok(())
}
