//! What every operator command shares: the admin service over the configured
//! database, one mapping of its errors to the command line, and the operator's name.

use std::sync::Arc;

use gatehouse_admin::{Admin, AdminError, AdminParts, Operator};
use gatehouse_authn::Authn;
use gatehouse_consent::Consents;
use gatehouse_consent::pdp::Pdp;
use gatehouse_core::SystemClock;
use gatehouse_core::config::Config;
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::StoreError;
use gatehouse_outbound::Outbound;
use gatehouse_token_issuer::service::Issuer;

use crate::ServerError;
use crate::http::tenant::TenantDirectory;
use crate::state::{cli_bus, open_pool, prove_master_keys};

/// The operator's service over this configuration's database (migrated, master
/// keys proven).
pub fn open_admin(config: &Config) -> Result<Admin, ServerError> {
    let pool = open_pool(config)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    gatehouse_identity_store::db::run_migrations(&mut conn)?;
    let (cipher, source) = Cipher::load(config).map_err(ServerError::Secrets)?;
    prove_master_keys(&mut conn, &cipher, &source, chrono::Utc::now())?;
    drop(conn);
    let events = cli_bus(config);
    let authn = Authn::new(
        config,
        pool.clone(),
        cipher.clone(),
        Arc::new(SystemClock),
        events.clone(),
        // Mail an operator's action sends (a reset link) uses the tenant's templates.
        Arc::new(
            crate::ui::Ui::embedded().map_err(|e| ServerError::Startup(format!("themes: {e}")))?,
        ),
    )
    .map_err(|e| ServerError::Usage(format!("cannot start the authentication service: {e}")))?;
    let issuer = Issuer::new(pool.clone(), cipher.clone(), Arc::new(SystemClock));
    let consents = Consents::new(
        pool.clone(),
        cipher.clone(),
        Arc::new(SystemClock),
        events.clone(),
    );
    let pdp = Pdp::new(pool.clone(), Arc::new(SystemClock))
        .map_err(|e| ServerError::Startup(e.to_string()))?;
    let urls = TenantDirectory::new(
        pool.clone(),
        config.bootstrap.tenant.clone(),
        &config.server.public_url(),
    );
    Admin::new(AdminParts {
        pool,
        cipher,
        clock: Arc::new(SystemClock),
        events,
        authn,
        issuer,
        consents,
        pdp,
        urls: Arc::new(urls),
        outbound: Outbound::from_config(&config.outbound)
            .map_err(|e| ServerError::Startup(e.to_string()))?,
    })
    .map_err(|e| admin_error("", e))
}

/// One mapping of the admin layer's errors for the command line: the field at
/// fault is named as its flag.
pub fn admin_error(doing: &str, error: AdminError) -> ServerError {
    match error {
        AdminError::Invalid { field, message } => {
            ServerError::Usage(format!("--{} {message}", field.replace('_', "-")))
        }
        AdminError::NotFound(message) | AdminError::Conflict(message) => {
            ServerError::Usage(message)
        }
        AdminError::Store(error) => ServerError::Store(error),
        other if doing.is_empty() => ServerError::Usage(other.to_string()),
        other => ServerError::Usage(format!("{doing} failed: {other}")),
    }
}

/// The operator named by `--operator`, else the login name of whoever runs the
/// command (`$USER`), else `command-line`: every write is audited with someone.
pub fn operator(given: Option<&str>) -> Result<Operator, ServerError> {
    let fallback = std::env::var("USER").unwrap_or_else(|_| "command-line".into());
    Operator::named(given.unwrap_or(&fallback)).map_err(|e| admin_error("", e))
}

/// Runs one of the service's async methods to completion, its error said as the
/// command line says it.
pub fn ask<T>(
    work: impl std::future::Future<Output = Result<T, AdminError>>,
) -> Result<T, ServerError> {
    block_on(work).map_err(|e| admin_error("", e))
}

/// Runs one of the service's async methods to completion.
pub fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    actix_web::rt::System::new().block_on(work)
}
