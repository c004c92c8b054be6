//! `/Users`: Gatehouse's users as SCIM User resources (RFC 7643 §4.1) with the
//! enterprise extension (§4.3) and the tenant's own extension, if it defines one
//! (settings `user_extension`), each kept in the user's custom attributes under its
//! URN.
//!
//! A resource read from a request is checked whole before anything is written:
//! unknown attributes, values of the wrong type and more than one primary value are
//! `invalidValue` — what Gatehouse cannot keep is refused, never dropped. Read-only
//! attributes (`id`, `meta`, `groups`) in a request are ignored as RFC 7644 §3.5.1
//! says; a PATCH aimed at one is `mutability`.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use gatehouse_admin::Reason;
use gatehouse_core::ids::UserId;
use gatehouse_core::tenant_settings::{AttributeKind, ExtensionAttribute, UserExtension};
use gatehouse_identity_store::groups::Group;
use gatehouse_identity_store::users::search::UserQuery;
use gatehouse_identity_store::users::{Email, Name, PhoneNumber, User, UserData};
use gatehouse_scim::schema::{CORE_USER_SCHEMA, ENTERPRISE_USER_SCHEMA};
use gatehouse_scim::{PatchRequest, ScimError, apply_patch, parse_filter, scim_type};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::{
    ListRequest, ScimCaller, error, etag, failure, filter, if_match, json_body, member, resource,
};

/// The enterprise extension's attributes and whether each is a string.
const ENTERPRISE_TEXT: [&str; 5] = [
    "employeeNumber",
    "costCenter",
    "organization",
    "division",
    "department",
];

/// The user as a SCIM resource; `groups` are theirs, `base` the service's URL,
/// `extension` the tenant's own User extension.
pub(super) fn to_scim(
    user: &User,
    groups: &[Group],
    base: &str,
    extension: Option<&UserExtension>,
) -> Value {
    let data = &user.data;
    let mut object = Map::new();
    let mut schemas = vec![json!(CORE_USER_SCHEMA)];
    object.insert("id".into(), json!(user.id.to_string()));
    let text = |object: &mut Map<String, Value>, name: &str, value: &Option<String>| {
        if let Some(value) = value {
            object.insert(name.into(), json!(value));
        }
    };
    text(&mut object, "externalId", &data.external_id);
    object.insert("userName".into(), json!(data.user_name));
    let mut name = Map::new();
    text(&mut name, "formatted", &data.name.formatted);
    text(&mut name, "givenName", &data.name.given_name);
    text(&mut name, "familyName", &data.name.family_name);
    text(&mut name, "middleName", &data.name.middle_name);
    text(&mut name, "honorificPrefix", &data.name.honorific_prefix);
    text(&mut name, "honorificSuffix", &data.name.honorific_suffix);
    if !name.is_empty() {
        object.insert("name".into(), Value::Object(name));
    }
    text(&mut object, "displayName", &data.display_name);
    text(&mut object, "nickName", &data.nick_name);
    text(&mut object, "title", &data.title);
    text(&mut object, "userType", &data.user_type);
    text(&mut object, "preferredLanguage", &data.preferred_language);
    text(&mut object, "locale", &data.locale);
    text(&mut object, "timezone", &data.timezone);
    object.insert("active".into(), json!(data.active));
    let emails = data.emails.iter().map(|e| (&e.value, &e.kind, e.primary));
    multi_valued_out(&mut object, "emails", emails);
    let phones = data
        .phone_numbers
        .iter()
        .map(|p| (&p.value, &p.kind, p.primary));
    multi_valued_out(&mut object, "phoneNumbers", phones);
    if !groups.is_empty() {
        let groups: Vec<Value> = groups
            .iter()
            .map(|g| {
                json!({
                    "value": g.id.to_string(),
                    "display": g.display_name,
                    "$ref": format!("{base}/Groups/{}", g.id),
                })
            })
            .collect();
        object.insert("groups".into(), Value::Array(groups));
    }
    if let Some(Value::Object(enterprise)) = data.custom_attributes.get(ENTERPRISE_USER_SCHEMA)
        && !enterprise.is_empty()
    {
        schemas.push(json!(ENTERPRISE_USER_SCHEMA));
        object.insert(
            ENTERPRISE_USER_SCHEMA.into(),
            Value::Object(enterprise.clone()),
        );
    }
    if let Some(extension) = extension
        && let Some(Value::Object(values)) = data.custom_attributes.get(&extension.id)
        && !values.is_empty()
    {
        schemas.push(json!(extension.id));
        object.insert(extension.id.clone(), Value::Object(values.clone()));
    }
    object.insert("schemas".into(), Value::Array(schemas));
    object.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": user.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "lastModified": user.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "location": format!("{base}/Users/{}", user.id),
            "version": etag(user.version),
        }),
    );
    Value::Object(object)
}

/// `emails` or `phoneNumbers` as SCIM values, left out when there are none.
fn multi_valued_out<'a>(
    object: &mut Map<String, Value>,
    name: &str,
    values: impl Iterator<Item = (&'a String, &'a Option<String>, bool)>,
) {
    let values: Vec<Value> = values
        .map(|(value, kind, primary)| {
            let mut out = json!({ "value": value, "primary": primary });
            if let Some(kind) = kind {
                out["type"] = json!(kind);
            }
            out
        })
        .collect();
    if !values.is_empty() {
        object.insert(name.into(), Value::Array(values));
    }
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::invalid_value(detail)
}

fn optional_text(value: Option<&Value>, name: &str) -> Result<Option<String>, ScimError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(invalid(format!("{name} must be a string"))),
    }
}

/// Only the members `known` may appear in `object` (case-insensitively).
fn only_known(object: &Map<String, Value>, known: &[&str], what: &str) -> Result<(), ScimError> {
    match object
        .keys()
        .find(|key| !known.iter().any(|k| k.eq_ignore_ascii_case(key)))
    {
        Some(unknown) => Err(invalid(format!("{what} has no attribute `{unknown}`"))),
        None => Ok(()),
    }
}

/// `emails` or `phoneNumbers`: an array of `{value, type?, primary?}`.
fn multi_valued(
    value: Option<&Value>,
    name: &str,
) -> Result<Vec<(String, Option<String>, bool)>, ScimError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(invalid(format!("{name} must be an array"))),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(item) = item else {
            return Err(invalid(format!("each of {name} must be an object")));
        };
        only_known(item, &["value", "type", "primary", "display"], name)?;
        let value = optional_text(member(item, "value"), &format!("{name}.value"))?
            .ok_or_else(|| invalid(format!("each of {name} needs a value")))?;
        let kind = optional_text(member(item, "type"), &format!("{name}.type"))?;
        let primary = match member(item, "primary") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(flag)) => *flag,
            Some(_) => return Err(invalid(format!("{name}.primary must be true or false"))),
        };
        out.push((value, kind, primary));
    }
    if out.iter().filter(|(_, _, primary)| *primary).count() > 1 {
        return Err(invalid(format!("at most one of {name} is primary")));
    }
    Ok(out)
}

/// The enterprise extension's object, checked.
fn enterprise(value: &Value) -> Result<Map<String, Value>, ScimError> {
    let Value::Object(object) = value else {
        return Err(invalid(format!(
            "{ENTERPRISE_USER_SCHEMA} must be an object"
        )));
    };
    let mut known: Vec<&str> = ENTERPRISE_TEXT.to_vec();
    // Some clients repeat the extension's URN inside its object; it says nothing new.
    known.extend(["manager", "schemas"]);
    only_known(object, &known, "the enterprise extension")?;
    let mut kept = Map::new();
    for name in ENTERPRISE_TEXT {
        if let Some(text) = optional_text(member(object, name), name)? {
            kept.insert(name.into(), json!(text));
        }
    }
    match member(object, "manager") {
        None | Some(Value::Null) => {}
        Some(Value::Object(manager)) => {
            only_known(manager, &["value", "$ref", "displayName"], "manager")?;
            let mut kept_manager = Map::new();
            for name in ["value", "$ref", "displayName"] {
                if let Some(text) =
                    optional_text(member(manager, name), &format!("manager.{name}"))?
                {
                    kept_manager.insert(name.into(), json!(text));
                }
            }
            if !kept_manager.is_empty() {
                kept.insert("manager".into(), Value::Object(kept_manager));
            }
        }
        Some(_) => return Err(invalid("manager must be an object")),
    }
    Ok(kept)
}

/// One value of an extension attribute, checked against its type.
fn extension_value(attribute: &ExtensionAttribute, value: &Value) -> Result<Value, ScimError> {
    let name = &attribute.name;
    let fits = match (attribute.kind, value) {
        (AttributeKind::String, Value::String(_))
        | (AttributeKind::Boolean, Value::Bool(_))
        | (AttributeKind::Decimal, Value::Number(_)) => true,
        (AttributeKind::Integer, Value::Number(n)) => n.is_i64(),
        (AttributeKind::DateTime, Value::String(text)) => {
            chrono::DateTime::parse_from_rfc3339(text).is_ok()
        }
        _ => false,
    };
    if fits {
        Ok(value.clone())
    } else {
        Err(invalid(format!(
            "{name} must be a {} value",
            attribute.kind.scim_name()
        )))
    }
}

/// The tenant extension's object, checked against its definition: only its
/// attributes, each of its type, the required ones present.
fn extension_values(
    extension: &UserExtension,
    value: &Value,
) -> Result<Map<String, Value>, ScimError> {
    let Value::Object(object) = value else {
        return Err(invalid(format!("{} must be an object", extension.id)));
    };
    let mut kept = Map::new();
    for (key, value) in object {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let Some(attribute) = extension.attribute(key) else {
            return Err(invalid(format!(
                "`{key}` is not an attribute of {}",
                extension.id
            )));
        };
        let checked = match value {
            Value::Null => continue,
            Value::Array(items) if attribute.multi_valued => Value::Array(
                items
                    .iter()
                    .map(|item| extension_value(attribute, item))
                    .collect::<Result<_, _>>()?,
            ),
            _ if attribute.multi_valued => {
                return Err(invalid(format!(
                    "{} is multi-valued: send an array",
                    attribute.name
                )));
            }
            single => extension_value(attribute, single)?,
        };
        kept.insert(attribute.name.clone(), checked);
    }
    if let Some(missing) = extension
        .attributes
        .iter()
        .find(|a| a.required && !kept.contains_key(&a.name))
    {
        return Err(invalid(format!(
            "{} is required by {}",
            missing.name, extension.id
        )));
    }
    Ok(kept)
}

/// A User resource from a request: the profile to keep and a new password, if
/// any. `current` supplies what the resource cannot say (custom attributes of
/// other kinds); `present` tells an absent `active` to stay as it was.
fn from_scim(
    object: &Map<String, Value>,
    current: Option<&UserData>,
    extension: Option<&UserExtension>,
) -> Result<(UserData, Option<Zeroizing<String>>), ScimError> {
    let declared = member(object, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|schemas| {
            schemas.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(CORE_USER_SCHEMA))
            })
        });
    if !declared {
        return Err(invalid(format!("schemas must list {CORE_USER_SCHEMA}")));
    }
    let mut known = vec![
        "schemas",
        "id",
        "meta",
        "groups",
        "externalId",
        "userName",
        "name",
        "displayName",
        "nickName",
        "title",
        "userType",
        "preferredLanguage",
        "locale",
        "timezone",
        "active",
        "password",
        "emails",
        "phoneNumbers",
        ENTERPRISE_USER_SCHEMA,
    ];
    known.extend(extension.map(|e| e.id.as_str()));
    only_known(object, &known, "a User")?;
    let user_name = optional_text(member(object, "userName"), "userName")?
        .ok_or_else(|| invalid("userName is required"))?;
    let name = match member(object, "name") {
        None | Some(Value::Null) => Name::default(),
        Some(Value::Object(name)) => {
            only_known(
                name,
                &[
                    "formatted",
                    "givenName",
                    "familyName",
                    "middleName",
                    "honorificPrefix",
                    "honorificSuffix",
                ],
                "name",
            )?;
            let part = |part: &str| optional_text(member(name, part), &format!("name.{part}"));
            Name {
                formatted: part("formatted")?,
                given_name: part("givenName")?,
                family_name: part("familyName")?,
                middle_name: part("middleName")?,
                honorific_prefix: part("honorificPrefix")?,
                honorific_suffix: part("honorificSuffix")?,
            }
        }
        Some(_) => return Err(invalid("name must be an object")),
    };
    let text = |name: &str| optional_text(member(object, name), name);
    let active = match member(object, "active") {
        None | Some(Value::Null) => current.is_none_or(|c| c.active),
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err(invalid("active must be true or false")),
    };
    let password = match member(object, "password") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if !p.is_empty() => Some(Zeroizing::new(p.clone())),
        Some(_) => return Err(invalid("password must be a non-empty string")),
    };
    // Kept as sent: with no address marked primary, Gatehouse has none to sign in
    // with or mail (the provisioning system says which one is).
    let emails = multi_valued(member(object, "emails"), "emails")?
        .into_iter()
        .map(|(value, kind, primary)| Email {
            value,
            kind,
            primary,
            verified: false,
        })
        .collect::<Vec<_>>();
    let phone_numbers = multi_valued(member(object, "phoneNumbers"), "phoneNumbers")?
        .into_iter()
        .map(|(value, kind, primary)| PhoneNumber {
            value,
            kind,
            primary,
        })
        .collect();
    let mut custom_attributes = current
        .map(|c| c.custom_attributes.clone())
        .unwrap_or_default();
    custom_attributes.remove(ENTERPRISE_USER_SCHEMA);
    if let Some(value) = member(object, ENTERPRISE_USER_SCHEMA)
        && !value.is_null()
    {
        let kept = enterprise(value)?;
        if !kept.is_empty() {
            custom_attributes.insert(ENTERPRISE_USER_SCHEMA.into(), Value::Object(kept));
        }
    }
    if let Some(extension) = extension {
        let stored = custom_attributes.remove(&extension.id);
        if let Some(value) = member(object, &extension.id)
            && !value.is_null()
        {
            // Values sent back as they are stored are kept as they are: a change to
            // the definition since never blocks other changes (deprovisioning among
            // them); only new values are checked against it.
            let kept = if stored.as_ref() == Some(value) {
                value.as_object().cloned().unwrap_or_default()
            } else {
                extension_values(extension, value)?
            };
            if !kept.is_empty() {
                custom_attributes.insert(extension.id.clone(), Value::Object(kept));
            }
        }
    }
    Ok((
        UserData {
            user_name,
            name,
            display_name: text("displayName")?,
            nick_name: text("nickName")?,
            title: text("title")?,
            user_type: text("userType")?,
            preferred_language: text("preferredLanguage")?,
            locale: text("locale")?,
            timezone: text("timezone")?,
            active,
            external_id: text("externalId")?,
            emails,
            phone_numbers,
            custom_attributes,
        },
        password,
    ))
}

fn user_id(req: &HttpRequest) -> Result<UserId, ScimError> {
    req.match_info()
        .get("id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| ScimError::new(404, None, "no such User"))
}

/// Users as resources, each with their groups.
async fn resources(caller: &ScimCaller, users: &[User]) -> Result<Vec<Value>, HttpResponse> {
    let ids = users.iter().map(|u| u.id).collect();
    let groups: HashMap<UserId, Vec<Group>> = caller
        .admin()
        .groups_of_users(caller.slug(), ids)
        .await
        .map_err(|e| failure(&e))?;
    let (base, extension) = (caller.base(), caller.extension());
    Ok(users
        .iter()
        .map(|u| {
            to_scim(
                u,
                groups.get(&u.id).map(Vec::as_slice).unwrap_or_default(),
                &base,
                extension.as_ref(),
            )
        })
        .collect())
}

/// One user as the answer, with its ETag; `projection` from the request's
/// `attributes`/`excludedAttributes`.
async fn one(
    caller: &ScimCaller,
    user: &User,
    status: StatusCode,
    projection: Option<&ListRequest>,
) -> HttpResponse {
    match resources(caller, std::slice::from_ref(user)).await {
        Ok(mut found) => {
            let mut body = found.pop().unwrap_or_default();
            if let Some(asked) = projection {
                body = super::project(body, &asked.attributes, &asked.excluded);
            }
            let location = (status == StatusCode::CREATED)
                .then(|| format!("{}/Users/{}", caller.base(), user.id));
            resource(status, body, Some(etag(user.version)), location.as_deref())
        }
        Err(answer) => answer,
    }
}

/// The users `asked` finds: how many in all, and the page asked for as resources.
/// `across_types` (a search of every resource type) makes a Group's attribute in the
/// filter match no user rather than refuse the filter.
pub(super) async fn find(
    caller: &ScimCaller,
    asked: &ListRequest,
    across_types: bool,
) -> Result<(i64, Vec<Value>), HttpResponse> {
    let store_filter = match asked.filter.as_deref().map(parse_filter) {
        None => None,
        Some(Ok(parsed)) => Some(filter::users(&parsed, across_types).map_err(|e| error(&e))?),
        Some(Err(e)) => return Err(error(&e)),
    };
    let sort = match asked.sort_by.as_deref().map(filter::sort_attribute) {
        None => None,
        Some(Ok(attribute)) => Some((attribute, asked.descending)),
        Some(Err(e)) => return Err(error(&e)),
    };
    let query = UserQuery::by_index(store_filter, sort, asked.start_index, asked.count);
    let found = match caller.admin().search_users(caller.slug(), query).await {
        Ok(found) => found,
        // A filter the store refuses (a value of the wrong kind) is the filter's fault.
        Err(e)
            if matches!(
                e.store_error(),
                Some(gatehouse_identity_store::StoreError::Invalid { .. })
            ) =>
        {
            return Err(error(&ScimError::invalid_filter(e.to_string())));
        }
        Err(e) => return Err(failure(&e)),
    };
    Ok((
        found.total.unwrap_or_default(),
        resources(caller, &found.users).await?,
    ))
}

async fn answer_list(caller: ScimCaller, asked: Result<ListRequest, ScimError>) -> HttpResponse {
    let asked = match asked {
        Ok(asked) => asked,
        Err(e) => return error(&e),
    };
    match find(&caller, &asked, false).await {
        Ok((total, resources)) => asked.answer(total, resources),
        Err(answer) => answer,
    }
}

/// `GET /Users`.
pub(super) async fn list(caller: ScimCaller, req: HttpRequest) -> HttpResponse {
    answer_list(caller, ListRequest::from_query(&req)).await
}

/// `POST /Users/.search` (§3.4.3).
pub(super) async fn search(caller: ScimCaller, bytes: web::Bytes) -> HttpResponse {
    answer_list(caller, ListRequest::from_search(&bytes)).await
}

/// `GET /Users/{id}`.
pub(super) async fn show(caller: ScimCaller, req: HttpRequest) -> HttpResponse {
    let (id, asked) = match user_id(&req).and_then(|id| Ok((id, ListRequest::from_query(&req)?))) {
        Ok(found) => found,
        Err(e) => return error(&e),
    };
    match caller.admin().user_by_id(caller.slug(), id).await {
        Ok(user) => one(&caller, &user, StatusCode::OK, Some(&asked)).await,
        Err(e) => failure(&e),
    }
}

/// `POST /Users`.
pub(super) async fn create(caller: ScimCaller, bytes: web::Bytes) -> HttpResponse {
    let made =
        json_body(&bytes).and_then(|object| from_scim(&object, None, caller.extension().as_ref()));
    let (data, password) = match made {
        Ok(made) => made,
        Err(e) => return error(&e),
    };
    match caller
        .admin()
        .provision_user(caller.operator(), caller.slug(), data, password)
        .await
    {
        Ok(user) => one(&caller, &user, StatusCode::CREATED, None).await,
        Err(e) => failure(&e),
    }
}

/// `PUT /Users/{id}`: the resource replaced whole.
pub(super) async fn replace(
    caller: ScimCaller,
    req: HttpRequest,
    bytes: web::Bytes,
) -> HttpResponse {
    let (id, version) = match user_id(&req).and_then(|id| Ok((id, if_match(&req)?))) {
        Ok(found) => found,
        Err(e) => return error(&e),
    };
    let current = match caller.admin().user_by_id(caller.slug(), id).await {
        Ok(user) => user,
        Err(e) => return failure(&e),
    };
    if let Err(refused) = caller.may_touch(&req, "users.update", id).await {
        return refused;
    }
    let extension = caller.extension();
    let made = json_body(&bytes)
        .and_then(|object| from_scim(&object, Some(&current.data), extension.as_ref()));
    let (data, password) = match made {
        Ok(made) => made,
        Err(e) => return error(&e),
    };
    write(
        &caller,
        id,
        version.or(Some(current.version)),
        data,
        password,
    )
    .await
}

/// `PATCH /Users/{id}` (§3.5.2): the operations applied to the resource as it is,
/// the result checked and written at the version read.
pub(super) async fn patch(caller: ScimCaller, req: HttpRequest, bytes: web::Bytes) -> HttpResponse {
    let (id, version) = match user_id(&req).and_then(|id| Ok((id, if_match(&req)?))) {
        Ok(found) => found,
        Err(e) => return error(&e),
    };
    let request = match PatchRequest::from_slice(&bytes) {
        Ok(request) => request,
        Err(e) => return error(&e),
    };
    let current = match caller.admin().user_by_id(caller.slug(), id).await {
        Ok(user) => user,
        Err(e) => return failure(&e),
    };
    if let Err(refused) = caller.may_touch(&req, "users.update", id).await {
        return refused;
    }
    if version.is_some_and(|v| v != current.version) {
        return error(&ScimError::new(
            412,
            None,
            "the resource changed since the version in If-Match",
        ));
    }
    let extension = caller.extension();
    let mut patched = to_scim(&current, &[], &caller.base(), extension.as_ref());
    let outcome = match apply_patch(&mut patched, &request.operations) {
        Ok(outcome) => outcome,
        Err(e) => return error(&e),
    };
    if let Some(read_only) = outcome.touched.iter().find(|path| {
        path.urn.is_none() && ["id", "meta", "groups"].iter().any(|a| path.is_named(a))
    }) {
        return error(&ScimError::new(
            400,
            Some(scim_type::MUTABILITY),
            format!("`{read_only}` is read-only"),
        ));
    }
    if !outcome.changed {
        return one(&caller, &current, StatusCode::OK, None).await;
    }
    let Value::Object(object) = patched else {
        return error(&ScimError::new(500, None, "the request failed"));
    };
    let (data, password) = match from_scim(&object, Some(&current.data), extension.as_ref()) {
        Ok(made) => made,
        Err(e) => return error(&e),
    };
    write(&caller, id, Some(current.version), data, password).await
}

async fn write(
    caller: &ScimCaller,
    id: UserId,
    version: Option<i64>,
    data: UserData,
    password: Option<Zeroizing<String>>,
) -> HttpResponse {
    match caller
        .admin()
        .replace_user(
            caller.operator(),
            caller.slug(),
            id,
            version,
            data,
            password,
        )
        .await
    {
        Ok(user) => one(caller, &user, StatusCode::OK, None).await,
        Err(e) => failure(&e),
    }
}

/// `DELETE /Users/{id}`: the user and what is theirs, as the admin API's delete.
pub(super) async fn delete(caller: ScimCaller, req: HttpRequest) -> HttpResponse {
    let id = match user_id(&req) {
        Ok(id) => id,
        Err(e) => return error(&e),
    };
    if let Err(refused) = caller.may_touch(&req, "users.delete", id).await {
        return refused;
    }
    let why = match Reason::new("deprovisioned by SCIM") {
        Ok(why) => why,
        Err(e) => return failure(&e),
    };
    match caller
        .admin()
        .delete_user(caller.operator(), caller.slug(), id, &why)
        .await
    {
        Ok(_) => HttpResponse::NoContent().finish(),
        Err(e) => failure(&e),
    }
}
