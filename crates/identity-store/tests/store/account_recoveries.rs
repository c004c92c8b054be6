use chrono::Duration;
use gatehouse_core::ids::UserId;
use gatehouse_identity_store::account_recoveries::{self, NewRecovery, RecoveryState};
use gatehouse_identity_store::one_time_tokens::{self, Purpose};
use gatehouse_identity_store::users::{self, UserData};

use crate::{now, tenant};

fn hours(n: i64) -> Duration {
    Duration::hours(n)
}

fn new(user: UserId, recovery: &'static str, cancel: &'static str) -> NewRecovery<'static> {
    NewRecovery {
        user,
        recovery_token_hash: recovery,
        cancel_token_hash: cancel,
        cooling_off: hours(24),
        completion_window: Duration::days(7),
    }
}

gatehouse_identity_store::backend_tests! {
    fn a_recovery_waits_then_completes_once(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap().id;
        let started = account_recoveries::start(&mut conn, now(), t, new(alice, "r1", "c1")).unwrap();
        assert_eq!((started.user_id, started.created_at), (alice, now()));
        assert_eq!(started.ready_at, now() + hours(24));
        assert_eq!(started.expires_at, now() + hours(24) + Duration::days(7));
        assert_eq!(started.state(now()), RecoveryState::Waiting);
        assert_eq!(account_recoveries::open_for_user(&mut conn, now(), t, alice).unwrap(), Some(started.clone()));

        let found = account_recoveries::find_by_recovery_token(&mut conn, t, "r1").unwrap().unwrap();
        assert_eq!(found, started);
        assert_eq!(account_recoveries::find_by_recovery_token(&mut conn, t, "c1").unwrap(), None, "the cancel token completes nothing");
        let other = tenant(&mut conn, "other");
        assert_eq!(account_recoveries::find_by_recovery_token(&mut conn, other, "r1").unwrap(), None, "found in another tenant");

        let early = now() + hours(24) - Duration::seconds(1);
        assert!(!account_recoveries::complete(&mut conn, early, t, &started.id).unwrap(), "completed while cooling off");
        assert!(!account_recoveries::complete(&mut conn, now() + hours(25), other, &started.id).unwrap(), "completed in another tenant");
        let ready = now() + hours(24);
        assert_eq!(started.state(ready), RecoveryState::Ready);
        assert!(account_recoveries::complete(&mut conn, ready, t, &started.id).unwrap());
        assert!(!account_recoveries::complete(&mut conn, ready, t, &started.id).unwrap(), "completed twice");
        let done = account_recoveries::get(&mut conn, t, &started.id).unwrap().unwrap();
        assert_eq!((done.completed_at, done.state(ready)), (Some(ready), RecoveryState::Completed));
        assert_eq!(account_recoveries::cancel_by_token(&mut conn, ready, t, "c1", "owner").unwrap(), None, "a completed recovery cancelled");
        assert_eq!(account_recoveries::open_for_user(&mut conn, ready, t, alice).unwrap(), None);
    }

    fn the_cancel_link_works_once_and_beats_completion(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap().id;
        let started = account_recoveries::start(&mut conn, now(), t, new(alice, "r1", "c1")).unwrap();
        let other = tenant(&mut conn, "other");
        assert_eq!(account_recoveries::cancel_by_token(&mut conn, now(), other, "c1", "owner").unwrap(), None);
        assert_eq!(account_recoveries::cancel_by_token(&mut conn, now(), t, "r1", "owner").unwrap(), None, "the recovery token cancels nothing");

        let later = now() + hours(1);
        let cancelled = account_recoveries::cancel_by_token(&mut conn, later, t, "c1", "owner").unwrap().unwrap();
        assert_eq!(cancelled.id, started.id);
        assert_eq!((cancelled.cancelled_at, cancelled.cancel_reason.as_deref()), (Some(later), Some("owner")));
        assert_eq!(cancelled.state(now() + hours(48)), RecoveryState::Cancelled);
        assert_eq!(account_recoveries::cancel_by_token(&mut conn, later, t, "c1", "owner").unwrap(), None, "cancelled twice");
        assert!(!account_recoveries::complete(&mut conn, now() + hours(48), t, &started.id).unwrap(), "a cancelled recovery completed");
        assert!(!account_recoveries::cancel(&mut conn, later, t, &started.id, "again").unwrap());
    }

    fn a_new_recovery_supersedes_the_open_one(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap().id;
        let bob = users::create(&mut conn, now(), t, UserData::new("bob")).unwrap().id;
        let first = account_recoveries::start(&mut conn, now(), t, new(alice, "r1", "c1")).unwrap();
        let bobs = account_recoveries::start(&mut conn, now(), t, new(bob, "r2", "c2")).unwrap();
        let second = account_recoveries::start(&mut conn, now() + hours(20), t, new(alice, "r3", "c3")).unwrap();
        assert_eq!(second.ready_at, now() + hours(44), "a new start never shortens the wait");
        let first = account_recoveries::get(&mut conn, t, &first.id).unwrap().unwrap();
        assert_eq!(first.cancel_reason.as_deref(), Some("superseded"));
        assert!(!account_recoveries::complete(&mut conn, now() + hours(30), t, &first.id).unwrap());
        assert_eq!(account_recoveries::open_for_user(&mut conn, now() + hours(21), t, alice).unwrap().map(|r| r.id), Some(second.id.clone()));
        assert_eq!(account_recoveries::get(&mut conn, t, &bobs.id).unwrap().unwrap().state(now()), RecoveryState::Waiting, "another user's recovery touched");

        assert_eq!(account_recoveries::cancel_open_for_user(&mut conn, now() + hours(21), t, alice, "admin_reset").unwrap(), 1);
        assert_eq!(account_recoveries::open_for_user(&mut conn, now() + hours(21), t, alice).unwrap(), None);
        assert!(account_recoveries::cancel(&mut conn, now(), t, &bobs.id, "owner").unwrap());
    }

    fn a_recovery_is_void_after_its_window(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap().id;
        let started = account_recoveries::start(&mut conn, now(), t, new(alice, "r1", "c1")).unwrap();
        let void = started.expires_at;
        assert_eq!(started.state(void), RecoveryState::Expired);
        assert!(!account_recoveries::complete(&mut conn, void, t, &started.id).unwrap());
        assert_eq!(account_recoveries::cancel_by_token(&mut conn, void, t, "c1", "owner").unwrap(), None);
        assert_eq!(account_recoveries::open_for_user(&mut conn, void, t, alice).unwrap(), None);
        assert_eq!(account_recoveries::cancel_open_for_user(&mut conn, void, t, alice, "second_factor_used").unwrap(), 0, "a void recovery cancelled");
        assert_eq!(account_recoveries::get(&mut conn, t, &started.id).unwrap().unwrap().state(void), RecoveryState::Expired);
        assert!(account_recoveries::start(&mut conn, now(), t, new(UserId::new(), "r9", "c9")).is_err(), "a recovery for no user");
    }

    fn a_reset_token_can_be_looked_at_without_being_spent(db) {
        let mut conn = db.conn();
        let t = tenant(&mut conn, "acme");
        let alice = users::create(&mut conn, now(), t, UserData::new("alice")).unwrap().id;
        let payload = serde_json::json!({ "why": "forgot" });
        one_time_tokens::issue(&mut conn, now(), t, alice, Purpose::PasswordReset, "h1", Duration::minutes(15), &payload).unwrap();
        for _ in 0..2 {
            let seen = one_time_tokens::find(&mut conn, now(), t, Purpose::PasswordReset, "h1").unwrap().unwrap();
            assert_eq!((seen.user_id, &seen.payload, seen.created_at), (alice, &payload, now()));
        }
        assert_eq!(one_time_tokens::find(&mut conn, now(), t, Purpose::VerifyEmail, "h1").unwrap(), None, "another purpose");
        let other = tenant(&mut conn, "other");
        assert_eq!(one_time_tokens::find(&mut conn, now(), other, Purpose::PasswordReset, "h1").unwrap(), None, "another tenant");
        assert_eq!(one_time_tokens::find(&mut conn, now() + Duration::minutes(15), t, Purpose::PasswordReset, "h1").unwrap(), None, "expired");
        assert!(one_time_tokens::consume(&mut conn, now(), t, Purpose::PasswordReset, "h1").unwrap().is_some());
        assert_eq!(one_time_tokens::find(&mut conn, now(), t, Purpose::PasswordReset, "h1").unwrap(), None, "used");
    }
}
