//! What governs the tenant's tokens and decisions: its signing keys (list,
//! rotate), its Cedar policies (versions, validate and save, test a request), the
//! PDP's decision log, and the consent purposes.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use gatehouse_admin::{NewPurpose, PurposeEdit};
use gatehouse_identity_store::decision_log::Decision;
use gatehouse_identity_store::policy_sets::PolicySetVersion;
use gatehouse_identity_store::purposes::Purpose;
use gatehouse_identity_store::signing_keys::SigningKey;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::views::Items;
use super::{Caller, body, created, ok, ok_as, query, respond, segment};
use crate::api::problem::invalid_field;
use crate::http::answer::answered;

#[derive(Serialize, ToSchema)]
pub(super) struct KeyView {
    pub kid: String,
    /// `ES256`, `RS256` or `EdDSA`.
    pub alg: String,
    /// `next` (published, not yet signing), `active` or `retired`.
    pub state: String,
    /// The public key as published in the JWKS.
    pub public_jwk: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
    /// When a retired key leaves the JWKS.
    pub publish_until: Option<DateTime<Utc>>,
}

impl From<&SigningKey> for KeyView {
    fn from(key: &SigningKey) -> Self {
        KeyView {
            kid: key.kid.clone(),
            alg: key.alg.as_str().to_owned(),
            state: key.state.as_str().to_owned(),
            public_jwk: serde_json::from_str(&key.public_jwk).unwrap_or_default(),
            created_at: key.created_at,
            activated_at: key.activated_at,
            retired_at: key.retired_at,
            publish_until: key.publish_until,
        }
    }
}

/// The tenant's signing keys (public parts only).
#[utoipa::path(get, path = "/keys", tag = "keys",
    responses((status = 200, description = "The keys, newest first", body = Items<KeyView>)))]
pub(super) async fn list_keys(caller: Caller) -> HttpResponse {
    ok_as::<Items<KeyView>, _>(caller.admin().signing_keys(caller.slug()).await)
}

fn default_alg() -> String {
    "ES256".into()
}

fn default_lifetime() -> i64 {
    24 * 3600
}

/// The longest a retiring key stays published: a year covers any token lifetime.
const MAX_TOKEN_LIFETIME_SECS: i64 = 365 * 24 * 3600;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateKeys {
    /// `ES256`, `RS256` or `EdDSA`.
    #[serde(default = "default_alg")]
    #[schema(default = "ES256")]
    alg: String,
    /// How long tokens signed by the retiring key can live (seconds): it stays
    /// published that long.
    #[serde(default = "default_lifetime")]
    #[schema(default = 86400, minimum = 0, maximum = 31536000)]
    max_token_lifetime_secs: i64,
}

#[derive(Serialize, ToSchema)]
pub(super) struct RotationView {
    /// The key made by this rotation.
    pub kid: String,
    pub state: String,
    /// The key that now signs, when the rotation promoted one.
    pub activated: Option<String>,
    /// The key that stopped signing, when one did.
    pub retired: Option<String>,
    /// When the retired key leaves the JWKS.
    pub retired_published_until: Option<DateTime<Utc>>,
}

/// Rotates the tenant's keys of one algorithm.
///
/// The next key (published in advance) starts signing, a new next key is made, and
/// the retiring key stays published for the longest token lifetime.
#[utoipa::path(post, path = "/keys/rotate", tag = "keys", request_body = RotateKeys,
    responses((status = 200, description = "What the rotation did", body = RotationView)))]
pub(super) async fn rotate_keys(
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let asked: RotateKeys = body(&bytes)?;
    let lifetime = (0..=MAX_TOKEN_LIFETIME_SECS)
        .contains(&asked.max_token_lifetime_secs)
        .then(|| chrono::Duration::seconds(asked.max_token_lifetime_secs))
        .ok_or_else(|| {
            answered(invalid_field(
                "max_token_lifetime_secs",
                &format!("max_token_lifetime_secs must be between 0 and {MAX_TOKEN_LIFETIME_SECS}"),
            ))
        })?;
    let done = caller
        .admin()
        .rotate_keys(&caller.operator, caller.slug(), &asked.alg, lifetime)
        .await;
    Ok(respond(done, |rotation| {
        let (retired, until) = rotation.retired.unzip();
        ok(RotationView {
            kid: rotation.kid,
            state: rotation.state.as_str().to_owned(),
            activated: rotation.activated,
            retired,
            retired_published_until: until,
        })
    }))
}

#[derive(Serialize, ToSchema)]
pub(super) struct PolicyVersionView {
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// The policy text's length in bytes.
    pub size: usize,
}

impl From<&PolicySetVersion> for PolicyVersionView {
    fn from(set: &PolicySetVersion) -> Self {
        PolicyVersionView {
            version: set.version,
            created_at: set.created_at,
            created_by: set.created_by.clone(),
            size: set.size,
        }
    }
}

/// The versions of the tenant's policy set; the newest serves.
#[utoipa::path(get, path = "/policies", tag = "policies",
    responses((status = 200, description = "The versions, newest first", body = Items<PolicyVersionView>)))]
pub(super) async fn list_policy_versions(caller: Caller) -> HttpResponse {
    ok_as::<Items<PolicyVersionView>, _>(caller.admin().policy_versions(caller.slug()).await)
}

#[derive(Serialize, ToSchema)]
pub(super) struct SavedPolicies {
    /// The version now serving.
    pub version: i64,
}

/// Validates and saves a new version of the tenant's Cedar policies.
///
/// The text is checked against the schema before it is saved; a set that does not
/// validate is refused (400) and the serving set stays. Every node serves the new
/// version at once.
#[utoipa::path(put, path = "/policies", tag = "policies",
    request_body(content = String, content_type = "text/plain", description = "Cedar policies"),
    responses((status = 201, description = "Saved", body = SavedPolicies)))]
pub(super) async fn save_policies(
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| answered(invalid_field("body", "the policies must be UTF-8 text")))?;
    let saved = caller
        .admin()
        .save_policies(&caller.operator, caller.slug(), text)
        .await;
    Ok(respond(saved, |version| {
        caller.tenant_changed(caller.tenant.tenant.id);
        created(SavedPolicies { version })
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct TestAs {
    /// The client the request is evaluated for (its PEP).
    client: String,
}

/// Evaluates an AuthZEN evaluation request against the serving set, unlogged.
///
/// The answer is the decision, the policies that decided it and the set's version,
/// so a change can be tried before it matters.
#[utoipa::path(post, path = "/policies/test", tag = "policies", params(TestAs),
    request_body(content = serde_json::Value, description = "An AuthZEN evaluation request"),
    responses((status = 200, description = "The decision", body = serde_json::Value)))]
pub(super) async fn test_policies(
    caller: Caller,
    req: HttpRequest,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let test: TestAs = query(&req)?;
    let answer = caller
        .admin()
        .test_policies(caller.slug(), &test.client, &bytes)
        .await;
    Ok(respond(answer, ok))
}

#[derive(Serialize, ToSchema)]
pub(super) struct DecisionView {
    pub id: String,
    pub at: DateTime<Utc>,
    /// The evaluation request as the PEP sent it.
    pub request: serde_json::Value,
    pub decision: bool,
    /// The reason code the PDP answered with.
    pub reason: Option<String>,
    /// The policies that decided.
    pub policies: Vec<String>,
    pub request_id: Option<String>,
    /// Request members the PDP does not read.
    pub unknown_keys: Vec<String>,
    /// For a gap record: how many decisions were not logged.
    pub skipped: Option<i64>,
}

impl From<&Decision> for DecisionView {
    fn from(d: &Decision) -> Self {
        DecisionView {
            id: d.id.clone(),
            at: d.at,
            request: d.request.clone(),
            decision: d.decision,
            reason: d.reason.clone(),
            policies: d.policies.clone(),
            request_id: d.request_id.clone(),
            unknown_keys: d.unknown_keys.clone(),
            skipped: d.skipped,
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DecisionQuery {
    /// How many decisions at most (1–1000), newest first.
    #[serde(default = "super::users::default_limit")]
    #[param(default = 100, minimum = 1, maximum = 1000)]
    limit: u32,
}

/// The PDP's decision log, newest first.
#[utoipa::path(get, path = "/decisions", tag = "policies", params(DecisionQuery),
    responses((status = 200, description = "Decisions", body = Items<DecisionView>)))]
pub(super) async fn list_decisions(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let asked: DecisionQuery = query(&req)?;
    if !(1..=1000).contains(&asked.limit) {
        return Err(answered(invalid_field(
            "limit",
            "limit must be between 1 and 1000",
        )));
    }
    let decisions = caller
        .admin()
        .decisions(caller.slug(), i64::from(asked.limit))
        .await;
    Ok(ok_as::<Items<DecisionView>, _>(decisions))
}

#[derive(Serialize, ToSchema)]
pub(super) struct PurposeView {
    pub slug: String,
    /// Each change of wording is a new version; consent is to one version.
    pub version: i32,
    pub name: String,
    pub description: String,
    /// The scopes that need this purpose's consent.
    pub scopes: Vec<String>,
    pub legal_basis: String,
    pub created_at: DateTime<Utc>,
}

impl From<&Purpose> for PurposeView {
    fn from(p: &Purpose) -> Self {
        PurposeView {
            slug: p.slug.clone(),
            version: p.version,
            name: p.name.clone(),
            description: p.description.clone(),
            scopes: p.scopes.clone(),
            legal_basis: p.legal_basis.as_str().to_owned(),
            created_at: p.created_at,
        }
    }
}

impl From<Purpose> for PurposeView {
    fn from(p: Purpose) -> Self {
        PurposeView::from(&p)
    }
}

/// The tenant's consent purposes, each at its current version.
#[utoipa::path(get, path = "/purposes", tag = "purposes",
    responses((status = 200, description = "The purposes", body = Items<PurposeView>)))]
pub(super) async fn list_purposes(caller: Caller) -> HttpResponse {
    ok_as::<Items<PurposeView>, _>(caller.admin().purposes(caller.slug()).await)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewPurposeBody {
    slug: String,
    name: String,
    description: String,
    #[serde(default)]
    scopes: Vec<String>,
    /// `consent`, `contract`, `legal_obligation`, `vital_interests`,
    /// `public_task` or `legitimate_interest`.
    legal_basis: String,
}

/// Defines a purpose (version 1).
#[utoipa::path(post, path = "/purposes", tag = "purposes", request_body = NewPurposeBody,
    responses((status = 201, description = "Defined", body = PurposeView),
        (status = 409, description = "The slug is taken", body = super::views::Problem,
            content_type = "application/problem+json")))]
pub(super) async fn define_purpose(
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let new: NewPurposeBody = body(&bytes)?;
    let purpose = NewPurpose {
        slug: new.slug,
        name: new.name,
        description: new.description,
        scopes: new.scopes,
        legal_basis: new.legal_basis,
    };
    let made = caller
        .admin()
        .define_purpose(&caller.operator, caller.slug(), purpose)
        .await;
    Ok(respond(made, |purpose| {
        created(PurposeView::from(&purpose))
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PurposeChange {
    /// The version the change is made to; another is 409.
    version: i32,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// Replaces the scopes when not empty.
    #[serde(default)]
    scopes: Vec<String>,
}

/// Changes a purpose, making its next version.
///
/// Users who consented to an earlier version are asked again where the purpose is
/// needed.
#[utoipa::path(patch, path = "/purposes/{slug}", tag = "purposes",
    params(("slug" = String, Path)), request_body = PurposeChange,
    responses((status = 200, description = "The new version", body = PurposeView),
        (status = 409, description = "The purpose changed since that version",
            body = super::views::Problem, content_type = "application/problem+json")))]
pub(super) async fn update_purpose(
    caller: Caller,
    req: HttpRequest,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let slug = segment(&req, "slug");
    let change: PurposeChange = body(&bytes)?;
    let edit = PurposeEdit {
        name: change.name,
        description: change.description,
        scopes: change.scopes,
    };
    let done = caller
        .admin()
        .update_purpose(&caller.operator, caller.slug(), &slug, change.version, edit)
        .await;
    Ok(ok_as::<PurposeView, _>(done))
}
