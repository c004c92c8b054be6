//! Password sign-in.
//!
//! Unknown account and wrong password are one error, and both cost one Argon2
//! verification (against a dummy hash when there is no account), so neither the
//! answer nor its timing tells whether an account exists. Failures are counted per
//! submitted identifier (whether or not it exists) and per client IP, in the
//! database so every node sees them: backoff after a few, a temporary lockout after
//! more.

use chrono::{DateTime, Utc};
use gatehouse_core::ids::TenantId;
use gatehouse_identity_store::audit::Outcome;
use gatehouse_identity_store::credentials::{self, CredentialKind};
use gatehouse_identity_store::sessions::{self, AuthMethod, NewSession, Session};
use gatehouse_identity_store::users::{self, User};
use gatehouse_identity_store::{AnyConnection, fold_key, rate_limits};
use serde_json::json;
use zeroize::Zeroizing;

use crate::password::Verification;
use crate::service::{Authn, ClientInfo, Inner};
use crate::settings::TenantPolicy;
use crate::{AuthnError, secrets};

/// A new session and the secret for its cookie (shown to the browser only).
#[derive(Debug)]
pub struct SignedIn {
    pub session: Session,
    pub secret: Zeroizing<String>,
}

fn account_bucket(identifier: &str) -> String {
    // The store's own fold: width or case variants of one address are one bucket,
    // so cycling them cannot dodge the lockout.
    format!("signin:account:{}", fold_key(identifier))
}

fn ip_bucket(ip: &str) -> String {
    format!("signin:ip:{ip}")
}

impl Inner {
    fn locked_until(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        buckets: &[String],
    ) -> Result<Option<DateTime<Utc>>, AuthnError> {
        let now = self.now();
        let mut until = None;
        for bucket in buckets {
            if let Some(counter) = rate_limits::get(conn, tenant, bucket)?
                && counter.is_locked(now)
            {
                until = until.max(counter.locked_until);
            }
        }
        Ok(until)
    }

    /// The user and whether `password` is theirs, always spending one verification.
    fn check_password(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        identifier: &str,
        password: &str,
    ) -> Result<Option<User>, AuthnError> {
        let user = match users::find_by_primary_email(conn, tenant, identifier)? {
            Some(user) => Some(user),
            None => users::find_by_user_name(conn, tenant, identifier)?,
        };
        let credential = match &user {
            Some(user) => {
                credentials::list_for_user(conn, tenant, user.id, Some(CredentialKind::Password))?
                    .into_iter()
                    .next()
            }
            None => None,
        };
        let (Some(user), Some(credential)) = (user, credential) else {
            self.hasher.verify_dummy(password);
            return Ok(None);
        };
        let stored = credential.secret(&self.cipher)?;
        let stored = String::from_utf8_lossy(&stored).into_owned();
        match self.hasher.verify(&stored, password) {
            Verification::Match { needs_rehash } => {
                if needs_rehash {
                    let upgraded = self.hasher.hash(password)?;
                    credentials::replace_secret(
                        conn,
                        &self.cipher,
                        &credential,
                        upgraded.as_bytes(),
                    )?;
                }
                credentials::mark_used(conn, self.now(), tenant, credential.id)?;
                Ok(user.data.active.then_some(user))
            }
            Verification::Mismatch => Ok(None),
        }
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

impl Authn {
    /// Checks email (or userName) and password and opens a new session. A session the
    /// browser already had (`previous_secret`) is ended: the id rotates at sign-in.
    pub async fn sign_in_with_password(
        &self,
        tenant: TenantId,
        policy: &TenantPolicy,
        identifier: String,
        password: Zeroizing<String>,
        previous_secret: Option<String>,
        client: ClientInfo,
    ) -> Result<SignedIn, AuthnError> {
        let require_verified = policy.require_verified_email;
        self.blocking(move |inner, conn| {
            let mut buckets = vec![account_bucket(&identifier)];
            if let Some(ip) = &client.ip {
                buckets.push(ip_bucket(ip));
            }
            if let Some(until) = inner.locked_until(conn, tenant, &buckets)? {
                // Same work as a real attempt, so a locked account is not a timing oracle.
                inner.hasher.verify_dummy(&password);
                inner.audit(
                    conn,
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
            let Some(user) = inner.check_password(conn, tenant, &identifier, &password)? else {
                inner.record_failure(conn, tenant, &identifier, &client)?;
                return Err(AuthnError::InvalidCredentials);
            };
            if require_verified && !user.primary_email().is_some_and(|e| e.verified) {
                return Err(AuthnError::EmailNotVerified);
            }
            rate_limits::reset(conn, tenant, &account_bucket(&identifier))?;
            let now = inner.now();
            if let Some(previous) = previous_secret
                && let Some(old) =
                    sessions::find_active(conn, now, tenant, &secrets::digest(&previous))?
            {
                sessions::end(conn, now, tenant, old.id, None, "rotated")?;
            }
            let (secret, secret_hash) = secrets::generate();
            let session = sessions::create(
                conn,
                now,
                tenant,
                NewSession {
                    user_id: user.id,
                    secret_hash,
                    idle_timeout: inner.settings.session_idle,
                    absolute_timeout: inner.settings.session_absolute,
                    ip: client.ip.clone(),
                    user_agent: client.user_agent.clone(),
                    auth_methods: vec![AuthMethod {
                        method: "pwd".into(),
                        at: now,
                    }],
                    aal: 1,
                },
            )?;
            inner.audit(
                conn,
                tenant,
                format!("user:{}", user.id),
                "login.succeeded",
                Some(format!("session:{}", session.id)),
                Outcome::Success,
                &client,
                json!({ "amr": ["pwd"], "aal": 1 }),
            )?;
            Ok(SignedIn {
                session,
                secret: Zeroizing::new(secret),
            })
        })
        .await
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
            sessions::end(
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
            )
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
                json!({ "count": ended }),
            )?;
            Ok(ended)
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

#[cfg(test)]
mod tests {
    #[test]
    fn variants_of_one_identifier_share_a_throttling_bucket() {
        assert_eq!(
            super::account_bucket(" ＡＬＩＣＥ@Example.com"),
            super::account_bucket("alice@example.com")
        );
    }
}
