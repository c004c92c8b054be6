//! What changes a tenant's keys in the store: first keys, rotation, pruning.

use chrono::{DateTime, Duration, Utc};
use gatehouse_core::ids::TenantId;
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::signing_keys::{self, KeyState, NewSigningKey};
use gatehouse_identity_store::{AnyConnection, StoreError, db};
use gatehouse_jose::{Algorithm, PublicJwk};

use super::generate::generate;
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
                state: KeyState::Active,
            },
        )
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
        )?;
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

pub(super) fn public_jwk_json(jwk: &PublicJwk) -> Result<String, StoreError> {
    serde_json::to_string(jwk).map_err(|e| StoreError::Invalid {
        entity: "signing key",
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use gatehouse_core::secrets::MasterKey;
    use gatehouse_identity_store::tenants::{self, TenantData};

    use super::*;
    use crate::error::Rejection;
    use crate::jwt::{AccessTokenClaims, Audience, sign, verify_access_token};
    use crate::keys::KeyRing;
    use crate::keys::generate::generate;
    use crate::keys::tests::t0;
    use gatehouse_identity_store::signing_keys::KeyAlgorithm;

    const ISSUER: &str = "https://id.example.com";

    fn cipher() -> Cipher {
        Cipher::new(vec![MasterKey::generate()]).unwrap()
    }

    fn tenant(conn: &mut AnyConnection) -> TenantId {
        tenants::create(
            conn,
            t0(),
            TenantData {
                slug: "acme".into(),
                display_name: "Acme".into(),
                ..TenantData::default()
            },
        )
        .unwrap()
        .id
    }

    fn token(ring: &KeyRing, now: DateTime<Utc>) -> String {
        token_for(ring, now, Duration::minutes(5))
    }

    fn token_for(ring: &KeyRing, now: DateTime<Utc>, lifetime: Duration) -> String {
        let claims = AccessTokenClaims::new(
            ISSUER,
            "user-1",
            Audience::One("https://api.example.com".into()),
            "web",
            now,
            lifetime,
        );
        sign(ring, Algorithm::ES256, &claims).unwrap()
    }

    fn states(ring: &KeyRing) -> Vec<(String, KeyState)> {
        ring.published_kids()
            .map(|kid| (kid.to_owned(), ring.verification_key(kid).unwrap().state))
            .collect()
    }

    fn jwks_value(ring: &KeyRing) -> serde_json::Value {
        serde_json::from_slice(ring.jwks_json()).unwrap()
    }

    gatehouse_identity_store::backend_tests! {
        fn ensure_keys_creates_one_active_es256_key(db) {
            let mut conn = db.conn();
            let cipher = cipher();
            let t = tenant(&mut conn);
            assert!(ensure_keys(&mut conn, &cipher, t0(), t).unwrap());
            assert!(!ensure_keys(&mut conn, &cipher, t0(), t).unwrap());
            let ring = KeyRing::load(&mut conn, &cipher, t0(), t).unwrap();
            assert_eq!(ring.algorithms().collect::<Vec<_>>(), [Algorithm::ES256]);
            assert_eq!(ring.published_kids().count(), 1);
            let claims = verify_access_token(&ring, &token(&ring, t0()), ISSUER, t0()).unwrap();
            assert_eq!(claims.sub, "user-1");

            // Another master key cannot open the tenant's signing key.
            assert!(matches!(
                KeyRing::load(&mut conn, &self::cipher(), t0(), t),
                Err(IssuerError::Store(StoreError::Secret(_)))
            ));
        }

        fn rotation_publishes_before_signing_and_retires_after_lifetime(db) {
            let mut conn = db.conn();
            let cipher = cipher();
            let t = tenant(&mut conn);
            let lifetime = Duration::hours(1);
            ensure_keys(&mut conn, &cipher, t0(), t).unwrap();
            let first = KeyRing::load(&mut conn, &cipher, t0(), t).unwrap();
            let k1 = first.signer(Algorithm::ES256).unwrap().kid().to_owned();
            let old_token = token(&first, t0());

            // First rotation: k2 is published as next; k1 keeps signing.
            let t1 = t0() + Duration::days(30);
            let r1 = rotate(&mut conn, &cipher, t1, t, Algorithm::ES256, lifetime).unwrap();
            assert_eq!((r1.state, r1.activated.as_deref(), r1.retired.as_ref()), (KeyState::Next, None, None));
            let k2 = r1.kid.clone();
            let ring = KeyRing::load(&mut conn, &cipher, t1, t).unwrap();
            assert_eq!(states(&ring), [(k1.clone(), KeyState::Active), (k2.clone(), KeyState::Next)]);
            assert_eq!(ring.signer(Algorithm::ES256).unwrap().kid(), k1, "the next key must not sign");

            // Second rotation: k3 next, k2 active, k1 retired until t2 + lifetime.
            let t2 = t1 + Duration::days(30);
            let r2 = rotate(&mut conn, &cipher, t2, t, Algorithm::ES256, lifetime).unwrap();
            assert_eq!(r2.activated.as_deref(), Some(k2.as_str()));
            assert_eq!(r2.retired, Some((k1.clone(), t2 + lifetime)));
            let k3 = r2.kid.clone();
            let ring = KeyRing::load(&mut conn, &cipher, t2, t).unwrap();
            assert_eq!(
                states(&ring),
                [(k2.clone(), KeyState::Active), (k3.clone(), KeyState::Next), (k1.clone(), KeyState::Retired)]
            );
            let jwks = jwks_value(&ring);
            let published: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
            assert_eq!(published, [k2.as_str(), k3.as_str(), k1.as_str()]);
            assert_eq!(ring.signer(Algorithm::ES256).unwrap().kid(), k2);
            assert_eq!(ring.refresh_at(), Some(t2 + lifetime));

            // A token the retired key signed (here: signed just before the
            // rotation, still unexpired) verifies until publish_until.
            let last_old = token(&first, t2 - Duration::seconds(1));
            let just_before_end = t2 + Duration::minutes(4);
            verify_access_token(&ring, &last_old, ISSUER, just_before_end).unwrap();
            // A token outliving the promised maximum lifetime stops verifying when
            // its key's publication ends, even against this (now stale) ring.
            let too_long = token_for(&first, t2 - Duration::seconds(1), lifetime * 3);
            verify_access_token(&ring, &too_long, ISSUER, t2 + lifetime - Duration::seconds(1)).unwrap();
            let error = verify_access_token(&ring, &too_long, ISSUER, t2 + lifetime).unwrap_err();
            assert!(matches!(error, IssuerError::Rejected(Rejection::KeyWithdrawn)), "{error}");
            // The very first token expired long ago.
            assert!(verify_access_token(&ring, &old_token, ISSUER, t2).is_err());
            // New tokens carry k2.
            let new_token = token(&ring, t2);
            let header = jsonwebtoken::decode_header(&new_token).unwrap();
            assert_eq!(header.kid.as_deref(), Some(k2.as_str()));
            verify_access_token(&ring, &new_token, ISSUER, t2).unwrap();

            // After publish_until the retired key leaves the JWKS and is pruned.
            let after = t2 + lifetime;
            let ring = KeyRing::load(&mut conn, &cipher, after, t).unwrap();
            assert_eq!(states(&ring), [(k2.clone(), KeyState::Active), (k3, KeyState::Next)]);
            assert_eq!(prune(&mut conn, after - Duration::seconds(1), t).unwrap(), 0);
            assert_eq!(prune(&mut conn, after, t).unwrap(), 1);
            assert_eq!(signing_keys::list(&mut conn, t).unwrap().len(), 2);
        }

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
                signing_keys::insert(conn, &cipher, t0(), t, NewSigningKey {
                    kid: stray.jwk.kid.clone(),
                    alg: KeyAlgorithm::Es256,
                    private_key: &stray.pkcs8,
                    public_jwk: public_jwk_json(&stray.jwk)?,
                    state: KeyState::Next,
                })
            });
            assert!(matches!(second_next, Err(StoreError::Conflict { field: "state", .. })));
            assert_eq!(signing_keys::list(&mut conn, t).unwrap().len(), before.len());
        }
    }
}
