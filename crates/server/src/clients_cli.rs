//! `gatehouse clients …`: register and inspect OAuth clients from the command line
//! (the admin API comes later). A new client's secret is printed once; only its
//! SHA-256 is stored. A private_key_jwt client has no secret: it registers its
//! public keys (a JWK Set) instead.

use clap::{Args, Subcommand, ValueEnum};
use gatehouse_core::config::Config;
use gatehouse_core::secrets::Cipher;
use gatehouse_core::{Clock, SystemClock};
use gatehouse_identity_store::clients::{self, Client, ClientData};
use gatehouse_identity_store::{PageRequest, StoreError, tenants};
use gatehouse_token_issuer::{Algorithm, client_auth, ensure_active};

use crate::ServerError;
use crate::state::open_pool;

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
    /// ID token signing algorithm: ES256, RS256 or EdDSA.
    #[arg(long, default_value = "ES256")]
    id_token_alg: String,
    /// Where RP-initiated logout may return the browser, exactly (repeatable).
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// Back-channel logout endpoint (OIDC Back-Channel Logout 1.0): told, server to
    /// server, when a session the client signed in to ends.
    #[arg(long)]
    backchannel_logout_uri: Option<String>,
}

/// `--jwks` takes the set itself or a path to it; a JWK Set is an object, so a
/// leading `{` tells them apart.
fn read_jwks(value: &str) -> Result<String, ServerError> {
    let text = if value.trim_start().starts_with('{') {
        value.to_owned()
    } else {
        std::fs::read_to_string(value)
            .map_err(|e| ServerError::Usage(format!("cannot read the JWK Set {value}: {e}")))?
    };
    client_auth::check_jwks(&text).map_err(|e| ServerError::Usage(format!("--jwks: {e}")))?;
    // Stored compact: whitespace of the file is not worth keeping.
    serde_json::from_str::<serde_json::Value>(&text)
        .map(|set| set.to_string())
        .map_err(|e| ServerError::Usage(format!("--jwks: {e}")))
}

const GRANTS: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];

fn describe(client: &Client) -> String {
    let d = &client.data;
    format!(
        "client_id:      {}\nname:           {}\ntype:           {} ({})\nredirect URIs:  {}\nlogout URIs:    {}\nback-channel:   {}\ngrants:         {}\nscopes:         {}\naudiences:      {}\naccess token:   {} s\nID token alg:   {}\nfirst party:    {}\nrequire PAR:    {}\n",
        d.client_id,
        d.name,
        d.client_type,
        d.auth_method,
        d.redirect_uris.join(" "),
        d.post_logout_redirect_uris.join(" "),
        d.backchannel_logout_uri.as_deref().unwrap_or("-"),
        d.grant_types.join(" "),
        d.scopes.join(" "),
        d.audiences.join(" "),
        d.access_token_ttl_secs,
        d.id_token_alg,
        d.first_party,
        d.require_par,
    )
}

fn announce_change(config: &Config, tenant: gatehouse_core::ids::TenantId, client_id: &str) {
    crate::state::announce(
        config,
        gatehouse_core::events::DomainEvent::ClientChanged {
            tenant,
            client_id: client_id.to_owned(),
        },
    );
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
            for uri in args
                .redirect_uris
                .iter()
                .chain(&args.post_logout_redirect_uris)
                .chain(&args.backchannel_logout_uri)
            {
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
                (ClientKind::Confidential, Some(AuthMethod::None)) => return Err(ServerError::Usage("confidential clients authenticate; pick client-secret-basic, client-secret-post or private-key-jwt".into())),
                (ClientKind::Confidential, Some(AuthMethod::ClientSecretPost)) => "client_secret_post",
                (ClientKind::Confidential, Some(AuthMethod::PrivateKeyJwt)) => "private_key_jwt",
                (ClientKind::Confidential, _) => "client_secret_basic",
            };
            if public && args.grants.iter().any(|g| g == "client_credentials") {
                return Err(ServerError::Usage(
                    "public clients cannot use client_credentials".into(),
                ));
            }
            let jwks = match (method, args.jwks.as_deref()) {
                ("private_key_jwt", Some(value)) => Some(read_jwks(value)?),
                ("private_key_jwt", None) => {
                    return Err(ServerError::Usage(
                        "private_key_jwt needs the client's public keys: --jwks <file|json>".into(),
                    ));
                }
                (_, Some(_)) => {
                    return Err(ServerError::Usage(
                        "--jwks is for --auth-method private-key-jwt".into(),
                    ));
                }
                (_, None) => None,
            };
            let id_token_alg: Algorithm = args.id_token_alg.parse().map_err(|_| {
                ServerError::Usage(format!(
                    "unknown ID token algorithm `{}`: use ES256, RS256 or EdDSA",
                    args.id_token_alg
                ))
            })?;
            let secret =
                (!public && method != "private_key_jwt").then(client_auth::generate_secret);
            let data = ClientData {
                client_id: args
                    .client_id
                    .unwrap_or_else(client_auth::generate_client_id),
                name: args.name,
                client_type: if public { "public" } else { "confidential" }.into(),
                auth_method: method.into(),
                secret_hash: secret.as_ref().map(|s| client_auth::secret_hash(s)),
                jwks,
                redirect_uris: args.redirect_uris,
                post_logout_redirect_uris: args.post_logout_redirect_uris,
                grant_types: args.grants,
                scopes: args.scopes,
                default_audience: args.audiences.first().cloned(),
                audiences: args.audiences,
                access_token_ttl_secs: args.access_token_ttl,
                refresh_token_ttl_secs: 30 * 24 * 3600,
                refresh_idle_ttl_secs: 7 * 24 * 3600,
                id_token_alg: id_token_alg.as_str().into(),
                // PKCE is required for public clients and enforced for all by default.
                require_pkce: true,
                require_par: args.require_par,
                first_party: args.first_party,
                backchannel_logout_uri: args.backchannel_logout_uri,
            };
            let now = SystemClock.now();
            if id_token_alg != Algorithm::default() {
                // Created now rather than at the first sign-in, so relying parties
                // find the key in the JWKS before the first token signed with it.
                let (cipher, _) = Cipher::load(config).map_err(ServerError::Secrets)?;
                ensure_active(&mut conn, &cipher, now, tenant, id_token_alg).map_err(|e| {
                    ServerError::Usage(format!("cannot create the {id_token_alg} signing key: {e}"))
                })?;
            }
            let client = clients::create(&mut conn, now, tenant, data)?;
            announce_change(config, tenant, &client.data.client_id);
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
            announce_change(config, tenant, &args.client_id);
            println!("deleted {}", args.client_id);
        }
    }
    Ok(())
}
