//! `gatehouse keys …`: inspect and rotate a tenant's signing keys. A rotation publishes
//! the new key in JWKS first; it starts signing at the following rotation, and the
//! retired key stays published until every token it signed has expired.

use clap::{Args, Subcommand};
use gatehouse_core::config::Config;
use gatehouse_core::secrets::Cipher;
use gatehouse_core::{Clock, SystemClock};
use gatehouse_identity_store::{StoreError, signing_keys, tenants};
use gatehouse_token_issuer::{Algorithm, rotate};

use crate::ServerError;
use crate::state::open_pool;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the tenant's signing keys and their state.
    List(KeysArgs),
    /// Rotate: publish a new key; the previously published one starts signing.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    /// Tenant slug.
    #[arg(long, default_value = "default")]
    tenant: String,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    keys: KeysArgs,
    /// ES256, RS256 or EdDSA.
    #[arg(long, default_value = "ES256")]
    alg: String,
    /// How long tokens signed by the retiring key can live (seconds): it stays
    /// published that long. Include clock skew and caching.
    #[arg(long, default_value_t = 24 * 3600)]
    max_token_lifetime: i64,
}

pub fn run(config: &Config, command: KeysCommand) -> Result<(), ServerError> {
    let pool = open_pool(config)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    gatehouse_identity_store::db::run_migrations(&mut conn)?;
    let slug = match &command {
        KeysCommand::List(args) => &args.tenant,
        KeysCommand::Rotate(args) => &args.keys.tenant,
    };
    let tenant = tenants::find_by_slug(&mut conn, slug)?
        .ok_or_else(|| ServerError::Usage(format!("no tenant `{slug}` (a new installation gets its default tenant on the first `gatehouse serve`)")))?
        .id;
    match command {
        KeysCommand::List(_) => {
            for key in signing_keys::list(&mut conn, tenant)? {
                let until = key
                    .publish_until
                    .map(|t| format!(" until {}", t.to_rfc3339()))
                    .unwrap_or_default();
                println!("{}\t{:?}\t{:?}{until}", key.kid, key.alg, key.state);
            }
        }
        KeysCommand::Rotate(args) => {
            let alg: Algorithm = args.alg.parse().map_err(|_| {
                ServerError::Usage(format!(
                    "unknown algorithm `{}`: use ES256, RS256 or EdDSA",
                    args.alg
                ))
            })?;
            let (cipher, _) = Cipher::load(config).map_err(ServerError::Secrets)?;
            let rotation = rotate(
                &mut conn,
                &cipher,
                SystemClock.now(),
                tenant,
                alg,
                chrono::Duration::seconds(args.max_token_lifetime),
            )
            .map_err(|e| ServerError::Usage(format!("rotation failed: {e}")))?;
            println!("new key {} ({:?})", rotation.kid, rotation.state);
            if let Some(activated) = rotation.activated {
                println!("now signing with {activated}");
            }
            if let Some((retired, until)) = rotation.retired {
                println!("retired {retired}; published until {}", until.to_rfc3339());
            }
            crate::state::announce(
                config,
                gatehouse_core::events::DomainEvent::SigningKeysChanged { tenant },
            );
            println!(
                "running nodes pick up the change at once on PostgreSQL, within a minute on SQLite"
            );
        }
    }
    Ok(())
}
