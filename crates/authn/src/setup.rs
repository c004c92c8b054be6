//! Finishing first-start set-up: the administrator created by bootstrap has no
//! password, only a one-time setup secret (stored as its SHA-256, sealed). Presenting
//! that secret once sets the administrator's email and password and destroys it.

use gatehouse_core::ids::TenantId;
use gatehouse_identity_store::audit::Outcome;
use gatehouse_identity_store::credentials::{self, CredentialKind, NewCredential};
use gatehouse_identity_store::users::{self, Email};
use gatehouse_identity_store::{db, rate_limits};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::AuthnError;
use crate::registration::valid_new_email;
use crate::service::{Authn, ClientInfo};

const BUCKET: &str = "setup:secret";
const MAX_FAILURES: i32 = 10;

/// The stored form of a setup secret: it is high-entropy, so a plain SHA-256 suffices.
pub fn setup_secret_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.trim().as_bytes()).into()
}

impl Authn {
    /// Whether first-start set-up is still open: the administrator bootstrap made
    /// still holds an unused setup secret. Once set-up is done there is nothing to
    /// show a form for.
    pub async fn setup_pending(
        &self,
        tenant: TenantId,
        admin_user_name: String,
    ) -> Result<bool, AuthnError> {
        self.blocking(move |_, conn| {
            let Some(admin) = users::find_by_user_name(conn, tenant, &admin_user_name)? else {
                return Ok(false);
            };
            let secrets = credentials::list_for_user(
                conn,
                tenant,
                admin.id,
                Some(CredentialKind::SetupSecret),
            )?;
            Ok(!secrets.is_empty())
        })
        .await
    }

    pub async fn complete_setup(
        &self,
        tenant: TenantId,
        admin_user_name: String,
        secret: Zeroizing<String>,
        email: String,
        password: Zeroizing<String>,
        client: ClientInfo,
    ) -> Result<(), AuthnError> {
        let email = email.trim().to_owned();
        if !valid_new_email(&email) {
            return Err(AuthnError::InvalidEmail);
        }
        self.inner
            .policy
            .check(&password, &[email.as_str(), admin_user_name.as_str()])?;
        // 1. The secret, checked on a pooled connection; a wrong one is counted and
        //    audited at once.
        let checking = client.clone();
        let admin = self
            .blocking(move |inner, conn| {
                let now = inner.now();
                if rate_limits::get(conn, tenant, BUCKET)?.is_some_and(|c| c.is_locked(now)) {
                    return Err(AuthnError::Throttled { until: None });
                }
                let admin = users::find_by_user_name(conn, tenant, &admin_user_name)?;
                let stored = match &admin {
                    Some(admin) => credentials::list_for_user(
                        conn,
                        tenant,
                        admin.id,
                        Some(CredentialKind::SetupSecret),
                    )?,
                    None => Vec::new(),
                };
                let presented = setup_secret_digest(&secret);
                let mut matched = false;
                for credential in &stored {
                    let digest = credential.secret(&inner.cipher)?;
                    matched |= bool::from(digest.as_slice().ct_eq(&presented));
                }
                match (admin, matched) {
                    (Some(admin), true) => Ok(admin),
                    _ => {
                        refuse(inner, conn, now, tenant, &checking)?;
                        Err(AuthnError::InvalidCredentials)
                    }
                }
            })
            .await?;
        // 2. The password, hashed on the hashing pool with no connection held.
        let phc = self
            .hashing(move |hasher, _memory| hasher.hash(&password))
            .await??;
        // 3. One transaction: the secret is spent (a concurrent set-up that spent it
        //    first wins; this one is refused), the address and password are written,
        //    the failure count is cleared and the completion audited.
        self.blocking(move |inner, conn| {
            let now = inner.now();
            db::transaction_with(conn, |conn| {
                let spent = credentials::delete_kind_for_user(
                    conn,
                    tenant,
                    admin.id,
                    CredentialKind::SetupSecret,
                )?;
                if spent == 0 {
                    return Err(AuthnError::InvalidCredentials);
                }
                let mut data = admin.data.clone();
                data.emails = vec![Email {
                    value: email.clone(),
                    kind: None,
                    primary: true,
                    verified: true,
                }];
                users::update(conn, now, tenant, admin.id, admin.version, data).map_err(
                    |e| match e {
                        gatehouse_identity_store::StoreError::Conflict { .. } => {
                            AuthnError::EmailTaken
                        }
                        other => other.into(),
                    },
                )?;
                credentials::delete_kind_for_user(
                    conn,
                    tenant,
                    admin.id,
                    CredentialKind::Password,
                )?;
                credentials::create(
                    conn,
                    &inner.cipher,
                    now,
                    tenant,
                    admin.id,
                    NewCredential {
                        kind: CredentialKind::Password,
                        label: None,
                        secret: phc.as_bytes(),
                    },
                )?;
                rate_limits::reset(conn, tenant, BUCKET)?;
                inner.audit_own_account(
                    conn,
                    tenant,
                    admin.id,
                    "bootstrap.setup_completed",
                    &client,
                    json!({}),
                )?;
                Ok(())
            })
        })
        .await
    }
}

/// A wrong setup secret: counted towards the lockout and audited.
fn refuse(
    inner: &crate::service::Inner,
    conn: &mut gatehouse_identity_store::AnyConnection,
    now: chrono::DateTime<chrono::Utc>,
    tenant: TenantId,
    client: &ClientInfo,
) -> Result<(), AuthnError> {
    rate_limits::record_failure(conn, now, tenant, BUCKET, chrono::Duration::hours(1), |n| {
        (n >= MAX_FAILURES).then(|| chrono::Duration::hours(1))
    })?;
    inner.audit(
        conn,
        tenant,
        "anonymous".into(),
        "bootstrap.setup_failed",
        None,
        Outcome::Failure,
        client,
        json!({}),
    )?;
    Ok(())
}
