//! actix-web integration: the [`AccessToken`] extractor and the [`RequireToken`]
//! middleware. Both find the [`Verifier`] in the app data (`.app_data(verifier)`,
//! or `web::Data<Verifier>`).

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::EitherBody;
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{AUTHORIZATION, HeaderMap};
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use crate::claims::Claims;
use crate::error::BearerError;
use crate::requirement::Requirement;
use crate::verifier::Verifier;

/// A verified access token from `Authorization: Bearer` (RFC 6750 §2.1).
///
/// As an extractor it answers a missing or invalid token itself (401 with the
/// challenge); the handler then checks what it needs with
/// [`AccessToken::require`]. A token is verified once per request: the middleware
/// and the extractor share the result through the request's extensions.
#[derive(Debug, Clone)]
pub struct AccessToken {
    claims: Claims,
    verified_at: i64,
}

impl AccessToken {
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    pub fn into_claims(self) -> Claims {
        self.claims
    }

    /// Checks `requirement` as of when the token was verified (the verifier's
    /// clock); the error is the response to send.
    pub fn require(&self, requirement: &Requirement) -> Result<(), BearerError> {
        requirement.check(&self.claims, self.verified_at)
    }
}

/// The token of `Authorization: Bearer <token>`. Other schemes count as no token
/// (RFC 6750 §3.1: a request without bearer credentials gets no error code).
/// The query and form-body methods of RFC 6750 §2.2–2.3 are not accepted: tokens
/// in URLs end up in logs.
fn bearer_token(headers: &HeaderMap) -> Result<&str, BearerError> {
    let mut values = headers.get_all(AUTHORIZATION);
    let Some(value) = values.next() else {
        return Err(BearerError::Missing);
    };
    if values.next().is_some() {
        return Err(BearerError::InvalidRequest(
            "More than one Authorization header",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| BearerError::InvalidRequest("The Authorization header is not ASCII"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    // Auth schemes are case-insensitive (RFC 9110 §11.1).
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Err(BearerError::Missing);
    }
    let token = token.trim_start_matches(' ');
    // b64token (RFC 6750 §2.1): a JWT always fits it.
    let body = token.trim_end_matches('=');
    let fits = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !fits {
        return Err(BearerError::InvalidRequest("Malformed bearer token"));
    }
    Ok(token)
}

fn verifier_of(req: &HttpRequest) -> Option<Verifier> {
    req.app_data::<Verifier>().cloned().or_else(|| {
        req.app_data::<web::Data<Verifier>>()
            .map(|data| data.get_ref().clone())
    })
}

impl FromRequest for AccessToken {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        if let Some(token) = req.extensions().get::<AccessToken>().cloned() {
            return Box::pin(ready(Ok(token)));
        }
        let req = req.clone();
        Box::pin(async move {
            let Some(verifier) = verifier_of(&req) else {
                // A wiring mistake of the API, not the client's: say so in the log.
                tracing::error!("AccessToken used without a Verifier in the app data");
                return Err(actix_web::error::ErrorInternalServerError(
                    "no access-token verifier configured",
                ));
            };
            let token = bearer_token(req.headers())?.to_owned();
            let claims = verifier.verify(&token).await.map_err(|error| {
                tracing::debug!(%error, "access token refused");
                BearerError::from(error)
            })?;
            let token = AccessToken {
                claims,
                verified_at: verifier.now(),
            };
            req.extensions_mut().insert(token.clone());
            Ok(token)
        })
    }
}

/// Middleware that admits a request only with a valid access token meeting a
/// [`Requirement`]; otherwise it answers with the RFC 6750 / RFC 9470 challenge.
/// Handlers behind it can still take [`AccessToken`] (verified once).
///
/// ```no_run
/// # use actix_web::{App, web};
/// # use gatehouse_resource_server::{RequireToken, Requirement};
/// # async fn orders() -> &'static str { "[]" }
/// App::new().service(
///     web::resource("/orders")
///         .wrap(RequireToken::new(Requirement::default().scope("orders:read")))
///         .route(web::get().to(orders)),
/// );
/// ```
#[derive(Debug, Clone)]
pub struct RequireToken {
    requirement: Rc<Requirement>,
}

impl RequireToken {
    pub fn new(requirement: Requirement) -> Self {
        RequireToken {
            requirement: Rc::new(requirement),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequireToken
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RequireTokenMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequireTokenMiddleware {
            service: Rc::new(service),
            requirement: Rc::clone(&self.requirement),
        }))
    }
}

/// The service [`RequireToken`] wraps around a route.
#[derive(Debug)]
pub struct RequireTokenMiddleware<S> {
    service: Rc<S>,
    requirement: Rc<Requirement>,
}

impl<S, B> Service<ServiceRequest> for RequireTokenMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let requirement = Rc::clone(&self.requirement);
        Box::pin(async move {
            let outcome = match AccessToken::extract(req.request()).await {
                Ok(token) => token.require(&requirement).map_err(actix_web::Error::from),
                Err(error) => Err(error),
            };
            match outcome {
                Ok(()) => service
                    .call(req)
                    .await
                    .map(ServiceResponse::map_into_left_body),
                // Answered here rather than returned as an error, so that outer
                // middleware (access logs, metrics) sees a response like any other.
                Err(error) => Ok(req.error_response(error).map_into_right_body()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(AUTHORIZATION, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn bearer_credentials_are_read_per_rfc_6750() {
        assert_eq!(
            bearer_token(&headers(&["Bearer abc.DEF-_~+/=="])),
            Ok("abc.DEF-_~+/==")
        );
        assert_eq!(bearer_token(&headers(&["bearer  abc"])), Ok("abc"));
        assert_eq!(bearer_token(&headers(&[])), Err(BearerError::Missing));
        assert_eq!(
            bearer_token(&headers(&["Basic dXNlcjpwYXNz"])),
            Err(BearerError::Missing)
        );
        assert_eq!(
            bearer_token(&headers(&["BearerX abc"])),
            Err(BearerError::Missing)
        );
        for malformed in [
            &["Bearer"][..],
            &["Bearer "],
            &["Bearer a b"],
            &["Bearer a=b"],
            &["Bearer ==="],
            &["Bearer a", "Bearer b"],
        ] {
            assert!(
                matches!(
                    bearer_token(&headers(malformed)),
                    Err(BearerError::InvalidRequest(_))
                ),
                "{malformed:?}"
            );
        }
    }
}
