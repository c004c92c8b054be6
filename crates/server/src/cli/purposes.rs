//! `gatehouse purposes list | define | update`: a tenant's consent purposes, through
//! the admin layer over the consent service, which versions and audits them. A purpose is never edited in place: `update` makes the next version, and
//! names the version it read, so two operators cannot overwrite each other.
//!
//! Nothing is announced to running servers: they read purposes from the database
//! whenever they show or check one, and cache none.

use clap::{Args, Subcommand};
use gatehouse_admin::{AdminError, NewPurpose, Operator, PurposeEdit};
use gatehouse_core::config::Config;
use gatehouse_identity_store::purposes::Purpose;

use crate::ServerError;
use crate::cli::admin::{admin_error, ask, block_on, open_admin};

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
    match command {
        PurposesCommand::List { tenant } => {
            let admin = open_admin(config)?;
            let purposes = ask(admin.purposes(&tenant))?;
            if purposes.is_empty() {
                println!("no purposes defined");
            }
            purposes.iter().for_each(print);
        }
        PurposesCommand::Define(args) => {
            let operator = Operator::named(&args.operator).map_err(|e| admin_error("", e))?;
            let admin = open_admin(config)?;
            let new = NewPurpose {
                slug: args.slug,
                name: args.name,
                description: args.description,
                scopes: args.scopes,
                legal_basis: args.legal_basis,
            };
            let purpose = block_on(admin.define_purpose(&operator, &args.tenant, new))
                .map_err(|e| admin_error("defining the purpose", e))?;
            print!("defined ");
            print(&purpose);
        }
        PurposesCommand::Update(args) => {
            let operator = Operator::named(&args.operator).map_err(|e| admin_error("", e))?;
            let admin = open_admin(config)?;
            let edit = PurposeEdit {
                name: args.name,
                description: args.description,
                scopes: args.scopes,
            };
            let purpose = block_on(admin.update_purpose(
                &operator,
                &args.tenant,
                &args.slug,
                args.expected_version,
                edit,
            ))
            .map_err(|e| match e {
                AdminError::Invalid { message, .. } => {
                    ServerError::Usage(format!("{message} (--name, --description or --scope)"))
                }
                other => admin_error("updating the purpose", other),
            })?;
            print!("updated ");
            print(&purpose);
        }
    }
    Ok(())
}
