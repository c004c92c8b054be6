//! `sign_in`: the tests of the public surface (moved from `src/sign_in.rs`).

use chrono::Duration;
use chrono::Utc;
use gatehouse_core::Clock;
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_identity_store::credentials::{self, Credential};
use gatehouse_identity_store::db::Backend;
use gatehouse_identity_store::tenants::{self, TenantData};
use zeroize::Zeroizing;

use gatehouse_authn::AuthnError;
use gatehouse_authn::ClientInfo;
use gatehouse_authn::sign_in::*;
use gatehouse_authn::testing::kit::{self, IP, Kit, KitOptions, SeedUser, runtime, sign_in_with};

const PASSWORD: &str = "violet-harbor-quilt-97-lantern";

// A service on a throwaway database with one tenant.
kit_env!();

impl Env {
    /// Four pooled connections for the service; a hashing pool of its own.
    fn new(backend: Backend) -> Env {
        let kit = Kit::with(
            backend,
            KitOptions {
                connections: 4,
                hashing: Some((2, 64)),
                ..Default::default()
            },
            |_| {},
        );
        Env { kit }
    }

    /// `user` with a work address and [`PASSWORD`].
    fn work_user(&self, user: SeedUser<'_>) -> UserId {
        self.seed(SeedUser {
            password: Some(PASSWORD),
            kind: Some("work"),
            ..user
        })
    }

    fn user(&self, email: &str) -> UserId {
        self.work_user(SeedUser::new(email))
    }

    fn credential(&self, user: UserId) -> Credential {
        let mut conn = self.pool.get().unwrap();
        credentials::list_for_user(&mut conn, self.t(), user, None)
            .unwrap()
            .remove(0)
    }
}

fn signs_in_and_commits_everything(backend: Backend) {
    let env = Env::new(backend);
    let alice = env.user("alice@example.com");
    runtime().block_on(async {
        // A failure first, so the success has a failure count to forget.
        let wrong = env
            .sign_in("alice@example.com", "not-her-password", None)
            .await;
        assert!(
            matches!(wrong, Err(AuthnError::InvalidCredentials)),
            "{wrong:?}"
        );
        assert_eq!(env.failures(&account_bucket("alice@example.com")), Some(1));

        let first = env
            .sign_in("Alice@Example.com", PASSWORD, None)
            .await
            .unwrap();
        assert_eq!(first.session.user_id, alice);
        assert_eq!(env.failures(&account_bucket("alice@example.com")), None);
        assert_eq!(env.credential(alice).last_used_at, Some(env.clock.now()));
        assert_eq!(env.active_sessions(alice).len(), 1);

        // Signed in again: the browser's previous session is ended (rotation).
        let second = env
            .sign_in(
                "alice@example.com",
                PASSWORD,
                Some(first.secret.to_string()),
            )
            .await
            .unwrap();
        let live = env.active_sessions(alice);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].id, second.session.id);
    });
    assert_eq!(
        env.actions(),
        ["login.failed", "login.succeeded", "login.succeeded"]
    );
    // The IP's failure is not forgotten by the account's success.
    assert_eq!(env.failures(&ip_bucket(IP)), Some(1));
}

gatehouse_identity_store::on_both_backends!(signs_in_and_commits_everything);

#[test]
fn wrong_password_and_unknown_account_are_one_error_and_both_counted() {
    let env = Env::new(Backend::Sqlite);
    let bob = env.user("bob@example.com");
    runtime().block_on(async {
        let wrong = env
            .sign_in("bob@example.com", "not-his-password", None)
            .await;
        let unknown = env.sign_in("nobody@example.com", PASSWORD, None).await;
        assert!(
            matches!(wrong, Err(AuthnError::InvalidCredentials)),
            "{wrong:?}"
        );
        assert!(
            matches!(unknown, Err(AuthnError::InvalidCredentials)),
            "{unknown:?}"
        );
    });
    assert_eq!(env.failures(&account_bucket("bob@example.com")), Some(1));
    assert_eq!(env.failures(&account_bucket("nobody@example.com")), Some(1));
    assert_eq!(env.failures(&ip_bucket(IP)), Some(2));
    assert_eq!(env.credential(bob).last_used_at, None);
    assert!(env.active_sessions(bob).is_empty());
    assert_eq!(env.actions(), ["login.failed", "login.failed"]);
}

#[test]
fn a_locked_account_is_refused_even_with_the_right_password() {
    let env = Env::new(Backend::Sqlite);
    let carol = env.user("carol@example.com");
    let threshold = env.authn.settings().account_lockout_threshold;
    runtime().block_on(async {
        let mut throttled = 0;
        for _ in 0..threshold + 2 {
            match env
                .sign_in("carol@example.com", "guess-guess-guess", None)
                .await
            {
                Err(AuthnError::Throttled { until }) => {
                    assert!(until.is_some_and(|u| u > env.clock.now()));
                    throttled += 1;
                }
                Err(AuthnError::InvalidCredentials) => {}
                other => panic!("{other:?}"),
            }
            env.clock.advance(Duration::seconds(70));
        }
        assert!(throttled >= 1, "never throttled");
        let locked = env.sign_in("carol@example.com", PASSWORD, None).await;
        assert!(
            matches!(locked, Err(AuthnError::Throttled { .. })),
            "{locked:?}"
        );
        assert!(env.active_sessions(carol).is_empty());

        env.clock
            .advance(env.authn.settings().lockout + Duration::seconds(1));
        env.sign_in("carol@example.com", PASSWORD, None)
            .await
            .unwrap();
    });
    env.assert_audited(&[
        "login.failed",
        "login.locked",
        "login.throttled",
        "login.succeeded",
    ]);
}

#[test]
fn a_right_password_for_an_unverified_or_inactive_account_opens_no_session() {
    let env = Env::new(Backend::Sqlite);
    let unverified = env.work_user(SeedUser {
        verified: false,
        ..SeedUser::new("dan@example.com")
    });
    let inactive = env.work_user(SeedUser {
        active: false,
        ..SeedUser::new("eve@example.com")
    });
    runtime().block_on(async {
        let refused = env.sign_in("dan@example.com", PASSWORD, None).await;
        assert!(
            matches!(refused, Err(AuthnError::EmailNotVerified)),
            "{refused:?}"
        );
        let refused = env.sign_in("eve@example.com", PASSWORD, None).await;
        assert!(
            matches!(refused, Err(AuthnError::InvalidCredentials)),
            "{refused:?}"
        );
    });
    // The password was right: its use is recorded (and kept) either way.
    assert!(env.credential(unverified).last_used_at.is_some());
    assert!(env.credential(inactive).last_used_at.is_some());
    assert!(env.active_sessions(unverified).is_empty() && env.active_sessions(inactive).is_empty());
    // A disabled account's sign-in counts as a failure; an unverified one does not.
    assert_eq!(env.failures(&account_bucket("dan@example.com")), None);
    assert_eq!(env.failures(&account_bucket("eve@example.com")), Some(1));
    assert_eq!(env.actions(), ["login.failed"]);
}

#[test]
fn an_outdated_hash_is_upgraded_at_sign_in() {
    let env = Env::new(Backend::Sqlite);
    let outdated = gatehouse_authn::testing::kit::cheap_passwords(16);
    let frank = env.work_user(SeedUser {
        hashing: Some(&outdated),
        ..SeedUser::new("frank@example.com")
    });
    let before = env.credential(frank).secret(&env.cipher).unwrap();
    assert!(String::from_utf8_lossy(&before).starts_with("$argon2id$v=19$m=16,"));
    runtime().block_on(async {
        env.sign_in("frank@example.com", PASSWORD, None)
            .await
            .unwrap();
        let after = env.credential(frank).secret(&env.cipher).unwrap();
        let after = String::from_utf8_lossy(&after).into_owned();
        assert!(after.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{after}");
        env.sign_in("frank@example.com", PASSWORD, None)
            .await
            .unwrap();
    });
}

fn concurrent_sign_ins_all_succeed(backend: Backend) {
    const USERS: usize = 12;
    let env = Env::new(backend);
    let users: Vec<UserId> = (0..USERS)
        .map(|i| env.user(&format!("user-{i}@example.com")))
        .collect();
    let rt = runtime();
    rt.block_on(async {
        let tasks: Vec<_> = (0..USERS * 2)
            .map(|i| {
                let (authn, tenant) = (env.authn.clone(), env.t());
                tokio::spawn(async move {
                    let email = format!("user-{}@example.com", i % USERS);
                    // Every third attempt is a wrong password.
                    let password = if i % 3 == 2 {
                        "wrong-wrong-wrong"
                    } else {
                        PASSWORD
                    };
                    (
                        i,
                        sign_in_with(&authn, tenant, &email, password, None, IP).await,
                    )
                })
            })
            .collect();
        for task in tasks {
            let (i, result) = task.await.unwrap();
            match result {
                Ok(_) => assert_ne!(i % 3, 2, "a wrong password was accepted"),
                Err(AuthnError::InvalidCredentials) => assert_eq!(i % 3, 2),
                Err(other) => panic!("attempt {i}: {other}"),
            }
        }
    });
    let sessions: usize = users.iter().map(|u| env.active_sessions(*u).len()).sum();
    let successes = (0..USERS * 2).filter(|i| i % 3 != 2).count();
    assert_eq!(sessions, successes);
    let actions = env.actions();
    assert_eq!(actions.len(), USERS * 2);
    assert_eq!(
        actions.iter().filter(|a| *a == "login.succeeded").count(),
        successes
    );
    assert_eq!(
        env.failures(&ip_bucket(IP)),
        Some((USERS * 2 - successes) as i32)
    );
    drop(env);
}

gatehouse_identity_store::on_both_backends!(concurrent_sign_ins_all_succeed);

#[test]
fn variants_of_one_identifier_share_a_throttling_bucket() {
    assert_eq!(
        account_bucket(" ＡＬＩＣＥ@Example.com"),
        account_bucket("alice@example.com")
    );
}

// ---- second factors: sign-in with TOTP or a recovery code, step-up ----

use gatehouse_authn::second_factor::SecondFactor;

/// What an authenticator app shows at `at` for a base32 key, as typed in.
fn totp_code(secret_base32: &str, at: chrono::DateTime<Utc>) -> Zeroizing<String> {
    Zeroizing::new(kit::totp_code(secret_base32, at))
}

impl Env {
    fn tenant_record(&self) -> gatehouse_identity_store::tenants::Tenant {
        tenants::get(&mut self.pool.get().unwrap(), self.t()).unwrap()
    }

    async fn password_step(&self, email: &str) -> SignInOutcome {
        self.password_sign_in(email, PASSWORD, ClientInfo::default())
            .await
            .unwrap()
    }

    /// Signs in with the password only (no factor yet), adds TOTP; returns the
    /// raised session, the key and the recovery codes.
    async fn with_totp(&self, email: &str) -> (SignedIn, String, Vec<String>) {
        let signed_in = self.password_step(email).await.signed_in().unwrap();
        assert_eq!(signed_in.session.aal, 1);
        let enrolment = self
            .authn
            .begin_totp_enrolment(self.tenant_record(), signed_in.session.clone())
            .await
            .unwrap();
        let key = enrolment.secret_base32.to_string();
        // Half a minute later, so sign-in codes below are of a later step.
        self.clock.advance(Duration::seconds(30));
        let confirmed = self
            .authn
            .confirm_totp_enrolment(
                self.t(),
                signed_in.session,
                enrolment.credential,
                totp_code(&key, self.clock.now()),
                ClientInfo::default(),
            )
            .await
            .unwrap();
        let codes = confirmed
            .recovery_codes
            .expect("codes with the first factor");
        (
            confirmed.signed_in,
            key,
            codes.codes().map(str::to_owned).collect(),
        )
    }
}

fn a_second_factor_is_asked_for_after_the_password(backend: Backend) {
    let env = Env::new(backend);
    let alice = env.user("alice@example.com");
    runtime().block_on(async {
        let (raised, key, codes) = env.with_totp("alice@example.com").await;
        // Confirming the enrolment was a second factor passed now.
        assert_eq!(raised.session.aal, 2);
        assert_eq!(raised.session.amr(), ["pwd", "otp", "mfa"]);
        assert_eq!(codes.len(), 10);
        env.clock.advance(Duration::minutes(1));

        // The right password now opens no session, only the way to the factor.
        let before = env.active_sessions(alice).len();
        let SignInOutcome::SecondFactor(pending) = env.password_step("alice@example.com").await
        else {
            panic!("a password alone must not sign in an account with TOTP");
        };
        assert!(pending.factors.totp && pending.factors.recovery_codes == 10);
        assert_eq!(env.active_sessions(alice).len(), before);
        let (user, factors) = env
            .authn
            .pending_sign_in(env.t(), pending.token.to_string())
            .await
            .unwrap();
        assert_eq!((user, factors), (alice, pending.factors));

        // A wrong code: refused, counted, no session.
        let wrong = env
            .authn
            .complete_sign_in(
                env.t(),
                pending.token.to_string(),
                SecondFactor::Totp(Zeroizing::new("000000".into())),
                None,
                ClientInfo::default(),
            )
            .await;
        // (A one-in-a-million chance that 000000 is the code: then it signs in.)
        if let Err(error) = &wrong {
            assert!(matches!(error, AuthnError::InvalidCode), "{error:?}");
            assert_eq!(env.failures(&gatehouse_authn::totp::bucket(alice)), Some(1));
            assert_eq!(env.active_sessions(alice).len(), before);
            let right = env
                .authn
                .complete_sign_in(
                    env.t(),
                    pending.token.to_string(),
                    SecondFactor::Totp(totp_code(&key, env.clock.now())),
                    None,
                    ClientInfo::default(),
                )
                .await
                .unwrap();
            assert_eq!(right.session.aal, 2);
            assert_eq!(right.session.amr(), ["pwd", "otp", "mfa"]);
            assert_eq!(env.failures(&gatehouse_authn::totp::bucket(alice)), None);
        }

        // A recovery code completes a sign-in once.
        let SignInOutcome::SecondFactor(pending) = env.password_step("alice@example.com").await
        else {
            panic!("second factor expected");
        };
        let with_code = |code: &str| {
            env.authn.complete_sign_in(
                env.t(),
                pending.token.to_string(),
                SecondFactor::RecoveryCode(Zeroizing::new(code.to_owned())),
                None,
                ClientInfo::default(),
            )
        };
        assert_eq!(with_code(&codes[3]).await.unwrap().session.aal, 2);
        assert!(matches!(
            with_code(&codes[3]).await,
            Err(AuthnError::InvalidCode)
        ));
        assert_eq!(
            env.authn
                .factors(env.t(), alice)
                .await
                .unwrap()
                .recovery_codes,
            9
        );
    });
    env.assert_audited(&[
        "mfa.totp_enrolled",
        "login.second_factor_required",
        "mfa.failed",
    ]);
}

gatehouse_identity_store::on_both_backends!(a_second_factor_is_asked_for_after_the_password);

#[test]
fn a_pending_sign_in_expires_and_cannot_be_forged_or_moved() {
    let env = Env::new(Backend::Sqlite);
    env.user("alice@example.com");
    runtime().block_on(async {
        let (_, key, _) = env.with_totp("alice@example.com").await;
        let SignInOutcome::SecondFactor(pending) = env.password_step("alice@example.com").await
        else {
            panic!("second factor expected");
        };
        let complete = |token: String, tenant: TenantId| {
            env.authn.complete_sign_in(
                tenant,
                token,
                SecondFactor::Totp(totp_code(&key, env.clock.now())),
                None,
                ClientInfo::default(),
            )
        };
        let mut forged = pending.token.to_string();
        forged.pop();
        assert!(matches!(
            complete(forged, env.t()).await,
            Err(AuthnError::InvalidLink)
        ));
        let elsewhere = {
            let mut conn = env.pool.get().unwrap();
            tenants::create(
                &mut conn,
                env.clock.now(),
                TenantData {
                    slug: "other".into(),
                    display_name: "Other".into(),
                    settings: serde_json::Map::new(),
                },
            )
            .unwrap()
            .id
        };
        assert!(matches!(
            complete(pending.token.to_string(), elsewhere).await,
            Err(AuthnError::InvalidLink)
        ));
        env.clock.advance(Duration::minutes(5));
        assert!(matches!(
            complete(pending.token.to_string(), env.t()).await,
            Err(AuthnError::InvalidLink)
        ));
    });
}

#[test]
fn sensitive_actions_need_a_recent_second_factor() {
    let env = Env::new(Backend::Sqlite);
    let alice = env.user("alice@example.com");
    runtime().block_on(async {
        let (raised, key, _) = env.with_totp("alice@example.com").await;
        let session = raised.session;
        assert!(
            !env.authn
                .needs_step_up(&session, &env.authn.factors(env.t(), alice).await.unwrap())
        );

        // Eleven minutes on, the factor is no longer recent.
        env.clock.advance(Duration::minutes(11));
        let factors = env.authn.factors(env.t(), alice).await.unwrap();
        assert!(env.authn.needs_step_up(&session, &factors));
        let change = env
            .authn
            .change_password(
                env.t(),
                session.clone(),
                Zeroizing::new(PASSWORD.into()),
                Zeroizing::new("an-entirely-new-passphrase-42".into()),
                ClientInfo::default(),
            )
            .await;
        assert!(
            matches!(change, Err(AuthnError::StepUpRequired)),
            "{change:?}"
        );
        assert!(matches!(
            env.authn
                .remove_totp(env.t(), session.clone(), ClientInfo::default())
                .await,
            Err(AuthnError::StepUpRequired)
        ));
        assert!(matches!(
            env.authn
                .regenerate_recovery_codes(env.t(), session.clone(), ClientInfo::default())
                .await,
            Err(AuthnError::StepUpRequired)
        ));

        // Step-up: the same session, a new secret, the factor recent again.
        let stepped = env
            .authn
            .step_up(
                env.t(),
                session.clone(),
                SecondFactor::Totp(totp_code(&key, env.clock.now())),
                ClientInfo::default(),
            )
            .await
            .unwrap();
        assert_eq!(stepped.session.id, session.id);
        assert_eq!(stepped.session.aal, 2);
        assert!(
            env.authn
                .session(env.t(), raised.secret.to_string())
                .await
                .unwrap()
                .is_none(),
            "the old cookie stops working"
        );
        assert!(!env.authn.needs_step_up(&stepped.session, &factors));
        let fresh = env
            .authn
            .regenerate_recovery_codes(env.t(), stepped.session.clone(), ClientInfo::default())
            .await
            .unwrap();
        assert_eq!(fresh.codes().len(), 10);

        // Removing the app takes the recovery codes with it: no factor is left.
        assert!(
            env.authn
                .remove_totp(env.t(), stepped.session.clone(), ClientInfo::default())
                .await
                .unwrap()
        );
        let none = env.authn.factors(env.t(), alice).await.unwrap();
        assert!(!none.any() && none.recovery_codes == 0, "{none:?}");
        assert!(
            env.password_step("alice@example.com")
                .await
                .signed_in()
                .is_some(),
            "a password is enough again"
        );
    });
    env.assert_audited(&[
        "mfa.step_up",
        "mfa.recovery_codes_regenerated",
        "mfa.totp_removed",
    ]);
}
