//! `gatehouse policy …` and `gatehouse decisions …`: a tenant's Cedar policy sets
//! (load, list, test a request) and the decision log.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use gatehouse_consent::pdp::{EvaluationRequest, Pdp};
use gatehouse_core::config::Config;
use gatehouse_core::events::DomainEvent;
use gatehouse_core::ids::TenantId;
use gatehouse_core::{SharedClock, SystemClock};
use gatehouse_identity_store::{Pool, StoreError, decision_log, policy_sets, tenants};
use serde_json::json;

use crate::ServerError;
use crate::state::open_pool;

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

fn open(config: &Config, slug: &str) -> Result<(Pool, TenantId), ServerError> {
    let pool = open_pool(config)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    gatehouse_identity_store::db::run_migrations(&mut conn)?;
    let tenant = tenants::find_by_slug(&mut conn, slug)?
        .ok_or_else(|| ServerError::Usage(format!("no tenant `{slug}` (a new installation gets its default tenant on the first `gatehouse serve`)")))?
        .id;
    Ok((pool, tenant))
}

fn pdp(pool: &Pool) -> Result<Pdp, ServerError> {
    let clock: SharedClock = Arc::new(SystemClock);
    Pdp::new(pool.clone(), clock).map_err(|e| ServerError::Startup(e.to_string()))
}

fn read(path: &PathBuf) -> Result<String, ServerError> {
    std::fs::read_to_string(path)
        .map_err(|e| ServerError::Usage(format!("cannot read {}: {e}", path.display())))
}

pub fn run_policy(config: &Config, command: PolicyCommand) -> Result<(), ServerError> {
    match command {
        PolicyCommand::Load { file, tenant } => {
            let text = read(&file)?;
            let (pool, id) = open(config, &tenant.tenant)?;
            let version = pdp(&pool)?
                .save_policies(id, &text, "cli")
                .map_err(|e| ServerError::Usage(e.to_string()))?;
            println!(
                "policy set version {version} of tenant `{}` now serves",
                tenant.tenant
            );
            crate::state::announce(config, DomainEvent::TenantChanged { tenant: id });
            println!("running nodes pick it up at once on PostgreSQL, within seconds on SQLite");
        }
        PolicyCommand::List(tenant) => {
            let (pool, id) = open(config, &tenant.tenant)?;
            let mut conn = pool.get().map_err(StoreError::from)?;
            let versions = policy_sets::list(&mut conn, id)?;
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
            let parsed = EvaluationRequest::from_json(body.as_bytes())
                .map_err(|e| ServerError::Usage(e.to_string()))?;
            let (pool, id) = open(config, &tenant.tenant)?;
            let decision = pdp(&pool)?
                .dry_run(id, &client, &parsed)
                .map_err(|e| ServerError::Usage(e.to_string()))?;
            let mut out = decision.to_authzen();
            out["policies"] = json!(decision.policies);
            out["policy_version"] = json!(decision.policy_version);
            println!("{out:#}");
        }
    }
    Ok(())
}

pub fn run_decisions(config: &Config, command: DecisionsCommand) -> Result<(), ServerError> {
    let DecisionsCommand::List { tenant, limit } = command;
    let (pool, id) = open(config, &tenant.tenant)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    for d in decision_log::recent(&mut conn, id, limit)? {
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
