//! `lifecycle`: the tests of the public surface (moved from `src/lifecycle.rs`).

use std::cell::RefCell;

use chrono::Duration;
use gatehouse_core::Clock;
use gatehouse_core::events::DomainEvent;
use gatehouse_core::events::EventSubscription;
use gatehouse_core::ids::{RoleId, SessionId, UserId};
use gatehouse_identity_store::audit::AuditEvent;
use gatehouse_identity_store::db::Backend;
use gatehouse_identity_store::one_time_tokens::{self, Purpose};
use gatehouse_identity_store::roles::RoleData;
use gatehouse_identity_store::{StoreError, grants, roles, users};
use serde_json::json;

use gatehouse_authn::AuthnError;
use gatehouse_authn::ClientInfo;
use gatehouse_authn::lifecycle::*;
use gatehouse_authn::testing::kit::{Kit, KitOptions, runtime};

const PASSWORD: &str = "violet-harbor-quilt-97-lantern";
const OPERATOR: &str = "operator:ops-ann";

// The service on a throwaway database whose tenant maps `entitlements` to roles
// and groups and `teams` to groups only; a subscriber on its event bus.
kit_env!(events: RefCell<EventSubscription>);

impl Env {
    fn new(backend: Backend) -> Env {
        let kit = Kit::with(
            backend,
            KitOptions {
                settings: json!({
                    "scopes": { "entitlements": ["roles", "groups"], "teams": ["groups"] }
                }),
                ..Default::default()
            },
            |_| {},
        );
        Env {
            events: RefCell::new(kit.bus.subscribe()),
            kit,
        }
    }

    /// An active user with a verified primary address and [`PASSWORD`].
    fn user(&self, email: &str) -> UserId {
        self.user_with_password(email, PASSWORD)
    }

    fn session(&self, user: UserId) -> SessionId {
        self.live_session(user, None)
    }

    /// A grant to `client` made in `session`, with a refresh token.
    fn grant(&self, user: UserId, session: SessionId, client: &str, scope: &str) -> String {
        let id = self.session_grant(user, session, client, None, scope);
        let (_, token_hash) = gatehouse_authn::testing::secret();
        grants::insert_refresh_token(
            &mut self.conn(),
            self.clock.now(),
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
        self.active_sessions(user).len()
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
        self.audit_events()
            .into_iter()
            .filter(|e| e.action == action)
            .collect()
    }

    /// The one audit event with `action`, recorded as the operator's.
    fn audited_once(&self, action: &str) -> AuditEvent {
        let mut audited = self.audited(action);
        assert_eq!(audited.len(), 1, "{action}");
        assert_eq!(audited[0].actor, OPERATOR);
        audited.remove(0)
    }

    async fn sign_in(&self, email: &str) -> Result<(), AuthnError> {
        self.password_sign_in(email, PASSWORD, ClientInfo::default())
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
    let link = env.reset_link(ann);
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
        &gatehouse_authn::testing::secret_digest(&link),
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
    let audited = env.audited_once("user.deactivated");
    assert_eq!(audited.target, Some(format!("user:{ann}")));
    let details = audited.details.to_string();
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
    let details = env.audited_once("user.role_removed").details.to_string();
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
        rt.block_on(
            env.authn
                .assign_role(env.t(), actor(), user, auditor, ClientInfo::default()),
        )
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
