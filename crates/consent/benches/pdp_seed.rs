//! Not a benchmark: the seeding step of `cargo xtask bench-pdp`. It fills a tenant
//! of a running server's database with what `benches/realistic.cedar` speaks about —
//! users with roles, groups, a department attribute and (for most) a consent to the
//! `analytics` purpose for the benchmark's PEP client — through the same
//! repositories and consent service the server uses, and prints the users' ids, one
//! `user <id>` line each, for the load generator.
//!
//! It lives here because xtask depends on nothing and the CLI has no command to
//! create users. Usage (cargo adds `--bench`, which is ignored):
//!
//! ```sh
//! cargo bench -p gatehouse-consent --bench pdp_seed -- <database url> <tenant slug> <client id> <users>
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use gatehouse_consent::consents::{Channel, Consents};
use gatehouse_core::events::EventBus;
use gatehouse_core::{SharedClock, SystemClock};
use gatehouse_identity_store::db::{self, ConnectOptions};
use gatehouse_identity_store::purposes::{LegalBasis, PurposeData};
use gatehouse_identity_store::users::{self, Email, UserData};
use gatehouse_identity_store::{PageRequest, groups, roles, tenants};
use serde_json::json;

const TYPES: [&str; 10] = [
    "document", "invoice", "ticket", "project", "report", "customer", "contract", "payroll",
    "asset", "order",
];
const EXTRA_ROLES: [&str; 5] = [
    "auditor",
    "integration",
    "data-steward",
    "security-officer",
    "admin",
];
const GROUPS: [&str; 5] = ["Finance", "Support", "Sales", "Engineering", "Legal"];
const DEPARTMENTS: [&str; 6] = ["sales", "finance", "support", "engineering", "legal", "hr"];
const PURPOSE: &str = "analytics";

/// A small deterministic generator: the same seed gives the same tenant.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [url, slug, client, count] = args.as_slice() else {
        eprintln!("usage: pdp_seed <database url> <tenant slug> <client id> <users>");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("a number of users");
    let pool = db::pool(&ConnectOptions::new(url.clone())).expect("database");
    let clock: SharedClock = Arc::new(SystemClock);
    let now = clock.now();
    let mut conn = pool.get().expect("connection");
    let tenant = tenants::find_by_slug(&mut conn, slug)
        .expect("tenant lookup")
        .expect("the tenant exists")
        .id;

    // The server's own master key (dev mode: beside the database), so the audit
    // chain this writes stays the server's chain.
    let data_dir = url
        .strip_prefix("sqlite://")
        .and_then(|path| std::path::Path::new(path).parent())
        .expect("a sqlite:// URL inside the server's data directory");
    let config = gatehouse_core::config::Config {
        data_dir: data_dir.to_owned(),
        ..gatehouse_core::config::Config::default()
    };
    let (cipher, _) = gatehouse_core::secrets::Cipher::load(&config).expect("the master key");
    let consents = Consents::new(pool.clone(), cipher, clock.clone(), EventBus::in_process());
    let purpose = consents
        .define_purpose(
            tenant,
            "system",
            PurposeData {
                slug: PURPOSE.into(),
                name: "Analytics".into(),
                description: "Usage analytics".into(),
                scopes: vec![],
                legal_basis: LegalBasis::Consent,
            },
        )
        .expect("purpose");

    let mut role_ids = Vec::new();
    for name in TYPES
        .iter()
        .flat_map(|t| {
            ["reader", "editor", "manager"]
                .into_iter()
                .map(move |k| format!("{t}-{k}"))
        })
        .chain(EXTRA_ROLES.iter().map(|r| (*r).to_owned()))
    {
        let role = match roles::create(
            &mut conn,
            now,
            tenant,
            roles::RoleData {
                name: name.clone(),
                description: None,
            },
        ) {
            Ok(role) => role,
            // `admin` exists from the bootstrap.
            Err(_) => roles::list(&mut conn, tenant, &PageRequest::first(200))
                .expect("roles")
                .items
                .into_iter()
                .find(|r| r.name == name)
                .expect("the role exists"),
        };
        role_ids.push((name, role.id));
    }
    let mut group_ids = Vec::new();
    for name in GROUPS {
        let group = groups::create(
            &mut conn,
            now,
            tenant,
            groups::GroupData {
                display_name: name.into(),
                external_id: None,
            },
        )
        .expect("group");
        group_ids.push(group.id);
    }

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..count {
        let mut attributes = serde_json::Map::new();
        attributes.insert(
            "department".into(),
            json!(DEPARTMENTS[rng.below(DEPARTMENTS.len())]),
        );
        let user = users::create(
            &mut conn,
            now,
            tenant,
            UserData {
                emails: vec![Email {
                    value: format!("bench-{i}@example.test"),
                    kind: None,
                    primary: true,
                    // One in ten unverified: `verified-users-read` then does not apply.
                    verified: i % 10 != 0,
                }],
                custom_attributes: attributes,
                // One in fifty deactivated.
                active: i % 50 != 7,
                ..UserData::new(format!("bench-{i}"))
            },
        )
        .expect("user");
        // Most users hold one or two type roles; a few an extra role.
        let type_roles = 30;
        for _ in 0..1 + rng.below(2) {
            let (_, role) = &role_ids[rng.below(type_roles)];
            let _ = roles::assign(&mut conn, now, tenant, *role, user.id);
        }
        if rng.below(10) == 0 {
            // One of the first four extra roles; admin for 1 in 250 users overall.
            let pick = rng.below(EXTRA_ROLES.len() * 10);
            let index = if pick < EXTRA_ROLES.len() * 10 - 2 {
                type_roles + pick % (EXTRA_ROLES.len() - 1)
            } else {
                type_roles + EXTRA_ROLES.len() - 1
            };
            let (_, role) = &role_ids[index];
            let _ = roles::assign(&mut conn, now, tenant, *role, user.id);
        }
        if rng.below(2) == 0 {
            let group = group_ids[rng.below(group_ids.len())];
            groups::add_member(&mut conn, now, tenant, group, user.id).expect("member");
        }
        // Seven in ten consented to analytics for the PEP.
        if rng.below(10) < 7 {
            consents
                .grant(
                    tenant,
                    user.id,
                    client,
                    PURPOSE,
                    purpose.version,
                    Channel::Api,
                    None,
                )
                .expect("consent");
        }
        println!("user {}", user.id);
    }
}
