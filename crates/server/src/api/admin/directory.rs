//! Roles and groups of the tenant, and who has them.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{Changed, GroupView, Items, RoleRemovedView, RoleView};
use super::{Caller, body, created, ok_as, respond, segment, user_id};

/// The tenant's roles.
#[utoipa::path(get, path = "/roles", tag = "roles and groups",
    responses((status = 200, description = "The tenant's roles", body = Items<RoleView>)))]
pub(super) async fn list_roles(caller: Caller) -> HttpResponse {
    ok_as::<Items<RoleView>, _>(caller.admin().roles(caller.slug()).await)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewRole {
    /// One word, unique in the tenant (case-insensitive).
    name: String,
    #[serde(default)]
    description: Option<String>,
}

/// Creates a role.
#[utoipa::path(post, path = "/roles", tag = "roles and groups", request_body = NewRole,
    responses((status = 201, description = "Created", body = RoleView)))]
pub(super) async fn create_role(
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let new: NewRole = body(&bytes)?;
    let made = caller
        .admin()
        .create_role(
            &caller.operator,
            caller.slug(),
            &new.name,
            new.description.as_deref(),
        )
        .await;
    Ok(respond(made, |role| created(RoleView::from(&role))))
}

/// Gives the user the role (idempotent: `changed` says whether it was new).
#[utoipa::path(put, path = "/users/{id}/roles/{role}", tag = "roles and groups",
    params(("id" = String, Path), ("role" = String, Path, description = "The role's name")),
    responses((status = 200, description = "Assigned, or it already was", body = Changed)))]
pub(super) async fn assign_role(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, role) = (user_id(&req)?, segment(&req, "role"));
    let done = caller
        .admin()
        .assign_role(&caller.operator, caller.slug(), id, &role)
        .await;
    Ok(ok_as::<Changed, _>(done))
}

/// Takes the role away.
///
/// Grants whose tokens carried it are revoked and their relying parties told.
#[utoipa::path(delete, path = "/users/{id}/roles/{role}", tag = "roles and groups",
    params(("id" = String, Path), ("role" = String, Path, description = "The role's name")),
    responses((status = 200, description = "Taken away, or the user did not have it", body = RoleRemovedView)))]
pub(super) async fn remove_role(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, role) = (user_id(&req)?, segment(&req, "role"));
    let done = caller
        .admin()
        .remove_role(&caller.operator, caller.slug(), id, &role)
        .await;
    Ok(ok_as::<RoleRemovedView, _>(done))
}

/// The tenant's groups.
#[utoipa::path(get, path = "/groups", tag = "roles and groups",
    responses((status = 200, description = "The tenant's groups", body = Items<GroupView>)))]
pub(super) async fn list_groups(caller: Caller) -> HttpResponse {
    ok_as::<Items<GroupView>, _>(caller.admin().groups(caller.slug()).await)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewGroup {
    display_name: String,
}

/// Creates a group.
#[utoipa::path(post, path = "/groups", tag = "roles and groups", request_body = NewGroup,
    responses((status = 201, description = "Created", body = GroupView)))]
pub(super) async fn create_group(
    caller: Caller,
    bytes: web::Bytes,
) -> actix_web::Result<HttpResponse> {
    let new: NewGroup = body(&bytes)?;
    let made = caller
        .admin()
        .create_group(&caller.operator, caller.slug(), &new.display_name)
        .await;
    Ok(respond(made, |group| created(GroupView::from(&group))))
}

/// Adds the user to the group (idempotent: `changed` says whether they were new).
#[utoipa::path(put, path = "/users/{id}/groups/{group}", tag = "roles and groups",
    params(("id" = String, Path), ("group" = String, Path, description = "The group's display name")),
    responses((status = 200, description = "A member, or already one", body = Changed)))]
pub(super) async fn add_to_group(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, group) = (user_id(&req)?, segment(&req, "group"));
    let done = caller
        .admin()
        .add_to_group(&caller.operator, caller.slug(), &group, id)
        .await;
    Ok(ok_as::<Changed, _>(done))
}

/// Takes the user out of the group.
#[utoipa::path(delete, path = "/users/{id}/groups/{group}", tag = "roles and groups",
    params(("id" = String, Path), ("group" = String, Path, description = "The group's display name")),
    responses((status = 200, description = "Not a member, or no longer one", body = Changed)))]
pub(super) async fn remove_from_group(
    caller: Caller,
    req: HttpRequest,
) -> actix_web::Result<HttpResponse> {
    let (id, group) = (user_id(&req)?, segment(&req, "group"));
    let done = caller
        .admin()
        .remove_from_group(&caller.operator, caller.slug(), &group, id)
        .await;
    Ok(ok_as::<Changed, _>(done))
}
