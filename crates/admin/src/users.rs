//! Operator actions on accounts: list, disable, enable, delete, and the
//! administrator-assisted reset for a user who lost every factor.

use gatehouse_authn::lifecycle::NewAccount;
use gatehouse_authn::registration::LinkBase;
use gatehouse_authn::{AuthnError, ClientInfo};
use gatehouse_core::events::DomainEvent;
use gatehouse_identity_store::StoreError;
use gatehouse_identity_store::audit::{self, AuditFilter};
use gatehouse_identity_store::page::every;
use gatehouse_identity_store::users::{self, User};
use gatehouse_identity_store::{Page, PageRequest};
use gatehouse_identity_store::{consent_records, credentials, sessions};
use gatehouse_token_issuer::backchannel::Delivery;
use serde_json::json;

use crate::{Admin, AdminError, AdminResult, Operator, Reason, UserKey};

/// What deleting a user did.
#[derive(Debug)]
pub struct Deleted {
    pub sessions_ended: usize,
    pub grants_revoked: usize,
    /// The relying parties told of the ended sessions.
    pub deliveries: Vec<Delivery>,
}

/// What disabling a user did.
#[derive(Debug)]
pub struct Disabled {
    /// False when the user was already disabled (whatever was still live was ended
    /// all the same).
    pub was_active: bool,
    pub sessions_ended: usize,
    pub grants_revoked: usize,
    /// The relying parties told of the ended sessions.
    pub deliveries: Vec<Delivery>,
}

/// Profile fields an operator changes; `None` leaves one as it is, `Some(None)`
/// clears it. (The addresses are not changed here: a new address needs proof.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChange {
    pub given_name: Option<Option<String>>,
    pub family_name: Option<Option<String>>,
    pub locale: Option<Option<String>>,
    pub timezone: Option<Option<String>>,
}

/// What a reset did.
#[derive(Debug)]
pub struct Reset {
    pub factors_removed: usize,
    pub sessions_ended: usize,
    pub grants_revoked: usize,
    /// Whether the mail with the link to choose a new password went out.
    pub link_sent: bool,
    pub deliveries: Vec<Delivery>,
}

/// Every audit event the subject (`user:<id>`) did or that was done to it, in the
/// order they were written.
fn events_by_or_about(
    conn: &mut gatehouse_identity_store::AnyConnection,
    cipher: &gatehouse_core::secrets::Cipher,
    tenant: gatehouse_core::ids::TenantId,
    subject: &str,
) -> AdminResult<Vec<gatehouse_identity_store::audit::AuditEvent>> {
    let mut events = Vec::new();
    for filter in [
        AuditFilter {
            target: Some(subject.to_owned()),
            ..AuditFilter::default()
        },
        AuditFilter {
            actor: Some(subject.to_owned()),
            ..AuditFilter::default()
        },
    ] {
        events.extend(every(500, |page| {
            audit::search(conn, tenant, &filter, page)
        })?);
    }
    events.sort_by_key(|e| e.seq);
    events.dedup_by_key(|e| e.seq);
    audit::personal::open(conn, cipher, &mut events)?;
    Ok(events)
}

impl Admin {
    /// The user's audit trail: every event they did or that was done to them, in
    /// the order they were written.
    pub async fn user_audit(
        &self,
        tenant: &str,
        who: impl Into<UserKey>,
    ) -> AdminResult<Vec<gatehouse_identity_store::audit::AuditEvent>> {
        let (tenant, user) = self.user(tenant, who).await?;
        let cipher = self.cipher.clone();
        self.blocking(move |conn| {
            events_by_or_about(conn, &cipher, tenant.id, &format!("user:{}", user.id))
        })
        .await
    }

    /// Deactivates the user: sign-in is refused, every session and grant ends at
    /// once, and relying parties of the ended sessions are told.
    pub async fn disable_user(
        &self,
        operator: &Operator,
        tenant: &str,
        who: impl Into<UserKey>,
        reason: &Reason,
    ) -> AdminResult<Disabled> {
        let (tenant, user) = self.user(tenant, who).await?;
        let done = self
            .authn
            .deactivate_user(
                tenant.id,
                operator.actor(),
                user.id,
                reason.as_str().to_owned(),
                ClientInfo::default(),
            )
            .await?;
        let deliveries = self
            .tell_sessions_ended(tenant.id, user.id, done.sessions_ended.clone())
            .await;
        Ok(Disabled {
            was_active: done.was_active,
            sessions_ended: done.sessions_ended.len(),
            grants_revoked: done.grants_revoked,
            deliveries,
        })
    }

    /// Lets a disabled user sign in again; nothing that was ended comes back. False
    /// when the user was not disabled.
    pub async fn enable_user(
        &self,
        operator: &Operator,
        tenant: &str,
        who: impl Into<UserKey>,
        reason: &Reason,
    ) -> AdminResult<bool> {
        let (tenant, user) = self.user(tenant, who).await?;
        Ok(self
            .authn
            .reactivate_user(
                tenant.id,
                operator.actor(),
                user.id,
                reason.as_str().to_owned(),
                ClientInfo::default(),
            )
            .await?)
    }

    /// The administrator-assisted recovery: removes the second factors and the
    /// password, ends every session and grant, and mails the user a link to choose
    /// a new password (the operator never sees or sets one). The reason says how
    /// the user's identity was checked.
    pub async fn reset_user(
        &self,
        operator: &Operator,
        tenant: &str,
        who: impl Into<UserKey>,
        reason: &Reason,
    ) -> AdminResult<Reset> {
        let (tenant, user) = self.user(tenant, who).await?;
        // Links point where the tenant is served, as its issuer.
        let links = LinkBase(self.issuer_url(tenant.id)?);
        let outcome = self
            .authn
            .admin_reset(
                tenant.id,
                operator.actor(),
                user.id,
                reason.as_str().to_owned(),
                links,
                ClientInfo::default(),
            )
            .await?;
        let deliveries = self
            .tell_sessions_ended(tenant.id, user.id, outcome.sessions_ended.clone())
            .await;
        Ok(Reset {
            factors_removed: outcome.factors_removed,
            sessions_ended: outcome.sessions_ended.len(),
            grants_revoked: outcome.grants_revoked,
            link_sent: outcome.link_sent,
            deliveries,
        })
    }

    /// Creates an account. With `invite`, the user is mailed a link to choose a
    /// password (which proves the address); otherwise no mail is sent and the
    /// address is verified when the operator vouches for it. Audited as
    /// `user.created` with the operator. Returns the user and, for an invitation,
    /// whether it went out.
    pub async fn create_user(
        &self,
        operator: &Operator,
        tenant: &str,
        mut account: NewAccount,
        invite: bool,
    ) -> AdminResult<(User, Option<bool>)> {
        if invite && account.password.is_some() {
            return Err(AdminError::Invalid {
                field: "invite",
                message: "is for accounts without a password".into(),
            });
        }
        let tenant = self.tenant(tenant).await?;
        if invite {
            account.invite = Some(LinkBase(self.issuer_url(tenant.id)?));
        }
        let email = account.email.trim().to_owned();
        let created = self
            .authn
            .create_account(tenant.id, operator.actor(), account, ClientInfo::default())
            .await;
        match created {
            Ok(made) => Ok((
                self.user(&tenant.slug, made.user).await?.1,
                made.invitation_sent,
            )),
            Err(AuthnError::Store(StoreError::Conflict { .. })) => Err(AdminError::Conflict(
                format!("the address `{email}` (or one that looks like it) has an account"),
            )),
            Err(AuthnError::InvalidEmail) => Err(AdminError::Invalid {
                field: "email",
                message: "is not a valid address".into(),
            }),
            Err(other) => Err(other.into()),
        }
    }

    /// Changes the user's profile if `expected_version` is still theirs: a
    /// concurrent change makes it `StaleVersion` instead of overwriting. Audited
    /// as `user.updated` with the fields changed; announced as `UserChanged`.
    pub async fn update_user(
        &self,
        operator: &Operator,
        tenant: &str,
        who: impl Into<UserKey>,
        expected_version: i64,
        change: UserChange,
    ) -> AdminResult<User> {
        let (tenant, user) = self.user(tenant, who).await?;
        let (admin, actor, now) = (self.clone(), operator.actor(), self.now());
        let tidy =
            |value: Option<String>| value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let updated = self
            .blocking(move |conn| {
                gatehouse_identity_store::db::transaction_with(conn, |conn| {
                    let mut data = user.data.clone();
                    let mut changed = Vec::new();
                    for (name, value, slot) in [
                        ("given_name", change.given_name, &mut data.name.given_name),
                        (
                            "family_name",
                            change.family_name,
                            &mut data.name.family_name,
                        ),
                        ("locale", change.locale, &mut data.locale),
                        ("timezone", change.timezone, &mut data.timezone),
                    ] {
                        if let Some(value) = value {
                            *slot = tidy(value);
                            changed.push(name);
                        }
                    }
                    let updated =
                        users::update(conn, now, tenant.id, user.id, expected_version, data)?;
                    admin.audit(
                        conn,
                        tenant.id,
                        actor,
                        "user.updated",
                        format!("user:{}", user.id),
                        json!({ "changed": changed }),
                    )?;
                    Ok(updated)
                })
            })
            .await?;
        self.announce(DomainEvent::UserChanged {
            tenant: tenant.id,
            user: updated.id,
        });
        Ok(updated)
    }

    /// Everything held about the user (GDPR Art. 15 and 20): the profile, credential
    /// metadata (never a secret), active sessions, the consent history and the
    /// audit events by or about them, as one JSON document. The export is itself
    /// audited (`user.exported`): reading personal data is an event.
    pub async fn export_user(
        &self,
        operator: &Operator,
        tenant: &str,
        who: impl Into<UserKey>,
    ) -> AdminResult<serde_json::Value> {
        let (tenant, user) = self.user(tenant, who).await?;
        let (admin, actor, now) = (self.clone(), operator.actor(), self.now());
        self.blocking(move |conn| {
            let credentials = credentials::list_for_user(conn, tenant.id, user.id, None)?;
            let sessions = sessions::list_active_for_user(conn, now, tenant.id, user.id)?;
            let consents = consent_records::history_for_user(conn, tenant.id, user.id)?;
            let groups =
                gatehouse_identity_store::groups::groups_of_user(conn, tenant.id, user.id)?;
            let identities = gatehouse_authn::federation::linked(conn, tenant.id, user.id)?;
            let subject = format!("user:{}", user.id);
            let events = events_by_or_about(conn, &admin.cipher, tenant.id, &subject)?;
            let data = &user.data;
            let document = json!({
                "exported_at": now,
                "tenant": tenant.slug,
                "user": {
                    "id": user.id.to_string(),
                    "user_name": data.user_name,
                    "name": data.name,
                    "display_name": data.display_name,
                    "nick_name": data.nick_name,
                    "title": data.title,
                    "preferred_language": data.preferred_language,
                    "locale": data.locale,
                    "timezone": data.timezone,
                    "active": data.active,
                    "external_id": data.external_id,
                    "emails": data.emails,
                    "phone_numbers": data.phone_numbers,
                    "custom_attributes": data.custom_attributes,
                    "created_at": user.created_at,
                    "updated_at": user.updated_at,
                },
                "credentials": credentials.iter().map(|c| json!({
                    "kind": c.kind.as_str(),
                    "label": c.label,
                    "created_at": c.created_at,
                    "last_used_at": c.last_used_at,
                })).collect::<Vec<_>>(),
                "sessions": sessions.iter().map(|s| json!({
                    "created_at": s.created_at,
                    "last_seen_at": s.last_seen_at,
                    "ip": s.ip,
                    "user_agent": s.user_agent,
                    "authenticated_with": s.auth_methods,
                    "aal": s.aal,
                })).collect::<Vec<_>>(),
                "consents": consents.iter().map(|c| json!({
                    "client_id": c.client_id,
                    "purpose": c.purpose,
                    "version": c.version,
                    "event": c.kind.as_str(),
                    "occurred_at": c.occurred_at,
                    "expires_at": c.expires_at,
                    "channel": c.channel,
                })).collect::<Vec<_>>(),
                "groups": groups.iter().map(|g| g.display_name.as_str()).collect::<Vec<_>>(),
                "federated_identities": identities.iter().map(|i| json!({
                    "connection": i.connection,
                    "subject": i.subject,
                    "linked_at": i.created_at,
                    "last_sign_in_at": i.last_sign_in_at,
                })).collect::<Vec<_>>(),
                "audit_events": events.iter().map(crate::audit::event_view).collect::<Vec<_>>(),
            });
            admin.audit(conn, tenant.id, actor, "user.exported", subject, json!({}))?;
            Ok(document)
        })
        .await
    }

    /// The user's live sessions.
    pub async fn user_sessions(
        &self,
        tenant: &str,
        who: impl Into<UserKey>,
    ) -> AdminResult<Vec<gatehouse_identity_store::sessions::Session>> {
        let (tenant, user) = self.user(tenant, who).await?;
        Ok(self.authn.active_sessions(tenant.id, user.id).await?)
    }

    /// Signs the user out everywhere: every session ends (audited with the reason)
    /// and relying parties are told; grants and the account stay.
    pub async fn end_user_sessions(
        &self,
        operator: &Operator,
        tenant: &str,
        who: impl Into<UserKey>,
        reason: &Reason,
    ) -> AdminResult<(usize, Vec<Delivery>)> {
        let (tenant, user) = self.user(tenant, who).await?;
        let ended = self
            .authn
            .end_sessions_by_operator(
                tenant.id,
                operator.actor(),
                user.id,
                reason.as_str().to_owned(),
                ClientInfo::default(),
            )
            .await?;
        let count = ended.len();
        let deliveries = self.tell_sessions_ended(tenant.id, user.id, ended).await;
        Ok((count, deliveries))
    }

    /// One page of the tenant's users, in the order they were created.
    pub async fn users(&self, tenant: &str, page: PageRequest) -> AdminResult<Page<User>> {
        self.read(tenant, move |conn, tenant| users::list(conn, tenant, &page))
            .await
    }

    /// Deletes the user and what is theirs (credentials, sessions, grants,
    /// consents, memberships), and erases them from the audit log: the events about
    /// them stay (the chain still verifies) but their personal data — addresses,
    /// names, IP addresses — was sealed with the user's own key, which is destroyed. They are deactivated first — every session and
    /// grant ends at once and relying parties are told, as for `disable_user` — so
    /// a failure half way leaves a disabled account, never a live one. The audit
    /// log keeps `user.deleted` with the operator, the reason and the user's id.
    pub async fn delete_user(
        &self,
        operator: &Operator,
        tenant: &str,
        who: impl Into<UserKey>,
        reason: &Reason,
    ) -> AdminResult<Deleted> {
        let who = who.into();
        let disabled = self
            .disable_user(operator, tenant, who.clone(), reason)
            .await?;
        let (tenant, user) = self.user(tenant, who).await?;
        let (admin, actor, why, now) = (
            self.clone(),
            operator.actor(),
            reason.as_str().to_owned(),
            self.now(),
        );
        self.blocking(move |conn| {
            gatehouse_identity_store::db::transaction_with(conn, |conn| {
                users::delete(conn, tenant.id, user.id)?;
                // Erasure: the key that seals the personal data of the audit events
                // about them goes too; the events stay in the chain, unreadable.
                gatehouse_identity_store::audit::personal::erase(conn, now, tenant.id, user.id)?;
                // ...and what was recorded under the names they sign in with
                // (failed sign-ins, recovery requests).
                let mut identifiers =
                    vec![gatehouse_identity_store::fold_key(&user.data.user_name)];
                identifiers.extend(
                    user.data
                        .emails
                        .iter()
                        .map(|e| gatehouse_identity_store::fold_key(&e.value)),
                );
                gatehouse_identity_store::audit::erase_identifiers(
                    conn,
                    &admin.cipher,
                    tenant.id,
                    &identifiers,
                )?;
                admin.audit(
                    conn,
                    tenant.id,
                    actor,
                    "user.deleted",
                    format!("user:{}", user.id),
                    json!({ "reason": why }),
                )
            })
        })
        .await?;
        self.announce(DomainEvent::UserDeactivated {
            tenant: tenant.id,
            user: user.id,
        });
        Ok(Deleted {
            sessions_ended: disabled.sessions_ended,
            grants_revoked: disabled.grants_revoked,
            deliveries: disabled.deliveries,
        })
    }
}
