//! Recovery codes: ten single-use codes that stand in for a lost second factor.
//!
//! A code is ten characters of Crockford base32 shown as `XXXXX-XXXXX` (50 random
//! bits; no I, L, O or U, and typing O for 0 or I/L for 1 is forgiven). Each code is
//! its own `recovery_code` credential holding a SHA-256 digest, sealed like every
//! credential: guessing is online and rate-limited, so a slow hash would buy
//! nothing. The digest covers tenant and user too, so a table of precomputed
//! digests serves one account only.
//!
//! A used code's row is deleted, and that DELETE is what makes it single-use: of two
//! concurrent uses only one removes the row. The same transaction cancels any
//! recovery of lost factors waiting on the account (the code proves a factor is at
//! hand; see [`crate::recovery`]). Generating a new set deletes the old one in the
//! same transaction.
//!
//! Failures are counted per user (bucket [`bucket`]) with the same policy as TOTP.
//! Call these functions outside a transaction of your own: a failed attempt is
//! counted in its own commit.

use std::fmt;

use chrono::{DateTime, Utc};
use gatehouse_core::ids::{TenantId, UserId};
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::credentials::{self, CredentialKind, NewCredential};
use gatehouse_identity_store::{AnyConnection, StoreError, db};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::AuthnError;
use crate::factor_attempts::attempt;
use crate::factor_attempts::cancel_recoveries_on_factor_use;
use crate::second_factor::OfferedCode;

/// Codes per set.
pub const COUNT: usize = 10;
/// Characters per code, without the separator.
const LENGTH: usize = 10;
/// Crockford's base32: no I, L, O or U, so nothing reads as another character.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The rate-limit bucket for a user's recovery-code attempts.
pub fn bucket(user: UserId) -> String {
    format!("recovery_code:{user}")
}

/// A new set, to be shown once. Only digests are stored, so it cannot be shown
/// again.
pub struct RecoveryCodes {
    codes: Vec<Zeroizing<String>>,
}

impl RecoveryCodes {
    /// The codes as shown: `XXXXX-XXXXX`.
    pub fn codes(&self) -> impl ExactSizeIterator<Item = &str> {
        self.codes.iter().map(|code| code.as_str())
    }
}

impl fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryCodes")
            .field("count", &self.codes.len())
            .finish_non_exhaustive()
    }
}

fn random_code() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0_u8; LENGTH]);
    rand::rng().fill_bytes(&mut *bytes);
    let mut code = Zeroizing::new(String::with_capacity(LENGTH + 1));
    for (i, byte) in bytes.iter().enumerate() {
        if i == LENGTH / 2 {
            code.push('-');
        }
        // 32 divides 256, so the low five bits are uniform.
        code.push(char::from(ALPHABET[usize::from(byte & 31)]));
    }
    code
}

/// The canonical form of a typed code: upper case, no separators or spaces, and
/// the look-alikes Crockford allows read as what they look like.
fn normalise(code: &str) -> Option<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::with_capacity(LENGTH));
    for c in code.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' => continue,
            c if c.is_whitespace() => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
    }
    (out.len() == LENGTH).then_some(out)
}

fn digest(tenant: TenantId, user: UserId, normalised: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(format!("gatehouse/recovery-code/v1/{tenant}/{user}/").as_bytes())
        .chain_update(normalised.as_bytes())
        .finalize()
        .into()
}

/// Makes a new set of [`COUNT`] codes; the old set, used or not, stops working.
pub fn generate(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    user: UserId,
) -> Result<RecoveryCodes, AuthnError> {
    let mut codes: Vec<Zeroizing<String>> = Vec::with_capacity(COUNT);
    while codes.len() < COUNT {
        let code = random_code();
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    db::transaction_with(conn, |conn| {
        credentials::delete_kind_for_user(conn, tenant, user, CredentialKind::RecoveryCode)?;
        for code in &codes {
            let normalised = normalise(code).ok_or_else(|| {
                AuthnError::Internal("a generated recovery code is malformed".into())
            })?;
            credentials::create(
                conn,
                cipher,
                now,
                tenant,
                user,
                NewCredential {
                    kind: CredentialKind::RecoveryCode,
                    label: None,
                    secret: &digest(tenant, user, &normalised),
                },
            )?;
        }
        Ok::<_, AuthnError>(())
    })?;
    Ok(RecoveryCodes { codes })
}

/// Spends one code; returns how many are left. A wrong, malformed or already used
/// code is [`AuthnError::InvalidCode`] (or [`AuthnError::Throttled`] once that locks
/// the user's recovery codes).
pub fn consume(conn: &mut AnyConnection, offered: OfferedCode<'_>) -> Result<usize, AuthnError> {
    attempt_for(conn, offered, |conn| spend(conn, offered))
}

/// Whether `code` is one of the user's unused codes, without spending it: for a
/// code that must be spent together with something else later ([`consume`] in
/// that transaction). Wrong codes count and lock as in [`consume`].
pub(crate) fn check(conn: &mut AnyConnection, offered: OfferedCode<'_>) -> Result<(), AuthnError> {
    attempt_for(conn, offered, |conn| find(conn, offered).map(drop))
}

/// One attempt of `offered`, counted and locked under the user's bucket.
fn attempt_for<T>(
    conn: &mut AnyConnection,
    offered: OfferedCode<'_>,
    check: impl FnOnce(&mut AnyConnection) -> Result<T, AuthnError>,
) -> Result<T, AuthnError> {
    attempt(
        conn,
        offered.now,
        offered.tenant,
        &bucket(offered.user),
        check,
    )
}

/// The stored code `offered` matches, and how many codes there are.
fn find(
    conn: &mut AnyConnection,
    offered: OfferedCode<'_>,
) -> Result<(gatehouse_core::ids::CredentialId, usize), AuthnError> {
    let OfferedCode {
        cipher,
        tenant,
        user,
        code,
        ..
    } = offered;
    let wanted = digest(
        tenant,
        user,
        &normalise(code).ok_or(AuthnError::InvalidCode)?,
    );
    let stored =
        credentials::list_for_user(conn, tenant, user, Some(CredentialKind::RecoveryCode))?;
    // All of them, in constant time: timing tells nothing about how near a guess was.
    let mut found = None;
    for credential in &stored {
        let matches = credential.secret(cipher)?.as_slice().ct_eq(&wanted);
        if bool::from(matches) && found.is_none() {
            found = Some(credential.id);
        }
    }
    Ok((found.ok_or(AuthnError::InvalidCode)?, stored.len()))
}

fn spend(conn: &mut AnyConnection, offered: OfferedCode<'_>) -> Result<usize, AuthnError> {
    let (id, count) = find(conn, offered)?;
    let OfferedCode {
        cipher,
        now,
        tenant,
        user,
        ..
    } = offered;
    db::transaction_with(conn, |conn| {
        credentials::delete(conn, tenant, id).map_err(|error| match error {
            // A concurrent use of the same code deleted it first.
            StoreError::NotFound { .. } => AuthnError::InvalidCode,
            other => other.into(),
        })?;
        cancel_recoveries_on_factor_use(conn, cipher, now, tenant, user, "recovery_code")?;
        Ok(count - 1)
    })
}

/// How many unused codes the user has.
pub fn remaining(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
) -> Result<usize, AuthnError> {
    Ok(credentials::list_for_user(conn, tenant, user, Some(CredentialKind::RecoveryCode))?.len())
}

/// Deletes the user's codes (e.g. when the last second factor goes); how many went.
pub fn remove_all(
    conn: &mut AnyConnection,
    tenant: TenantId,
    user: UserId,
) -> Result<usize, AuthnError> {
    Ok(credentials::delete_kind_for_user(
        conn,
        tenant,
        user,
        CredentialKind::RecoveryCode,
    )?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashSet;
    use std::sync::Barrier;

    use chrono::Duration;
    use gatehouse_core::secrets::MasterKey;
    use gatehouse_identity_store::rate_limits;
    use gatehouse_identity_store::users::{self, UserData};

    use super::*;
    use crate::factor_attempts::LOCKOUT_THRESHOLD;
    use crate::testing::kit::create_acme;
    use crate::testing::stored_credential_data;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap()
    }

    struct Fixture {
        cipher: Cipher,
        tenant: TenantId,
        alice: UserId,
        bob: UserId,
    }

    fn fixture(conn: &mut AnyConnection) -> Fixture {
        let tenant = create_acme(conn, t0(), serde_json::Map::new()).id;
        let user = |conn: &mut AnyConnection, name: &str| {
            users::create(conn, t0(), tenant, UserData::new(name))
                .unwrap()
                .id
        };
        Fixture {
            cipher: Cipher::new(vec![MasterKey::generate()]).unwrap(),
            tenant,
            alice: user(conn, "alice"),
            bob: user(conn, "bob"),
        }
    }

    impl Fixture {
        fn generate(&self, conn: &mut AnyConnection, user: UserId) -> Vec<String> {
            generate(conn, &self.cipher, t0(), self.tenant, user)
                .unwrap()
                .codes()
                .map(str::to_owned)
                .collect()
        }

        fn consume(
            &self,
            conn: &mut AnyConnection,
            at: DateTime<Utc>,
            code: &str,
        ) -> Result<usize, AuthnError> {
            let offered = OfferedCode {
                cipher: &self.cipher,
                now: at,
                tenant: self.tenant,
                user: self.alice,
                code,
            };
            consume(conn, offered)
        }

        fn remaining(&self, conn: &mut AnyConnection) -> usize {
            remaining(conn, self.tenant, self.alice).unwrap()
        }
    }

    #[test]
    fn codes_are_ten_crockford_characters_in_two_groups() {
        for _ in 0..100 {
            let code = random_code();
            assert_eq!(code.len(), 11);
            assert_eq!(&code[5..6], "-");
            assert!(
                code.bytes()
                    .filter(|b| *b != b'-')
                    .all(|b| ALPHABET.contains(&b))
            );
            assert_eq!(normalise(&code).unwrap().as_str(), code.replace('-', ""));
        }
    }

    #[test]
    fn typed_codes_are_forgiven_case_separators_and_look_alikes() {
        assert_eq!(normalise("abcde-fghjk").unwrap().as_str(), "ABCDEFGHJK");
        assert_eq!(normalise(" ABCDE FGHJK ").unwrap().as_str(), "ABCDEFGHJK");
        assert_eq!(normalise("o0ilO-I1L23").unwrap().as_str(), "0011011123");
        for bad in [
            "",
            "ABCDE-FGHJ",
            "ABCDE-FGHJKM",
            "ABCDE-FGHJU",
            "ABCDE_FGHJK",
            "ÄBCDE-FGHJK",
        ] {
            assert!(normalise(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn digests_are_bound_to_the_account() {
        let (tenant, alice, bob) = (TenantId::new(), UserId::new(), UserId::new());
        assert_ne!(
            digest(tenant, alice, "ABCDEFGHJK"),
            digest(tenant, bob, "ABCDEFGHJK")
        );
        assert_ne!(
            digest(tenant, alice, "ABCDEFGHJK"),
            digest(TenantId::new(), alice, "ABCDEFGHJK")
        );
    }

    gatehouse_identity_store::backend_tests! {
        fn ten_distinct_codes_each_work_once(db) {
            let mut conn = db.conn();
            let f = fixture(&mut conn);
            let set = generate(&mut conn, &f.cipher, t0(), f.tenant, f.alice).unwrap();
            assert!(!format!("{set:?}").contains(set.codes().next().unwrap()), "Debug shows a code");
            let codes: Vec<String> = set.codes().map(str::to_owned).collect();
            assert_eq!(codes.len(), COUNT);
            assert_eq!(codes.iter().collect::<HashSet<_>>().len(), COUNT, "distinct");
            assert_eq!(f.remaining(&mut conn), COUNT);

            for (i, code) in codes.iter().enumerate() {
                // However it is typed.
                let typed = match i % 3 {
                    0 => code.clone(),
                    1 => code.to_lowercase(),
                    _ => code.replace('-', " "),
                };
                assert_eq!(f.consume(&mut conn, t0(), &typed).unwrap(), COUNT - i - 1);
            }
            assert_eq!(f.remaining(&mut conn), 0);
            assert!(matches!(f.consume(&mut conn, t0(), &codes[0]), Err(AuthnError::InvalidCode)), "used twice");
        }

        fn regenerating_invalidates_the_old_set(db) {
            let mut conn = db.conn();
            let f = fixture(&mut conn);
            let old = f.generate(&mut conn, f.alice);
            f.consume(&mut conn, t0(), &old[0]).unwrap();
            let new = f.generate(&mut conn, f.alice);
            assert_eq!(f.remaining(&mut conn), COUNT);
            for code in &old[1..3] {
                assert!(matches!(f.consume(&mut conn, t0(), code), Err(AuthnError::InvalidCode)));
            }
            assert_eq!(f.consume(&mut conn, t0(), &new[0]).unwrap(), COUNT - 1);

            assert_eq!(remove_all(&mut conn, f.tenant, f.alice).unwrap(), COUNT - 1);
            assert!(matches!(f.consume(&mut conn, t0(), &new[1]), Err(AuthnError::InvalidCode)));
        }

        fn wrong_codes_fail_and_then_lock(db) {
            let mut conn = db.conn();
            let f = fixture(&mut conn);
            let codes = f.generate(&mut conn, f.alice);
            let bobs = f.generate(&mut conn, f.bob);
            let wrong = ["00000-00000", "not a code", bobs[0].as_str(), "ABCDE-FGHJK"];
            for code in wrong {
                assert!(matches!(f.consume(&mut conn, t0(), code), Err(AuthnError::InvalidCode)), "{code}");
            }
            match f.consume(&mut conn, t0(), "ZZZZZ-ZZZZZ") {
                Err(AuthnError::Throttled { until }) => assert_eq!(until, Some(t0() + Duration::minutes(1))),
                other => panic!("expected a lockout after {LOCKOUT_THRESHOLD} failures, got {other:?}"),
            }
            assert!(matches!(f.consume(&mut conn, t0(), &codes[0]), Err(AuthnError::Throttled { .. })));
            assert_eq!(f.remaining(&mut conn), COUNT, "a refused attempt spends nothing");
            assert_eq!(remaining(&mut conn, f.tenant, f.bob).unwrap(), COUNT, "bob's code still his");

            let later = t0() + Duration::minutes(1);
            assert_eq!(f.consume(&mut conn, later, &codes[0]).unwrap(), COUNT - 1);
            assert_eq!(rate_limits::get(&mut conn, f.tenant, &bucket(f.alice)).unwrap(), None);
        }

        fn codes_are_stored_only_as_sealed_digests(db) {
            let mut conn = db.conn();
            let f = fixture(&mut conn);
            let codes = f.generate(&mut conn, f.alice);
            let rows = stored_credential_data(&mut conn);
            assert_eq!(rows.len(), COUNT);
            for code in &codes {
                let bare = code.replace('-', "");
                let digest = hex::encode(digest(f.tenant, f.alice, &bare));
                for row in &rows {
                    assert!(!row.contains(code.as_str()) && !row.contains(&bare), "code in clear");
                    assert!(!row.to_lowercase().contains(&digest), "digest in clear");
                }
            }
        }

        fn concurrent_uses_of_one_code_pass_once(db) {
            let mut conn = db.conn();
            let f = fixture(&mut conn);
            let codes = f.generate(&mut conn, f.alice);
            drop(conn);
            let barrier = Barrier::new(4);
            let results: Vec<Result<usize, AuthnError>> = std::thread::scope(|scope| {
                let attempts: Vec<_> = (0..4)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut conn = db.conn();
                            barrier.wait();
                            f.consume(&mut conn, t0(), &codes[0])
                        })
                    })
                    .collect();
                attempts.into_iter().map(|attempt| attempt.join().unwrap()).collect()
            });
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
            assert!(
                results.iter().all(|r| matches!(r, Ok(_) | Err(AuthnError::InvalidCode))),
                "{results:?}"
            );
            assert_eq!(f.remaining(&mut db.conn()), COUNT - 1);
        }
    }
}
