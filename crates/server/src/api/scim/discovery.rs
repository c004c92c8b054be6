//! The discovery endpoints (RFC 7644 §4): what this service supports, the schemas
//! of its resources (RFC 7643 §7) and their resource types (§6). Public, like
//! OpenID discovery: they describe the service, not the tenant's data.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_scim::ScimError;
use gatehouse_scim::schema::{CORE_GROUP_SCHEMA, CORE_USER_SCHEMA, ENTERPRISE_USER_SCHEMA};
use serde_json::{Value, json};

use super::{LIST_RESPONSE, MAX_RESULTS, PATH, error, resource};
use crate::oauth::resolve;
use crate::state::AppState;

/// The schemas of User, the enterprise extension and Group: exactly the
/// attributes Gatehouse keeps (a client reading them knows what it may send).
const SCHEMAS: &str = include_str!("schemas.json");
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";

/// This tenant's SCIM base URL.
async fn base(state: &web::Data<AppState>, req: &HttpRequest) -> Result<String, HttpResponse> {
    resolve(state, req)
        .await
        .map(|tenant| format!("{}{PATH}", tenant.issuer()))
}

fn list(resources: Vec<Value>) -> HttpResponse {
    resource(
        StatusCode::OK,
        json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": resources.len(),
            "startIndex": 1,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
        None,
        None,
    )
}

/// `GET /ServiceProviderConfig` (RFC 7643 §5).
pub(super) async fn service_provider_config(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> HttpResponse {
    let base = match base(&state, &req).await {
        Ok(base) => base,
        Err(answer) => return answer,
    };
    resource(
        StatusCode::OK,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": MAX_RESULTS},
            "changePassword": {"supported": true},
            "sort": {"supported": true},
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "A client-credentials access token of this tenant's issuer \
                    with the scope `scim` and the audience of this service",
                "specUri": "https://www.rfc-editor.org/info/rfc6750",
                "primary": true,
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{base}/ServiceProviderConfig"),
            },
        }),
        None,
        None,
    )
}

fn schemas(base: &str) -> Vec<Value> {
    let parsed: Vec<Value> = serde_json::from_str(SCHEMAS).unwrap_or_default();
    parsed
        .into_iter()
        .map(|mut schema| {
            let id = schema["id"].as_str().unwrap_or_default().to_owned();
            schema["schemas"] = json!([SCHEMA_SCHEMA]);
            schema["meta"] = json!({
                "resourceType": "Schema",
                "location": format!("{base}/Schemas/{id}"),
            });
            schema
        })
        .collect()
}

fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "User Account",
            "schema": CORE_USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE_USER_SCHEMA, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
        }),
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Group",
            "schema": CORE_GROUP_SCHEMA,
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
        }),
    ]
}

/// `GET /Schemas`.
pub(super) async fn schemas_list(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match base(&state, &req).await {
        Ok(base) => list(schemas(&base)),
        Err(answer) => answer,
    }
}

/// `GET /Schemas/{id}`.
pub(super) async fn schema(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let base = match base(&state, &req).await {
        Ok(base) => base,
        Err(answer) => return answer,
    };
    let id = req.match_info().get("id").unwrap_or_default();
    match schemas(&base).into_iter().find(|s| s["id"] == id) {
        Some(found) => resource(StatusCode::OK, found, None, None),
        None => error(&ScimError::new(404, None, format!("no schema `{id}`"))),
    }
}

/// `GET /ResourceTypes`.
pub(super) async fn resource_types_list(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> HttpResponse {
    match base(&state, &req).await {
        Ok(base) => list(resource_types(&base)),
        Err(answer) => answer,
    }
}

/// `GET /ResourceTypes/{id}`.
pub(super) async fn resource_type(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let base = match base(&state, &req).await {
        Ok(base) => base,
        Err(answer) => return answer,
    };
    let id = req.match_info().get("id").unwrap_or_default();
    match resource_types(&base).into_iter().find(|t| t["id"] == id) {
        Some(found) => resource(StatusCode::OK, found, None, None),
        None => error(&ScimError::new(
            404,
            None,
            format!("no resource type `{id}`"),
        )),
    }
}
