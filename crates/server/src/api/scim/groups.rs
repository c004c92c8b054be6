//! `/Groups`: Gatehouse's groups as SCIM Group resources (RFC 7643 §4.2) whose
//! members are users. A tenant has few groups next to users, so lists are filtered
//! and sorted in memory with the grammar crate's evaluator; members are read whole.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_admin::GroupWithMembers;
use std::collections::BTreeSet;

use gatehouse_core::ids::{GroupId, UserId};
use gatehouse_identity_store::groups::GroupData;
use gatehouse_scim::schema::CORE_GROUP_SCHEMA;
use gatehouse_scim::{PatchRequest, ScimError, apply_patch, parse_filter, scim_type};
use serde_json::{Map, Value, json};

use super::{ListRequest, ScimCaller, error, etag, failure, if_match, json_body, member, resource};

fn to_scim(found: &GroupWithMembers, base: &str) -> Value {
    let group = &found.group;
    let members: Vec<Value> = found
        .members
        .iter()
        .map(|id| {
            json!({
                "value": id.to_string(),
                "$ref": format!("{base}/Users/{id}"),
                "type": "User",
            })
        })
        .collect();
    let mut object = json!({
        "schemas": [CORE_GROUP_SCHEMA],
        "id": group.id.to_string(),
        "displayName": group.display_name,
        "members": members,
        "meta": {
            "resourceType": "Group",
            "created": group.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "lastModified": group.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "location": format!("{base}/Groups/{}", group.id),
            "version": etag(group.version),
        },
    });
    if let Some(external) = &group.external_id {
        object["externalId"] = json!(external);
    }
    object
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::invalid_value(detail)
}

/// A Group resource from a request: its data and members.
fn from_scim(object: &Map<String, Value>) -> Result<(GroupData, Vec<UserId>), ScimError> {
    let declared = member(object, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|schemas| {
            schemas.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(CORE_GROUP_SCHEMA))
            })
        });
    if !declared {
        return Err(invalid(format!("schemas must list {CORE_GROUP_SCHEMA}")));
    }
    if let Some(unknown) = object.keys().find(|key| {
        ![
            "schemas",
            "id",
            "meta",
            "externalId",
            "displayName",
            "members",
        ]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(key))
    }) {
        return Err(invalid(format!("a Group has no attribute `{unknown}`")));
    }
    let display_name = match member(object, "displayName") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.trim().to_owned(),
        _ => return Err(invalid("displayName is required")),
    };
    let external_id = match member(object, "externalId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => return Err(invalid("externalId must be a string")),
    };
    let members = match member(object, "members") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                let value = item
                    .as_object()
                    .and_then(|m| member(m, "value"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("each member needs a value"))?;
                if let Some(kind) = item
                    .as_object()
                    .and_then(|m| member(m, "type"))
                    .and_then(Value::as_str)
                    && !kind.eq_ignore_ascii_case("User")
                {
                    return Err(invalid("members are users"));
                }
                value
                    .parse::<UserId>()
                    .map_err(|_| invalid(format!("`{value}` is no user of this tenant")))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("members must be an array")),
    };
    Ok((
        GroupData {
            display_name,
            external_id,
        },
        members,
    ))
}

fn group_id(req: &HttpRequest) -> Result<GroupId, ScimError> {
    req.match_info()
        .get("id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| ScimError::new(404, None, "no such Group"))
}

fn one(caller: &ScimCaller, found: &GroupWithMembers, status: StatusCode) -> HttpResponse {
    let location = (status == StatusCode::CREATED)
        .then(|| format!("{}/Groups/{}", caller.base(), found.group.id));
    resource(
        status,
        to_scim(found, &caller.base()),
        Some(etag(found.group.version)),
        location.as_deref(),
    )
}

/// The groups `asked` finds: how many in all, and the page asked for (from
/// `start_index`, at most `count`) as resources.
pub(super) async fn find(
    caller: &ScimCaller,
    asked: &ListRequest,
    start_index: i64,
    count: i64,
) -> Result<(i64, Vec<Value>), HttpResponse> {
    let filter = asked
        .filter
        .as_deref()
        .map(parse_filter)
        .transpose()
        .map_err(|e| error(&e))?;
    let all = caller
        .admin()
        .groups_with_members(caller.slug())
        .await
        .map_err(|e| failure(&e))?;
    let base = caller.base();
    let mut matching: Vec<Value> = all
        .iter()
        .map(|g| to_scim(g, &base))
        .filter(|resource| filter.as_ref().is_none_or(|f| f.matches(resource)))
        .collect();
    if let Some(sort_by) = &asked.sort_by {
        let key = |resource: &Value| -> String {
            resource
                .as_object()
                .and_then(|o| member(o, sort_by))
                .and_then(Value::as_str)
                .map(str::to_lowercase)
                .unwrap_or_default()
        };
        matching.sort_by_key(key);
        if asked.descending {
            matching.reverse();
        }
    }
    let total = matching.len() as i64;
    let page = matching
        .into_iter()
        .skip(usize::try_from(start_index - 1).unwrap_or_default())
        .take(usize::try_from(count).unwrap_or_default())
        .collect();
    Ok((total, page))
}

async fn answer_list(caller: ScimCaller, asked: Result<ListRequest, ScimError>) -> HttpResponse {
    let asked = match asked {
        Ok(asked) => asked,
        Err(e) => return error(&e),
    };
    match find(&caller, &asked, asked.start_index, asked.count).await {
        Ok((total, page)) => asked.answer(total, page),
        Err(answer) => answer,
    }
}

/// `GET /Groups`.
pub(super) async fn list(caller: ScimCaller, req: HttpRequest) -> HttpResponse {
    answer_list(caller, ListRequest::from_query(&req)).await
}

/// `POST /Groups/.search`.
pub(super) async fn search(caller: ScimCaller, bytes: web::Bytes) -> HttpResponse {
    answer_list(caller, ListRequest::from_search(&bytes)).await
}

/// `GET /Groups/{id}`.
pub(super) async fn show(caller: ScimCaller, req: HttpRequest) -> HttpResponse {
    // A malformed query is refused as on Users, never read as "no projection".
    let (id, asked) = match group_id(&req).and_then(|id| Ok((id, ListRequest::from_query(&req)?))) {
        Ok(found) => found,
        Err(e) => return error(&e),
    };
    match caller.admin().group_by_id(caller.slug(), id).await {
        Ok(found) => {
            let body = super::project(
                to_scim(&found, &caller.base()),
                &asked.attributes,
                &asked.excluded,
            );
            resource(StatusCode::OK, body, Some(etag(found.group.version)), None)
        }
        Err(e) => failure(&e),
    }
}

/// `POST /Groups`.
pub(super) async fn create(
    caller: ScimCaller,
    req: HttpRequest,
    bytes: web::Bytes,
) -> HttpResponse {
    let (data, members) = match json_body(&bytes).and_then(|object| from_scim(&object)) {
        Ok(made) => made,
        Err(e) => return error(&e),
    };
    if let Err(refused) = caller
        .may_touch_any(&req, "groups.write", members.clone())
        .await
    {
        return refused;
    }
    match caller
        .admin()
        .provision_group(caller.operator(), caller.slug(), data, members)
        .await
    {
        Ok(found) => one(&caller, &found, StatusCode::CREATED),
        Err(e) => failure(&e),
    }
}

/// `PUT /Groups/{id}`.
pub(super) async fn replace(
    caller: ScimCaller,
    req: HttpRequest,
    bytes: web::Bytes,
) -> HttpResponse {
    let (id, version) = match group_id(&req).and_then(|id| Ok((id, if_match(&req)?))) {
        Ok(found) => found,
        Err(e) => return error(&e),
    };
    let (data, members) = match json_body(&bytes).and_then(|object| from_scim(&object)) {
        Ok(made) => made,
        Err(e) => return error(&e),
    };
    let current = match caller.admin().group_by_id(caller.slug(), id).await {
        Ok(found) => found,
        Err(e) => return failure(&e),
    };
    write(&caller, &req, &current, version, data, members).await
}

/// `PATCH /Groups/{id}`: typically members added and removed one by one.
pub(super) async fn patch(caller: ScimCaller, req: HttpRequest, bytes: web::Bytes) -> HttpResponse {
    let (id, version) = match group_id(&req).and_then(|id| Ok((id, if_match(&req)?))) {
        Ok(found) => found,
        Err(e) => return error(&e),
    };
    let request = match PatchRequest::from_slice(&bytes) {
        Ok(request) => request,
        Err(e) => return error(&e),
    };
    let current = match caller.admin().group_by_id(caller.slug(), id).await {
        Ok(found) => found,
        Err(e) => return failure(&e),
    };
    if version.is_some_and(|v| v != current.group.version) {
        return error(&ScimError::new(
            412,
            None,
            "the resource changed since the version in If-Match",
        ));
    }
    let mut patched = to_scim(&current, &caller.base());
    let outcome = match apply_patch(&mut patched, &request.operations) {
        Ok(outcome) => outcome,
        Err(e) => return error(&e),
    };
    if let Some(read_only) = outcome
        .touched
        .iter()
        .find(|path| path.urn.is_none() && ["id", "meta"].iter().any(|a| path.is_named(a)))
    {
        return error(&ScimError::new(
            400,
            Some(scim_type::MUTABILITY),
            format!("`{read_only}` is read-only"),
        ));
    }
    if !outcome.changed {
        return one(&caller, &current, StatusCode::OK);
    }
    let Value::Object(object) = patched else {
        return error(&ScimError::new(500, None, "the request failed"));
    };
    let (data, members) = match from_scim(&object) {
        Ok(made) => made,
        Err(e) => return error(&e),
    };
    let version = Some(current.group.version);
    write(&caller, &req, &current, version, data, members).await
}

/// Replaces the group `current` (as read) at `version` with `data` and `members`;
/// the members added or removed are put to the PDP first when one administers
/// Gatehouse (`provisioning-spares-administrators`).
async fn write(
    caller: &ScimCaller,
    req: &HttpRequest,
    current: &GroupWithMembers,
    version: Option<i64>,
    data: GroupData,
    members: Vec<UserId>,
) -> HttpResponse {
    let id = current.group.id;
    let had: BTreeSet<UserId> = current.members.iter().copied().collect();
    let wanted: BTreeSet<UserId> = members.iter().copied().collect();
    let moved: Vec<UserId> = had.symmetric_difference(&wanted).copied().collect();
    if let Err(refused) = caller.may_touch_any(req, "groups.write", moved).await {
        return refused;
    }
    // Written at the version those members were read at: a change in between (an
    // administrator added, say) conflicts instead of going by unchecked.
    let version = version.or(Some(current.group.version));
    match caller
        .admin()
        .replace_group(caller.operator(), caller.slug(), id, version, data, members)
        .await
    {
        Ok(found) => one(caller, &found, StatusCode::OK),
        Err(e) => failure(&e),
    }
}

/// `DELETE /Groups/{id}`.
pub(super) async fn delete(caller: ScimCaller, req: HttpRequest) -> HttpResponse {
    let id = match group_id(&req) {
        Ok(id) => id,
        Err(e) => return error(&e),
    };
    let members = match caller.admin().group_by_id(caller.slug(), id).await {
        Ok(found) => found.members,
        Err(e) => return failure(&e),
    };
    if let Err(refused) = caller.may_touch_any(&req, "groups.write", members).await {
        return refused;
    }
    match caller
        .admin()
        .delete_group(caller.operator(), caller.slug(), id)
        .await
    {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(e) => failure(&e),
    }
}
