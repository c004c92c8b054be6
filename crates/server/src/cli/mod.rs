//! The command line: `gatehouse serve | migrate | check-config | backup | secrets`, and the operator
//! tools (tenants, users, groups, roles, clients, keys, purposes, policy, decisions,
//! audit), each a thin adapter over `gatehouse-admin`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatehouse_core::config::Config;
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::{StoreError, db, rewrap};

pub(crate) mod admin;
mod clients;
mod connections;
mod directory;
mod keys;
mod policy;
mod purposes;
mod themes;
mod users;

use crate::ServerError;
use crate::bootstrap::FirstAdmin;
use crate::state::{AppState, open_pool};

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "Gatehouse identity and access management"
)]
struct Cli {
    /// Configuration file (TOML). Without one, defaults plus GATEHOUSE_* variables apply.
    #[arg(long, short, global = true, env = "GATEHOUSE_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the enum does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (applies migrations and first-start set-up).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Validate the configuration and print what it resolves to.
    CheckConfig,
    /// Copy the embedded SQLite database to a new file while the server keeps serving
    /// (checked before it counts). PostgreSQL: see docs/operations.md.
    Backup {
        /// The file to write; must not exist.
        #[arg(long)]
        to: PathBuf,
    },
    /// Master keys: which key seals how many values; re-wrap them under the active key.
    Secrets {
        #[command(subcommand)]
        action: SecretsCommand,
    },
    /// The audit log: read a tenant's events, check every hash chain.
    Audit {
        #[command(subcommand)]
        action: crate::cli::directory::AuditCommand,
    },
    /// Tenants and their issuers.
    Tenants {
        #[command(subcommand)]
        action: crate::cli::directory::TenantsCommand,
    },
    /// Groups and their members.
    Groups {
        #[command(subcommand)]
        action: crate::cli::directory::GroupsCommand,
    },
    /// Inspect and rotate signing keys.
    Keys {
        #[command(subcommand)]
        action: crate::cli::keys::KeysCommand,
    },
    /// Register and inspect OAuth / OpenID Connect clients.
    Clients {
        #[command(subcommand)]
        action: crate::cli::clients::ClientsCommand,
    },
    /// Accounts: administrator-assisted recovery, deactivation and reactivation.
    Users {
        #[command(subcommand)]
        action: crate::cli::users::UsersCommand,
    },
    /// Roles and their assignment to users.
    Roles {
        #[command(subcommand)]
        action: crate::cli::users::RolesCommand,
    },
    /// Partners' identity providers (federation): OpenID Connect upstreams.
    Connections {
        #[command(subcommand)]
        action: crate::cli::connections::ConnectionsCommand,
    },
    /// Consent purposes: what users consent to, versioned.
    Purposes {
        #[command(subcommand)]
        action: crate::cli::purposes::PurposesCommand,
    },
    /// Cedar policy sets of the policy decision point (AuthZEN).
    Policy {
        #[command(subcommand)]
        action: crate::cli::policy::PolicyCommand,
    },
    /// Tenant themes: check a theme file, apply it.
    Themes {
        #[command(subcommand)]
        action: crate::cli::themes::ThemesCommand,
    },
    /// The policy decision point's decision log.
    Decisions {
        #[command(subcommand)]
        action: crate::cli::policy::DecisionsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Count the sealed values under each master key, table by table.
    Status,
    /// Seal every value sealed under another key again under the active (first)
    /// key, while the servers keep serving; then `status` shows when an old key may
    /// leave the configuration.
    Rewrap {
        /// Rows per transaction.
        #[arg(long, default_value_t = 200)]
        batch: i64,
    },
}

pub fn run() -> Result<ExitCode, ServerError> {
    let cli = Cli::parse();
    let config = Config::from_process(cli.config.as_deref()).map_err(ServerError::Config)?;
    crate::logging::init(&config).map_err(ServerError::Config)?;
    match cli.command {
        Command::Serve => serve(config),
        Command::Migrate => migrate(&config),
        Command::CheckConfig => check_config(&config),
        Command::Backup { to } => backup(&config, &to),
        Command::Secrets { action } => secrets(&config, action),
        Command::Audit { action } => directory::run_audit(&config, action),
        Command::Tenants { action } => directory::run_tenants(&config, action),
        Command::Groups { action } => directory::run_groups(&config, action),
        Command::Themes { action } => succeeded(themes::run(&config, action)),
        Command::Keys { action } => succeeded(keys::run(&config, action)),
        Command::Clients { action } => succeeded(clients::run(&config, action)),
        Command::Users { action } => succeeded(users::run(&config, action)),
        Command::Roles { action } => succeeded(users::run_roles(&config, action)),
        Command::Purposes { action } => succeeded(purposes::run(&config, action)),
        Command::Connections { action } => succeeded(connections::run(&config, action)),
        Command::Policy { action } => succeeded(policy::run_policy(&config, action)),
        Command::Decisions { action } => succeeded(policy::run_decisions(&config, action)),
    }
}

/// The operator commands print what they did; success is a plain zero exit.
fn succeeded(done: Result<(), ServerError>) -> Result<ExitCode, ServerError> {
    done.map(|()| ExitCode::SUCCESS)
}

fn serve(config: Config) -> Result<ExitCode, ServerError> {
    tracing::info!(mode = %config.mode, version = env!("CARGO_PKG_VERSION"), "starting gatehouse");
    let (state, bootstrapped) = AppState::open(config)?;
    if let Some(admin) = &bootstrapped.first_admin {
        announce_first_admin(&bootstrapped.tenant.slug, admin);
    }
    let served = actix_web::rt::System::new().block_on(crate::http::serve(state));
    crate::logging::flush_traces();
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Printed to stdout, not logged: log pipelines keep and forward what they see.
fn announce_first_admin(tenant: &str, admin: &FirstAdmin) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\n  First administrator created: user \"{}\" in tenant \"{tenant}\".\n  \
         One-time setup secret (shown only now; only its hash is stored):\n\n      {}\n",
        admin.user_name,
        admin.setup_secret.as_str()
    );
    let _ = out.flush();
}

fn migrate(config: &Config) -> Result<ExitCode, ServerError> {
    let pool = open_pool(config)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    let applied = db::run_migrations(&mut conn)?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        for version in applied {
            println!("applied {version}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn secrets(config: &Config, action: SecretsCommand) -> Result<ExitCode, ServerError> {
    let pool = open_pool(config)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    let (cipher, source) = Cipher::load(config).map_err(ServerError::Secrets)?;
    crate::state::prove_master_keys(&mut conn, &cipher, &source, chrono::Utc::now())?;
    if let SecretsCommand::Rewrap { batch } = action {
        for table in rewrap::rewrap(&mut conn, &cipher, batch)? {
            println!(
                "{:<24} re-wrapped {:>7}   changed meanwhile {:>5}",
                table.table, table.rewrapped, table.raced
            );
        }
    }
    let active = cipher.active_key_id().to_owned();
    println!("active master key: {active}");
    let mut others: std::collections::BTreeMap<String, u64> = Default::default();
    for column in rewrap::status(&mut conn)? {
        let shown: Vec<String> = column
            .by_key
            .iter()
            .map(|(kid, n)| format!("{kid}: {n}"))
            .collect();
        println!("{:<24} {}", column.table, shown.join(", "));
        for (kid, n) in column.by_key {
            if kid != active {
                *others.entry(kid).or_insert(0) += n;
            }
        }
    }
    if others.is_empty() {
        println!("every sealed value is under {active}: the other keys may be retired");
    } else {
        for (kid, n) in others {
            println!("{kid} still seals {n} value(s): keep it configured");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn backup(config: &Config, to: &std::path::Path) -> Result<ExitCode, ServerError> {
    let pool = open_pool(config)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    let written = db::backup_sqlite(&mut conn, to)?;
    println!(
        "backed up to {} ({} tables, {} bytes, integrity checked)",
        to.display(),
        written.tables,
        written.bytes
    );
    println!("the sealed secrets in it open only with the master keys: keep those backed up too");
    Ok(ExitCode::SUCCESS)
}

fn check_config(config: &Config) -> Result<ExitCode, ServerError> {
    // Key material must be loadable too, but dev mode must not generate a key here.
    if config.mode == gatehouse_core::config::Mode::Production
        || config.master_key_file().is_some_and(|p| p.exists())
    {
        Cipher::load(config).map_err(ServerError::Secrets)?;
    }
    let backend = config.database.backend().map_err(ServerError::Config)?;
    println!("configuration OK");
    println!("  mode:       {}", config.mode);
    println!("  listen:     {}", config.server.listen);
    println!("  public url: {}", config.server.public_url());
    println!("  database:   {backend:?}");
    println!("  data dir:   {}", config.data_dir.display());
    Ok(ExitCode::SUCCESS)
}
