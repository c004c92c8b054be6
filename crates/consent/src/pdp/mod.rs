//! The policy decision point: OpenID AuthZEN evaluations decided by Cedar policies.
//!
//! Per evaluation the PDP needs the subject (user, roles, groups, attributes and
//! current consents). Once [`Pdp::watch`] gave it the event bus it takes them from a
//! per-node cache that domain events keep exact on this node and a 1 s lifetime
//! bounds across nodes (`subjects`); without it, from the store every time. It
//! builds Cedar entities and context and evaluates the slice of the tenant's policy
//! set that can apply to the request's action and resource type
//! (`policies::slices`). Policy sets are cached per tenant; the cached version is
//! compared with the stored one at most every `version_check` (one indexed read)
//! and dropped at once by [`Pdp::invalidate`] (the server calls it on
//! `TenantChanged`).
//!
//! Nothing is written on the request path: decisions go to the log through a
//! bounded queue and a background writer, and no decision is given that the log
//! does not receive (`log`: a full queue holds the evaluation back, or, when
//! sampling, a gap record counts what was skipped). When everything an evaluation
//! needs is in memory, [`Pdp::evaluate_cached`] answers without touching the store
//! at all, so a caller on an async runtime can skip the hop to a blocking thread.
//!
//! Requests may carry members the PDP does not read (AuthZEN asks for that
//! leniency); each record names them and [`Pdp::unknown_keys_seen`] counts them, so a
//! PEP's misspelt `purpose` shows up. Members it reads must have the schema's type.
//!
//! Reason codes come from policy annotations — see `policies/default.cedar`.

mod authzen;
mod context;
mod facts;
mod log;
mod operators;
mod policies;
mod store;
mod subjects;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fast_path;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use cedar_policy::{Authorizer, PolicyId, PolicySet, Request, Schema};
use chrono::{DateTime, Utc};
use gatehouse_core::SharedClock;
use gatehouse_core::events::EventBus;
use gatehouse_core::ids::TenantId;
use gatehouse_identity_store::Pool;
use gatehouse_identity_store::decision_log::NewDecision;
use serde_json::{Map, Value, json};

pub use authzen::{
    Action, Entity, EvaluationRequest, EvaluationsOptions, EvaluationsRequest, EvaluationsSemantic,
    PartialEvaluation, Resource, Subject,
};
pub use facts::{DecisionSink, PolicySource, StoredPolicies, SubjectFacts, UserFacts};
pub use log::{LogOverflow, LogStats};
pub use operators::{ADMIN_PEP, OperatorRequest, SUBJECT_OPERATOR};
pub use policies::{DEFAULT_POLICIES, SCHEMA_TEXT, reason};
pub use store::{StoreDecisionLog, StoreFacts, StorePolicies};

use crate::ConsentError;

/// Subjects the refresher reads in one go: five queries and their entities are
/// well under a millisecond of CPU before it yields the core (64 held it for 3 ms
/// while a request thread waited).
const REFRESH_CHUNK: usize = 16;

/// The subject type whose facts come from the store.
pub const SUBJECT_USER: &str = "user";

/// Distinct unknown member names counted one by one; later ones count as
/// [`OTHER_UNKNOWN_KEYS`], so a PEP sending random names cannot grow the table
/// (or a metric's label set) without bound.
const MAX_UNKNOWN_KEY_NAMES: usize = 100;
pub const OTHER_UNKNOWN_KEYS: &str = "other";

/// Where an evaluation may take what it needs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Store,
    /// Caches only: stop with [`Stop::NeedsStore`] rather than read the store.
    Memory,
}

/// Why an evaluation stopped.
#[derive(Debug)]
enum Stop {
    Failed(ConsentError),
    /// A memory-only evaluation found something uncached.
    NeedsStore,
}

impl From<ConsentError> for Stop {
    fn from(error: ConsentError) -> Self {
        Stop::Failed(error)
    }
}

impl Stop {
    /// For evaluations that may use the store, which never stop for it.
    fn into_error(self) -> ConsentError {
        match self {
            Stop::Failed(error) => error,
            Stop::NeedsStore => ConsentError::Internal("a store-backed evaluation stopped".into()),
        }
    }

    fn cached<T>(outcome: Result<T, Stop>) -> Option<Result<T, ConsentError>> {
        match outcome {
            Ok(value) => Some(Ok(value)),
            Err(Stop::Failed(error)) => Some(Err(error)),
            Err(Stop::NeedsStore) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PdpConfig {
    /// How often a cached policy set is compared with the stored version.
    pub version_check: Duration,
    /// Decision log queue length; what happens beyond it is `log_overflow`.
    pub log_capacity: usize,
    pub log_batch: usize,
    pub log_flush_every: Duration,
    pub log_overflow: LogOverflow,
    /// With [`LogOverflow::Wait`], how long an evaluation waits for room in a full
    /// queue before it fails (`Unavailable`) rather than go unlogged.
    pub log_wait: Duration,
    /// How long a subject's facts may serve from the cache at most (once
    /// [`Pdp::watch`] switched it on); events drop them sooner. Zero: no cache.
    pub subject_ttl: Duration,
    /// Subjects cached at most.
    pub subject_capacity: usize,
}

impl Default for PdpConfig {
    fn default() -> Self {
        PdpConfig {
            version_check: Duration::from_secs(2),
            // ≈ 7 s of decisions at 9,000/s: a writer starved of CPU by a saturated
            // node catches up instead of dropping records.
            log_capacity: 65_536,
            log_batch: 1024,
            log_flush_every: Duration::from_millis(200),
            log_overflow: LogOverflow::Wait,
            log_wait: Duration::from_secs(2),
            subject_ttl: Duration::from_secs(1),
            subject_capacity: 100_000,
        }
    }
}

/// The answer to one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Why not (`reason::*` or a policy's own `@reason`); `None` when allowed.
    pub reason: Option<String>,
    /// With `insufficient_authentication`: the acr value to step up to.
    pub acr_values: Option<String>,
    pub max_age: Option<i64>,
    /// The determining policies (their `@id`s): the permits that allowed, or the
    /// forbids that denied; empty for a denial that no policy permitted.
    pub policies: Vec<String>,
    /// The policy set version that decided; `None` for the built-in default.
    pub policy_version: Option<i64>,
}

impl Decision {
    /// The AuthZEN decision object (§5.5): `decision` and, for a denial, the reason
    /// (and what to step up to) in `context`.
    pub fn to_authzen(&self) -> Value {
        let Some(reason) = &self.reason else {
            return json!({ "decision": self.allowed });
        };
        let mut context = Map::new();
        context.insert("reason".into(), Value::String(reason.clone()));
        if let Some(acr) = &self.acr_values {
            context.insert("acr_values".into(), Value::String(acr.clone()));
        }
        if let Some(age) = self.max_age {
            context.insert("max_age".into(), Value::from(age));
        }
        json!({ "decision": self.allowed, "context": context })
    }
}

/// What the batch endpoint answers: a single decision when the request had no
/// `evaluations` (§7.1), else one entry per evaluated request.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchOutcome {
    Single(Decision),
    Many(Vec<Value>),
}

impl BatchOutcome {
    pub fn to_authzen(&self) -> Value {
        match self {
            BatchOutcome::Single(decision) => decision.to_authzen(),
            BatchOutcome::Many(entries) => json!({ "evaluations": entries }),
        }
    }
}

/// A result of compiling a policy set (for `gatehouse policy load` and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySummary {
    pub policies: Vec<String>,
}

#[derive(Debug)]
struct Loaded {
    version: Option<i64>,
    set: PolicySet,
    /// `set` sliced per declared action and resource type (see `policies::slices`).
    slices: HashMap<String, policies::ActionSlice>,
    /// The annotations decisions read, per policy.
    notes: HashMap<PolicyId, policies::Notes>,
    /// Milliseconds since the PDP started when the version was last confirmed.
    checked_at: AtomicU64,
}

impl Loaded {
    fn new(
        schema: &Schema,
        version: Option<i64>,
        set: PolicySet,
        checked_at: u64,
    ) -> Result<Loaded, ConsentError> {
        Ok(Loaded {
            version,
            slices: policies::slices(schema, &set)?,
            notes: policies::notes(&set),
            set,
            checked_at: AtomicU64::new(checked_at),
        })
    }

    /// The same policies, confirmed at `checked_at` (the default set, for a tenant
    /// that has none of its own).
    fn confirmed_copy(&self, checked_at: u64) -> Loaded {
        Loaded {
            version: self.version,
            set: self.set.clone(),
            slices: self.slices.clone(),
            notes: self.notes.clone(),
            checked_at: AtomicU64::new(checked_at),
        }
    }
}

#[derive(Debug)]
struct Inner {
    clock: SharedClock,
    schema: Schema,
    names: context::Names,
    authorizer: Authorizer,
    default_set: Arc<Loaded>,
    /// Gatehouse's own administration rules (`policies/operators.*`).
    operators: operators::OperatorPolicies,
    sets: RwLock<HashMap<TenantId, Arc<Loaded>>>,
    subjects: subjects::SubjectCache,
    source: Arc<dyn PolicySource>,
    facts: Arc<dyn SubjectFacts>,
    log: log::DecisionLogger,
    /// Evaluations that carried each unknown member (see `context::unknown_keys`).
    unknown_keys: Mutex<HashMap<String, u64>>,
    config: PdpConfig,
    started: Instant,
}

impl Inner {
    /// The subject `id` as the store has it at `now`.
    fn read_subject(
        &self,
        tenant: TenantId,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<subjects::Subject>>, ConsentError> {
        let Some(facts) = self.facts.user(tenant, id, now)? else {
            return Ok(None);
        };
        Ok(Some(self.subject_of(&facts)?))
    }

    /// Reads the subjects in use again before they expire (see `subjects`), a
    /// few dozen per store read. A store failure ends the round; the subjects
    /// then expire and requests read (or fail) as they would without a cache.
    fn refresh_subjects(&self) {
        let cache = &self.subjects;
        let mut due: HashMap<TenantId, Vec<String>> = HashMap::new();
        for (tenant, id) in cache.due(self.clock.now()) {
            due.entry(tenant).or_default().push(id);
        }
        for (tenant, ids) in due {
            for chunk in ids.chunks(REFRESH_CHUNK) {
                let epoch = cache.epoch();
                let now = self.clock.now();
                let asked: Vec<&str> = chunk.iter().map(String::as_str).collect();
                let found = match self.facts.users(tenant, &asked, now) {
                    Ok(found) => found,
                    Err(error) => {
                        tracing::warn!(%error, %tenant, "PDP subject refresh failed");
                        return;
                    }
                };
                for id in chunk {
                    let subject = match found.get(id).map(|facts| self.subject_of(facts)) {
                        None => None,
                        Some(Ok(subject)) => Some(subject),
                        Some(Err(error)) => {
                            tracing::warn!(%error, %tenant, "PDP subject refresh failed");
                            continue;
                        }
                    };
                    cache.keep(tenant, id, subject.as_ref(), now, epoch);
                }
                // Background work in small steps: a request waiting for this core
                // gets it after one chunk, not after a scheduler slice.
                std::thread::yield_now();
            }
        }
    }

    fn subject_of(&self, facts: &UserFacts) -> Result<Arc<subjects::Subject>, ConsentError> {
        let principal = context::user_entity(&self.names, facts)?;
        Ok(Arc::new(subjects::Subject::new(principal)?))
    }
}

#[derive(Clone, Debug)]
pub struct Pdp {
    inner: Arc<Inner>,
}

impl Pdp {
    /// The PDP on the identity store.
    pub fn new(pool: Pool, clock: SharedClock) -> Result<Pdp, ConsentError> {
        Self::on_store(pool, clock, PdpConfig::default())
    }

    /// The PDP on the identity store, configured.
    pub fn on_store(
        pool: Pool,
        clock: SharedClock,
        config: PdpConfig,
    ) -> Result<Pdp, ConsentError> {
        Self::with_parts(
            clock,
            Arc::new(StorePolicies::new(pool.clone())),
            Arc::new(StoreFacts::new(pool.clone())),
            Arc::new(StoreDecisionLog::new(pool)),
            config,
        )
    }

    pub fn with_parts(
        clock: SharedClock,
        source: Arc<dyn PolicySource>,
        facts: Arc<dyn SubjectFacts>,
        sink: Arc<dyn DecisionSink>,
        config: PdpConfig,
    ) -> Result<Pdp, ConsentError> {
        let schema = policies::schema()?;
        let default_set = policies::compile(&schema, DEFAULT_POLICIES)
            .map_err(|e| ConsentError::Internal(format!("built-in default policies: {e}")))?;
        let default_set = Loaded::new(&schema, None, default_set, 0)?;
        let log = log::DecisionLogger::start(
            sink,
            config.log_capacity,
            config.log_batch,
            config.log_flush_every,
            config.log_overflow,
            config.log_wait,
        )
        .map_err(|e| ConsentError::Internal(format!("decision log writer: {e}")))?;
        Ok(Pdp {
            inner: Arc::new(Inner {
                clock,
                subjects: subjects::SubjectCache::new(config.subject_ttl, config.subject_capacity),
                schema,
                names: context::Names::new()?,
                authorizer: Authorizer::new(),
                default_set: Arc::new(default_set),
                operators: operators::OperatorPolicies::compile()?,
                sets: RwLock::new(HashMap::new()),
                source,
                facts,
                log,
                unknown_keys: Mutex::new(HashMap::new()),
                config,
                started: Instant::now(),
            }),
        })
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Parses and validates `text` without saving it.
    pub fn check_policies(&self, text: &str) -> Result<PolicySummary, ConsentError> {
        let set = policies::compile(&self.inner.schema, text)?;
        Ok(PolicySummary {
            policies: set.policies().map(|p| p.id().to_string()).collect(),
        })
    }

    /// Validates `text` and stores it as the tenant's next version, which serves from
    /// now on. A set that does not parse or validate is refused with the message and
    /// the previous set keeps serving.
    pub fn save_policies(
        &self,
        tenant: TenantId,
        text: &str,
        created_by: &str,
    ) -> Result<i64, ConsentError> {
        self.check_policies(text)?;
        let version = self
            .inner
            .source
            .save(tenant, self.inner.clock.now(), text, created_by)?;
        self.invalidate(Some(tenant));
        Ok(version)
    }

    /// Switches the subject cache on, fed by `events` (see `subjects`), and starts the
    /// thread that reads subjects in use again before they expire. Idempotent;
    /// without it every evaluation reads the subject from the store.
    pub fn watch(&self, events: &EventBus) {
        if !self.inner.subjects.watch(events) {
            return;
        }
        let every = self.inner.subjects.refresh_every();
        let pdp = Arc::downgrade(&self.inner);
        let started = std::thread::Builder::new()
            .name("pdp-subjects".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    // Ends with the PDP.
                    let Some(inner) = pdp.upgrade() else { return };
                    inner.refresh_subjects();
                }
            });
        if let Err(error) = started {
            tracing::warn!(%error, "PDP subject refresher did not start; subjects are read when they expire");
        }
    }

    /// One round of the subject refresher, now (tests; the thread runs it every
    /// `subject_ttl / 4`).
    #[cfg(test)]
    fn refresh_subjects_now(&self) {
        self.inner.refresh_subjects();
    }

    /// Forgets cached policy sets (one tenant's, or all on `Resync`).
    pub fn invalidate(&self, tenant: Option<TenantId>) {
        let mut sets = self.inner.sets.write().unwrap_or_else(|p| p.into_inner());
        match tenant {
            Some(tenant) => {
                sets.remove(&tenant);
            }
            None => sets.clear(),
        }
    }

    /// The cached policy set of `tenant` when it needs no version check now.
    fn cached_policies(&self, tenant: TenantId) -> Option<Arc<Loaded>> {
        let now = self.millis();
        let window = u64::try_from(self.inner.config.version_check.as_millis()).unwrap_or(0);
        self.inner
            .sets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant)
            .filter(|loaded| now.saturating_sub(loaded.checked_at.load(Ordering::Relaxed)) < window)
            .cloned()
    }

    /// The policy set serving `tenant`: cached, re-checked against the stored version
    /// at most every `version_check`.
    fn policies_for(&self, tenant: TenantId) -> Result<Arc<Loaded>, ConsentError> {
        if let Some(fresh) = self.cached_policies(tenant) {
            return Ok(fresh);
        }
        let now = self.millis();
        let cached = self
            .inner
            .sets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant)
            .cloned();
        if let Some(loaded) = &cached {
            match self.inner.source.latest_version(tenant) {
                Ok(version) if version == loaded.version => {
                    loaded.checked_at.store(now, Ordering::Relaxed);
                    return Ok(Arc::clone(loaded));
                }
                Ok(_) => {}
                Err(error) => {
                    // Serve what we have rather than fail every request while the
                    // database is away; the next window tries again.
                    tracing::warn!(%error, %tenant, "policy version check failed");
                    loaded.checked_at.store(now, Ordering::Relaxed);
                    return Ok(Arc::clone(loaded));
                }
            }
        }
        let loaded = match self.inner.source.latest(tenant)? {
            None => Arc::new(self.inner.default_set.confirmed_copy(now)),
            Some(stored) => match policies::compile(&self.inner.schema, &stored.text)
                .and_then(|set| Loaded::new(&self.inner.schema, Some(stored.version), set, now))
            {
                Ok(loaded) => Arc::new(loaded),
                Err(error) => {
                    // Saved sets were validated; this means the schema changed under
                    // them. Keep the last good set if there is one.
                    tracing::error!(%error, %tenant, version = stored.version, "stored policy set no longer compiles");
                    return cached.ok_or(error);
                }
            },
        };
        self.inner
            .sets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant, Arc::clone(&loaded));
        Ok(loaded)
    }

    /// The serving policy set's version (`None`: the built-in default).
    pub fn serving_version(&self, tenant: TenantId) -> Result<Option<i64>, ConsentError> {
        Ok(self.policies_for(tenant)?.version)
    }

    /// One evaluation. `caller` is the client id of the PEP (its consent purposes
    /// default to its own client id); `request_id` goes to the decision log.
    pub fn evaluate(
        &self,
        tenant: TenantId,
        caller: &str,
        request: &EvaluationRequest,
        request_id: Option<&str>,
    ) -> Result<Decision, ConsentError> {
        self.single(Reach::Store, tenant, caller, request, request_id)
            .map_err(Stop::into_error)
    }

    /// [`Pdp::evaluate`] from memory only: `None` when the policy set is due for its
    /// version check or the subject is not cached (nothing is evaluated or logged
    /// then; the caller evaluates on a blocking thread instead).
    pub fn evaluate_cached(
        &self,
        tenant: TenantId,
        caller: &str,
        request: &EvaluationRequest,
        request_id: Option<&str>,
    ) -> Option<Result<Decision, ConsentError>> {
        Stop::cached(self.single(Reach::Memory, tenant, caller, request, request_id))
    }

    fn single(
        &self,
        reach: Reach,
        tenant: TenantId,
        caller: &str,
        request: &EvaluationRequest,
        request_id: Option<&str>,
    ) -> Result<Decision, Stop> {
        let now = self.inner.clock.now();
        let decision = self.decide(reach, tenant, caller, request, now, None)?;
        let entry = self.log_entry(tenant, caller, request, &decision, now, request_id);
        self.keep(reach, vec![entry])?;
        Ok(decision)
    }

    /// Hands decided records to the log — all of them, or (from memory, where the
    /// thread must not wait) none, stopping for the caller to decide again on a
    /// thread that may wait — and counts their unknown members.
    fn keep(&self, reach: Reach, entries: Vec<NewDecision>) -> Result<(), Stop> {
        let unknown: Vec<String> = entries
            .iter()
            .flat_map(|entry| entry.unknown_keys.iter().cloned())
            .collect();
        match reach {
            Reach::Store => self.inner.log.record(entries)?,
            Reach::Memory if self.inner.log.try_record(entries) => {}
            Reach::Memory => return Err(Stop::NeedsStore),
        }
        if !unknown.is_empty() {
            self.count_unknown(&unknown);
        }
        Ok(())
    }

    fn count_unknown(&self, names: &[String]) {
        let mut counts = self
            .inner
            .unknown_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for name in names {
            if let Some(count) = counts.get_mut(name) {
                *count += 1;
            } else if counts.len() < MAX_UNKNOWN_KEY_NAMES {
                counts.insert(name.clone(), 1);
            } else {
                *counts.entry(OTHER_UNKNOWN_KEYS.to_owned()).or_default() += 1;
            }
        }
    }

    /// The subject `id`: from the cache when it holds the user, else (unless
    /// `reach` is memory only) read from the store, built, and kept.
    fn subject(
        &self,
        reach: Reach,
        tenant: TenantId,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<subjects::Subject>>, Stop> {
        let cache = &self.inner.subjects;
        let (hit, epoch) = cache.get(tenant, id, now);
        if let Some(known) = hit {
            return Ok(known);
        }
        if reach == Reach::Memory {
            return Err(Stop::NeedsStore);
        }
        let subject = self.inner.read_subject(tenant, id, now)?;
        cache.keep(tenant, id, subject.as_ref(), now, epoch);
        Ok(subject)
    }

    /// Whether an operator may take an admin action, by the shipped operator
    /// policies; logged like any evaluation (caller [`ADMIN_PEP`]). A request
    /// naming an action the policies do not know is refused as invalid.
    pub fn authorize_operator(
        &self,
        tenant: TenantId,
        request: &OperatorRequest,
        request_id: Option<&str>,
    ) -> Result<Decision, ConsentError> {
        let decision = self
            .inner
            .operators
            .judge(&self.inner.authorizer, request)?;
        let now = self.inner.clock.now();
        let entry = self.log_entry(
            tenant,
            ADMIN_PEP,
            &request.as_evaluation(),
            &decision,
            now,
            request_id,
        );
        self.keep(Reach::Store, vec![entry])
            .map_err(Stop::into_error)?;
        Ok(decision)
    }

    /// The decision on an operator's request without logging it (what the admin
    /// API's contract states about each operation's roles).
    pub fn judge_operator(&self, request: &OperatorRequest) -> Result<Decision, ConsentError> {
        self.inner.operators.judge(&self.inner.authorizer, request)
    }

    /// Whether the shipped operator policies declare `action`.
    pub fn knows_operator_action(&self, action: &str) -> bool {
        self.inner.operators.knows(action)
    }

    /// Evaluates without writing to the decision log (`gatehouse policy test`).
    pub fn dry_run(
        &self,
        tenant: TenantId,
        caller: &str,
        request: &EvaluationRequest,
    ) -> Result<Decision, ConsentError> {
        self.decide(
            Reach::Store,
            tenant,
            caller,
            request,
            self.inner.clock.now(),
            None,
        )
        .map_err(Stop::into_error)
    }

    /// The Access Evaluations API (§7): defaults, per-entry overrides and the
    /// evaluation semantic. An entry that cannot be evaluated (a member missing or
    /// malformed) is a denial carrying the error, as §7.2.1 allows; a store failure
    /// fails the whole batch.
    pub fn evaluate_batch(
        &self,
        tenant: TenantId,
        caller: &str,
        batch: &EvaluationsRequest,
        request_id: Option<&str>,
    ) -> Result<BatchOutcome, ConsentError> {
        self.batch(Reach::Store, tenant, caller, batch, request_id)
            .map_err(Stop::into_error)
    }

    /// [`Pdp::evaluate_batch`] from memory only, like [`Pdp::evaluate_cached`]:
    /// `None` when any entry would need the store (nothing is logged then).
    pub fn evaluate_batch_cached(
        &self,
        tenant: TenantId,
        caller: &str,
        batch: &EvaluationsRequest,
        request_id: Option<&str>,
    ) -> Option<Result<BatchOutcome, ConsentError>> {
        Stop::cached(self.batch(Reach::Memory, tenant, caller, batch, request_id))
    }

    fn batch(
        &self,
        reach: Reach,
        tenant: TenantId,
        caller: &str,
        batch: &EvaluationsRequest,
        request_id: Option<&str>,
    ) -> Result<BatchOutcome, Stop> {
        let entries = match batch.evaluations.as_deref() {
            None | Some([]) => {
                let single = batch.resolve(&PartialEvaluation::default())?;
                return Ok(BatchOutcome::Single(
                    self.single(reach, tenant, caller, &single, request_id)?,
                ));
            }
            Some(entries) => entries,
        };
        let semantic = batch.semantic();
        let now = self.inner.clock.now();
        let mut out = Vec::with_capacity(entries.len());
        // Logged once the whole batch is decided: a memory-only pass that stops
        // half-way for the store must leave nothing behind.
        let mut logged = Vec::with_capacity(entries.len());
        // The last subject: batches mostly ask about one subject.
        let mut cached: Option<(String, Option<Arc<subjects::Subject>>)> = None;
        for entry in entries {
            // An entry that cannot be evaluated (a member missing, a malformed
            // context) is a denial carrying the error; the batch goes on.
            let mut decide_entry = || -> Result<Decision, Stop> {
                let request = batch.resolve(entry)?;
                let id = &request.subject.id;
                if request.subject.kind == SUBJECT_USER
                    && cached.as_ref().is_none_or(|(known, _)| known != id)
                {
                    cached = Some((id.clone(), self.subject(reach, tenant, id, now)?));
                }
                let known = cached
                    .as_ref()
                    .filter(|(known, _)| known == id)
                    .map(|(_, subject)| subject.as_deref());
                let decision = self.decide(reach, tenant, caller, &request, now, known)?;
                logged.push(self.log_entry(tenant, caller, &request, &decision, now, request_id));
                Ok(decision)
            };
            let (allowed, value) = match decide_entry() {
                Ok(decision) => (decision.allowed, decision.to_authzen()),
                Err(Stop::Failed(ConsentError::Invalid(message))) => (
                    false,
                    json!({
                        "decision": false,
                        "context": { "reason": "invalid_request", "error": { "status": 400, "message": message } }
                    }),
                ),
                Err(other) => return Err(other),
            };
            out.push(value);
            let stop = match semantic {
                EvaluationsSemantic::ExecuteAll => false,
                EvaluationsSemantic::DenyOnFirstDeny => !allowed,
                EvaluationsSemantic::PermitOnFirstPermit => allowed,
            };
            if stop {
                break;
            }
        }
        self.keep(reach, logged)?;
        Ok(BatchOutcome::Many(out))
    }

    /// `known`: the subject when the caller has looked it up already (a batch about
    /// one subject looks once); `Some(None)` for an unknown subject.
    fn decide(
        &self,
        reach: Reach,
        tenant: TenantId,
        caller: &str,
        request: &EvaluationRequest,
        now: DateTime<Utc>,
        known: Option<Option<&subjects::Subject>>,
    ) -> Result<Decision, Stop> {
        let loaded = match reach {
            Reach::Store => self.policies_for(tenant)?,
            Reach::Memory => self.cached_policies(tenant).ok_or(Stop::NeedsStore)?,
        };
        if request.subject.kind != SUBJECT_USER {
            return Err(ConsentError::Invalid(format!(
                "subject.type `{}` is not supported (use `{SUBJECT_USER}`)",
                request.subject.kind
            ))
            .into());
        }
        let fetched;
        let subject = match known {
            Some(subject) => subject,
            None => {
                fetched = self.subject(reach, tenant, &request.subject.id, now)?;
                fetched.as_deref()
            }
        };
        Ok(self.judge(&loaded, caller, request, now, subject)?)
    }

    /// The Cedar evaluation of `request` about `subject` (`None`: no such user)
    /// under `loaded`.
    fn judge(
        &self,
        loaded: &Loaded,
        caller: &str,
        request: &EvaluationRequest,
        now: DateTime<Utc>,
        subject: Option<&subjects::Subject>,
    ) -> Result<Decision, ConsentError> {
        let Some(subject) = subject else {
            return Ok(Decision {
                allowed: false,
                reason: Some(reason::UNKNOWN_SUBJECT.to_owned()),
                acr_values: None,
                max_age: None,
                policies: Vec::new(),
                policy_version: loaded.version,
            });
        };
        let names = &self.inner.names;
        let resource = context::resource_entity(names, &request.resource)?;
        let action = context::action_uid(names, &request.action.name);
        let cedar_context = context::build(names, &request.context, caller, now)?;
        let cedar_request = Request::new(
            subject.principal.clone(),
            action,
            resource.uid(),
            cedar_context,
            None,
        )
        .map_err(|e| ConsentError::Invalid(e.to_string()))?;
        // Without the schema: the entities are built to match it, and checking them
        // again on every request would be pure cost.
        let entities = subject
            .entities
            .clone()
            .add_entities([resource], None)
            .map_err(|e| ConsentError::Internal(format!("entities: {e}")))?;
        // Only the policies that can apply to this action and resource type; an
        // undeclared action has no slice and meets the whole set (where only
        // unconstrained scopes match).
        let set = loaded
            .slices
            .get(&request.action.name)
            .map_or(&loaded.set, |slice| slice.for_type(&request.resource.kind));
        let response = self
            .inner
            .authorizer
            .is_authorized(&cedar_request, set, &entities);
        for error in response.diagnostics().errors() {
            tracing::debug!(%error, "policy evaluation error (the policy is skipped)");
        }
        let outcome = policies::outcome(&loaded.notes, &response);
        Ok(Decision {
            allowed: outcome.allowed,
            reason: outcome.reason,
            acr_values: outcome.acr_values,
            max_age: outcome.max_age,
            policies: outcome.policies,
            policy_version: loaded.version,
        })
    }

    /// The decision log's record of an evaluation: the request serialized once, as
    /// JSON text, with the caller and the policy set version.
    fn log_entry(
        &self,
        tenant: TenantId,
        caller: &str,
        request: &EvaluationRequest,
        decision: &Decision,
        now: DateTime<Utc>,
        request_id: Option<&str>,
    ) -> NewDecision {
        #[derive(serde::Serialize)]
        struct Logged<'a> {
            subject: &'a Subject,
            action: &'a Action,
            resource: &'a Resource,
            #[serde(skip_serializing_if = "Map::is_empty")]
            context: &'a Map<String, Value>,
            caller: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            policy_version: Option<i64>,
        }
        let logged = Logged {
            subject: &request.subject,
            action: &request.action,
            resource: &request.resource,
            context: &request.context,
            caller,
            policy_version: decision.policy_version,
        };
        NewDecision {
            tenant_id: tenant,
            at: now,
            request: serde_json::to_string(&logged).unwrap_or_else(|_| "null".to_owned()),
            decision: decision.allowed,
            reason: decision.reason.clone(),
            policies: decision.policies.clone(),
            request_id: request_id.map(str::to_owned),
            unknown_keys: context::unknown_keys(request),
            skipped: None,
        }
    }

    /// Waits until the decisions made so far are written (tests, the CLI, shutdown).
    pub fn flush_log(&self) {
        self.inner.log.flush(Duration::from_secs(10));
    }

    /// The decision log's counters: waits for room, sampled-out and failed
    /// records (each in a gap record), the queue's length.
    pub fn decision_log_stats(&self) -> LogStats {
        self.inner.log.stats()
    }

    /// Decisions written to the decision log since start, by decision and reason
    /// code: `(decision, reason, count)`; a decision without a reason counts under
    /// `none`, reasons past the first hundred under `_other`.
    pub fn decisions_logged(&self) -> Vec<(bool, String, u64)> {
        self.inner.log.logged()
    }

    /// How many evaluations carried each member the PDP does not read
    /// (`context.consent`, …), since start; names beyond the first
    /// hundred count under [`OTHER_UNKNOWN_KEYS`].
    pub fn unknown_keys_seen(&self) -> Vec<(String, u64)> {
        let counts = self
            .inner
            .unknown_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut seen: Vec<(String, u64)> = counts.iter().map(|(k, v)| (k.clone(), *v)).collect();
        seen.sort_unstable();
        seen
    }
}
