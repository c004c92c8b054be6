//! A user's consents as an operator reads them (a data-subject request, the
//! helpdesk): what is in force now and the whole history.

use gatehouse_identity_store::consent_records::{ConsentEvent, CurrentConsent};

use crate::{Admin, AdminResult, UserKey};

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
