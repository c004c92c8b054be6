//! The `gatehouse` server: command line, configuration, application state, HTTP
//! server and middleware. Feature crates expose their routes; this crate mounts them.

mod admin_cli;
mod authzen;
mod bearer;
pub mod bootstrap;
pub mod cli;
mod clients_cli;
mod consent_api;
mod error;
pub mod http;
pub mod key_schedule;
mod keys_cli;
mod logging;
mod oauth;
pub mod pages;
mod policy_cli;
mod purposes_cli;
pub mod reactions;
pub mod state;
pub mod ui;
mod users_cli;

pub use error::ServerError;
