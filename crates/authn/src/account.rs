//! The signed-in user's own account: profile, password, email address.

use gatehouse_core::ids::TenantId;
use gatehouse_identity_store::audit::Outcome;
use gatehouse_identity_store::credentials::{self, Credential, CredentialKind};
use gatehouse_identity_store::sessions::{self, Session};
use gatehouse_identity_store::users::{self, User};
use gatehouse_identity_store::{db, rate_limits};
use serde_json::json;
use zeroize::Zeroizing;

use crate::AuthnError;
use crate::mail_render::{Mail, MailKind};
use crate::password::Verification;
use crate::registration::{LinkBase, issue_verification, valid_new_email};
use crate::service::{Authn, ClientInfo};

#[derive(Debug, Clone)]
pub struct ProfileUpdate {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
}

fn clean(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl Authn {
    /// Checks the current password of a signed-in, stepped-up user. Wrong guesses
    /// count against the same per-account limit as sign-in, so a stolen session
    /// cannot brute-force it. Argon2 runs on the hashing pool between two short
    /// database steps: no pooled connection waits for it.
    async fn confirm_password(
        &self,
        tenant: TenantId,
        session: Session,
        password: Zeroizing<String>,
        client: ClientInfo,
    ) -> Result<(User, Credential), AuthnError> {
        let bucket = format!("reauth:{}", session.user_id);
        let (user, credential, stored) = self
            .blocking({
                let bucket = bucket.clone();
                move |inner, conn| {
                    inner.ensure_stepped_up(conn, &session)?;
                    let user = users::get(conn, tenant, session.user_id)?;
                    if rate_limits::get(conn, tenant, &bucket)?
                        .is_some_and(|c| c.is_locked(inner.now()))
                    {
                        return Err(AuthnError::Throttled { until: None });
                    }
                    let credential = credentials::list_for_user(
                        conn,
                        tenant,
                        user.id,
                        Some(CredentialKind::Password),
                    )?
                    .into_iter()
                    .next()
                    .ok_or(AuthnError::InvalidCredentials)?;
                    let stored = Zeroizing::new(credential.secret(&inner.cipher)?);
                    Ok((user, credential, stored))
                }
            })
            .await?;
        let matched = self
            .hashing(move |hasher, memory| {
                matches!(
                    hasher.verify_in(memory, &String::from_utf8_lossy(&stored), &password),
                    Verification::Match { .. }
                )
            })
            .await?;
        self.blocking(move |inner, conn| {
            if matched {
                rate_limits::reset(conn, tenant, &bucket)?;
                return Ok((user, credential));
            }
            let settings = &inner.settings;
            db::transaction_with(conn, |conn| {
                rate_limits::record_failure(
                    conn,
                    inner.now(),
                    tenant,
                    &bucket,
                    settings.failure_window,
                    |n| settings.account_lock_for(n),
                )?;
                inner.audit(
                    conn,
                    tenant,
                    format!("user:{}", user.id),
                    "reauth.failed",
                    None,
                    Outcome::Failure,
                    &client,
                    json!({}),
                )
            })?;
            Err(AuthnError::InvalidCredentials)
        })
        .await
    }
}

impl Authn {
    pub async fn user(
        &self,
        tenant: TenantId,
        user: gatehouse_core::ids::UserId,
    ) -> Result<User, AuthnError> {
        self.blocking(move |_, conn| Ok(users::get(conn, tenant, user)?))
            .await
    }

    pub async fn update_profile(
        &self,
        tenant: TenantId,
        session: Session,
        update: ProfileUpdate,
        client: ClientInfo,
    ) -> Result<(), AuthnError> {
        self.blocking(move |inner, conn| {
            let user = users::get(conn, tenant, session.user_id)?;
            let mut data = user.data.clone();
            data.name.given_name = clean(update.given_name);
            data.name.family_name = clean(update.family_name);
            data.display_name = clean(update.display_name);
            users::update(conn, inner.now(), tenant, user.id, user.version, data)?;
            inner.audit_own_account(
                conn,
                tenant,
                user.id,
                "profile.updated",
                &client,
                json!({}),
            )?;
            inner.user_changed(tenant, user.id);
            Ok(())
        })
        .await
    }

    /// Changes the password after checking the current one, and ends every other
    /// session of the user (a thief's session must not survive the owner's reset).
    pub async fn change_password(
        &self,
        tenant: TenantId,
        session: Session,
        current: Zeroizing<String>,
        new: Zeroizing<String>,
        client: ClientInfo,
    ) -> Result<usize, AuthnError> {
        let session_id = session.id;
        let (user, credential) = self
            .confirm_password(tenant, session, current, client.clone())
            .await?;
        let phc = Zeroizing::new(
            self.new_password_hash(
                new,
                &[
                    Some(user.data.user_name.as_str()),
                    user.primary_email().map(|e| e.value.as_str()),
                    user.data.name.given_name.as_deref(),
                    user.data.name.family_name.as_deref(),
                ],
            )
            .await?,
        );
        self.blocking(move |inner, conn| {
            let now = inner.now();
            let ended = db::transaction_with(conn, |conn| {
                credentials::replace_secret(conn, &inner.cipher, &credential, phc.as_bytes())?;
                let ended = sessions::end_all_for_user(
                    conn,
                    now,
                    tenant,
                    user.id,
                    Some(session_id),
                    "password_changed",
                )?;
                inner.audit_own_account(
                    conn,
                    tenant,
                    user.id,
                    "password.changed",
                    &client,
                    json!({ "sessions_ended": ended.len() }),
                )?;
                Ok::<_, AuthnError>(ended)
            })?;
            let count = ended.len();
            inner.sessions_ended(tenant, user.id, ended);
            inner.credentials_changed(tenant, user.id);
            Ok(count)
        })
        .await
    }

    /// Starts an email change: the new address gets a verification link (the change
    /// happens when it is opened); the old address is told.
    pub async fn request_email_change(
        &self,
        tenant: TenantId,
        session: Session,
        new_email: String,
        password: Zeroizing<String>,
        links: LinkBase,
        client: ClientInfo,
    ) -> Result<(), AuthnError> {
        let new_email = new_email.trim().to_owned();
        if !valid_new_email(&new_email) {
            return Err(AuthnError::InvalidEmail);
        }
        let (user, _) = self
            .confirm_password(tenant, session, password, client.clone())
            .await?;
        let mails = self
            .blocking(move |inner, conn| {
                // Another user's address, or one that looks like it, is taken.
                if users::primary_email_look_alike_holder(conn, tenant, &new_email)?
                    .is_some_and(|other| other != user.id)
                {
                    return Err(AuthnError::EmailTaken);
                }
                let token = db::transaction_with(conn, |conn| {
                    let token = issue_verification(inner, conn, tenant, user.id, &new_email)?;
                    inner.audit_own_account(
                        conn,
                        tenant,
                        user.id,
                        "email.change_requested",
                        &client,
                        json!({}),
                    )?;
                    Ok::<_, AuthnError>(token)
                })?;
                let mut mails = vec![Mail {
                    to: new_email.clone(),
                    locale: client.locale.clone(),
                    kind: MailKind::VerifyNewEmail {
                        link: links.verify(&token),
                    },
                }];
                if let Some(old) = user.primary_email() {
                    mails.push(Mail {
                        to: old.value.clone(),
                        locale: client.locale.clone(),
                        kind: MailKind::EmailChangeRequested {
                            new_email: new_email.clone(),
                            sign_in_link: links.sign_in(),
                        },
                    });
                }
                Ok(mails)
            })
            .await?;
        for mail in mails {
            self.send_mail(tenant, mail).await?;
        }
        Ok(())
    }
}
