//! OAuth 2.0 / OpenID Connect clients. The secret is stored only as its SHA-256: it is
//! a random 256-bit value shown once at creation, so a fast hash is the right form.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::ids::TenantId;
use uuid::Uuid;

use crate::error::{is_unique_violation, map_unique, touched_one};
use crate::query::{FromRow, LoadItems, tenant_rows};
use crate::schema::{client_assertion_jtis, oauth_clients};
use crate::{AnyConnection, Page, PageRequest, StoreError, StoreResult};

const ENTITY: &str = "client";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientData {
    pub client_id: String,
    pub name: String,
    /// "confidential" or "public".
    pub client_type: String,
    /// client_secret_basic | client_secret_post | private_key_jwt | none
    pub auth_method: String,
    pub secret_hash: Option<String>,
    /// The client's public keys (JWKS JSON) for private_key_jwt.
    pub jwks: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub default_audience: Option<String>,
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    pub refresh_idle_ttl_secs: i64,
    pub id_token_alg: String,
    pub require_pkce: bool,
    pub require_par: bool,
    pub first_party: bool,
    pub backchannel_logout_uri: Option<String>,
    /// Web origins (`https://app.example`) a browser app may call the token,
    /// UserInfo and revocation endpoints from (CORS), ASCII-serialised.
    pub allowed_origins: Vec<String>,
}

impl ClientData {
    /// A confidential client (`client_secret_basic`) that may do nothing yet: no
    /// secret, redirect URIs, grants, scopes or audiences; 300 s access tokens, a
    /// day of refresh (an hour idle), ES256 ID tokens, PKCE required, third party.
    /// Callers name what differs with struct update syntax.
    pub fn new(client_id: impl Into<String>, name: impl Into<String>) -> ClientData {
        ClientData {
            client_id: client_id.into(),
            name: name.into(),
            client_type: "confidential".into(),
            auth_method: "client_secret_basic".into(),
            secret_hash: None,
            jwks: None,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            allowed_origins: Vec::new(),
            grant_types: Vec::new(),
            scopes: Vec::new(),
            audiences: Vec::new(),
            default_audience: None,
            access_token_ttl_secs: 300,
            refresh_token_ttl_secs: 86_400,
            refresh_idle_ttl_secs: 3_600,
            id_token_alg: "ES256".into(),
            require_pkce: true,
            require_par: false,
            first_party: false,
            backchannel_logout_uri: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub data: ClientData,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = oauth_clients)]
pub(crate) struct ClientRow {
    id: String,
    tenant_id: String,
    client_id: String,
    name: String,
    client_type: String,
    auth_method: String,
    secret_hash: Option<String>,
    jwks: Option<String>,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    grant_types: String,
    scopes: String,
    audiences: String,
    default_audience: Option<String>,
    access_token_ttl_secs: i64,
    refresh_token_ttl_secs: i64,
    refresh_idle_ttl_secs: i64,
    id_token_alg: String,
    require_pkce: bool,
    require_par: bool,
    first_party: bool,
    backchannel_logout_uri: Option<String>,
    allowed_origins: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    version: i64,
}

fn list_json(values: &[String]) -> String {
    serde_json::Value::from(values.to_vec()).to_string()
}

impl ClientRow {
    fn new(
        id: Uuid,
        tenant: TenantId,
        data: ClientData,
        now: DateTime<Utc>,
        version: i64,
    ) -> ClientRow {
        ClientRow {
            id: id.to_string(),
            tenant_id: tenant.to_string(),
            redirect_uris: list_json(&data.redirect_uris),
            post_logout_redirect_uris: list_json(&data.post_logout_redirect_uris),
            allowed_origins: list_json(&data.allowed_origins),
            grant_types: list_json(&data.grant_types),
            scopes: list_json(&data.scopes),
            audiences: list_json(&data.audiences),
            client_id: data.client_id,
            name: data.name,
            client_type: data.client_type,
            auth_method: data.auth_method,
            secret_hash: data.secret_hash,
            jwks: data.jwks,
            default_audience: data.default_audience,
            access_token_ttl_secs: data.access_token_ttl_secs,
            refresh_token_ttl_secs: data.refresh_token_ttl_secs,
            refresh_idle_ttl_secs: data.refresh_idle_ttl_secs,
            id_token_alg: data.id_token_alg,
            require_pkce: data.require_pkce,
            require_par: data.require_par,
            first_party: data.first_party,
            backchannel_logout_uri: data.backchannel_logout_uri,
            created_at: now.naive_utc(),
            updated_at: now.naive_utc(),
            version,
        }
    }
}

impl FromRow for Client {
    type Row = ClientRow;
    fn from_row(row: ClientRow) -> StoreResult<Client> {
        let corrupt = |e: &dyn std::fmt::Display| StoreError::corrupt("oauth_clients", e);
        let list = |text: &str| serde_json::from_str::<Vec<String>>(text).map_err(|e| corrupt(&e));
        Ok(Client {
            id: row.id.parse().map_err(|e| corrupt(&e))?,
            tenant_id: row.tenant_id.parse().map_err(|e| corrupt(&e))?,
            data: ClientData {
                redirect_uris: list(&row.redirect_uris)?,
                post_logout_redirect_uris: list(&row.post_logout_redirect_uris)?,
                allowed_origins: list(&row.allowed_origins)?,
                grant_types: list(&row.grant_types)?,
                scopes: list(&row.scopes)?,
                audiences: list(&row.audiences)?,
                client_id: row.client_id,
                name: row.name,
                client_type: row.client_type,
                auth_method: row.auth_method,
                secret_hash: row.secret_hash,
                jwks: row.jwks,
                default_audience: row.default_audience,
                access_token_ttl_secs: row.access_token_ttl_secs,
                refresh_token_ttl_secs: row.refresh_token_ttl_secs,
                refresh_idle_ttl_secs: row.refresh_idle_ttl_secs,
                id_token_alg: row.id_token_alg,
                require_pkce: row.require_pkce,
                require_par: row.require_par,
                first_party: row.first_party,
                backchannel_logout_uri: row.backchannel_logout_uri,
            },
            created_at: row.created_at.and_utc(),
            updated_at: row.updated_at.and_utc(),
            version: row.version,
        })
    }
}

fn conflict() -> impl Fn(diesel::result::Error) -> StoreError {
    map_unique(
        ENTITY,
        &[(
            "oauth_clients_client_id_key",
            "oauth_clients.tenant_id",
            "client_id",
        )],
    )
}

pub fn create(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    data: ClientData,
) -> StoreResult<Client> {
    if data.client_id.trim().is_empty() || data.name.trim().is_empty() {
        return Err(StoreError::invalid(
            ENTITY,
            "client_id and name must not be empty",
        ));
    }
    let row = ClientRow::new(Uuid::now_v7(), tenant, data, now, 1);
    diesel::insert_into(oauth_clients::table)
        .values(&row)
        .execute(conn)
        .map_err(conflict())?;
    Client::from_row(row)
}

pub fn get_by_client_id(
    conn: &mut AnyConnection,
    tenant: TenantId,
    client_id: &str,
) -> StoreResult<Option<Client>> {
    tenant_rows!(oauth_clients, tenant)
        .filter(oauth_clients::client_id.eq(client_id))
        .first_item(conn)
}

/// Every web origin some client of the tenant registered (CORS preflights name no
/// client, so they are answered for the tenant), deduplicated and sorted.
pub fn web_origins(conn: &mut AnyConnection, tenant: TenantId) -> StoreResult<Vec<String>> {
    let lists: Vec<String> = tenant_rows!(oauth_clients, tenant)
        .filter(oauth_clients::allowed_origins.ne("[]"))
        .select(oauth_clients::allowed_origins)
        .load(conn)?;
    let mut origins = std::collections::BTreeSet::new();
    for list in lists {
        let parsed: Vec<String> =
            serde_json::from_str(&list).map_err(|e| StoreError::corrupt("oauth_clients", e))?;
        origins.extend(parsed);
    }
    Ok(origins.into_iter().collect())
}

/// Replaces the client's data if `expected_version` is still current.
pub fn update(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    client_id: &str,
    expected_version: i64,
    data: ClientData,
) -> StoreResult<Client> {
    let existing = get_by_client_id(conn, tenant, client_id)?
        .ok_or(StoreError::NotFound { entity: ENTITY })?;
    let mut row = ClientRow::new(existing.id, tenant, data, now, expected_version + 1);
    row.created_at = existing.created_at.naive_utc();
    let updated = diesel::update(
        tenant_rows!(oauth_clients, tenant)
            .filter(oauth_clients::id.eq(existing.id.to_string()))
            .filter(oauth_clients::version.eq(expected_version)),
    )
    .set((
        oauth_clients::client_id.eq(&row.client_id),
        oauth_clients::name.eq(&row.name),
        oauth_clients::client_type.eq(&row.client_type),
        oauth_clients::auth_method.eq(&row.auth_method),
        oauth_clients::secret_hash.eq(&row.secret_hash),
        oauth_clients::jwks.eq(&row.jwks),
        oauth_clients::redirect_uris.eq(&row.redirect_uris),
        oauth_clients::post_logout_redirect_uris.eq(&row.post_logout_redirect_uris),
        oauth_clients::grant_types.eq(&row.grant_types),
        oauth_clients::scopes.eq(&row.scopes),
        oauth_clients::audiences.eq(&row.audiences),
        oauth_clients::default_audience.eq(&row.default_audience),
        oauth_clients::access_token_ttl_secs.eq(row.access_token_ttl_secs),
        oauth_clients::refresh_token_ttl_secs.eq(row.refresh_token_ttl_secs),
        oauth_clients::refresh_idle_ttl_secs.eq(row.refresh_idle_ttl_secs),
        oauth_clients::id_token_alg.eq(&row.id_token_alg),
        oauth_clients::require_pkce.eq(row.require_pkce),
        oauth_clients::require_par.eq(row.require_par),
        oauth_clients::first_party.eq(row.first_party),
        oauth_clients::backchannel_logout_uri.eq(&row.backchannel_logout_uri),
        oauth_clients::allowed_origins.eq(&row.allowed_origins),
        oauth_clients::updated_at.eq(row.updated_at),
        oauth_clients::version.eq(row.version),
    ))
    .execute(conn)
    .map_err(conflict())?;
    if updated == 0 {
        return Err(StoreError::StaleVersion { entity: ENTITY });
    }
    Client::from_row(row)
}

pub fn delete(conn: &mut AnyConnection, tenant: TenantId, client_id: &str) -> StoreResult<()> {
    let deleted = diesel::delete(
        tenant_rows!(oauth_clients, tenant).filter(oauth_clients::client_id.eq(client_id)),
    )
    .execute(conn)?;
    touched_one(deleted, ENTITY)
}

pub fn list(
    conn: &mut AnyConnection,
    tenant: TenantId,
    page: &PageRequest,
) -> StoreResult<Page<Client>> {
    let clients = page
        .of_rows(tenant_rows!(oauth_clients, tenant), oauth_clients::id)?
        .load_items(conn)?;
    Ok(Page::from_rows(clients, page, |c: &Client| {
        c.id.to_string()
    }))
}

/// Records the `jti` of a client assertion (RFC 7523 §3, item 7). Returns `false` if
/// this client already used it: the assertion is a replay.
///
/// The client's rows that expired are deleted first, so the table stays as small as
/// the assertions still acceptable, without a sweeper job.
pub fn use_assertion_jti(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    client_id: &str,
    jti: &str,
    expires_at: DateTime<Utc>,
) -> StoreResult<bool> {
    diesel::delete(
        tenant_rows!(client_assertion_jtis, tenant)
            .filter(client_assertion_jtis::client_id.eq(client_id))
            .filter(client_assertion_jtis::expires_at.le(now.naive_utc())),
    )
    .execute(conn)?;
    let inserted = diesel::insert_into(client_assertion_jtis::table)
        .values((
            client_assertion_jtis::tenant_id.eq(tenant.to_string()),
            client_assertion_jtis::client_id.eq(client_id),
            client_assertion_jtis::jti.eq(jti),
            client_assertion_jtis::expires_at.eq(expires_at.naive_utc()),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
