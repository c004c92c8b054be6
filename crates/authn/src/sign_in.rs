//! Password sign-in.
//!
//! Unknown account and wrong password are one error, and both cost one Argon2
//! verification (against a dummy hash when there is no account), so neither the
//! answer nor its timing tells whether an account exists. Failures are counted per
//! submitted identifier (whether or not it exists) and per client IP, in the
//! database so every node sees them: backoff after a few, a temporary lockout after
//! more.

use chrono::{DateTime, Utc};
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_identity_store::audit::Outcome;
use gatehouse_identity_store::credentials::{self, Credential, CredentialKind};
use gatehouse_identity_store::sessions::{self, AuthMethod, NewSession, Session};
use gatehouse_identity_store::users::{self, User};
use gatehouse_identity_store::{AnyConnection, StoreError, db, fold_key, rate_limits};
use serde_json::json;
use zeroize::Zeroizing;

use crate::password::Verification;
pub use crate::second_factor::SignedIn;
use crate::second_factor::{Factors, PendingSignIn, assurance_level};
use crate::service::{Authn, ClientInfo, Inner};
use crate::settings::TenantPolicy;
use crate::{AuthnError, secrets};

/// What a right password leads to.
#[derive(Debug)]
pub enum SignInOutcome {
    SignedIn(SignedIn),
    /// The account has a second factor: no session until it is passed
    /// ([`Authn::complete_sign_in`]).
    SecondFactor(PendingSignIn),
}

impl SignInOutcome {
    /// The session, if the password was all it took.
    pub fn signed_in(self) -> Option<SignedIn> {
        match self {
            SignInOutcome::SignedIn(signed_in) => Some(signed_in),
            SignInOutcome::SecondFactor(_) => None,
        }
    }
}

/// The rate-limit bucket for failed passwords for one identifier.
pub fn account_bucket(identifier: &str) -> String {
    // The store's own fold: width or case variants of one address are one bucket,
    // so cycling them cannot dodge the lockout.
    format!("signin:account:{}", fold_key(identifier))
}

/// The rate-limit bucket for failed passwords from one client address.
pub fn ip_bucket(ip: &str) -> String {
    format!("signin:ip:{ip}")
}

impl Inner {
    /// The read phase of a sign-in: the failure buckets, then (unless one is locked)
    /// the account, its password credential and the stored hash, unsealed.
    fn prepare_sign_in(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        identifier: &str,
        client: &ClientInfo,
    ) -> Result<Prepared, AuthnError> {
        let now = self.now();
        let account_counter = rate_limits::get(conn, tenant, &account_bucket(identifier))?;
        let ip_counter = match &client.ip {
            Some(ip) => rate_limits::get(conn, tenant, &ip_bucket(ip))?,
            None => None,
        };
        let locked_until = [account_counter, ip_counter]
            .into_iter()
            .flatten()
            .filter(|counter| counter.is_locked(now))
            .filter_map(|counter| counter.locked_until)
            .max();
        if let Some(until) = locked_until {
            return Ok(Prepared::Locked(until));
        }
        let user = match users::find_by_primary_email(conn, tenant, identifier)? {
            Some(user) => Some(user),
            None => users::find_by_user_name(conn, tenant, identifier)?,
        };
        // Every credential at once: the password, and the second factors it needs.
        let (credential, factors) = match &user {
            Some(user) => {
                let all = credentials::list_for_user(conn, tenant, user.id, None)?;
                let factors = Factors::of(&all, &self.cipher)?;
                let password = all.into_iter().find(|c| c.kind == CredentialKind::Password);
                (password, factors)
            }
            None => (None, Factors::default()),
        };
        let (account, stored) = match (user, credential) {
            (Some(user), Some(credential)) => {
                let stored = credential.secret(&self.cipher)?;
                let stored = Zeroizing::new(String::from_utf8_lossy(&stored).into_owned());
                (
                    Some(Box::new(Account {
                        user,
                        credential,
                        factors,
                    })),
                    Some(stored),
                )
            }
            _ => (None, None),
        };
        Ok(Prepared::Check {
            account,
            stored,
            has_failures: account_counter.is_some(),
        })
    }

    /// The write phase of a sign-in whose password was checked, in one transaction:
    /// one commit (one flush) whatever the outcome. The outer error rolls back; the
    /// inner one is the answer to a refused attempt whose writes (the failure counts,
    /// or a right password's `last_used_at`) are kept.
    #[allow(clippy::too_many_arguments)]
    fn finish_sign_in(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        identifier: &str,
        client: &ClientInfo,
        checked: Checked,
        has_failures: bool,
        require_verified: bool,
        previous_secret: Option<String>,
    ) -> Result<Result<SignInOutcome, AuthnError>, AuthnError> {
        let (account, upgraded) = match checked {
            Checked::Match { account, upgraded } => (account, upgraded),
            Checked::Mismatch => {
                self.record_failure(conn, tenant, identifier, client)?;
                return Ok(Err(AuthnError::InvalidCredentials));
            }
        };
        let Account {
            user,
            credential,
            factors,
        } = *account;
        // An UPDATE first: SQLite takes its write lock at once (waiting for another
        // writer if need be) instead of failing to upgrade a read lock later.
        if let Some(upgraded) = &upgraded {
            credentials::replace_secret(conn, &self.cipher, &credential, upgraded.as_bytes())?;
        }
        credentials::mark_used(conn, self.now(), tenant, credential.id)?;
        if !user.data.active {
            self.record_failure(conn, tenant, identifier, client)?;
            return Ok(Err(AuthnError::InvalidCredentials));
        }
        if require_verified && !user.primary_email().is_some_and(|e| e.verified) {
            return Ok(Err(AuthnError::EmailNotVerified));
        }
        // No row, nothing to forget. (A failure counted by another request while
        // this one was hashing is kept; it might as well have come just after.)
        if has_failures {
            rate_limits::reset(conn, tenant, &account_bucket(identifier))?;
        }
        let now = self.now();
        let password = AuthMethod::new("pwd", now);
        if factors.any() {
            // The password alone is not enough: nothing opens until the second factor.
            self.audit(
                conn,
                tenant,
                format!("user:{}", user.id),
                "login.second_factor_required",
                None,
                Outcome::Success,
                client,
                json!({ "amr": ["pwd"] }),
            )?;
            let pending = self.seal_pending(tenant, user.id, &password)?;
            return Ok(Ok(SignInOutcome::SecondFactor(PendingSignIn {
                token: pending,
                factors,
            })));
        }
        let signed_in = self.open_session(
            conn,
            tenant,
            user.id,
            vec![password],
            previous_secret,
            client,
        )?;
        Ok(Ok(SignInOutcome::SignedIn(signed_in)))
    }

    /// Opens the session of a completed sign-in (its methods decide its level) and
    /// audits it. A session the browser already had (`previous_secret`) is rotated
    /// when it is the same user's, ended when it is someone else's.
    pub(crate) fn open_session(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        user: UserId,
        auth_methods: Vec<AuthMethod>,
        previous_secret: Option<String>,
        client: &ClientInfo,
    ) -> Result<SignedIn, AuthnError> {
        let now = self.now();
        let previous = match previous_secret {
            Some(previous) => {
                sessions::find_active(conn, now, tenant, &secrets::digest(&previous))?
            }
            None => None,
        };
        let aal = assurance_level(&auth_methods);
        let amr: Vec<&str> = auth_methods.iter().map(|m| m.method.as_str()).collect();
        let idp = auth_methods.iter().find_map(|m| m.idp.as_deref());
        let details = match idp {
            Some(idp) => json!({ "amr": amr, "aal": aal, "idp": idp }),
            None => json!({ "amr": amr, "aal": aal }),
        };
        let (secret, secret_hash) = secrets::generate();
        let fresh = NewSession {
            user_id: user,
            secret_hash,
            idle_timeout: self.settings.session_idle,
            absolute_timeout: self.settings.session_absolute,
            ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
            auth_methods,
            aal,
        };
        let session = match previous {
            // The same person signing in again on this browser: a new secret (the
            // old cookie stops working) in the same session, so the `sid` relying
            // parties hold stays valid.
            Some(old) if old.user_id == user => {
                match sessions::reauthenticate(conn, now, tenant, old.id, fresh.clone())? {
                    Some(session) => session,
                    None => sessions::create(conn, now, tenant, fresh)?,
                }
            }
            // Someone else signs in on this browser: the previous user is signed out.
            Some(old) => {
                if sessions::end(conn, now, tenant, old.id, None, "replaced")? {
                    self.sessions_ended(tenant, old.user_id, vec![old.id]);
                }
                sessions::create(conn, now, tenant, fresh)?
            }
            None => sessions::create(conn, now, tenant, fresh)?,
        };
        self.audit(
            conn,
            tenant,
            format!("user:{user}"),
            "login.succeeded",
            Some(format!("session:{}", session.id)),
            Outcome::Success,
            client,
            details,
        )?;
        Ok(SignedIn {
            session,
            secret: Zeroizing::new(secret),
        })
    }

    fn record_failure(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        identifier: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthnError> {
        let now = self.now();
        let settings = &self.settings;
        let account = rate_limits::record_failure(
            conn,
            now,
            tenant,
            &account_bucket(identifier),
            settings.failure_window,
            |n| settings.account_lock_for(n),
        )?;
        if let Some(ip) = &client.ip {
            rate_limits::record_failure(
                conn,
                now,
                tenant,
                &ip_bucket(ip),
                settings.failure_window,
                |n| settings.ip_lock_for(n),
            )?;
        }
        let details = json!({ "identifier": fold_key(identifier), "failures": account.failures });
        self.audit(
            conn,
            tenant,
            "anonymous".into(),
            "login.failed",
            None,
            Outcome::Failure,
            client,
            details.clone(),
        )?;
        if account.failures == settings.account_lockout_threshold {
            self.audit(
                conn,
                tenant,
                "system".into(),
                "login.locked",
                None,
                Outcome::Denied,
                client,
                details,
            )?;
        }
        Ok(())
    }
}

/// A sign-in's writes, once its password was checked.
struct PendingWrite {
    tenant: TenantId,
    identifier: String,
    client: ClientInfo,
    checked: Checked,
    has_failures: bool,
    require_verified: bool,
    previous_secret: Option<String>,
}

impl PendingWrite {
    /// [`Inner::finish_sign_in`] in one transaction.
    fn commit(
        self,
        inner: &Inner,
        conn: &mut AnyConnection,
    ) -> Result<Result<SignInOutcome, AuthnError>, AuthnError> {
        let PendingWrite {
            tenant,
            identifier,
            client,
            checked,
            has_failures,
            require_verified,
            previous_secret,
        } = self;
        db::transaction_with(conn, |conn| {
            inner.finish_sign_in(
                conn,
                tenant,
                &identifier,
                &client,
                checked,
                has_failures,
                require_verified,
                previous_secret,
            )
        })
    }
}

/// What the hashing thread hands back: the answer, or the writes left for the
/// blocking pool because other jobs wait for the thread.
enum Hashed {
    Done(Result<SignInOutcome, AuthnError>),
    Write(PendingWrite),
}

/// What a sign-in reads before hashing.
enum Prepared {
    /// A failure bucket is locked until then: refused without looking further.
    Locked(DateTime<Utc>),
    Check {
        /// `None` when there is no such account or it has no password.
        account: Option<Box<Account>>,
        /// The stored PHC string of the account's password, unsealed.
        stored: Option<Zeroizing<String>>,
        /// The account's failure bucket has a row: a success has failures to forget.
        has_failures: bool,
    },
}

struct Account {
    user: User,
    credential: Credential,
    factors: Factors,
}

/// The outcome of the hash.
enum Checked {
    /// The password is the account's; `upgraded` is its new hash when the stored one
    /// was made with other parameters.
    Match {
        account: Box<Account>,
        upgraded: Option<String>,
    },
    /// Wrong password, or no such account (a dummy hash was verified instead).
    Mismatch,
}

impl Authn {
    /// Checks email (or userName) and password and opens a new session. A session the
    /// browser already had (`previous_secret`) is ended: the id rotates at sign-in.
    ///
    /// One job on the hashing pool, in three steps, so that no database connection is
    /// held during the hash: read (failure buckets, account, stored hash) on a pooled
    /// connection, given back; verify; write everything in one transaction on a
    /// pooled connection again — on the hashing thread when no other job waits for
    /// it, else on the blocking pool, so that the thread hashes the next one instead
    /// of waiting for the commit to reach the disk. Each hand-over between threads
    /// leaves a core idle while the next thread wakes, which with as many sign-ins in
    /// flight as cores cost more than the database itself (docs/benchmarks.md).
    /// [`AuthnError::Busy`] when the hashing pool's queue is full; nothing is read,
    /// verified or recorded then.
    pub async fn sign_in_with_password(
        &self,
        tenant: TenantId,
        policy: &TenantPolicy,
        identifier: String,
        password: Zeroizing<String>,
        previous_secret: Option<String>,
        client: ClientInfo,
    ) -> Result<SignInOutcome, AuthnError> {
        let require_verified = policy.require_verified_email;
        let inner = std::sync::Arc::clone(&self.inner);
        let hashed = self
            .hashing(move |hasher, memory| -> Result<Hashed, AuthnError> {
                let prepared = {
                    let mut conn = inner.pool.get().map_err(StoreError::from)?;
                    inner.prepare_sign_in(&mut conn, tenant, &identifier, &client)?
                };
                let (account, stored, has_failures) = match prepared {
                    Prepared::Locked(until) => {
                        // Same work as a real attempt, so a locked account is not a
                        // timing oracle.
                        hasher.verify_dummy_in(memory, &password);
                        let mut conn = inner.pool.get().map_err(StoreError::from)?;
                        inner.audit(
                            &mut conn,
                            tenant,
                            "anonymous".into(),
                            "login.throttled",
                            None,
                            Outcome::Denied,
                            &client,
                            json!({ "identifier": fold_key(&identifier) }),
                        )?;
                        return Err(AuthnError::Throttled { until: Some(until) });
                    }
                    Prepared::Check {
                        account,
                        stored,
                        has_failures,
                    } => (account, stored, has_failures),
                };
                // One verification whether or not the account exists (a dummy hash
                // if not). `None`: no match; `Some(upgraded)`: a match, with its new
                // hash if due.
                let upgrade = match stored {
                    None => {
                        hasher.verify_dummy_in(memory, &password);
                        None
                    }
                    Some(stored) => match hasher.verify_in(memory, &stored, &password) {
                        Verification::Match { needs_rehash } => {
                            Some(needs_rehash.then(|| hasher.hash(&password)).transpose()?)
                        }
                        Verification::Mismatch => None,
                    },
                };
                let write = PendingWrite {
                    tenant,
                    identifier,
                    client,
                    checked: match (account, upgrade) {
                        (Some(account), Some(upgraded)) => Checked::Match { account, upgraded },
                        _ => Checked::Mismatch,
                    },
                    has_failures,
                    require_verified,
                    previous_secret,
                };
                if inner.hashing.queued() > 0 {
                    return Ok(Hashed::Write(write));
                }
                let mut conn = inner.pool.get().map_err(StoreError::from)?;
                Ok(Hashed::Done(write.commit(&inner, &mut conn)?))
            })
            .await??;
        match hashed {
            Hashed::Done(outcome) => outcome,
            Hashed::Write(write) => {
                self.blocking(move |inner, conn| write.commit(inner, conn))
                    .await?
            }
        }
    }

    /// The live session behind a cookie secret, refreshing its idle expiry.
    pub async fn session(
        &self,
        tenant: TenantId,
        secret: String,
    ) -> Result<Option<Session>, AuthnError> {
        self.blocking(move |inner, conn| {
            let now = inner.now();
            let Some(session) =
                sessions::find_active(conn, now, tenant, &secrets::digest(&secret))?
            else {
                return Ok(None);
            };
            if now - session.last_seen_at >= inner.settings.touch_interval {
                sessions::touch(conn, now, &session, inner.settings.session_idle)?;
            }
            Ok(Some(session))
        })
        .await
    }

    pub async fn sign_out(
        &self,
        tenant: TenantId,
        session: Session,
        client: ClientInfo,
    ) -> Result<(), AuthnError> {
        self.blocking(move |inner, conn| {
            let ended = sessions::end(
                conn,
                inner.now(),
                tenant,
                session.id,
                Some(session.user_id),
                "signed_out",
            )?;
            inner.audit(
                conn,
                tenant,
                format!("user:{}", session.user_id),
                "session.signed_out",
                Some(format!("session:{}", session.id)),
                Outcome::Success,
                &client,
                json!({}),
            )?;
            if ended {
                inner.sessions_ended(tenant, session.user_id, vec![session.id]);
            }
            Ok(())
        })
        .await
    }

    /// Ends one of the user's sessions (from the account page); false if it was not theirs or not live.
    pub async fn end_session(
        &self,
        tenant: TenantId,
        current: Session,
        target: gatehouse_core::ids::SessionId,
        client: ClientInfo,
    ) -> Result<bool, AuthnError> {
        self.blocking(move |inner, conn| {
            // The end and its audit record commit together.
            let ended = db::transaction_with(conn, |conn| {
                let ended = sessions::end(
                    conn,
                    inner.now(),
                    tenant,
                    target,
                    Some(current.user_id),
                    "ended_by_user",
                )?;
                if ended {
                    inner.audit(
                        conn,
                        tenant,
                        format!("user:{}", current.user_id),
                        "session.ended",
                        Some(format!("session:{target}")),
                        Outcome::Success,
                        &client,
                        json!({}),
                    )?;
                }
                Ok::<_, AuthnError>(ended)
            })?;
            if ended {
                inner.sessions_ended(tenant, current.user_id, vec![target]);
            }
            Ok(ended)
        })
        .await
    }

    /// Ends every other session of the user; returns how many.
    pub async fn end_other_sessions(
        &self,
        tenant: TenantId,
        current: Session,
        client: ClientInfo,
    ) -> Result<usize, AuthnError> {
        self.blocking(move |inner, conn| {
            // The ends and their audit record commit together.
            let ended = db::transaction_with(conn, |conn| {
                let ended = sessions::end_all_for_user(
                    conn,
                    inner.now(),
                    tenant,
                    current.user_id,
                    Some(current.id),
                    "ended_by_user",
                )?;
                inner.audit(
                    conn,
                    tenant,
                    format!("user:{}", current.user_id),
                    "session.ended_others",
                    None,
                    Outcome::Success,
                    &client,
                    json!({ "count": ended.len() }),
                )?;
                Ok::<_, AuthnError>(ended)
            })?;
            let count = ended.len();
            inner.sessions_ended(tenant, current.user_id, ended);
            Ok(count)
        })
        .await
    }

    pub async fn active_sessions(
        &self,
        tenant: TenantId,
        user: gatehouse_core::ids::UserId,
    ) -> Result<Vec<Session>, AuthnError> {
        self.blocking(move |inner, conn| {
            Ok(sessions::list_active_for_user(
                conn,
                inner.now(),
                tenant,
                user,
            )?)
        })
        .await
    }
}

/// The tests that hold the service's hashing pool in their hands (its threads and
/// queue are private); the others are in `tests/authn/sign_in.rs`.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;
    use std::time::Duration as StdDuration;

    use gatehouse_identity_store::db::Backend;

    use super::*;

    use crate::hashing::HashingPool;
    use crate::testing::kit::{IP, Kit, KitOptions, runtime, sign_in_with};

    const PASSWORD: &str = "violet-harbor-quilt-97-lantern";

    /// The test kit with a hashing pool of the test's choosing.
    struct Env {
        kit: Kit,
    }

    impl std::ops::Deref for Env {
        type Target = Kit;

        fn deref(&self) -> &Kit {
            &self.kit
        }
    }

    impl Env {
        fn with(backend: Backend, connections: u32, hashing: HashingPool) -> Env {
            let mut kit = Kit::with(
                backend,
                KitOptions {
                    connections,
                    ..KitOptions::default()
                },
                |_| {},
            );
            Arc::get_mut(&mut kit.authn.inner).unwrap().hashing = hashing;
            Env { kit }
        }

        fn user(&self, email: &str) -> UserId {
            self.user_with_password(email, PASSWORD)
        }
    }

    #[test]
    fn a_full_hashing_queue_refuses_without_trying_or_recording() {
        let env = Env::with(Backend::Sqlite, 4, HashingPool::new(1, 1).unwrap());
        let grace = env.user("grace@example.com");
        let hashing = &env.authn.inner.hashing;
        let (release, freed) = hashing.occupy_one_worker();
        let queued = hashing.submit(|_| ()).unwrap();
        runtime().block_on(async {
            for password in [PASSWORD, "wrong-wrong-wrong"] {
                let busy = env.sign_in("grace@example.com", password, None).await;
                assert!(matches!(busy, Err(AuthnError::Busy)), "{busy:?}");
            }
            let busy = env.sign_in("nobody@example.com", PASSWORD, None).await;
            assert!(matches!(busy, Err(AuthnError::Busy)), "{busy:?}");
            assert_eq!(env.failures(&account_bucket("grace@example.com")), None);
            assert_eq!(env.failures(&ip_bucket(IP)), None);
            assert!(env.actions().is_empty());

            release.send(()).unwrap();
            freed.await.unwrap();
            queued.await.unwrap();
            env.sign_in("grace@example.com", PASSWORD, None)
                .await
                .unwrap();
        });
        assert_eq!(env.active_sessions(grace).len(), 1);
    }

    #[test]
    fn no_connection_is_held_while_waiting_for_or_running_the_hash() {
        // One connection in all: if the sign-in kept it during the hash, nothing else
        // could use the database meanwhile.
        let env = Env::with(Backend::Sqlite, 1, HashingPool::new(1, 4).unwrap());
        let henry = env.user("henry@example.com");
        let hashing = &env.authn.inner.hashing;
        let (release, freed) = hashing.occupy_one_worker();
        let rt = runtime();
        let signing_in = {
            let (authn, tenant) = (env.authn.clone(), env.t());
            rt.spawn(async move {
                sign_in_with(&authn, tenant, "henry@example.com", PASSWORD, None, IP).await
            })
        };
        let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
        while hashing.queued() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the hash was never queued"
            );
            std::thread::sleep(StdDuration::from_millis(5));
        }
        // The sign-in waits for a hashing thread, where it will read, hash and write.
        let conn = env.pool.get_timeout(StdDuration::from_millis(500));
        assert!(
            conn.is_ok(),
            "the waiting sign-in holds the only connection"
        );
        drop(conn);
        release.send(()).unwrap();
        rt.block_on(async {
            freed.await.unwrap();
            signing_in.await.unwrap().unwrap();
        });
        assert_eq!(env.active_sessions(henry).len(), 1);
    }

    /// With a job waiting for the only hashing thread, the first sign-in leaves its
    /// writes to the blocking pool (the thread moves on to the second hash) and the
    /// second, with nothing queued behind it, writes on the hashing thread: both
    /// complete, each with its session and audit event.
    #[test]
    fn sign_ins_complete_whether_they_write_on_the_hashing_thread_or_not() {
        let env = Env::with(Backend::Sqlite, 2, HashingPool::new(1, 4).unwrap());
        let (ida, ivo) = (env.user("ida@example.com"), env.user("ivo@example.com"));
        let hashing = &env.authn.inner.hashing;
        let (release, freed) = hashing.occupy_one_worker();
        let rt = runtime();
        let spawn = |email: &'static str| {
            let (authn, tenant) = (env.authn.clone(), env.t());
            rt.spawn(async move { sign_in_with(&authn, tenant, email, PASSWORD, None, IP).await })
        };
        let first = spawn("ida@example.com");
        let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
        while hashing.queued() < 1 {
            assert!(std::time::Instant::now() < deadline, "never queued");
            std::thread::sleep(StdDuration::from_millis(5));
        }
        let second = spawn("ivo@example.com");
        while hashing.queued() < 2 {
            assert!(std::time::Instant::now() < deadline, "never queued");
            std::thread::sleep(StdDuration::from_millis(5));
        }
        release.send(()).unwrap();
        rt.block_on(async {
            freed.await.unwrap();
            first.await.unwrap().unwrap();
            second.await.unwrap().unwrap();
        });
        assert_eq!(env.active_sessions(ida).len(), 1);
        assert_eq!(env.active_sessions(ivo).len(), 1);
        let succeeded = env
            .actions()
            .iter()
            .filter(|a| a.as_str() == "login.succeeded")
            .count();
        assert_eq!(succeeded, 2);
    }
}
