//! Operator actions on federation connections (partners' identity providers):
//! list, show, create, update at a version, delete; the mapping rules tried on
//! sample claims; a user's linked identities. Settings and rules are checked with
//! the authentication crate's own parsers before they are saved, so what is stored
//! is what a sign-in can use. The client secret is sealed at rest and never shown.
//! Every change is audited with what changed in the transaction that makes it.
//! Nodes read connections from the database at each sign-in (only a provider's
//! discovery document is cached, keyed by its issuer), so nothing is announced.

use gatehouse_authn::federation::mapping::{Claims, MappedProfile, Mapping};
use gatehouse_authn::federation::{
    ClientAuth, KIND_OIDC, KIND_SAML, LinkedIdentity, OidcSecrets, OidcSettings, SamlSecrets,
    SamlSettings, client_key, normalise_domain,
};
use gatehouse_core::ids::{FederatedIdentityId, TenantId, UserId};
use gatehouse_core::tenant_settings::AttributeKind;
use gatehouse_identity_store::federation_connections::{
    self as store, Connection, ConnectionData, SecretsChange,
};
use gatehouse_identity_store::page::PageRequest;
use gatehouse_identity_store::{
    StoreError, db, federated_identities, federated_sessions, sessions, tenants,
};
use serde_json::{Value, json};

use crate::{Admin, AdminError, AdminResult, Operator, Reason};

/// A connection as an operator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionView {
    pub connection: Connection,
    /// The email domains routed to it (home-realm discovery).
    pub domains: Vec<String>,
}

/// A connection to create.
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub slug: String,
    pub display_name: String,
    pub logo_url: Option<String>,
    pub enabled: bool,
    pub jit_provisioning: bool,
    pub trust_verified_email: bool,
    /// `oidc` or `saml`.
    pub kind: String,
    /// The provider's settings ([`OidcSettings`] or [`SamlSettings`] as JSON). For
    /// SAML, the fields given here win over what the IdP metadata says.
    pub settings: Value,
    /// SAML: the identity provider's metadata, as XML or where to fetch it.
    pub idp_metadata: Option<IdpMetadata>,
    /// The mapping rules; `None`: the standard claims onto the user's attributes.
    pub mapping: Option<Value>,
    /// OIDC only: the client secret.
    pub client_secret: Option<String>,
    pub domains: Vec<String>,
}

/// Where a SAML identity provider's metadata comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdpMetadata {
    Xml(String),
    /// Fetched once, now, through the outbound client.
    Url(String),
}

/// What an update changes; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct ConnectionEdit {
    pub display_name: Option<String>,
    pub logo_url: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub jit_provisioning: Option<bool>,
    pub trust_verified_email: Option<bool>,
    pub settings: Option<Value>,
    pub mapping: Option<Value>,
    pub client_secret: Option<String>,
    pub domains: Option<Vec<String>>,
    /// The version read: a connection changed meanwhile is not overwritten.
    pub expected_version: i64,
}

fn invalid(field: &'static str, message: impl Into<String>) -> AdminError {
    AdminError::Invalid {
        field,
        message: message.into(),
    }
}

fn check_settings(kind: &str, settings: &Value) -> AdminResult<()> {
    let checked = match kind {
        KIND_OIDC => OidcSettings::parse(settings).map(|_| ()),
        KIND_SAML => SamlSettings::parse(settings).map(|_| ()),
        _ => return Err(invalid("kind", "must be `oidc` or `saml`")),
    };
    checked.map_err(|e| invalid("settings", e))
}

/// SAML settings from the IdP's metadata, with what the operator gave on top.
fn overlay(from_metadata: SamlSettings, given: &Value) -> AdminResult<Value> {
    let mut merged =
        serde_json::to_value(from_metadata).map_err(|e| AdminError::Unavailable(e.to_string()))?;
    match (merged.as_object_mut(), given) {
        (Some(merged), Value::Object(given)) => {
            for (field, value) in given {
                merged.insert(field.clone(), value.clone());
            }
        }
        (_, Value::Null) => {}
        _ => return Err(invalid("settings", "must be an object")),
    }
    Ok(merged)
}

/// The rules parse, and every `custom:` target is a string attribute of the
/// tenant's user extension.
fn check_mapping(tenant: &tenants::Tenant, mapping: &Value) -> AdminResult<()> {
    let parsed = Mapping::from_json(mapping).map_err(|e| invalid("mapping", e.to_string()))?;
    let extension = tenant.typed_settings().user_extension;
    for (rule, name) in parsed.custom_targets() {
        let attribute = extension.as_ref().and_then(|ext| ext.attribute(name));
        match attribute {
            Some(attribute) if attribute.kind == AttributeKind::String => {}
            Some(_) => {
                return Err(invalid(
                    "mapping",
                    format!("mapping rule {rule}: custom:{name} is not a string attribute"),
                ));
            }
            None => {
                return Err(invalid(
                    "mapping",
                    format!(
                        "mapping rule {rule}: custom:{name} is not an attribute of the tenant's user extension"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_logo(logo: &Option<String>) -> AdminResult<()> {
    match logo {
        Some(url) if !(url.starts_with("https://") || url.starts_with("data:image/")) => Err(
            invalid("logo_url", "must be an https: URL or a data:image/ URL"),
        ),
        Some(url) if url.len() > 64 * 1024 => Err(invalid("logo_url", "is longer than 64 KiB")),
        _ => Ok(()),
    }
}

fn check_domains(domains: &[String]) -> AdminResult<Vec<String>> {
    let mut normalised = Vec::new();
    for domain in domains {
        let Some(domain) = normalise_domain(domain) else {
            return Err(invalid(
                "domains",
                format!("`{domain}` is not a domain name"),
            ));
        };
        if !normalised.contains(&domain) {
            normalised.push(domain);
        }
    }
    Ok(normalised)
}

fn secrets_json(client_secret: &str) -> AdminResult<String> {
    if client_secret.trim().is_empty() {
        return Err(invalid("client_secret", "must not be empty"));
    }
    serde_json::to_string(&OidcSecrets {
        client_secret: Some(client_secret.to_owned()),
        private_key: None,
    })
    .map_err(|e| AdminError::Unavailable(e.to_string()))
}

/// The secrets of an OIDC connection that authenticates with its own key: a new one.
fn key_secrets_json() -> AdminResult<String> {
    let key = client_key::generate().map_err(|e| AdminError::Unavailable(e.to_string()))?;
    serde_json::to_string(&OidcSecrets {
        client_secret: None,
        private_key: Some(key),
    })
    .map_err(|e| AdminError::Unavailable(e.to_string()))
}

/// Whether OIDC settings say `private_key_jwt`.
fn uses_key(settings: &Value) -> bool {
    OidcSettings::parse(settings)
        .is_ok_and(|parsed| parsed.client_auth == ClientAuth::PrivateKeyJwt)
}

fn store_failure(error: StoreError) -> AdminError {
    match error {
        StoreError::Conflict { field: "slug", .. } => {
            AdminError::Conflict("a connection with that slug exists already".into())
        }
        StoreError::Conflict {
            field: "domain", ..
        } => AdminError::Conflict(
            "one of the domains is routed to another connection already".into(),
        ),
        StoreError::Invalid { message, .. } => invalid("connection", message),
        StoreError::NotFound { .. } => AdminError::NotFound("no such connection".into()),
        other => other.into(),
    }
}

impl Admin {
    /// The IdP metadata document: as given, or fetched through the outbound
    /// client (its target rules, timeout and size cap; at most 1 MiB).
    async fn idp_metadata_xml(&self, source: &IdpMetadata) -> AdminResult<String> {
        let url = match source {
            IdpMetadata::Xml(xml) => return Ok(xml.clone()),
            IdpMetadata::Url(url) => url,
        };
        let fetch_failed = |e: &dyn std::fmt::Display| {
            invalid("idp_metadata", format!("could not fetch {url}: {e}"))
        };
        let response = self
            .outbound
            .request(gatehouse_outbound::reqwest::Method::GET, url)
            .map_err(|e| fetch_failed(&e))?
            .send()
            .await
            .map_err(|e| fetch_failed(&e))?;
        if !response.status().is_success() {
            return Err(fetch_failed(&response.status()));
        }
        let body = self
            .outbound
            .read_limited(response)
            .await
            .map_err(|e| fetch_failed(&e))?;
        if body.len() > gatehouse_authn::federation::saml::MAX_METADATA {
            return Err(invalid("idp_metadata", "the metadata is larger than 1 MiB"));
        }
        String::from_utf8(body).map_err(|_| invalid("idp_metadata", "the metadata is not UTF-8"))
    }

    /// Reads every SAML connection's IdP metadata again from its URL (the
    /// periodic refresh; also `gatehouse connections refresh`). A changed
    /// certificate set or endpoint is saved and audited
    /// (`connection.metadata_changed`, with the certificates' SHA-256
    /// fingerprints); a failure keeps the last good settings and becomes the
    /// connection's `last_error`. Returns how many connections changed.
    pub async fn refresh_saml_metadata(&self, only: Option<(&str, &str)>) -> AdminResult<usize> {
        let targets: Vec<(TenantId, Connection)> = match only {
            Some((tenant, slug)) => {
                let tenant = self.tenant(tenant).await?.id;
                vec![(tenant, self.connection_row(tenant, slug).await?)]
            }
            None => {
                self.blocking(|conn| {
                    let mut found = Vec::new();
                    let mut request = PageRequest::first(200);
                    loop {
                        let page = tenants::list(conn, &request)?;
                        for tenant in &page.items {
                            for connection in store::list(conn, tenant.id)? {
                                found.push((tenant.id, connection));
                            }
                        }
                        match page.next_cursor {
                            Some(cursor) => request = PageRequest::after(cursor, 200),
                            None => break,
                        }
                    }
                    Ok(found)
                })
                .await?
            }
        };
        let mut changed = 0;
        for (tenant, connection) in targets {
            if connection.kind != KIND_SAML {
                continue;
            }
            let Ok(settings) = SamlSettings::parse(&connection.settings) else {
                continue;
            };
            let Some(url) = settings.metadata_url.clone() else {
                continue;
            };
            let refreshed = match self.idp_metadata_xml(&IdpMetadata::Url(url)).await {
                Ok(xml) => settings
                    .refreshed(&xml)
                    .map_err(|e| invalid("idp_metadata", e)),
                Err(error) => Err(error),
            };
            let admin = self.clone();
            let outcome = self
                .blocking(move |conn| {
                    let now = admin.now();
                    let refreshed = match refreshed {
                        Ok(refreshed) => refreshed,
                        Err(error) => {
                            store::record_error(
                                conn,
                                now,
                                tenant,
                                connection.id,
                                Some(&format!("metadata refresh: {error}")),
                            )?;
                            return Ok(false);
                        }
                    };
                    let had_failed = connection
                        .last_error
                        .as_deref()
                        .is_some_and(|e| e.starts_with("metadata refresh:"));
                    if had_failed {
                        store::record_error(conn, now, tenant, connection.id, None)?;
                    }
                    if refreshed == settings {
                        return Ok(false);
                    }
                    let value = serde_json::to_value(&refreshed)
                        .map_err(|e| AdminError::Unavailable(e.to_string()))?;
                    db::transaction_with(conn, |conn| {
                        let data = ConnectionData {
                            display_name: connection.display_name.clone(),
                            logo_url: connection.logo_url.clone(),
                            enabled: connection.enabled,
                            jit_provisioning: connection.jit_provisioning,
                            trust_verified_email: connection.trust_verified_email,
                            settings: value,
                            mapping: connection.mapping.clone(),
                        };
                        store::update(
                            conn,
                            &admin.cipher,
                            now,
                            tenant,
                            connection.id,
                            connection.version,
                            data,
                            SecretsChange::Keep,
                        )
                        .map_err(store_failure)?;
                        admin.audit(
                            conn,
                            tenant,
                            "system:metadata-refresh".into(),
                            "connection.metadata_changed",
                            format!("connection:{}", connection.slug),
                            json!({
                                "certificates_before": settings.certificate_fingerprints(),
                                "certificates_after": refreshed.certificate_fingerprints(),
                                "sso_url": refreshed.sso_url,
                                "slo_url": refreshed.slo_url,
                            }),
                        )?;
                        Ok(true)
                    })
                })
                .await;
            match outcome {
                Ok(true) => changed += 1,
                Ok(false) => {}
                // Another node refreshed it (or an operator changed it) meanwhile.
                Err(AdminError::Store(StoreError::StaleVersion { .. })) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(changed)
    }

    async fn connection_row(&self, tenant: TenantId, slug: &str) -> AdminResult<Connection> {
        let slug = slug.to_owned();
        self.blocking(move |conn| {
            store::find_by_slug(conn, tenant, &slug)?
                .ok_or_else(|| AdminError::NotFound(format!("no connection `{slug}`")))
        })
        .await
    }

    /// The tenant's connections, by slug.
    pub async fn connections(&self, tenant: &str) -> AdminResult<Vec<ConnectionView>> {
        self.read(tenant, |conn, tenant| {
            store::list(conn, tenant)?
                .into_iter()
                .map(|connection| {
                    let domains = store::domains_of(conn, tenant, connection.id)?;
                    Ok(ConnectionView {
                        connection,
                        domains,
                    })
                })
                .collect()
        })
        .await
    }

    pub async fn connection(&self, tenant: &str, slug: &str) -> AdminResult<ConnectionView> {
        let tenant = self.tenant(tenant).await?.id;
        let connection = self.connection_row(tenant, slug).await?;
        let id = connection.id;
        let domains = self
            .blocking(move |conn| Ok(store::domains_of(conn, tenant, id)?))
            .await?;
        Ok(ConnectionView {
            connection,
            domains,
        })
    }

    /// Creates an upstream OpenID Connect connection.
    pub async fn create_connection(
        &self,
        operator: &Operator,
        tenant: &str,
        new: NewConnection,
    ) -> AdminResult<ConnectionView> {
        let tenant = self.tenant(tenant).await?;
        let mut new = new;
        let secrets = match new.kind.as_str() {
            KIND_OIDC => {
                if new.idp_metadata.is_some() {
                    return Err(invalid("idp_metadata", "is for SAML connections"));
                }
                match (uses_key(&new.settings), &new.client_secret) {
                    (true, None) => key_secrets_json()?,
                    (true, Some(_)) => {
                        return Err(invalid(
                            "client_secret",
                            "private_key_jwt uses the connection's own key, not a secret",
                        ));
                    }
                    (false, secret) => secrets_json(secret.as_deref().unwrap_or_default())?,
                }
            }
            KIND_SAML => {
                if new.client_secret.is_some() {
                    return Err(invalid("client_secret", "SAML connections have none"));
                }
                if let Some(source) = &new.idp_metadata {
                    let xml = self.idp_metadata_xml(source).await?;
                    let entity = new.settings.get("idp_entity_id").and_then(Value::as_str);
                    let mut read = SamlSettings::from_metadata(&xml, entity)
                        .map_err(|e| invalid("idp_metadata", e))?;
                    // Metadata fetched from a URL is read again from there.
                    if let IdpMetadata::Url(url) = source {
                        read.metadata_url = Some(url.clone());
                    }
                    new.settings = overlay(read, &new.settings)?;
                }
                let keys = SamlSecrets::generate(&format!("Gatehouse SP {}", new.slug))
                    .map_err(|e| AdminError::Unavailable(e.to_string()))?;
                serde_json::to_string(&keys).map_err(|e| AdminError::Unavailable(e.to_string()))?
            }
            _ => return Err(invalid("kind", "must be `oidc` or `saml`")),
        };
        check_settings(&new.kind, &new.settings)?;
        let mapping = new.mapping.clone().unwrap_or_else(|| {
            json!(if new.kind == KIND_SAML {
                Mapping::standard_saml()
            } else {
                Mapping::standard_oidc()
            })
        });
        check_mapping(&tenant, &mapping)?;
        check_logo(&new.logo_url)?;
        let domains = check_domains(&new.domains)?;
        let admin = self.clone();
        let actor = operator.actor();
        let tenant_id = tenant.id;
        self.blocking(move |conn| {
            db::transaction_with(conn, |conn| {
                let connection = store::create(
                    conn,
                    &admin.cipher,
                    admin.now(),
                    tenant_id,
                    &new.slug,
                    &new.kind,
                    ConnectionData {
                        display_name: new.display_name,
                        logo_url: new.logo_url,
                        enabled: new.enabled,
                        jit_provisioning: new.jit_provisioning,
                        trust_verified_email: new.trust_verified_email,
                        settings: new.settings,
                        mapping,
                    },
                    Some(&secrets),
                )
                .map_err(store_failure)?;
                store::set_domains(conn, tenant_id, connection.id, &domains)
                    .map_err(store_failure)?;
                admin.audit(
                    conn,
                    tenant_id,
                    actor,
                    "connection.created",
                    format!("connection:{}", connection.slug),
                    json!({
                        "kind": connection.kind,
                        "issuer": connection.settings.get("issuer")
                            .or_else(|| connection.settings.get("idp_entity_id")),
                        "enabled": connection.enabled,
                        "jit_provisioning": connection.jit_provisioning,
                        "trust_verified_email": connection.trust_verified_email,
                        "domains": domains,
                    }),
                )?;
                Ok(ConnectionView {
                    connection,
                    domains,
                })
            })
        })
        .await
    }

    /// Changes a connection at the version the operator read.
    pub async fn update_connection(
        &self,
        operator: &Operator,
        tenant: &str,
        slug: &str,
        edit: ConnectionEdit,
    ) -> AdminResult<ConnectionView> {
        let tenant = self.tenant(tenant).await?;
        let current = self.connection_row(tenant.id, slug).await?;
        let mut changed: Vec<&str> = Vec::new();
        let mut mark = |field: &'static str, differs: bool| {
            if differs {
                changed.push(field);
            }
        };
        if let Some(settings) = &edit.settings {
            check_settings(&current.kind, settings)?;
            mark("settings", *settings != current.settings);
        }
        if let Some(mapping) = &edit.mapping {
            check_mapping(&tenant, mapping)?;
            mark("mapping", *mapping != current.mapping);
        }
        if let Some(logo) = &edit.logo_url {
            check_logo(logo)?;
            mark("logo_url", *logo != current.logo_url);
        }
        let domains = edit.domains.as_deref().map(check_domains).transpose()?;
        if edit.client_secret.is_some() && current.kind != KIND_OIDC {
            return Err(invalid("client_secret", "SAML connections have none"));
        }
        let was_key = current.kind == KIND_OIDC && uses_key(&current.settings);
        let is_key = match &edit.settings {
            Some(settings) => current.kind == KIND_OIDC && uses_key(settings),
            None => was_key,
        };
        let secrets = match (is_key, was_key, edit.client_secret.as_deref()) {
            (true, _, Some(_)) => {
                return Err(invalid(
                    "client_secret",
                    "private_key_jwt uses the connection's own key, not a secret",
                ));
            }
            // Switched to private_key_jwt: the connection gets its key now.
            (true, false, None) => Some(key_secrets_json()?),
            (false, true, None) => {
                return Err(invalid(
                    "client_secret",
                    "leaving private_key_jwt needs a client secret in the same change",
                ));
            }
            (_, _, secret) => secret.map(secrets_json).transpose()?,
        };
        mark("client_secret", secrets.is_some());
        mark("domains", domains.is_some());
        let data = ConnectionData {
            display_name: edit
                .display_name
                .clone()
                .unwrap_or(current.display_name.clone()),
            logo_url: edit.logo_url.clone().unwrap_or(current.logo_url.clone()),
            enabled: edit.enabled.unwrap_or(current.enabled),
            jit_provisioning: edit.jit_provisioning.unwrap_or(current.jit_provisioning),
            trust_verified_email: edit
                .trust_verified_email
                .unwrap_or(current.trust_verified_email),
            settings: edit.settings.clone().unwrap_or(current.settings.clone()),
            mapping: edit.mapping.clone().unwrap_or(current.mapping.clone()),
        };
        mark("display_name", data.display_name != current.display_name);
        mark("enabled", data.enabled != current.enabled);
        mark(
            "jit_provisioning",
            data.jit_provisioning != current.jit_provisioning,
        );
        mark(
            "trust_verified_email",
            data.trust_verified_email != current.trust_verified_email,
        );
        let changed: Vec<String> = changed.into_iter().map(str::to_owned).collect();
        let admin = self.clone();
        let actor = operator.actor();
        let tenant_id = tenant.id;
        self.blocking(move |conn| {
            db::transaction_with(conn, |conn| {
                let secrets_change = match &secrets {
                    Some(json) => SecretsChange::Set(json),
                    None => SecretsChange::Keep,
                };
                let connection = store::update(
                    conn,
                    &admin.cipher,
                    admin.now(),
                    tenant_id,
                    current.id,
                    edit.expected_version,
                    data,
                    secrets_change,
                )
                .map_err(store_failure)?;
                if let Some(domains) = &domains {
                    store::set_domains(conn, tenant_id, connection.id, domains)
                        .map_err(store_failure)?;
                }
                admin.audit(
                    conn,
                    tenant_id,
                    actor,
                    "connection.updated",
                    format!("connection:{}", connection.slug),
                    json!({ "changed": changed }),
                )?;
                let domains = store::domains_of(conn, tenant_id, connection.id)?;
                Ok(ConnectionView {
                    connection,
                    domains,
                })
            })
        })
        .await
    }

    /// Deletes a connection with everything linked to it: its domains and every
    /// identity linked through it (the users stay), and ends the sessions it
    /// opened (a partner offboarded signs its users out), telling relying parties.
    /// Audited with the reason.
    pub async fn delete_connection(
        &self,
        operator: &Operator,
        tenant: &str,
        slug: &str,
        reason: Option<Reason>,
    ) -> AdminResult<()> {
        let tenant = self.tenant(tenant).await?.id;
        let current = self.connection_row(tenant, slug).await?;
        let admin = self.clone();
        let actor = operator.actor();
        let ended = self
            .blocking(move |conn| {
                db::transaction_with(conn, |conn| {
                    let now = admin.now();
                    let mut ended = Vec::new();
                    for (session, user) in
                        federated_sessions::open_by_connection(conn, tenant, current.id)?
                    {
                        if sessions::end(conn, now, tenant, session, None, "connection_deleted")? {
                            ended.push((user, session));
                        }
                    }
                    store::delete(conn, tenant, current.id).map_err(store_failure)?;
                    admin.audit(
                        conn,
                        tenant,
                        actor,
                        "connection.deleted",
                        format!("connection:{}", current.slug),
                        json!({
                            "reason": reason.as_ref().map(Reason::as_str),
                            "sessions_ended": ended.len(),
                        }),
                    )?;
                    Ok(ended)
                })
            })
            .await?;
        for (user, session) in ended {
            self.announce(gatehouse_core::events::DomainEvent::SessionsEnded {
                tenant,
                user,
                sessions: vec![session],
            });
            self.tell_sessions_ended(tenant, user, vec![session]).await;
        }
        Ok(())
    }

    /// What the connection's mapping rules make of `claims` (a JSON object), without
    /// signing anyone in: for trying rules before a partner's users do.
    pub async fn test_mapping(
        &self,
        tenant: &str,
        slug: &str,
        claims: Value,
    ) -> AdminResult<MappedProfile> {
        let tenant = self.tenant(tenant).await?.id;
        let connection = self.connection_row(tenant, slug).await?;
        let Value::Object(claims) = claims else {
            return Err(invalid("claims", "must be a JSON object"));
        };
        let mapping = Mapping::from_json(&connection.mapping)
            .map_err(|e| invalid("mapping", e.to_string()))?;
        mapping
            .apply(&Claims::from_json(&claims))
            .map_err(|e| invalid("claims", e.to_string()))
    }

    /// The user's linked identities.
    pub async fn user_identities(
        &self,
        tenant: &str,
        user: UserId,
    ) -> AdminResult<Vec<LinkedIdentity>> {
        let (tenant, user) = self.user(tenant, crate::UserKey::Id(user)).await?;
        let (tenant, user) = (tenant.id, user.id);
        self.blocking(move |conn| Ok(gatehouse_authn::federation::linked(conn, tenant, user)?))
            .await
    }

    /// Removes one of the user's linked identities (a helpdesk action: a partner
    /// account that must no longer get in). Audited with the reason.
    pub async fn remove_user_identity(
        &self,
        operator: &Operator,
        tenant: &str,
        user: UserId,
        identity: FederatedIdentityId,
        reason: Option<Reason>,
    ) -> AdminResult<()> {
        let (tenant, user) = self.user(tenant, crate::UserKey::Id(user)).await?;
        let (tenant, user) = (tenant.id, user.id);
        let admin = self.clone();
        let actor = operator.actor();
        self.blocking(move |conn| {
            db::transaction_with(conn, |conn| {
                let removed = federated_identities::unlink(conn, tenant, user, identity)?
                    .ok_or_else(|| AdminError::NotFound(format!("no identity `{identity}`")))?;
                admin.audit(
                    conn,
                    tenant,
                    actor,
                    "federation.unlinked",
                    format!("user:{user}"),
                    json!({
                        "connection": removed.connection_id.to_string(),
                        "reason": reason.as_ref().map(Reason::as_str),
                    }),
                )?;
                Ok(())
            })
        })
        .await?;
        self.announce(gatehouse_core::events::DomainEvent::UserChanged { tenant, user });
        Ok(())
    }
}
