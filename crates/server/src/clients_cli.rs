//! `gatehouse clients …`: register and inspect OAuth clients from the command line
//! (the admin API comes later). A new client's secret is printed once; only its
//! SHA-256 is stored.

use clap::{Args, Subcommand, ValueEnum};
use gatehouse_core::config::Config;
use gatehouse_core::{Clock, SystemClock};
use gatehouse_identity_store::clients::{self, Client, ClientData};
use gatehouse_identity_store::{PageRequest, StoreError, tenants};
use gatehouse_token_issuer::client_auth;

use crate::ServerError;
use crate::state::open_pool;

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
}

const GRANTS: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];

fn describe(client: &Client) -> String {
    let d = &client.data;
    format!(
        "client_id:      {}\nname:           {}\ntype:           {} ({})\nredirect URIs:  {}\ngrants:         {}\nscopes:         {}\naudiences:      {}\naccess token:   {} s\nfirst party:    {}\nrequire PAR:    {}\n",
        d.client_id,
        d.name,
        d.client_type,
        d.auth_method,
        d.redirect_uris.join(" "),
        d.grant_types.join(" "),
        d.scopes.join(" "),
        d.audiences.join(" "),
        d.access_token_ttl_secs,
        d.first_party,
        d.require_par,
    )
}

pub fn run(config: &Config, command: ClientsCommand) -> Result<(), ServerError> {
    let pool = open_pool(config)?;
    let mut conn = pool.get().map_err(StoreError::from)?;
    gatehouse_identity_store::db::run_migrations(&mut conn)?;
    let tenant_of = |conn: &mut _, slug: &str| -> Result<_, ServerError> {
        tenants::find_by_slug(conn, slug)?
            .map(|t| t.id)
            .ok_or_else(|| ServerError::Usage(format!("no tenant `{slug}` (a new installation gets its default tenant on the first `gatehouse serve`)")))
    };
    match command {
        ClientsCommand::Create(args) => {
            let tenant = tenant_of(&mut conn, &args.tenant.tenant)?;
            for uri in &args.redirect_uris {
                client_auth::validate_redirect_uri(uri).map_err(ServerError::Usage)?;
            }
            if let Some(bad) = args.grants.iter().find(|g| !GRANTS.contains(&g.as_str())) {
                return Err(ServerError::Usage(format!(
                    "unknown grant `{bad}`; use one of {}",
                    GRANTS.join(", ")
                )));
            }
            let public = matches!(args.kind, ClientKind::Public);
            let method = match (args.kind, args.auth_method) {
                (ClientKind::Public, None | Some(AuthMethod::None)) => "none",
                (ClientKind::Public, Some(_)) => return Err(ServerError::Usage("public clients have no secret: use --auth-method none".into())),
                (ClientKind::Confidential, Some(AuthMethod::None)) => return Err(ServerError::Usage("confidential clients authenticate; pick client-secret-basic or client-secret-post".into())),
                (ClientKind::Confidential, Some(AuthMethod::ClientSecretPost)) => "client_secret_post",
                (ClientKind::Confidential, _) => "client_secret_basic",
            };
            if public && args.grants.iter().any(|g| g == "client_credentials") {
                return Err(ServerError::Usage(
                    "public clients cannot use client_credentials".into(),
                ));
            }
            let secret = (!public).then(client_auth::generate_secret);
            let data = ClientData {
                client_id: args
                    .client_id
                    .unwrap_or_else(client_auth::generate_client_id),
                name: args.name,
                client_type: if public { "public" } else { "confidential" }.into(),
                auth_method: method.into(),
                secret_hash: secret.as_ref().map(|s| client_auth::secret_hash(s)),
                jwks: None,
                redirect_uris: args.redirect_uris,
                post_logout_redirect_uris: Vec::new(),
                grant_types: args.grants,
                scopes: args.scopes,
                default_audience: args.audiences.first().cloned(),
                audiences: args.audiences,
                access_token_ttl_secs: args.access_token_ttl,
                refresh_token_ttl_secs: 30 * 24 * 3600,
                refresh_idle_ttl_secs: 7 * 24 * 3600,
                id_token_alg: "ES256".into(),
                // PKCE is required for public clients and enforced for all by default.
                require_pkce: true,
                require_par: args.require_par,
                first_party: args.first_party,
                backchannel_logout_uri: None,
            };
            let client = clients::create(&mut conn, SystemClock.now(), tenant, data)?;
            print!("{}", describe(&client));
            if let Some(secret) = secret {
                println!(
                    "client_secret:  {}\n\nThe secret is shown only now; only its hash is stored.",
                    secret.as_str()
                );
            }
        }
        ClientsCommand::List(args) => {
            let tenant = tenant_of(&mut conn, &args.tenant)?;
            let mut request = PageRequest::first(100);
            loop {
                let page = clients::list(&mut conn, tenant, &request)?;
                for client in &page.items {
                    println!(
                        "{}\t{}\t{}",
                        client.data.client_id, client.data.client_type, client.data.name
                    );
                }
                match page.next_cursor {
                    Some(cursor) => request = PageRequest::after(cursor, 100),
                    None => break,
                }
            }
        }
        ClientsCommand::Show(args) => {
            let tenant = tenant_of(&mut conn, &args.tenant.tenant)?;
            let client = clients::get_by_client_id(&mut conn, tenant, &args.client_id)?
                .ok_or_else(|| ServerError::Usage(format!("no client `{}`", args.client_id)))?;
            print!("{}", describe(&client));
        }
        ClientsCommand::Delete(args) => {
            let tenant = tenant_of(&mut conn, &args.tenant.tenant)?;
            clients::delete(&mut conn, tenant, &args.client_id)?;
            println!("deleted {}", args.client_id);
        }
    }
    Ok(())
}
