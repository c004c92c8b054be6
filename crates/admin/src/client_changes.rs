//! Changes to a registered client: its name, redirect and logout URIs, web
//! origins, grants, scopes, audiences, token lifetime and flags. The changed
//! registration passes the same rules as a new one; how the client authenticates
//! (its kind, method, secret or keys) is not changed here.

use gatehouse_core::events::DomainEvent;
use gatehouse_identity_store::StoreError;
use gatehouse_identity_store::clients::{self, Client, ClientData};
use gatehouse_token_issuer::{Algorithm, ensure_active};
use serde_json::json;

use crate::clients::{AuthMethod, ClientKind, NewClient, client_data};
use crate::{Admin, AdminError, AdminResult, Operator};

/// What a change sets; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct ClientChange {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// `Some(None)` removes it.
    pub backchannel_logout_uri: Option<Option<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub grants: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    /// The first is the default audience.
    pub audiences: Option<Vec<String>>,
    pub access_token_ttl_secs: Option<i64>,
    pub id_token_alg: Option<String>,
    pub require_pkce: Option<bool>,
    pub require_par: Option<bool>,
    pub first_party: Option<bool>,
}

impl ClientChange {
    /// The registration as it would be after the change, to check it like a new one.
    fn applied_to(self, current: &ClientData) -> NewClient {
        let c = current.clone();
        NewClient {
            name: self.name.unwrap_or(c.name),
            client_id: Some(c.client_id),
            kind: if c.client_type == "public" {
                ClientKind::Public
            } else {
                ClientKind::Confidential
            },
            auth_method: Some(match c.auth_method.as_str() {
                "client_secret_post" => AuthMethod::ClientSecretPost,
                "private_key_jwt" => AuthMethod::PrivateKeyJwt,
                "none" => AuthMethod::None,
                _ => AuthMethod::ClientSecretBasic,
            }),
            redirect_uris: self.redirect_uris.unwrap_or(c.redirect_uris),
            grants: self.grants.unwrap_or(c.grant_types),
            scopes: self.scopes.unwrap_or(c.scopes),
            audiences: self.audiences.unwrap_or(c.audiences),
            access_token_ttl_secs: self
                .access_token_ttl_secs
                .unwrap_or(c.access_token_ttl_secs),
            first_party: self.first_party.unwrap_or(c.first_party),
            require_par: self.require_par.unwrap_or(c.require_par),
            jwks: c.jwks,
            id_token_alg: self.id_token_alg.unwrap_or(c.id_token_alg),
            post_logout_redirect_uris: self
                .post_logout_redirect_uris
                .unwrap_or(c.post_logout_redirect_uris),
            backchannel_logout_uri: self
                .backchannel_logout_uri
                .unwrap_or(c.backchannel_logout_uri),
            allowed_origins: self.allowed_origins.unwrap_or(c.allowed_origins),
            require_pkce: self.require_pkce.unwrap_or(c.require_pkce),
        }
    }
}

/// The names of the members whose values differ, for the audit record.
fn changed_members(before: &ClientData, after: &ClientData) -> Vec<&'static str> {
    let differs = [
        ("name", before.name != after.name),
        ("redirect_uris", before.redirect_uris != after.redirect_uris),
        (
            "post_logout_redirect_uris",
            before.post_logout_redirect_uris != after.post_logout_redirect_uris,
        ),
        (
            "backchannel_logout_uri",
            before.backchannel_logout_uri != after.backchannel_logout_uri,
        ),
        (
            "cors_origins",
            before.allowed_origins != after.allowed_origins,
        ),
        ("grants", before.grant_types != after.grant_types),
        ("scopes", before.scopes != after.scopes),
        ("audiences", before.audiences != after.audiences),
        (
            "access_token_ttl_secs",
            before.access_token_ttl_secs != after.access_token_ttl_secs,
        ),
        ("id_token_alg", before.id_token_alg != after.id_token_alg),
        ("require_pkce", before.require_pkce != after.require_pkce),
        ("require_par", before.require_par != after.require_par),
        ("first_party", before.first_party != after.first_party),
    ];
    differs
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect()
}

impl Admin {
    /// Changes a client at the version the caller read (`StaleVersion` when it
    /// changed since, so a concurrent change is never overwritten). Every node
    /// serves the change once it hears; a signing key for a new ID-token algorithm
    /// is made first, so relying parties find it in the JWKS.
    pub async fn update_client(
        &self,
        operator: &Operator,
        tenant: &str,
        client_id: &str,
        expected_version: i64,
        change: ClientChange,
    ) -> AdminResult<Client> {
        if let Some(scopes) = &change.scopes {
            operator.may_give(scopes)?;
        }
        let current = self.client(tenant, client_id).await?;
        let (checked, id_token_alg) = client_data(change.applied_to(&current.data))?;
        let data = ClientData {
            // How it authenticates, and what this change cannot set, stay as they were.
            secret_hash: current.data.secret_hash.clone(),
            jwks: current.data.jwks.clone(),
            refresh_token_ttl_secs: current.data.refresh_token_ttl_secs,
            refresh_idle_ttl_secs: current.data.refresh_idle_ttl_secs,
            ..checked
        };
        let changed = changed_members(&current.data, &data);
        let (admin, actor, now) = (self.clone(), operator.actor(), self.now());
        let tenant_id = current.tenant_id;
        let updated = self
            .blocking(move |conn| {
                gatehouse_identity_store::db::transaction_with(conn, |conn| {
                    if id_token_alg != Algorithm::default() {
                        ensure_active(conn, &admin.cipher, now, tenant_id, id_token_alg).map_err(
                            |e| {
                                AdminError::Unavailable(format!(
                                    "cannot create the {id_token_alg} signing key: {e}"
                                ))
                            },
                        )?;
                    }
                    let id = current.data.client_id.clone();
                    let updated =
                        clients::update(conn, now, tenant_id, &id, expected_version, data)
                            .map_err(|e| match e {
                                StoreError::NotFound { .. } => {
                                    AdminError::NotFound(format!("no client `{id}`"))
                                }
                                other => other.into(),
                            })?;
                    admin.audit(
                        conn,
                        tenant_id,
                        actor,
                        "client.updated",
                        format!("client:{id}"),
                        json!({ "changed": changed }),
                    )?;
                    Ok::<_, AdminError>(updated)
                })
            })
            .await?;
        self.announce(DomainEvent::ClientChanged {
            tenant: tenant_id,
            client_id: client_id.to_owned(),
        });
        Ok(updated)
    }
}
