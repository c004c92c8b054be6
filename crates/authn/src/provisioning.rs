//! Accounts kept by a provisioning system (SCIM from an HR or CRM system): the
//! whole profile is written at once, by an operator's client, not by the user.
//!
//! The provisioning system is trusted for who the person is, not for proof of an
//! address: a new address arrives unverified (so it cannot receive a recovery
//! link before the person proves it), and an address the account already had
//! keeps its proof. Deactivation (`active: false`) ends everything the user has
//! live, as an operator's disable does; a password, when sent, passes the sign-up
//! policy, is hashed with no database connection held, and (on a change) signs the
//! user out everywhere, as a reset does.

use gatehouse_core::events::DomainEvent;
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_identity_store::db;
use gatehouse_identity_store::users::{self, User, UserData};
use serde_json::json;
use zeroize::Zeroizing;

use crate::{Authn, AuthnError, ClientInfo};

/// The user's own details a new password must not contain.
fn password_details(data: &UserData) -> Vec<Option<&str>> {
    let mut details = vec![
        Some(data.user_name.as_str()),
        data.name.given_name.as_deref(),
        data.name.family_name.as_deref(),
    ];
    details.extend(data.emails.iter().map(|e| Some(e.value.as_str())));
    details
}

/// Each address must be one Gatehouse could send to.
fn check_addresses(data: &UserData) -> Result<(), AuthnError> {
    if data
        .emails
        .iter()
        .all(|e| crate::registration::valid_new_email(e.value.trim()))
    {
        Ok(())
    } else {
        Err(AuthnError::InvalidEmail)
    }
}

/// Proof of an address is kept only for an address the account already had.
fn carry_proofs(previous: Option<&User>, data: &mut UserData) {
    for email in &mut data.emails {
        email.verified = previous.is_some_and(|user| {
            user.data.emails.iter().any(|old| {
                // The store's identity of addresses (NFKC, then lower case), not
                // ASCII case alone: `ÄDA@…` and `äda@…` are one address there.
                old.verified
                    && gatehouse_identity_store::fold_key(&old.value)
                        == gatehouse_identity_store::fold_key(&email.value)
            })
        });
    }
}

/// The profile attributes that differ, by name, for the audit record (never their
/// values: the record outlives the data).
fn changed_attributes(old: &UserData, new: &UserData) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name: &'static str, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("userName", old.user_name != new.user_name);
    check("name", old.name != new.name);
    check("displayName", old.display_name != new.display_name);
    check("nickName", old.nick_name != new.nick_name);
    check("title", old.title != new.title);
    check("userType", old.user_type != new.user_type);
    check(
        "preferredLanguage",
        old.preferred_language != new.preferred_language,
    );
    check("locale", old.locale != new.locale);
    check("timezone", old.timezone != new.timezone);
    check("active", old.active != new.active);
    check("externalId", old.external_id != new.external_id);
    check("emails", old.emails != new.emails);
    check("phoneNumbers", old.phone_numbers != new.phone_numbers);
    check("extensions", old.custom_attributes != new.custom_attributes);
    changed
}

impl Authn {
    /// A provisioned password: checked by the policy against the person's own
    /// details, hashed with no connection held.
    async fn provisioned_hash(
        &self,
        password: Option<Zeroizing<String>>,
        data: &UserData,
    ) -> Result<Option<Zeroizing<String>>, AuthnError> {
        Ok(match password {
            Some(password) => Some(Zeroizing::new(
                self.new_password_hash(password, &password_details(data))
                    .await?,
            )),
            None => None,
        })
    }

    /// Creates an account from a provisioning system's profile, audited as
    /// `user.created` by `actor`. [`AuthnError::Store`] with `Conflict` when the
    /// userName or primary address (or a look-alike) is taken.
    pub async fn provision_account(
        &self,
        tenant: TenantId,
        actor: String,
        mut data: UserData,
        password: Option<Zeroizing<String>>,
    ) -> Result<User, AuthnError> {
        check_addresses(&data)?;
        carry_proofs(None, &mut data);
        let phc = self.provisioned_hash(password, &data).await?;
        self.blocking(move |inner, conn| {
            let now = inner.now();
            let user = db::transaction_with(conn, |conn| {
                let user = crate::registration::create_user(
                    inner,
                    conn,
                    now,
                    tenant,
                    data,
                    phc.as_deref().map(String::as_str),
                )?;
                inner.audit_operator_action(
                    conn,
                    tenant,
                    actor,
                    "user.created",
                    user.id,
                    &ClientInfo::default(),
                    json!({ "provisioned": true, "password": phc.is_some() }),
                )?;
                Ok::<_, AuthnError>(user)
            })?;
            inner.announce(DomainEvent::UserChanged {
                tenant,
                user: user.id,
            });
            Ok(user)
        })
        .await
    }

    /// Replaces the account's profile with a provisioning system's, if
    /// `expected_version` (when given) is still current: `StaleVersion` otherwise.
    /// Deactivating ends the user's sessions and grants in the same transaction.
    /// Audited as `user.updated` with the attributes changed, plus
    /// `user.deactivated`/`user.reactivated` when `active` changed.
    pub async fn replace_account(
        &self,
        tenant: TenantId,
        actor: String,
        user: UserId,
        expected_version: Option<i64>,
        mut data: UserData,
        password: Option<Zeroizing<String>>,
    ) -> Result<User, AuthnError> {
        check_addresses(&data)?;
        let phc = self.provisioned_hash(password, &data).await?;
        self.blocking(move |inner, conn| {
            let now = inner.now();
            let (updated, ended) = db::transaction_with(conn, |conn| {
                let current = users::get(conn, tenant, user)?;
                carry_proofs(Some(&current), &mut data);
                let version = expected_version.unwrap_or(current.version);
                let changed = changed_attributes(&current.data, &data);
                let deactivated = current.data.active && !data.active;
                let reactivated = !current.data.active && data.active;
                let updated = users::update(conn, now, tenant, user, version, data)?;
                // A new password puts whoever held the old one out, as a reset does.
                let mut ended = match &phc {
                    Some(phc) => {
                        inner
                            .reset_password(conn, now, tenant, user, phc, "password_provisioned")?
                            .sessions
                    }
                    None => Vec::new(),
                };
                ended.extend(if deactivated {
                    let (ended, grants_revoked) = inner.end_everything(conn, now, tenant, user)?;
                    inner.audit_operator_action(
                        conn,
                        tenant,
                        actor.clone(),
                        "user.deactivated",
                        user,
                        &ClientInfo::default(),
                        json!({
                            "reason": "provisioning",
                            "sessions_ended": ended.len(),
                            "grants_revoked": grants_revoked,
                        }),
                    )?;
                    ended
                } else {
                    Vec::new()
                });
                if reactivated {
                    inner.audit_operator_action(
                        conn,
                        tenant,
                        actor.clone(),
                        "user.reactivated",
                        user,
                        &ClientInfo::default(),
                        json!({ "reason": "provisioning" }),
                    )?;
                }
                inner.audit_operator_action(
                    conn,
                    tenant,
                    actor,
                    "user.updated",
                    user,
                    &ClientInfo::default(),
                    json!({ "changed": changed, "password": phc.is_some(), "provisioned": true }),
                )?;
                Ok::<_, AuthnError>((updated, ended))
            })?;
            if !updated.data.active {
                inner.announce(DomainEvent::UserDeactivated { tenant, user });
            } else {
                inner.announce(DomainEvent::UserChanged { tenant, user });
            }
            if phc.is_some() {
                inner.credentials_changed(tenant, user);
            }
            inner.sessions_ended(tenant, user, ended);
            Ok(updated)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_core::ids::{TenantId, UserId};
    use gatehouse_identity_store::users::{Email, User, UserData};

    use super::carry_proofs;

    fn address(value: &str, verified: bool) -> Email {
        Email {
            value: value.into(),
            kind: None,
            primary: true,
            verified,
        }
    }

    #[test]
    fn a_proven_address_stays_proven_as_the_store_folds_it_and_a_new_one_is_not() {
        let previous = User {
            id: UserId::new(),
            tenant_id: TenantId::new(),
            data: UserData {
                emails: vec![
                    address("äda@example.com", true),
                    address("old@example.com", false),
                ],
                ..UserData::new("ada")
            },
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            version: 1,
        };
        let mut sent = UserData {
            emails: vec![
                // Upper case beyond ASCII, and a full-width letter NFKC folds.
                address(" ÄDA@EXAMPLE.COM ", false),
                address("ｏld@example.com", true),
                address("new@example.com", true),
            ],
            ..UserData::new("ada")
        };
        carry_proofs(Some(&previous), &mut sent);
        let proven: Vec<bool> = sent.emails.iter().map(|e| e.verified).collect();
        assert_eq!(proven, [true, false, false]);
        carry_proofs(None, &mut sent);
        assert!(sent.emails.iter().all(|e| !e.verified));
    }
}
