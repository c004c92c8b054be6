//! Scheduled key rotation: when a tenant's active key has signed for the configured
//! interval, the `next` key (published since the previous rotation) takes over and
//! a new `next` is published. A tenant without a `next` key gets one first, so every
//! key is in the JWKS well before it signs.

use chrono::{DateTime, Duration, Utc};
use gatehouse_core::ids::TenantId;
use gatehouse_core::secrets::Cipher;
use gatehouse_identity_store::signing_keys::{self, KeyState};
use gatehouse_identity_store::{AnyConnection, StoreError, db};

use crate::keys::{Algorithm, Rotation, prune, rotate, to_store};
use crate::{IssuerError, IssuerResult};

/// How long a `next` key must have been published before it may sign: longer than
/// JWKS caching (`max-age=300`) and the key-ring reload interval on every node.
pub const MIN_PUBLISHED: Duration = Duration::hours(1);

/// What one scheduled pass did for a tenant.
#[derive(Debug, Default)]
pub struct ScheduledRotation {
    pub rotations: Vec<Rotation>,
    pub pruned: usize,
}

impl ScheduledRotation {
    pub fn changed(&self) -> bool {
        !self.rotations.is_empty() || self.pruned > 0
    }
}

/// Rotates each of the tenant's algorithms that is due, and prunes retired keys whose
/// publication ended. Decisions are taken under [`signing_keys::lock_for_rotation`],
/// so nodes running the schedule at the same moment rotate once between them.
pub fn rotate_due(
    conn: &mut AnyConnection,
    cipher: &Cipher,
    now: DateTime<Utc>,
    tenant: TenantId,
    every: Duration,
    retired_publish: Duration,
) -> IssuerResult<ScheduledRotation> {
    let mut failure = None;
    let outcome = db::transaction(conn, |conn| {
        signing_keys::lock_for_rotation(conn, tenant)?;
        let mut done = ScheduledRotation::default();
        for alg in Algorithm::ALL {
            let store_alg = to_store(alg);
            let Some(active) = signing_keys::find(conn, tenant, store_alg, KeyState::Active)?
            else {
                continue;
            };
            let next = signing_keys::find(conn, tenant, store_alg, KeyState::Next)?;
            let signed_since = active.activated_at.unwrap_or(active.created_at);
            let due = match &next {
                None => true,
                Some(next) => signed_since + every <= now && next.created_at + MIN_PUBLISHED <= now,
            };
            if due {
                match rotate(conn, cipher, now, tenant, alg, retired_publish) {
                    Ok(rotation) => done.rotations.push(rotation),
                    Err(IssuerError::Store(error)) => return Err(error),
                    Err(error) => {
                        failure = Some(error);
                        return Err(StoreError::Invalid {
                            entity: "signing key",
                            message: "rotation failed".into(),
                        });
                    }
                }
            }
        }
        Ok(done)
    });
    let mut done = match (outcome, failure) {
        (_, Some(error)) => return Err(error),
        (outcome, None) => outcome?,
    };
    done.pruned = prune(conn, now, tenant)?;
    Ok(done)
}
