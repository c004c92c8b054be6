//! The tenant's users: page, show, create, update, disable, enable, reset,
//! sessions, export, delete, consents (read and withdraw).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_admin::{NewAccount, UserChange};
use gatehouse_identity_store::PageRequest;
use gatehouse_identity_store::users::User;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::views::{
    CreatedUser, DisabledView, EnabledView, Items, ResetView, SessionView, SessionsEnded,
    UserConsentsView, UserPage, UserView,
};
use crate::api::problem::invalid_field;
use crate::http::answer::answered;

use super::{
    Caller, PATH, body, changed_at_version, created, if_match, no_content, ok, ok_as, query,
    reason, respond, segment, tagged, user_id, with_header,
};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// How many users at most (1–500).
    #[serde(default = "default_limit")]
    #[param(default = 100, minimum = 1, maximum = 500)]
    limit: u32,
    /// The `next_cursor` of the page before.
    after: Option<String>,
    /// Only the users this SCIM filter (RFC 7644 §3.4.2.2) matches, such as
    /// `emails.value co "@example.com" and not (active eq false)`: the same grammar
    /// and attributes as `GET /scim/v2/Users?filter=`.
    filter: Option<String>,
}

pub(super) fn default_limit() -> u32 {
    100
}

/// One page of the tenant's users, oldest first; `next_cursor` continues.
#[utoipa::path(get, path = "/users", tag = "users", params(PageQuery),
    responses((status = 200, description = "One page of users", body = UserPage)))]
pub(super) async fn list_users(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let asked: PageQuery = query(&req)?;
    let page = PageRequest {
        after: asked.after,
        limit: asked.limit,
    };
    let found = match asked.filter.as_deref() {
        None => caller.admin().users(caller.slug(), page).await,
        Some(text) => {
            let filter = gatehouse_scim::parse_filter(text)
                .and_then(|parsed| crate::api::scim::filter::users(&parsed, false))
                .map_err(|e| answered(invalid_field("filter", &e.detail)))?;
            caller
                .admin()
                .users_matching(caller.slug(), filter, page)
                .await
        }
    };
    Ok(respond(found, |page| {
        ok(UserPage {
            items: page.items.iter().map(UserView::from).collect(),
            next_cursor: page.next_cursor,
        })
    }))
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    email: String,
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
    /// The caller vouches for the address; otherwise sign-in asks to verify it.
    #[serde(default)]
    verified: bool,
    /// Mail the user a link to choose their password; using it proves the address.
    #[serde(default = "yes")]
    #[schema(default = true)]
    invite: bool,
}

/// Creates a user.
///
/// The account has no password; by default the user is invited by mail to choose
/// one (`invitation_sent` says whether the mail went out).
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    responses((status = 201, description = "Created", body = CreatedUser,
        headers(("Location" = String, description = "The new user's URL"))),
        (status = 409, description = "The address is taken", body = super::views::Problem,
            content_type = "application/problem+json")))]
pub(super) async fn create_user(
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let new: NewUser = body(&bytes)?;
    let account = NewAccount {
        email: new.email,
        given_name: new.given_name,
        family_name: new.family_name,
        password: None,
        verified: new.verified,
        invite: None,
    };
    let made = caller
        .admin()
        .create_user(&caller.operator, caller.slug(), account, new.invite)
        .await;
    Ok(respond(made, |(user, invitation_sent)| {
        let location = format!("{}{PATH}/users/{}", caller.tenant.issuer(), user.id);
        with_header(
            created(CreatedUser {
                user: UserView::from(&user),
                invitation_sent,
            }),
            header::LOCATION,
            &location,
        )
    }))
}

/// The user, with its version as the `ETag`.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = String, Path)),
    responses((status = 200, description = "The user", body = UserView, headers(("ETag" = String)))))]
pub(super) async fn show_user(caller: Caller, req: HttpRequest) -> actix_web::Result<HttpResponse> {
    let id = user_id(&req)?;
    Ok(respond(
        caller.admin().user(caller.slug(), id).await,
        |(_, user)| tagged_user(&user),
    ))
}

/// The user as JSON with its version as the entity tag.
fn tagged_user(user: &User) -> HttpResponse {
    tagged(UserView::from(user), user.version)
}

/// Profile members to change; a member that is `null` is cleared, one that is
/// absent is kept.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UserPatch {
    #[serde(default, deserialize_with = "super::present")]
    given_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::present")]
    family_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::present")]
    locale: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::present")]
    timezone: Option<Option<String>>,
}

/// Changes the user's profile.
///
/// RFC 7396 merge-patch semantics for these members. The request must say which
/// version it read (`If-Match` with the `ETag` of a GET): without it 428, for a
/// version that is no longer current 412 — a concurrent change is never
/// overwritten.
#[utoipa::path(patch, path = "/users/{id}", tag = "users",
    params(("id" = String, Path), ("If-Match" = String, Header, description = "The ETag read")),
    request_body(content(
        (UserPatch = "application/merge-patch+json"), (UserPatch = "application/json"))),
    responses((status = 200, description = "Changed", body = UserView, headers(("ETag" = String))),
        (status = 412, description = "The user changed since it was read",
            body = super::views::Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match is missing",
            body = super::views::Problem, content_type = "application/problem+json")))]
pub(super) async fn update_user(
    caller: Caller,
    req: HttpRequest,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let id = user_id(&req)?;
    let version = if_match(&req, "user")?;
    let patch: UserPatch = body(&bytes)?;
    let change = UserChange {
        given_name: patch.given_name,
        family_name: patch.family_name,
        locale: patch.locale,
        timezone: patch.timezone,
    };
    let updated = caller
        .admin()
        .update_user(&caller.operator, caller.slug(), id, version, change)
        .await;
    Ok(changed_at_version(updated, "user", |user| {
        tagged_user(&user)
    }))
}

/// Disables the user.
///
/// Every session and grant ends at once; relying parties are told (back-channel
/// logout).
#[utoipa::path(post, path = "/users/{id}/disable", tag = "users",
    params(("id" = String, Path), super::ReasonHeader),
    responses((status = 200, description = "What ended", body = DisabledView)))]
pub(super) async fn disable_user(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, why) = (user_id(&req)?, reason(&req)?);
    let done = caller
        .admin()
        .disable_user(&caller.operator, caller.slug(), id, &why)
        .await;
    Ok(ok_as::<DisabledView, _>(done))
}

/// Lets a disabled user sign in again.
#[utoipa::path(post, path = "/users/{id}/enable", tag = "users",
    params(("id" = String, Path), super::ReasonHeader),
    responses((status = 200, description = "Enabled, or it already was", body = EnabledView)))]
pub(super) async fn enable_user(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, why) = (user_id(&req)?, reason(&req)?);
    let done = caller
        .admin()
        .enable_user(&caller.operator, caller.slug(), id, &why)
        .await;
    Ok(ok_as::<EnabledView, _>(done))
}

/// Resets the user's credentials.
///
/// The administrator-assisted recovery: the password and second factors go, every
/// session and grant ends, and the user is mailed a link to start again.
#[utoipa::path(post, path = "/users/{id}/reset", tag = "users",
    params(("id" = String, Path), super::ReasonHeader),
    responses((status = 200, description = "What the reset removed and ended", body = ResetView)))]
pub(super) async fn reset_user(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, why) = (user_id(&req)?, reason(&req)?);
    let done = caller
        .admin()
        .reset_user(&caller.operator, caller.slug(), id, &why)
        .await;
    Ok(ok_as::<ResetView, _>(done))
}

/// The user's live sessions.
#[utoipa::path(get, path = "/users/{id}/sessions", tag = "users", params(("id" = String, Path)),
    responses((status = 200, description = "The user's live sessions", body = Items<SessionView>)))]
pub(super) async fn list_sessions(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let id = user_id(&req)?;
    let sessions = caller.admin().user_sessions(caller.slug(), id).await;
    Ok(ok_as::<Items<SessionView>, _>(sessions))
}

/// Signs the user out everywhere (with a reason); relying parties are told.
#[utoipa::path(delete, path = "/users/{id}/sessions", tag = "users",
    params(("id" = String, Path), super::ReasonHeader),
    responses((status = 200, description = "What ended", body = SessionsEnded)))]
pub(super) async fn end_sessions(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, why) = (user_id(&req)?, reason(&req)?);
    let done = caller
        .admin()
        .end_user_sessions(&caller.operator, caller.slug(), id, &why)
        .await;
    Ok(ok_as::<SessionsEnded, _>(done))
}

/// Exports the user's data.
///
/// Everything held about the user as one JSON document (a data-subject access or
/// portability request); the export is audited.
#[utoipa::path(get, path = "/users/{id}/export", tag = "users", params(("id" = String, Path)),
    responses((status = 200, description = "The user's data", body = serde_json::Value,
        headers(("Content-Disposition" = String)))))]
pub(super) async fn export_user(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let id = user_id(&req)?;
    let document = caller
        .admin()
        .export_user(&caller.operator, caller.slug(), id)
        .await;
    Ok(respond(document, |document| {
        with_header(
            ok(document),
            header::CONTENT_DISPOSITION,
            &format!("attachment; filename=\"user-{id}.json\""),
        )
    }))
}

/// Deletes the user with what is theirs; the audit log keeps the deletion.
#[utoipa::path(delete, path = "/users/{id}", tag = "users",
    params(("id" = String, Path), super::ReasonHeader),
    responses((status = 204, description = "Deleted")))]
pub(super) async fn delete_user(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, why) = (user_id(&req)?, reason(&req)?);
    let done = caller
        .admin()
        .delete_user(&caller.operator, caller.slug(), id, &why)
        .await;
    Ok(respond(done, |_| no_content()))
}

/// The user's consents: in force now, and the whole history.
#[utoipa::path(get, path = "/users/{id}/consents", tag = "users", params(("id" = String, Path)),
    responses((status = 200, description = "The consents", body = UserConsentsView)))]
pub(super) async fn list_consents(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let id = user_id(&req)?;
    let consents = caller.admin().user_consents(caller.slug(), id).await;
    Ok(ok_as::<UserConsentsView, _>(consents))
}

/// What a withdrawal did.
#[derive(Serialize, ToSchema)]
pub(super) struct WithdrawalView {
    /// The purposes whose consent was in force and is now withdrawn.
    withdrawn: Vec<String>,
    /// The OAuth grants (and their tokens) revoked with them.
    grants_revoked: usize,
}

impl From<gatehouse_admin::ConsentWithdrawal> for WithdrawalView {
    fn from(done: gatehouse_admin::ConsentWithdrawal) -> Self {
        WithdrawalView {
            withdrawn: done.withdrawn,
            grants_revoked: done.grants_revoked,
        }
    }
}

/// Withdraws, on the user's behalf, every consent they gave the client: each
/// purpose is withdrawn, every grant they hold with it is revoked and the scopes
/// its consent page remembered are forgotten — in force at once on every node.
/// The reason is kept in the audit log.
#[utoipa::path(delete, path = "/users/{id}/consents/{client_id}", tag = "users",
    params(("id" = String, Path), ("client_id" = String, Path), super::ReasonHeader),
    responses((status = 200, description = "What was withdrawn", body = WithdrawalView)))]
pub(super) async fn withdraw_app(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    withdraw(caller, req, None).await
}

/// Withdraws, on the user's behalf, their consent to the client for one purpose;
/// the grants holding a scope the purpose covers are revoked at once on every node.
/// The reason is kept in the audit log.
#[utoipa::path(delete, path = "/users/{id}/consents/{client_id}/{purpose}", tag = "users",
    params(("id" = String, Path), ("client_id" = String, Path), ("purpose" = String, Path),
        super::ReasonHeader),
    responses((status = 200, description = "What was withdrawn", body = WithdrawalView)))]
pub(super) async fn withdraw_purpose(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let purpose = segment(&req, "purpose");
    withdraw(caller, req, Some(purpose)).await
}

async fn withdraw(
    caller: Caller,
    req: HttpRequest,
    purpose: Option<String>,
) -> actix_web::Result<HttpResponse> {
    let (id, why) = (user_id(&req)?, reason(&req)?);
    let client_id = segment(&req, "client_id");
    let done = caller
        .admin()
        .withdraw_consent(
            &caller.operator,
            caller.slug(),
            id,
            &client_id,
            purpose.as_deref(),
            &why,
        )
        .await;
    Ok(ok_as::<WithdrawalView, _>(done))
}

/// The user's audit trail: every event they did or that was done to them, oldest
/// first.
#[utoipa::path(get, path = "/users/{id}/audit", tag = "users", params(("id" = String, Path)),
    responses((status = 200, description = "The events", body = Items<super::views::AuditEvent>)))]
pub(super) async fn user_audit(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let id = user_id(&req)?;
    let events = caller.admin().user_audit(caller.slug(), id).await;
    Ok(respond(events, |events| {
        ok(Items::of(&events, gatehouse_admin::event_view))
    }))
}
