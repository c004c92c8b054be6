//! Answers decided early — an unknown tenant, a refused token or form, an invalid
//! request — carried through actix's error path, so extractors and handlers stop
//! with `?` instead of `match … { Err(response) => return response }`. Actix turns
//! the error back into exactly this response before any middleware sees it.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};

use crate::state::AppState;

/// The future an extractor of this crate returns.
pub(crate) type Extracting<T> = Pin<Box<dyn Future<Output = Result<T, actix_web::Error>>>>;

/// What a handler that may answer early returns.
pub(crate) type Answer = Result<HttpResponse, actix_web::Error>;

/// Carries a finished response through actix's error path.
pub(crate) fn answered(response: HttpResponse) -> actix_web::Error {
    actix_web::error::InternalError::from_response("answered early", response).into()
}

/// The application state, or `otherwise` as the answer (a route mounted without it
/// is a wiring mistake, answered in the adapter's own error shape).
pub(crate) fn app_state(
    req: &HttpRequest,
    otherwise: impl FnOnce() -> HttpResponse,
) -> Result<web::Data<AppState>, actix_web::Error> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| answered(otherwise()))
}

/// `FromRequest::from_request` for an extractor that an async function makes from
/// the request and its whole body.
pub(crate) fn with_body<T, Made>(
    req: &HttpRequest,
    payload: &mut actix_web::dev::Payload,
    make: impl FnOnce(HttpRequest, web::Bytes) -> Made + 'static,
) -> Extracting<T>
where
    Made: Future<Output = Result<T, actix_web::Error>> + 'static,
{
    let req = req.clone();
    let body = web::Bytes::from_request(&req, payload);
    Box::pin(async move { make(req, body.await?).await })
}

/// Implements `FromRequest` for an extractor that an async function makes from the
/// request alone (it reads no body): `from_request_with!(Caller, Caller::extract)`.
macro_rules! from_request_with {
    ($extractor:ty, $make:path) => {
        impl actix_web::FromRequest for $extractor {
            type Error = actix_web::Error;
            type Future = $crate::http::answer::Extracting<Self>;

            fn from_request(
                req: &actix_web::HttpRequest,
                _: &mut actix_web::dev::Payload,
            ) -> Self::Future {
                Box::pin($make(req.clone()))
            }
        }
    };
}
pub(crate) use from_request_with;
