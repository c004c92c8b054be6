//! First start: the default tenant, the administrator role and a first administrator
//! who can finish set-up with a one-time secret. Idempotent: once the administrator
//! exists nothing is created and no secret is printed again.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use gatehouse_authn::setup::setup_secret_digest;
use gatehouse_core::config::BootstrapConfig;
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::audit::{self, NewAuditEvent, Outcome};
use gatehouse_identity_store::credentials::{self, CredentialKind, NewCredential};
use gatehouse_identity_store::roles::{self, RoleData};
use gatehouse_identity_store::tenants::{self, Tenant, TenantData};
use gatehouse_identity_store::users::{self, UserData};
use gatehouse_identity_store::{AnyConnection, StoreError, db};
use rand::RngCore;
use zeroize::Zeroizing;

pub const ADMIN_ROLE: &str = roles::ADMINISTRATOR;
const SETUP_SECRET_PREFIX: &str = "ghsetup_";

#[derive(Debug)]
pub struct Bootstrapped {
    pub tenant: Tenant,
    /// Present only on the start that created the administrator.
    pub first_admin: Option<FirstAdmin>,
}

#[derive(Debug)]
pub struct FirstAdmin {
    pub user_name: String,
    /// Shown once; the database keeps only its SHA-256.
    pub setup_secret: Zeroizing<String>,
}

pub fn ensure(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    config: &BootstrapConfig,
) -> Result<Bootstrapped, StoreError> {
    let result = db::transaction(conn, |conn| {
        let tenant = match tenants::find_by_slug(conn, &config.tenant)? {
            Some(tenant) => tenant,
            None => tenants::create(
                conn,
                now,
                TenantData {
                    slug: config.tenant.clone(),
                    display_name: "Default".into(),
                    ..TenantData::default()
                },
            )?,
        };
        if users::find_by_user_name(conn, tenant.id, &config.admin_user_name)?.is_some() {
            return Ok(Bootstrapped {
                tenant,
                first_admin: None,
            });
        }
        let role = match roles::find_by_name(conn, tenant.id, ADMIN_ROLE)? {
            Some(role) => role,
            None => roles::create(
                conn,
                now,
                tenant.id,
                RoleData {
                    name: ADMIN_ROLE.into(),
                    description: Some(
                        "Administers Gatehouse: tenants, clients, users, keys.".into(),
                    ),
                },
            )?,
        };
        let admin = users::create(conn, now, tenant.id, UserData::new(&config.admin_user_name))?;
        roles::assign(conn, now, tenant.id, role.id, admin.id)?;

        let mut random = Zeroizing::new([0_u8; 32]);
        rand::rng().fill_bytes(random.as_mut());
        let secret = Zeroizing::new(format!(
            "{SETUP_SECRET_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(random.as_ref())
        ));
        credentials::create(
            conn,
            cipher,
            now,
            tenant.id,
            admin.id,
            NewCredential {
                kind: CredentialKind::SetupSecret,
                label: Some("first-administrator set-up".into()),
                secret: &setup_secret_digest(&secret),
            },
        )?;
        audit::append(
            conn,
            cipher,
            now,
            tenant.id,
            NewAuditEvent {
                actor: "system".into(),
                action: "bootstrap.admin_created".into(),
                target: Some(format!("user:{}", admin.id)),
                outcome: Outcome::Success,
                ip: None,
                details: serde_json::json!({ "user_name": admin.data.user_name, "role": ADMIN_ROLE }),
            },
        )?;
        Ok(Bootstrapped {
            tenant,
            first_admin: Some(FirstAdmin {
                user_name: admin.data.user_name,
                setup_secret: secret,
            }),
        })
    });
    match result {
        // Another node bootstrapped at the same moment: its work stands, ours rolled back.
        Err(StoreError::Conflict { .. }) => {
            let tenant = tenants::find_by_slug(conn, &config.tenant)?
                .ok_or(StoreError::NotFound { entity: "tenant" })?;
            Ok(Bootstrapped {
                tenant,
                first_admin: None,
            })
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_core::secrets::MasterKey;
    use gatehouse_core::{Clock, ManualClock};
    use gatehouse_identity_store::testing::TestDb;

    use super::*;

    fn check_bootstrap_runs_once(db: &TestDb) {
        let cipher = Cipher::new(vec![MasterKey::generate()]).unwrap();
        let now = ManualClock::fixed().now();
        let config = BootstrapConfig::default();
        let mut conn = db.conn();

        let first = ensure(&mut conn, &cipher, now, &config).unwrap();
        let admin = first
            .first_admin
            .expect("first start creates the administrator");
        assert!(admin.setup_secret.starts_with(SETUP_SECRET_PREFIX));

        let user = users::find_by_user_name(&mut conn, first.tenant.id, "admin")
            .unwrap()
            .unwrap();
        let roles = roles::roles_of_user(&mut conn, first.tenant.id, user.id).unwrap();
        assert_eq!(roles[0].name, ADMIN_ROLE);
        let stored = credentials::list_for_user(
            &mut conn,
            first.tenant.id,
            user.id,
            Some(CredentialKind::SetupSecret),
        )
        .unwrap();
        let digest = stored[0].secret(&cipher).unwrap();
        assert_eq!(&digest[..], &setup_secret_digest(&admin.setup_secret)[..]);
        assert_ne!(
            &digest[..],
            admin.setup_secret.as_bytes(),
            "secret stored in clear"
        );

        let second = ensure(&mut conn, &cipher, now, &config).unwrap();
        assert!(
            second.first_admin.is_none(),
            "second start created another secret"
        );
        assert_eq!(second.tenant.id, first.tenant.id);
        assert!(audit::verify(&mut conn, &cipher).unwrap().is_intact());
    }

    #[test]
    fn bootstrap_runs_once_on_sqlite() {
        check_bootstrap_runs_once(&TestDb::sqlite());
    }

    #[test]
    fn bootstrap_runs_once_on_postgres() {
        check_bootstrap_runs_once(&TestDb::postgres());
    }
}
