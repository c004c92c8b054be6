//! The tenant's federation connections (partners' identity providers) and users'
//! linked identities: list, show, create, change at the version read, delete, try
//! the mapping rules; a user's identities, and removing one. The client secret is
//! written, never read back.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use gatehouse_admin::{ConnectionEdit, ConnectionView, IdpMetadata, NewConnection};
use gatehouse_authn::federation::LinkedIdentity;
use gatehouse_authn::federation::mapping::MappedProfile;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::views::Items;
use super::{
    Caller, body, changed_at_version, created, if_match, no_content, ok, respond, segment, tagged,
    user_id,
};

/// A partner's identity provider.
#[derive(Serialize, ToSchema)]
pub(super) struct ConnectionDetail {
    /// Part of the connection's URLs (`/federation/{slug}/callback`, or for SAML
    /// `/federation/{slug}/saml/metadata`, the SP's entityID, and `…/saml/acs`);
    /// never changes.
    slug: String,
    /// `oidc` or `saml`.
    kind: String,
    /// The name on the sign-in button.
    display_name: String,
    logo_url: Option<String>,
    enabled: bool,
    /// A partner user without an account gets one at their first sign-in.
    jit_provisioning: bool,
    /// New accounts take the partner's `email_verified`.
    trust_verified_email: bool,
    /// OIDC: `issuer`, `client_id`, `client_auth`, `scopes`, `userinfo`,
    /// `acr_levels`, `logout`. SAML: `idp_entity_id`, `sso_url`,
    /// `idp_certificates`, `clock_skew_seconds`, `subject_attribute`,
    /// `authn_context_levels`.
    #[schema(value_type = Object)]
    settings: Value,
    /// The mapping rules (`{"rules": [...]}`).
    #[schema(value_type = Object)]
    mapping: Value,
    /// Email domains whose users sign in with this provider.
    domains: Vec<String>,
    /// A client secret (OIDC) or the SP key (SAML) is stored; never shown.
    secret_set: bool,
    /// What last went wrong at a sign-in (a mapping rule that failed).
    last_error: Option<String>,
    last_error_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl From<&ConnectionView> for ConnectionDetail {
    fn from(view: &ConnectionView) -> Self {
        let c = &view.connection;
        ConnectionDetail {
            slug: c.slug.clone(),
            kind: c.kind.clone(),
            display_name: c.display_name.clone(),
            logo_url: c.logo_url.clone(),
            enabled: c.enabled,
            jit_provisioning: c.jit_provisioning,
            trust_verified_email: c.trust_verified_email,
            settings: c.settings.clone(),
            mapping: c.mapping.clone(),
            domains: view.domains.clone(),
            secret_set: c.has_secrets,
            last_error: c.last_error.clone(),
            last_error_at: c.last_error_at,
            created_at: c.created_at,
            updated_at: c.updated_at,
            version: c.version,
        }
    }
}

fn tagged_view(view: &ConnectionView) -> HttpResponse {
    tagged(ConnectionDetail::from(view), view.connection.version)
}

/// Every connection of the tenant.
#[utoipa::path(get, path = "/connections", tag = "connections",
    responses((status = 200, description = "The tenant's connections (never a secret)", body = Items<ConnectionDetail>)))]
pub(super) async fn list_connections(caller: Caller) -> HttpResponse {
    respond(caller.admin().connections(caller.slug()).await, |all| {
        ok(Items {
            items: all.iter().map(ConnectionDetail::from).collect(),
        })
    })
}

/// One connection.
#[utoipa::path(get, path = "/connections/{slug}", tag = "connections",
    params(("slug" = String, Path)),
    responses((status = 200, description = "The connection", body = ConnectionDetail,
        headers(("ETag" = String, description = "Its version, for If-Match")))))]
pub(super) async fn show_connection(caller: Caller, req: HttpRequest) -> HttpResponse {
    let slug = segment(&req, "slug");
    respond(
        caller.admin().connection(caller.slug(), &slug).await,
        |view| tagged_view(&view),
    )
}

fn yes() -> bool {
    true
}

fn oidc() -> String {
    "oidc".into()
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewConnectionBody {
    /// Lower-case letters, digits and inner hyphens, at most 40.
    slug: String,
    display_name: String,
    /// An `https:` or `data:image/` URL.
    #[serde(default)]
    logo_url: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    jit_provisioning: bool,
    #[serde(default)]
    trust_verified_email: bool,
    /// `oidc` (the default) or `saml`.
    #[serde(default = "oidc")]
    kind: String,
    /// OIDC: `{"issuer", "client_id", "client_auth"?, "scopes"?, "userinfo"?,
    /// "acr_levels"?}`. SAML: what `idp_metadata` does not say, or overrides
    /// (`subject_attribute`, `authn_context_levels`, `clock_skew_seconds`, …).
    #[serde(default)]
    #[schema(value_type = Object)]
    settings: Value,
    /// SAML: the identity provider's metadata document (XML).
    #[serde(default)]
    idp_metadata: Option<String>,
    /// SAML: where to fetch the identity provider's metadata (once, now).
    #[serde(default)]
    idp_metadata_url: Option<String>,
    /// Default: the standard claims (SAML: `mail`, `givenName`, `sn`,
    /// `displayName`) onto the user's name and email.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    mapping: Option<Value>,
    /// OIDC only; stored sealed, never shown again. A SAML connection gets its
    /// own SP key instead.
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    domains: Vec<String>,
}

/// Adds an upstream OpenID provider or SAML identity provider. Its settings and
/// mapping rules are checked before they are saved (a problem names the field at
/// fault).
#[utoipa::path(post, path = "/connections", tag = "connections",
    request_body = NewConnectionBody,
    responses((status = 201, description = "Added", body = ConnectionDetail),
        (status = 409, description = "The slug, or one of the domains, is taken",
            body = super::views::Problem, content_type = "application/problem+json")))]
pub(super) async fn create_connection(
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let new: NewConnectionBody = body(&bytes)?;
    let idp_metadata = match (new.idp_metadata, new.idp_metadata_url) {
        (Some(_), Some(_)) => {
            return Ok(super::invalid_field(
                "idp_metadata",
                "give the metadata or its URL, not both",
            ));
        }
        (Some(xml), None) => Some(IdpMetadata::Xml(xml)),
        (None, Some(url)) => Some(IdpMetadata::Url(url)),
        (None, None) => None,
    };
    let new = NewConnection {
        slug: new.slug,
        display_name: new.display_name,
        logo_url: new.logo_url,
        enabled: new.enabled,
        jit_provisioning: new.jit_provisioning,
        trust_verified_email: new.trust_verified_email,
        kind: new.kind,
        settings: new.settings,
        idp_metadata,
        mapping: new.mapping,
        client_secret: new.client_secret,
        domains: new.domains,
    };
    let made = caller
        .admin()
        .create_connection(&caller.operator, caller.slug(), new)
        .await;
    Ok(respond(made, |view| created(ConnectionDetail::from(&view))))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnectionPatch {
    display_name: Option<String>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "super::present")]
    logo_url: Option<Option<String>>,
    enabled: Option<bool>,
    jit_provisioning: Option<bool>,
    trust_verified_email: Option<bool>,
    #[schema(value_type = Option<Object>)]
    settings: Option<Value>,
    #[schema(value_type = Option<Object>)]
    mapping: Option<Value>,
    /// A new client secret.
    client_secret: Option<String>,
    /// Replaces the routed domains.
    domains: Option<Vec<String>>,
}

/// Changes the connection at the version read (`If-Match` with the `ETag` of a
/// GET): without it 428, for a version that is no longer current 412.
#[utoipa::path(patch, path = "/connections/{slug}", tag = "connections",
    params(("slug" = String, Path), ("If-Match" = String, Header, description = "The ETag read")),
    request_body(content(
        (ConnectionPatch = "application/merge-patch+json"), (ConnectionPatch = "application/json"))),
    responses((status = 200, description = "Changed", body = ConnectionDetail, headers(("ETag" = String))),
        (status = 412, description = "The connection changed since it was read",
            body = super::views::Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing",
            body = super::views::Problem, content_type = "application/problem+json")))]
pub(super) async fn update_connection(
    caller: Caller,
    req: HttpRequest,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let slug = segment(&req, "slug");
    let version = if_match(&req, "connection")?;
    let patch: ConnectionPatch = body(&bytes)?;
    let edit = ConnectionEdit {
        display_name: patch.display_name,
        logo_url: patch.logo_url,
        enabled: patch.enabled,
        jit_provisioning: patch.jit_provisioning,
        trust_verified_email: patch.trust_verified_email,
        settings: patch.settings,
        mapping: patch.mapping,
        client_secret: patch.client_secret,
        domains: patch.domains,
        expected_version: version,
    };
    let updated = caller
        .admin()
        .update_connection(&caller.operator, caller.slug(), &slug, edit)
        .await;
    Ok(changed_at_version(updated, "connection", |view| {
        tagged_view(&view)
    }))
}

/// Deletes the connection with its routed domains and every identity linked
/// through it (the users stay).
#[utoipa::path(delete, path = "/connections/{slug}", tag = "connections",
    params(("slug" = String, Path), super::ReasonHeader),
    responses((status = 204, description = "Deleted")))]
pub(super) async fn delete_connection(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let slug = segment(&req, "slug");
    let reason = super::reason(&req)?;
    let deleted = caller
        .admin()
        .delete_connection(&caller.operator, caller.slug(), &slug, Some(reason))
        .await;
    Ok(respond(deleted, |()| no_content()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SampleClaims {
    /// Claims as a partner would send them.
    #[schema(value_type = Object)]
    claims: Value,
}

/// What the rules make of the claims.
#[derive(Serialize, ToSchema)]
pub(super) struct MappedView {
    email: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    display_name: Option<String>,
    #[schema(value_type = Object)]
    custom: std::collections::BTreeMap<String, Vec<String>>,
    groups: Vec<String>,
}

impl From<MappedProfile> for MappedView {
    fn from(profile: MappedProfile) -> Self {
        MappedView {
            email: profile.email,
            given_name: profile.given_name,
            family_name: profile.family_name,
            display_name: profile.display_name,
            custom: profile.custom,
            groups: profile.groups.into_iter().collect(),
        }
    }
}

/// Applies the connection's mapping rules to sample claims, without a sign-in: a
/// rule that cannot apply is a problem naming it.
#[utoipa::path(post, path = "/connections/{slug}/mapping/test", tag = "connections",
    params(("slug" = String, Path)),
    request_body = SampleClaims,
    responses((status = 200, description = "What the rules make of the claims", body = MappedView)))]
pub(super) async fn test_mapping(
    caller: Caller,
    req: HttpRequest,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let slug = segment(&req, "slug");
    let sample: SampleClaims = body(&bytes)?;
    let mapped = caller
        .admin()
        .test_mapping(caller.slug(), &slug, sample.claims)
        .await;
    Ok(respond(mapped, |profile| ok(MappedView::from(profile))))
}

/// A partner identity linked to a user.
#[derive(Serialize, ToSchema)]
pub(super) struct IdentityView {
    id: String,
    /// The connection's slug.
    connection: String,
    display_name: String,
    /// The partner's subject identifier.
    subject: String,
    created_at: DateTime<Utc>,
    last_sign_in_at: Option<DateTime<Utc>>,
}

impl From<&LinkedIdentity> for IdentityView {
    fn from(identity: &LinkedIdentity) -> Self {
        IdentityView {
            id: identity.id.to_string(),
            connection: identity.connection.clone(),
            display_name: identity.display_name.clone(),
            subject: identity.subject.clone(),
            created_at: identity.created_at,
            last_sign_in_at: identity.last_sign_in_at,
        }
    }
}

/// The partner identities linked to the user.
#[utoipa::path(get, path = "/users/{id}/identities", tag = "users",
    params(("id" = String, Path)),
    responses((status = 200, description = "The user's linked identities", body = Items<IdentityView>)))]
pub(super) async fn list_identities(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let user = user_id(&req)?;
    let found = caller.admin().user_identities(caller.slug(), user).await;
    Ok(respond(found, |all| {
        ok(Items {
            items: all.iter().map(IdentityView::from).collect(),
        })
    }))
}

/// Removes one of the user's linked identities: that partner account no longer
/// signs in here.
#[utoipa::path(delete, path = "/users/{id}/identities/{identity}", tag = "users",
    params(("id" = String, Path), ("identity" = String, Path), super::ReasonHeader),
    responses((status = 204, description = "Removed")))]
pub(super) async fn remove_identity(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let user = user_id(&req)?;
    let reason = super::reason(&req)?;
    let Ok(identity) = segment(&req, "identity").parse() else {
        return Ok(crate::api::problem::problem(
            actix_web::http::StatusCode::NOT_FOUND,
            "not_found",
            "no such identity",
        ));
    };
    let removed = caller
        .admin()
        .remove_user_identity(
            &caller.operator,
            caller.slug(),
            user,
            identity,
            Some(reason),
        )
        .await;
    Ok(respond(removed, |()| no_content()))
}
