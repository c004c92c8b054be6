//! `gatehouse policy …` and `gatehouse decisions …`: a tenant's Cedar policy sets
//! (load, list, test a request) and the decision log, an adapter over
//! `gatehouse-admin`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use gatehouse_admin::AdminError;
use gatehouse_core::config::Config;

use crate::ServerError;
use crate::cli::admin::{admin_error, ask, block_on, open_admin, operator};

#[derive(Debug, Args)]
pub struct TenantArg {
    /// Tenant slug.
    #[arg(long, default_value = "default")]
    tenant: String,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a Cedar policy file and make it the tenant's serving set.
    Load {
        file: PathBuf,
        #[command(flatten)]
        tenant: TenantArg,
        /// Who is doing this (the audit log's actor; default: the login name).
        #[arg(long)]
        operator: Option<String>,
    },
    /// List the tenant's policy set versions (the newest serves).
    List(TenantArg),
    /// Evaluate an AuthZEN evaluation request (JSON file) against the serving set,
    /// without logging the decision.
    Test {
        request: PathBuf,
        #[command(flatten)]
        tenant: TenantArg,
        /// The client id the request is made as (consent purposes default to it).
        #[arg(long, default_value = "cli")]
        client: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DecisionsCommand {
    /// The tenant's most recent decisions, newest first.
    List {
        #[command(flatten)]
        tenant: TenantArg,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

fn read(path: &PathBuf) -> Result<String, ServerError> {
    std::fs::read_to_string(path)
        .map_err(|e| ServerError::Usage(format!("cannot read {}: {e}", path.display())))
}

pub fn run_policy(config: &Config, command: PolicyCommand) -> Result<(), ServerError> {
    match command {
        PolicyCommand::Load {
            file,
            tenant,
            operator: name,
        } => {
            let text = read(&file)?;
            let operator = operator(name.as_deref())?;
            let admin = open_admin(config)?;
            let version = block_on(admin.save_policies(&operator, &tenant.tenant, &text)).map_err(
                |e| match e {
                    // The validator's own words: they name the policy and the problem.
                    AdminError::Invalid { message, .. } => ServerError::Usage(message),
                    other => admin_error("saving the policies", other),
                },
            )?;
            println!(
                "policy set version {version} of tenant `{}` now serves",
                tenant.tenant
            );
            println!("running nodes pick it up at once on PostgreSQL, within seconds on SQLite");
        }
        PolicyCommand::List(tenant) => {
            let admin = open_admin(config)?;
            let versions = ask(admin.policy_versions(&tenant.tenant))?;
            if versions.is_empty() {
                println!("no policy set loaded: the built-in default serves");
            }
            for (index, v) in versions.iter().enumerate() {
                let serving = if index == 0 { "\tserving" } else { "" };
                println!(
                    "{}\t{}\t{}\t{} bytes{serving}",
                    v.version,
                    v.created_at.to_rfc3339(),
                    v.created_by,
                    v.size
                );
            }
        }
        PolicyCommand::Test {
            request,
            tenant,
            client,
        } => {
            let body = read(&request)?;
            let admin = open_admin(config)?;
            let out = block_on(admin.test_policies(&tenant.tenant, &client, body.as_bytes()))
                .map_err(|e| match e {
                    AdminError::Invalid { message, .. } => ServerError::Usage(message),
                    other => admin_error("", other),
                })?;
            println!("{out:#}");
        }
    }
    Ok(())
}

pub fn run_decisions(config: &Config, command: DecisionsCommand) -> Result<(), ServerError> {
    let DecisionsCommand::List { tenant, limit } = command;
    let admin = open_admin(config)?;
    let decisions = ask(admin.decisions(&tenant.tenant, limit))?;
    if decisions.is_empty() {
        eprintln!("no decisions logged");
    }
    for d in decisions {
        if let Some(skipped) = d.skipped {
            println!(
                "{}\tgap\t{skipped} decisions not logged\t-\t-\t{}",
                d.at.to_rfc3339(),
                d.request
            );
            continue;
        }
        let unknown = if d.unknown_keys.is_empty() {
            String::new()
        } else {
            format!("\tunknown: {}", d.unknown_keys.join(","))
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}{unknown}",
            d.at.to_rfc3339(),
            if d.decision { "permit" } else { "deny" },
            d.reason.as_deref().unwrap_or("-"),
            d.policies.join(","),
            d.request_id.as_deref().unwrap_or("-"),
            d.request
        );
    }
    Ok(())
}
