//! `gatehouse keys …`: inspect and rotate a tenant's signing keys. A rotation publishes
//! the new key in JWKS first; it starts signing at the following rotation, and the
//! retired key stays published until every token it signed has expired.

use clap::{Args, Subcommand};
use gatehouse_core::config::Config;

use crate::ServerError;
use crate::cli::admin::{admin_error, ask, block_on, open_admin, operator};

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
    /// Who is doing this (the audit log's actor; default: the login name).
    #[arg(long)]
    operator: Option<String>,
}

pub fn run(config: &Config, command: KeysCommand) -> Result<(), ServerError> {
    match command {
        KeysCommand::List(args) => {
            let admin = open_admin(config)?;
            let keys = ask(admin.signing_keys(&args.tenant))?;
            if keys.is_empty() {
                eprintln!("no signing keys yet (the first is made with the first token)");
            }
            println!("KID\tALG\tSTATE\tCREATED\tSIGNS SINCE\tPUBLISHED UNTIL");
            let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or_else(
                    || "-".to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
                )
            };
            for key in keys {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    key.kid,
                    key.alg.as_str(),
                    key.state.as_str(),
                    when(Some(key.created_at)),
                    when(key.activated_at),
                    when(key.publish_until),
                );
            }
        }
        KeysCommand::Rotate(args) => {
            let operator = operator(args.operator.as_deref())?;
            let admin = open_admin(config)?;
            let rotation = block_on(admin.rotate_keys(
                &operator,
                &args.keys.tenant,
                &args.alg,
                chrono::Duration::seconds(args.max_token_lifetime),
            ))
            .map_err(|e| admin_error("rotation", e))?;
            println!("new key {} ({})", rotation.kid, rotation.state.as_str());
            if let Some(activated) = rotation.activated {
                println!("now signing with {activated}");
            }
            if let Some((retired, until)) = rotation.retired {
                println!("retired {retired}; published until {}", until.to_rfc3339());
            }
            println!(
                "running nodes pick up the change at once on PostgreSQL, within a minute on SQLite"
            );
        }
    }
    Ok(())
}
