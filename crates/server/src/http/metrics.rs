//! Prometheus metrics: requests and latency by route pattern (never by raw path, so
//! ids in URLs cannot blow up cardinality), and connection-pool statistics read at
//! scrape time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use std::sync::{Mutex, PoisonError};

use gatehouse_consent::pdp::LogStats;
use gatehouse_core::ids::TenantId;
use gatehouse_core::outcomes::Outcomes;
use gatehouse_identity_store::Pool;
use gatehouse_identity_store::events_pg::PublishStats;

const LATENCY_BUCKETS: [f64; 14] = [
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PdpPathLabels {
    /// `memory`: answered on the HTTP worker from caches; `blocking`: needed the
    /// store (a subject, token or policy set not cached), on the blocking pool.
    path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnknownKeyLabels {
    /// The member's path (`context.consent`); the PDP bounds how many there are.
    key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthEventLabels {
    tenant: String,
    /// The audit action (`login.succeeded`, `login.locked`, `mfa.failed`, …) or
    /// `mail.sent`: names from the code, so a bounded set.
    event: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    tenant: String,
    grant: &'static str,
    /// `issued`, or the OAuth error code of a refusal.
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

/// Tenants with a label of their own; the rest share [`OTHER_TENANTS`], so a
/// deployment with thousands of tenants cannot multiply the series without bound.
const LABELLED_TENANTS: usize = 100;
const OTHER_TENANTS: &str = "_other";

/// The tenant label: the tenant's id for the first [`LABELLED_TENANTS`] seen.
#[derive(Debug, Default)]
struct TenantLabels(std::sync::RwLock<std::collections::HashSet<TenantId>>);

impl TenantLabels {
    /// Counted on the token endpoint: a shared read answers every tenant already
    /// seen, so requests never queue on one lock; only a new tenant writes.
    fn of(&self, tenant: TenantId) -> String {
        let known = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&tenant);
        if known {
            return tenant.to_string();
        }
        let mut seen = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if seen.contains(&tenant) || (seen.len() < LABELLED_TENANTS && seen.insert(tenant)) {
            tenant.to_string()
        } else {
            OTHER_TENANTS.to_owned()
        }
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pool_connections: Gauge,
    pool_idle: Gauge,
    pool_max: Gauge,
    /// `pdp_requests_total` by path, looked up once: counted on every evaluation.
    pdp_from_memory: Counter,
    pdp_blocking: Counter,
    /// The cross-node event publisher's counters, copied in at each scrape.
    events: EventPublisherGauges,
    /// The PDP's decision log and unknown-member counters, copied in at each scrape.
    pdp: PdpCounters,
    tenants: TenantLabels,
    auth_events: Family<AuthEventLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
}

#[derive(Debug, Default)]
struct PdpCounters {
    log_queued: Gauge,
    log_waits: Counter,
    log_wait_timeouts: Counter,
    log_skipped: Counter,
    log_failed: Counter,
    unknown_keys: Family<UnknownKeyLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    /// One scrape copies at a time: a counter goes up by what it lacks, and two
    /// scrapes at once would both add it.
    copying: Mutex<()>,
}

/// Raises `counter` to `total` (the PDP keeps the totals).
fn catch_up(counter: &Counter, total: u64) {
    let shown = counter.get();
    if total > shown {
        counter.inc_by(total - shown);
    }
}

#[derive(Debug, Default)]
struct EventPublisherGauges {
    published: Gauge,
    failed_attempts: Gauge,
    dropped: Gauge,
    queued: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers each metric under its name and help text; the registry keeps a clone
/// (the metric types are shared handles), `Metrics` the original.
macro_rules! register {
    ($registry:expr, $($name:literal, $help:literal, $metric:expr;)+) => {
        $($registry.register($name, $help, $metric.clone());)+
    };
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let pool_connections = Gauge::default();
        let pool_idle = Gauge::default();
        let pool_max = Gauge::default();
        let pdp_requests = Family::<PdpPathLabels, Counter>::default();
        let pdp_from_memory = pdp_requests
            .get_or_create(&PdpPathLabels { path: "memory" })
            .clone();
        let pdp_blocking = pdp_requests
            .get_or_create(&PdpPathLabels { path: "blocking" })
            .clone();
        let events = EventPublisherGauges::default();
        let pdp = PdpCounters::default();
        let auth_events = Family::<AuthEventLabels, Counter>::default();
        let tokens = Family::<TokenLabels, Counter>::default();
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                revision: option_env!("GATEHOUSE_REVISION").unwrap_or("unknown"),
            })
            .set(1);
        register!(registry,
            "build_info", "The running build: version and source revision (always 1)", build_info;
            "auth_events", "Security outcomes by tenant, event (the audit action: login.succeeded, login.failed, login.locked, login.second_factor_required, mfa.failed, federation.*, …; mail.sent) and result", auth_events;
            "tokens", "Token endpoint answers by tenant, grant type and result (issued, or the OAuth error code)", tokens;
            "pdp_decisions", "Decisions written to the decision log, by decision and reason code", pdp.decisions;
            "http_requests", "HTTP requests answered", requests;
            "http_request_duration_seconds", "Time to answer an HTTP request", latency;
            "db_pool_connections", "Open database connections", pool_connections;
            "db_pool_idle_connections", "Idle database connections", pool_idle;
            "db_pool_max_connections", "Database pool size limit", pool_max;
            "pdp_requests", "AuthZEN evaluation requests by where they were answered", pdp_requests;
            "events_published", "Domain events sent to other nodes (PostgreSQL NOTIFY) since start", events.published;
            "events_publish_failed_attempts", "Attempts to send a domain event that failed and were retried", events.failed_attempts;
            "events_dropped", "Domain events dropped because the outbox was full (other nodes resync)", events.dropped;
            "events_queued", "Domain events waiting to be sent to other nodes", events.queued;
            "pdp_decision_log_queued", "Decisions waiting for the decision log writer", pdp.log_queued;
            "pdp_decision_log_waits", "Evaluations that found the decision log queue full and waited for room", pdp.log_waits;
            "pdp_decision_log_wait_timeouts", "Evaluations that failed (503) because the decision log queue stayed full", pdp.log_wait_timeouts;
            "pdp_decision_log_skipped", "Decisions not logged under sampling (pdp.decision_log_when_full = sample); gap records count them", pdp.log_skipped;
            "pdp_decision_log_failed", "Decisions lost to a failed decision log write; gap records count them", pdp.log_failed;
            "pdp_unknown_keys", "Evaluations carrying a request member the PDP does not read (a PEP's typo?), by member", pdp.unknown_keys;
        );
        Metrics {
            events,
            pdp,
            tenants: TenantLabels::default(),
            auth_events,
            tokens,
            registry,
            requests,
            latency,
            pool_connections,
            pool_idle,
            pool_max,
            pdp_from_memory,
            pdp_blocking,
        }
    }

    pub fn observe_request(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method,
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Copies the event publisher's counters (kept by the publisher) for a scrape.
    pub fn record_event_publisher(&self, stats: PublishStats) {
        let gauge = |g: &Gauge, v: u64| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        gauge(&self.events.published, stats.published);
        gauge(&self.events.failed_attempts, stats.failed_attempts);
        gauge(&self.events.dropped, stats.dropped);
        gauge(&self.events.queued, stats.queued);
    }

    /// Counts a token endpoint answer: `refused` is the OAuth error code, if any.
    pub fn token_answered(&self, tenant: TenantId, grant: &'static str, refused: Option<&str>) {
        self.tokens
            .get_or_create(&TokenLabels {
                tenant: self.tenants.of(tenant),
                grant,
                result: refused.unwrap_or("issued").to_owned(),
            })
            .inc();
    }

    /// Copies the PDP's decision log counters and unknown-member counts for a scrape.
    pub fn record_pdp(
        &self,
        log: LogStats,
        unknown_keys: &[(String, u64)],
        decisions: &[(bool, String, u64)],
    ) {
        let pdp = &self.pdp;
        let _one_at_a_time = pdp.copying.lock().unwrap_or_else(PoisonError::into_inner);
        pdp.log_queued
            .set(i64::try_from(log.queued).unwrap_or(i64::MAX));
        catch_up(&pdp.log_waits, log.waits);
        catch_up(&pdp.log_wait_timeouts, log.wait_timeouts);
        catch_up(&pdp.log_skipped, log.skipped);
        catch_up(&pdp.log_failed, log.failed);
        for (key, total) in unknown_keys {
            let labels = UnknownKeyLabels { key: key.clone() };
            catch_up(&pdp.unknown_keys.get_or_create(&labels), *total);
        }
        for (decision, reason, total) in decisions {
            let labels = DecisionLabels {
                decision: if *decision { "permit" } else { "deny" },
                reason: reason.clone(),
            };
            catch_up(&pdp.decisions.get_or_create(&labels), *total);
        }
    }

    /// Counts an AuthZEN request answered from memory or on the blocking pool.
    pub fn pdp_answered(&self, from_memory: bool) {
        if from_memory {
            self.pdp_from_memory.inc();
        } else {
            self.pdp_blocking.inc();
        }
    }

    pub fn render(&self, pool: &Pool) -> Result<String, std::fmt::Error> {
        let state = pool.state();
        self.pool_connections.set(i64::from(state.connections));
        self.pool_idle.set(i64::from(state.idle_connections));
        self.pool_max.set(i64::from(pool.max_size()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Maps a method to a static label, so no per-request allocation for it.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

impl Outcomes for Metrics {
    fn count(&self, tenant: TenantId, event: &str, result: &str) {
        let result = match result {
            "success" => "success",
            "denied" => "denied",
            _ => "failure",
        };
        self.auth_events
            .get_or_create(&AuthEventLabels {
                tenant: self.tenants.of(tenant),
                event: event.to_owned(),
                result,
            })
            .inc();
    }
}
