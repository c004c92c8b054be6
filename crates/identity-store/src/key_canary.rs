//! The master-key canary: a random value sealed under the master key when the
//! database is first used. At start a node opens it with its configured keys; a node
//! given the wrong keys refuses to start, with one clear line, instead of reporting
//! ready and then failing every sign-in with "sealed secret cannot be opened".

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use gatehouse_core::secrets::Cipher;
use rand::RngCore;

use crate::schema::master_key_canary;
use crate::{AnyConnection, StoreResult};

const ROW: &str = "canary";
pub(crate) const AAD: &[u8] = b"gatehouse master key canary";

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CanaryCheck {
    /// The configured keys open the canary.
    Opened,
    /// No canary yet (a new database, or one from before canaries): one was sealed
    /// with the active key.
    Created,
    /// The configured keys do not open the canary; `key_id` is the key it was sealed
    /// with, as far as its envelope says.
    WrongKeys { key_id: Option<String> },
}

/// Opens the canary with `cipher`, sealing a new one where there is none. The canary
/// stays sealed under the key that was active when the database was first used,
/// until `gatehouse secrets rewrap` re-seals it with every other secret: until then
/// the secrets may still need that key, so a key set without it is refused rather
/// than trusted.
pub fn check(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
) -> StoreResult<CanaryCheck> {
    match check_once(conn, cipher, now) {
        // Two nodes' first starts raced to seal one: check the winner's.
        Err(crate::StoreError::Database(e)) if crate::error::is_unique_violation(&e) => {
            check_once(conn, cipher, now)
        }
        other => other,
    }
}

fn check_once(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
) -> StoreResult<CanaryCheck> {
    crate::db::transaction(conn, |conn| {
        let sealed: Option<String> = master_key_canary::table
            .find(ROW)
            .select(master_key_canary::sealed)
            .first(conn)
            .optional()?;
        let Some(sealed) = sealed else {
            let mut value = [0_u8; 32];
            rand::rng().fill_bytes(&mut value);
            diesel::insert_into(master_key_canary::table)
                .values((
                    master_key_canary::id.eq(ROW),
                    master_key_canary::sealed.eq(cipher.seal(&value, AAD)),
                    master_key_canary::created_at.eq(now.naive_utc()),
                ))
                .execute(conn)?;
            return Ok(CanaryCheck::Created);
        };
        match cipher.open(&sealed, AAD) {
            Ok(_) => Ok(CanaryCheck::Opened),
            Err(_) => Ok(CanaryCheck::WrongKeys {
                key_id: sealed.split('.').nth(1).map(str::to_owned),
            }),
        }
    })
}
