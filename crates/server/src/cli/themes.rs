//! `gatehouse themes …`: check a tenant theme (a JSON file) as the server would
//! before saving it, and apply it. Applying is a tenant change: audited with the
//! operator and served at once by every node.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use gatehouse_admin::TenantChange;
use gatehouse_core::config::Config;
use serde_json::{Map, Value};

use crate::ServerError;
use crate::cli::admin::{admin_error, block_on, open_admin, operator};
use crate::ui::{THEME_SETTINGS_KEY, Ui};

#[derive(Debug, Subcommand)]
pub enum ThemesCommand {
    /// Check a theme file: its fields, and that every template override compiles.
    Validate(ThemeFile),
    /// Check a theme file, then make it the tenant's theme.
    Apply(ApplyArgs),
}

#[derive(Debug, Args)]
pub struct ThemeFile {
    /// A JSON file with the theme's fields (colours, logo_url, custom_css,
    /// messages, template_dir, …).
    file: PathBuf,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    theme: ThemeFile,
    /// Tenant slug.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Who is doing this (the audit log's actor; default: the login name).
    #[arg(long)]
    operator: Option<String>,
}

/// The theme in `file`, checked as the server checks one before saving it.
fn checked(file: &ThemeFile) -> Result<Value, ServerError> {
    let text = std::fs::read_to_string(&file.file)
        .map_err(|e| ServerError::Usage(format!("{}: {e}", file.file.display())))?;
    let theme: Value = serde_json::from_str(&text)
        .map_err(|e| ServerError::Usage(format!("{}: not JSON: {e}", file.file.display())))?;
    let ui = Ui::embedded().map_err(|e| ServerError::Startup(format!("themes: {e}")))?;
    ui.check_theme(&theme)
        .map_err(|(field, why)| ServerError::Usage(format!("{field}: {why}")))?;
    Ok(theme)
}

pub fn run(config: &Config, command: ThemesCommand) -> Result<(), ServerError> {
    match command {
        ThemesCommand::Validate(file) => {
            checked(&file)?;
            println!("{}: a valid theme", file.file.display());
        }
        ThemesCommand::Apply(args) => {
            let theme = checked(&args.theme)?;
            let operator = operator(args.operator.as_deref())?;
            let admin = open_admin(config)?;
            let change = TenantChange {
                display_name: None,
                settings: Map::from_iter([(THEME_SETTINGS_KEY.to_owned(), theme)]),
                expected_version: None,
            };
            block_on(admin.update_tenant(&operator, &args.tenant, change))
                .map_err(|e| admin_error("applying the theme", e))?;
            println!(
                "theme applied to {}; running nodes serve it at once on PostgreSQL, within a minute on SQLite",
                args.tenant
            );
        }
    }
    Ok(())
}
