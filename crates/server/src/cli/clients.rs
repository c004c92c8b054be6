//! `gatehouse clients …`: register and inspect OAuth clients from the command line,
//! an adapter over `gatehouse-admin` (registration rules, audit, announcement). A
//! new client's secret is printed once; only its SHA-256 is stored. A
//! private_key_jwt client has no secret: it registers its public keys (a JWK Set)
//! instead.

use clap::{Args, Subcommand, ValueEnum};
use gatehouse_admin::NewClient;
use gatehouse_core::config::Config;
use gatehouse_identity_store::clients::Client;

use crate::ServerError;
use crate::cli::admin::{admin_error, ask, block_on, open_admin, operator};

// Parsed once per process: the size of the enum does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client; prints its client_id and (for confidential clients) secret once.
    Create(CreateArgs),
    /// List a tenant's clients.
    List(TenantArg),
    /// Show one client.
    Show(ClientArg),
    /// Delete a client.
    Delete(ClientArg),
    /// Give a client a new secret, printed once; the old one stops working at once.
    RotateSecret(ClientArg),
}

#[derive(Debug, Args)]
pub struct TenantArg {
    /// Tenant slug.
    #[arg(long, default_value = "default")]
    tenant: String,
}

#[derive(Debug, Args)]
pub struct ClientArg {
    #[command(flatten)]
    tenant: TenantArg,
    client_id: String,
    /// Who is doing this (the audit log's actor; default: the login name).
    #[arg(long)]
    operator: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ClientKind {
    Confidential,
    Public,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A JWT signed with one of the keys given by --jwks (RFC 7523).
    PrivateKeyJwt,
    None,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    tenant: TenantArg,
    /// Human-readable name shown on consent pages.
    #[arg(long)]
    name: String,
    /// Choose the client_id (default: random).
    #[arg(long)]
    client_id: Option<String>,
    #[arg(long, value_enum, default_value = "confidential")]
    kind: ClientKind,
    /// Token endpoint authentication (public clients use none).
    #[arg(long, value_enum)]
    auth_method: Option<AuthMethod>,
    /// Exact redirect URI (repeatable).
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Allowed grant type (repeatable): authorization_code, refresh_token, client_credentials.
    #[arg(long = "grant", default_values = ["authorization_code", "refresh_token"])]
    grants: Vec<String>,
    /// Allowed scope (repeatable).
    #[arg(long = "scope", default_values = ["openid", "profile", "email"])]
    scopes: Vec<String>,
    /// Allowed audience / resource indicator (repeatable); the first is the default.
    #[arg(long = "audience")]
    audiences: Vec<String>,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    access_token_ttl: i64,
    /// Skips the consent page (first-party applications only).
    #[arg(long)]
    first_party: bool,
    /// Requires pushed authorization requests (RFC 9126).
    #[arg(long)]
    require_par: bool,
    /// The client's public keys for private_key_jwt: a JWK Set, inline JSON or a file.
    #[arg(long, value_name = "FILE|JSON")]
    jwks: Option<String>,
    /// ID token signing algorithm: RS256 (OpenID Connect's default, which every
    /// client library accepts), ES256 or EdDSA.
    #[arg(long, default_value = "RS256")]
    id_token_alg: String,
    /// Where RP-initiated logout may return the browser, exactly (repeatable).
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// A web origin (`https://app.example`) a browser app calls the token, UserInfo
    /// and revocation endpoints from (CORS; repeatable).
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Lets a confidential legacy client that cannot send PKCE go without it
    /// (public clients always need it).
    #[arg(long)]
    pkce_optional: bool,
    /// Back-channel logout endpoint (OIDC Back-Channel Logout 1.0): told, server to
    /// server, when a session the client signed in to ends.
    #[arg(long)]
    backchannel_logout_uri: Option<String>,
    /// Who is doing this (the audit log's actor; default: the login name).
    #[arg(long)]
    operator: Option<String>,
}

/// `--jwks` takes the set itself or a path to it; a JWK Set is an object, so a
/// leading `{` tells them apart. Checked by the admin layer.
fn read_jwks(value: &str) -> Result<String, ServerError> {
    if value.trim_start().starts_with('{') {
        return Ok(value.to_owned());
    }
    std::fs::read_to_string(value)
        .map_err(|e| ServerError::Usage(format!("cannot read the JWK Set {value}: {e}")))
}

fn describe(client: &Client) -> String {
    let d = &client.data;
    let or_dash = |list: &[String]| {
        if list.is_empty() {
            "-".to_owned()
        } else {
            list.join(" ")
        }
    };
    let rows: [(&str, String); 15] = [
        ("client_id", d.client_id.clone()),
        ("name", d.name.clone()),
        ("type", format!("{} ({})", d.client_type, d.auth_method)),
        ("redirect URIs", or_dash(&d.redirect_uris)),
        ("logout URIs", or_dash(&d.post_logout_redirect_uris)),
        (
            "back-channel",
            d.backchannel_logout_uri
                .clone()
                .unwrap_or_else(|| "-".into()),
        ),
        ("CORS origins", or_dash(&d.allowed_origins)),
        ("grants", or_dash(&d.grant_types)),
        ("scopes", or_dash(&d.scopes)),
        ("audiences", or_dash(&d.audiences)),
        ("access token", format!("{} s", d.access_token_ttl_secs)),
        ("ID token alg", d.id_token_alg.clone()),
        (
            "PKCE",
            if d.require_pkce {
                "required"
            } else {
                "optional"
            }
            .into(),
        ),
        ("first party", d.first_party.to_string()),
        ("require PAR", d.require_par.to_string()),
    ];
    rows.iter()
        .map(|(label, value)| format!("{:<16}{value}\n", format!("{label}:")))
        .collect()
}

pub fn run(config: &Config, command: ClientsCommand) -> Result<(), ServerError> {
    match command {
        ClientsCommand::Create(args) => create(config, args),
        ClientsCommand::List(args) => {
            let admin = open_admin(config)?;
            let clients = ask(admin.clients(&args.tenant))?;
            for client in &clients {
                println!(
                    "{}\t{}\t{}",
                    client.data.client_id, client.data.client_type, client.data.name
                );
            }
            Ok(())
        }
        ClientsCommand::Show(args) => {
            let admin = open_admin(config)?;
            let client = ask(admin.client(&args.tenant.tenant, &args.client_id))?;
            print!("{}", describe(&client));
            Ok(())
        }
        ClientsCommand::RotateSecret(args) => {
            let operator = operator(args.operator.as_deref())?;
            let admin = open_admin(config)?;
            let secret = block_on(admin.rotate_client_secret(
                &operator,
                &args.tenant.tenant,
                &args.client_id,
            ))
            .map_err(|e| admin_error("rotating the secret", e))?;
            println!("client_id:      {}", args.client_id);
            println!("client_secret:  {}", secret.as_str());
            eprintln!("store the secret now: it is not shown again");
            Ok(())
        }
        ClientsCommand::Delete(args) => {
            let operator = operator(args.operator.as_deref())?;
            let admin = open_admin(config)?;
            block_on(admin.delete_client(&operator, &args.tenant.tenant, &args.client_id))
                .map_err(|e| admin_error("deleting the client", e))?;
            println!("deleted {}", args.client_id);
            Ok(())
        }
    }
}

fn create(config: &Config, args: CreateArgs) -> Result<(), ServerError> {
    let operator = operator(args.operator.as_deref())?;
    let jwks = args.jwks.as_deref().map(read_jwks).transpose()?;
    let new = NewClient {
        name: args.name,
        client_id: args.client_id,
        kind: match args.kind {
            ClientKind::Confidential => gatehouse_admin::ClientKind::Confidential,
            ClientKind::Public => gatehouse_admin::ClientKind::Public,
        },
        auth_method: args.auth_method.map(|method| match method {
            AuthMethod::ClientSecretBasic => gatehouse_admin::AuthMethod::ClientSecretBasic,
            AuthMethod::ClientSecretPost => gatehouse_admin::AuthMethod::ClientSecretPost,
            AuthMethod::PrivateKeyJwt => gatehouse_admin::AuthMethod::PrivateKeyJwt,
            AuthMethod::None => gatehouse_admin::AuthMethod::None,
        }),
        redirect_uris: args.redirect_uris,
        grants: args.grants,
        scopes: args.scopes,
        audiences: args.audiences,
        access_token_ttl_secs: args.access_token_ttl,
        first_party: args.first_party,
        require_par: args.require_par,
        jwks,
        id_token_alg: args.id_token_alg,
        post_logout_redirect_uris: args.post_logout_redirect_uris,
        backchannel_logout_uri: args.backchannel_logout_uri,
        allowed_origins: args.cors_origins,
        require_pkce: !args.pkce_optional,
    };
    let admin = open_admin(config)?;
    let created = block_on(admin.create_client(&operator, &args.tenant.tenant, new))
        .map_err(|e| admin_error("registering the client", e))?;
    print!("{}", describe(&created.client));
    if let Some(secret) = created.secret {
        println!(
            "client_secret:  {}\n\nThe secret is shown only now; only its hash is stored.",
            secret.as_str()
        );
    }
    Ok(())
}
