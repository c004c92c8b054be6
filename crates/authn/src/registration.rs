//! Sign-up and email verification.
//!
//! The answer to a sign-up never says whether the address was already registered:
//! a new address gets a verification link, a known one gets a note telling its owner
//! that someone tried to sign up with it. Both paths hash a password, so they take
//! similar time.

use gatehouse_core::events::DomainEvent;
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_identity_store::audit::Outcome;
use gatehouse_identity_store::credentials::{self, CredentialKind, NewCredential};
use gatehouse_identity_store::one_time_tokens::{self, Purpose};
use gatehouse_identity_store::users::{self, Email, Name, UserData};
use gatehouse_identity_store::{AnyConnection, StoreError, db, rate_limits};
use serde_json::json;

use crate::mail::OutgoingMail;
use crate::service::{Authn, ClientInfo, Inner};
use crate::settings::TenantPolicy;
use crate::{AuthnError, secrets};

#[derive(Debug, Clone)]
pub struct Registration {
    pub email: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub password: String,
}

/// Where links in mails point: e.g. `https://login.example.com/t/acme`.
#[derive(Debug, Clone)]
pub struct LinkBase(pub String);

impl LinkBase {
    fn verify(&self, token: &str) -> String {
        format!("{}/verify?token={token}", self.0)
    }
}

/// A deliberately modest check: the verification mail is the real test.
pub fn valid_email(email: &str) -> bool {
    let email = email.trim();
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && email.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
}

/// Issues a single-use link token that verifies `email` for `user` (sign-up, resend
/// and email change alike); returns the token for the link. Only its hash is stored.
pub(crate) fn issue_verification(
    inner: &Inner,
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
    email: &str,
) -> Result<String, StoreError> {
    let (token, token_hash) = secrets::generate();
    one_time_tokens::issue(
        conn,
        inner.now(),
        tenant,
        user,
        Purpose::VerifyEmail,
        &token_hash,
        inner.settings.verification_link_lifetime,
        &json!({ "email": email }),
    )?;
    Ok(token)
}

fn verification_mail(to: &str, link: &str) -> OutgoingMail {
    OutgoingMail {
        to: to.to_owned(),
        subject: "Confirm your email address".to_owned(),
        text_body: format!(
            "Welcome!\n\nConfirm your email address by opening this link:\n\n{link}\n\n\
             The link works once. If you did not sign up, ignore this message."
        ),
        html_body: None,
    }
}

fn already_registered_mail(to: &str, sign_in: &str) -> OutgoingMail {
    OutgoingMail {
        to: to.to_owned(),
        subject: "Someone tried to sign up with your address".to_owned(),
        text_body: format!(
            "Someone, perhaps you, tried to create an account with this email address, \
             but you already have one.\n\nSign in here: {sign_in}\n\n\
             If it was not you, you can ignore this message; nothing was changed."
        ),
        html_body: None,
    }
}

impl Authn {
    pub async fn register(
        &self,
        tenant: TenantId,
        policy: &TenantPolicy,
        form: Registration,
        links: LinkBase,
        client: ClientInfo,
    ) -> Result<(), AuthnError> {
        if !policy.registration_enabled {
            return Err(AuthnError::RegistrationClosed);
        }
        let email = form.email.trim().to_owned();
        if !valid_email(&email) {
            return Err(AuthnError::InvalidEmail);
        }
        let inputs: Vec<&str> = [
            Some(email.as_str()),
            form.given_name.as_deref(),
            form.family_name.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.inner.policy.check(&form.password, &inputs)?;

        let mail = self
            .blocking(move |inner, conn| {
                let phc = inner.hasher.hash(&form.password)?;
                let now = inner.now();
                let user_data = UserData {
                    name: Name {
                        given_name: form.given_name.filter(|s| !s.trim().is_empty()),
                        family_name: form.family_name.filter(|s| !s.trim().is_empty()),
                        ..Name::default()
                    },
                    emails: vec![Email {
                        value: email.clone(),
                        kind: None,
                        primary: true,
                        verified: false,
                    }],
                    ..UserData::new(email.clone())
                };
                let created = db::transaction(conn, |conn| {
                    let user = users::create(conn, now, tenant, user_data)?;
                    credentials::create(
                        conn,
                        &inner.cipher,
                        now,
                        tenant,
                        user.id,
                        NewCredential {
                            kind: CredentialKind::Password,
                            label: None,
                            secret: phc.as_bytes(),
                        },
                    )?;
                    let token = issue_verification(inner, conn, tenant, user.id, &email)?;
                    Ok((user, token))
                });
                match created {
                    Ok((user, token)) => {
                        // Caches that remember an id as unknown (the PDP's) must hear
                        // that it exists now.
                        let _ = inner.events.publish(DomainEvent::UserChanged {
                            tenant,
                            user: user.id,
                        });
                        inner.audit(
                            conn,
                            tenant,
                            format!("user:{}", user.id),
                            "user.registered",
                            Some(format!("user:{}", user.id)),
                            Outcome::Success,
                            &client,
                            json!({}),
                        )?;
                        Ok(verification_mail(&email, &links.verify(&token)))
                    }
                    Err(StoreError::Conflict { .. }) => {
                        inner.audit(
                            conn,
                            tenant,
                            "anonymous".into(),
                            "user.registration_duplicate",
                            None,
                            Outcome::Denied,
                            &client,
                            json!({}),
                        )?;
                        Ok(already_registered_mail(
                            &email,
                            &format!("{}/signin", links.0),
                        ))
                    }
                    Err(other) => Err(other.into()),
                }
            })
            .await?;
        // The account exists now; a mail outage must not turn that into an error page
        // (and a differing answer). The user can ask for the link again.
        if let Err(error) = self.inner.mailer.send(&mail).await {
            tracing::error!(%error, "verification mail could not be sent");
        }
        Ok(())
    }

    /// Consumes a verification link and marks the address verified.
    pub async fn verify_email(
        &self,
        tenant: TenantId,
        token: String,
        client: ClientInfo,
    ) -> Result<(), AuthnError> {
        self.blocking(move |inner, conn| {
            let now = inner.now();
            let consumed = one_time_tokens::consume(
                conn,
                now,
                tenant,
                Purpose::VerifyEmail,
                &secrets::digest(&token),
            )?
            .ok_or(AuthnError::InvalidLink)?;
            let address = consumed
                .payload
                .get("email")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            let user = users::get(conn, tenant, consumed.user_id)?;
            let mut data = user.data.clone();
            let previous = data
                .emails
                .iter()
                .find(|e| e.primary)
                .map(|e| e.value.clone());
            let already_primary = previous
                .as_deref()
                .is_some_and(|p| p.eq_ignore_ascii_case(&address));
            if already_primary {
                for email in data.emails.iter_mut().filter(|e| e.primary) {
                    email.verified = true;
                }
            } else {
                // An email change: the new address becomes the verified primary one.
                data.emails = vec![Email {
                    value: address.clone(),
                    kind: None,
                    primary: true,
                    verified: true,
                }];
                if previous
                    .as_deref()
                    .is_some_and(|p| p.eq_ignore_ascii_case(&data.user_name))
                {
                    data.user_name = address.clone();
                }
            }
            users::update(conn, now, tenant, user.id, user.version, data).map_err(|e| match e {
                StoreError::Conflict { .. } => AuthnError::EmailTaken,
                other => other.into(),
            })?;
            inner.audit(
                conn,
                tenant,
                format!("user:{}", user.id),
                "email.verified",
                Some(format!("user:{}", user.id)),
                Outcome::Success,
                &client,
                json!({ "changed": !already_primary }),
            )?;
            // A verified address (and perhaps a new userName) is what policies see
            // as `email_verified`: caches of the user must hear of it.
            let _ = inner.events.publish(DomainEvent::UserChanged {
                tenant,
                user: user.id,
            });
            Ok(())
        })
        .await
    }

    /// Sends a fresh verification link if the address belongs to an unverified
    /// account. Answers the same either way, and at most `resend_per_hour` times.
    pub async fn resend_verification(
        &self,
        tenant: TenantId,
        email: String,
        links: LinkBase,
        client: ClientInfo,
    ) -> Result<(), AuthnError> {
        let mail = self
            .blocking(move |inner, conn| {
                let now = inner.now();
                let bucket = format!("resend:{}", gatehouse_identity_store::fold_key(&email));
                let per_hour = inner.settings.resend_per_hour;
                let counter = rate_limits::record_failure(
                    conn,
                    now,
                    tenant,
                    &bucket,
                    chrono::Duration::hours(1),
                    |n| (n > per_hour).then(|| chrono::Duration::hours(1)),
                )?;
                if counter.failures > per_hour {
                    return Ok(None);
                }
                let Some(user) = users::find_by_primary_email(conn, tenant, &email)? else {
                    return Ok(None);
                };
                let Some(primary) = user.primary_email().filter(|e| !e.verified).cloned() else {
                    return Ok(None);
                };
                let token = db::transaction(conn, |conn| {
                    one_time_tokens::revoke_for_user(
                        conn,
                        now,
                        tenant,
                        user.id,
                        Purpose::VerifyEmail,
                    )?;
                    issue_verification(inner, conn, tenant, user.id, &primary.value)
                })?;
                inner.audit(
                    conn,
                    tenant,
                    "anonymous".into(),
                    "email.verification_resent",
                    Some(format!("user:{}", user.id)),
                    Outcome::Success,
                    &client,
                    json!({}),
                )?;
                Ok(Some(verification_mail(
                    &primary.value,
                    &links.verify(&token),
                )))
            })
            .await?;
        match mail {
            Some(mail) => self.inner.mailer.send(&mail).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn email_syntax_check_is_modest_but_rejects_junk() {
        for good in ["a@example.com", "first.last+tag@sub.example.co.uk"] {
            assert!(super::valid_email(good), "{good}");
        }
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@localhost",
            "a b@example.com",
            "a@example.com>",
            "a@.com",
        ] {
            assert!(!super::valid_email(bad), "{bad}");
        }
    }
}
