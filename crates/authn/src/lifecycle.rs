//! An account's lifecycle in an operator's hands: creating an account
//! ([`Authn::create_account`]), deactivating and reactivating a user, and giving or
//! taking away a role.
//!
//! # Deactivation
//!
//! [`Authn::deactivate_user`], in one transaction: the user becomes inactive, every
//! session ends, every OAuth grant is revoked (offline ones included, and with each
//! grant its refresh tokens and the access tokens introspection would still accept),
//! outstanding password-reset links are void and open factor recoveries cancelled
//! (a later reactivation must not bring them back), and the audit event names the
//! operator and the reason. The token endpoint, introspection and UserInfo check the
//! grant in the database, so refresh answers `invalid_grant` and introspection
//! `inactive` at once, on every node, whether or not an event arrives. After the
//! commit `UserDeactivated` (caches) and `SessionsEnded` (back-channel logout to the
//! relying parties) are published. Sign-in, second factors, passkeys and reset links
//! already refuse an inactive user.
//!
//! [`Authn::reactivate_user`] only sets the flag back (audited, `UserChanged`):
//! nothing that was ended is restored; the user signs in again and applications ask
//! for new grants.
//!
//! # Roles
//!
//! Tokens carry roles only as the `roles` claim (ID tokens and UserInfo), and only
//! for the scopes that the tenant's scope table maps to it: the `"scopes"` object of
//! the tenant's settings, read here as `gatehouse-token-issuer`'s `claims.rs` reads
//! it (no default scope releases `roles`). [`Authn::remove_role`] unassigns the role
//! and, in the same transaction, revokes the user's live grants — to any client —
//! whose scope holds one of those scopes: their ID tokens state the role the user no
//! longer has. The grants are chosen by scope rather than by "was the role in a token
//! of this grant", which the store does not record; a grant issued before the role
//! was assigned is therefore revoked too, which errs on the safe side. Grants whose
//! scopes release only `groups` are left alone: a role is not a group.
//!
//! After the commit `UserChanged` and, when grants were revoked, `GrantsRevoked`
//! (back-channel logout for the relying parties' sessions built on them) are
//! published.
//!
//! [`Authn::assign_role`] revokes nothing: a token that lacks a role claims less than
//! the user may do, never more. Both are audited and announce `UserChanged`.

use chrono::{DateTime, Utc};
use gatehouse_core::events::DomainEvent;
use gatehouse_core::ids::{RoleId, SessionId, TenantId, UserId};
use gatehouse_core::tenant_settings::TenantSettings;
use gatehouse_identity_store::audit::Outcome;
use gatehouse_identity_store::one_time_tokens::{self, Purpose};
use gatehouse_identity_store::{
    AnyConnection, StoreError, account_recoveries, db, grants, roles, sessions, tenants, users,
};
use serde_json::json;

use crate::AuthnError;
use crate::service::{Authn, ClientInfo, Inner};

/// The claim a role reaches tokens as (see `gatehouse-token-issuer`'s `claims.rs`).
pub(crate) const ROLES_CLAIM: &str = "roles";

/// An account an operator makes (development, tests, moving users in by hand).
#[derive(Debug)]
pub struct NewAccount {
    pub email: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// Checked by the sign-up policy. Without one, the user chooses it through
    /// "forgot password" (which needs the address verified).
    pub password: Option<zeroize::Zeroizing<String>>,
    /// Whether the address counts as verified: the operator vouches for it.
    pub verified: bool,
    /// Mail the user an invitation: a link (valid [`INVITATION_DAYS`] days) to
    /// choose a password. Using it proves the address, which then counts as
    /// verified. Not with a password.
    pub invite: Option<crate::registration::LinkBase>,
}

/// How long an invitation link works.
pub const INVITATION_DAYS: i64 = 7;

/// What [`Authn::create_account`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountCreated {
    pub user: UserId,
    /// Whether the invitation went out; `None` when none was asked for.
    pub invitation_sent: Option<bool>,
}

/// What a deactivation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deactivation {
    /// False when the user was already inactive; whatever was still live was ended
    /// all the same.
    pub was_active: bool,
    /// The sessions that ended (as announced in `SessionsEnded`), for a caller that
    /// must tell relying parties itself.
    pub sessions_ended: Vec<SessionId>,
    pub grants_revoked: usize,
}

/// What taking a role away did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRemoval {
    /// False when the user did not have the role; then nothing was revoked.
    pub was_assigned: bool,
    /// The ids of the grants revoked because their tokens carried the role.
    pub grants_revoked: Vec<String>,
}

/// The scopes that release `claim` under the tenant's scope table. Only a tenant's
/// own entries (`settings.scopes`, each `"scope": ["claim", …]`, replacing a default
/// of the same name) can name `roles` or `groups`: the OIDC defaults release neither.
pub(crate) fn scopes_releasing(settings: &TenantSettings, claim: &str) -> Vec<String> {
    settings
        .scopes
        .iter()
        .filter(|(_, claims)| claims.iter().any(|c| c == claim))
        .map(|(scope, _)| scope.clone())
        .collect()
}

/// [`roles::assign`] inside a savepoint. An existing assignment surfaces there as a
/// unique violation, which on PostgreSQL aborts the enclosing transaction (the audit
/// event would then fail) unless it is rolled back to a savepoint; so "already
/// assigned" leaves the savepoint as an error and becomes `false` outside it.
fn assign_in_savepoint(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
    role: RoleId,
    user: UserId,
) -> Result<bool, AuthnError> {
    enum Nested {
        AlreadyAssigned,
        Store(StoreError),
    }
    impl From<StoreError> for Nested {
        fn from(error: StoreError) -> Self {
            Nested::Store(error)
        }
    }
    let assigned = db::transaction_with(conn, |conn| {
        if roles::assign(conn, now, tenant, role, user)? {
            Ok(())
        } else {
            Err(Nested::AlreadyAssigned)
        }
    });
    match assigned {
        Ok(()) => Ok(true),
        Err(Nested::AlreadyAssigned) => Ok(false),
        Err(Nested::Store(error)) => Err(error.into()),
    }
}

impl Inner {
    /// Audits a successful action of `actor` (an operator or administrator) on
    /// `user`'s account.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn audit_operator_action(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        actor: String,
        action: &str,
        user: UserId,
        client: &ClientInfo,
        details: serde_json::Value,
    ) -> Result<(), AuthnError> {
        let target = Some(format!("user:{user}"));
        self.audit(
            conn,
            tenant,
            actor,
            action,
            target,
            Outcome::Success,
            client,
            details,
        )
    }

    /// Publishes after a commit. A failure reaches no other node, but the database
    /// already holds the truth every node checks, so it is logged, not returned.
    pub(crate) fn announce(&self, event: DomainEvent) {
        self.events.announce(event);
    }

    /// Inside the deactivation's transaction: everything that lets the user in, or
    /// lets an application act for them, ends.
    pub(crate) fn end_everything(
        &self,
        conn: &mut AnyConnection,
        now: DateTime<Utc>,
        tenant: TenantId,
        user: UserId,
    ) -> Result<(Vec<SessionId>, usize), AuthnError> {
        const REASON: &str = "user_deactivated";
        let ended = sessions::end_all_for_user(conn, now, tenant, user, None, REASON)?;
        let revoked = grants::revoke_for_user(conn, now, tenant, user, REASON)?;
        one_time_tokens::revoke_for_user(conn, now, tenant, user, Purpose::PasswordReset)?;
        account_recoveries::cancel_open_for_user(conn, now, tenant, user, REASON)?;
        Ok((ended, revoked))
    }
}

impl Authn {
    /// Deactivates a user: see the module documentation. `actor` is the audit log's
    /// actor (`operator:<name>`, `user:<id>` of an administrator), `reason` goes into
    /// the audit event. Deactivating an inactive user ends whatever is still live and
    /// reports `was_active: false`. [`AuthnError::Store`] with `NotFound` for no such
    /// user.
    pub async fn deactivate_user(
        &self,
        tenant: TenantId,
        actor: String,
        user: UserId,
        reason: String,
        client: ClientInfo,
    ) -> Result<Deactivation, AuthnError> {
        self.blocking(move |inner, conn| {
            let now = inner.now();
            let outcome = db::transaction_with(conn, |conn| {
                // A write first: SQLite takes its write lock at once.
                let was_active = users::set_active(conn, now, tenant, user, false)?;
                let (ended, grants_revoked) = inner.end_everything(conn, now, tenant, user)?;
                inner.audit_operator_action(
                    conn,
                    tenant,
                    actor,
                    "user.deactivated",
                    user,
                    &client,
                    json!({
                        "reason": reason,
                        "was_active": was_active,
                        "sessions_ended": ended.len(),
                        "grants_revoked": grants_revoked,
                    }),
                )?;
                Ok::<_, AuthnError>(Deactivation {
                    was_active,
                    sessions_ended: ended,
                    grants_revoked,
                })
            })?;
            inner.announce(DomainEvent::UserDeactivated { tenant, user });
            inner.sessions_ended(tenant, user, outcome.sessions_ended.clone());
            Ok(outcome)
        })
        .await
    }

    /// Creates an active account with `account`'s primary address, audited as
    /// `user.created` with the operator. No mail is sent: the operator vouches for
    /// the address (or leaves it unverified, so sign-in asks for verification
    /// first). [`AuthnError::Store`] with `Conflict` when the address or a look-alike
    /// is taken.
    pub async fn create_account(
        &self,
        tenant: TenantId,
        actor: String,
        account: NewAccount,
        client: ClientInfo,
    ) -> Result<AccountCreated, AuthnError> {
        let email = account.email.trim().to_owned();
        if account.invite.is_some() && account.password.is_some() {
            return Err(AuthnError::Internal(
                "an invitation is for an account without a password".into(),
            ));
        }
        if !crate::registration::valid_new_email(&email) {
            return Err(AuthnError::InvalidEmail);
        }
        let phc = match account.password {
            Some(password) => Some(
                self.new_password_hash(
                    password,
                    &[
                        Some(email.as_str()),
                        account.given_name.as_deref(),
                        account.family_name.as_deref(),
                    ],
                )
                .await?,
            ),
            None => None,
        };
        let address = email.clone();
        let user_data = crate::registration::new_user_data(
            &email,
            account.given_name,
            account.family_name,
            account.verified,
        );
        let verified = account.verified;
        // The link's token, made only for an invitation.
        let invitation = account
            .invite
            .map(|links| (links, crate::secrets::generate()));
        let inviting = invitation.is_some();
        let (user, mail) = self
            .blocking(move |inner, conn| {
                let now = inner.now();
                let user = db::transaction_with(conn, |conn| {
                    let user = crate::registration::create_user(
                        inner,
                        conn,
                        now,
                        tenant,
                        user_data,
                        phc.as_deref(),
                    )?;
                    if let Some((_, (_, token_hash))) = &invitation {
                        one_time_tokens::issue(
                            conn,
                            now,
                            tenant,
                            user.id,
                            Purpose::PasswordReset,
                            token_hash,
                            chrono::Duration::days(INVITATION_DAYS),
                            &json!({ "invitation": true }),
                        )?;
                    }
                    inner.audit_operator_action(
                        conn,
                        tenant,
                        actor,
                        "user.created",
                        user.id,
                        &client,
                        json!({
                            "verified": verified,
                            "password": phc.is_some(),
                            "invited": inviting,
                        }),
                    )?;
                    Ok::<_, AuthnError>(user.id)
                })?;
                inner.announce(DomainEvent::UserChanged { tenant, user });
                let mail = invitation.map(|(links, (token, _))| crate::mail_render::Mail {
                    to: address,
                    locale: client.locale.clone(),
                    kind: crate::mail_render::MailKind::Invitation {
                        link: format!("{}{}?token={token}", links.0, crate::recovery::RESET_PATH),
                        valid_days: INVITATION_DAYS,
                    },
                });
                Ok((user, mail))
            })
            .await?;
        // The account exists; a mail outage is reported, not turned into a failure.
        let invitation_sent = match mail {
            Some(mail) => Some(match self.send_mail(tenant, mail).await {
                Ok(()) => true,
                Err(error) => {
                    tracing::error!(%error, "an invitation could not be sent");
                    false
                }
            }),
            None => None,
        };
        Ok(AccountCreated {
            user,
            invitation_sent,
        })
    }

    /// Ends every session of the user (an operator's "sign out everywhere"): the
    /// ends and the audit record (`session.ended_by_operator`, with the reason)
    /// commit together; relying parties hear of it (back-channel logout). Grants
    /// stay: the user is signed out, not deactivated. Returns the sessions ended.
    pub async fn end_sessions_by_operator(
        &self,
        tenant: TenantId,
        actor: String,
        user: UserId,
        reason: String,
        client: ClientInfo,
    ) -> Result<Vec<SessionId>, AuthnError> {
        self.blocking(move |inner, conn| {
            let now = inner.now();
            let ended = db::transaction_with(conn, |conn| {
                let ended =
                    sessions::end_all_for_user(conn, now, tenant, user, None, "ended_by_operator")?;
                inner.audit_operator_action(
                    conn,
                    tenant,
                    actor,
                    "session.ended_by_operator",
                    user,
                    &client,
                    json!({ "reason": reason, "count": ended.len() }),
                )?;
                Ok::<_, AuthnError>(ended)
            })?;
            inner.sessions_ended(tenant, user, ended.clone());
            Ok(ended)
        })
        .await
    }

    /// Lets a deactivated user sign in again. Nothing ended by the deactivation comes
    /// back. Returns false (and still audits the request) when the user was active.
    pub async fn reactivate_user(
        &self,
        tenant: TenantId,
        actor: String,
        user: UserId,
        reason: String,
        client: ClientInfo,
    ) -> Result<bool, AuthnError> {
        self.blocking(move |inner, conn| {
            let now = inner.now();
            let changed = db::transaction_with(conn, |conn| {
                let changed = users::set_active(conn, now, tenant, user, true)?;
                inner.audit_operator_action(
                    conn,
                    tenant,
                    actor,
                    "user.reactivated",
                    user,
                    &client,
                    json!({ "reason": reason, "was_active": !changed }),
                )?;
                Ok::<_, AuthnError>(changed)
            })?;
            inner.announce(DomainEvent::UserChanged { tenant, user });
            Ok(changed)
        })
        .await
    }

    /// Creates a role, audited as `role.created`. [`AuthnError::Store`] with
    /// `Conflict` when the tenant has a role of that name (names compare folded).
    pub async fn create_role(
        &self,
        tenant: TenantId,
        actor: String,
        data: roles::RoleData,
        client: ClientInfo,
    ) -> Result<roles::Role, AuthnError> {
        self.blocking(move |inner, conn| {
            let now = inner.now();
            db::transaction_with(conn, |conn| {
                let role = roles::create(conn, now, tenant, data)?;
                inner.audit(
                    conn,
                    tenant,
                    actor,
                    "role.created",
                    Some(format!("role:{}", role.id)),
                    Outcome::Success,
                    &client,
                    json!({ "name": role.name, "description": role.description }),
                )?;
                Ok::<_, AuthnError>(role)
            })
        })
        .await
    }

    /// Gives the user a role; false when they had it already. Nothing is revoked
    /// (see the module documentation). [`AuthnError::Store`] with `NotFound` for an
    /// unknown user or role.
    pub async fn assign_role(
        &self,
        tenant: TenantId,
        actor: String,
        user: UserId,
        role: RoleId,
        client: ClientInfo,
    ) -> Result<bool, AuthnError> {
        self.blocking(move |inner, conn| {
            let now = inner.now();
            let role = roles::get(conn, tenant, role)?;
            let assigned = db::transaction_with(conn, |conn| {
                let assigned = assign_in_savepoint(conn, now, tenant, role.id, user)?;
                inner.audit_operator_action(
                    conn,
                    tenant,
                    actor,
                    "user.role_assigned",
                    user,
                    &client,
                    json!({ "role": role.name, "already_assigned": !assigned }),
                )?;
                Ok::<_, AuthnError>(assigned)
            })?;
            if assigned {
                inner.announce(DomainEvent::UserChanged { tenant, user });
            }
            Ok(assigned)
        })
        .await
    }

    /// Takes a role away and revokes the grants whose tokens carry it: see the
    /// module documentation. [`AuthnError::Store`] with `NotFound` for an unknown
    /// user or role.
    pub async fn remove_role(
        &self,
        tenant: TenantId,
        actor: String,
        user: UserId,
        role: RoleId,
        client: ClientInfo,
    ) -> Result<RoleRemoval, AuthnError> {
        self.blocking(move |inner, conn| {
            let now = inner.now();
            let role = roles::get(conn, tenant, role)?;
            // Checked so an unknown user is NotFound, as for the other actions,
            // rather than "did not have the role".
            users::get(conn, tenant, user)?;
            let carrying =
                scopes_releasing(&tenants::get(conn, tenant)?.typed_settings(), ROLES_CLAIM);
            let removal = db::transaction_with(conn, |conn| {
                let was_assigned = roles::unassign(conn, tenant, role.id, user)?;
                let grants_revoked = if was_assigned {
                    grants::revoke_for_user_with_scopes(
                        conn,
                        now,
                        tenant,
                        user,
                        &carrying,
                        "role_removed",
                    )?
                } else {
                    Vec::new()
                };
                inner.audit_operator_action(
                    conn,
                    tenant,
                    actor,
                    "user.role_removed",
                    user,
                    &client,
                    json!({
                        "role": role.name,
                        "was_assigned": was_assigned,
                        "scopes_carrying_roles": carrying,
                        "grants_revoked": grants_revoked,
                    }),
                )?;
                Ok::<_, AuthnError>(RoleRemoval {
                    was_assigned,
                    grants_revoked,
                })
            })?;
            if removal.was_assigned {
                inner.announce(DomainEvent::UserChanged { tenant, user });
            }
            // The user's session goes on; the relying parties' sessions built on the
            // revoked grants end (back-channel logout, by the publishing node).
            if !removal.grants_revoked.is_empty() {
                inner.announce(DomainEvent::GrantsRevoked {
                    tenant,
                    user,
                    grants: removal.grants_revoked.clone(),
                });
            }
            Ok(removal)
        })
        .await
    }
}

/// What needs the private scope rule; the service's tests are in
/// `tests/authn/lifecycle.rs`.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn only_the_tenants_own_scopes_release_roles() {
        let settings = json!({
            "scopes": {
                "profile": ["name", "roles"],
                "entitlements": ["roles"],
                "teams": ["groups"]
            }
        });
        let settings = &TenantSettings::from_map(settings.as_object().unwrap()).unwrap();
        assert_eq!(
            scopes_releasing(settings, ROLES_CLAIM),
            ["entitlements", "profile"]
        );
        assert_eq!(scopes_releasing(settings, "groups"), ["teams"]);
        assert!(scopes_releasing(&TenantSettings::default(), ROLES_CLAIM).is_empty());
    }
}
