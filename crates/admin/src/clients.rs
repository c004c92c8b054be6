//! Operator actions on OAuth clients: register (with the registration rules:
//! redirect URIs, grants, authentication method, keys), list, show, delete. Each
//! write is audited with the operator and announced, so every node drops its copy.

use gatehouse_core::events::DomainEvent;
use gatehouse_identity_store::clients::{self, Client, ClientData};
use gatehouse_token_issuer::{Algorithm, client_auth, ensure_active};
use serde_json::json;
use zeroize::Zeroizing;

use crate::{Admin, AdminError, AdminResult, Operator};

pub const GRANTS: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];

/// Whether the client can keep a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Confidential,
    Public,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A JWT signed with one of the client's registered keys (RFC 7523).
    PrivateKeyJwt,
    None,
}

/// A client to register, as an operator describes it.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub name: String,
    /// Chosen by the operator, or random.
    pub client_id: Option<String>,
    pub kind: ClientKind,
    /// `None`: the kind's default (basic for confidential, none for public).
    pub auth_method: Option<AuthMethod>,
    pub redirect_uris: Vec<String>,
    pub grants: Vec<String>,
    pub scopes: Vec<String>,
    /// The first is the default audience.
    pub audiences: Vec<String>,
    pub access_token_ttl_secs: i64,
    pub first_party: bool,
    pub require_par: bool,
    /// The client's public keys for private_key_jwt, a JWK Set as JSON text.
    pub jwks: Option<String>,
    /// `ES256`, `RS256` or `EdDSA`.
    pub id_token_alg: String,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    /// Web origins a browser app calls the token, UserInfo and revocation
    /// endpoints from (CORS).
    pub allowed_origins: Vec<String>,
    /// PKCE on every authorization request; only a confidential client may turn it
    /// off (a legacy server-side app that cannot send it).
    pub require_pkce: bool,
}

impl NewClient {
    /// A confidential web app signing users in with the authorization code flow at
    /// `redirect_uri`, asking for `openid`; every other setting at its default.
    pub fn web_app(name: &str, client_id: &str, redirect_uri: &str) -> Self {
        NewClient {
            name: name.into(),
            client_id: Some(client_id.into()),
            kind: ClientKind::Confidential,
            auth_method: None,
            redirect_uris: vec![redirect_uri.into()],
            grants: vec!["authorization_code".into()],
            scopes: vec!["openid".into()],
            audiences: vec![],
            access_token_ttl_secs: 300,
            first_party: false,
            require_par: false,
            jwks: None,
            id_token_alg: "ES256".into(),
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            allowed_origins: vec![],
            require_pkce: true,
        }
    }
}

/// A registered client and, for a confidential client with a secret, the secret:
/// shown once, only its hash is stored.
#[derive(Debug)]
pub struct CreatedClient {
    pub client: Client,
    pub secret: Option<Zeroizing<String>>,
}

fn invalid(field: &'static str, message: impl Into<String>) -> AdminError {
    AdminError::Invalid {
        field,
        message: message.into(),
    }
}

/// The longest an access token may live: a day. Longer-lived bearer tokens could not
/// be cut off in time when their client is.
pub const MAX_ACCESS_TOKEN_TTL_SECS: i64 = 24 * 3600;

/// The registration rules, before anything is written: the client's data (no
/// secret yet) and its ID-token algorithm.
pub(crate) fn client_data(new: NewClient) -> AdminResult<(ClientData, Algorithm)> {
    for (field, uri) in new
        .redirect_uris
        .iter()
        .map(|u| ("redirect_uri", u))
        .chain(
            new.post_logout_redirect_uris
                .iter()
                .map(|u| ("post_logout_redirect_uri", u)),
        )
        .chain(
            new.backchannel_logout_uri
                .iter()
                .map(|u| ("backchannel_logout_uri", u)),
        )
    {
        client_auth::validate_redirect_uri(uri).map_err(|e| invalid(field, e))?;
    }
    if let Some(bad) = new.grants.iter().find(|g| !GRANTS.contains(&g.as_str())) {
        return Err(invalid(
            "grant",
            format!("unknown grant `{bad}`; use one of {}", GRANTS.join(", ")),
        ));
    }
    let public = new.kind == ClientKind::Public;
    let method = match (new.kind, new.auth_method) {
        (ClientKind::Public, None | Some(AuthMethod::None)) => "none",
        (ClientKind::Public, Some(_)) => {
            return Err(invalid(
                "auth_method",
                "public clients have no secret: use none",
            ));
        }
        (ClientKind::Confidential, Some(AuthMethod::None)) => {
            return Err(invalid(
                "auth_method",
                "confidential clients authenticate; pick client-secret-basic, client-secret-post or private-key-jwt",
            ));
        }
        (ClientKind::Confidential, Some(AuthMethod::ClientSecretPost)) => "client_secret_post",
        (ClientKind::Confidential, Some(AuthMethod::PrivateKeyJwt)) => "private_key_jwt",
        (ClientKind::Confidential, _) => "client_secret_basic",
    };
    if public && new.grants.iter().any(|g| g == "client_credentials") {
        return Err(invalid(
            "grant",
            "public clients cannot use client_credentials",
        ));
    }
    let jwks = match (method, new.jwks.as_deref()) {
        ("private_key_jwt", Some(text)) => {
            client_auth::check_jwks(text).map_err(|e| invalid("jwks", e))?;
            // Stored compact: the layout of the operator's file is not worth keeping.
            let set: serde_json::Value =
                serde_json::from_str(text).map_err(|e| invalid("jwks", e.to_string()))?;
            Some(set.to_string())
        }
        ("private_key_jwt", None) => {
            return Err(invalid(
                "jwks",
                "is needed for private_key_jwt: the client's public keys",
            ));
        }
        (_, Some(_)) => return Err(invalid("jwks", "is for private_key_jwt clients only")),
        (_, None) => None,
    };
    let id_token_alg: Algorithm = new.id_token_alg.parse().map_err(|_| {
        invalid(
            "id_token_alg",
            format!(
                "unknown ID token algorithm `{}`: use ES256, RS256 or EdDSA",
                new.id_token_alg
            ),
        )
    })?;
    if !(1..=MAX_ACCESS_TOKEN_TTL_SECS).contains(&new.access_token_ttl_secs) {
        return Err(invalid(
            "access_token_ttl_secs",
            format!("must be between 1 and {MAX_ACCESS_TOKEN_TTL_SECS} seconds"),
        ));
    }
    if public && !new.require_pkce {
        return Err(invalid(
            "require_pkce",
            "public clients always use PKCE (RFC 9700 §2.1.1)",
        ));
    }
    let allowed_origins = new
        .allowed_origins
        .iter()
        .map(|origin| client_auth::web_origin(origin).map_err(|e| invalid("cors_origin", e)))
        .collect::<AdminResult<std::collections::BTreeSet<String>>>()?
        .into_iter()
        .collect();
    let data = ClientData {
        client_id: new
            .client_id
            .unwrap_or_else(client_auth::generate_client_id),
        name: new.name,
        client_type: if public { "public" } else { "confidential" }.into(),
        auth_method: method.into(),
        secret_hash: None,
        jwks,
        redirect_uris: new.redirect_uris,
        post_logout_redirect_uris: new.post_logout_redirect_uris,
        grant_types: new.grants,
        scopes: new.scopes,
        default_audience: new.audiences.first().cloned(),
        audiences: new.audiences,
        access_token_ttl_secs: new.access_token_ttl_secs,
        refresh_token_ttl_secs: 30 * 24 * 3600,
        refresh_idle_ttl_secs: 7 * 24 * 3600,
        id_token_alg: id_token_alg.as_str().into(),
        require_pkce: new.require_pkce,
        require_par: new.require_par,
        first_party: new.first_party,
        backchannel_logout_uri: new.backchannel_logout_uri,
        allowed_origins,
    };
    Ok((data, id_token_alg))
}

/// Whether the client authenticates with a secret Gatehouse issues.
pub(crate) fn uses_secret(data: &ClientData) -> bool {
    matches!(
        data.auth_method.as_str(),
        "client_secret_basic" | "client_secret_post"
    )
}

impl Admin {
    /// Registers a client. A signing key for its ID-token algorithm is created now,
    /// if the tenant has none, so relying parties find it in the JWKS before the
    /// first token signed with it.
    pub async fn create_client(
        &self,
        operator: &Operator,
        tenant: &str,
        new: NewClient,
    ) -> AdminResult<CreatedClient> {
        operator.may_give(&new.scopes)?;
        let (mut data, id_token_alg) = client_data(new)?;
        let secret = uses_secret(&data).then(client_auth::generate_secret);
        data.secret_hash = secret.as_deref().map(|s| client_auth::secret_hash(s));
        let tenant = self.tenant(tenant).await?.id;
        let admin = self.clone();
        let actor = operator.actor();
        let client = self
            .blocking(move |conn| {
                let now = admin.now();
                let client = gatehouse_identity_store::db::transaction_with(conn, |conn| {
                    if id_token_alg != Algorithm::default() {
                        ensure_active(conn, &admin.cipher, now, tenant, id_token_alg).map_err(
                            |e| {
                                AdminError::Unavailable(format!(
                                    "cannot create the {id_token_alg} signing key: {e}"
                                ))
                            },
                        )?;
                    }
                    let client = clients::create(conn, now, tenant, data).map_err(|e| match e {
                        gatehouse_identity_store::StoreError::Conflict { .. } => {
                            AdminError::Conflict(
                                "a client with that client_id exists already".into(),
                            )
                        }
                        other => other.into(),
                    })?;
                    admin.audit(
                        conn,
                        tenant,
                        actor,
                        "client.created",
                        format!("client:{}", client.data.client_id),
                        json!({
                            "name": client.data.name,
                            "type": client.data.client_type,
                            "auth_method": client.data.auth_method,
                            "redirect_uris": client.data.redirect_uris,
                            "grants": client.data.grant_types,
                            "scopes": client.data.scopes,
                        }),
                    )?;
                    Ok::<_, AdminError>(client)
                })?;
                Ok(client)
            })
            .await?;
        self.announce(DomainEvent::ClientChanged {
            tenant,
            client_id: client.data.client_id.clone(),
        });
        Ok(CreatedClient { client, secret })
    }

    /// The tenant's clients, by client_id.
    pub async fn clients(&self, tenant: &str) -> AdminResult<Vec<Client>> {
        self.read_all(tenant, clients::list).await
    }

    /// One client.
    pub async fn client(&self, tenant: &str, client_id: &str) -> AdminResult<Client> {
        let tenant = self.tenant(tenant).await?.id;
        self.named("client", tenant, client_id, clients::get_by_client_id)
            .await
    }

    /// Gives a client a new secret, returned this once (only its hash is kept). The
    /// old secret stops working at once, on every node once it hears. Only for
    /// clients that authenticate with a secret.
    pub async fn rotate_client_secret(
        &self,
        operator: &Operator,
        tenant: &str,
        client_id: &str,
    ) -> AdminResult<Zeroizing<String>> {
        let client = self.client(tenant, client_id).await?;
        if !uses_secret(&client.data) {
            return Err(AdminError::Invalid {
                field: "client_id",
                message: format!(
                    "`{client_id}` authenticates with {}, not a secret",
                    client.data.auth_method
                ),
            });
        }
        let secret = client_auth::generate_secret();
        let hash = client_auth::secret_hash(&secret);
        let (admin, actor, now) = (self.clone(), operator.actor(), self.now());
        let tenant_id = client.tenant_id;
        self.blocking(move |conn| {
            gatehouse_identity_store::db::transaction_with(conn, |conn| {
                let data = ClientData {
                    secret_hash: Some(hash),
                    ..client.data.clone()
                };
                clients::update(
                    conn,
                    now,
                    tenant_id,
                    &client.data.client_id,
                    client.version,
                    data,
                )?;
                admin.audit(
                    conn,
                    tenant_id,
                    actor,
                    "client.secret_rotated",
                    format!("client:{}", client.data.client_id),
                    json!({}),
                )?;
                Ok(())
            })
        })
        .await?;
        self.announce(DomainEvent::ClientChanged {
            tenant: tenant_id,
            client_id: client_id.to_owned(),
        });
        Ok(secret)
    }

    /// Deletes a client: its tokens stop verifying on every node once they hear.
    pub async fn delete_client(
        &self,
        operator: &Operator,
        tenant: &str,
        client_id: &str,
    ) -> AdminResult<()> {
        let tenant = self.tenant(tenant).await?.id;
        let (admin, actor, id) = (self.clone(), operator.actor(), client_id.to_owned());
        self.blocking(move |conn| {
            gatehouse_identity_store::db::transaction_with(conn, |conn| {
                clients::delete(conn, tenant, &id).map_err(|e| match e {
                    gatehouse_identity_store::StoreError::NotFound { .. } => {
                        AdminError::NotFound(format!("no client `{id}`"))
                    }
                    other => other.into(),
                })?;
                admin.audit(
                    conn,
                    tenant,
                    actor,
                    "client.deleted",
                    format!("client:{id}"),
                    json!({}),
                )?;
                Ok(())
            })
        })
        .await?;
        self.announce(DomainEvent::ClientChanged {
            tenant,
            client_id: client_id.to_owned(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn new_client() -> NewClient {
        NewClient::web_app("Shop", "shop", "https://shop.example/cb")
    }

    fn refused(change: impl FnOnce(&mut NewClient)) -> (&'static str, String) {
        let mut new = new_client();
        change(&mut new);
        match client_data(new) {
            Err(AdminError::Invalid { field, message }) => (field, message),
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn registration_rules_name_the_field_at_fault() {
        let (data, alg) = client_data(new_client()).unwrap();
        assert_eq!(data.auth_method, "client_secret_basic");
        assert_eq!(alg, Algorithm::ES256);
        assert!(uses_secret(&data));

        assert_eq!(
            refused(|c| c.redirect_uris = vec!["http://127.0.0.1:1@evil.example/cb".into()]).0,
            "redirect_uri"
        );
        assert_eq!(
            refused(|c| c.backchannel_logout_uri = Some("http://rp.example/logout".into())).0,
            "backchannel_logout_uri"
        );
        assert_eq!(refused(|c| c.grants = vec!["password".into()]).0, "grant");
        assert_eq!(
            refused(|c| {
                c.kind = ClientKind::Public;
                c.grants = vec!["client_credentials".into()];
            })
            .0,
            "grant"
        );
        assert_eq!(
            refused(|c| {
                c.kind = ClientKind::Public;
                c.auth_method = Some(AuthMethod::ClientSecretPost);
            })
            .0,
            "auth_method"
        );
        assert_eq!(
            refused(|c| c.auth_method = Some(AuthMethod::PrivateKeyJwt)).0,
            "jwks"
        );
        assert_eq!(refused(|c| c.jwks = Some("{}".into())).0, "jwks");
        let (field, message) = refused(|c| c.id_token_alg = "HS256".into());
        assert_eq!(field, "id_token_alg");
        assert!(message.contains("unknown ID token algorithm"), "{message}");
    }

    #[test]
    fn public_clients_get_no_secret() {
        let mut new = new_client();
        new.kind = ClientKind::Public;
        let (data, _) = client_data(new).unwrap();
        assert_eq!(data.auth_method, "none");
        assert!(!uses_secret(&data));
    }

    #[test]
    fn web_origins_are_checked_normalised_and_deduplicated() {
        let mut new = new_client();
        new.allowed_origins = vec![
            "https://SPA.example/".into(),
            "https://spa.example".into(),
            "http://localhost:5173".into(),
        ];
        let (data, _) = client_data(new).unwrap();
        assert_eq!(
            data.allowed_origins,
            ["http://localhost:5173", "https://spa.example"]
        );
        let (field, message) =
            refused(|c| c.allowed_origins = vec!["https://spa.example/app".into()]);
        assert_eq!(field, "cors_origin");
        assert!(message.contains("no path"), "{message}");
    }

    #[test]
    fn only_confidential_clients_may_go_without_pkce() {
        let mut legacy = new_client();
        legacy.require_pkce = false;
        assert!(!client_data(legacy).unwrap().0.require_pkce);
        let (field, _) = refused(|c| {
            c.kind = ClientKind::Public;
            c.require_pkce = false;
        });
        assert_eq!(field, "require_pkce");
    }
}
