//! `gatehouse connections list | show | add-oidc | add-saml | set | refresh | remove | test-mapping`:
//! a tenant's partner identity providers, through the admin layer, which checks
//! settings and mapping rules before saving, seals the client secret and audits
//! every change. Running servers read connections from the database at each
//! sign-in, so nothing needs announcing.

use std::io::Read;

use clap::{Args, Subcommand};
use gatehouse_admin::{
    ConnectionEdit, ConnectionView, IdpMetadata, NewConnection, Operator, Reason,
};
use gatehouse_core::config::Config;
use serde_json::{Value, json};

use crate::ServerError;
use crate::cli::admin::{admin_error, ask, block_on, open_admin};

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// Every connection of the tenant.
    List {
        /// Tenant slug.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
    /// One connection, as JSON (never its secret).
    Show {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        slug: String,
    },
    /// Add an upstream OpenID provider. The client secret is read from standard
    /// input (none with `--client-auth private_key_jwt`).
    AddOidc(AddOidcArgs),
    /// Add an upstream SAML identity provider from its metadata (a file or a URL).
    /// Gatehouse makes the connection's own SP key; its metadata is served at
    /// `/federation/<slug>/saml/metadata`.
    AddSaml(AddSamlArgs),
    /// Change a connection (at the version `show` printed).
    Set(SetArgs),
    /// Delete a connection with its domains and linked identities (the users stay).
    Remove {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        slug: String,
        /// Why (the audit log's reason).
        #[arg(long)]
        reason: Option<String>,
        /// Who is doing this (the audit log's actor).
        #[arg(long)]
        operator: String,
    },
    /// Read a SAML connection's IdP metadata again from its URL now (servers do
    /// it every six hours): a new signing certificate or endpoint is taken up.
    Refresh {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        slug: String,
    },
    /// What the mapping rules make of sample claims (a JSON object), without a sign-in.
    TestMapping {
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        slug: String,
        /// The claims, as a JSON object.
        #[arg(long)]
        claims: String,
    },
}

#[derive(Debug, Args)]
pub struct AddOidcArgs {
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Part of the callback URL: `/federation/<slug>/callback`.
    #[arg(long)]
    slug: String,
    /// The name on the sign-in button.
    #[arg(long)]
    name: String,
    /// The provider's issuer identifier (discovery is read from it).
    #[arg(long)]
    issuer: String,
    #[arg(long)]
    client_id: String,
    /// client_secret_basic, client_secret_post or private_key_jwt (the connection's
    /// own key; the partner registers `/federation/<slug>/jwks`).
    #[arg(long, default_value = "client_secret_basic")]
    client_auth: String,
    /// A scope besides `openid` (repeat for several); default `email profile`.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// An email domain whose users sign in with this provider (repeat for several).
    #[arg(long = "domain")]
    domains: Vec<String>,
    /// Create an account for a partner user who has none (just in time).
    #[arg(long)]
    jit: bool,
    /// Trust the provider's `email_verified` for new accounts.
    #[arg(long)]
    trust_verified_email: bool,
    /// Mapping rules, as a JSON file (`{"rules": [...]}`); default: the standard claims.
    #[arg(long)]
    mapping_file: Option<std::path::PathBuf>,
    /// A provider `acr` value and the assurance level it stands for, `value=level`.
    #[arg(long = "acr-level")]
    acr_levels: Vec<String>,
    #[arg(long)]
    logo_url: Option<String>,
    /// Read UserInfo as well as the ID token.
    #[arg(long)]
    userinfo: bool,
    /// Added disabled (no button, no sign-in) until `set --enable`.
    #[arg(long)]
    disabled: bool,
    #[arg(long)]
    operator: String,
}

#[derive(Debug, Args)]
pub struct AddSamlArgs {
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Part of the SP's URLs: `/federation/<slug>/saml/...`.
    #[arg(long)]
    slug: String,
    /// The name on the sign-in button.
    #[arg(long)]
    name: String,
    /// The identity provider's metadata, as a file.
    #[arg(
        long,
        conflicts_with = "metadata_url",
        required_unless_present = "metadata_url"
    )]
    metadata_file: Option<std::path::PathBuf>,
    /// The identity provider's metadata, fetched once from this URL.
    #[arg(long)]
    metadata_url: Option<String>,
    /// The entityID to take from an aggregate (and to insist on).
    #[arg(long)]
    entity_id: Option<String>,
    /// The attribute naming the user, where the NameID is not persistent.
    #[arg(long)]
    subject_attribute: Option<String>,
    /// An AuthnContextClassRef and the assurance level it stands for, `value=level`.
    #[arg(long = "authn-context-level")]
    authn_context_levels: Vec<String>,
    /// An email domain whose users sign in with this provider (repeat for several).
    #[arg(long = "domain")]
    domains: Vec<String>,
    /// Create an account for a partner user who has none (just in time).
    #[arg(long)]
    jit: bool,
    /// Mapping rules, as a JSON file; default: mail, givenName, sn, displayName.
    #[arg(long)]
    mapping_file: Option<std::path::PathBuf>,
    #[arg(long)]
    logo_url: Option<String>,
    /// Added disabled (no button, no sign-in) until `set --enable`.
    #[arg(long)]
    disabled: bool,
    #[arg(long)]
    operator: String,
}

/// `value=level` pairs as a JSON object.
fn levels(pairs: &[String], flag: &str) -> Result<serde_json::Map<String, Value>, ServerError> {
    let mut levels = serde_json::Map::new();
    for pair in pairs {
        let (value, level) = pair
            .rsplit_once('=')
            .and_then(|(v, l)| Some((v, l.parse::<i64>().ok()?)))
            .ok_or_else(|| usage(format!("--{flag} `{pair}`: use value=level")))?;
        levels.insert(value.to_owned(), json!(level));
    }
    Ok(levels)
}

#[derive(Debug, Args)]
pub struct SetArgs {
    #[arg(long, default_value = "default")]
    tenant: String,
    #[arg(long)]
    slug: String,
    /// The version the change is based on (see `show`).
    #[arg(long)]
    expected_version: i64,
    #[arg(long)]
    name: Option<String>,
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    #[arg(long)]
    disable: bool,
    /// Replace the routed domains (repeat for several).
    #[arg(long = "domain")]
    domains: Vec<String>,
    /// Replace the mapping rules with this JSON file.
    #[arg(long)]
    mapping_file: Option<std::path::PathBuf>,
    /// Read a new client secret from standard input.
    #[arg(long)]
    secret_stdin: bool,
    /// Change one setting (`name=JSON value`, e.g. `allow_idp_initiated=true` or
    /// `logout=false`); repeat for several. The rest stay as they are.
    #[arg(long = "setting")]
    settings: Vec<String>,
    #[arg(long)]
    operator: String,
}

fn usage(message: impl Into<String>) -> ServerError {
    ServerError::Usage(message.into())
}

fn read_stdin(what: &str) -> Result<String, ServerError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| usage(format!("{what}: {e}")))?;
    let text = text.trim_end_matches(['\r', '\n']).to_owned();
    if text.is_empty() {
        return Err(usage(format!("{what}: standard input was empty")));
    }
    Ok(text)
}

fn read_json_file(path: &std::path::Path) -> Result<Value, ServerError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
}

fn view_json(view: &ConnectionView) -> Value {
    let c = &view.connection;
    json!({
        "slug": c.slug,
        "kind": c.kind,
        "display_name": c.display_name,
        "logo_url": c.logo_url,
        "enabled": c.enabled,
        "jit_provisioning": c.jit_provisioning,
        "trust_verified_email": c.trust_verified_email,
        "settings": c.settings,
        "mapping": c.mapping,
        "domains": view.domains,
        "secret_set": c.has_secrets,
        "last_error": c.last_error,
        "last_error_at": c.last_error_at,
        "version": c.version,
    })
}

pub fn run(config: &Config, command: ConnectionsCommand) -> Result<(), ServerError> {
    match command {
        ConnectionsCommand::List { tenant } => {
            let admin = open_admin(config)?;
            let all = ask(admin.connections(&tenant))?;
            if all.is_empty() {
                println!("no connections");
            }
            for view in all {
                let c = &view.connection;
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    c.slug,
                    c.kind,
                    if c.enabled { "enabled" } else { "disabled" },
                    view.domains.join(","),
                    c.display_name
                );
            }
        }
        ConnectionsCommand::Show { tenant, slug } => {
            let admin = open_admin(config)?;
            let view = ask(admin.connection(&tenant, &slug))?;
            println!("{:#}", view_json(&view));
        }
        ConnectionsCommand::AddOidc(args) => {
            let operator = Operator::named(&args.operator).map_err(|e| admin_error("", e))?;
            let acr_levels = levels(&args.acr_levels, "acr-level")?;
            let mut settings = json!({
                "issuer": args.issuer,
                "client_id": args.client_id,
                "client_auth": args.client_auth,
                "userinfo": args.userinfo,
                "acr_levels": acr_levels,
            });
            if !args.scopes.is_empty() {
                settings["scopes"] = json!(args.scopes);
            }
            let mapping = args
                .mapping_file
                .as_deref()
                .map(read_json_file)
                .transpose()?;
            // private_key_jwt: the connection's own key, made now; no secret to read.
            let client_secret = if args.client_auth == "private_key_jwt" {
                None
            } else {
                Some(read_stdin("the client secret")?)
            };
            let admin = open_admin(config)?;
            let new = NewConnection {
                slug: args.slug,
                display_name: args.name,
                logo_url: args.logo_url,
                enabled: !args.disabled,
                jit_provisioning: args.jit,
                trust_verified_email: args.trust_verified_email,
                kind: "oidc".into(),
                settings,
                idp_metadata: None,
                mapping,
                client_secret,
                domains: args.domains,
            };
            let view = block_on(admin.create_connection(&operator, &args.tenant, new))
                .map_err(|e| admin_error("adding the connection", e))?;
            println!("added connection {}", view.connection.slug);
        }
        ConnectionsCommand::AddSaml(args) => {
            let operator = Operator::named(&args.operator).map_err(|e| admin_error("", e))?;
            let metadata = match (&args.metadata_file, &args.metadata_url) {
                (Some(path), _) => IdpMetadata::Xml(
                    std::fs::read_to_string(path)
                        .map_err(|e| usage(format!("{}: {e}", path.display())))?,
                ),
                (None, Some(url)) => IdpMetadata::Url(url.clone()),
                (None, None) => return Err(usage("--metadata-file or --metadata-url is needed")),
            };
            let mut settings = serde_json::Map::new();
            if let Some(entity) = &args.entity_id {
                settings.insert("idp_entity_id".into(), json!(entity));
            }
            if let Some(attribute) = &args.subject_attribute {
                settings.insert("subject_attribute".into(), json!(attribute));
            }
            let context_levels = levels(&args.authn_context_levels, "authn-context-level")?;
            if !context_levels.is_empty() {
                settings.insert("authn_context_levels".into(), Value::Object(context_levels));
            }
            let mapping = args
                .mapping_file
                .as_deref()
                .map(read_json_file)
                .transpose()?;
            let admin = open_admin(config)?;
            let new = NewConnection {
                slug: args.slug,
                display_name: args.name,
                logo_url: args.logo_url,
                enabled: !args.disabled,
                jit_provisioning: args.jit,
                trust_verified_email: false,
                kind: "saml".into(),
                settings: Value::Object(settings),
                idp_metadata: Some(metadata),
                mapping,
                client_secret: None,
                domains: args.domains,
            };
            let view = block_on(admin.create_connection(&operator, &args.tenant, new))
                .map_err(|e| admin_error("adding the connection", e))?;
            println!(
                "added connection {} (its SP metadata: <tenant base>/federation/{}/saml/metadata)",
                view.connection.slug, view.connection.slug
            );
        }
        ConnectionsCommand::Set(args) => {
            let operator = Operator::named(&args.operator).map_err(|e| admin_error("", e))?;
            let mapping = args
                .mapping_file
                .as_deref()
                .map(read_json_file)
                .transpose()?;
            let client_secret = if args.secret_stdin {
                Some(read_stdin("the client secret")?)
            } else {
                None
            };
            let admin = open_admin(config)?;
            let settings = if args.settings.is_empty() {
                None
            } else {
                let mut current = ask(admin.connection(&args.tenant, &args.slug))?
                    .connection
                    .settings;
                for pair in &args.settings {
                    let (name, value) = pair
                        .split_once('=')
                        .ok_or_else(|| usage(format!("--setting `{pair}`: use name=value")))?;
                    let value: Value = serde_json::from_str(value)
                        .map_err(|e| usage(format!("--setting {name}: {e}")))?;
                    current[name] = value;
                }
                Some(current)
            };
            let edit = ConnectionEdit {
                settings,
                display_name: args.name,
                enabled: (args.enable || args.disable).then_some(args.enable),
                domains: (!args.domains.is_empty()).then_some(args.domains),
                mapping,
                client_secret,
                expected_version: args.expected_version,
                ..ConnectionEdit::default()
            };
            let view = block_on(admin.update_connection(&operator, &args.tenant, &args.slug, edit))
                .map_err(|e| admin_error("changing the connection", e))?;
            println!(
                "updated connection {} (version {})",
                view.connection.slug, view.connection.version
            );
        }
        ConnectionsCommand::Refresh { tenant, slug } => {
            let admin = open_admin(config)?;
            let changed = block_on(admin.refresh_saml_metadata(Some((&tenant, &slug))))
                .map_err(|e| admin_error("refreshing the metadata", e))?;
            let view = ask(admin.connection(&tenant, &slug))?;
            match (changed, &view.connection.last_error) {
                (0, Some(error)) => println!("metadata unchanged; last error: {error}"),
                (0, None) => println!("metadata unchanged"),
                _ => println!("metadata of {slug} updated"),
            }
        }
        ConnectionsCommand::Remove {
            tenant,
            slug,
            reason,
            operator,
        } => {
            let operator = Operator::named(&operator).map_err(|e| admin_error("", e))?;
            let reason = reason
                .as_deref()
                .map(Reason::new)
                .transpose()
                .map_err(|e| admin_error("", e))?;
            let admin = open_admin(config)?;
            block_on(admin.delete_connection(&operator, &tenant, &slug, reason))
                .map_err(|e| admin_error("removing the connection", e))?;
            println!("removed connection {slug}");
        }
        ConnectionsCommand::TestMapping {
            tenant,
            slug,
            claims,
        } => {
            let claims: Value =
                serde_json::from_str(&claims).map_err(|e| usage(format!("--claims: {e}")))?;
            let admin = open_admin(config)?;
            let profile = block_on(admin.test_mapping(&tenant, &slug, claims))
                .map_err(|e| admin_error("testing the mapping", e))?;
            println!(
                "{:#}",
                json!({
                    "email": profile.email,
                    "given_name": profile.given_name,
                    "family_name": profile.family_name,
                    "display_name": profile.display_name,
                    "custom": profile.custom,
                    "groups": profile.groups,
                })
            );
        }
    }
    Ok(())
}
