//! `gatehouse users …` and `gatehouse roles …`: an adapter over the operator's use
//! cases in `gatehouse-admin`, which write each change with its revocations and its
//! audit record (the operator as the actor) and tell relying parties; this module
//! only parses arguments, maps errors and prints.
//!
//! - `users reset`: the administrator-assisted account recovery, for a user who lost
//!   every second factor and whose identity the operator checked by other means.
//! - `users disable` / `users enable`: deactivation ends every session and grant at
//!   once; reactivation restores nothing.
//! - `users list` pages through a tenant's users; `users delete` deactivates, then
//!   removes the user with what is theirs.
//! - `roles assign` / `roles remove`: removal revokes the user's grants whose tokens
//!   carry roles.
//!
//! The service's events travel to running servers over NOTIFY on PostgreSQL; on
//! SQLite they reach no other process, which is safe because nothing those events
//! invalidate is needed for correctness (see `docs/architecture.md`, the event bus).

use clap::{Args, Subcommand};
use gatehouse_admin::{NewAccount, Operator, Reason};
use gatehouse_core::config::Config;
use gatehouse_identity_store::PageRequest;
use gatehouse_token_issuer::backchannel::Delivery;

use crate::ServerError;
use crate::cli::admin::{admin_error, ask, block_on, open_admin};

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create an account without mail (development, tests, moving users in by
    /// hand); audited with the operator.
    Create(CreateUserArgs),
    /// Reset a user's password and second factors; they get a link to start again.
    /// The reason says how the user's identity was checked.
    Reset(StatusArgs),
    /// Deactivate a user: sign-in is refused, every session ends and every token
    /// stops working at once.
    Disable(StatusArgs),
    /// Let a deactivated user sign in again (nothing that was ended comes back).
    Enable(StatusArgs),
    /// The tenant's users, oldest first: id, primary address, active, verified.
    List {
        /// Tenant slug.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// At most this many (1..=500); the last line names the cursor for more.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Continue after this cursor (printed by the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Only the users this SCIM filter matches (RFC 7644 §3.4.2.2), such as
        /// 'emails.value co "@example.com" and active eq true'.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Everything held about a user (profile, credential metadata, sessions,
    /// consent history, audit events by or about them) as JSON on standard output;
    /// the export is audited.
    Export {
        #[command(flatten)]
        user: UserArg,
        /// Who is doing this (the audit log's actor).
        #[arg(long)]
        operator: String,
    },
    /// Delete a user and everything that is theirs (credentials, sessions, grants,
    /// consents); every token stops working at once. The audit log keeps the
    /// deletion.
    Delete(StatusArgs),
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
pub struct CreateUserArgs {
    #[command(flatten)]
    user: UserArg,
    #[arg(long)]
    given_name: Option<String>,
    #[arg(long)]
    family_name: Option<String>,
    /// Read the password from the first line of standard input (never from the
    /// command line, where other users and the shell history would see it).
    /// Without it the user sets one through "forgot password".
    #[arg(long)]
    password_stdin: bool,
    /// The operator vouches for the address: no verification mail is needed.
    #[arg(long)]
    verified: bool,
    /// Mail the user a link to choose their password (instead of --password-stdin).
    #[arg(long)]
    invite: bool,
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

fn operator_and_reason(operator: &str, reason: &str) -> Result<(Operator, Reason), ServerError> {
    Ok((
        Operator::named(operator).map_err(|e| admin_error("", e))?,
        Reason::new(reason).map_err(|e| admin_error("", e))?,
    ))
}

fn report(deliveries: &[Delivery]) {
    for delivery in deliveries {
        if delivery.delivered {
            println!("back-channel logout delivered to {}", delivery.client_id);
        } else {
            eprintln!(
                "warning: back-channel logout to {} was not delivered after {} attempts",
                delivery.client_id,
                gatehouse_token_issuer::backchannel::ATTEMPTS
            );
        }
    }
}

pub fn run(config: &Config, command: UsersCommand) -> Result<(), ServerError> {
    match command {
        UsersCommand::Create(args) => create_user(config, args),
        UsersCommand::Reset(args) => reset(config, args),
        UsersCommand::Disable(args) => disable(config, args),
        UsersCommand::Enable(args) => enable(config, args),
        UsersCommand::List {
            tenant,
            limit,
            after,
            filter,
        } => list_users(config, &tenant, limit, after, filter.as_deref()),
        UsersCommand::Delete(args) => delete(config, args),
        UsersCommand::Export { user, operator } => {
            let operator = Operator::named(&operator).map_err(|e| admin_error("", e))?;
            let admin = open_admin(config)?;
            let document = ask(admin.export_user(&operator, &user.tenant, &user.email))?;
            println!("{document:#}");
            Ok(())
        }
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

fn create_user(config: &Config, args: CreateUserArgs) -> Result<(), ServerError> {
    let operator = Operator::named(&args.operator).map_err(|e| admin_error("", e))?;
    let password = if args.password_stdin {
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| ServerError::Usage(format!("cannot read the password: {e}")))?;
        let password = line.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            return Err(ServerError::Usage(
                "--password-stdin: standard input had no password".into(),
            ));
        }
        Some(zeroize::Zeroizing::new(password.to_owned()))
    } else {
        None
    };
    let admin = open_admin(config)?;
    let user = ask(admin.create_user(
        &operator,
        &args.user.tenant,
        NewAccount {
            email: args.user.email,
            given_name: args.given_name,
            family_name: args.family_name,
            password,
            verified: args.verified,
            invite: None,
        },
        args.invite,
    ))?;
    println!("created user {}", user.0.id);
    match user.1 {
        Some(true) => println!("invitation sent"),
        Some(false) => eprintln!("warning: the invitation could not be sent (see the log)"),
        None => {}
    }
    Ok(())
}

fn reset(config: &Config, args: StatusArgs) -> Result<(), ServerError> {
    let (operator, reason) = operator_and_reason(&args.operator, &args.reason)?;
    let admin = open_admin(config)?;
    let who = &args.user;
    let outcome = block_on(admin.reset_user(&operator, &who.tenant, &who.email, &reason))
        .map_err(|e| admin_error("reset", e))?;
    println!(
        "reset {}: {} second-factor credentials removed, {} sessions ended, {} grants revoked",
        who.email, outcome.factors_removed, outcome.sessions_ended, outcome.grants_revoked
    );
    if outcome.link_sent {
        println!("a link to choose a new password was mailed to the user");
    } else {
        println!(
            "the mail with the link could not be sent; the user can use \"Forgot your password?\""
        );
    }
    report(&outcome.deliveries);
    Ok(())
}

fn disable(config: &Config, args: StatusArgs) -> Result<(), ServerError> {
    let (operator, reason) = operator_and_reason(&args.operator, &args.reason)?;
    let admin = open_admin(config)?;
    let who = &args.user;
    let done = block_on(admin.disable_user(&operator, &who.tenant, &who.email, &reason))
        .map_err(|e| admin_error("disabling", e))?;
    let email = &who.email;
    if done.was_active {
        println!("disabled {email}");
    } else {
        println!("{email} was already disabled");
    }
    println!(
        "{} sessions ended, {} grants revoked",
        done.sessions_ended, done.grants_revoked
    );
    report(&done.deliveries);
    Ok(())
}

fn enable(config: &Config, args: StatusArgs) -> Result<(), ServerError> {
    let (operator, reason) = operator_and_reason(&args.operator, &args.reason)?;
    let admin = open_admin(config)?;
    let who = &args.user;
    let changed = block_on(admin.enable_user(&operator, &who.tenant, &who.email, &reason))
        .map_err(|e| admin_error("enabling", e))?;
    if changed {
        println!("enabled {}; they can sign in again", who.email);
    } else {
        println!("{} was not disabled", who.email);
    }
    Ok(())
}

fn list_users(
    config: &Config,
    tenant: &str,
    limit: u32,
    after: Option<String>,
    filter: Option<&str>,
) -> Result<(), ServerError> {
    let admin = open_admin(config)?;
    let request = PageRequest { after, limit };
    let page = match filter {
        None => block_on(admin.users(tenant, request)),
        Some(text) => {
            let filter = gatehouse_scim::parse_filter(text)
                .and_then(|parsed| crate::api::scim::filter::users(&parsed, false))
                .map_err(|e| ServerError::Usage(format!("--filter: {}", e.detail)))?;
            block_on(admin.users_matching(tenant, filter, request))
        }
    }
    .map_err(|e| admin_error("listing users", e))?;
    if page.items.is_empty() {
        println!("no users");
    }
    for user in &page.items {
        let primary = user.primary_email();
        println!(
            "{}\t{}\t{}\t{}",
            user.id,
            primary.map_or("-", |e| e.value.as_str()),
            if user.data.active {
                "active"
            } else {
                "disabled"
            },
            if primary.is_some_and(|e| e.verified) {
                "verified"
            } else {
                "unverified"
            },
        );
    }
    if let Some(cursor) = page.next_cursor {
        println!("more: --after {cursor}");
    }
    Ok(())
}

fn delete(config: &Config, args: StatusArgs) -> Result<(), ServerError> {
    let (operator, reason) = operator_and_reason(&args.operator, &args.reason)?;
    let admin = open_admin(config)?;
    let who = &args.user;
    let done = block_on(admin.delete_user(&operator, &who.tenant, &who.email, &reason))
        .map_err(|e| admin_error("deleting", e))?;
    println!(
        "deleted {}: {} sessions ended, {} grants revoked",
        who.email, done.sessions_ended, done.grants_revoked
    );
    report(&done.deliveries);
    Ok(())
}

fn create_role(config: &Config, args: CreateRoleArgs) -> Result<(), ServerError> {
    let operator = Operator::named(&args.operator).map_err(|e| admin_error("", e))?;
    if args.name.trim().is_empty() {
        return Err(ServerError::Usage(
            "--name must not be empty: the audit log records it".into(),
        ));
    }
    let admin = open_admin(config)?;
    let role = block_on(admin.create_role(
        &operator,
        &args.tenant,
        &args.name,
        args.description.as_deref(),
    ))
    .map_err(|e| admin_error("creating the role", e))?;
    println!("created the role {} ({})", role.name, role.id);
    Ok(())
}

fn assign_role(config: &Config, args: RoleArgs) -> Result<(), ServerError> {
    let operator = Operator::named(&args.operator).map_err(|e| admin_error("", e))?;
    let admin = open_admin(config)?;
    let who = &args.user;
    let assigned = block_on(admin.assign_role(&operator, &who.tenant, &who.email, &args.role))
        .map_err(|e| admin_error("assigning the role", e))?;
    if assigned {
        println!("{} now has the role {}", who.email, args.role);
    } else {
        println!("{} already had the role {}", who.email, args.role);
    }
    Ok(())
}

fn remove_role(config: &Config, args: RoleArgs) -> Result<(), ServerError> {
    let operator = Operator::named(&args.operator).map_err(|e| admin_error("", e))?;
    let admin = open_admin(config)?;
    let who = &args.user;
    let removal = block_on(admin.remove_role(&operator, &who.tenant, &who.email, &args.role))
        .map_err(|e| admin_error("removing the role", e))?;
    if removal.was_assigned {
        println!(
            "{} no longer has the role {}; {} grants revoked",
            who.email, args.role, removal.grants_revoked
        );
        report(&removal.deliveries);
    } else {
        println!("{} did not have the role {}", who.email, args.role);
    }
    Ok(())
}

fn list_roles(config: &Config, slug: &str) -> Result<(), ServerError> {
    let admin = open_admin(config)?;
    let roles = block_on(admin.roles(slug)).map_err(|e| admin_error("listing roles", e))?;
    for role in &roles {
        println!(
            "{}\t{}",
            role.name,
            role.description.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}
