//! `passkeys`: the tests of the public surface (moved from `src/passkeys.rs`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use gatehouse_core::Clock;
use gatehouse_core::config::Config;
use gatehouse_core::events::{DomainEvent, EventSubscription};
use gatehouse_core::ids::UserId;
use gatehouse_identity_store::db::Backend;
use gatehouse_identity_store::users;
use gatehouse_identity_store::users::UserData;
use serde::Serialize;
use serde_json::Value;
use serde_json::json;

use gatehouse_authn::AuthnError;
use gatehouse_authn::passkeys::*;
use gatehouse_authn::testing::kit::{Kit, SeedUser, client_from, runtime};
use gatehouse_authn::testing::soft_authenticator::{Refusal, SoftAuthenticator};

const ORIGIN: &str = "https://id.example.com";
/// What the caller derives the binding from: the browser's cookie secret.
const BROWSER: &str = "cookie-secret-of-the-browser";
const IP: &str = "203.0.113.9";

/// How a credential id appears in `allowCredentials`: base64url without padding.
fn lookup_key(credential_id: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(credential_id)
}

fn rp() -> RelyingParty {
    RelyingParty::for_origin(&Url::parse(ORIGIN).unwrap(), "Acme").unwrap()
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}

fn rejected_for(result: &Result<PasskeyAuthenticated, AuthnError>, words: &str) -> bool {
    matches!(result, Err(AuthnError::PasskeyRejected(reason)) if reason.contains(words))
}

/// Whether a ceremony was refused for its challenge: unknown, spent, expired or
/// begun elsewhere.
fn challenge_invalid<T>(result: &Result<T, AuthnError>) -> bool {
    matches!(result, Err(AuthnError::ChallengeInvalid))
}

// The service on a throwaway database with one tenant.
kit_env!(events: EventSubscription);

impl Env {
    fn new(backend: Backend) -> Env {
        Env::with(backend, |_| {})
    }

    fn with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Env {
        let kit = Kit::with(backend, Default::default(), |config| {
            // These tests hash real passwords at the default cost as before.
            config.passwords = Config::default().passwords;
            adjust(config);
        });
        Env {
            events: kit.bus.subscribe(),
            kit,
        }
    }

    fn user(&self, name: &str) -> UserId {
        let email = format!("{name}@example.com");
        let user = SeedUser {
            password: None,
            ..SeedUser::new(&email)
        };
        self.seed(user)
    }

    async fn begin_registration(&self, user: UserId) -> RegistrationChallenge {
        self.authn
            .begin_passkey_registration(self.t(), user, BROWSER.into(), rp())
            .await
            .unwrap()
    }

    async fn finish_registration(
        &self,
        user: UserId,
        challenge_id: String,
        name: &str,
        response: Value,
    ) -> Result<PasskeyInfo, AuthnError> {
        self.authn
            .finish_passkey_registration(
                self.t(),
                user,
                BROWSER.into(),
                challenge_id,
                name.into(),
                serde_json::from_value(response).unwrap(),
                rp(),
                client_from(IP),
            )
            .await
    }

    /// Registers a new credential of `authenticator` for `user`.
    async fn register(
        &self,
        user: UserId,
        authenticator: &mut SoftAuthenticator,
        name: &str,
    ) -> Result<PasskeyInfo, AuthnError> {
        let challenge = self.begin_registration(user).await;
        let response = authenticator.create(&json(&challenge.options)).unwrap();
        self.finish_registration(user, challenge.challenge_id, name, response)
            .await
    }

    async fn begin(&self, user: Option<UserId>) -> AuthenticationChallenge {
        self.authn
            .begin_passkey_authentication(self.t(), BROWSER.into(), rp(), user)
            .await
            .unwrap()
    }

    async fn finish_as(
        &self,
        binding: &str,
        ip: &str,
        challenge_id: &str,
        response: Value,
    ) -> Result<PasskeyAuthenticated, AuthnError> {
        self.authn
            .finish_passkey_authentication(
                self.t(),
                binding.into(),
                challenge_id.into(),
                serde_json::from_value(response).unwrap(),
                rp(),
                client_from(ip),
            )
            .await
    }

    async fn finish(
        &self,
        challenge_id: &str,
        response: Value,
    ) -> Result<PasskeyAuthenticated, AuthnError> {
        self.finish_as(BROWSER, IP, challenge_id, response).await
    }

    /// A whole sign-in: passwordless with `None`, a second factor with a user.
    async fn sign_in(
        &self,
        authenticator: &mut SoftAuthenticator,
        user: Option<UserId>,
    ) -> Result<PasskeyAuthenticated, AuthnError> {
        self.sign_in_with(authenticator, user, 0).await
    }

    /// [`Env::sign_in`] from [`IP`] (`0`) or another address (`1`).
    async fn sign_in_with(
        &self,
        authenticator: &mut SoftAuthenticator,
        user: Option<UserId>,
        address: usize,
    ) -> Result<PasskeyAuthenticated, AuthnError> {
        let (challenge_id, response) = self.answered(authenticator, user).await;
        let ip = [IP, "198.51.100.4"][address];
        self.finish_as(BROWSER, ip, &challenge_id, response).await
    }

    /// A sign-in begun and answered by `authenticator`, not yet finished: the
    /// challenge id and the response.
    async fn answered(
        &self,
        authenticator: &mut SoftAuthenticator,
        user: Option<UserId>,
    ) -> (String, Value) {
        let challenge = self.begin(user).await;
        let response = authenticator.get(&json(&challenge.options)).unwrap();
        (challenge.challenge_id, response)
    }

    async fn passkeys(&self, user: UserId) -> Vec<PasskeyInfo> {
        self.authn.passkeys(self.t(), user).await.unwrap()
    }

    /// How many `CredentialsChanged` events were published since the last call.
    fn credentials_changed(&mut self) -> usize {
        let ours = self.t();
        std::iter::from_fn(|| self.events.try_next())
            .filter(|envelope| {
                matches!(envelope.event, DomainEvent::CredentialsChanged { tenant, .. } if tenant == ours)
            })
            .count()
    }
}

gatehouse_identity_store::on_both_backends!(
    registers_then_signs_in_without_a_user_name,
    a_passkey_is_a_second_factor_for_a_known_user,
    a_response_from_another_origin_is_refused,
    a_challenge_is_used_once,
    a_challenge_is_bound_to_the_browser_that_began_it,
    an_expired_challenge_is_refused,
    a_signature_counter_that_does_not_move_forward_is_refused,
    user_verification_is_required,
    a_removed_passkey_no_longer_signs_in,
    several_passkeys_are_listed_with_their_names,
    backup_state_is_stored_and_follows_the_authenticator,
    failed_assertions_lock_the_passkey_with_a_backoff,
    a_passkey_locked_everywhere_throttles_the_second_factor,
    failed_assertions_lock_the_address_until_a_success_or_the_lockout,
    passwordless_failures_get_the_generous_password_limits_by_default,
    a_disabled_account_cannot_sign_in,
    a_cloned_authenticator_racing_the_original_passes_once,
);

fn registers_then_signs_in_without_a_user_name(backend: Backend) {
    let mut env = Env::new(backend);
    let alice = env.user("alice");
    let mut phone = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        let challenge = env.begin_registration(alice).await;
        assert_eq!(challenge.expires_at, env.clock.now() + Duration::minutes(5));
        assert!(!format!("{challenge:?}").contains(&challenge.challenge_id));
        let options = json(&challenge.options);
        let public_key = &options["publicKey"];
        assert_eq!(
            public_key["rp"],
            json!({ "id": "id.example.com", "name": "Acme" })
        );
        assert_eq!(public_key["user"]["name"], "alice@example.com");
        assert_eq!(
            public_key["user"]["id"],
            URL_SAFE_NO_PAD.encode(alice.as_uuid().as_bytes())
        );
        let selection = &public_key["authenticatorSelection"];
        assert_eq!(selection["residentKey"], "required");
        assert_eq!(selection["requireResidentKey"], true);
        assert_eq!(selection["userVerification"], "required");
        assert_eq!(public_key["timeout"], 300_000);

        let response = phone.create(&options).unwrap();
        let registered = env
            .finish_registration(alice, challenge.challenge_id, "Phone", response)
            .await
            .unwrap();
        assert_eq!(registered.name, "Phone");
        assert_eq!(registered.created_at, env.clock.now());
        assert_eq!(registered.last_used_at, None);
        assert_eq!(env.passkeys(alice).await, std::slice::from_ref(&registered));

        // A sign-in button: the modal dialog, any discoverable credential.
        env.clock.advance(Duration::minutes(1));
        let challenge = env.begin(None).await;
        let options = json(&challenge.options);
        assert_eq!(options.get("mediation"), None);
        assert_eq!(options["publicKey"]["allowCredentials"], json!([]));
        assert_eq!(options["publicKey"]["userVerification"], "required");
        assert_eq!(options["publicKey"]["rpId"], "id.example.com");
        let response = phone.get(&options).unwrap();
        let signed_in = env.finish(&challenge.challenge_id, response).await.unwrap();
        assert_eq!(
            signed_in,
            PasskeyAuthenticated {
                user_id: alice,
                credential_id: registered.id,
                user_verified: true,
                backup_eligible: false,
                backed_up: false,
                discoverable: true,
            }
        );
        assert_eq!(
            env.passkeys(alice).await[0].last_used_at,
            Some(env.clock.now())
        );

        // Autofill: the same ceremony, mediated by the browser's form filling.
        let challenge = env
            .authn
            .begin_conditional_passkey_authentication(env.t(), BROWSER.into(), rp())
            .await
            .unwrap();
        let options = json(&challenge.options);
        assert_eq!(options["mediation"], "conditional");
        assert_eq!(options["publicKey"]["allowCredentials"], json!([]));
        let response = phone.get(&options).unwrap();
        let signed_in = env.finish(&challenge.challenge_id, response).await.unwrap();
        assert_eq!((signed_in.user_id, signed_in.discoverable), (alice, true));
    });
    assert_eq!(env.actions(), ["passkey.registered"]);
    assert_eq!(env.credentials_changed(), 1);
}

fn a_passkey_is_a_second_factor_for_a_known_user(backend: Backend) {
    let env = Env::new(backend);
    let (alice, bob, carol) = (env.user("alice"), env.user("bob"), env.user("carol"));
    let mut laptop = SoftAuthenticator::new(ORIGIN);
    let mut key = SoftAuthenticator::new(ORIGIN);
    let mut bobs = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        env.register(alice, &mut laptop, "Laptop").await.unwrap();
        let on_key = env.register(alice, &mut key, "Key").await.unwrap();
        let bobs_passkey = env.register(bob, &mut bobs, "Bob's").await.unwrap();

        let challenge = env.begin(Some(alice)).await;
        let options = json(&challenge.options);
        let allowed: Vec<&str> = options["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        let alices = [
            lookup_key(&laptop.credentials[0].id),
            lookup_key(&key.credentials[0].id),
        ];
        assert_eq!(allowed, alices, "exactly alice's passkeys");
        assert_eq!(options["publicKey"]["userVerification"], "required");
        assert_eq!(options.get("mediation"), None);

        // Bob's passkey answering alice's challenge (a tampered client).
        let bobs_id = bobs.credentials[0].id.clone();
        let wrong = env
            .finish(
                &challenge.challenge_id,
                bobs.assert_with(&options, &bobs_id),
            )
            .await;
        assert!(rejected_for(&wrong, "not one of the user's"), "{wrong:?}");
        assert_eq!(env.failures(&address_bucket(IP)), Some(1));
        assert_eq!(
            env.failures(&credential_bucket(bobs_passkey.id)),
            None,
            "bob was not signing in"
        );

        let passed = env.sign_in(&mut key, Some(alice)).await.unwrap();
        assert_eq!(
            passed,
            PasskeyAuthenticated {
                user_id: alice,
                credential_id: on_key.id,
                user_verified: true,
                backup_eligible: false,
                backed_up: false,
                discoverable: false,
            }
        );
        assert_eq!(
            env.failures(&address_bucket(IP)),
            None,
            "a success forgets the failures"
        );

        let none = env
            .authn
            .begin_passkey_authentication(env.t(), BROWSER.into(), rp(), Some(carol))
            .await;
        assert!(matches!(none, Err(AuthnError::NotEnrolled)), "{none:?}");
    });
    assert_eq!(
        env.actions(),
        [
            "passkey.registered",
            "passkey.registered",
            "passkey.registered",
            "passkey.authentication_failed"
        ]
    );
}

fn a_response_from_another_origin_is_refused(backend: Backend) {
    let env = Env::new(backend);
    let alice = env.user("alice");
    // The browser reports where the page really was: a look-alike site.
    let mut phished = SoftAuthenticator::new("https://id.example.com.evil.test");
    let mut phone = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        let refused = env.register(alice, &mut phished, "Phone").await;
        assert!(
            matches!(&refused, Err(AuthnError::PasskeyRejected(reason)) if reason.contains("origin")),
            "{refused:?}"
        );
        assert!(env.passkeys(alice).await.is_empty());

        env.register(alice, &mut phone, "Phone").await.unwrap();
        phone.origin = "https://evil.test".into();
        let refused = env.sign_in(&mut phone, None).await;
        assert!(rejected_for(&refused, "another origin"), "{refused:?}");
        let refused = env.sign_in(&mut phone, Some(alice)).await;
        assert!(rejected_for(&refused, "another origin"), "{refused:?}");
        // Another port is another origin too.
        phone.origin = "https://id.example.com:8443".into();
        let refused = env.sign_in(&mut phone, None).await;
        assert!(rejected_for(&refused, "another origin"), "{refused:?}");

        // Three failures of the passkey: the next attempt waits a second.
        env.clock.advance(Duration::seconds(1));
        phone.origin = ORIGIN.into();
        env.sign_in(&mut phone, None).await.unwrap();
    });
}

fn a_challenge_is_used_once(backend: Backend) {
    let env = Env::new(backend);
    let alice = env.user("alice");
    let mut phone = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        let challenge = env.begin_registration(alice).await;
        let response = phone.create(&json(&challenge.options)).unwrap();
        env.finish_registration(
            alice,
            challenge.challenge_id.clone(),
            "Phone",
            response.clone(),
        )
        .await
        .unwrap();
        let again = env
            .finish_registration(alice, challenge.challenge_id, "Phone", response)
            .await;
        assert!(challenge_invalid(&again), "{again:?}");

        let challenge = env.begin(None).await;
        let options = json(&challenge.options);
        let response = phone.get(&options).unwrap();
        env.finish(&challenge.challenge_id, response.clone())
            .await
            .unwrap();
        let replayed = env.finish(&challenge.challenge_id, response).await;
        assert!(challenge_invalid(&replayed), "{replayed:?}");
        let fresh_answer = phone.get(&options).unwrap();
        let reused = env.finish(&challenge.challenge_id, fresh_answer).await;
        assert!(challenge_invalid(&reused), "{reused:?}");

        // A failed attempt spends the challenge too.
        let challenge = env.begin(None).await;
        let options = json(&challenge.options);
        phone.user_verification = false;
        let failed = env
            .finish(&challenge.challenge_id, phone.get(&options).unwrap())
            .await;
        assert!(rejected_for(&failed, "verify the user"), "{failed:?}");
        phone.user_verification = true;
        let retried = env
            .finish(&challenge.challenge_id, phone.get(&options).unwrap())
            .await;
        assert!(challenge_invalid(&retried), "{retried:?}");

        // A registration challenge does not finish a sign-in.
        let registration = env.begin_registration(alice).await;
        let crossed = env
            .finish(&registration.challenge_id, phone.get(&options).unwrap())
            .await;
        assert!(challenge_invalid(&crossed), "{crossed:?}");
    });
}

fn a_challenge_is_bound_to_the_browser_that_began_it(backend: Backend) {
    let env = Env::new(backend);
    let (alice, bob) = (env.user("alice"), env.user("bob"));
    let mut phone = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        env.register(alice, &mut phone, "Phone").await.unwrap();

        let (challenge_id, response) = env.answered(&mut phone, None).await;
        let elsewhere = env
            .finish_as(
                "cookie-secret-of-another-browser",
                IP,
                &challenge_id,
                response.clone(),
            )
            .await;
        assert!(challenge_invalid(&elsewhere), "{elsewhere:?}");
        let then_here = env.finish(&challenge_id, response).await;
        assert!(
            challenge_invalid(&then_here),
            "a challenge shown to another browser is spent: {then_here:?}"
        );

        let (challenge_id, response) = env.answered(&mut phone, None).await;
        let unbound = env.finish_as("", IP, &challenge_id, response).await;
        assert!(
            matches!(unbound, Err(AuthnError::Internal(_))),
            "{unbound:?}"
        );

        // A registration is also bound to its user.
        let challenge = env.begin_registration(alice).await;
        let response = phone.create(&json(&challenge.options)).unwrap_err();
        assert_eq!(response, Refusal::InvalidState, "alice's phone is excluded");
        let mut laptop = SoftAuthenticator::new(ORIGIN);
        let response = laptop.create(&json(&challenge.options)).unwrap();
        let for_bob = env
            .finish_registration(bob, challenge.challenge_id, "Laptop", response)
            .await;
        assert!(challenge_invalid(&for_bob), "{for_bob:?}");
        assert!(env.passkeys(bob).await.is_empty());
    });
}

fn an_expired_challenge_is_refused(backend: Backend) {
    let env = Env::new(backend);
    let alice = env.user("alice");
    let mut phone = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        let challenge = env.begin_registration(alice).await;
        let response = phone.create(&json(&challenge.options)).unwrap();
        env.clock
            .advance(Duration::minutes(CHALLENGE_LIFETIME_MINUTES));
        let late = env
            .finish_registration(alice, challenge.challenge_id, "Phone", response)
            .await;
        assert!(challenge_invalid(&late), "{late:?}");

        let mut phone = SoftAuthenticator::new(ORIGIN);
        env.register(alice, &mut phone, "Phone").await.unwrap();
        let (challenge_id, response) = env.answered(&mut phone, None).await;
        env.clock
            .advance(Duration::minutes(CHALLENGE_LIFETIME_MINUTES) - Duration::seconds(1));
        env.finish(&challenge_id, response)
            .await
            .expect("just in time");

        let (challenge_id, response) = env.answered(&mut phone, Some(alice)).await;
        env.clock
            .advance(Duration::minutes(CHALLENGE_LIFETIME_MINUTES));
        let late = env.finish(&challenge_id, response).await;
        assert!(challenge_invalid(&late), "{late:?}");

        // Abandoned ceremonies are pruned once expired.
        env.begin(None).await;
        env.begin_registration(alice).await;
        assert_eq!(env.authn.prune_passkey_challenges().await.unwrap(), 0);
        env.clock
            .advance(Duration::minutes(CHALLENGE_LIFETIME_MINUTES));
        assert_eq!(env.authn.prune_passkey_challenges().await.unwrap(), 2);
    });
    assert_eq!(
        env.failures(&address_bucket(IP)),
        None,
        "late answers are no guesses"
    );
}

fn a_signature_counter_that_does_not_move_forward_is_refused(backend: Backend) {
    let env = Env::new(backend);
    let (alice, bob) = (env.user("alice"), env.user("bob"));
    let mut phone = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        env.register(alice, &mut phone, "Phone").await.unwrap();
        env.sign_in(&mut phone, None).await.unwrap();
        env.sign_in(&mut phone, Some(alice)).await.unwrap();
        let id = phone.credentials[0].id.clone();
        assert_eq!(phone.credential(&id).counter, 2);

        // A clone still at 1 answers with 2: not above the stored 2.
        phone.credential(&id).counter = 1;
        let cloned = env.sign_in(&mut phone, None).await;
        assert!(rejected_for(&cloned, "counter"), "{cloned:?}");
        phone.credential(&id).counter = 0;
        let cloned = env.sign_in(&mut phone, Some(alice)).await;
        assert!(rejected_for(&cloned, "counter"), "{cloned:?}");

        // The original goes on from where it was.
        phone.credential(&id).counter = 2;
        env.sign_in(&mut phone, None).await.unwrap();
        env.sign_in(&mut phone, None).await.unwrap();

        // Synced passkeys have no counter (always 0): nothing to compare.
        let mut synced = SoftAuthenticator::new(ORIGIN);
        synced.counter_step = 0;
        env.register(bob, &mut synced, "Synced").await.unwrap();
        for _ in 0..3 {
            assert_eq!(env.sign_in(&mut synced, None).await.unwrap().user_id, bob);
        }
    });
}

fn user_verification_is_required(backend: Backend) {
    let env = Env::new(backend);
    let alice = env.user("alice");
    let mut key = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        key.user_verification = false;
        let refused = env.register(alice, &mut key, "Key").await;
        assert!(
            matches!(&refused, Err(AuthnError::PasskeyRejected(reason)) if reason.contains("verify the user")),
            "{refused:?}"
        );
        assert!(env.passkeys(alice).await.is_empty());

        // The refused credential stays on the authenticator; start with another.
        let mut key = SoftAuthenticator::new(ORIGIN);
        env.register(alice, &mut key, "Key").await.unwrap();
        key.user_verification = false;
        let passwordless = env.sign_in(&mut key, None).await;
        assert!(rejected_for(&passwordless, "verify the user"), "{passwordless:?}");
        let second_factor = env.sign_in(&mut key, Some(alice)).await;
        assert!(rejected_for(&second_factor, "verify the user"), "{second_factor:?}");
        assert_eq!(env.passkeys(alice).await[0].last_used_at, None, "failures are not uses");

        key.user_verification = true;
        assert!(env.sign_in(&mut key, None).await.unwrap().user_verified);
    });
}

fn a_removed_passkey_no_longer_signs_in(backend: Backend) {
    let mut env = Env::new(backend);
    let (alice, bob) = (env.user("alice"), env.user("bob"));
    let mut phone = SoftAuthenticator::new(ORIGIN);
    let mut key = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        let on_phone = env.register(alice, &mut phone, "Phone").await.unwrap();
        let on_key = env.register(alice, &mut key, "Key").await.unwrap();
        assert_eq!(env.credentials_changed(), 2);

        let not_bobs = env
            .authn
            .remove_passkey(env.t(), bob, on_phone.id, client_from(IP))
            .await;
        assert!(
            matches!(not_bobs, Err(AuthnError::NotEnrolled)),
            "{not_bobs:?}"
        );
        env.authn
            .remove_passkey(env.t(), alice, on_phone.id, client_from(IP))
            .await
            .unwrap();
        assert_eq!(env.credentials_changed(), 1);
        assert_eq!(env.passkeys(alice).await, std::slice::from_ref(&on_key));
        let again = env
            .authn
            .remove_passkey(env.t(), alice, on_phone.id, client_from(IP))
            .await;
        assert!(matches!(again, Err(AuthnError::NotEnrolled)), "{again:?}");

        let removed = env.sign_in(&mut phone, None).await;
        assert!(rejected_for(&removed, "not registered"), "{removed:?}");
        // Nobody is known to blame: the failure counts against the client.
        assert_eq!(env.failures(&address_bucket(IP)), Some(1));
        assert_eq!(env.failures(&credential_bucket(on_phone.id)), None);

        let challenge = env.begin(Some(alice)).await;
        let options = json(&challenge.options);
        assert_eq!(
            options["publicKey"]["allowCredentials"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "only the key is offered"
        );
        let phone_id = phone.credentials[0].id.clone();
        let removed = env
            .finish(
                &challenge.challenge_id,
                phone.assert_with(&options, &phone_id),
            )
            .await;
        assert!(rejected_for(&removed, "not registered"), "{removed:?}");
        assert_eq!(
            env.sign_in(&mut key, Some(alice))
                .await
                .unwrap()
                .credential_id,
            on_key.id
        );
    });
    assert_eq!(
        env.actions(),
        [
            "passkey.registered",
            "passkey.registered",
            "passkey.removed",
            "passkey.authentication_failed",
            "passkey.authentication_failed"
        ]
    );
}

fn several_passkeys_are_listed_with_their_names(backend: Backend) {
    let env = Env::new(backend);
    let (alice, bob) = (env.user("alice"), env.user("bob"));
    let mut laptop = SoftAuthenticator::new(ORIGIN);
    let mut phone = SoftAuthenticator::new(ORIGIN);
    let mut key = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        let first = env
            .register(alice, &mut laptop, "  Work \n laptop ")
            .await
            .unwrap();
        env.clock.advance(Duration::minutes(1));
        let second = env.register(alice, &mut phone, " ").await.unwrap();
        env.clock.advance(Duration::minutes(1));
        let third = env
            .register(alice, &mut key, &"k".repeat(100))
            .await
            .unwrap();
        let listed = env.passkeys(alice).await;
        assert_eq!(
            listed,
            [first.clone(), second.clone(), third.clone()],
            "oldest first"
        );
        let names: Vec<&str> = listed.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["Work laptop", DEFAULT_NAME, &"k".repeat(NAME_MAX_CHARS)]
        );
        assert!(listed[0].created_at < listed[1].created_at);
        assert!(env.passkeys(bob).await.is_empty());

        let renamed = env
            .authn
            .rename_passkey(env.t(), alice, second.id, "Old phone".into())
            .await
            .unwrap();
        assert_eq!(
            renamed,
            PasskeyInfo {
                name: "Old phone".into(),
                ..second.clone()
            }
        );
        assert_eq!(env.passkeys(alice).await[1].name, "Old phone");
        let not_bobs = env
            .authn
            .rename_passkey(env.t(), bob, second.id, "Mine".into())
            .await;
        assert!(
            matches!(not_bobs, Err(AuthnError::NotEnrolled)),
            "{not_bobs:?}"
        );

        // The next registration excludes all three.
        let challenge = env.begin_registration(alice).await;
        let options = json(&challenge.options);
        let excluded = options["publicKey"]["excludeCredentials"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(excluded, 3);
        assert_eq!(phone.create(&options).unwrap_err(), Refusal::InvalidState);
        // An authenticator that ignores the exclusion is refused by the server.
        let phone_id = phone.credentials[0].id.clone();
        let twice = env
            .finish_registration(
                alice,
                challenge.challenge_id,
                "Again",
                phone.create_again(&options, &phone_id),
            )
            .await;
        assert!(
            matches!(
                twice,
                Err(AuthnError::PasskeyRejected(_) | AuthnError::PasskeyAlreadyRegistered)
            ),
            "{twice:?}"
        );
        // Nor can another account claim the same credential.
        let challenge = env.begin_registration(bob).await;
        let options = json(&challenge.options);
        let stolen = env
            .finish_registration(
                bob,
                challenge.challenge_id,
                "Mine",
                phone.create_again(&options, &phone_id),
            )
            .await;
        assert!(
            matches!(stolen, Err(AuthnError::PasskeyAlreadyRegistered)),
            "{stolen:?}"
        );
        assert!(env.passkeys(bob).await.is_empty());
        assert_eq!(env.passkeys(alice).await.len(), 3);
    });
}

fn backup_state_is_stored_and_follows_the_authenticator(backend: Backend) {
    let env = Env::new(backend);
    let alice = env.user("alice");
    let mut synced = SoftAuthenticator::new(ORIGIN);
    synced.backup_eligible = true;
    runtime().block_on(async {
        let registered = env.register(alice, &mut synced, "Synced").await.unwrap();
        assert!(registered.backup_eligible);
        assert!(!registered.backed_up);

        synced.backed_up = true;
        let signed_in = env.sign_in(&mut synced, None).await.unwrap();
        assert!(signed_in.backup_eligible && signed_in.backed_up);
        let listed = env.passkeys(alice).await;
        assert!(
            listed[0].backup_eligible && listed[0].backed_up,
            "{listed:?}"
        );

        synced.backed_up = false;
        let signed_in = env.sign_in(&mut synced, Some(alice)).await.unwrap();
        assert!(!signed_in.backed_up);
        assert!(!env.passkeys(alice).await[0].backed_up);
    });
}

/// Limits small enough to walk through: backoff from the 2nd failure of a
/// passkey, its lockout at the 4th, an address's lockout at the 6th.
fn small_limits(config: &mut Config) {
    config.passkeys.credential_backoff_after = 2;
    config.passkeys.credential_lockout_threshold = 4;
    config.passkeys.ip_lockout_threshold = 6;
    config.passkeys.lockout_mins = 10;
}

fn failed_assertions_lock_the_passkey_with_a_backoff(backend: Backend) {
    let env = Env::with(backend, small_limits);
    let alice = env.user("alice");
    let mut phone = SoftAuthenticator::new(ORIGIN);
    let mut key = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        let on_phone = env.register(alice, &mut phone, "Phone").await.unwrap();
        let phone_bucket = credential_bucket(on_phone.id);

        phone.user_verification = false;
        let refused = env.sign_in(&mut phone, None).await;
        assert!(rejected_for(&refused, "verify the user"), "{refused:?}");
        assert_eq!(env.failures(&phone_bucket), Some(1));
        assert_eq!(env.failures(&address_bucket(IP)), Some(1));
        // From the second failure on, each further attempt waits longer.
        for wait in [Duration::seconds(1), Duration::seconds(2)] {
            let refused = env.sign_in(&mut phone, None).await;
            assert!(rejected_for(&refused, "verify the user"), "{refused:?}");
            match env.sign_in(&mut phone, None).await {
                Err(AuthnError::Throttled { until }) => {
                    assert_eq!(until, Some(env.clock.now() + wait));
                }
                other => panic!("expected a backoff of {wait}, got {other:?}"),
            }
            env.clock.advance(wait);
        }
        let refused = env.sign_in(&mut phone, None).await;
        assert!(rejected_for(&refused, "verify the user"), "{refused:?}");
        match env.sign_in(&mut phone, None).await {
            Err(AuthnError::Throttled { until }) => {
                assert_eq!(until, Some(env.clock.now() + Duration::minutes(10)));
            }
            other => panic!("expected a lockout, got {other:?}"),
        }
        assert_eq!(
            env.failures(&phone_bucket),
            Some(4),
            "refusals while locked are not counted"
        );

        // Locked wherever it is used, even from another address, and left out of
        // a second factor's options while the user's other passkey is not.
        phone.user_verification = true;
        let elsewhere = env.sign_in_with(&mut phone, None, 1).await;
        assert!(
            matches!(elsewhere, Err(AuthnError::Throttled { .. })),
            "{elsewhere:?}"
        );
        env.register(alice, &mut key, "Key").await.unwrap();
        let options = json(&env.begin(Some(alice)).await.options);
        let allowed: Vec<&str> = options["publicKey"]["allowCredentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(allowed, [lookup_key(&key.credentials[0].id)]);
        env.sign_in(&mut key, Some(alice)).await.unwrap();
        assert_eq!(env.failures(&address_bucket(IP)), None);
        assert_eq!(
            env.failures(&phone_bucket),
            Some(4),
            "another passkey's success forgets nothing of this one"
        );

        env.clock.advance(Duration::minutes(10));
        env.sign_in(&mut phone, None).await.expect("unlocked");
        assert_eq!(env.failures(&phone_bucket), None, "a success forgets");
    });
}

fn a_passkey_locked_everywhere_throttles_the_second_factor(backend: Backend) {
    let env = Env::with(backend, small_limits);
    let alice = env.user("alice");
    let mut phone = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        env.register(alice, &mut phone, "Phone").await.unwrap();
        phone.user_verification = false;
        for _ in 0..4 {
            let _ = env.sign_in_with(&mut phone, Some(alice), 0).await;
            env.clock.advance(Duration::seconds(10));
        }
        let begin = env
            .authn
            .begin_passkey_authentication(env.t(), BROWSER.into(), rp(), Some(alice))
            .await;
        match begin {
            Err(AuthnError::Throttled { until }) => assert_eq!(
                until,
                Some(env.clock.now() - Duration::seconds(10) + Duration::minutes(10))
            ),
            other => panic!("expected a lockout, got {other:?}"),
        }
    });
}

fn failed_assertions_lock_the_address_until_a_success_or_the_lockout(backend: Backend) {
    let env = Env::with(backend, small_limits);
    let (alice, bob) = (env.user("alice"), env.user("bob"));
    let mut phone = SoftAuthenticator::new(ORIGIN);
    let mut stranger = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        env.register(alice, &mut phone, "Phone").await.unwrap();
        // A credential nobody registered: only the address is there to blame.
        let challenge = env.begin_registration(bob).await;
        stranger.create(&json(&challenge.options)).unwrap();
        for _ in 1..6 {
            let unknown = env.sign_in(&mut stranger, None).await;
            assert!(rejected_for(&unknown, "not registered"), "{unknown:?}");
        }
        assert_eq!(env.failures(&address_bucket(IP)), Some(5));

        // Someone at that address signs in: the address's count starts again.
        env.sign_in(&mut phone, None).await.unwrap();
        assert_eq!(env.failures(&address_bucket(IP)), None);
        for _ in 1..=6 {
            let unknown = env.sign_in(&mut stranger, None).await;
            assert!(rejected_for(&unknown, "not registered"), "{unknown:?}");
        }
        match env.sign_in(&mut stranger, None).await {
            Err(AuthnError::Throttled { until }) => {
                assert_eq!(until, Some(env.clock.now() + Duration::minutes(10)));
            }
            other => panic!("expected a lockout, got {other:?}"),
        }
        let same_address = env.sign_in(&mut phone, None).await;
        assert!(
            matches!(same_address, Err(AuthnError::Throttled { .. })),
            "{same_address:?}"
        );
        let second_factor = env.sign_in(&mut phone, Some(alice)).await;
        assert!(
            matches!(second_factor, Err(AuthnError::Throttled { .. })),
            "{second_factor:?}"
        );
        let elsewhere = env.sign_in_with(&mut phone, None, 1).await.unwrap();
        assert_eq!(elsewhere.user_id, alice);
        env.clock.advance(Duration::minutes(10));
        env.sign_in(&mut phone, None)
            .await
            .expect("the lockout lapsed");
    });
    let failures = env
        .actions()
        .iter()
        .filter(|action| *action == "passkey.authentication_failed")
        .count();
    assert_eq!(failures, 11, "refusals while locked are not audited");
}

fn passwordless_failures_get_the_generous_password_limits_by_default(backend: Backend) {
    let env = Env::new(backend);
    let bob = env.user("bob");
    let mut stranger = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        let challenge = env.begin_registration(bob).await;
        stranger.create(&json(&challenge.options)).unwrap();
        // Five locked an address for a minute, doubling up to 17 hours.
        for _ in 0..20 {
            let unknown = env.sign_in(&mut stranger, None).await;
            assert!(rejected_for(&unknown, "not registered"), "{unknown:?}");
        }
        assert_eq!(env.failures(&address_bucket(IP)), Some(20));
    });
    assert_eq!(
        env.authn.settings().passkey_ip_lockout_threshold,
        env.authn.settings().ip_lockout_threshold
    );
}

fn a_cloned_authenticator_racing_the_original_passes_once(backend: Backend) {
    let env = Env::new(backend);
    let alice = env.user("alice");
    let mut phone = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        env.register(alice, &mut phone, "Phone").await.unwrap();
        let id = phone.credentials[0].id.clone();
        // Two sign-ins, each with its own challenge, both signed with counter 1.
        let first = env.begin(None).await;
        let first_response = phone.get(&json(&first.options)).unwrap();
        phone.credential(&id).counter = 0;
        let second = env.begin(Some(alice)).await;
        let second_response = phone.get(&json(&second.options)).unwrap();
        let (a, b) = tokio::join!(
            env.finish(&first.challenge_id, first_response),
            env.finish(&second.challenge_id, second_response),
        );
        let results = [a, b];
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(
            results.iter().any(|r| rejected_for(r, "counter")),
            "{results:?}"
        );
    });
}

fn a_disabled_account_cannot_sign_in(backend: Backend) {
    let env = Env::new(backend);
    let alice = env.user("alice");
    let mut phone = SoftAuthenticator::new(ORIGIN);
    runtime().block_on(async {
        env.register(alice, &mut phone, "Phone").await.unwrap();
        let mut conn = env.pool.get().unwrap();
        let user = users::get(&mut conn, env.t(), alice).unwrap();
        users::update(
            &mut conn,
            env.clock.now(),
            env.t(),
            alice,
            user.version,
            UserData {
                active: false,
                ..user.data
            },
        )
        .unwrap();
        drop(conn);
        let disabled = env.sign_in(&mut phone, None).await;
        assert!(
            matches!(disabled, Err(AuthnError::InvalidCredentials)),
            "{disabled:?}"
        );
        assert_eq!(env.failures(&address_bucket(IP)), None, "not a guess");
    });
    assert_eq!(
        env.actions(),
        ["passkey.registered", "passkey.authentication_failed"]
    );
}

#[test]
fn the_relying_party_is_the_tenants_origin() {
    let url = |text: &str| Url::parse(text).unwrap();
    let rp =
        RelyingParty::for_origin(&url("https://id.example.com/t/acme/signin?x=1"), "Acme").unwrap();
    assert_eq!(rp.id(), "id.example.com");
    assert_eq!(rp.origin().as_str(), "https://id.example.com/");
    let local = RelyingParty::for_origin(&url("http://localhost:8080"), "Dev").unwrap();
    assert_eq!(
        (local.id(), local.origin().as_str()),
        ("localhost", "http://localhost:8080/")
    );
    let parent = RelyingParty::new("example.com", &url("https://id.example.com"), "").unwrap();
    assert_eq!(parent.id(), "example.com");

    for (id, origin) in [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("[::1]", "http://[::1]:8080"),
        ("other.example", "https://id.example.com"),
        ("ample.com", "https://id.example.com"),
    ] {
        assert!(
            matches!(
                RelyingParty::new(id, &url(origin), "x"),
                Err(AuthnError::Internal(_))
            ),
            "{id} for {origin}"
        );
    }
    assert!(RelyingParty::for_origin(&url("http://127.0.0.1:8080"), "x").is_err());
}
