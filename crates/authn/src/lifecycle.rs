//! An account's lifecycle in an operator's hands: deactivating and reactivating a
//! user, and giving or taking away a role.
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
const ROLES_CLAIM: &str = "roles";

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
fn scopes_releasing(settings: &TenantSettings, claim: &str) -> Vec<String> {
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

fn target(user: UserId) -> Option<String> {
    Some(format!("user:{user}"))
}

impl Inner {
    /// Publishes after a commit. A failure reaches no other node, but the database
    /// already holds the truth every node checks, so it is logged, not returned.
    fn announce(&self, event: DomainEvent) {
        if let Err(error) = self.events.publish(event) {
            tracing::warn!(%error, "account change committed, but the event was not sent to other nodes");
        }
    }

    /// Inside the deactivation's transaction: everything that lets the user in, or
    /// lets an application act for them, ends.
    fn end_everything(
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
                inner.audit(
                    conn,
                    tenant,
                    actor,
                    "user.deactivated",
                    target(user),
                    Outcome::Success,
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
                inner.audit(
                    conn,
                    tenant,
                    actor,
                    "user.reactivated",
                    target(user),
                    Outcome::Success,
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
                inner.audit(
                    conn,
                    tenant,
                    actor,
                    "user.role_assigned",
                    target(user),
                    Outcome::Success,
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
                inner.audit(
                    conn,
                    tenant,
                    actor,
                    "user.role_removed",
                    target(user),
                    Outcome::Success,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::cell::RefCell;

    use chrono::Duration;

    use gatehouse_core::events::EventSubscription;
    use gatehouse_core::secrets::Cipher;
    use gatehouse_core::{Clock, ManualClock};
    use gatehouse_identity_store::audit::{self, AuditEvent};
    use gatehouse_identity_store::credentials::{self, CredentialKind, NewCredential};
    use gatehouse_identity_store::db::Backend;
    use gatehouse_identity_store::grants::{Authentication, NewGrant};
    use gatehouse_identity_store::roles::RoleData;
    use gatehouse_identity_store::sessions::NewSession;
    use gatehouse_identity_store::tenants::Tenant;
    use gatehouse_identity_store::testing::TestDb;
    use gatehouse_identity_store::users::{Email, UserData};
    use gatehouse_identity_store::{PageRequest, Pool};
    use zeroize::Zeroizing;

    use super::*;
    use crate::settings::TenantPolicy;
    use crate::{PasswordHasher, secrets};

    const PASSWORD: &str = "violet-harbor-quilt-97-lantern";
    const OPERATOR: &str = "operator:ops-ann";

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// The service on a throwaway database whose tenant maps `entitlements` to roles
    /// and groups and `teams` to groups only; a subscriber on its event bus.
    struct Env {
        authn: Authn,
        pool: Pool,
        clock: ManualClock,
        cipher: Cipher,
        tenant: Tenant,
        events: RefCell<EventSubscription>,
        _dir: tempfile::TempDir,
        _db: TestDb,
    }

    impl Env {
        fn new(backend: Backend) -> Env {
            let kit = crate::testing::kit::Kit::with(
                backend,
                crate::testing::kit::KitOptions {
                    settings: json!({
                        "scopes": { "entitlements": ["roles", "groups"], "teams": ["groups"] }
                    }),
                    ..Default::default()
                },
                |_| {},
            );
            Env {
                events: RefCell::new(kit.bus.subscribe()),
                authn: kit.authn,
                pool: kit.pool,
                clock: kit.clock,
                cipher: kit.cipher,
                tenant: kit.tenant,
                _dir: kit.dir,
                _db: kit.db,
            }
        }

        fn t(&self) -> TenantId {
            self.tenant.id
        }

        fn conn(&self) -> gatehouse_identity_store::PooledConnection {
            self.pool.get().unwrap()
        }

        /// An active user with a verified primary address and [`PASSWORD`].
        fn user(&self, email: &str) -> UserId {
            let phc = PasswordHasher::new(&crate::testing::kit::cheap_passwords(8))
                .unwrap()
                .hash(PASSWORD)
                .unwrap();
            let mut conn = self.conn();
            let user = users::create(
                &mut conn,
                self.clock.now(),
                self.t(),
                UserData {
                    emails: vec![Email {
                        value: email.into(),
                        kind: None,
                        primary: true,
                        verified: true,
                    }],
                    ..UserData::new(email)
                },
            )
            .unwrap();
            credentials::create(
                &mut conn,
                &self.cipher,
                self.clock.now(),
                self.t(),
                user.id,
                NewCredential {
                    kind: CredentialKind::Password,
                    label: None,
                    secret: phc.as_bytes(),
                },
            )
            .unwrap();
            user.id
        }

        fn session(&self, user: UserId) -> SessionId {
            let (_, secret_hash) = secrets::generate();
            sessions::create(
                &mut self.conn(),
                self.clock.now(),
                self.t(),
                NewSession {
                    user_id: user,
                    secret_hash,
                    idle_timeout: Duration::days(3),
                    absolute_timeout: Duration::days(3),
                    ip: None,
                    user_agent: None,
                    auth_methods: Vec::new(),
                    aal: 1,
                },
            )
            .unwrap()
            .id
        }

        /// A grant to `client` made in `session`, with a refresh token.
        fn grant(&self, user: UserId, session: SessionId, client: &str, scope: &str) -> String {
            let now = self.clock.now();
            let mut conn = self.conn();
            let id = grants::create(
                &mut conn,
                now,
                self.t(),
                NewGrant {
                    client_id: client.into(),
                    issuer: None,
                    authentication: Some(Authentication {
                        user_id: user,
                        session_id: session,
                        auth_time: now,
                        acr: None,
                        amr: vec!["pwd".into()],
                    }),
                    scope: scope.into(),
                    resources: Vec::new(),
                    purposes: Vec::new(),
                    lifetime: Duration::days(30),
                },
            )
            .unwrap()
            .id;
            let (_, token_hash) = secrets::generate();
            grants::insert_refresh_token(
                &mut conn,
                now,
                self.t(),
                &id,
                &token_hash,
                Duration::days(30),
            )
            .unwrap();
            id
        }

        fn role(&self, name: &str, user: UserId) -> RoleId {
            let mut conn = self.conn();
            let role = roles::create(
                &mut conn,
                self.clock.now(),
                self.t(),
                RoleData {
                    name: name.into(),
                    description: None,
                },
            )
            .unwrap();
            roles::assign(&mut conn, self.clock.now(), self.t(), role.id, user).unwrap();
            role.id
        }

        fn active(&self, grant: &str) -> bool {
            grants::get(&mut self.conn(), self.t(), grant)
                .unwrap()
                .unwrap()
                .is_active(self.clock.now())
        }

        fn live_sessions(&self, user: UserId) -> usize {
            sessions::list_active_for_user(&mut self.conn(), self.clock.now(), self.t(), user)
                .unwrap()
                .len()
        }

        fn role_names(&self, user: UserId) -> Vec<String> {
            roles::roles_of_user(&mut self.conn(), self.t(), user)
                .unwrap()
                .into_iter()
                .map(|r| r.name)
                .collect()
        }

        /// Every event published so far, in order.
        fn published(&self) -> Vec<DomainEvent> {
            let mut events = self.events.borrow_mut();
            std::iter::from_fn(|| events.try_next())
                .map(|envelope| envelope.event.clone())
                .collect()
        }

        /// The audit events with `action`; the chain must be intact.
        fn audited(&self, action: &str) -> Vec<AuditEvent> {
            let mut conn = self.conn();
            assert!(
                audit::verify(&mut conn, &self.authn.inner.cipher)
                    .unwrap()
                    .is_intact()
            );
            audit::list(&mut conn, self.t(), &PageRequest::first(500))
                .unwrap()
                .items
                .into_iter()
                .filter(|e| e.action == action)
                .collect()
        }

        async fn sign_in(&self, email: &str) -> Result<(), AuthnError> {
            self.authn
                .sign_in_with_password(
                    self.t(),
                    &TenantPolicy::from_settings(&Default::default()),
                    email.into(),
                    Zeroizing::new(PASSWORD.into()),
                    None,
                    ClientInfo::default(),
                )
                .await
                .map(drop)
        }
    }

    fn actor() -> String {
        OPERATOR.into()
    }

    gatehouse_identity_store::on_both_backends!(
        deactivation_ends_sessions_grants_and_links_and_is_announced,
        removing_a_role_revokes_only_the_grants_whose_tokens_carry_roles,
    );

    fn deactivation_ends_sessions_grants_and_links_and_is_announced(backend: Backend) {
        let env = Env::new(backend);
        let ann = env.user("ann@example.com");
        let bob = env.user("bob@example.com");
        let session = env.session(ann);
        let online = env.grant(ann, session, "shop", "openid");
        let offline = env.grant(ann, session, "crm", "openid offline_access");
        let bobs = env.grant(bob, env.session(bob), "shop", "openid");
        let (link, link_hash) = secrets::generate();
        one_time_tokens::issue(
            &mut env.conn(),
            env.clock.now(),
            env.t(),
            ann,
            Purpose::PasswordReset,
            &link_hash,
            Duration::minutes(15),
            &json!({}),
        )
        .unwrap();
        let rt = runtime();

        let done = rt
            .block_on(env.authn.deactivate_user(
                env.t(),
                actor(),
                ann,
                "ticket 42: left the company".into(),
                ClientInfo::default(),
            ))
            .unwrap();
        assert_eq!(
            done,
            Deactivation {
                was_active: true,
                sessions_ended: vec![session],
                grants_revoked: 2,
            }
        );
        assert!(
            !users::get(&mut env.conn(), env.t(), ann)
                .unwrap()
                .data
                .active
        );
        assert_eq!(env.live_sessions(ann), 0);
        assert!(
            !env.active(&online) && !env.active(&offline),
            "offline grants too"
        );
        assert!(env.active(&bobs), "another user's grant was revoked");
        assert_eq!(env.live_sessions(bob), 1);
        let spent = one_time_tokens::consume(
            &mut env.conn(),
            env.clock.now(),
            env.t(),
            Purpose::PasswordReset,
            &secrets::digest(&link),
        )
        .unwrap();
        assert!(spent.is_none(), "a reset link survived the deactivation");
        let refused = rt.block_on(env.sign_in("ann@example.com"));
        assert!(
            matches!(refused, Err(AuthnError::InvalidCredentials)),
            "{refused:?}"
        );
        let tenant = env.t();
        assert_eq!(
            env.published(),
            [
                DomainEvent::UserDeactivated { tenant, user: ann },
                DomainEvent::SessionsEnded {
                    tenant,
                    user: ann,
                    sessions: vec![session],
                },
            ]
        );
        let audited = env.audited("user.deactivated");
        assert_eq!(audited.len(), 1);
        assert_eq!(audited[0].actor, OPERATOR);
        assert_eq!(audited[0].target, Some(format!("user:{ann}")));
        let details = audited[0].details.to_string();
        assert!(details.contains("left the company"), "{details}");
        assert!(details.contains(r#""grants_revoked":2"#), "{details}");

        // Again: nothing left to end, and no SessionsEnded for nothing.
        let again = rt
            .block_on(env.authn.deactivate_user(
                env.t(),
                actor(),
                ann,
                "twice".into(),
                ClientInfo::default(),
            ))
            .unwrap();
        assert_eq!(
            again,
            Deactivation {
                was_active: false,
                sessions_ended: Vec::new(),
                grants_revoked: 0,
            }
        );
        assert_eq!(
            env.published(),
            [DomainEvent::UserDeactivated { tenant, user: ann }]
        );

        // Reactivation lets the user in again and restores nothing.
        let back = rt
            .block_on(env.authn.reactivate_user(
                env.t(),
                actor(),
                ann,
                "ticket 43: rehired".into(),
                ClientInfo::default(),
            ))
            .unwrap();
        assert!(back);
        assert!(!env.active(&online) && !env.active(&offline));
        rt.block_on(env.sign_in("ann@example.com")).unwrap();
        assert_eq!(
            env.published(),
            [DomainEvent::UserChanged { tenant, user: ann }]
        );
        let reactivated = env.audited("user.reactivated");
        assert_eq!(reactivated.len(), 1);
        assert!(reactivated[0].details.to_string().contains("rehired"));

        let unknown = rt.block_on(env.authn.deactivate_user(
            env.t(),
            actor(),
            UserId::new(),
            "nobody".into(),
            ClientInfo::default(),
        ));
        assert!(
            matches!(unknown, Err(AuthnError::Store(StoreError::NotFound { .. }))),
            "{unknown:?}"
        );
        assert_eq!(
            env.audited("user.deactivated").len(),
            2,
            "the failure rolled back"
        );
    }

    fn removing_a_role_revokes_only_the_grants_whose_tokens_carry_roles(backend: Backend) {
        let env = Env::new(backend);
        let ann = env.user("ann@example.com");
        let bob = env.user("bob@example.com");
        let auditor = env.role("auditor", ann);
        let session = env.session(ann);
        let with_roles = env.grant(ann, session, "shop", "openid entitlements");
        let with_roles_elsewhere = env.grant(ann, session, "crm", "entitlements offline_access");
        let groups_only = env.grant(ann, session, "shop", "openid teams");
        let plain = env.grant(ann, session, "crm", "openid profile email");
        roles::assign(&mut env.conn(), env.clock.now(), env.t(), auditor, bob).unwrap();
        let bobs = env.grant(bob, env.session(bob), "shop", "openid entitlements");
        let rt = runtime();

        let removed = rt
            .block_on(
                env.authn
                    .remove_role(env.t(), actor(), ann, auditor, ClientInfo::default()),
            )
            .unwrap();
        assert!(removed.was_assigned);
        let mut revoked = removed.grants_revoked.clone();
        revoked.sort();
        let mut expected = vec![with_roles.clone(), with_roles_elsewhere.clone()];
        expected.sort();
        assert_eq!(revoked, expected);
        assert!(!env.active(&with_roles) && !env.active(&with_roles_elsewhere));
        assert!(env.active(&groups_only), "a groups-only grant was revoked");
        assert!(env.active(&plain), "a grant without roles was revoked");
        assert!(env.active(&bobs), "another holder's grant was revoked");
        assert!(env.role_names(ann).is_empty());
        assert_eq!(env.role_names(bob), ["auditor"]);
        assert_eq!(env.live_sessions(ann), 1, "sessions stay");
        let tenant = env.t();
        assert_eq!(
            env.published(),
            [
                DomainEvent::UserChanged { tenant, user: ann },
                DomainEvent::GrantsRevoked {
                    tenant,
                    user: ann,
                    grants: removed.grants_revoked.clone(),
                },
            ]
        );
        let audited = env.audited("user.role_removed");
        assert_eq!(audited.len(), 1);
        assert_eq!(audited[0].actor, OPERATOR);
        let details = audited[0].details.to_string();
        assert!(
            details.contains("auditor") && details.contains(&with_roles),
            "{details}"
        );

        // Not assigned: nothing revoked, nothing announced, still audited.
        let fresh = env.grant(ann, session, "shop", "openid entitlements");
        let none = rt
            .block_on(
                env.authn
                    .remove_role(env.t(), actor(), ann, auditor, ClientInfo::default()),
            )
            .unwrap();
        assert_eq!(
            none,
            RoleRemoval {
                was_assigned: false,
                grants_revoked: Vec::new(),
            }
        );
        assert!(env.active(&fresh));
        assert!(env.published().is_empty());
        assert_eq!(env.audited("user.role_removed").len(), 2);

        // Assigning revokes nothing.
        let assign = |user| {
            rt.block_on(env.authn.assign_role(
                env.t(),
                actor(),
                user,
                auditor,
                ClientInfo::default(),
            ))
        };
        assert!(assign(ann).unwrap());
        assert!(!assign(ann).unwrap());
        assert!(env.active(&fresh));
        assert_eq!(env.role_names(ann), ["auditor"]);
        assert_eq!(
            env.published(),
            [DomainEvent::UserChanged { tenant, user: ann }]
        );
        assert_eq!(env.audited("user.role_assigned").len(), 2);
        let unknown = assign(UserId::new());
        assert!(
            matches!(unknown, Err(AuthnError::Store(StoreError::NotFound { .. }))),
            "{unknown:?}"
        );
        let no_role = rt.block_on(env.authn.remove_role(
            env.t(),
            actor(),
            ann,
            RoleId::new(),
            ClientInfo::default(),
        ));
        assert!(
            matches!(no_role, Err(AuthnError::Store(StoreError::NotFound { .. }))),
            "{no_role:?}"
        );
    }

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
