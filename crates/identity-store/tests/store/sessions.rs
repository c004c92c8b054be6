use chrono::Duration;
use gatehouse_identity_store::one_time_tokens::{self, Purpose};
use gatehouse_identity_store::rate_limits;
use gatehouse_identity_store::sessions::{self, AuthMethod, NewSession};
use gatehouse_identity_store::users::{self, UserData};

use crate::{now, tenant};

fn new_session(user: gatehouse_core::ids::UserId, secret_hash: &str) -> NewSession {
    NewSession {
        user_id: user,
        secret_hash: secret_hash.into(),
        idle_timeout: Duration::minutes(30),
        absolute_timeout: Duration::hours(12),
        ip: Some("198.51.100.4".into()),
        user_agent: Some("test".into()),
        auth_methods: vec![AuthMethod::new("pwd", now())],
        aal: 1,
    }
}

gatehouse_identity_store::backend_tests! {
    fn a_step_up_adds_a_method_raises_the_level_and_rotates_the_secret(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let user = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap();
        let session = sessions::create(&mut conn, now(), t, new_session(user.id, "before")).unwrap();
        assert_eq!(session.amr(), vec!["pwd"]);
        assert_eq!(session.second_factor_at(), None);

        let later = now() + Duration::minutes(3);
        let mut methods = session.auth_methods.clone();
        methods.push(AuthMethod::new("otp", later));
        let raised = sessions::elevate(&mut conn, later, &session, &methods, 2, "after".into()).unwrap().unwrap();
        assert_eq!(raised.id, session.id, "the same session (a stable sid)");
        assert_eq!(raised.aal, 2);
        assert_eq!(raised.amr(), vec!["pwd", "otp", "mfa"]);
        assert_eq!(raised.second_factor_at(), Some(later));
        assert_eq!(raised.auth_time(), later);
        assert!(sessions::find_active(&mut conn, later, t, "before").unwrap().is_none(), "the old secret stops working");
        assert_eq!(sessions::find_active(&mut conn, later, t, "after").unwrap().unwrap().aal, 2);

        // An ended session cannot be raised.
        assert!(sessions::end(&mut conn, later, t, session.id, None, "signed_out").unwrap());
        assert!(sessions::elevate(&mut conn, later, &raised, &methods, 2, "again".into()).unwrap().is_none());
        assert!(sessions::find_active(&mut conn, later, t, "again").unwrap().is_none());
    }

    fn sessions_expire_when_idle_and_absolutely(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let user = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap();
        let session = sessions::create(&mut conn, now(), t, new_session(user.id, "h1")).unwrap();
        assert_eq!(session.auth_time(), now());
        let found = sessions::find_active(&mut conn, now(), t, "h1").unwrap().unwrap();
        assert_eq!(found, session);
        assert!(sessions::find_active(&mut conn, now(), t, "other").unwrap().is_none());
        let other_tenant = tenant(&mut conn, "evil");
        assert!(sessions::find_active(&mut conn, now(), other_tenant, "h1").unwrap().is_none());

        // Idle: 31 minutes without activity ends it.
        assert!(sessions::find_active(&mut conn, now() + Duration::minutes(31), t, "h1").unwrap().is_none());
        // Activity slides the idle expiry …
        let mut at = now();
        for _ in 0..30 {
            at += Duration::minutes(25);
            let live = sessions::find_active(&mut conn, at, t, "h1").unwrap();
            let Some(live) = live else { break };
            sessions::touch(&mut conn, at, &live, Duration::minutes(30)).unwrap();
        }
        // … but never past the absolute limit.
        assert!(sessions::find_active(&mut conn, now() + Duration::hours(12), t, "h1").unwrap().is_none());
        assert!(sessions::find_active(&mut conn, now() + Duration::minutes(11 * 60 + 50), t, "h1").unwrap().is_some());
    }

    fn sessions_end_one_by_one_or_all_but_the_current(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap();
        let bob = users::create(&mut conn, now(), t, UserData::new("bob")).unwrap();
        let a1 = sessions::create(&mut conn, now(), t, new_session(alice.id, "a1")).unwrap();
        let a2 = sessions::create(&mut conn, now(), t, new_session(alice.id, "a2")).unwrap();
        let a3 = sessions::create(&mut conn, now(), t, new_session(alice.id, "a3")).unwrap();
        let b1 = sessions::create(&mut conn, now(), t, new_session(bob.id, "b1")).unwrap();

        // Alice cannot end Bob's session by id.
        assert!(!sessions::end(&mut conn, now(), t, b1.id, Some(alice.id), "signed_out").unwrap());
        assert!(sessions::end(&mut conn, now(), t, a2.id, Some(alice.id), "signed_out").unwrap());
        assert!(!sessions::end(&mut conn, now(), t, a2.id, Some(alice.id), "signed_out").unwrap());
        assert_eq!(sessions::get(&mut conn, t, a2.id).unwrap().end_reason.as_deref(), Some("signed_out"));

        assert_eq!(sessions::end_all_for_user(&mut conn, now(), t, alice.id, Some(a1.id), "password_changed").unwrap(), vec![a3.id]);
        let live: Vec<_> = sessions::list_active_for_user(&mut conn, now(), t, alice.id).unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(live, vec![a1.id]);
        assert!(sessions::find_active(&mut conn, now(), t, "a3").unwrap().is_none());
        assert_eq!(sessions::get(&mut conn, t, a3.id).unwrap().end_reason.as_deref(), Some("password_changed"));
        assert!(sessions::find_active(&mut conn, now(), t, "b1").unwrap().is_some());
    }

    fn one_time_tokens_are_single_use_and_expire(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let user = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap();
        let payload = serde_json::json!({ "email": "alice@example.com" });
        one_time_tokens::issue(&mut conn, now(), t, user.id, Purpose::VerifyEmail, "tok1", Duration::hours(24), &payload).unwrap();
        one_time_tokens::issue(&mut conn, now(), t, user.id, Purpose::VerifyEmail, "tok2", Duration::hours(24), &payload).unwrap();

        assert!(one_time_tokens::consume(&mut conn, now(), t, Purpose::PasswordReset, "tok1").unwrap().is_none(), "wrong purpose accepted");
        let used = one_time_tokens::consume(&mut conn, now(), t, Purpose::VerifyEmail, "tok1").unwrap().unwrap();
        assert_eq!((used.user_id, used.payload), (user.id, payload));
        assert!(one_time_tokens::consume(&mut conn, now(), t, Purpose::VerifyEmail, "tok1").unwrap().is_none(), "token used twice");
        assert!(one_time_tokens::consume(&mut conn, now() + Duration::hours(24), t, Purpose::VerifyEmail, "tok2").unwrap().is_none(), "expired token accepted");

        one_time_tokens::issue(&mut conn, now(), t, user.id, Purpose::PasswordReset, "r1", Duration::minutes(15), &serde_json::json!({})).unwrap();
        assert_eq!(one_time_tokens::revoke_for_user(&mut conn, now(), t, user.id, Purpose::PasswordReset).unwrap(), 1);
        assert!(one_time_tokens::consume(&mut conn, now(), t, Purpose::PasswordReset, "r1").unwrap().is_none());
    }

    fn failure_counters_lock_and_forget(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let lock_after_three = |failures: i32| (failures >= 3).then(|| Duration::minutes(15));
        for expected in 1..=2 {
            let counter = rate_limits::record_failure(&mut conn, now(), t, "login:alice", Duration::hours(1), lock_after_three).unwrap();
            assert_eq!(counter.failures, expected);
            assert!(!counter.is_locked(now()));
        }
        let locked = rate_limits::record_failure(&mut conn, now(), t, "login:alice", Duration::hours(1), lock_after_three).unwrap();
        assert!(locked.is_locked(now()));
        assert!(!locked.is_locked(now() + Duration::minutes(15)));
        // Failures outside the window are forgotten.
        let later = rate_limits::record_failure(&mut conn, now() + Duration::hours(2), t, "login:alice", Duration::hours(1), lock_after_three).unwrap();
        assert_eq!(later.failures, 1);
        rate_limits::reset(&mut conn, t, "login:alice").unwrap();
        assert!(rate_limits::get(&mut conn, t, "login:alice").unwrap().is_none());
    }

    fn concurrent_failures_are_all_counted(db) {
        let t = {
            let mut conn = db.conn();
            tenant(&mut conn, "acme")
        };
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let mut conn = db.conn();
                    for _ in 0..10 {
                        rate_limits::record_failure(&mut conn, now(), t, "ip:203.0.113.9", Duration::hours(1), |_| None).unwrap();
                    }
                });
            }
        });
        let mut conn = db.conn();
        assert_eq!(rate_limits::get(&mut conn, t, "ip:203.0.113.9").unwrap().unwrap().failures, 40);
    }
}
