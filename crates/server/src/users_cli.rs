//! `gatehouse users …` and `gatehouse roles …`: what an operator does to an account
//! until the admin API exists. Every change goes through the `Authn` service, which
//! writes it, its revocations and its audit event (the operator as the actor) in one
//! transaction; the CLI only finds the tenant, user and role by name and prints.
//!
//! - `users reset`: the administrator-assisted account recovery, for a user who lost
//!   every second factor and whose identity the operator checked by other means. It
//!   removes the second factors and the password, ends every session and grant, and
//!   mails the user a link to choose a new password; the operator never sees or sets
//!   one.
//! - `users disable` / `users enable`: deactivation ends every session and grant at
//!   once (refresh and introspection check the grant in the database) and tells the
//!   relying parties of the ended sessions (back-channel logout, sent from here);
//!   reactivation restores nothing.
//! - `roles assign` / `roles remove`: removal revokes the user's grants whose tokens
//!   carry roles and tells those relying parties (back-channel logout, from here).
//!
//! The service's events (`UserDeactivated`, `SessionsEnded`, `UserChanged`,
//! `CredentialsChanged`) travel to running servers over NOTIFY on PostgreSQL; on
//! SQLite they reach no other process, which is safe because nothing those events
//! invalidate is needed for correctness (see `docs/architecture.md`, the event bus).

use std::sync::Arc;

use clap::{Args, Subcommand};
use gatehouse_authn::registration::LinkBase;
use gatehouse_authn::{Authn, ClientInfo};
use gatehouse_core::SystemClock;
use gatehouse_core::config::Config;
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::tenants::Tenant;
use gatehouse_identity_store::users::User;
use gatehouse_identity_store::{PageRequest, Pool, StoreError, roles, tenants, users};
use gatehouse_token_issuer::logout::BackchannelNotice;
use gatehouse_token_issuer::service::Issuer;

use crate::ServerError;
use crate::http::tenant::TenantDirectory;
use crate::state::open_pool;

/// As the server's reactions (`reactions.rs`): the RP must answer promptly (§2.8).
const BACKCHANNEL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const BACKCHANNEL_ATTEMPTS: u32 = 3;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Reset a user's password and second factors; they get a link to start again.
    Reset(ResetArgs),
    /// Deactivate a user: sign-in is refused, every session ends and every token
    /// stops working at once.
    Disable(StatusArgs),
    /// Let a deactivated user sign in again (nothing that was ended comes back).
    Enable(StatusArgs),
}

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// The tenant's roles.
    List {
        /// Tenant slug.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Create a role (audited).
    Create(CreateRoleArgs),
    /// Give a user a role.
    Assign(RoleArgs),
    /// Take a role away from a user; the grants whose tokens carry roles are revoked.
    Remove(RoleArgs),
}

/// Whom a command is about.
#[derive(Debug, Args)]
pub struct UserArg {
    /// Tenant slug.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The user's primary email address.
    #[arg(long)]
    email: String,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    #[command(flatten)]
    user: UserArg,
    /// Why, and how the user's identity was checked (goes into the audit log).
    #[arg(long)]
    reason: String,
    /// Who is doing this (the audit log's actor).
    #[arg(long)]
    operator: String,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    user: UserArg,
    /// Why (goes into the audit log).
    #[arg(long)]
    reason: String,
    /// Who is doing this (the audit log's actor).
    #[arg(long)]
    operator: String,
}

#[derive(Debug, Args)]
pub struct RoleArgs {
    #[command(flatten)]
    user: UserArg,
    /// The role's name.
    #[arg(long)]
    role: String,
    /// Who is doing this (the audit log's actor).
    #[arg(long)]
    operator: String,
}

#[derive(Debug, Args)]
pub struct CreateRoleArgs {
    /// Tenant slug.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The role's name, as policies and the `roles` claim name it.
    #[arg(long)]
    name: String,
    /// What the role is for.
    #[arg(long)]
    description: Option<String>,
    /// Who is doing this (the audit log's actor).
    #[arg(long)]
    operator: String,
}

/// What every account command needs: the pool, the tenant, the user and the service.
struct Context {
    pool: Pool,
    cipher: Cipher,
    tenant: Tenant,
    user: User,
    authn: Authn,
}

fn require(values: &[(&str, &str)]) -> Result<(), ServerError> {
    match values.iter().find(|(_, value)| value.trim().is_empty()) {
        Some((flag, _)) => Err(ServerError::Usage(format!(
            "{flag} must not be empty: the audit log records it"
        ))),
        None => Ok(()),
    }
}

/// The audit log's actor for an operator at the command line.
fn actor(operator: &str) -> String {
    format!("operator:{}", operator.trim())
}

/// The pool, the tenant and the service, for commands about a tenant.
fn open_tenant(config: &Config, slug: &str) -> Result<(Pool, Cipher, Tenant, Authn), ServerError> {
    let pool = open_pool(config)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    gatehouse_identity_store::db::run_migrations(&mut conn)?;
    let tenant = tenants::find_by_slug(&mut conn, slug)?
        .ok_or_else(|| ServerError::Usage(format!("no tenant `{slug}`")))?;
    let (cipher, source) = Cipher::load(config).map_err(ServerError::Secrets)?;
    crate::state::prove_master_keys(&mut conn, &cipher, &source, chrono::Utc::now())?;
    drop(conn);
    let authn = Authn::new(
        config,
        pool.clone(),
        cipher.clone(),
        Arc::new(SystemClock),
        crate::state::cli_bus(config),
    )
    .map_err(|e| ServerError::Usage(format!("cannot start the authentication service: {e}")))?;
    Ok((pool, cipher, tenant, authn))
}

fn open(config: &Config, who: &UserArg) -> Result<Context, ServerError> {
    let (pool, cipher, tenant, authn) = open_tenant(config, &who.tenant)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    let user = users::find_by_primary_email(&mut conn, tenant.id, &who.email)?
        .ok_or_else(|| ServerError::Usage(format!("no user with the address `{}`", who.email)))?;
    drop(conn);
    Ok(Context {
        pool,
        cipher,
        tenant,
        user,
        authn,
    })
}

/// Runs one of the service's async methods to completion.
fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    actix_web::rt::System::new().block_on(work)
}

pub fn run(config: &Config, command: UsersCommand) -> Result<(), ServerError> {
    match command {
        UsersCommand::Reset(args) => reset(config, args),
        UsersCommand::Disable(args) => disable(config, args),
        UsersCommand::Enable(args) => enable(config, args),
    }
}

pub fn run_roles(config: &Config, command: RolesCommand) -> Result<(), ServerError> {
    match command {
        RolesCommand::List { tenant } => list_roles(config, &tenant),
        RolesCommand::Create(args) => create_role(config, args),
        RolesCommand::Assign(args) => assign_role(config, args),
        RolesCommand::Remove(args) => remove_role(config, args),
    }
}

fn reset(config: &Config, args: ResetArgs) -> Result<(), ServerError> {
    require(&[("--reason", &args.reason), ("--operator", &args.operator)])?;
    let context = open(config, &args.user)?;
    let tenant = &context.tenant;
    // Links point where the server serves this tenant: the root for the default one.
    let base_path = if tenant.slug == config.bootstrap.tenant {
        String::new()
    } else {
        format!("/t/{}", tenant.slug)
    };
    let links = LinkBase(format!("{}{base_path}", config.server.public_url()));
    let outcome = block_on(context.authn.admin_reset(
        tenant.id,
        actor(&args.operator),
        context.user.id,
        args.reason,
        links,
        ClientInfo::default(),
    ))
    .map_err(|e| ServerError::Usage(format!("reset failed: {e}")))?;
    println!(
        "reset {}: {} second-factor credentials removed, {} sessions ended, {} grants revoked",
        args.user.email,
        outcome.factors_removed,
        outcome.sessions_ended.len(),
        outcome.grants_revoked
    );
    if outcome.link_sent {
        println!("a link to choose a new password was mailed to the user");
    } else {
        println!(
            "the mail with the link could not be sent; the user can use \"Forgot your password?\""
        );
    }
    // Relying parties of the ended sessions hear it from here (see `backchannel_logout`).
    let sessions = outcome.sessions_ended;
    backchannel_logout(config, &context, move |issuer, tenant, url, user| {
        issuer.sessions_ended(tenant, url, user, &sessions)
    });
    Ok(())
}

fn disable(config: &Config, args: StatusArgs) -> Result<(), ServerError> {
    require(&[("--reason", &args.reason), ("--operator", &args.operator)])?;
    let context = open(config, &args.user)?;
    let done = block_on(context.authn.deactivate_user(
        context.tenant.id,
        actor(&args.operator),
        context.user.id,
        args.reason,
        ClientInfo::default(),
    ))
    .map_err(|e| ServerError::Usage(format!("disabling failed: {e}")))?;
    let email = &args.user.email;
    if done.was_active {
        println!("disabled {email}");
    } else {
        println!("{email} was already disabled");
    }
    println!(
        "{} sessions ended, {} grants revoked",
        done.sessions_ended.len(),
        done.grants_revoked
    );
    let sessions = done.sessions_ended;
    backchannel_logout(config, &context, move |issuer, tenant, url, user| {
        issuer.sessions_ended(tenant, url, user, &sessions)
    });
    Ok(())
}

/// Back-channel logout (OIDC Back-Channel Logout 1.0) for what this process ended:
/// `notices` makes the logout tokens (`Issuer::sessions_ended` for ended sessions,
/// `Issuer::grants_revoked` for grants revoked under a live session). Running
/// servers deliver only for the events they published themselves (`reactions.rs`:
/// each relying party must hear once, from the node where it happened), and on
/// SQLite they hear nothing from this process; so the command is that node and
/// delivers here, with the server's timeout and attempts. A relying party that
/// cannot be reached is reported, not an error: the grants are already revoked, so
/// its tokens are refused whatever it hears.
fn backchannel_logout(
    config: &Config,
    context: &Context,
    notices: impl FnOnce(
        &Issuer,
        TenantId,
        &str,
        UserId,
    ) -> gatehouse_token_issuer::IssuerResult<Vec<BackchannelNotice>>,
) {
    let tenant = context.tenant.id;
    let directory = TenantDirectory::new(
        context.pool.clone(),
        config.bootstrap.tenant.clone(),
        &config.server.public_url(),
    );
    let issuer = Issuer::new(
        context.pool.clone(),
        context.cipher.clone(),
        Arc::new(SystemClock),
    );
    let notices = directory
        .issuer_for(tenant)
        .map_err(|e| e.to_string())
        .and_then(|url| {
            let url = url.ok_or("the tenant is gone")?;
            notices(&issuer, tenant, &url, context.user.id).map_err(|e| e.to_string())
        });
    let notices = match notices {
        Ok(notices) => notices,
        Err(error) => {
            eprintln!("warning: back-channel logout was not sent: {error}");
            return;
        }
    };
    let http = reqwest::blocking::Client::builder()
        .timeout(BACKCHANNEL_TIMEOUT)
        // A logout URI that redirects is misconfigured; following it could leak the token.
        .redirect(reqwest::redirect::Policy::none())
        .build();
    let http = match http {
        Ok(http) => http,
        Err(error) => {
            eprintln!("warning: back-channel logout was not sent: {error}");
            return;
        }
    };
    for notice in notices {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("logout_token", &notice.logout_token)
            .finish();
        let delivered = (1..=BACKCHANNEL_ATTEMPTS).any(|attempt| {
            let sent = http
                .post(&notice.uri)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cache-control", "no-store")
                .body(body.clone())
                .send();
            let ok = sent.is_ok_and(|response| response.status().is_success());
            if !ok && attempt < BACKCHANNEL_ATTEMPTS {
                std::thread::sleep(std::time::Duration::from_millis(500 * u64::from(attempt)));
            }
            ok
        });
        if delivered {
            println!("back-channel logout delivered to {}", notice.client_id);
        } else {
            eprintln!(
                "warning: back-channel logout to {} was not delivered after {BACKCHANNEL_ATTEMPTS} attempts",
                notice.client_id
            );
        }
    }
}

fn enable(config: &Config, args: StatusArgs) -> Result<(), ServerError> {
    require(&[("--reason", &args.reason), ("--operator", &args.operator)])?;
    let context = open(config, &args.user)?;
    let changed = block_on(context.authn.reactivate_user(
        context.tenant.id,
        actor(&args.operator),
        context.user.id,
        args.reason,
        ClientInfo::default(),
    ))
    .map_err(|e| ServerError::Usage(format!("enabling failed: {e}")))?;
    let email = &args.user.email;
    if changed {
        println!("enabled {email}; they can sign in again");
    } else {
        println!("{email} was not disabled");
    }
    Ok(())
}

/// The context and the role named by `args`.
fn open_with_role(config: &Config, args: &RoleArgs) -> Result<(Context, roles::Role), ServerError> {
    require(&[("--operator", &args.operator)])?;
    let context = open(config, &args.user)?;
    let mut conn = context.pool.get().map_err(StoreError::from)?;
    let role = roles::find_by_name(&mut conn, context.tenant.id, &args.role)?
        .ok_or_else(|| ServerError::Usage(format!("no role `{}`", args.role)))?;
    drop(conn);
    Ok((context, role))
}

fn create_role(config: &Config, args: CreateRoleArgs) -> Result<(), ServerError> {
    require(&[("--name", &args.name), ("--operator", &args.operator)])?;
    let (_, _, tenant, authn) = open_tenant(config, &args.tenant)?;
    let data = roles::RoleData {
        name: args.name.trim().to_owned(),
        description: args
            .description
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty()),
    };
    let role = block_on(authn.create_role(
        tenant.id,
        actor(&args.operator),
        data,
        ClientInfo::default(),
    ))
    .map_err(|e| match e {
        gatehouse_authn::AuthnError::Store(StoreError::Conflict { .. }) => {
            ServerError::Usage(format!(
                "tenant `{}` already has a role named `{}`",
                tenant.slug,
                args.name.trim()
            ))
        }
        other => ServerError::Usage(format!("creating the role failed: {other}")),
    })?;
    println!("created the role {} ({})", role.name, role.id);
    Ok(())
}

fn assign_role(config: &Config, args: RoleArgs) -> Result<(), ServerError> {
    let (context, role) = open_with_role(config, &args)?;
    let assigned = block_on(context.authn.assign_role(
        context.tenant.id,
        actor(&args.operator),
        context.user.id,
        role.id,
        ClientInfo::default(),
    ))
    .map_err(|e| ServerError::Usage(format!("assigning the role failed: {e}")))?;
    let email = &args.user.email;
    if assigned {
        println!("{email} now has the role {}", role.name);
    } else {
        println!("{email} already had the role {}", role.name);
    }
    Ok(())
}

fn remove_role(config: &Config, args: RoleArgs) -> Result<(), ServerError> {
    let (context, role) = open_with_role(config, &args)?;
    let removal = block_on(context.authn.remove_role(
        context.tenant.id,
        actor(&args.operator),
        context.user.id,
        role.id,
        ClientInfo::default(),
    ))
    .map_err(|e| ServerError::Usage(format!("removing the role failed: {e}")))?;
    let email = &args.user.email;
    if removal.was_assigned {
        println!(
            "{email} no longer has the role {}; {} grants revoked",
            role.name,
            removal.grants_revoked.len()
        );
        if !removal.grants_revoked.is_empty() {
            let revoked = removal.grants_revoked;
            backchannel_logout(config, &context, move |issuer, tenant, url, user| {
                issuer.grants_revoked(tenant, url, user, &revoked)
            });
        }
    } else {
        println!("{email} did not have the role {}", role.name);
    }
    Ok(())
}

fn list_roles(config: &Config, slug: &str) -> Result<(), ServerError> {
    let pool = open_pool(config)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    gatehouse_identity_store::db::run_migrations(&mut conn)?;
    let tenant = tenants::find_by_slug(&mut conn, slug)?
        .ok_or_else(|| ServerError::Usage(format!("no tenant `{slug}`")))?;
    let mut request = PageRequest::first(100);
    loop {
        let page = roles::list(&mut conn, tenant.id, &request)?;
        for role in &page.items {
            println!(
                "{}\t{}",
                role.name,
                role.description.as_deref().unwrap_or_default()
            );
        }
        match page.next_cursor {
            Some(cursor) => request = PageRequest::after(cursor, 100),
            None => break,
        }
    }
    Ok(())
}
