//! Key fixtures for the crate's tests: RSA generation is slow in debug builds, so
//! keys are shared where a test does not need its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use gatehouse_core::ids::TenantId;
use gatehouse_core::secrets::{Cipher, MasterKey};
use gatehouse_identity_store::AnyConnection;
use gatehouse_identity_store::signing_keys::KeyState;
use gatehouse_identity_store::tenants::{self, TenantData};
use zeroize::Zeroizing;

use super::generate::{GeneratedKey, generate};
use super::key_ring::KeyMaterial;
use super::signer::PrivateKey;
use super::*;

/// A generated key as ring material (RSA generation is slow in debug builds, so
/// tests share RSA keys through [`shared_rsa_pkcs8`]).
pub(crate) fn material(alg: Algorithm, state: KeyState, created_at: DateTime<Utc>) -> KeyMaterial {
    let key = generate(alg).unwrap();
    material_from(key, alg, state, created_at)
}

fn material_from(
    key: GeneratedKey,
    alg: Algorithm,
    state: KeyState,
    created_at: DateTime<Utc>,
) -> KeyMaterial {
    KeyMaterial {
        kid: key.jwk.kid.clone(),
        alg,
        state,
        created_at,
        publish_until: None,
        public_jwk: serde_json::to_string(&key.jwk).unwrap(),
        private_pkcs8: (state == KeyState::Active).then_some(key.pkcs8),
    }
}

/// One RSA key per test binary.
pub(crate) fn shared_rsa_pkcs8() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| generate(Algorithm::RS256).unwrap().pkcs8.to_vec())
}

pub(crate) fn rsa_material(state: KeyState, created_at: DateTime<Utc>) -> KeyMaterial {
    let der = Zeroizing::new(shared_rsa_pkcs8().to_vec());
    let (_, jwk) = PrivateKey::from_pkcs8(Algorithm::RS256, &der).unwrap();
    material_from(
        GeneratedKey { pkcs8: der, jwk },
        Algorithm::RS256,
        state,
        created_at,
    )
}

/// One ring with an active key per algorithm, shared (RSA generation is slow).
pub(crate) fn full_ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        KeyRing::build(
            TenantId::new(),
            t0(),
            vec![
                material(Algorithm::ES256, KeyState::Active, t0()),
                rsa_material(KeyState::Active, t0()),
                material(Algorithm::EdDSA, KeyState::Active, t0()),
            ],
        )
        .unwrap()
    })
}

/// Somebody else's ES256 and EdDSA keys, for forgeries.
pub(crate) fn other_ring() -> KeyRing {
    KeyRing::build(
        TenantId::new(),
        t0(),
        vec![
            material(Algorithm::ES256, KeyState::Active, t0()),
            material(Algorithm::EdDSA, KeyState::Active, t0()),
        ],
    )
    .unwrap()
}

/// A JSON value as a JWT segment: base64url without padding.
pub(crate) fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Signs any header and payload with `ring`'s key for `alg`, so tests can build
/// tokens the issuer itself would never produce.
pub(crate) fn signed_with(
    ring: &KeyRing,
    alg: Algorithm,
    header: &serde_json::Value,
    payload: &serde_json::Value,
) -> String {
    let mut token = format!("{}.{}", b64(header), b64(payload));
    ring.signer(alg)
        .unwrap()
        .sign_appending(&mut token)
        .unwrap();
    token
}

/// A cipher with a fresh master key.
pub(crate) fn cipher() -> Cipher {
    Cipher::new(vec![MasterKey::generate()]).unwrap()
}

/// A tenant to hold keys.
pub(crate) fn tenant(conn: &mut AnyConnection) -> TenantId {
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

pub(crate) fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap()
}

#[test]
fn algorithm_names_round_trip() {
    for alg in Algorithm::ALL {
        assert_eq!(alg.as_str().parse::<Algorithm>().unwrap(), alg);
        assert_eq!(from_store(to_store(alg)), alg);
        assert_eq!(to_store(alg).as_str(), alg.as_str());
        assert_eq!(format!("{:?}", to_jsonwebtoken(alg)), alg.as_str());
    }
    assert_eq!(Algorithm::default(), Algorithm::ES256);
    assert!("none".parse::<Algorithm>().is_err());
    assert!("HS256".parse::<Algorithm>().is_err());
    assert!("es256".parse::<Algorithm>().is_err());
}

fn to_jsonwebtoken(alg: Algorithm) -> jsonwebtoken::Algorithm {
    match alg {
        Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
    }
}
