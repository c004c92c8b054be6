//! What changes a tenant's keys in the store: first keys, rotation, pruning.

use chrono::{DateTime, Duration, Utc};
use gatehouse_core::ids::TenantId;
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::signing_keys::{self, KeyState, NewSigningKey, SigningKey};
use gatehouse_identity_store::{AnyConnection, StoreError, db};
use gatehouse_jose::{Algorithm, PublicJwk};

use super::generate::{GeneratedKey, generate};
use super::to_store;
use crate::error::{IssuerError, IssuerResult};

/// Makes sure the tenant can sign with ES256 (the default): on first use, creates an
/// active ES256 key. Returns whether it created one.
pub fn ensure_keys(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
) -> IssuerResult<bool> {
    ensure_active(conn, cipher, now, tenant, Algorithm::ES256)
}

/// Makes sure the tenant has an active key for `alg`, creating one (active at once:
/// no token can refer to it yet) if not. Two nodes racing both succeed; one creates
/// the key, the other finds it. Returns whether this call created it.
pub fn ensure_active(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    alg: Algorithm,
) -> IssuerResult<bool> {
    if signing_keys::active(conn, tenant, to_store(alg))?.is_some() {
        return Ok(false);
    }
    let key = generate(alg)?;
    let inserted = db::transaction(conn, |conn| {
        store_key(conn, cipher, now, tenant, alg, &key, KeyState::Active)
    });
    match inserted {
        Ok(_) => {
            tracing::info!(tenant = %tenant, alg = %alg, kid = %key.jwk.kid, "signing key created");
            Ok(true)
        }
        Err(StoreError::Conflict { field: "state", .. }) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// What [`rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The new key's kid.
    pub kid: String,
    /// `Next` normally; `Active` when the tenant had no key of the algorithm.
    pub state: KeyState,
    /// The key that started signing (the previous `next`).
    pub activated: Option<String>,
    /// The key that stopped signing, and until when it stays published.
    pub retired: Option<(String, DateTime<Utc>)>,
}

/// Rotates the tenant's `alg` keys by the rule in the [module documentation](super):
/// a new key is published as `next`; the previous `next` starts signing; the
/// previous `active` retires and stays published until `now + max_token_lifetime`.
///
/// The key is generated before the transaction (RSA is slow), so locks are held
/// only for three statements. A concurrent rotation of the same tenant and
/// algorithm fails with a `Conflict` store error and changes nothing.
pub fn rotate(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    alg: Algorithm,
    max_token_lifetime: Duration,
) -> IssuerResult<Rotation> {
    if max_token_lifetime < Duration::zero() {
        return Err(IssuerError::Claims(
            "max_token_lifetime is negative".to_owned(),
        ));
    }
    let key = generate(alg)?;
    let publish_until = now + max_token_lifetime;
    let rotation = db::transaction(conn, |conn| {
        let advanced = signing_keys::advance(conn, now, tenant, to_store(alg), publish_until)?;
        let has_active = advanced.activated.is_some()
            || signing_keys::active(conn, tenant, to_store(alg))?.is_some();
        let state = if has_active {
            KeyState::Next
        } else {
            KeyState::Active
        };
        store_key(conn, cipher, now, tenant, alg, &key, state)?;
        Ok(Rotation {
            kid: key.jwk.kid.clone(),
            state,
            activated: advanced.activated,
            retired: advanced.retired.map(|kid| (kid, publish_until)),
        })
    })?;
    tracing::info!(
        tenant = %tenant,
        alg = %alg,
        kid = %rotation.kid,
        activated = rotation.activated.as_deref().unwrap_or("-"),
        retired = rotation.retired.as_ref().map_or("-", |(kid, _)| kid.as_str()),
        "signing keys rotated"
    );
    Ok(rotation)
}

/// Deletes the tenant's retired keys whose publication ended at or before `now`.
pub fn prune(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    tenant: TenantId,
) -> IssuerResult<usize> {
    let pruned = signing_keys::prune(conn, now, tenant)?;
    if pruned > 0 {
        tracing::info!(tenant = %tenant, pruned, "retired signing keys pruned");
    }
    Ok(pruned)
}

/// Stores a freshly generated `alg` key for the tenant in `state`.
fn store_key(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    alg: Algorithm,
    key: &GeneratedKey,
    state: KeyState,
) -> Result<SigningKey, StoreError> {
    signing_keys::insert(
        conn,
        cipher,
        now,
        tenant,
        NewSigningKey {
            kid: key.jwk.kid.clone(),
            alg: to_store(alg),
            private_key: &key.pkcs8,
            public_jwk: public_jwk_json(&key.jwk)?,
            state,
        },
    )
}

fn public_jwk_json(jwk: &PublicJwk) -> Result<String, StoreError> {
    serde_json::to_string(jwk).map_err(|e| StoreError::Invalid {
        entity: "signing key",
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::keys::KeyRing;
    use crate::keys::generate::generate;
    use crate::keys::tests::{cipher, t0, tenant};

    gatehouse_identity_store::backend_tests! {
        fn rotating_an_unused_algorithm_activates_at_once(db) {
            let mut conn = db.conn();
            let cipher = cipher();
            let t = tenant(&mut conn);
            let r = rotate(&mut conn, &cipher, t0(), t, Algorithm::EdDSA, Duration::hours(1)).unwrap();
            assert_eq!((r.state, r.activated, r.retired), (KeyState::Active, None, None));
            let ring = KeyRing::load(&mut conn, &cipher, t0(), t).unwrap();
            assert_eq!(ring.signer(Algorithm::EdDSA).unwrap().kid(), r.kid);
            assert!(ring.signer(Algorithm::ES256).is_none());
            assert!(!ensure_active(&mut conn, &cipher, t0(), t, Algorithm::EdDSA).unwrap());
        }

        fn a_losing_concurrent_rotation_changes_nothing(db) {
            let mut conn = db.conn();
            let cipher = cipher();
            let t = tenant(&mut conn);
            ensure_keys(&mut conn, &cipher, t0(), t).unwrap();
            rotate(&mut conn, &cipher, t0(), t, Algorithm::ES256, Duration::hours(1)).unwrap();
            let before = signing_keys::list(&mut conn, t).unwrap();
            // Simulate the loser: it would insert a second `next` key.
            let stray = generate(Algorithm::ES256).unwrap();
            let second_next = db::transaction(&mut conn, |conn| {
                store_key(conn, &cipher, t0(), t, Algorithm::ES256, &stray, KeyState::Next)
            });
            assert!(matches!(second_next, Err(StoreError::Conflict { field: "state", .. })));
            assert_eq!(signing_keys::list(&mut conn, t).unwrap().len(), before.len());
        }
    }
}
