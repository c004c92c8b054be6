//! For APIs protected by Gatehouse: verify JWT access tokens and demand step-up.
//!
//! - [`Verifier`]: checks an access token (RFC 9068 §4) against the issuer's JWK Set,
//!   found through OpenID discovery, cached, and fetched again when a token names a
//!   key it does not know (at most once per cool-down).
//! - [`AccessToken`]: an actix-web extractor reading `Authorization: Bearer`
//!   (RFC 6750 §2.1); [`RequireToken`]: middleware that demands a [`Requirement`].
//! - [`Requirement`]: scopes, `acr_values` and `max_age`; a token that falls short is
//!   answered with [`BearerError`]: `invalid_token`, `insufficient_scope` or the
//!   RFC 9470 `insufficient_user_authentication` challenge.
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use gatehouse_resource_server::{AccessToken, RequireToken, Requirement, Verifier, acr};
//!
//! async fn export(token: AccessToken) -> String {
//!     format!("export for {}", token.claims().sub)
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let verifier = Verifier::builder("https://id.example.com", "https://orders.example.com")
//!     .build()
//!     .map_err(std::io::Error::other)?;
//! HttpServer::new(move || {
//!     App::new().app_data(verifier.clone()).route(
//!         "/orders/export",
//!         web::get().to(export).wrap(RequireToken::new(
//!             Requirement::default().acr(acr::AAL2).max_age(300),
//!         )),
//!     )
//! })
//! .bind("127.0.0.1:8081")?
//! .run()
//! .await
//! # }
//! ```
//!
//! See `docs/resource-server.md` and `examples/protected_api.rs`.

pub mod acr;
mod actix;
mod claims;
mod error;
mod jwk;
mod requirement;
mod verifier;

pub use actix::{AccessToken, RequireToken, RequireTokenMiddleware};
pub use claims::Claims;
pub use error::{BearerError, Rejection, VerifyError};
pub use jwk::Algorithm;
pub use requirement::Requirement;
pub use verifier::{BuildError, Clock, SystemClock, Verifier, VerifierBuilder};
