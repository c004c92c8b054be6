//! Which tenant a request is for: `/t/{slug}/…` by path, otherwise the tenant that
//! lists the request's host name in its settings (`"hosts": ["login.acme.example"]`),
//! otherwise the default tenant. Tenants are cached in memory and the cache is
//! dropped on `TenantChanged` or `Resync` events, so no page pays a lookup; it is
//! also reloaded after 30 s, and a slug it does not know is looked up again (at most
//! every 2 s), so changes made where events do not reach (the command line on
//! SQLite) show too.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use gatehouse_core::events::{DomainEvent, EventBus};
use gatehouse_core::ids::TenantId;
use gatehouse_identity_store::tenants::{self, Tenant};
use gatehouse_identity_store::{PageRequest, Pool, StoreError};

#[derive(Debug)]
struct Snapshot {
    by_slug: HashMap<String, Arc<Tenant>>,
    by_host: HashMap<String, Arc<Tenant>>,
    loaded_at: Instant,
}

/// How long a loaded directory is trusted without an event: a change made where
/// events do not reach this process (the command line on SQLite) shows within it.
const SNAPSHOT_TTL: Duration = Duration::from_secs(30);
/// A slug the directory does not know is looked up again once the directory is
/// this old, so a tenant created elsewhere is reachable at once; unknown slugs
/// cost at most one load per this interval.
const MISS_RELOAD_AFTER: Duration = Duration::from_secs(2);

impl Snapshot {
    fn fresh(&self) -> bool {
        self.loaded_at.elapsed() < SNAPSHOT_TTL
    }

    /// Whether a miss on `slug` is worth a reload.
    fn may_know_more(&self, slug: Option<&str>) -> bool {
        slug.is_some_and(|slug| {
            // Slugs are stored lower-case; most requests spell them so.
            !self.by_slug.contains_key(slug)
                && !self.by_slug.contains_key(&slug.to_ascii_lowercase())
        }) && self.loaded_at.elapsed() >= MISS_RELOAD_AFTER
    }
}

#[derive(Clone, Debug)]
pub struct TenantDirectory {
    pool: Pool,
    default_slug: String,
    public_origin: String,
    snapshot: Arc<RwLock<Option<Arc<Snapshot>>>>,
}

/// A resolved tenant plus how the request addressed it (links must keep the prefix).
#[derive(Clone, Debug)]
pub struct ResolvedTenant {
    pub tenant: Arc<Tenant>,
    /// "" at the root or on the tenant's own host; "/t/{slug}" when path-routed.
    pub base_path: String,
    /// Scheme, host and port for absolute links (mail): the public URL, or the
    /// tenant's configured host — never taken from the request's Host header.
    pub origin: String,
}

impl ResolvedTenant {
    /// The issuer identifier as this request reached the tenant.
    pub fn issuer(&self) -> String {
        format!("{}{}", self.origin, self.base_path)
    }
}

/// Why a request's tenant could not be told: no such tenant, or the directory
/// could not be loaded (the database is away).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TenantMiss {
    Unknown,
    Unavailable,
}

/// The tenant a request is for: from memory when the directory is loaded (almost
/// always, so no hop to the blocking pool), else loaded on the blocking pool.
pub(crate) async fn tenant_of(
    directory: &TenantDirectory,
    req: &actix_web::HttpRequest,
) -> Result<ResolvedTenant, TenantMiss> {
    let slug = req.match_info().get("tenant").map(str::to_owned);
    let host = req.connection_info().host().to_owned();
    if let Some(found) = directory.resolve_cached(slug.as_deref(), &host) {
        return found.ok_or(TenantMiss::Unknown);
    }
    let directory = directory.clone();
    match actix_web::web::block(move || directory.resolve(slug.as_deref(), &host)).await {
        Ok(Ok(Some(tenant))) => Ok(tenant),
        Ok(Ok(None)) => Err(TenantMiss::Unknown),
        Ok(Err(error)) => {
            tracing::error!(%error, "tenant lookup failed");
            Err(TenantMiss::Unavailable)
        }
        Err(_) => Err(TenantMiss::Unavailable),
    }
}

impl TenantDirectory {
    pub fn new(pool: Pool, default_slug: String, public_url: &str) -> Self {
        TenantDirectory {
            pool,
            default_slug,
            public_origin: public_url.trim_end_matches('/').to_owned(),
            snapshot: Arc::new(RwLock::new(None)),
        }
    }

    /// Drops the cache whenever a tenant changes on any node. Call inside the runtime.
    pub fn watch(&self, events: &EventBus) {
        let mut subscription = events.subscribe();
        let cache = Arc::clone(&self.snapshot);
        tokio::spawn(async move {
            while let Some(event) = subscription.next().await {
                if matches!(
                    event.event,
                    DomainEvent::TenantChanged { .. } | DomainEvent::Resync
                ) {
                    *cache.write().unwrap_or_else(|p| p.into_inner()) = None;
                }
            }
        });
    }

    /// Drops the cache; the next lookup reloads every tenant.
    pub fn invalidate(&self) {
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        if let Some(snapshot) = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|snapshot| snapshot.fresh())
        {
            return Ok(Arc::clone(snapshot));
        }
        self.load()
    }

    fn load(&self) -> Result<Arc<Snapshot>, StoreError> {
        let mut conn = self.pool.get()?;
        let mut snapshot = Snapshot {
            by_slug: HashMap::new(),
            by_host: HashMap::new(),
            loaded_at: Instant::now(),
        };
        let mut request = PageRequest::first(500);
        loop {
            let page = tenants::list(&mut conn, &request)?;
            for tenant in page.items {
                let tenant = Arc::new(tenant);
                for host in tenant.typed_settings().hosts {
                    snapshot.by_host.insert(host, Arc::clone(&tenant));
                }
                snapshot.by_slug.insert(tenant.slug.clone(), tenant);
            }
            match page.next_cursor {
                Some(cursor) => request = PageRequest::after(cursor, 500),
                None => break,
            }
        }
        let snapshot = Arc::new(snapshot);
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&snapshot));
        Ok(snapshot)
    }

    /// The issuer identifier a tenant's tokens carry when no request says which URL
    /// it was reached by (messages the server sends on its own, such as back-channel
    /// logout): its own host if it has one, the root for the default tenant, else
    /// its path prefix. Blocking, like [`TenantDirectory::resolve`].
    /// A tenant missing from the cached list is looked for once more in a fresh one:
    /// it was most likely created a moment ago (ids name existing tenants).
    pub fn issuer_for(&self, id: TenantId) -> Result<Option<String>, StoreError> {
        let find =
            |snapshot: Arc<Snapshot>| snapshot.by_slug.values().find(|t| t.id == id).cloned();
        let tenant = match find(self.snapshot()?) {
            Some(tenant) => tenant,
            None => {
                self.invalidate();
                let Some(tenant) = find(self.snapshot()?) else {
                    return Ok(None);
                };
                tenant
            }
        };
        let host = tenant.typed_settings().hosts.into_iter().next();
        Ok(Some(match host {
            Some(host) => {
                let scheme = self.public_origin.split("://").next().unwrap_or("https");
                format!("{scheme}://{host}")
            }
            None if tenant.slug == self.default_slug => self.public_origin.clone(),
            None => format!("{}/t/{}", self.public_origin, tenant.slug),
        }))
    }

    /// Blocking (may load from the database): call from a blocking context.
    pub fn resolve(
        &self,
        path_slug: Option<&str>,
        host: &str,
    ) -> Result<Option<ResolvedTenant>, StoreError> {
        let mut snapshot = self.snapshot()?;
        if snapshot.may_know_more(path_slug) {
            snapshot = self.load()?;
        }
        Ok(self.resolve_in(&snapshot, path_slug, host))
    }

    /// [`TenantDirectory::resolve`] when the directory is loaded (it stays loaded
    /// until a `TenantChanged` event drops it): `None` means "call `resolve` on a
    /// blocking thread". Lets hot handlers skip that hop.
    pub fn resolve_cached(
        &self,
        path_slug: Option<&str>,
        host: &str,
    ) -> Option<Option<ResolvedTenant>> {
        let snapshot = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|snapshot| snapshot.fresh() && !snapshot.may_know_more(path_slug))
            .map(Arc::clone)?;
        Some(self.resolve_in(&snapshot, path_slug, host))
    }

    /// The tenant the request names, unless an operator disabled it: then nothing
    /// of it is served, as for an unknown tenant (its own host names do not fall
    /// back to the default tenant either).
    fn resolve_in(
        &self,
        snapshot: &Snapshot,
        path_slug: Option<&str>,
        host: &str,
    ) -> Option<ResolvedTenant> {
        self.named_in(snapshot, path_slug, host)
            .filter(|resolved| resolved.tenant.disabled_at.is_none())
    }

    fn named_in(
        &self,
        snapshot: &Snapshot,
        path_slug: Option<&str>,
        host: &str,
    ) -> Option<ResolvedTenant> {
        if let Some(slug) = path_slug {
            return snapshot
                .by_slug
                .get(&slug.to_ascii_lowercase())
                .map(|tenant| ResolvedTenant {
                    base_path: format!("/t/{}", tenant.slug),
                    tenant: Arc::clone(tenant),
                    origin: self.public_origin.clone(),
                });
        }
        let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        if let Some((configured, tenant)) = snapshot.by_host.get_key_value(&host) {
            let scheme = self.public_origin.split("://").next().unwrap_or("https");
            return Some(ResolvedTenant {
                tenant: Arc::clone(tenant),
                base_path: String::new(),
                origin: format!("{scheme}://{configured}"),
            });
        }
        snapshot
            .by_slug
            .get(&self.default_slug)
            .map(|tenant| ResolvedTenant {
                tenant: Arc::clone(tenant),
                base_path: String::new(),
                origin: self.public_origin.clone(),
            })
    }
}

impl gatehouse_admin::TenantUrls for TenantDirectory {
    fn issuer_for(&self, tenant: TenantId) -> Result<Option<String>, String> {
        TenantDirectory::issuer_for(self, tenant).map_err(|e| e.to_string())
    }

    fn platform_tenant(&self) -> &str {
        &self.default_slug
    }

    fn public_host(&self) -> &str {
        let authority = self
            .public_origin
            .split_once("://")
            .map_or(self.public_origin.as_str(), |(_, rest)| rest);
        authority.split([':', '/']).next().unwrap_or(authority)
    }
}
