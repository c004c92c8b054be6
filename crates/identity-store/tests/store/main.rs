//! Repository tests. Every test runs twice, on SQLite and on PostgreSQL
//! (`backend_tests!`), each in its own fresh database.

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod account_recoveries;
mod audit;
mod clients;
mod consent;
mod credentials;
mod events;
mod federation;
mod grants;
mod groups_roles;
mod migrations;
mod policies;
mod pushed_requests;
mod sessions;
mod signing_keys;
mod tenants;
mod user_search;
mod users;
mod webauthn_challenges;

use chrono::{DateTime, Utc};
use gatehouse_core::ids::TenantId;
use gatehouse_core::{Clock, ManualClock};
use gatehouse_identity_store::AnyConnection;
use gatehouse_identity_store::tenants::TenantData;

pub fn now() -> DateTime<Utc> {
    ManualClock::fixed().now()
}

pub fn tenant(conn: &mut AnyConnection, slug: &str) -> TenantId {
    gatehouse_identity_store::tenants::create(
        conn,
        now(),
        TenantData {
            slug: slug.into(),
            display_name: format!("Tenant {slug}"),
            ..TenantData::default()
        },
    )
    .unwrap()
    .id
}

/// A tenant and a second one (`{slug}-other`), for showing that nothing of the
/// first is found through the second.
pub fn tenant_and_other(conn: &mut AnyConnection, slug: &str) -> (TenantId, TenantId) {
    (tenant(conn, slug), tenant(conn, &format!("{slug}-other")))
}
