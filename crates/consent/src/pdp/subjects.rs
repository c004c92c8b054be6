//! The per-node cache of subjects: a user's facts (record, roles, groups,
//! attributes and current consents) and the Cedar entity built from them, so that a
//! busy PEP asking about the same users costs no store read and rarely an entity
//! build — and can be answered without leaving the async runtime.
//!
//! It is only switched on by [`SubjectCache::watch`], with the event bus, which
//! tells it when something changed. Entries go
//!
//! - at once on `ConsentWithdrawn`, `ConsentGranted`, `UserChanged`, `UserDeactivated` and
//!   `CredentialsChanged` for the user, `TenantChanged` for the tenant and `Resync`
//!   (all of them). The subscription is drained by every lookup before it reads the
//!   cache, in the caller's thread, and `EventBus::publish` hands the event to local
//!   subscribers before it returns: a change announced on this node counts for every
//!   evaluation that starts after the announcing call returned, with no reliance on
//!   a background task having run. Other nodes' events arrive through the
//!   PostgreSQL listener, normally within milliseconds;
//! - after `ttl` (1 s) in any case: cross-node delivery is at most once, and changes
//!   made by another process on SQLite (the CLI) announce nothing here. So a consent
//!   withdrawn on another node is enforced here within a second at worst — the
//!   bound the consent issue sets — while introspection and refresh, which read the
//!   grant, see it at once everywhere.
//!
//! A read that raced with an invalidation is not kept (the epoch check), so facts
//! read before a withdrawal committed cannot be cached after its event was handled.
//! Unknown subjects are cached too, as absent, so a PEP asking about ids that do
//! not exist (mistakes, or someone probing) costs no store read each time; they may
//! fill only a tenth of the cache, so a flood of made-up ids cannot push real
//! subjects out. A user created on this node is found at once (registration
//! announces `UserChanged`), elsewhere within `ttl`.
//!
//! Subjects in use are read again before they expire, off the request path (the
//! PDP's refresher thread asks [`SubjectCache::due`] every `ttl / 4`): a busy PEP
//! never waits for a store read about a subject it asked about within the last
//! `ttl`, and the bound stays what it was — an entry serves for at most `ttl` after
//! the read that made it began. Entries not asked about since their last read are
//! left to expire, so the store work follows the subjects in use, not the request
//! rate.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use cedar_policy::{Entities, Entity, EntityUid};
use chrono::{DateTime, Duration, Utc};
use gatehouse_core::events::{DomainEvent, EventBus, EventSubscription};
use gatehouse_core::ids::{TenantId, UserId};

/// A user as the Cedar entity built from their facts, and as entities holding just
/// that one, whose transitive closure Cedar computed once, here: every evaluation
/// adds its resource to a (shallow) copy instead of computing it again.
#[derive(Debug)]
pub(crate) struct Subject {
    pub(crate) principal: EntityUid,
    pub(crate) entities: Entities,
}

impl Subject {
    pub(crate) fn new(principal: Entity) -> Result<Subject, crate::ConsentError> {
        Ok(Subject {
            principal: principal.uid(),
            entities: Entities::from_entities([principal], None)
                .map_err(|e| crate::ConsentError::Internal(format!("entities: {e}")))?,
        })
    }
}

#[derive(Debug)]
struct Entry {
    /// `None`: no such user.
    subject: Option<Arc<Subject>>,
    until: DateTime<Utc>,
    /// Asked about since it was read: worth reading again before it expires.
    used: AtomicBool,
}

pub(crate) type Key = (TenantId, String);

#[derive(Debug)]
pub(crate) struct SubjectCache {
    ttl: Duration,
    capacity: usize,
    subscription: OnceLock<Mutex<EventSubscription>>,
    entries: RwLock<Entries>,
    /// Bumped by every invalidation; a read that saw it move is not kept.
    epoch: AtomicU64,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Key, Entry>,
    /// Entries of subjects that do not exist.
    absent: usize,
}

impl Entries {
    fn retain(&mut self, keep: impl Fn(&Key, &Entry) -> bool) {
        self.map.retain(|key, entry| keep(key, entry));
        self.absent = self.map.values().filter(|e| e.subject.is_none()).count();
    }
}

/// The cache key for a subject id: the store's canonical form of a user id, which is
/// also how events name users, so `ConsentWithdrawn` finds the entry whatever case
/// the PEP wrote the UUID in.
fn key(tenant: TenantId, id: &str) -> Key {
    let canonical = UserId::from_str(id).map_or_else(|_| id.to_owned(), |u| u.to_string());
    (tenant, canonical)
}

impl SubjectCache {
    pub(crate) fn new(ttl: std::time::Duration, capacity: usize) -> Self {
        SubjectCache {
            ttl: Duration::from_std(ttl).unwrap_or(Duration::zero()),
            capacity,
            subscription: OnceLock::new(),
            entries: RwLock::new(Entries::default()),
            epoch: AtomicU64::new(0),
        }
    }

    /// Switches the cache on, fed by `events`. Later calls do nothing.
    /// Whether this call switched it on (so the caller starts the refresher once).
    pub(crate) fn watch(&self, events: &EventBus) -> bool {
        if self.capacity == 0 || self.ttl <= Duration::zero() {
            return false;
        }
        let mut switched_on = false;
        let _ = self.subscription.get_or_init(|| {
            switched_on = true;
            Mutex::new(events.subscribe())
        });
        switched_on
    }

    /// How often the refresher should look for entries due.
    pub(crate) fn refresh_every(&self) -> std::time::Duration {
        (self.ttl / 4).to_std().unwrap_or_default().clamp(
            std::time::Duration::from_millis(25),
            std::time::Duration::from_secs(5),
        )
    }

    pub(crate) fn enabled(&self) -> bool {
        self.subscription.get().is_some()
    }

    /// Applies the events that arrived since the last lookup.
    fn drain(&self) {
        let Some(subscription) = self.subscription.get() else {
            return;
        };
        let mut subscription = subscription.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(envelope) = subscription.try_next() {
            match &envelope.event {
                DomainEvent::ConsentWithdrawn { tenant, user, .. }
                | DomainEvent::ConsentGranted { tenant, user, .. }
                | DomainEvent::UserChanged { tenant, user }
                | DomainEvent::UserDeactivated { tenant, user }
                | DomainEvent::CredentialsChanged { tenant, user } => {
                    let user = user.to_string();
                    self.forget(|key| key.0 == *tenant && key.1 == user);
                }
                DomainEvent::TenantChanged { tenant } => self.forget(|key| key.0 == *tenant),
                DomainEvent::Resync => self.forget(|_| true),
                _ => {}
            }
        }
    }

    fn forget(&self, matches: impl Fn(&Key) -> bool) {
        // Before the removal: a read in flight compares the epoch after it finished.
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| !matches(key));
    }

    /// The cached subject, if fresh at `now` (`Some(None)`: known not to exist);
    /// also the epoch to hand to [`SubjectCache::keep`] after reading the store on a
    /// miss.
    pub(crate) fn get(
        &self,
        tenant: TenantId,
        id: &str,
        now: DateTime<Utc>,
    ) -> (Option<Option<Arc<Subject>>>, u64) {
        if !self.enabled() {
            return (None, 0);
        }
        self.drain();
        let epoch = self.epoch.load(Ordering::SeqCst);
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let hit = entries
            .map
            .get(&key(tenant, id))
            .filter(|entry| now < entry.until)
            .map(|entry| {
                // Read first: hits on a hot subject then share the cache line.
                if !entry.used.load(Ordering::Relaxed) {
                    entry.used.store(true, Ordering::Relaxed);
                }
                entry.subject.clone()
            });
        (hit, epoch)
    }

    /// The subjects to read again now: asked about since their last read and in the
    /// second half of their life. Drops the entries that expired meanwhile.
    pub(crate) fn due(&self, now: DateTime<Utc>) -> Vec<Key> {
        if !self.enabled() {
            return Vec::new();
        }
        self.drain();
        let half = self.ttl / 2;
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, entry| now < entry.until);
        entries
            .map
            .iter()
            .filter(|(_, entry)| entry.until - now <= half && entry.used.load(Ordering::Relaxed))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The epoch to hand to [`SubjectCache::keep`] with a read that starts now.
    pub(crate) fn epoch(&self) -> u64 {
        self.drain();
        self.epoch.load(Ordering::SeqCst)
    }

    /// Keeps a subject (`None`: no such user) read at `now` after `get` returned
    /// `epoch`, unless something was invalidated meanwhile.
    pub(crate) fn keep(
        &self,
        tenant: TenantId,
        id: &str,
        subject: Option<&Arc<Subject>>,
        now: DateTime<Utc>,
        epoch: u64,
    ) {
        if !self.enabled() {
            return;
        }
        self.drain();
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        // Under the write lock: `forget` bumps the epoch before it takes this lock,
        // so an invalidation either shows here or runs after the insert.
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        let until = now + self.ttl;
        if entries.map.len() >= self.capacity {
            entries.retain(|_, entry| now < entry.until);
            if entries.map.len() >= self.capacity {
                *entries = Entries::default();
            }
        }
        if subject.is_none() && entries.absent >= (self.capacity / 10).max(1) {
            return;
        }
        let entry = Entry {
            subject: subject.cloned(),
            until,
            used: AtomicBool::new(false),
        };
        let new_absent = usize::from(entry.subject.is_none());
        let old_absent = entries
            .map
            .insert(key(tenant, id), entry)
            .map_or(0, |old| usize::from(old.subject.is_none()));
        entries.absent = entries.absent + new_absent - old_absent;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }
}
