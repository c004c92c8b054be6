//! RFC 9457 problem details: how the JSON APIs that are not OAuth (the consent API,
//! AuthZEN; later the admin API and SCIM) answer a failure. Each answer is
//! `application/problem+json` with `type` (a URN naming the problem), `title`,
//! `status` and `detail`; the members `error` and `error_description` repeat the
//! code and the detail in the shape these APIs answered with before, so existing
//! clients keep working. OAuth endpoints keep RFC 6749's shape (`oauth/`).

use actix_web::HttpResponse;
use actix_web::http::{StatusCode, header};
use gatehouse_admin::AdminError;
use gatehouse_authn::AuthnError;
use gatehouse_consent::ConsentError;
use gatehouse_identity_store::StoreError;
use serde_json::{Value, json};

/// The media type of a problem details object (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem details answer; `code` names the problem (`invalid_request`,
/// `not_found`, …) and becomes its type `urn:gatehouse:problem:{code}`.
pub(crate) fn problem(status: StatusCode, code: &str, detail: &str) -> HttpResponse {
    answer(status, code, detail, json!({}))
}

/// A problem naming the member of the request at fault (`field`, an extension
/// member, RFC 9457 §3.2).
pub(crate) fn invalid_field(field: &str, detail: &str) -> HttpResponse {
    answer(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        detail,
        json!({ "field": field }),
    )
}

/// 403: the operator policies refuse this action; `reason` is the decision's
/// reason code, and `acr_values` what a console session must step up to. The
/// bearer challenge says what would do: a stronger sign-in (RFC 9470's
/// `insufficient_user_authentication`), or a role's scope (RFC 6750's
/// `insufficient_scope`, naming the scopes of the roles that may).
fn denied(action: &str, reason: &str, acr_values: Option<&str>, scopes: &[String]) -> HttpResponse {
    let mut members = json!({ "action": action, "reason": reason });
    let challenge = match acr_values {
        Some(acr) => {
            members["acr_values"] = json!(acr);
            format!("Bearer error=\"insufficient_user_authentication\", acr_values=\"{acr}\"")
        }
        None => format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\"",
            scopes.join(" ")
        ),
    };
    let mut response = answer(
        StatusCode::FORBIDDEN,
        "forbidden",
        &format!("the caller's roles do not permit `{action}` ({reason})"),
        members,
    );
    if let Ok(value) = header::HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// `members` are extension members (RFC 9457 §3.2) added to the standard ones.
fn answer(status: StatusCode, code: &str, detail: &str, members: Value) -> HttpResponse {
    let mut body = json!({
        "type": format!("urn:gatehouse:problem:{code}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "error": code,
        "error_description": detail,
    });
    if let (Some(body), Value::Object(members)) = (body.as_object_mut(), members) {
        body.extend(members);
    }
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type(PROBLEM_JSON)
        .body(body.to_string())
}

/// 503 with Retry-After: the database (or a service) could not be reached in time.
fn unavailable(detail: &str) -> HttpResponse {
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        detail,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// The answer to a refusal by the store, noticed by any layer: an unknown thing is
/// 404, input the store refuses 400, a taken name or a stale version 409, an
/// unreachable database 503. `None` for the store's own failures (the caller's
/// 500).
fn store_failure(store: &StoreError) -> Option<HttpResponse> {
    Some(match store {
        StoreError::NotFound { entity } => problem(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("unknown {entity}"),
        ),
        StoreError::Invalid { .. } => problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &store.to_string(),
        ),
        StoreError::Conflict { .. } | StoreError::StaleVersion { .. } => {
            problem(StatusCode::CONFLICT, "conflict", &store.to_string())
        }
        _ if store.is_unavailable() => {
            tracing::warn!(error = %store, "database out of reach");
            unavailable("the database could not be reached in time; retry shortly")
        }
        _ => return None,
    })
}

/// 500 for a failure that is the server's own, logged with `what` failed.
fn server_failure(what: &str, error: &dyn std::fmt::Display) -> HttpResponse {
    tracing::error!(error = %error, "{what} failed");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the request failed",
    )
}

/// The answer to a failure of the admin layer, for the admin API: input at fault
/// names its field; a missing or taken name is 404 or 409; only the server's own
/// failures are 5xx.
pub(crate) fn admin_failure(e: &AdminError) -> HttpResponse {
    if let Some(answer) = e.store_error().and_then(store_failure) {
        return answer;
    }
    match e {
        AdminError::Invalid { field, message } => {
            invalid_field(field, &format!("{field} {message}"))
        }
        AdminError::Authn(AuthnError::InvalidEmail) => {
            invalid_field("email", "email is not a valid address")
        }
        AdminError::Authn(AuthnError::PasswordPolicy(violation)) => {
            invalid_field("password", &violation.to_string())
        }
        AdminError::Denied {
            action,
            reason,
            acr_values,
            scopes,
        } => denied(action, reason, acr_values.as_deref(), scopes),
        AdminError::NotFound(message) => problem(StatusCode::NOT_FOUND, "not_found", message),
        AdminError::Conflict(message) => problem(StatusCode::CONFLICT, "conflict", message),
        AdminError::Consent(consent) => consent_failure(consent),
        AdminError::Unavailable(message) => {
            // The message is the server's own (a key store, a task): logged, not told.
            tracing::warn!(%message, "admin service unavailable");
            unavailable("a service could not be reached in time; retry shortly")
        }
        other => server_failure("admin API", other),
    }
}

/// The answer to a failure of the consent crate, for this API and AuthZEN's: what
/// the caller sent wrong — the service's checks or the store's (`StoreError::
/// Invalid`, a uniqueness conflict, a stale version) — is a 4xx naming it, so input
/// never reaches the caller as a 500; only what is the server's own is.
pub(crate) fn consent_failure(e: &ConsentError) -> HttpResponse {
    if let ConsentError::Store(store) = e
        && let Some(answer) = store_failure(store)
    {
        return answer;
    }
    match e {
        ConsentError::NotFound(what) => problem(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("unknown {what}"),
        ),
        ConsentError::Invalid(message) | ConsentError::Policy(message) => {
            problem(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
        ConsentError::OutdatedVersion { latest, .. } => problem(
            StatusCode::CONFLICT,
            "outdated_version",
            &format!("the purpose's current version is {latest}; show it to the user"),
        ),
        ConsentError::Unavailable(message) => {
            tracing::warn!(%message, "consent or policy service unavailable");
            unavailable(message)
        }
        other => server_failure("consent API", other),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn answered(e: ConsentError) -> (u16, serde_json::Value, Option<String>) {
        read(consent_failure(&e))
    }

    fn read(response: HttpResponse) -> (u16, serde_json::Value, Option<String>) {
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = actix_web::rt::System::new()
            .block_on(actix_web::body::to_bytes(response.into_body()))
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap(), retry)
    }

    /// What the caller sent wrong is never a 500, whichever layer noticed it.
    #[test]
    fn input_errors_are_4xx_and_only_the_servers_own_are_5xx() {
        let invalid = StoreError::Invalid {
            entity: "consent",
            message: "it would expire before it starts".into(),
        };
        let (status, body, _) = answered(ConsentError::Store(invalid));
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_request");
        assert_eq!(
            body["error_description"],
            "invalid consent: it would expire before it starts"
        );
        assert_eq!(
            answered(ConsentError::Invalid("context.acr must be 1..3".into())).0,
            400
        );
        let conflict = StoreError::StaleVersion { entity: "purpose" };
        assert_eq!(answered(ConsentError::Store(conflict)).0, 409);
        let missing = StoreError::NotFound { entity: "purpose" };
        assert_eq!(answered(ConsentError::Store(missing)).0, 404);
        let (status, body, retry) =
            answered(ConsentError::Unavailable("the decision log is full".into()));
        assert_eq!(status, 503);
        assert_eq!(body["error"], "temporarily_unavailable");
        assert_eq!(retry.as_deref(), Some("1"));
        let (status, body, _) = answered(ConsentError::Internal("secret detail".into()));
        assert_eq!(status, 500);
        assert!(!body.to_string().contains("secret detail"));
    }

    /// The store refuses input the same whichever layer passed its error up: a
    /// role name the store refuses, reported through authn, is a 400, not a 500.
    #[test]
    fn a_store_refusal_under_another_layer_is_still_the_callers_fault() {
        let invalid = || StoreError::Invalid {
            entity: "role",
            message: "name must be one word, not empty".into(),
        };
        for e in [
            AdminError::Store(invalid()),
            AdminError::Authn(AuthnError::Store(invalid())),
            AdminError::Consent(ConsentError::Store(invalid())),
        ] {
            let (status, body, _) = read(admin_failure(&e));
            assert_eq!(status, 400, "{e}");
            assert_eq!(body["error"], "invalid_request");
        }
        let stale = AdminError::Authn(AuthnError::Store(StoreError::StaleVersion {
            entity: "user",
        }));
        assert_eq!(read(admin_failure(&stale)).0, 409);
        let (status, body, _) = read(admin_failure(&AdminError::Authn(AuthnError::Internal(
            "secret detail".into(),
        ))));
        assert_eq!(status, 500);
        assert!(!body.to_string().contains("secret detail"));
    }

    #[test]
    fn a_problem_names_its_type_status_and_detail() {
        let response = problem(StatusCode::CONFLICT, "outdated_version", "show version 3");
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            PROBLEM_JSON
        );
        let (status, body, _) = answered(ConsentError::OutdatedVersion {
            latest: 3,
            purpose: "newsletter".into(),
        });
        assert_eq!(status, 409);
        assert_eq!(body["type"], "urn:gatehouse:problem:outdated_version");
        assert_eq!(body["title"], "Conflict");
        assert_eq!(body["status"], 409);
        assert!(body["detail"].as_str().unwrap().contains('3'));
        assert_eq!(body["detail"], body["error_description"]);
    }
}
