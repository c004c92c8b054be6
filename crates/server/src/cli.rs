//! The command line: `gatehouse serve | migrate | check-config | audit verify`, and
//! the keys, clients, users, roles, purposes, policy and decisions tools.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gatehouse_core::config::Config;
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::{StoreError, audit, db};

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
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// Inspect and rotate signing keys.
    Keys {
        #[command(subcommand)]
        action: crate::keys_cli::KeysCommand,
    },
    /// Register and inspect OAuth / OpenID Connect clients.
    Clients {
        #[command(subcommand)]
        action: crate::clients_cli::ClientsCommand,
    },
    /// Accounts: administrator-assisted recovery, deactivation and reactivation.
    Users {
        #[command(subcommand)]
        action: crate::users_cli::UsersCommand,
    },
    /// Roles and their assignment to users.
    Roles {
        #[command(subcommand)]
        action: crate::users_cli::RolesCommand,
    },
    /// Consent purposes: what users consent to, versioned.
    Purposes {
        #[command(subcommand)]
        action: crate::purposes_cli::PurposesCommand,
    },
    /// Cedar policy sets of the policy decision point (AuthZEN).
    Policy {
        #[command(subcommand)]
        action: crate::policy_cli::PolicyCommand,
    },
    /// The policy decision point's decision log.
    Decisions {
        #[command(subcommand)]
        action: crate::policy_cli::DecisionsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every tenant's hash chain; exits 1 if anything was altered or removed.
    Verify,
}

pub fn run() -> Result<ExitCode, ServerError> {
    let cli = Cli::parse();
    let config = Config::from_process(cli.config.as_deref()).map_err(ServerError::Config)?;
    crate::logging::init(&config).map_err(ServerError::Config)?;
    match cli.command {
        Command::Serve => serve(config),
        Command::Migrate => migrate(&config),
        Command::CheckConfig => check_config(&config),
        Command::Audit {
            action: AuditCommand::Verify,
        } => audit_verify(&config),
        Command::Keys { action } => {
            crate::keys_cli::run(&config, action).map(|()| ExitCode::SUCCESS)
        }
        Command::Clients { action } => {
            crate::clients_cli::run(&config, action).map(|()| ExitCode::SUCCESS)
        }
        Command::Users { action } => {
            crate::users_cli::run(&config, action).map(|()| ExitCode::SUCCESS)
        }
        Command::Roles { action } => {
            crate::users_cli::run_roles(&config, action).map(|()| ExitCode::SUCCESS)
        }
        Command::Purposes { action } => {
            crate::purposes_cli::run(&config, action).map(|()| ExitCode::SUCCESS)
        }
        Command::Policy { action } => {
            crate::policy_cli::run_policy(&config, action).map(|()| ExitCode::SUCCESS)
        }
        Command::Decisions { action } => {
            crate::policy_cli::run_decisions(&config, action).map(|()| ExitCode::SUCCESS)
        }
    }
}

fn serve(config: Config) -> Result<ExitCode, ServerError> {
    tracing::info!(mode = %config.mode, version = env!("CARGO_PKG_VERSION"), "starting gatehouse");
    let (state, bootstrapped) = AppState::open(config)?;
    if let Some(admin) = &bootstrapped.first_admin {
        announce_first_admin(&bootstrapped.tenant.slug, admin);
    }
    actix_web::rt::System::new().block_on(crate::http::serve(state))?;
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

fn audit_verify(config: &Config) -> Result<ExitCode, ServerError> {
    let pool = open_pool(config)?;
    // The chain is keyed under the master key: verification needs the same keys.
    let (cipher, _) = Cipher::load(config).map_err(ServerError::Secrets)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    let report = audit::verify(&mut conn, &cipher)?;
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
