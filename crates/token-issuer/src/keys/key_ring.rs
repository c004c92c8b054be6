//! The [`KeyRing`]: one tenant's signers, verification keys and JWKS, built once.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_core::ids::TenantId;
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::AnyConnection;
use gatehouse_identity_store::signing_keys::{self, KeyState, SigningKey as StoredKey};
use gatehouse_jose::{Algorithm, PublicJwk, PublicKey};
use serde::Serialize;
use zeroize::Zeroizing;

use super::from_store;
use super::signer::{PrivateKey, Signer};
use crate::error::{IssuerError, IssuerResult};

/// Where `alg`'s signer sits in the ring.
fn slot(alg: Algorithm) -> usize {
    match alg {
        Algorithm::ES256 => 0,
        Algorithm::RS256 => 1,
        Algorithm::EdDSA => 2,
    }
}

/// A published key, for verification, decoded once when the ring is built.
pub(crate) struct VerificationKey {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) state: KeyState,
    pub(crate) publish_until: Option<DateTime<Utc>>,
    public: PublicKey,
}

impl VerificationKey {
    pub(crate) fn is_published_at(&self, now: DateTime<Utc>) -> bool {
        self.state != KeyState::Retired || self.publish_until.is_some_and(|until| until > now)
    }

    /// Whether `signature` (decoded from the JWS) is this key's signature over
    /// `signing_input` (the JWS's `header.payload`, as sent) with its algorithm.
    pub(crate) fn signed(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        self.public.verifies(signing_input, signature)
    }
}

/// One tenant's signing and verification keys and its JWKS, read-only and cheap to
/// clone (an `Arc`). Getting a signer or the JWKS allocates nothing. Rebuild it
/// ([`KeyRing::load`]) after a rotation and at [`KeyRing::refresh_at`].
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Ring>,
}

struct Ring {
    tenant: TenantId,
    loaded_at: DateTime<Utc>,
    signers: [Option<Signer>; 3],
    verifiers: Vec<VerificationKey>,
    jwks: Arc<[u8]>,
    refresh_at: Option<DateTime<Utc>>,
}

/// What a ring is built from: one published key, its private half only if active.
pub(crate) struct KeyMaterial {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) state: KeyState,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) publish_until: Option<DateTime<Utc>>,
    pub(crate) public_jwk: String,
    pub(crate) private_pkcs8: Option<Zeroizing<Vec<u8>>>,
}

impl KeyRing {
    /// Reads the tenant's published keys and builds its ring; unseals active keys only.
    pub fn load(
        conn: &mut AnyConnection,
        cipher: &Cipher,
        now: DateTime<Utc>,
        tenant: TenantId,
    ) -> IssuerResult<KeyRing> {
        let keys = signing_keys::list_published(conn, tenant, now)?;
        KeyRing::from_keys(cipher, now, tenant, &keys)
    }

    /// Builds a ring from stored keys (those not published at `now` are left out).
    pub fn from_keys(
        cipher: &Cipher,
        now: DateTime<Utc>,
        tenant: TenantId,
        keys: &[StoredKey],
    ) -> IssuerResult<KeyRing> {
        let mut material = Vec::with_capacity(keys.len());
        for key in keys {
            if key.tenant_id != tenant || !key.is_published_at(now) {
                continue;
            }
            let private_pkcs8 = match key.state {
                KeyState::Active => Some(key.private_key(cipher)?),
                KeyState::Next | KeyState::Retired => None,
            };
            material.push(KeyMaterial {
                kid: key.kid.clone(),
                alg: from_store(key.alg),
                state: key.state,
                created_at: key.created_at,
                publish_until: key.publish_until,
                public_jwk: key.public_jwk.clone(),
                private_pkcs8,
            });
        }
        KeyRing::build(tenant, now, material)
    }

    pub(crate) fn build(
        tenant: TenantId,
        now: DateTime<Utc>,
        mut keys: Vec<KeyMaterial>,
    ) -> IssuerResult<KeyRing> {
        // JWKS order: active keys first (some clients take the first key that fits),
        // then next, then retired; newest first within a state.
        let rank = |state: KeyState| match state {
            KeyState::Active => 0,
            KeyState::Next => 1,
            KeyState::Retired => 2,
        };
        keys.sort_by_key(|key| {
            (
                rank(key.state),
                slot(key.alg),
                std::cmp::Reverse(key.created_at),
            )
        });
        let mut signers: [Option<Signer>; 3] = [None, None, None];
        let mut verifiers = Vec::with_capacity(keys.len());
        let mut published = Vec::with_capacity(keys.len());
        for key in keys {
            let bad = |message: String| IssuerError::BadKey {
                kid: key.kid.clone(),
                message,
            };
            let jwk: PublicJwk = serde_json::from_str(&key.public_jwk)
                .map_err(|e| bad(format!("stored public JWK: {e}")))?;
            if jwk.kid != key.kid || jwk.alg != key.alg.as_str() || jwk.key_use != "sig" {
                return Err(bad("stored public JWK does not match its row".to_owned()));
            }
            if jwk.thumbprint().as_deref() != Some(key.kid.as_str()) {
                return Err(bad("kid is not the thumbprint of the public key".to_owned()));
            }
            if let Some(der) = &key.private_pkcs8 {
                let (private, derived) = PrivateKey::from_pkcs8(key.alg, der).map_err(bad)?;
                if derived != jwk {
                    return Err(bad(
                        "private key does not match the published public key".to_owned()
                    ));
                }
                let slot = &mut signers[slot(key.alg)];
                if slot.is_some() {
                    tracing::warn!(tenant = %tenant, kid = %key.kid, alg = %key.alg,
                        "more than one active signing key; using the newest");
                } else {
                    *slot = Some(Signer::new(key.kid.clone(), key.alg, private)?);
                }
            }
            verifiers.push(VerificationKey {
                public: jwk.public_key(key.alg).map_err(|e| bad(e.to_string()))?,
                kid: key.kid,
                alg: key.alg,
                state: key.state,
                publish_until: key.publish_until,
            });
            published.push(jwk);
        }
        #[derive(Serialize)]
        struct Jwks<'a> {
            keys: &'a [PublicJwk],
        }
        let jwks = serde_json::to_vec(&Jwks { keys: &published })
            .map_err(|e| IssuerError::Signing(e.to_string()))?;
        let refresh_at = verifiers
            .iter()
            .filter(|key| key.state == KeyState::Retired)
            .filter_map(|key| key.publish_until)
            .min();
        Ok(KeyRing {
            inner: Arc::new(Ring {
                tenant,
                loaded_at: now,
                signers,
                verifiers,
                jwks: jwks.into(),
                refresh_at,
            }),
        })
    }

    pub fn tenant(&self) -> TenantId {
        self.inner.tenant
    }

    /// The `now` the ring was built at.
    pub fn loaded_at(&self) -> DateTime<Utc> {
        self.inner.loaded_at
    }

    /// The active key for `alg`, if the tenant has one.
    pub fn signer(&self, alg: Algorithm) -> Option<&Signer> {
        self.inner.signers[slot(alg)].as_ref()
    }

    /// The algorithms this tenant can sign with.
    pub fn algorithms(&self) -> impl Iterator<Item = Algorithm> + '_ {
        Algorithm::ALL
            .into_iter()
            .filter(|alg| self.signer(*alg).is_some())
    }

    /// The JWKS document (`{"keys":[…]}`), serialized once when the ring was built.
    /// Cloning the `Arc` is the only cost; `bytes::Bytes::from_owner` takes it as is.
    pub fn jwks(&self) -> Arc<[u8]> {
        Arc::clone(&self.inner.jwks)
    }

    /// The JWKS document, borrowed.
    pub fn jwks_json(&self) -> &[u8] {
        &self.inner.jwks
    }

    /// The kids in the JWKS, in order.
    pub fn published_kids(&self) -> impl Iterator<Item = &str> + '_ {
        self.inner.verifiers.iter().map(|key| key.kid.as_str())
    }

    /// When the ring goes stale by itself (the first retired key's publication
    /// ends); rotations are signalled separately.
    pub fn refresh_at(&self) -> Option<DateTime<Utc>> {
        self.inner.refresh_at
    }

    pub(crate) fn verification_key(&self, kid: &str) -> Option<&VerificationKey> {
        self.inner.verifiers.iter().find(|key| key.kid == kid)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let signing: Vec<(&str, Algorithm)> = Algorithm::ALL
            .into_iter()
            .filter_map(|alg| self.signer(alg).map(|s| (s.kid(), alg)))
            .collect();
        f.debug_struct("KeyRing")
            .field("tenant", &self.inner.tenant)
            .field("loaded_at", &self.inner.loaded_at)
            .field("signing", &signing)
            .field("published", &self.published_kids().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::keys::generate::generate;
    use crate::keys::tests::{full_ring, material, t0};

    fn jwks_value(ring: &KeyRing) -> serde_json::Value {
        serde_json::from_slice(ring.jwks_json()).unwrap()
    }

    #[test]
    fn jwks_has_public_members_only_per_rfc_7517() {
        let ring = full_ring();
        let jwks = jwks_value(ring);
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(jwks.as_object().unwrap().len(), 1, "only `keys`: {jwks}");
        assert_eq!(keys.len(), 3);
        let private_members = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
        for key in keys {
            let object = key.as_object().unwrap();
            for member in private_members {
                assert!(
                    !object.contains_key(member),
                    "private member {member} in {key}"
                );
            }
            assert_eq!(key["use"], "sig");
            let b64 = |m: &str| URL_SAFE_NO_PAD.decode(key[m].as_str().unwrap()).unwrap();
            let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
            names.sort_unstable();
            match key["alg"].as_str().unwrap() {
                "ES256" => {
                    assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
                    assert_eq!((&key["kty"], &key["crv"]), (&"EC".into(), &"P-256".into()));
                    assert_eq!((b64("x").len(), b64("y").len()), (32, 32));
                }
                "RS256" => {
                    assert_eq!(names, ["alg", "e", "kid", "kty", "n", "use"]);
                    assert_eq!(key["kty"], "RSA");
                    assert_eq!(b64("n").len(), 256);
                    assert_eq!(b64("e"), [1, 0, 1]);
                }
                "EdDSA" => {
                    assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x"]);
                    assert_eq!(
                        (&key["kty"], &key["crv"]),
                        (&"OKP".into(), &"Ed25519".into())
                    );
                    assert_eq!(b64("x").len(), 32);
                }
                other => panic!("unexpected alg {other}"),
            }
            // kid = RFC 7638 thumbprint, which jsonwebtoken computes independently.
            let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.clone()).unwrap();
            assert_eq!(
                parsed
                    .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                    .unwrap(),
                key["kid"].as_str().unwrap()
            );
        }
        assert_eq!(ring.algorithms().collect::<Vec<_>>(), Algorithm::ALL);
        // Debug output names kids, never key material.
        let debug = format!("{ring:?} {:?}", ring.signer(Algorithm::ES256).unwrap());
        assert!(
            debug.contains(ring.signer(Algorithm::ES256).unwrap().kid()),
            "{debug}"
        );
        assert!(debug.contains("[redacted]"), "{debug}");
    }

    #[test]
    fn a_stored_jwk_with_a_private_member_is_refused() {
        let mut key = material(Algorithm::ES256, KeyState::Next, t0());
        let mut value: serde_json::Value = serde_json::from_str(&key.public_jwk).unwrap();
        value["d"] = "c2VjcmV0".into();
        key.public_jwk = value.to_string();
        let error = KeyRing::build(TenantId::new(), t0(), vec![key]).unwrap_err();
        assert!(matches!(error, IssuerError::BadKey { .. }), "{error}");
    }

    #[test]
    fn a_published_key_must_fit_its_algorithm() {
        // Each change keeps the kid the thumbprint, so only the key's shape is wrong.
        type Change = fn(&mut serde_json::Value);
        let changes: [(Algorithm, Change); 5] = [
            (Algorithm::ES256, |jwk| jwk["crv"] = "P-384".into()),
            (Algorithm::ES256, |jwk| jwk["x"] = "AAAA".into()),
            (Algorithm::ES256, |jwk| {
                let x = jwk["x"].as_str().unwrap().to_owned();
                jwk["x"] = format!("{x}A").into();
            }),
            (Algorithm::EdDSA, |jwk| jwk["crv"] = "Ed448".into()),
            (Algorithm::EdDSA, |jwk| {
                jwk["x"] = URL_SAFE_NO_PAD.encode([7; 31]).into()
            }),
        ];
        for (alg, change) in changes {
            let mut key = material(alg, KeyState::Next, t0());
            let mut value: serde_json::Value = serde_json::from_str(&key.public_jwk).unwrap();
            change(&mut value);
            let mut jwk: PublicJwk = serde_json::from_value(value).unwrap();
            jwk.kid = jwk.thumbprint().unwrap();
            key.kid = jwk.kid.clone();
            key.public_jwk = serde_json::to_string(&jwk).unwrap();
            let error = KeyRing::build(TenantId::new(), t0(), vec![key]).unwrap_err();
            assert!(matches!(error, IssuerError::BadKey { .. }), "{error}");
        }
        // And an EC key cannot be published as an EdDSA (or RS256) key.
        let ec = material(Algorithm::ES256, KeyState::Next, t0());
        let jwk: PublicJwk = serde_json::from_str(&ec.public_jwk).unwrap();
        for alg in [Algorithm::EdDSA, Algorithm::RS256] {
            assert!(jwk.public_key(alg).is_err(), "{alg}");
        }
        assert!(jwk.public_key(Algorithm::ES256).is_ok());
    }

    #[test]
    fn mismatched_private_and_public_halves_are_refused() {
        let mut active = material(Algorithm::ES256, KeyState::Active, t0());
        let other = generate(Algorithm::ES256).unwrap();
        active.private_pkcs8 = Some(other.pkcs8);
        let error = KeyRing::build(TenantId::new(), t0(), vec![active]).unwrap_err();
        assert!(error.to_string().contains("does not match"), "{error}");

        // A kid that is not the key's thumbprint is refused too.
        let mut renamed = material(Algorithm::EdDSA, KeyState::Next, t0());
        let mut value: serde_json::Value = serde_json::from_str(&renamed.public_jwk).unwrap();
        value["kid"] = "chosen".into();
        renamed.public_jwk = value.to_string();
        renamed.kid = "chosen".into();
        assert!(KeyRing::build(TenantId::new(), t0(), vec![renamed]).is_err());
    }

    #[test]
    fn jwks_and_signer_lookups_share_the_ring() {
        let ring = KeyRing::build(
            TenantId::new(),
            t0(),
            vec![material(Algorithm::ES256, KeyState::Active, t0())],
        )
        .unwrap();
        let clone = ring.clone();
        assert!(Arc::ptr_eq(&ring.jwks(), &clone.jwks()));
        assert!(std::ptr::eq(
            ring.signer(Algorithm::ES256).unwrap(),
            clone.signer(Algorithm::ES256).unwrap()
        ));
        assert!(ring.signer(Algorithm::RS256).is_none());
        assert_eq!(ring.refresh_at(), None);
    }
}
