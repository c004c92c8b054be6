//! Server tests over real HTTP: `startup` and `cli` run the real `gatehouse` binary;
//! `pages` runs the same server in-process so the test can move its clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_api;
mod admin_contract;
mod admin_governance;
mod admin_platform;
mod admin_roles;
mod authorize_params;
mod authzen;
mod browser_apps;
mod cli;
mod cli_tenants;
mod cli_themes;
mod client_assertion;
mod cluster;
mod code_flow;
mod consent;
mod federation_oidc;
mod federation_saml;
mod input_hygiene;
mod key_rotation;
mod local_config;
mod logout;
mod mfa;
mod oauth;
mod oidc_client;
mod operations;
mod page_journeys;
mod pages;
mod par;
mod passkeys;
mod production_path;
mod proxies;
mod recovery;
mod scim;
mod scripted_op;
mod startup;
mod support;
mod web_kit;
