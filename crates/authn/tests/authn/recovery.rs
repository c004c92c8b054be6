//! `recovery`: the tests of the public surface (moved from `src/recovery.rs`).

use std::time::Duration as StdDuration;

use chrono::Duration;
use gatehouse_core::Clock;
use gatehouse_core::ids::{SessionId, UserId};
use gatehouse_identity_store::account_recoveries;
use gatehouse_identity_store::audit::AuditEvent;
use gatehouse_identity_store::credentials::{self, CredentialKind, NewCredential};
use gatehouse_identity_store::db::Backend;
use gatehouse_identity_store::grants;
use gatehouse_identity_store::users;
use zeroize::Zeroizing;

use gatehouse_authn::ClientInfo;
use gatehouse_authn::passkeys::PasskeyAuthenticated;
use gatehouse_authn::recovery::*;
use gatehouse_authn::registration::LinkBase;
use gatehouse_authn::second_factor::{OfferedCode, SecondFactor};
use gatehouse_authn::sign_in::SignInOutcome;
use gatehouse_authn::testing::CaughtMail;
use gatehouse_authn::testing::kit::{
    Kit, client_from, runtime, totp_code, wrong_totp_code as wrong_code,
};
use gatehouse_authn::testing::soft_authenticator::SoftAuthenticator;
use gatehouse_authn::{AuthnError, recovery_codes, totp};

const OLD: &str = "violet-harbor-quilt-97-lantern";
const NEW: &str = "copper-meadow-ninety-owls-drift";
const IP: &str = "203.0.113.7";
const BASE: &str = "https://id.example.test/t/acme";
const WAIT: StdDuration = StdDuration::from_secs(10);

fn client() -> ClientInfo {
    client_from(IP)
}

fn links() -> LinkBase {
    LinkBase(BASE.into())
}

/// The event's details name `part`.
fn assert_details_contain(event: &AuditEvent, part: &str) {
    assert!(event.details.contains(part), "{}", event.details);
}

// The service on a throwaway database, its clock, and an SMTP server catching
// its mail.
kit_env!();

impl Env {
    fn new(backend: Backend) -> Env {
        let kit = Kit::with(backend, Default::default(), |config| {
            config.sign_in.ip_lockout_threshold = 8;
        });
        Env { kit }
    }

    /// An active user with a verified primary address and the password [`OLD`].
    fn user(&self, email: &str) -> UserId {
        self.user_with_password(email, OLD)
    }

    /// Enrols and confirms an authenticator app; returns its secret. The clock
    /// moves on two minutes, so the confirming code's step is behind it.
    fn enrol_totp(&self, user: UserId) -> String {
        let mut conn = self.conn();
        let account = users::get(&mut conn, self.t(), user).unwrap();
        let now = self.clock.now();
        let enrolment =
            totp::begin_enrolment(&mut conn, &self.cipher, now, &self.tenant, &account).unwrap();
        let secret = enrolment.secret_base32.to_string();
        totp::confirm_enrolment(
            &mut conn,
            &self.cipher,
            now,
            self.t(),
            user,
            enrolment.credential,
            &totp_code(&secret, now),
        )
        .unwrap();
        self.clock.advance(Duration::minutes(2));
        secret
    }

    fn recovery_codes(&self, user: UserId) -> Vec<String> {
        recovery_codes::generate(
            &mut self.conn(),
            &self.cipher,
            self.clock.now(),
            self.t(),
            user,
        )
        .unwrap()
        .codes()
        .map(str::to_owned)
        .collect()
    }

    fn passkey(&self, user: UserId) {
        credentials::create(
            &mut self.conn(),
            &self.cipher,
            self.clock.now(),
            self.t(),
            user,
            NewCredential {
                kind: CredentialKind::Webauthn,
                label: Some("laptop".into()),
                secret: b"a public key",
            },
        )
        .unwrap();
    }

    /// A live session of `user` and two grants made in it, one of them offline.
    fn signed_in_with_grants(&self, user: UserId) -> (SessionId, [String; 2]) {
        let mut conn = self.conn();
        let now = self.clock.now();
        let session = self.live_session(user, Some(IP));
        let grant = |scope: &str| self.session_grant(user, session, "shop", Some(BASE), scope);
        let online = grant("openid");
        let offline = grant("openid offline_access");
        grants::insert_refresh_token(
            &mut conn,
            now,
            self.t(),
            &offline,
            "refresh-hash",
            Duration::days(30),
        )
        .unwrap();
        (session, [online, offline])
    }

    fn live_sessions(&self, user: UserId) -> usize {
        self.active_sessions(user).len()
    }

    fn grant_revoked(&self, id: &str) -> bool {
        let grant = grants::get(&mut self.conn(), self.t(), id)
            .unwrap()
            .unwrap();
        !grant.is_active(self.clock.now())
    }

    fn factors(&self, user: UserId) -> (bool, usize, usize) {
        let mut conn = self.conn();
        (
            totp::enrolled(&mut conn, &self.cipher, self.t(), user)
                .unwrap()
                .is_some(),
            recovery_codes::remaining(&mut conn, self.t(), user).unwrap(),
            credentials::list_for_user(&mut conn, self.t(), user, Some(CredentialKind::Webauthn))
                .unwrap()
                .len(),
        )
    }

    fn count(&self, action: &str) -> usize {
        self.actions().iter().filter(|a| *a == action).count()
    }

    /// Waits for the `n`th mail (1-based) and returns it.
    fn mail(&self, n: usize) -> CaughtMail {
        self.catcher.wait_for(n, WAIT).swap_remove(n - 1)
    }

    /// Asks for a reset link and waits for what follows the answer (the
    /// look-up, the link, the audit record, the mail), so tests read it in order.
    async fn request(&self, email: &str) -> Result<(), AuthnError> {
        let answer = self
            .authn
            .request_password_reset(self.t(), email.into(), links(), client())
            .await;
        self.authn.background().idle().await;
        answer
    }

    /// Asks for a reset link and returns its token from the `n`th mail.
    async fn reset_link(&self, email: &str, n: usize) -> String {
        self.request(email).await.unwrap();
        let mail = self.mail(n);
        assert_eq!(mail.to, [email]);
        token(&mail, RESET_PATH)
    }

    async fn open(&self, token: &str) -> Result<ResetTicket, AuthnError> {
        self.authn
            .open_password_reset(self.t(), token.into(), client())
            .await
    }

    async fn complete(&self, token: &str, proof: ResetProof) -> Result<(), AuthnError> {
        self.authn
            .complete_password_reset(
                self.t(),
                token.into(),
                proof,
                Zeroizing::new(NEW.into()),
                client(),
            )
            .await
    }

    async fn sign_in(&self, email: &str, password: &str) -> Result<SignInOutcome, AuthnError> {
        self.password_sign_in(email, password, client()).await
    }

    /// The old password is refused; the new one works (and, when `second_factor`,
    /// still asks for a second factor).
    async fn assert_password_replaced(&self, email: &str, second_factor: bool) {
        let old = self.sign_in(email, OLD).await;
        assert!(
            matches!(old, Err(AuthnError::InvalidCredentials)),
            "{old:?}"
        );
        match self.sign_in(email, NEW).await.unwrap() {
            SignInOutcome::SecondFactor(_) => assert!(second_factor, "a factor survived"),
            SignInOutcome::SignedIn(_) => assert!(!second_factor, "the factor was lost"),
        }
    }
}

/// The token of the first link to `path` in a mail.
fn token(mail: &CaughtMail, path: &str) -> String {
    let prefix = format!("{BASE}{path}?token=");
    let link = mail
        .find_link(&prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in: {}", mail.text_body()));
    link[prefix.len()..].to_owned()
}

fn code(text: &str) -> Zeroizing<String> {
    Zeroizing::new(text.to_owned())
}

gatehouse_identity_store::on_both_backends!(
    a_reset_link_goes_only_to_real_accounts_and_works_once,
    reset_links_expire_after_fifteen_minutes_and_newer_ones_replace_them,
    an_account_with_an_app_needs_a_code_and_a_wrong_one_keeps_the_link,
    a_recovery_code_is_a_proof_once,
    a_passkey_proves_a_reset_for_its_own_user_once,
    a_factor_recovery_link_says_when_it_unlocks_without_spending_anything,
    lost_factors_are_removed_only_after_the_cooling_off_unless_cancelled,
    a_factor_used_during_the_cooling_off_cancels_the_recovery,
    signing_in_with_the_app_during_the_cooling_off_cancels_the_recovery,
    signing_in_with_a_recovery_code_during_the_cooling_off_cancels_the_recovery,
    signing_in_with_a_passkey_during_the_cooling_off_cancels_the_recovery,
    an_administrator_reset_removes_factors_and_password_and_is_audited,
    requests_and_bad_links_are_rate_limited,
);

fn a_reset_link_goes_only_to_real_accounts_and_works_once(backend: Backend) {
    let env = Env::new(backend);
    let alice = env.user("alice@example.com");
    let (_, [online, offline]) = env.signed_in_with_grants(alice);
    runtime().block_on(async {
        env.request("nobody@example.com").await.unwrap();
        env.request(" Alice@Example.com ").await.unwrap();
        let mail = env.mail(1);
        assert_eq!(mail.to, ["alice@example.com"]);
        assert_eq!(
            mail.header("Subject").as_deref(),
            Some("Reset your password")
        );
        let token = token(&mail, RESET_PATH);

        // Opening it (twice: prefetchers) spends nothing.
        for _ in 0..2 {
            assert_eq!(
                env.open(&token).await.unwrap(),
                ResetTicket::ReadyForNewPassword
            );
        }
        // Nothing to recover without a second factor; the link survives that too.
        let refused = env
            .authn
            .request_factor_recovery(env.t(), token.clone(), links(), client())
            .await;
        assert!(
            matches!(refused, Err(AuthnError::NotEnrolled)),
            "{refused:?}"
        );
        // A password the policy refuses spends nothing either.
        let weak = env
            .authn
            .complete_password_reset(
                env.t(),
                token.clone(),
                ResetProof::None,
                Zeroizing::new("alice@example.com".into()),
                client(),
            )
            .await;
        assert!(
            matches!(weak, Err(AuthnError::PasswordPolicy(_))),
            "{weak:?}"
        );

        env.complete(&token, ResetProof::None).await.unwrap();
        assert_eq!(env.live_sessions(alice), 0, "a session survived the reset");
        assert!(env.grant_revoked(&online) && env.grant_revoked(&offline));
        let again = env.complete(&token, ResetProof::None).await;
        assert!(matches!(again, Err(AuthnError::InvalidLink)), "{again:?}");
        assert!(matches!(
            env.open(&token).await,
            Err(AuthnError::InvalidLink)
        ));

        let notice = env.mail(2);
        assert_eq!(notice.to, ["alice@example.com"]);
        let body = notice.text_body();
        assert!(
            body.contains("password of your account was reset"),
            "{body}"
        );
        assert!(!body.contains(NEW) && !body.contains("token="), "{body}");
        env.assert_password_replaced("alice@example.com", false)
            .await;
    });
    assert_eq!(env.catcher.messages().len(), 2, "a mail for no account");

    let events = env.audit_events();
    let requested: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.action == "recovery.requested")
        .collect();
    assert_eq!(requested.len(), 2);
    assert_eq!(requested[0].target, None);
    assert!(requested[0].details.contains(r#""account_found":false"#));
    assert_eq!(requested[1].target, Some(format!("user:{alice}")));
    assert_eq!(env.count("recovery.link_opened"), 2);
    let completed: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.action == "recovery.completed")
        .collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].actor, format!("user:{alice}"));
    assert_details_contain(completed[0], r#""sessions_ended":1"#);
    assert_details_contain(completed[0], r#""grants_revoked":2"#);
}

fn reset_links_expire_after_fifteen_minutes_and_newer_ones_replace_them(backend: Backend) {
    let env = Env::new(backend);
    env.user("bob@example.com");
    assert_eq!(
        env.authn.settings().password_reset_link_lifetime,
        Duration::minutes(15)
    );
    runtime().block_on(async {
        let first = env.reset_link("bob@example.com", 1).await;
        env.clock
            .advance(Duration::minutes(15) - Duration::seconds(1));
        env.open(&first).await.unwrap();
        env.clock.advance(Duration::seconds(1));
        assert!(matches!(
            env.open(&first).await,
            Err(AuthnError::InvalidLink)
        ));
        let late = env.complete(&first, ResetProof::None).await;
        assert!(matches!(late, Err(AuthnError::InvalidLink)), "{late:?}");

        let second = env.reset_link("bob@example.com", 2).await;
        let third = env.reset_link("bob@example.com", 3).await;
        assert!(
            matches!(env.open(&second).await, Err(AuthnError::InvalidLink)),
            "an older link works after a newer one was sent"
        );
        env.complete(&third, ResetProof::None).await.unwrap();
        env.assert_password_replaced("bob@example.com", false).await;
    });
}

fn an_account_with_an_app_needs_a_code_and_a_wrong_one_keeps_the_link(backend: Backend) {
    let env = Env::new(backend);
    let carol = env.user("carol@example.com");
    let secret = env.enrol_totp(carol);
    let (_, [online, offline]) = env.signed_in_with_grants(carol);
    runtime().block_on(async {
        let token = env.reset_link("carol@example.com", 1).await;
        assert_eq!(
            env.open(&token).await.unwrap(),
            ResetTicket::NeedsSecondFactor {
                user: carol,
                totp: true,
                recovery_codes: false,
                passkey: false
            }
        );
        let bare = env.complete(&token, ResetProof::None).await;
        assert!(
            matches!(bare, Err(AuthnError::SecondFactorRequired)),
            "{bare:?}"
        );
        let wrong = wrong_code(&secret, env.clock.now());
        let wrong = env.complete(&token, ResetProof::Totp(code(&wrong))).await;
        assert!(matches!(wrong, Err(AuthnError::InvalidCode)), "{wrong:?}");
        let not_hers = env
            .complete(&token, ResetProof::RecoveryCode(code("ABCDE-FGHJK")))
            .await;
        assert!(
            matches!(not_hers, Err(AuthnError::InvalidCode)),
            "{not_hers:?}"
        );
        // Nothing of that spent the link or changed anything.
        assert!(matches!(
            env.open(&token).await,
            Ok(ResetTicket::NeedsSecondFactor { .. })
        ));
        assert_eq!(env.live_sessions(carol), 1);
        assert!(!env.grant_revoked(&online));

        let right = totp_code(&secret, env.clock.now());
        env.complete(&token, ResetProof::Totp(code(&right)))
            .await
            .unwrap();
        assert_eq!(env.live_sessions(carol), 0);
        assert!(env.grant_revoked(&online) && env.grant_revoked(&offline));
        assert_eq!(env.factors(carol), (true, 0, 0), "the app stays");
        let notice = env.mail(2);
        assert!(
            notice
                .text_body()
                .contains("password of your account was reset")
        );
        env.assert_password_replaced("carol@example.com", true)
            .await;
        // The code's time step is spent: it does not pass twice.
        let token = env.reset_link("carol@example.com", 3).await;
        let replay = env.complete(&token, ResetProof::Totp(code(&right))).await;
        assert!(matches!(replay, Err(AuthnError::InvalidCode)), "{replay:?}");
    });
    let events = env.audit_events();
    let failed: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.action == "recovery.second_factor_failed")
        .collect();
    assert_eq!(failed.len(), 3);
    assert_details_contain(failed[0], r#""factor":"totp""#);
    assert_eq!(failed[0].outcome, "failure");
    let completed = env.first_event("recovery.completed");
    assert_details_contain(&completed, r#""second_factor":"totp""#);
}

fn a_recovery_code_is_a_proof_once(backend: Backend) {
    let env = Env::new(backend);
    let dan = env.user("dan@example.com");
    env.enrol_totp(dan);
    let codes = env.recovery_codes(dan);
    runtime().block_on(async {
        let token = env.reset_link("dan@example.com", 1).await;
        assert_eq!(
            env.open(&token).await.unwrap(),
            ResetTicket::NeedsSecondFactor {
                user: dan,
                totp: true,
                recovery_codes: true,
                passkey: false
            }
        );
        // A passkey proof for an account without a passkey.
        let none = env.authn.begin_reset_passkey(
            env.t(),
            token.clone(),
            "browser-cookie".into(),
            relying_party(),
            client(),
        );
        assert!(
            matches!(none.await, Err(AuthnError::NotEnrolled)),
            "no ceremony for an account without passkeys"
        );

        env.complete(&token, ResetProof::RecoveryCode(code(&codes[0])))
            .await
            .unwrap();
        assert_eq!(env.factors(dan).1, recovery_codes::COUNT - 1);
        let token = env.reset_link("dan@example.com", 3).await;
        let reused = env
            .complete(&token, ResetProof::RecoveryCode(code(&codes[0])))
            .await;
        assert!(matches!(reused, Err(AuthnError::InvalidCode)), "{reused:?}");
        env.complete(&token, ResetProof::RecoveryCode(code(&codes[1])))
            .await
            .unwrap();
        assert_eq!(env.factors(dan), (true, recovery_codes::COUNT - 2, 0));
    });
    assert_eq!(env.count("recovery.completed"), 2);
    assert_eq!(env.count("recovery.second_factor_failed"), 1);
}

/// A browser's cookie, to which its passkey ceremonies are bound.
const BROWSER: &str = "browser-cookie";

impl Env {
    /// Registers a passkey of `authenticator` for `user`; its credential id.
    async fn register_passkey(
        &self,
        user: UserId,
        authenticator: &mut SoftAuthenticator,
    ) -> Vec<u8> {
        let begun = self
            .authn
            .begin_passkey_registration(self.t(), user, BROWSER.into(), relying_party())
            .await
            .unwrap();
        let created = authenticator
            .create(&serde_json::to_value(&begun.options).unwrap())
            .unwrap();
        let raw_id = created["rawId"].as_str().unwrap().to_owned();
        self.authn
            .finish_passkey_registration(
                self.t(),
                user,
                BROWSER.into(),
                begun.challenge_id,
                "Phone".into(),
                serde_json::from_value(created).unwrap(),
                relying_party(),
                client(),
            )
            .await
            .unwrap();
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw_id).unwrap()
    }

    /// Begins a passkey sign-in in [`BROWSER`]: the challenge id and options.
    async fn begin_passkey_sign_in(&self, user: Option<UserId>) -> (String, serde_json::Value) {
        let begun = self
            .authn
            .begin_passkey_authentication(self.t(), BROWSER.into(), relying_party(), user)
            .await
            .unwrap();
        (
            begun.challenge_id,
            serde_json::to_value(&begun.options).unwrap(),
        )
    }

    /// Finishes a passkey sign-in begun in [`BROWSER`] with the authenticator's answer.
    async fn finish_passkey_sign_in(
        &self,
        challenge_id: String,
        response: serde_json::Value,
    ) -> Result<PasskeyAuthenticated, AuthnError> {
        self.authn
            .finish_passkey_authentication(
                self.t(),
                BROWSER.into(),
                challenge_id,
                serde_json::from_value(response).unwrap(),
                relying_party(),
                client(),
            )
            .await
    }

    /// Begins the passkey proof of reset link `token`: the challenge id and options.
    async fn begin_reset_passkey(&self, token: &str) -> (String, serde_json::Value) {
        let begun = self
            .authn
            .begin_reset_passkey(
                self.t(),
                token.into(),
                BROWSER.into(),
                relying_party(),
                client(),
            )
            .await
            .unwrap();
        (
            begun.challenge_id,
            serde_json::to_value(&begun.options).unwrap(),
        )
    }
}

fn passkey_proof(challenge_id: &str, response: &serde_json::Value) -> ResetProof {
    ResetProof::Passkey(Box::new(PasskeyProof {
        challenge_id: challenge_id.into(),
        binding: BROWSER.into(),
        response: serde_json::from_value(response.clone()).unwrap(),
        rp: relying_party(),
    }))
}

fn a_passkey_proves_a_reset_for_its_own_user_once(backend: Backend) {
    let env = Env::new(backend);
    let dan = env.user("dan@example.com");
    let eve = env.user("eve@example.com");
    let mut dans_phone = SoftAuthenticator::new("https://id.example.test");
    let mut eves_phone = SoftAuthenticator::new("https://id.example.test");
    runtime().block_on(async {
        let dans_key = env.register_passkey(dan, &mut dans_phone).await;
        env.register_passkey(eve, &mut eves_phone).await;
        let eves_link = env.reset_link("eve@example.com", 1).await;
        let dans_link = env.reset_link("dan@example.com", 2).await;
        // Eve has a passkey and nothing else: that is what her page offers.
        assert_eq!(
            env.open(&eves_link).await.unwrap(),
            ResetTicket::NeedsSecondFactor {
                user: eve,
                totp: false,
                recovery_codes: false,
                passkey: true
            }
        );

        // Dan's passkey, forced into a ceremony for Eve's link, is refused.
        let (challenge, options) = env.begin_reset_passkey(&eves_link).await;
        assert_eq!(
            options["publicKey"]["allowCredentials"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "only Eve's passkeys are offered"
        );
        let foreign = dans_phone.assert_with(&options, &dans_key);
        let refused = env.complete(&eves_link, passkey_proof(&challenge, &foreign)).await;
        assert!(
            matches!(&refused, Err(AuthnError::PasskeyRejected(why)) if why.contains("not one of the user's")),
            "{refused:?}"
        );

        // A ceremony of Dan's own link does not answer Eve's link, nor does a sign-in's.
        let (challenge, options) = env.begin_reset_passkey(&dans_link).await;
        let dans = dans_phone.get(&options).unwrap();
        let other_link = env.complete(&eves_link, passkey_proof(&challenge, &dans)).await;
        assert!(
            matches!(other_link, Err(AuthnError::ChallengeInvalid)),
            "{other_link:?}"
        );
        let (sign_in, options) = env.begin_passkey_sign_in(Some(eve)).await;
        let for_sign_in = eves_phone.get(&options).unwrap();
        let not_a_reset = env
            .complete(&eves_link, passkey_proof(&sign_in, &for_sign_in))
            .await;
        assert!(
            matches!(not_a_reset, Err(AuthnError::ChallengeInvalid)),
            "{not_a_reset:?}"
        );
        // Nor does a reset's ceremony sign anyone in.
        let (challenge, options) = env.begin_reset_passkey(&eves_link).await;
        let for_reset = eves_phone.get(&options).unwrap();
        let signed_in = env.finish_passkey_sign_in(challenge, for_reset).await;
        assert!(
            matches!(signed_in, Err(AuthnError::ChallengeInvalid)),
            "{signed_in:?}"
        );
        // Nor in another browser.
        let (challenge, options) = env.begin_reset_passkey(&eves_link).await;
        let asserted = eves_phone.get(&options).unwrap();
        let mut elsewhere = passkey_proof(&challenge, &asserted);
        if let ResetProof::Passkey(proof) = &mut elsewhere {
            proof.binding = "another-browser".into();
        }
        let elsewhere = env.complete(&eves_link, elsewhere).await;
        assert!(
            matches!(elsewhere, Err(AuthnError::ChallengeInvalid)),
            "{elsewhere:?}"
        );

        // Her own passkey, for her own link: the password is reset.
        let (challenge, options) = env.begin_reset_passkey(&eves_link).await;
        let asserted = eves_phone.get(&options).unwrap();
        env.complete(&eves_link, passkey_proof(&challenge, &asserted))
            .await
            .unwrap();
        env.assert_password_replaced("eve@example.com", true).await;
        assert_eq!(env.factors(eve), (false, 0, 1), "the passkey stays");

        // The same assertion again, on a new link: its challenge is spent.
        let new_link = env.reset_link("eve@example.com", 4).await;
        let replayed = env.complete(&new_link, passkey_proof(&challenge, &asserted)).await;
        assert!(
            matches!(replayed, Err(AuthnError::ChallengeInvalid)),
            "{replayed:?}"
        );
        // …or under a new challenge: it answers the old one.
        let (challenge, _) = env.begin_reset_passkey(&new_link).await;
        let replayed = env.complete(&new_link, passkey_proof(&challenge, &asserted)).await;
        assert!(
            matches!(&replayed, Err(AuthnError::PasskeyRejected(_))),
            "{replayed:?}"
        );
        // The refusals left the new link working.
        assert_eq!(
            env.open(&new_link).await.unwrap(),
            ResetTicket::NeedsSecondFactor {
                user: eve,
                totp: false,
                recovery_codes: false,
                passkey: true
            }
        );
    });
    let events = env.audit_events();
    let completed: Vec<_> = events
        .iter()
        .filter(|e| e.action == "recovery.completed")
        .collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(
        completed[0].target.as_deref(),
        Some(format!("user:{eve}").as_str())
    );
    assert!(
        completed[0]
            .details
            .contains(r#""second_factor":"passkey""#),
        "{}",
        completed[0].details
    );
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.action == "recovery.second_factor_failed")
        .collect();
    assert_eq!(failed.len(), 6, "every refused proof is audited");
    assert!(
        failed
            .iter()
            .all(|e| e.details.contains(r#""factor":"passkey""#))
    );
    assert_details_contain(failed[0], "passkey_rejected");
    assert_details_contain(failed[1], "challenge_invalid");
    assert!(
        events
            .iter()
            .any(|e| e.action == "passkey.authentication_failed"
                && e.details.contains("password_reset")),
        "the rejected assertion counts as a passkey failure"
    );
}

fn lost_factors_are_removed_only_after_the_cooling_off_unless_cancelled(backend: Backend) {
    let env = Env::new(backend);
    let frank = env.user("frank@example.com");
    env.enrol_totp(frank);
    env.recovery_codes(frank);
    env.passkey(frank);
    let (_, [online, offline]) = env.signed_in_with_grants(frank);
    let cooling_off = env.authn.settings().factor_recovery_cooling_off;
    assert_eq!(cooling_off, Duration::hours(24));
    runtime().block_on(async {
        // A first recovery, cancelled by the owner.
        let token = env.reset_link("frank@example.com", 1).await;
        let started = env
            .authn
            .request_factor_recovery(env.t(), token.clone(), links(), client())
            .await
            .unwrap();
        assert_eq!(started.ready_at, env.clock.now() + cooling_off);
        assert!(
            matches!(env.open(&token).await, Err(AuthnError::InvalidLink)),
            "the reset link survived"
        );
        let notice = env.mail(2);
        assert_eq!(notice.to, ["frank@example.com"]);
        let (complete, cancel) = (
            token_of(&notice, FACTOR_RECOVERY_PATH),
            token_of(&notice, CANCEL_PATH),
        );

        env.clock.advance(cooling_off - Duration::seconds(1));
        match env.complete_recovery(&complete).await {
            Err(AuthnError::RecoveryNotReady { ready_at }) => {
                assert_eq!(ready_at, started.ready_at)
            }
            other => panic!("completed during the cooling-off: {other:?}"),
        }
        env.authn
            .cancel_factor_recovery(env.t(), cancel.clone(), client())
            .await
            .unwrap();
        let twice = env
            .authn
            .cancel_factor_recovery(env.t(), cancel, client())
            .await;
        assert!(matches!(twice, Err(AuthnError::InvalidLink)), "{twice:?}");
        env.clock.advance(Duration::hours(2));
        let cancelled = env.complete_recovery(&complete).await;
        assert!(
            matches!(cancelled, Err(AuthnError::RecoveryCancelled)),
            "{cancelled:?}"
        );
        assert_eq!(env.factors(frank), (true, recovery_codes::COUNT, 1));
        assert_eq!(env.live_sessions(frank), 1);

        // A second one, left to run its course.
        let token = env.reset_link("frank@example.com", 3).await;
        env.authn
            .request_factor_recovery(env.t(), token, links(), client())
            .await
            .unwrap();
        let complete = token_of(&env.mail(4), FACTOR_RECOVERY_PATH);
        env.clock.advance(cooling_off);
        env.complete_recovery(&complete).await.unwrap();
        assert_eq!(env.factors(frank), (false, 0, 0));
        assert_eq!(env.live_sessions(frank), 0);
        assert!(env.grant_revoked(&online) && env.grant_revoked(&offline));
        let notice = env.mail(5);
        assert!(
            notice.text_body().contains("were removed"),
            "{}",
            notice.text_body()
        );
        assert!(!notice.text_body().contains(NEW));
        let twice = env.complete_recovery(&complete).await;
        assert!(matches!(twice, Err(AuthnError::InvalidLink)), "{twice:?}");
        env.assert_password_replaced("frank@example.com", false)
            .await;
    });
    assert_eq!(env.catcher.messages().len(), 5);
    for action in [
        "recovery.factor_recovery_started",
        "recovery.factor_recovery_cancelled",
        "recovery.factor_recovery_completed",
    ] {
        assert!(env.count(action) >= 1, "{action}: {:?}", env.actions());
    }
    assert_eq!(env.count("recovery.factor_recovery_started"), 2);
    let completed = env.first_event("recovery.factor_recovery_completed");
    let removed = format!(r#""factors_removed":{}"#, recovery_codes::COUNT + 2);
    assert_details_contain(&completed, &removed);
}

fn a_factor_used_during_the_cooling_off_cancels_the_recovery(backend: Backend) {
    let env = Env::new(backend);
    let gina = env.user("gina@example.com");
    let secret = env.enrol_totp(gina);
    runtime().block_on(async {
        let token = env.reset_link("gina@example.com", 1).await;
        env.authn
            .request_factor_recovery(env.t(), token, links(), client())
            .await
            .unwrap();
        let complete = token_of(&env.mail(2), FACTOR_RECOVERY_PATH);
        // The owner signs in with the app meanwhile: it is not lost.
        env.clock.advance(Duration::hours(3));
        let now = env.clock.now();
        let code = totp_code(&secret, now);
        let offered = OfferedCode {
            cipher: &env.cipher,
            now,
            tenant: env.t(),
            user: gina,
            code: &code,
        };
        totp::verify(&mut env.conn(), offered).unwrap();
        env.clock.advance(Duration::hours(24));
        let refused = env.complete_recovery(&complete).await;
        assert!(
            matches!(refused, Err(AuthnError::RecoveryCancelled)),
            "{refused:?}"
        );
        assert_eq!(env.factors(gina), (true, 0, 0));
        let again = env.complete_recovery(&complete).await;
        assert!(
            matches!(again, Err(AuthnError::RecoveryCancelled)),
            "{again:?}"
        );
    });
    let cancelled = env.first_event("recovery.factor_recovery_cancelled");
    assert_details_contain(&cancelled, "second_factor_used");
}

fn an_administrator_reset_removes_factors_and_password_and_is_audited(backend: Backend) {
    let env = Env::new(backend);
    let hal = env.user("hal@example.com");
    env.enrol_totp(hal);
    env.recovery_codes(hal);
    let (_, [online, offline]) = env.signed_in_with_grants(hal);
    runtime().block_on(async {
        // A recovery of his own was under way: the administrator's reset ends it.
        let token = env.reset_link("hal@example.com", 1).await;
        env.authn
            .request_factor_recovery(env.t(), token, links(), client())
            .await
            .unwrap();
        let pending = token_of(&env.mail(2), FACTOR_RECOVERY_PATH);

        let outcome = env
            .authn
            .admin_reset(
                env.t(),
                "user:admin-7".into(),
                hal,
                "lost phone; identity checked on a video call".into(),
                links(),
                client_from("198.51.100.1"),
            )
            .await
            .unwrap();
        assert_eq!(outcome.sessions_ended.len(), 1);
        assert_eq!(
            outcome,
            AdminResetOutcome {
                factors_removed: recovery_codes::COUNT + 1,
                sessions_ended: outcome.sessions_ended.clone(),
                grants_revoked: 2,
                link_sent: true,
            }
        );
        assert_eq!(env.factors(hal), (false, 0, 0));
        assert_eq!(env.live_sessions(hal), 0);
        assert!(env.grant_revoked(&online) && env.grant_revoked(&offline));
        let old = env.sign_in("hal@example.com", OLD).await;
        assert!(
            matches!(old, Err(AuthnError::InvalidCredentials)),
            "{old:?}"
        );
        env.clock.advance(Duration::hours(25));
        let stale = env.complete_recovery(&pending).await;
        assert!(
            matches!(stale, Err(AuthnError::RecoveryCancelled)),
            "{stale:?}"
        );
        env.clock.advance(Duration::hours(-25));

        let mail = env.mail(3);
        assert_eq!(mail.to, ["hal@example.com"]);
        assert!(
            mail.text_body().contains("administrator"),
            "{}",
            mail.text_body()
        );
        let token = token_of(&mail, RESET_PATH);
        assert_eq!(
            env.open(&token).await.unwrap(),
            ResetTicket::ReadyForNewPassword
        );
        env.complete(&token, ResetProof::None).await.unwrap();
        env.assert_password_replaced("hal@example.com", false).await;
    });
    let event = env.first_event("recovery.admin_reset");
    assert_eq!(event.actor, "user:admin-7");
    assert_eq!(event.target, Some(format!("user:{hal}")));
    assert_eq!(event.ip.as_deref(), Some("198.51.100.1"));
    assert_details_contain(&event, "video call");
    assert_details_contain(&event, r#""password_removed":true"#);
}

fn requests_and_bad_links_are_rate_limited(backend: Backend) {
    let env = Env::new(backend);
    env.user("ivy@example.com");
    let per_hour = env.authn.settings().password_reset_requests_per_hour;
    let per_ip = env.authn.settings().password_reset_requests_per_ip_hour;
    let links_threshold = env.authn.settings().ip_lockout_threshold;
    runtime().block_on(async {
        // Per address, the same for an account and for no account.
        for email in ["ivy@example.com", "nobody@example.com"] {
            for _ in 0..per_hour {
                env.request(email).await.unwrap();
            }
            match env.request(email).await {
                Err(AuthnError::Throttled { until }) => {
                    assert_eq!(until, Some(env.clock.now() + Duration::hours(1)));
                }
                other => panic!("{email}: not throttled: {other:?}"),
            }
        }
        let n = usize::try_from(per_hour).unwrap();
        env.catcher.wait_for(n, WAIT);

        // Per IP, across addresses.
        let elsewhere = client_from("192.0.2.99");
        for i in 0..per_ip {
            env.authn
                .request_password_reset(
                    env.t(),
                    format!("x{i}@example.com"),
                    links(),
                    elsewhere.clone(),
                )
                .await
                .unwrap();
        }
        let flood = env
            .authn
            .request_password_reset(env.t(), "x-last@example.com".into(), links(), elsewhere)
            .await;
        assert!(
            matches!(flood, Err(AuthnError::Throttled { .. })),
            "{flood:?}"
        );

        // Bad links from one IP lock it, for good links too.
        let token = env.reset_link_after_an_hour("ivy@example.com", n + 1).await;
        let mut throttled = false;
        for i in 0..links_threshold + 1 {
            match env.open(&format!("guess-{i}")).await {
                Err(AuthnError::InvalidLink) => {}
                Err(AuthnError::Throttled { .. }) => throttled = true,
                other => panic!("{other:?}"),
            }
        }
        assert!(throttled, "never throttled");
        let locked = env.open(&token).await;
        assert!(
            matches!(locked, Err(AuthnError::Throttled { .. })),
            "{locked:?}"
        );
        let locked = env.complete(&token, ResetProof::None).await;
        assert!(
            matches!(locked, Err(AuthnError::Throttled { .. })),
            "{locked:?}"
        );
        // Another IP is not affected.
        let ticket = env
            .authn
            .open_password_reset(env.t(), token, client_from("192.0.2.1"))
            .await
            .unwrap();
        assert_eq!(ticket, ResetTicket::ReadyForNewPassword);
    });
    assert_eq!(
        env.catcher.messages().len(),
        usize::try_from(per_hour).unwrap() + 1
    );
    let denied = env
        .audit_events()
        .into_iter()
        .filter(|e| e.action == "recovery.requested" && e.outcome == "denied")
        .count();
    assert_eq!(denied, 3);
}

/// The relying party of the passkey ceremonies in these tests.
fn relying_party() -> gatehouse_authn::passkeys::RelyingParty {
    let origin = gatehouse_authn::passkeys::Url::parse("https://id.example.test").unwrap();
    gatehouse_authn::passkeys::RelyingParty::for_origin(&origin, "Acme").unwrap()
}

/// A recovery of lost factors started with the reset link in mail `n`; its
/// completion token, from mail `n + 1`.
async fn start_factor_recovery(env: &Env, email: &str, n: usize) -> String {
    let token = env.reset_link(email, n).await;
    env.authn
        .request_factor_recovery(env.t(), token, links(), client())
        .await
        .unwrap();
    token_of(&env.mail(n + 1), FACTOR_RECOVERY_PATH)
}

/// The recovery was cancelled when the factor passed, not when someone tried to
/// complete it: no open recovery is left, and the audit log says which factor.
fn assert_cancelled_by(env: &Env, user: UserId, factor: &str) {
    let open =
        account_recoveries::open_for_user(&mut env.conn(), env.clock.now(), env.t(), user).unwrap();
    assert_eq!(open, None, "the recovery is still open");
    let cancelled: Vec<AuditEvent> = env
        .audit_events()
        .into_iter()
        .filter(|e| e.action == "recovery.factor_recovery_cancelled")
        .collect();
    assert_eq!(cancelled.len(), 1, "{cancelled:?}");
    assert_eq!(cancelled[0].target, Some(format!("user:{user}")));
    for words in ["second_factor_used", &format!(r#""factor":"{factor}""#)] {
        assert_details_contain(&cancelled[0], words);
    }
}

/// After the cooling-off the attacker's completion link is refused and every
/// factor is still there.
async fn assert_completion_refused(env: &Env, complete: &str) {
    env.clock
        .advance(env.authn.settings().factor_recovery_cooling_off);
    let refused = env.complete_recovery(complete).await;
    assert!(
        matches!(refused, Err(AuthnError::RecoveryCancelled)),
        "{refused:?}"
    );
    assert_eq!(env.count("recovery.factor_recovery_completed"), 0);
}

async fn pending_sign_in(env: &Env, email: &str) -> String {
    match env.sign_in(email, OLD).await.unwrap() {
        SignInOutcome::SecondFactor(pending) => pending.token.to_string(),
        SignInOutcome::SignedIn(_) => panic!("no second factor asked"),
    }
}

fn signing_in_with_the_app_during_the_cooling_off_cancels_the_recovery(backend: Backend) {
    let env = Env::new(backend);
    let kim = env.user("kim@example.com");
    let secret = env.enrol_totp(kim);
    runtime().block_on(async {
        let complete = start_factor_recovery(&env, "kim@example.com", 1).await;
        env.clock.advance(Duration::hours(3));
        // A wrong code proves nothing: the recovery stays.
        let pending = pending_sign_in(&env, "kim@example.com").await;
        let wrong = env
            .authn
            .complete_sign_in(
                env.t(),
                pending.clone(),
                SecondFactor::Totp(Zeroizing::new("000000".into())),
                None,
                client(),
            )
            .await;
        assert!(matches!(wrong, Err(AuthnError::InvalidCode)), "{wrong:?}");
        assert!(
            account_recoveries::open_for_user(&mut env.conn(), env.clock.now(), env.t(), kim)
                .unwrap()
                .is_some()
        );
        let code = totp_code(&secret, env.clock.now());
        env.authn
            .complete_sign_in(
                env.t(),
                pending,
                SecondFactor::Totp(Zeroizing::new(code)),
                None,
                client(),
            )
            .await
            .unwrap();
        assert_cancelled_by(&env, kim, "totp");
        assert_completion_refused(&env, &complete).await;
        assert_eq!(env.factors(kim), (true, 0, 0));
    });
}

fn signing_in_with_a_recovery_code_during_the_cooling_off_cancels_the_recovery(backend: Backend) {
    let env = Env::new(backend);
    let lea = env.user("lea@example.com");
    env.enrol_totp(lea);
    let codes = env.recovery_codes(lea);
    runtime().block_on(async {
        let complete = start_factor_recovery(&env, "lea@example.com", 1).await;
        env.clock.advance(Duration::hours(3));
        // The code is deleted as it is spent: nothing of it is left to find
        // when the completion link is used.
        let pending = pending_sign_in(&env, "lea@example.com").await;
        env.authn
            .complete_sign_in(
                env.t(),
                pending,
                SecondFactor::RecoveryCode(Zeroizing::new(codes[0].clone())),
                None,
                client(),
            )
            .await
            .unwrap();
        assert_eq!(env.factors(lea).1, recovery_codes::COUNT - 1);
        assert_cancelled_by(&env, lea, "recovery_code");
        assert_completion_refused(&env, &complete).await;
        assert_eq!(env.factors(lea), (true, recovery_codes::COUNT - 1, 0));
        assert_eq!(
            env.catcher.messages().len(),
            2,
            "no 'factors removed' notice"
        );
    });
}

fn signing_in_with_a_passkey_during_the_cooling_off_cancels_the_recovery(backend: Backend) {
    let env = Env::new(backend);
    let max = env.user("max@example.com");
    let mut phone = SoftAuthenticator::new("https://id.example.test");
    runtime().block_on(async {
        env.register_passkey(max, &mut phone).await;
        env.clock.advance(Duration::minutes(5));

        let complete = start_factor_recovery(&env, "max@example.com", 1).await;
        env.clock.advance(Duration::hours(3));
        // Passwordless: the passkey alone names and signs in the account.
        let (challenge, options) = env.begin_passkey_sign_in(None).await;
        let asserted = phone.get(&options).unwrap();
        let passkey = env
            .finish_passkey_sign_in(challenge, asserted)
            .await
            .unwrap();
        env.authn
            .sign_in_with_passkey(env.t(), passkey, None, client())
            .await
            .unwrap();
        assert_cancelled_by(&env, max, "passkey");
        assert_completion_refused(&env, &complete).await;
        assert_eq!(env.factors(max), (false, 0, 1));
    });
}

impl Env {
    async fn complete_recovery(&self, token: &str) -> Result<(), AuthnError> {
        self.authn
            .complete_factor_recovery(self.t(), token.into(), Zeroizing::new(NEW.into()), client())
            .await
    }

    async fn reset_link_after_an_hour(&self, email: &str, n: usize) -> String {
        self.clock.advance(Duration::hours(1));
        self.reset_link(email, n).await
    }
}

fn token_of(mail: &CaughtMail, path: &str) -> String {
    token(mail, path)
}

fn a_factor_recovery_link_says_when_it_unlocks_without_spending_anything(backend: Backend) {
    let env = Env::new(backend);
    let ida = env.user("ida@example.com");
    env.enrol_totp(ida);
    runtime().block_on(async {
        let started = env.clock.now();
        let complete = start_factor_recovery(&env, "ida@example.com", 1).await;
        let cooling_off = env.authn.settings().factor_recovery_cooling_off;
        let window = env.authn.settings().factor_recovery_window;
        let open = || {
            env.authn
                .open_factor_recovery(env.t(), complete.clone(), client())
        };
        assert_eq!(
            open().await.unwrap(),
            FactorRecoveryStatus::Waiting {
                ready_at: started + cooling_off
            }
        );
        env.clock.advance(cooling_off + Duration::minutes(1));
        assert_eq!(
            open().await.unwrap(),
            FactorRecoveryStatus::Ready {
                expires_at: started + cooling_off + window
            },
            "opening it spent nothing"
        );
        let unknown = env
            .authn
            .open_factor_recovery(env.t(), "no-such-token".into(), client())
            .await;
        assert!(
            matches!(unknown, Err(AuthnError::InvalidLink)),
            "{unknown:?}"
        );
        env.complete_recovery(&complete).await.unwrap();
        let used = open().await;
        assert!(matches!(used, Err(AuthnError::InvalidLink)), "{used:?}");
    });
}
