//! How many sign-up mails go out: without a limit, anyone can make Gatehouse mail an
//! address over and over through the sign-up form ("someone tried to sign up with
//! your address" for a known address, a verification link for a new one).
//!
//! [`signup_mail_allowed`] counts every sign-up per target address and per
//! client address and says whether its mail may still go. It never looks at
//! whether the address has an account and never changes the answer, so the
//! request does the same work (two counter writes) for every address, and only what
//! leaves the request path afterwards (the mail, or none) differs. Counters live in
//! `rate_limits`, so every node shares them.

use chrono::{DateTime, Duration, Utc};
use gatehouse_core::ids::TenantId;
use gatehouse_identity_store::{AnyConnection, fold_key, rate_limits};

use crate::AuthnError;
use crate::service::ClientInfo;
use crate::settings::AuthnSettings;

/// The rate-limit bucket for sign-up mails to one address: the store's fold, so
/// width or case variants of one address are one bucket.
pub fn address_bucket(address: &str) -> String {
    format!("signup-mail:{}", fold_key(address))
}

/// The rate-limit bucket for sign-up mails caused from one client address.
pub fn client_bucket(ip: &str) -> String {
    format!("signup-mail-ip:{ip}")
}

/// Counts one sign-up for `address` from `client`; whether its mail (whichever it
/// is) may be sent: at most `registration.signup_mails_per_hour` per target address
/// and `registration.signup_mails_per_ip_hour` per client address. Call it for every
/// sign-up that passed validation, before looking the address up, and answer the
/// same either way: only the mail is held back. Each count commits on its own.
pub fn signup_mail_allowed(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    settings: &AuthnSettings,
    address: &str,
    client: &ClientInfo,
) -> Result<bool, AuthnError> {
    let hour = Duration::hours(1);
    let mut buckets = vec![(address_bucket(address), settings.signup_mails_per_hour)];
    if let Some(ip) = &client.ip {
        buckets.push((client_bucket(ip), settings.signup_mails_per_ip_hour));
    }
    let mut allowed = true;
    // Every bucket counts, even after one said no: the same writes each time.
    for (bucket, per_hour) in buckets {
        let counter = rate_limits::record_failure(conn, now, tenant, &bucket, hour, |_| None)?;
        allowed &= counter.failures <= per_hour;
    }
    if !allowed {
        tracing::info!("sign-up mail held back: too many for the address or the client");
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use gatehouse_core::config::Config;
    use gatehouse_core::events::EventBus;
    use gatehouse_core::secrets::{Cipher, MasterKey};
    use gatehouse_core::{Clock, ManualClock};
    use gatehouse_identity_store::db::ConnectOptions;
    use gatehouse_identity_store::testing::TestDb;
    use gatehouse_identity_store::users::{self, Email, UserData};
    use gatehouse_identity_store::{Pool, PooledConnection};

    use super::*;
    use crate::Authn;
    use crate::testing::kit::create_acme;

    const IP: &str = "203.0.113.5";

    struct Env {
        authn: Authn,
        pool: Pool,
        clock: ManualClock,
        tenant: TenantId,
        _dir: tempfile::TempDir,
    }

    impl Env {
        fn new(db: &TestDb) -> Env {
            let dir = tempfile::tempdir().unwrap();
            let mut config = Config {
                data_dir: dir.path().join("data"),
                ..Config::default()
            };
            config.registration.signup_mails_per_hour = 3;
            config.registration.signup_mails_per_ip_hour = 5;
            let pool = gatehouse_identity_store::db::pool(&ConnectOptions {
                pool_size: 2,
                ..ConnectOptions::new(&db.url)
            })
            .unwrap();
            let clock = ManualClock::fixed();
            let tenant = create_acme(
                &mut pool.get().unwrap(),
                clock.now(),
                serde_json::Map::new(),
            )
            .id;
            let authn = Authn::new(
                &config,
                pool.clone(),
                Cipher::new(vec![MasterKey::generate()]).unwrap(),
                Arc::new(clock.clone()),
                EventBus::in_process(),
                crate::testing::PlainMailRenderer::shared(),
            )
            .unwrap();
            Env {
                authn,
                pool,
                clock,
                tenant,
                _dir: dir,
            }
        }

        fn conn(&self) -> PooledConnection {
            self.pool.get().unwrap()
        }

        fn allowed(&self, address: &str, ip: Option<&str>) -> bool {
            let client = ClientInfo {
                ip: ip.map(str::to_owned),
                ..ClientInfo::default()
            };
            signup_mail_allowed(
                &mut self.conn(),
                self.clock.now(),
                self.tenant,
                self.authn.settings(),
                address,
                &client,
            )
            .unwrap()
        }

        /// How many sign-ups each bucket counted.
        fn counters(&self, buckets: &[String]) -> Vec<Option<i32>> {
            buckets
                .iter()
                .map(|bucket| {
                    rate_limits::get(&mut self.conn(), self.tenant, bucket)
                        .unwrap()
                        .map(|c| c.failures)
                })
                .collect()
        }
    }

    gatehouse_identity_store::backend_tests! {
        fn a_few_mails_per_address_and_hour_whether_or_not_it_has_an_account(db) {
            let env = Env::new(db);
            users::create(
                &mut env.conn(),
                env.clock.now(),
                env.tenant,
                UserData {
                    emails: vec![Email {
                        value: "known@example.com".into(),
                        kind: None,
                        primary: true,
                        verified: true,
                    }],
                    ..UserData::new("known@example.com")
                },
            )
            .unwrap();
            // One client address per attempt: only the target address's limit counts.
            let decisions = |address: &str, from: usize| -> Vec<bool> {
                (0..5)
                    .map(|i| env.allowed(address, Some(&format!("198.51.100.{}", from + i))))
                    .collect()
            };
            let known = decisions("known@example.com", 0);
            let unknown = decisions("unknown@example.com", 10);
            assert_eq!(known, [true, true, true, false, false]);
            assert_eq!(known, unknown, "the decision tells nothing about the account");
            let buckets = [
                address_bucket("known@example.com"),
                address_bucket("unknown@example.com"),
            ];
            assert_eq!(
                env.counters(&buckets),
                [Some(5), Some(5)],
                "the same writes for both"
            );
            // Case and width variants are the same mailbox.
            assert!(!env.allowed("KNOWN@Example.com", Some("198.51.100.99")));
            assert!(!env.allowed("ｋｎｏｗｎ@example.com", Some("198.51.100.98")));
            assert!(env.allowed("other@example.com", Some("198.51.100.97")));

            // The hour passes: mail goes again.
            env.clock.advance(Duration::hours(1));
            assert!(env.allowed("known@example.com", Some("198.51.100.50")));
        }

        fn a_client_address_causes_a_few_mails_across_addresses(db) {
            let env = Env::new(db);
            let decisions: Vec<bool> = (0..7)
                .map(|i| env.allowed(&format!("victim{i}@example.com"), Some(IP)))
                .collect();
            assert_eq!(decisions, [true, true, true, true, true, false, false]);
            // Both counters counted every attempt, even those already refused.
            assert_eq!(
                env.counters(&[client_bucket(IP), address_bucket("victim6@example.com")]),
                [Some(7), Some(1)]
            );
            assert!(env.allowed("victim7@example.com", Some("192.0.2.1")), "another client");
            // Without a known client address, only the target address counts.
            assert!(env.allowed("victim8@example.com", None));
        }
    }
}
