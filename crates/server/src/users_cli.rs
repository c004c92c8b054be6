//! `gatehouse users reset`: the administrator-assisted account recovery, for a user
//! who lost every second factor and whose identity the operator checked by other
//! means. It removes the second factors and the password, ends every session and
//! grant, and mails the user a link to choose a new password; the operator never
//! sees or sets one. Audited with the operator as the actor.

use std::sync::Arc;

use clap::{Args, Subcommand};
use gatehouse_authn::registration::LinkBase;
use gatehouse_authn::{Authn, ClientInfo};
use gatehouse_core::SystemClock;
use gatehouse_core::config::Config;
use gatehouse_core::events::{DomainEvent, EventBus};
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::{StoreError, tenants, users};

use crate::ServerError;
use crate::state::open_pool;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Reset a user's password and second factors; they get a link to start again.
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Tenant slug.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The user's primary email address.
    #[arg(long)]
    email: String,
    /// Why, and how the user's identity was checked (goes into the audit log).
    #[arg(long)]
    reason: String,
    /// Who is doing this (the audit log's actor).
    #[arg(long)]
    operator: String,
}

pub fn run(config: &Config, command: UsersCommand) -> Result<(), ServerError> {
    let UsersCommand::Reset(args) = command;
    if args.reason.trim().is_empty() || args.operator.trim().is_empty() {
        return Err(ServerError::Usage(
            "--reason and --operator must not be empty: the audit log records both".into(),
        ));
    }
    let pool = open_pool(config)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    gatehouse_identity_store::db::run_migrations(&mut conn)?;
    let tenant = tenants::find_by_slug(&mut conn, &args.tenant)?
        .ok_or_else(|| ServerError::Usage(format!("no tenant `{}`", args.tenant)))?;
    let user = users::find_by_primary_email(&mut conn, tenant.id, &args.email)?
        .ok_or_else(|| ServerError::Usage(format!("no user with the address `{}`", args.email)))?;
    drop(conn);
    let (cipher, _) = Cipher::load(config).map_err(ServerError::Secrets)?;
    // Events of this process reach no server; what matters is announced below.
    let authn = Authn::new(
        config,
        pool.clone(),
        cipher,
        Arc::new(SystemClock),
        EventBus::in_process(),
    )
    .map_err(|e| ServerError::Usage(format!("cannot start the reset: {e}")))?;
    // Links point where the server serves this tenant: the root for the default one.
    let base_path = if tenant.slug == config.bootstrap.tenant {
        String::new()
    } else {
        format!("/t/{}", tenant.slug)
    };
    let links = LinkBase(format!("{}{base_path}", config.server.public_url()));
    let outcome = actix_web::rt::System::new()
        .block_on(authn.admin_reset(
            tenant.id,
            format!("operator:{}", args.operator.trim()),
            user.id,
            args.reason,
            links,
            ClientInfo::default(),
        ))
        .map_err(|e| ServerError::Usage(format!("reset failed: {e}")))?;
    crate::state::announce(
        config,
        &pool,
        DomainEvent::CredentialsChanged {
            tenant: tenant.id,
            user: user.id,
        },
    );
    println!(
        "reset {}: {} second-factor credentials removed, {} sessions ended, {} grants revoked",
        args.email, outcome.factors_removed, outcome.sessions_ended, outcome.grants_revoked
    );
    if outcome.link_sent {
        println!("a link to choose a new password was mailed to the user");
    } else {
        println!(
            "the mail with the link could not be sent; the user can use \"Forgot your password?\""
        );
    }
    Ok(())
}
