//! A user's consents as an operator reads them (a data-subject request, the
//! helpdesk) — what is in force now and the whole history — and withdraws them on
//! the user's behalf.

use gatehouse_identity_store::consent_records::{ConsentEvent, CurrentConsent};

use crate::{Admin, AdminResult, Operator, Reason, UserKey};

/// A user's consents.
#[derive(Debug)]
pub struct UserConsents {
    /// In force now, by client and purpose.
    pub current: Vec<CurrentConsent>,
    /// Every grant, withdrawal and expiry, oldest first.
    pub history: Vec<ConsentEvent>,
}

impl Admin {
    /// The consents of the user `who` of the tenant `tenant`.
    pub async fn user_consents(
        &self,
        tenant: &str,
        who: impl Into<UserKey>,
    ) -> AdminResult<UserConsents> {
        let (tenant, user) = self.user(tenant, who).await?;
        let consents = self.consents.clone();
        self.off_pool(move || {
            Ok(UserConsents {
                current: consents.current(tenant.id, user.id)?,
                history: consents.history(tenant.id, user.id)?,
            })
        })
        .await
    }
}

/// What an operator's withdrawal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentWithdrawal {
    /// The purposes whose consent was in force and is now withdrawn.
    pub withdrawn: Vec<String>,
    /// How many OAuth grants (and their tokens) were revoked with them.
    pub grants_revoked: usize,
}

impl Admin {
    /// Withdraws, for the user, their consent to the client for `purpose` — or,
    /// without one, every purpose they granted it, every grant they hold with it and
    /// every scope its consent page remembered (as the user's own "remove app"
    /// does). In force at once on every node; audited with the operator and the
    /// reason. A support request or a legal order, never a way to grant.
    pub async fn withdraw_consent(
        &self,
        operator: &Operator,
        tenant: &str,
        who: impl Into<UserKey>,
        client_id: &str,
        purpose: Option<&str>,
        reason: &Reason,
    ) -> AdminResult<ConsentWithdrawal> {
        let (tenant, user) = self.user(tenant, who).await?;
        // The client must be the tenant's: an unknown one is a 404, not an empty
        // withdrawal on record.
        self.client(&tenant.slug, client_id).await?;
        let (consents, actor, why) = (
            self.consents.clone(),
            operator.actor(),
            reason.as_str().to_owned(),
        );
        let (client_id, purpose) = (client_id.to_owned(), purpose.map(str::to_owned));
        self.off_pool(move || {
            Ok(match purpose {
                Some(purpose) => {
                    let done = consents.withdraw_as_operator(
                        tenant.id, user.id, &client_id, &purpose, &actor, &why,
                    )?;
                    ConsentWithdrawal {
                        withdrawn: done.event.map(|e| e.purpose).into_iter().collect(),
                        grants_revoked: done.grants_revoked.len(),
                    }
                }
                None => {
                    let done = consents
                        .revoke_app_as_operator(tenant.id, user.id, &client_id, &actor, &why)?;
                    ConsentWithdrawal {
                        withdrawn: done.withdrawn.into_iter().map(|e| e.purpose).collect(),
                        grants_revoked: done.grants_revoked.len(),
                    }
                }
            })
        })
        .await
    }
}
