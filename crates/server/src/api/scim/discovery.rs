//! The discovery endpoints (RFC 7644 §4): what this service supports, the schemas
//! of its resources (RFC 7643 §7) and their resource types (§6). Public, like
//! OpenID discovery: they describe the service, not the tenant's data.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_core::tenant_settings::{AttributeKind, UserExtension};
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

/// This tenant's SCIM base URL and its own User extension, if it defines one.
async fn base(
    state: &web::Data<AppState>,
    req: &HttpRequest,
) -> Result<(String, Option<UserExtension>), HttpResponse> {
    resolve(state, req).await.map(|tenant| {
        (
            format!("{}{PATH}", tenant.issuer()),
            tenant.tenant.typed_settings().user_extension,
        )
    })
}

/// The tenant's extension as a SCIM schema (RFC 7643 §7).
fn extension_schema(extension: &UserExtension) -> Value {
    let attributes: Vec<Value> = extension
        .attributes
        .iter()
        .map(|attribute| {
            let mut described = json!({
                "name": attribute.name,
                "type": attribute.kind.scim_name(),
                "multiValued": attribute.multi_valued,
                "required": attribute.required,
                "mutability": "readWrite",
                "returned": "default",
                "uniqueness": "none",
            });
            if attribute.kind == AttributeKind::String {
                described["caseExact"] = json!(false);
            }
            if let Some(description) = &attribute.description {
                described["description"] = json!(description);
            }
            described
        })
        .collect();
    let mut schema = json!({
        "id": extension.id,
        "name": extension.name,
        "attributes": attributes,
    });
    if let Some(description) = &extension.description {
        schema["description"] = json!(description);
    }
    schema
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
        Ok((base, _)) => base,
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

fn schemas(base: &str, extension: Option<&UserExtension>) -> Vec<Value> {
    let mut parsed: Vec<Value> = serde_json::from_str(SCHEMAS).unwrap_or_default();
    parsed.extend(extension.map(extension_schema));
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

fn resource_types(base: &str, extension: Option<&UserExtension>) -> Vec<Value> {
    let mut extensions = vec![json!({"schema": ENTERPRISE_USER_SCHEMA, "required": false})];
    extensions.extend(extension.map(|e| json!({"schema": e.id, "required": false})));
    vec![
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "User Account",
            "schema": CORE_USER_SCHEMA,
            "schemaExtensions": extensions,
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
        Ok((base, extension)) => list(schemas(&base, extension.as_ref())),
        Err(answer) => answer,
    }
}

/// `GET /Schemas/{id}`.
pub(super) async fn schema(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let (base, extension) = match base(&state, &req).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let id = req.match_info().get("id").unwrap_or_default();
    match schemas(&base, extension.as_ref())
        .into_iter()
        .find(|s| s["id"] == id)
    {
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
        Ok((base, extension)) => list(resource_types(&base, extension.as_ref())),
        Err(answer) => answer,
    }
}

/// `GET /ResourceTypes/{id}`.
pub(super) async fn resource_type(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let (base, extension) = match base(&state, &req).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let id = req.match_info().get("id").unwrap_or_default();
    match resource_types(&base, extension.as_ref())
        .into_iter()
        .find(|t| t["id"] == id)
    {
        Some(found) => resource(StatusCode::OK, found, None, None),
        None => error(&ScimError::new(
            404,
            None,
            format!("no resource type `{id}`"),
        )),
    }
}
