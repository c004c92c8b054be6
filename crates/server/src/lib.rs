//! The `gatehouse` server: the one binary and every adapter around the use-case
//! crates. Its folders are the adapters:
//! - `http/`: the kit every HTTP adapter shares (tenant and bearer extraction, CSRF,
//!   cookies, input hygiene, deadlines, metrics, request logging, operations routes);
//! - `pages/` and `ui/`: the themed end-user pages and their templates;
//! - `oauth/`: the OAuth 2.0 / OpenID Connect endpoints;
//! - `api/`: the JSON APIs (consent, AuthZEN);
//! - `cli/`: the command line, a thin adapter over `crates/admin`.

mod api;
pub mod bootstrap;
pub mod cli;
mod error;
pub mod federation_schedule;
pub mod http;
pub mod key_schedule;
mod logging;
mod oauth;
pub mod pages;
pub mod reactions;
pub mod state;
pub mod ui;

pub use error::ServerError;
