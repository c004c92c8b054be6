//! Bearer tokens that verified a moment ago, so that a policy enforcement point
//! presenting the same client-credentials token thousands of times a second costs
//! one signature check and one revocation read per second, not per request
//! (≈ 50 µs of ES256 and a store read each; docs/benchmarks.md).
//!
//! Only tokens without a grant are kept (client credentials: their `jti` has no
//! grant part). Such a token stops being live only by expiring or by an RFC 7009
//! revocation of its `jti`; a revocation made on this node drops the tenant's
//! entries at once ([`BearerCache::forget`]), and one made elsewhere (another node,
//! the CLI) counts here within `LIVENESS` because an entry is re-verified after that
//! long. User tokens depend on their grant, consents and the user, which change
//! through many paths: they are verified in full on every request.
//!
//! Entries are keyed by the token's SHA-256, not the token, so a lookup never
//! compares attacker-chosen bytes with a stored secret.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};
use gatehouse_core::ids::TenantId;
use sha2::{Digest, Sha256};

use crate::jwt::AccessTokenClaims;

/// How long a verified token is taken as live without asking the store again.
pub const LIVENESS: Duration = Duration::seconds(1);
/// Tokens kept at most; a full cache drops its stale entries, then everything.
const CAPACITY: usize = 10_000;

#[derive(Debug)]
struct Entry {
    tenant: TenantId,
    issuer: Box<str>,
    claims: Arc<AccessTokenClaims>,
    /// The earlier of the token's expiry and the end of its liveness window.
    until: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub(crate) struct BearerCache {
    entries: RwLock<HashMap<[u8; 32], Entry>>,
    /// Bumped by every `forget`: a verification that saw it move is not kept, so a
    /// check that read the store before a revocation committed cannot outlive it.
    epoch: AtomicU64,
}

pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether a token's liveness may be cached: it has no grant behind it.
pub(crate) fn cacheable(claims: &AccessTokenClaims) -> bool {
    crate::code_flow::grant_of(&claims.jti).is_none()
}

impl BearerCache {
    /// The claims of a token of `tenant` and `issuer` verified less than
    /// [`LIVENESS`] ago and not expired at `now`.
    pub(crate) fn get(
        &self,
        key: &[u8; 32],
        tenant: TenantId,
        issuer: &str,
        now: DateTime<Utc>,
    ) -> Option<Arc<AccessTokenClaims>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(key)?;
        (entry.tenant == tenant && &*entry.issuer == issuer && now < entry.until)
            .then(|| Arc::clone(&entry.claims))
    }

    /// The epoch to hand to [`BearerCache::keep`]; read before verifying.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Keeps a token that verified and was live at `now`, unless something was
    /// forgotten since `epoch` was read.
    pub(crate) fn keep(
        &self,
        key: [u8; 32],
        tenant: TenantId,
        issuer: &str,
        claims: &Arc<AccessTokenClaims>,
        now: DateTime<Utc>,
        epoch: u64,
    ) {
        let expires = DateTime::from_timestamp(claims.exp, 0).unwrap_or(now);
        let until = expires.min(now + LIVENESS);
        if until <= now {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        // Under the write lock: `forget` bumps the epoch before taking it.
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.retain(|_, entry| now < entry.until);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                tenant,
                issuer: issuer.into(),
                claims: Arc::clone(claims),
                until,
            },
        );
    }

    /// Drops one tenant's entries (a token was revoked, keys changed), or all.
    pub(crate) fn forget(&self, tenant: Option<TenantId>) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        match tenant {
            Some(tenant) => entries.retain(|_, entry| entry.tenant != tenant),
            None => entries.clear(),
        }
    }
}
