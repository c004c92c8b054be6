//! The tenant's OAuth clients: list, show, register, rotate the secret, delete.

use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_admin::{AuthMethod, ClientChange, ClientKind, NewClient};
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{ClientView, CreatedClient, Items, NewSecret};
use super::{
    Caller, body, changed_at_version, created, if_match, no_content, ok, ok_as, respond, segment,
    tagged,
};

/// The tenant's clients.
#[utoipa::path(get, path = "/clients", tag = "clients",
    responses((status = 200, description = "The tenant's clients (never a secret)", body = Items<ClientView>)))]
pub(super) async fn list_clients(caller: Caller) -> HttpResponse {
    ok_as::<Items<ClientView>, _>(caller.admin().clients(caller.slug()).await)
}

/// One client.
#[utoipa::path(get, path = "/clients/{client_id}", tag = "clients",
    params(("client_id" = String, Path)),
    responses((status = 200, description = "The client", body = ClientView,
        headers(("ETag" = String, description = "Its version, for If-Match")))))]
pub(super) async fn show_client(caller: Caller, req: HttpRequest) -> HttpResponse {
    let id = segment(&req, "client_id");
    respond(caller.admin().client(caller.slug(), &id).await, |client| {
        tagged(ClientView::from(&client), client.version)
    })
}

#[derive(Deserialize, ToSchema, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
pub(super) enum Kind {
    #[default]
    Confidential,
    Public,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum Method {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

fn default_ttl() -> i64 {
    300
}

fn default_alg() -> String {
    "RS256".into()
}

fn yes() -> bool {
    true
}

fn default_grants() -> Vec<String> {
    vec!["authorization_code".into(), "refresh_token".into()]
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}

/// A client registration, with the CLI's defaults (a confidential web app with the
/// code flow and refresh, `openid profile email`, OpenID Connect's RS256 ID tokens,
/// PKCE required, 300 s access tokens).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewClientBody {
    name: String,
    /// Chosen by the caller, or random.
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    kind: Kind,
    /// By default `client_secret_basic` for a confidential client, `none` for a
    /// public one.
    #[serde(default)]
    auth_method: Option<Method>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default = "default_grants")]
    #[schema(default = default_grants)]
    grants: Vec<String>,
    #[serde(default = "default_scopes")]
    #[schema(default = default_scopes)]
    scopes: Vec<String>,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default = "default_ttl")]
    #[schema(default = 300)]
    access_token_ttl_secs: i64,
    #[serde(default)]
    first_party: bool,
    #[serde(default)]
    require_par: bool,
    /// The client's public keys for private_key_jwt (a JWK Set).
    #[serde(default)]
    jwks: Option<serde_json::Value>,
    #[serde(default = "default_alg")]
    #[schema(default = "RS256")]
    id_token_alg: String,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    backchannel_logout_uri: Option<String>,
    #[serde(default)]
    cors_origins: Vec<String>,
    #[serde(default = "yes")]
    #[schema(default = true)]
    require_pkce: bool,
}

impl From<NewClientBody> for NewClient {
    fn from(new: NewClientBody) -> Self {
        NewClient {
            name: new.name,
            client_id: new.client_id,
            kind: match new.kind {
                Kind::Confidential => ClientKind::Confidential,
                Kind::Public => ClientKind::Public,
            },
            auth_method: new.auth_method.map(|method| match method {
                Method::ClientSecretBasic => AuthMethod::ClientSecretBasic,
                Method::ClientSecretPost => AuthMethod::ClientSecretPost,
                Method::PrivateKeyJwt => AuthMethod::PrivateKeyJwt,
                Method::None => AuthMethod::None,
            }),
            redirect_uris: new.redirect_uris,
            grants: new.grants,
            scopes: new.scopes,
            audiences: new.audiences,
            access_token_ttl_secs: new.access_token_ttl_secs,
            first_party: new.first_party,
            require_par: new.require_par,
            jwks: new.jwks.map(|set| set.to_string()),
            id_token_alg: new.id_token_alg,
            post_logout_redirect_uris: new.post_logout_redirect_uris,
            backchannel_logout_uri: new.backchannel_logout_uri,
            allowed_origins: new.cors_origins,
            require_pkce: new.require_pkce,
        }
    }
}

/// Registers a client; a generated secret is in this answer only (stored hashed).
#[utoipa::path(post, path = "/clients", tag = "clients", request_body = NewClientBody,
    responses((status = 201, description = "Registered; a generated secret is shown this once", body = CreatedClient),
        (status = 409, description = "The client id is taken", body = super::views::Problem,
            content_type = "application/problem+json")))]
pub(super) async fn create_client(
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let new: NewClientBody = body(&bytes)?;
    let made = caller
        .admin()
        .create_client(&caller.operator, caller.slug(), new.into())
        .await;
    Ok(respond(made, |made| {
        created(CreatedClient {
            client: ClientView::from(&made.client),
            client_secret: made.secret.map(|secret| secret.as_str().to_owned()),
        })
    }))
}

/// A new secret for the client, in this answer only; the old one stops working.
#[utoipa::path(post, path = "/clients/{client_id}/secret", tag = "clients",
    params(("client_id" = String, Path)), responses((status = 200, description = "The new secret, shown this once", body = NewSecret)))]
pub(super) async fn rotate_secret(caller: Caller, req: HttpRequest) -> HttpResponse {
    let id = segment(&req, "client_id");
    let rotated = caller
        .admin()
        .rotate_client_secret(&caller.operator, caller.slug(), &id)
        .await;
    respond(rotated, |secret| {
        ok(NewSecret {
            client_id: id.clone(),
            client_secret: secret.as_str().to_owned(),
        })
    })
}

/// Deletes the client: its tokens stop verifying on every node.
#[utoipa::path(delete, path = "/clients/{client_id}", tag = "clients",
    params(("client_id" = String, Path)), responses((status = 204, description = "Deleted")))]
pub(super) async fn delete_client(caller: Caller, req: HttpRequest) -> HttpResponse {
    let id = segment(&req, "client_id");
    let done = caller
        .admin()
        .delete_client(&caller.operator, caller.slug(), &id)
        .await;
    respond(done, |()| no_content())
}

/// Registration members to change; an absent member is kept. How the client
/// authenticates (kind, method, secret, keys) is not changed here.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    redirect_uris: Option<Vec<String>>,
    #[serde(default)]
    post_logout_redirect_uris: Option<Vec<String>>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "super::present")]
    backchannel_logout_uri: Option<Option<String>>,
    #[serde(default)]
    cors_origins: Option<Vec<String>>,
    #[serde(default)]
    grants: Option<Vec<String>>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    audiences: Option<Vec<String>>,
    #[serde(default)]
    access_token_ttl_secs: Option<i64>,
    #[serde(default)]
    id_token_alg: Option<String>,
    #[serde(default)]
    require_pkce: Option<bool>,
    #[serde(default)]
    require_par: Option<bool>,
    #[serde(default)]
    first_party: Option<bool>,
}

impl From<ClientPatch> for ClientChange {
    fn from(p: ClientPatch) -> Self {
        ClientChange {
            name: p.name,
            redirect_uris: p.redirect_uris,
            post_logout_redirect_uris: p.post_logout_redirect_uris,
            backchannel_logout_uri: p.backchannel_logout_uri,
            allowed_origins: p.cors_origins,
            grants: p.grants,
            scopes: p.scopes,
            audiences: p.audiences,
            access_token_ttl_secs: p.access_token_ttl_secs,
            id_token_alg: p.id_token_alg,
            require_pkce: p.require_pkce,
            require_par: p.require_par,
            first_party: p.first_party,
        }
    }
}

/// Changes the client's registration.
///
/// The changed registration passes the same rules as a new one. The request must
/// say which version it read (`If-Match` with the `ETag` of a GET): without it 428,
/// for a version that is no longer current 412.
#[utoipa::path(patch, path = "/clients/{client_id}", tag = "clients",
    params(("client_id" = String, Path), ("If-Match" = String, Header, description = "The ETag read")),
    request_body(content(
        (ClientPatch = "application/merge-patch+json"), (ClientPatch = "application/json"))),
    responses((status = 200, description = "Changed", body = ClientView, headers(("ETag" = String))),
        (status = 412, description = "The client changed since it was read",
            body = super::views::Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing",
            body = super::views::Problem, content_type = "application/problem+json")))]
pub(super) async fn update_client(
    caller: Caller,
    req: HttpRequest,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let id = segment(&req, "client_id");
    let version = if_match(&req, "client")?;
    let patch: ClientPatch = body(&bytes)?;
    let updated = caller
        .admin()
        .update_client(&caller.operator, caller.slug(), &id, version, patch.into())
        .await;
    Ok(changed_at_version(updated, "client", |client| {
        tagged(ClientView::from(&client), client.version)
    }))
}
