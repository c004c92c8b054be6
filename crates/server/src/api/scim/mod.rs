//! SCIM 2.0 (RFC 7643, RFC 7644) at `/scim/v2` under each issuer: Users and Groups
//! for a tenant's provisioning system, an adapter over `crates/admin` like the
//! admin API. Callers hold a client-credentials token of the tenant's issuer with
//! the scope `scim` and the audience `{issuer}/scim/v2`; the PDP decides each call
//! by the operator policies (role `provisioner`), as for the admin API. The
//! discovery endpoints (ServiceProviderConfig, Schemas, ResourceTypes) are public:
//! they describe the service, not the tenant's data.
//!
//! The grammar (filters, PATCH paths and operations) is `gatehouse-scim`'s; here
//! resources are mapped to and from Gatehouse's users and groups, and every
//! failure is answered as a SCIM error (§3.12) with `application/scim+json`.

mod discovery;
pub(crate) mod filter;
mod groups;
mod users;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_admin::{Admin, AdminError, AdminRole, Operator};
use gatehouse_core::ids::UserId;
use gatehouse_identity_store::StoreError;
use gatehouse_scim::ScimError;
use serde_json::{Map, Value, json};

use crate::api::operator::{OperatorCall, Refused, authorize};
use crate::http::answer::{answered, from_request_with};

/// Where SCIM lives under an issuer; also the audience its tokens must name.
pub const PATH: &str = "/scim/v2";
/// SCIM's media type (RFC 7644 §8.1).
pub const SCIM_JSON: &str = "application/scim+json";
const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
/// The most resources one page holds (ServiceProviderConfig's `maxResults`).
const MAX_RESULTS: i64 = 1000;
/// A page's size when the request names none.
const DEFAULT_COUNT: i64 = 100;

/// Every route that takes a token, with the operator action it is.
macro_rules! scim_routes {
    ($($method:ident $path:literal => $handler:path, $action:literal;)*) => {
        /// Mounted at the root and under `/t/{tenant}`.
        pub fn tenant_routes(cfg: &mut web::ServiceConfig) {
            cfg.service(
                web::scope(PATH)
                    .route("/ServiceProviderConfig", web::get().to(discovery::service_provider_config))
                    .route("/Schemas", web::get().to(discovery::schemas_list))
                    .route("/Schemas/{id}", web::get().to(discovery::schema))
                    .route("/ResourceTypes", web::get().to(discovery::resource_types_list))
                    .route("/ResourceTypes/{id}", web::get().to(discovery::resource_type))
                    $(.route($path, web::$method().to($handler)))*
                    .default_service(web::to(not_found)),
            );
        }

        const ROUTE_ACTIONS: &[(&str, &str, &str)] = &[$((stringify!($method), $path, $action)),*];
    };
}

scim_routes! {
    post "/.search" => search_everything, "users.read";
    get "/Users" => users::list, "users.read";
    post "/Users/.search" => users::search, "users.read";
    post "/Users" => users::create, "users.create";
    get "/Users/{id}" => users::show, "users.read";
    put "/Users/{id}" => users::replace, "users.update";
    patch "/Users/{id}" => users::patch, "users.update";
    delete "/Users/{id}" => users::delete, "users.delete";
    get "/Groups" => groups::list, "groups.read";
    post "/Groups/.search" => groups::search, "groups.read";
    post "/Groups" => groups::create, "groups.write";
    get "/Groups/{id}" => groups::show, "groups.read";
    put "/Groups/{id}" => groups::replace, "groups.write";
    patch "/Groups/{id}" => groups::patch, "groups.write";
    delete "/Groups/{id}" => groups::delete, "groups.write";
}

/// The public discovery routes (all `GET`).
const DISCOVERY: [&str; 5] = [
    "/ServiceProviderConfig",
    "/Schemas",
    "/Schemas/{id}",
    "/ResourceTypes",
    "/ResourceTypes/{id}",
];

/// Whether `path` (under [`PATH`]) is of the route `pattern` (`{…}` is one segment).
fn path_matches(pattern: &str, path: &str) -> bool {
    let (pattern, path): (Vec<&str>, Vec<&str>) = (
        pattern.split('/').collect(),
        path.trim_end_matches('/').split('/').collect(),
    );
    pattern.len() == path.len()
        && pattern
            .iter()
            .zip(&path)
            .all(|(p, s)| (p.starts_with('{') && !s.is_empty()) || p == s)
}

/// No route took the request: 405 with `Allow` for a known path asked with
/// another method (RFC 9110 §15.5.6), 404 otherwise — each a SCIM error.
async fn not_found(req: HttpRequest) -> HttpResponse {
    let path = req.path();
    let under = path.find(PATH).map_or(path, |at| &path[at + PATH.len()..]);
    let allowed: Vec<String> = ROUTE_ACTIONS
        .iter()
        .map(|(method, pattern, _)| (*method, *pattern))
        .chain(DISCOVERY.iter().map(|pattern| ("get", *pattern)))
        .filter(|(_, pattern)| path_matches(pattern, under))
        .map(|(method, _)| method.to_ascii_uppercase())
        .collect();
    if allowed.is_empty() {
        return error(&ScimError::new(404, None, "no such endpoint"));
    }
    let mut answer = error(&ScimError::new(
        405,
        None,
        format!("{} is not allowed here", req.method()),
    ));
    if let Ok(value) = header::HeaderValue::from_str(&allowed.join(", ")) {
        answer.headers_mut().insert(header::ALLOW, value);
    }
    answer
}

/// `POST /.search` at the root (RFC 7644 §3.4.3): Users, then Groups, as one list
/// paged across both. Sorting across types is not offered (400). The caller's
/// route decision covered users; groups are decided too.
async fn search_everything(
    caller: ScimCaller,
    req: HttpRequest,
    bytes: web::Bytes,
) -> HttpResponse {
    let asked = match ListRequest::from_search(&bytes) {
        Ok(asked) => asked,
        Err(e) => return error(&e),
    };
    if asked.sort_by.is_some() {
        return error(&ScimError::invalid_value(
            "sortBy is not offered across resource types: search /Users or /Groups",
        ));
    }
    if let Err(e) = caller.call.authorize_also(&req, "groups.read", None).await {
        return failure(&e);
    }
    let (user_total, mut page) = match users::find(&caller, &asked, true).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    // The groups continue the list where the users end.
    let room = asked.count - page.len() as i64;
    let group_start = (asked.start_index - user_total).max(1);
    let (group_total, groups) = match groups::find(&caller, &asked, group_start, room).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    page.extend(groups);
    asked.answer(user_total + group_total, page)
}

fn route_action(req: &HttpRequest) -> Option<&'static str> {
    crate::api::operator::route_action(req, PATH, ROUTE_ACTIONS)
}

/// An authenticated SCIM call: the tenant, who acts, and the admin layer.
struct ScimCaller {
    call: OperatorCall,
}

from_request_with!(ScimCaller, ScimCaller::extract);

impl ScimCaller {
    async fn extract(req: HttpRequest) -> Result<ScimCaller, actix_web::Error> {
        let Some(action) = route_action(&req) else {
            tracing::error!(path = req.path(), "SCIM route without an operator action");
            return Err(answered(error(&ScimError::new(
                403,
                None,
                "this endpoint is open to no role",
            ))));
        };
        let call = authorize(&req, PATH, &AdminRole::SCIM, action)
            .await
            .map_err(|refused| {
                answered(match refused {
                    Refused::Answer(answer) => answer,
                    Refused::Admin(e) => failure(&e),
                })
            })?;
        Ok(ScimCaller { call })
    }

    /// Before an account is changed, disabled or deleted: an account that
    /// administers Gatehouse is put to the PDP again, which spares it from
    /// provisioning clients (the policy `provisioning-spares-administrators`).
    async fn may_touch(
        &self,
        req: &HttpRequest,
        action: &str,
        user: UserId,
    ) -> Result<(), HttpResponse> {
        self.may_touch_any(req, action, vec![user]).await
    }

    /// As [`ScimCaller::may_touch`], for a change that touches every one of
    /// `users` (the members a group change adds or removes).
    async fn may_touch_any(
        &self,
        req: &HttpRequest,
        action: &str,
        users: Vec<UserId>,
    ) -> Result<(), HttpResponse> {
        if users.is_empty() {
            return Ok(());
        }
        match self.admin().any_administrator(self.slug(), users).await {
            Ok(false) => Ok(()),
            Ok(true) => self
                .call
                .authorize_also(req, action, Some(true))
                .await
                .map_err(|e| failure(&e)),
            Err(e) => Err(failure(&e)),
        }
    }

    /// The tenant's own User extension, if its settings define one.
    fn extension(&self) -> Option<gatehouse_core::tenant_settings::UserExtension> {
        self.call.tenant.tenant.typed_settings().user_extension
    }

    fn operator(&self) -> &Operator {
        &self.call.operator
    }

    fn admin(&self) -> &Admin {
        &self.call.state.admin
    }

    fn slug(&self) -> &str {
        &self.call.tenant.tenant.slug
    }

    /// The URL of the SCIM service for this tenant (resources' `location`).
    fn base(&self) -> String {
        format!("{}{PATH}", self.call.tenant.issuer())
    }
}

/// A SCIM error answer (§3.12).
fn error(e: &ScimError) -> HttpResponse {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut answer = HttpResponse::build(status);
    answer
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type(SCIM_JSON);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        answer.insert_header((header::RETRY_AFTER, "1"));
    }
    answer.body(e.to_json().to_string())
}

/// The admin layer's refusal as a SCIM error: each kind mapped once.
fn failure(e: &AdminError) -> HttpResponse {
    use gatehouse_scim::scim_type;
    if let Some(store) = e.store_error() {
        let mapped = match store {
            StoreError::NotFound { entity } => Some(ScimError::new(
                404,
                None,
                format!("no such {entity} in this tenant"),
            )),
            StoreError::Conflict { field, .. } => Some(ScimError::new(
                409,
                Some(scim_type::UNIQUENESS),
                format!("another resource has that {field}"),
            )),
            StoreError::StaleVersion { .. } => Some(ScimError::new(
                412,
                None,
                "the resource changed since the version in If-Match",
            )),
            StoreError::Invalid { message, .. } => Some(ScimError::new(
                400,
                Some(scim_type::INVALID_VALUE),
                message.clone(),
            )),
            other if other.is_unavailable() => Some(ScimError::new(
                503,
                None,
                "the database could not be reached in time; retry shortly",
            )),
            _ => None,
        };
        if let Some(mapped) = mapped {
            return error(&mapped);
        }
    }
    let mapped = match e {
        AdminError::Invalid { field, message } => ScimError::new(
            400,
            Some(scim_type::INVALID_VALUE),
            format!("{field} {message}"),
        ),
        AdminError::Authn(gatehouse_authn::AuthnError::PasswordPolicy(violation)) => {
            ScimError::new(
                400,
                Some(scim_type::INVALID_VALUE),
                format!("password: {violation}"),
            )
        }
        AdminError::NotFound(message) => ScimError::new(404, None, message.clone()),
        AdminError::Conflict(message) => {
            ScimError::new(409, Some(scim_type::UNIQUENESS), message.clone())
        }
        AdminError::Denied { action, reason, .. } => ScimError::new(
            403,
            None,
            format!("the caller's roles do not permit `{action}` ({reason})"),
        ),
        AdminError::Unavailable(message) => {
            tracing::warn!(%message, "SCIM: a service was unavailable");
            ScimError::new(
                503,
                None,
                "a service could not be reached in time; retry shortly",
            )
        }
        other => {
            tracing::error!(error = %other, "SCIM request failed");
            ScimError::new(500, None, "the request failed")
        }
    };
    error(&mapped)
}

/// A SCIM resource or list answer.
fn resource(
    status: StatusCode,
    body: Value,
    etag: Option<String>,
    location: Option<&str>,
) -> HttpResponse {
    let mut answer = HttpResponse::build(status);
    answer
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type(SCIM_JSON);
    if let Some(etag) = etag {
        answer.insert_header((header::ETAG, etag));
    }
    if let Some(location) = location {
        answer.insert_header((header::LOCATION, location.to_owned()));
    }
    answer.body(body.to_string())
}

/// A version as SCIM's weak entity tag (`meta.version`, `ETag`).
fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The version `If-Match` names: `None` without the header or with `*`. A tag
/// that is not one of ours can match nothing: 412.
fn if_match(req: &HttpRequest) -> Result<Option<i64>, ScimError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| ScimError::new(412, None, "If-Match names no version of this resource"))
}

/// The request body as a JSON object (`invalidSyntax` otherwise).
fn json_body(bytes: &[u8]) -> Result<Map<String, Value>, ScimError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ScimError::invalid_syntax("the body must be a JSON object")),
        Err(e) => Err(ScimError::invalid_syntax(format!(
            "the body is not JSON: {e}"
        ))),
    }
}

/// A member of `object` by name, compared case-insensitively (RFC 7643 §2.1).
fn member<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// The paging, sorting and projection a list or search asks for (§3.4.2).
#[derive(Debug, Default)]
struct ListRequest {
    filter: Option<String>,
    sort_by: Option<String>,
    descending: bool,
    start_index: i64,
    count: i64,
    attributes: Vec<String>,
    excluded: Vec<String>,
}

impl ListRequest {
    /// From the query string of `GET /Users` or `/Groups`.
    fn from_query(req: &HttpRequest) -> Result<ListRequest, ScimError> {
        let pairs: Vec<(String, String)> =
            web::Query::<Vec<(String, String)>>::from_query(req.query_string())
                .map(web::Query::into_inner)
                .map_err(|e| ScimError::invalid_value(format!("the query string: {e}")))?;
        let mut object = Map::new();
        for (key, value) in pairs {
            object.insert(key, Value::String(value));
        }
        ListRequest::from_members(&object, true)
    }

    /// From a `POST /.search` body (§3.4.3).
    fn from_search(bytes: &[u8]) -> Result<ListRequest, ScimError> {
        let body = json_body(bytes)?;
        let declared = member(&body, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|schemas| schemas.iter().any(|s| s == SEARCH_REQUEST));
        if !declared {
            return Err(ScimError::invalid_value(format!(
                "a search request names the schema {SEARCH_REQUEST}"
            )));
        }
        ListRequest::from_members(&body, false)
    }

    fn from_members(
        object: &Map<String, Value>,
        from_query: bool,
    ) -> Result<ListRequest, ScimError> {
        let text = |name: &str| -> Result<Option<String>, ScimError> {
            match member(object, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::invalid_value(format!("{name} must be a string"))),
            }
        };
        let number = |name: &str| -> Result<Option<i64>, ScimError> {
            match member(object, name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) if !from_query => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ScimError::invalid_value(format!("{name} must be an integer"))),
                Some(Value::String(s)) if from_query => s
                    .trim()
                    .parse::<i64>()
                    .map(Some)
                    .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer"))),
                Some(_) => Err(ScimError::invalid_value(format!(
                    "{name} must be an integer"
                ))),
            }
        };
        let list = |name: &str| -> Result<Vec<String>, ScimError> {
            match member(object, name) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::String(s)) => Ok(s
                    .split(',')
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty())
                    .collect()),
                Some(Value::Array(items)) if !from_query => items
                    .iter()
                    .map(|item| {
                        item.as_str().map(str::to_owned).ok_or_else(|| {
                            ScimError::invalid_value(format!("{name} holds strings"))
                        })
                    })
                    .collect(),
                Some(_) => Err(ScimError::invalid_value(format!(
                    "{name} must list attributes"
                ))),
            }
        };
        let descending = match text("sortOrder")? {
            None => false,
            Some(order) if order.eq_ignore_ascii_case("ascending") => false,
            Some(order) if order.eq_ignore_ascii_case("descending") => true,
            Some(other) => {
                return Err(ScimError::invalid_value(format!(
                    "sortOrder is ascending or descending, not `{other}`"
                )));
            }
        };
        Ok(ListRequest {
            filter: text("filter")?,
            sort_by: text("sortBy")?,
            descending,
            // §3.4.2.4: below 1 counts as 1; a negative count as 0; more than the
            // most a page holds is that many.
            start_index: number("startIndex")?.unwrap_or(1).max(1),
            count: number("count")?
                .unwrap_or(DEFAULT_COUNT)
                .clamp(0, MAX_RESULTS),
            attributes: list("attributes")?,
            excluded: list("excludedAttributes")?,
        })
    }

    /// A list response of `resources` (already this page), projected.
    fn answer(&self, total: i64, resources: Vec<Value>) -> HttpResponse {
        let resources: Vec<Value> = resources
            .into_iter()
            .map(|r| project(r, &self.attributes, &self.excluded))
            .collect();
        resource(
            StatusCode::OK,
            json!({
                "schemas": [LIST_RESPONSE],
                "totalResults": total,
                "startIndex": self.start_index,
                "itemsPerPage": resources.len(),
                "Resources": resources,
            }),
            None,
            None,
        )
    }
}

/// A resource with only the `attributes` asked for (or without the `excluded`
/// ones); `id`, `schemas` and `meta` always stay (§3.4.2.5; RFC 7643 §7
/// `returned: always`). Names compare case-insensitively; a sub-attribute
/// (`name.givenName`) keeps or drops only itself.
fn project(resource: Value, attributes: &[String], excluded: &[String]) -> Value {
    let Value::Object(mut object) = resource else {
        return resource;
    };
    let always = |key: &str| {
        ["id", "schemas", "meta"]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(key))
    };
    let split = |path: &str| -> (String, Option<String>) {
        // A schema URN prefix names an extension's attribute: `urn:…:User:department`.
        let (urn, rest) = match path.rfind(':') {
            Some(i) if path.starts_with("urn:") => (Some(&path[..i]), &path[i + 1..]),
            _ => (None, path),
        };
        let (top, sub) = match rest.split_once('.') {
            Some((top, sub)) => (top.to_owned(), Some(sub.to_owned())),
            None => (rest.to_owned(), None),
        };
        match urn {
            Some(urn)
                if !urn.eq_ignore_ascii_case(gatehouse_scim::schema::CORE_USER_SCHEMA)
                    && !urn.eq_ignore_ascii_case(gatehouse_scim::schema::CORE_GROUP_SCHEMA) =>
            {
                (urn.to_owned(), Some(top))
            }
            _ => (top, sub),
        }
    };
    if !attributes.is_empty() {
        let mut kept = Map::new();
        for (key, value) in object {
            if always(&key) {
                kept.insert(key, value);
                continue;
            }
            let asked: Vec<Option<String>> = attributes
                .iter()
                .map(|a| split(a))
                .filter(|(top, _)| top.eq_ignore_ascii_case(&key))
                .map(|(_, sub)| sub)
                .collect();
            if asked.is_empty() {
                continue;
            }
            if asked.iter().any(Option::is_none) {
                kept.insert(key, value);
                continue;
            }
            let subs: Vec<String> = asked.into_iter().flatten().collect();
            kept.insert(key, keep_subs(value, &subs));
        }
        object = kept;
    }
    for path in excluded {
        let (top, sub) = split(path);
        if always(&top) {
            continue;
        }
        let Some(key) = object
            .keys()
            .find(|k| k.eq_ignore_ascii_case(&top))
            .cloned()
        else {
            continue;
        };
        match sub {
            None => {
                object.remove(&key);
            }
            Some(sub) => {
                if let Some(value) = object.get_mut(&key) {
                    drop_sub(value, &sub);
                }
            }
        }
    }
    Value::Object(object)
}

fn keep_subs(value: Value, subs: &[String]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| keep_subs(v, subs)).collect())
        }
        other => other,
    }
}

fn drop_sub(value: &mut Value, sub: &str) {
    match value {
        Value::Object(map) => map.retain(|k, _| !k.eq_ignore_ascii_case(sub)),
        Value::Array(items) => items.iter_mut().for_each(|v| drop_sub(v, sub)),
        _ => {}
    }
}
