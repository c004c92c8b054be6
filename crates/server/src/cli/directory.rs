//! `gatehouse tenants …`, `gatehouse groups …` and `gatehouse audit list|verify`: an
//! adapter over the operator's use cases in `gatehouse-admin`; it parses arguments,
//! maps errors and prints.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use gatehouse_admin::{AuditFilter, AuditQuery, TenantChange, event_view};
use gatehouse_core::config::Config;

use crate::ServerError;
use crate::cli::admin::{admin_error, ask, block_on, open_admin, operator};

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Every tenant with its issuer.
    List,
    /// Create a tenant (audited in its own log); served at `/t/{slug}` and at any
    /// host name given.
    Create {
        /// URL-safe name: a-z, 0-9 and '-'.
        #[arg(long)]
        slug: String,
        /// The name its pages and mail show.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        settings: TenantSettingsArgs,
        /// Who is doing this (the audit log's actor; default: the login name).
        #[arg(long)]
        operator: Option<String>,
    },
    /// Change a tenant's name or settings (audited; every node reads it again).
    Update {
        /// Tenant slug.
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        settings: TenantSettingsArgs,
        /// Who is doing this (the audit log's actor; default: the login name).
        #[arg(long)]
        operator: Option<String>,
    },
    /// One tenant: issuer, registration and second-factor policy, host names.
    Show {
        /// Tenant slug.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Stop serving a tenant on every node (its data stays); audited with the reason.
    Disable(SwitchArgs),
    /// Serve a disabled tenant again.
    Enable(SwitchArgs),
    /// Delete a disabled tenant with all of its data, its audit trail included
    /// (recorded, with the reason, in the platform tenant's audit log).
    Delete(SwitchArgs),
}

/// Which tenant, and why (the audit log records it).
#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// Tenant slug.
    #[arg(long)]
    tenant: String,
    /// Why (required; the tenant's audit log keeps it).
    #[arg(long)]
    reason: String,
    /// Who is doing this (the audit log's actor; default: the login name).
    #[arg(long)]
    operator: Option<String>,
}

/// The tenant settings the command line sets; what is not given stays as it is.
#[derive(Debug, Args)]
pub struct TenantSettingsArgs {
    /// A host name the tenant is served at as its own issuer (repeatable; replaces
    /// the list).
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Whether people may sign up themselves.
    #[arg(long, value_enum)]
    registration: Option<Switch>,
    /// Whether every user needs a second factor.
    #[arg(long, value_enum)]
    mfa: Option<Requirement>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Switch {
    Open,
    Closed,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Requirement {
    Required,
    Optional,
}

impl TenantSettingsArgs {
    /// The settings sections these arguments replace, read over `current`.
    fn sections(
        &self,
        current: &serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let section = |name: &str| {
            current
                .get(name)
                .and_then(|v| v.as_object())
                .cloned()
                .unwrap_or_default()
        };
        let mut out = serde_json::Map::new();
        if !self.hosts.is_empty() {
            out.insert("hosts".into(), serde_json::json!(self.hosts));
        }
        if let Some(switch) = self.registration {
            let mut registration = section("registration");
            registration.insert("enabled".into(), matches!(switch, Switch::Open).into());
            out.insert("registration".into(), registration.into());
        }
        if let Some(requirement) = self.mfa {
            let mut mfa = section("mfa");
            mfa.insert(
                "required".into(),
                matches!(requirement, Requirement::Required).into(),
            );
            out.insert("mfa".into(), mfa.into());
        }
        out
    }
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// The tenant's groups.
    List {
        /// Tenant slug.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Create a group (audited).
    Create {
        /// Tenant slug.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// The group's display name, unique in the tenant.
        #[arg(long)]
        name: String,
        /// Who is doing this (the audit log's actor); default: the login name.
        #[arg(long)]
        operator: Option<String>,
    },
    /// Add a user to a group (audited).
    AddMember(MemberArgs),
    /// Remove a user from a group (audited).
    RemoveMember(MemberArgs),
}

#[derive(Debug, Args)]
pub struct MemberArgs {
    /// Tenant slug.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The group's display name.
    #[arg(long)]
    group: String,
    /// The user's primary email address.
    #[arg(long)]
    email: String,
    /// Who is doing this (the audit log's actor); default: the login name.
    #[arg(long)]
    operator: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every tenant's hash chain; exits 1 if anything was altered or removed.
    Verify,
    /// A tenant's audit events, oldest first, one JSON object per line.
    List(AuditListArgs),
}

#[derive(Debug, Args)]
pub struct AuditListArgs {
    /// Tenant slug.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Only this actor (`operator:alice`, `user:<id>`, `client:<id>`).
    #[arg(long)]
    actor: Option<String>,
    /// Only this action, or every action under a prefix ending in `.` (`user.`).
    #[arg(long)]
    action: Option<String>,
    /// Only events about this target (`user:<id>`, `client:<id>`).
    #[arg(long)]
    target: Option<String>,
    /// From this time on (RFC 3339).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339).
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// At most this many events.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

impl AuditListArgs {
    /// The admin layer's query for these flags.
    fn query(&self) -> AuditQuery {
        AuditQuery {
            filter: AuditFilter {
                actor: self.actor.clone(),
                action: self.action.clone(),
                target: self.target.clone(),
                since: self.since,
                until: self.until,
            },
            limit: self.limit,
        }
    }
}

pub fn run_tenants(config: &Config, command: TenantsCommand) -> Result<ExitCode, ServerError> {
    let admin = open_admin(config)?;
    match command {
        TenantsCommand::List => {
            let tenants =
                block_on(admin.tenants()).map_err(|e| admin_error("listing tenants", e))?;
            for view in tenants {
                println!(
                    "{}\t{}\t{}",
                    view.tenant.slug,
                    view.issuer.as_deref().unwrap_or("-"),
                    view.tenant.display_name
                );
            }
        }
        TenantsCommand::Create {
            slug,
            name,
            settings,
            operator: who,
        } => {
            let who = operator(who.as_deref())?;
            let sections = settings.sections(&serde_json::Map::new());
            let view = block_on(admin.create_tenant(&who, &slug, &name, sections))
                .map_err(|e| admin_error("creating the tenant", e))?;
            println!(
                "created tenant {} at {}",
                view.tenant.slug,
                view.issuer.as_deref().unwrap_or("-")
            );
        }
        TenantsCommand::Update {
            tenant,
            name,
            settings,
            operator: who,
        } => {
            let who = operator(who.as_deref())?;
            let current = ask(admin.tenant(&tenant))?;
            let change = TenantChange {
                display_name: name,
                settings: settings.sections(&current.settings),
                // Made from what was read: a change in between conflicts.
                expected_version: Some(current.version),
            };
            let view = block_on(admin.update_tenant(&who, &tenant, change))
                .map_err(|e| admin_error("changing the tenant", e))?;
            println!("updated tenant {}", view.tenant.slug);
        }
        TenantsCommand::Disable(args) => switch(&admin, args, true)?,
        TenantsCommand::Enable(args) => switch(&admin, args, false)?,
        TenantsCommand::Delete(args) => {
            let who = operator(args.operator.as_deref())?;
            let why = gatehouse_admin::Reason::new(&args.reason)
                .map_err(|e| admin_error("deleting the tenant", e))?;
            let deleted = block_on(admin.delete_tenant(&who, &args.tenant, &why))
                .map_err(|e| admin_error("deleting the tenant", e))?;
            println!(
                "deleted tenant {} with all of its data ({} audit events)",
                args.tenant, deleted.audit_events
            );
        }
        TenantsCommand::Show { tenant } => {
            let view = block_on(admin.tenant_view(&tenant))
                .map_err(|e| admin_error("showing the tenant", e))?;
            let settings = view.tenant.typed_settings();
            println!("slug:         {}", view.tenant.slug);
            println!("name:         {}", view.tenant.display_name);
            println!("id:           {}", view.tenant.id);
            println!("issuer:       {}", view.issuer.as_deref().unwrap_or("-"));
            println!("registration: {}", on_off(settings.registration.enabled));
            println!(
                "verified email required: {}",
                yes_no(settings.registration.require_verified_email)
            );
            println!("second factor required:  {}", yes_no(settings.mfa.required));
            println!(
                "hosts:        {}",
                if settings.hosts.is_empty() {
                    "-".to_owned()
                } else {
                    settings.hosts.join(", ")
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn on_off(on: bool) -> &'static str {
    if on { "open" } else { "closed" }
}

fn yes_no(yes: bool) -> &'static str {
    if yes { "yes" } else { "no" }
}

pub fn run_groups(config: &Config, command: GroupsCommand) -> Result<ExitCode, ServerError> {
    let admin = open_admin(config)?;
    match command {
        GroupsCommand::List { tenant } => {
            let groups =
                block_on(admin.groups(&tenant)).map_err(|e| admin_error("listing groups", e))?;
            if groups.is_empty() {
                println!("no groups in tenant `{tenant}`");
            }
            for group in groups {
                println!("{}\t{}", group.id, group.display_name);
            }
        }
        GroupsCommand::Create {
            tenant,
            name,
            operator: given,
        } => {
            let operator = operator(given.as_deref())?;
            let group = block_on(admin.create_group(&operator, &tenant, &name))
                .map_err(|e| admin_error("creating the group", e))?;
            println!("created group `{}` ({})", group.display_name, group.id);
        }
        GroupsCommand::AddMember(args) => {
            let operator = operator(args.operator.as_deref())?;
            let added =
                block_on(admin.add_to_group(&operator, &args.tenant, &args.group, &args.email))
                    .map_err(|e| admin_error("adding the member", e))?;
            if added {
                println!("{} is now a member of `{}`", args.email, args.group);
            } else {
                println!("{} was a member of `{}` already", args.email, args.group);
            }
        }
        GroupsCommand::RemoveMember(args) => {
            let operator = operator(args.operator.as_deref())?;
            let removed = block_on(admin.remove_from_group(
                &operator,
                &args.tenant,
                &args.group,
                &args.email,
            ))
            .map_err(|e| admin_error("removing the member", e))?;
            if removed {
                println!("{} is no longer a member of `{}`", args.email, args.group);
            } else {
                println!("{} was not a member of `{}`", args.email, args.group);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_audit(config: &Config, command: AuditCommand) -> Result<ExitCode, ServerError> {
    let admin = open_admin(config)?;
    match command {
        AuditCommand::Verify => {
            let report = block_on(admin.verify_audit()).map_err(|e| admin_error("verifying", e))?;
            println!(
                "checked {} event(s) in {} tenant chain(s)",
                report.events, report.tenants
            );
            if report.is_intact() {
                println!("audit log intact");
                return Ok(ExitCode::SUCCESS);
            }
            for problem in &report.problems {
                println!(
                    "tenant {} event {}: {}",
                    problem.tenant_id, problem.seq, problem.problem
                );
            }
            Err(ServerError::AuditBroken(report.problems.len()))
        }
        AuditCommand::List(args) => {
            let events = block_on(admin.audit_events(&args.tenant, args.query()))
                .map_err(|e| admin_error("reading the audit log", e))?;
            for event in events {
                println!("{}", event_view(&event));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Disables or enables a tenant, saying whether it changed.
fn switch(
    admin: &gatehouse_admin::Admin,
    args: SwitchArgs,
    disabled: bool,
) -> Result<(), ServerError> {
    let who = operator(args.operator.as_deref())?;
    let why = gatehouse_admin::Reason::new(&args.reason).map_err(|e| admin_error("", e))?;
    let changed = ask(admin.set_tenant_disabled(&who, &args.tenant, disabled, &why))?;
    let state = if disabled { "disabled" } else { "enabled" };
    if changed {
        println!(
            "tenant {} {state}; every node stops or starts serving it as it hears",
            args.tenant
        );
    } else {
        println!("tenant {} was already {state}", args.tenant);
    }
    Ok(())
}
