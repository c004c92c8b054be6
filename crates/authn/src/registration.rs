//! Sign-up and email verification.
//!
//! The answer to a sign-up never says whether the address was already registered:
//! a new address gets a verification link, a known one gets a note telling its owner
//! that someone tried to sign up with it. Both paths hash a password, so they take
//! similar time.

use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_identity_store::audit::Outcome;
use gatehouse_identity_store::credentials::{self, CredentialKind, NewCredential};
use gatehouse_identity_store::one_time_tokens::{self, Purpose};
use gatehouse_identity_store::users::{self, Email, Name, UserData};
use gatehouse_identity_store::{AnyConnection, StoreError, db, identifier_problem, rate_limits};
use serde_json::json;

use crate::mail_render::{Mail, MailKind};
use crate::service::{Authn, ClientInfo, Inner, MailRequest};
use crate::settings::TenantPolicy;
use crate::{AuthnError, secrets, signup_mail};

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
    pub(crate) fn verify(&self, token: &str) -> String {
        format!("{}/verify?token={token}", self.0)
    }

    pub(crate) fn sign_in(&self) -> String {
        format!("{}/signin", self.0)
    }
}

/// An address a new account or an email change may take: a usable address that also
/// passes the store's identifier rules (no invisible characters, no characters that
/// identifiers must not carry, one script per label). Existing addresses are only
/// held to [`valid_email`], so their owners can still sign in and recover.
pub fn valid_new_email(email: &str) -> bool {
    valid_email(email) && identifier_problem(email).is_none()
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

/// The account-dependent half of [`Authn::resend_verification`]: the mail, if the
/// address is an unverified account's.
fn resent_verification_mail(
    inner: &Inner,
    conn: &mut AnyConnection,
    request: &MailRequest,
) -> Result<Option<Mail>, AuthnError> {
    let tenant = request.tenant;
    let now = inner.now();
    let Some(user) = users::find_by_primary_email(conn, tenant, &request.address)? else {
        return Ok(None);
    };
    let Some(primary) = user.primary_email().filter(|e| !e.verified).cloned() else {
        return Ok(None);
    };
    let token = db::transaction_with(conn, |conn| {
        one_time_tokens::revoke_for_user(conn, now, tenant, user.id, Purpose::VerifyEmail)?;
        let token = issue_verification(inner, conn, tenant, user.id, &primary.value)?;
        inner.audit(
            conn,
            tenant,
            "anonymous".into(),
            "email.verification_resent",
            Some(format!("user:{}", user.id)),
            Outcome::Success,
            &request.client,
            json!({}),
        )?;
        Ok::<_, AuthnError>(token)
    })?;
    Ok(Some(verification_mail(
        &primary.value,
        request.links.verify(&token),
        &request.client,
    )))
}

fn verification_mail(to: &str, link: String, client: &ClientInfo) -> Mail {
    Mail {
        to: to.to_owned(),
        locale: client.locale.clone(),
        kind: MailKind::VerifyEmail { link },
    }
}

/// A new user whose user name and primary address are `email`.
pub(crate) fn new_user_data(
    email: &str,
    given_name: Option<String>,
    family_name: Option<String>,
    verified: bool,
) -> UserData {
    UserData {
        name: Name {
            given_name: given_name.filter(|s| !s.trim().is_empty()),
            family_name: family_name.filter(|s| !s.trim().is_empty()),
            ..Name::default()
        },
        emails: vec![Email {
            value: email.to_owned(),
            kind: None,
            primary: true,
            verified,
        }],
        ..UserData::new(email)
    }
}

/// Creates the user and, when one is given, its password (a PHC string).
pub(crate) fn create_user(
    inner: &Inner,
    conn: &mut AnyConnection,
    now: chrono::DateTime<chrono::Utc>,
    tenant: TenantId,
    data: UserData,
    password_phc: Option<&str>,
) -> Result<users::User, StoreError> {
    let user = users::create(conn, now, tenant, data)?;
    if let Some(phc) = password_phc {
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
    }
    Ok(user)
}

impl Authn {
    /// A new account's password: checked against the policy, with the person's own
    /// details as words to avoid, then hashed on the hashing pool. No database
    /// connection is held across the hash: one held by each of eight concurrent
    /// sign-ups is one taken from everyone else for the length of the hash.
    pub(crate) async fn new_password_hash(
        &self,
        password: impl AsRef<str> + Send + 'static,
        details: &[Option<&str>],
    ) -> Result<String, AuthnError> {
        let details: Vec<&str> = details.iter().flatten().copied().collect();
        self.inner.policy.check(password.as_ref(), &details)?;
        self.hashing(move |hasher, _memory| hasher.hash(password.as_ref()))
            .await?
    }

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
        if !valid_new_email(&email) {
            return Err(AuthnError::InvalidEmail);
        }
        let phc = self
            .new_password_hash(
                form.password,
                &[
                    Some(email.as_str()),
                    form.given_name.as_deref(),
                    form.family_name.as_deref(),
                ],
            )
            .await?;
        let mail = self
            .blocking(move |inner, conn| {
                let now = inner.now();
                // Counted for every sign-up before the address is looked up, so the
                // request does the same counting whether or not it has an account;
                // only the mail (verification link or note) is held back.
                let mail_allowed = signup_mail::signup_mail_allowed(
                    conn,
                    now,
                    tenant,
                    &inner.settings,
                    &email,
                    &client,
                )?;
                let user_data = new_user_data(&email, form.given_name, form.family_name, false);
                // The user, the password, the link and the audit record commit
                // together or not at all (a crash never leaves a user unaudited).
                let created = db::transaction_with(conn, |conn| {
                    let user = create_user(inner, conn, now, tenant, user_data, Some(&phc))?;
                    let token = issue_verification(inner, conn, tenant, user.id, &email)?;
                    inner.audit_own_account(
                        conn,
                        tenant,
                        user.id,
                        "user.registered",
                        &client,
                        json!({}),
                    )?;
                    Ok::<_, AuthnError>((user, token))
                });
                match created {
                    Ok((user, token)) => {
                        // Caches that remember an id as unknown (the PDP's) must hear
                        // that it exists now. Queued, never waits on the database.
                        inner.user_changed(tenant, user.id);
                        Ok(mail_allowed
                            .then(|| verification_mail(&email, links.verify(&token), &client)))
                    }
                    Err(AuthnError::Store(StoreError::Conflict { field, .. })) => {
                        // Unlike a duplicate, a look-alike's mailbox has no account:
                        // it is told its address cannot be used, not to sign in.
                        let look_alike = field == users::USER_NAME_LOOK_ALIKE
                            || field == users::EMAIL_LOOK_ALIKE;
                        inner.audit(
                            conn,
                            tenant,
                            "anonymous".into(),
                            "user.registration_duplicate",
                            None,
                            Outcome::Denied,
                            &client,
                            json!({ "notified": mail_allowed, "look_alike": look_alike }),
                        )?;
                        Ok(mail_allowed.then(|| Mail {
                            to: email.clone(),
                            locale: client.locale.clone(),
                            kind: if look_alike {
                                MailKind::LookAlikeAddress
                            } else {
                                MailKind::AlreadyRegistered {
                                    sign_in_link: links.sign_in(),
                                }
                            },
                        }))
                    }
                    Err(other) => Err(other),
                }
            })
            .await?;
        // The account exists now; a mail outage must not turn that into an error page
        // (and a differing answer). The user can ask for the link again.
        if let Some(mail) = mail {
            self.send_in_background(tenant, mail, "sign-up");
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
            inner.audit_own_account(
                conn,
                tenant,
                user.id,
                "email.verified",
                &client,
                json!({ "changed": !already_primary }),
            )?;
            // A verified address (and perhaps a new userName) is what policies see
            // as `email_verified`: caches of the user must hear of it.
            inner.user_changed(tenant, user.id);
            Ok(())
        })
        .await
    }

    /// Sends a fresh verification link if the address belongs to an unverified
    /// account. Answers the same either way, and at most `resend_per_hour` times.
    ///
    /// Enumeration rule (docs/architecture.md, invariants): the request path does only what every
    /// address gets — the per-address count. Looking the address up, issuing the
    /// link, auditing and mailing happen after the answer, in the background.
    pub async fn resend_verification(
        &self,
        tenant: TenantId,
        email: String,
        links: LinkBase,
        client: ClientInfo,
    ) -> Result<(), AuthnError> {
        let within_limit = self
            .blocking({
                let email = email.clone();
                move |inner, conn| {
                    let bucket = format!("resend:{}", gatehouse_identity_store::fold_key(&email));
                    let per_hour = inner.settings.resend_per_hour;
                    let counter = rate_limits::record_failure(
                        conn,
                        inner.now(),
                        tenant,
                        &bucket,
                        chrono::Duration::hours(1),
                        |n| (n > per_hour).then(|| chrono::Duration::hours(1)),
                    )?;
                    Ok(counter.failures <= per_hour)
                }
            })
            .await?;
        if within_limit {
            let request = MailRequest::new(tenant, email, links, client);
            self.mail_in_background("verification", request, resent_verification_mail);
        }
        Ok(())
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

    #[test]
    fn new_addresses_also_pass_the_identifier_rules() {
        assert!(super::valid_new_email("иван@example.com"));
        for bad in [
            "pаypal@example.com",
            "bob\u{200b}@example.com",
            "alice☃@example.com",
        ] {
            assert!(super::valid_email(bad), "{bad}");
            assert!(!super::valid_new_email(bad), "{bad}");
        }
    }
}
