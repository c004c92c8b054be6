//! `gatehouse purposes list | define | update`: a tenant's consent purposes, through
//! the consent service (`gatehouse_consent::Consents`), which versions and audits
//! them. A purpose is never edited in place: `update` makes the next version, and
//! names the version it read, so two operators cannot overwrite each other.
//!
//! Nothing is announced to running servers: they read purposes from the database
//! whenever they show or check one, and cache none.

use std::sync::Arc;

use clap::{Args, Subcommand};
use gatehouse_consent::Consents;
use gatehouse_core::config::Config;
use gatehouse_core::events::EventBus;
use gatehouse_core::ids::TenantId;
use gatehouse_core::secrets::Cipher;
use gatehouse_core::{SharedClock, SystemClock};
use gatehouse_identity_store::purposes::{LegalBasis, Purpose, PurposeChange, PurposeData};
use gatehouse_identity_store::{StoreError, tenants};

use crate::ServerError;
use crate::state::open_pool;

#[derive(Debug, Subcommand)]
pub enum PurposesCommand {
    /// The latest version of every purpose of the tenant.
    List {
        /// Tenant slug.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// Define a new purpose (version 1).
    Define(DefineArgs),
    /// Change a purpose's wording or scopes: a new version. Consents given to an
    /// older version stay recorded against it.
    Update(UpdateArgs),
}

#[derive(Debug, Args)]
pub struct DefineArgs {
    /// Tenant slug.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Stable identifier, e.g. `newsletter`; consent records name it.
    #[arg(long)]
    slug: String,
    /// The name users see.
    #[arg(long)]
    name: String,
    /// What the data is used for, as users read it.
    #[arg(long)]
    description: String,
    /// An OAuth scope the purpose covers (repeat for several); withdrawing the
    /// purpose revokes the grants holding any of them.
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    /// consent, contract, legal_obligation, vital_interests, public_task or
    /// legitimate_interest.
    #[arg(long, default_value = "consent")]
    legal_basis: String,
    /// Who is doing this (the audit log's actor).
    #[arg(long)]
    operator: String,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Tenant slug.
    #[arg(long, default_value = "default")]
    tenant: String,
    #[arg(long)]
    slug: String,
    /// The version the change is based on (see `purposes list`); refused if the
    /// purpose has moved on since.
    #[arg(long)]
    expected_version: i32,
    /// New name; unchanged if left out.
    #[arg(long)]
    name: Option<String>,
    /// New description; unchanged if left out.
    #[arg(long)]
    description: Option<String>,
    /// The new set of scopes (repeat for several); unchanged if left out.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Who is doing this (the audit log's actor).
    #[arg(long)]
    operator: String,
}

fn open(config: &Config, slug: &str) -> Result<(Consents, TenantId), ServerError> {
    let pool = open_pool(config)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    gatehouse_identity_store::db::run_migrations(&mut conn)?;
    let tenant = tenants::find_by_slug(&mut conn, slug)?
        .ok_or_else(|| ServerError::Usage(format!("no tenant `{slug}`")))?
        .id;
    let (cipher, source) = Cipher::load(config).map_err(ServerError::Secrets)?;
    let clock: SharedClock = Arc::new(SystemClock);
    crate::state::prove_master_keys(&mut conn, &cipher, &source, clock.now())?;
    drop(conn);
    // Purpose changes publish no event (see the module documentation).
    Ok((
        Consents::new(pool, cipher, clock, EventBus::in_process()),
        tenant,
    ))
}

fn actor(operator: &str) -> Result<String, ServerError> {
    let operator = operator.trim();
    if operator.is_empty() {
        return Err(ServerError::Usage(
            "--operator must not be empty: the audit log records it".into(),
        ));
    }
    Ok(format!("operator:{operator}"))
}

fn print(purpose: &Purpose) {
    println!(
        "{}\tv{}\t{}\t{}\t{}",
        purpose.slug,
        purpose.version,
        purpose.legal_basis,
        purpose.scopes.join(" "),
        purpose.name
    );
}

pub fn run(config: &Config, command: PurposesCommand) -> Result<(), ServerError> {
    let failed = |e: gatehouse_consent::ConsentError| ServerError::Usage(e.to_string());
    match command {
        PurposesCommand::List { tenant } => {
            let (consents, id) = open(config, &tenant)?;
            let purposes = consents.purposes(id).map_err(failed)?;
            if purposes.is_empty() {
                println!("no purposes defined");
            }
            purposes.iter().for_each(print);
        }
        PurposesCommand::Define(args) => {
            let actor = actor(&args.operator)?;
            let legal_basis: LegalBasis = args.legal_basis.parse()?;
            let (consents, id) = open(config, &args.tenant)?;
            let purpose = consents
                .define_purpose(
                    id,
                    &actor,
                    PurposeData {
                        slug: args.slug,
                        name: args.name,
                        description: args.description,
                        scopes: args.scopes,
                        legal_basis,
                    },
                )
                .map_err(failed)?;
            print!("defined ");
            print(&purpose);
        }
        PurposesCommand::Update(args) => {
            let actor = actor(&args.operator)?;
            let (consents, id) = open(config, &args.tenant)?;
            let current = consents.purpose(id, &args.slug).map_err(failed)?;
            let current_version = current.version;
            if args.name.is_none() && args.description.is_none() && args.scopes.is_empty() {
                return Err(ServerError::Usage(
                    "nothing to change: give --name, --description or --scope".into(),
                ));
            }
            let change = PurposeChange {
                name: args.name.unwrap_or(current.name),
                description: args.description.unwrap_or(current.description),
                scopes: if args.scopes.is_empty() {
                    current.scopes
                } else {
                    args.scopes
                },
            };
            let purpose = consents
                .update_purpose(id, &actor, &args.slug, args.expected_version, change)
                .map_err(|e| match e {
                    gatehouse_consent::ConsentError::Store(StoreError::StaleVersion { .. }) => {
                        ServerError::Usage(format!(
                            "purpose `{}` is at version {}, not {}: check `gatehouse purposes list` and try again",
                            args.slug, current_version, args.expected_version
                        ))
                    }
                    other => failed(other),
                })?;
            print!("updated ");
            print(&purpose);
        }
    }
    Ok(())
}
