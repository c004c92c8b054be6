//! The decision log writer: evaluations hand their records to a bounded queue and
//! return; one background thread writes them in batches (every `batch` records or
//! `flush_every`, whichever comes first).
//!
//! No record is lost without a trace. When the queue is full, [`LogOverflow::Wait`]
//! (the default) holds the evaluating thread until there is room, at most `wait`;
//! past that the evaluation fails with [`ConsentError::Unavailable`] rather than
//! answer with a decision the log does not have. [`LogOverflow::Sample`] skips the
//! record instead, counts it per tenant, and the writer adds a gap record with the
//! exact count to the log. A write the store refuses is counted the same way: its
//! decisions become a gap record. Every case is counted in [`LogStats`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gatehouse_core::ids::TenantId;
use gatehouse_identity_store::decision_log::NewDecision;

use super::facts::DecisionSink;
use crate::ConsentError;

/// What a full decision log queue does with one more record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogOverflow {
    /// The evaluation waits for room (bounded); the PDP never drops a record.
    #[default]
    Wait,
    /// The record is skipped and counted; a gap record in the log says how many.
    Sample,
}

/// The decision log's counters since start (exported as metrics by the server).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Records waiting for the writer now.
    pub queued: u64,
    /// Evaluations that found the queue full and waited for room.
    pub waits: u64,
    /// Evaluations that waited longer than allowed and failed without a decision.
    pub wait_timeouts: u64,
    /// Records skipped by sampling (each counted in a gap record).
    pub skipped: u64,
    /// Records lost to a failed write (each counted in a gap record).
    pub failed: u64,
}

/// How often a gap record whose write fails is tried again before it is given up
/// (with an error line): a gap the store keeps refusing (its tenant deleted) must
/// not hold the writer forever.
const GAP_ATTEMPTS: u8 = 3;

/// How often a writer with pending records looks for more. It sleeps in between
/// instead of being woken per record, so a record costs its sender no wake-up (a
/// futex call) — the writer wakes about once per batch, not once per record.
const POLL: Duration = Duration::from_millis(10);

/// Decisions of one tenant that are not in the log.
#[derive(Debug, Clone, Copy)]
struct Gap {
    skipped: u64,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    attempts: u8,
}

impl Gap {
    fn one(at: DateTime<Utc>) -> Gap {
        Gap {
            skipped: 1,
            from: at,
            until: at,
            attempts: 0,
        }
    }

    fn merge(&mut self, other: &Gap) {
        self.skipped += other.skipped;
        self.from = self.from.min(other.from);
        self.until = self.until.max(other.until);
        self.attempts = self.attempts.max(other.attempts);
    }
}

fn add_gap(gaps: &mut HashMap<TenantId, Gap>, tenant: TenantId, gap: Gap) {
    gaps.entry(tenant)
        .and_modify(|known| known.merge(&gap))
        .or_insert(gap);
}

#[derive(Debug, Default)]
struct Queue {
    records: VecDeque<NewDecision>,
    /// Sampled-out records per tenant, for the writer's next gap records.
    gaps: HashMap<TenantId, Gap>,
    /// Flush requests, answered once everything queued before them is written.
    acks: Vec<mpsc::Sender<()>>,
    /// The writer sleeps on `Shared::work` until a record arrives.
    writer_idle: bool,
    /// Evaluations sleeping on `Shared::room`.
    waiting: usize,
    /// The logger is gone: write what is left and stop.
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    room: Condvar,
    capacity: usize,
    waits: AtomicU64,
    wait_timeouts: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    /// Decisions written to the log, by decision and reason code (for metrics);
    /// updated by the writer after each batch, off the evaluation path.
    logged: Mutex<HashMap<(bool, String), u64>>,
}

/// Reason codes come from policies; past this many distinct ones, the rest count
/// together under [`OTHER_REASONS`] so metrics stay bounded.
const MAX_REASONS: usize = 100;
pub const OTHER_REASONS: &str = "_other";

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, queue: &mut Queue, record: NewDecision) {
        queue.records.push_back(record);
        if queue.writer_idle {
            queue.writer_idle = false;
            self.work.notify_one();
        }
    }

    fn skip(&self, queue: &mut Queue, record: &NewDecision) {
        add_gap(&mut queue.gaps, record.tenant_id, Gap::one(record.at));
        let count = self.skipped.fetch_add(1, Ordering::Relaxed) + 1;
        // Every power of two: a flood is visible without flooding the log.
        if count.is_power_of_two() {
            tracing::warn!(
                skipped = count,
                "decision log queue full; sampling: records skipped, gap records count them"
            );
        }
    }
}

#[derive(Debug)]
pub(crate) struct DecisionLogger {
    shared: Arc<Shared>,
    overflow: LogOverflow,
    wait: Duration,
}

impl DecisionLogger {
    pub(crate) fn start(
        sink: Arc<dyn DecisionSink>,
        capacity: usize,
        batch: usize,
        flush_every: Duration,
        overflow: LogOverflow,
        wait: Duration,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            room: Condvar::new(),
            capacity: capacity.max(1),
            waits: AtomicU64::new(0),
            wait_timeouts: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            logged: Mutex::new(HashMap::new()),
        });
        let writer = Writer {
            shared: Arc::clone(&shared),
            sink,
            batch: batch.max(1),
            flush_every,
        };
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || writer.run())?;
        Ok(DecisionLogger {
            shared,
            overflow,
            wait,
        })
    }

    /// Queues `records`. A full queue makes this wait for room (at most `wait`
    /// for all of them, then `Unavailable`) or, when sampling, skips and counts.
    pub(crate) fn record(
        &self,
        records: impl IntoIterator<Item = NewDecision>,
    ) -> Result<(), ConsentError> {
        let shared = &*self.shared;
        let mut queue = shared.lock();
        let mut deadline = None;
        for record in records {
            if queue.records.len() >= shared.capacity {
                if self.overflow == LogOverflow::Sample {
                    shared.skip(&mut queue, &record);
                    continue;
                }
                shared.waits.fetch_add(1, Ordering::Relaxed);
                let until = *deadline.get_or_insert_with(|| Instant::now() + self.wait);
                queue.waiting += 1;
                while queue.records.len() >= shared.capacity {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    queue = shared
                        .room
                        .wait_timeout(queue, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                queue.waiting -= 1;
                if queue.records.len() >= shared.capacity {
                    let count = shared.wait_timeouts.fetch_add(1, Ordering::Relaxed) + 1;
                    if count.is_power_of_two() {
                        tracing::error!(
                            timeouts = count,
                            waited_ms = u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX),
                            "decision log queue stayed full; evaluations fail until it drains"
                        );
                    }
                    return Err(ConsentError::Unavailable(
                        "the decision log cannot take the record; try again".into(),
                    ));
                }
            }
            shared.push(&mut queue, record);
        }
        Ok(())
    }

    /// [`Self::record`] without waiting: `false` (and nothing queued) when waiting
    /// would be needed — the caller then decides again where it may wait. Sampling
    /// never needs to wait.
    pub(crate) fn try_record(&self, records: Vec<NewDecision>) -> bool {
        let shared = &*self.shared;
        let mut queue = shared.lock();
        if self.overflow == LogOverflow::Wait
            && queue.records.len() + records.len() > shared.capacity
        {
            return false;
        }
        for record in records {
            if queue.records.len() >= shared.capacity {
                shared.skip(&mut queue, &record);
            } else {
                shared.push(&mut queue, record);
            }
        }
        true
    }

    /// Waits (at most `timeout`) until everything queued so far is written.
    pub(crate) fn flush(&self, timeout: Duration) {
        let (ack, done) = mpsc::channel();
        {
            let mut queue = self.shared.lock();
            queue.acks.push(ack);
            if queue.writer_idle {
                queue.writer_idle = false;
                self.shared.work.notify_one();
            }
        }
        let _ = done.recv_timeout(timeout);
    }

    /// Decisions written to the log since start: (decision, reason code, count).
    pub(crate) fn logged(&self) -> Vec<(bool, String, u64)> {
        let logged = self
            .shared
            .logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut counts: Vec<(bool, String, u64)> = logged
            .iter()
            .map(|((decision, reason), count)| (*decision, reason.clone(), *count))
            .collect();
        counts.sort_unstable();
        counts
    }

    pub(crate) fn stats(&self) -> LogStats {
        let shared = &*self.shared;
        let queued = shared.lock().records.len();
        LogStats {
            queued: u64::try_from(queued).unwrap_or(u64::MAX),
            waits: shared.waits.load(Ordering::Relaxed),
            wait_timeouts: shared.wait_timeouts.load(Ordering::Relaxed),
            skipped: shared.skipped.load(Ordering::Relaxed),
            failed: shared.failed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for DecisionLogger {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.closed = true;
        self.shared.work.notify_one();
    }
}

/// The background thread's side.
struct Writer {
    shared: Arc<Shared>,
    sink: Arc<dyn DecisionSink>,
    batch: usize,
    flush_every: Duration,
}

/// What one look at the queue found besides records.
struct Taken {
    closed: bool,
    /// Evaluations wait for room: write now rather than gather a fuller batch.
    waiting: bool,
}

impl Writer {
    fn run(self) {
        let mut pending: Vec<NewDecision> = Vec::with_capacity(self.batch);
        let mut gaps: HashMap<TenantId, Gap> = HashMap::new();
        let mut acks = Vec::new();
        loop {
            if !self.wait_for_work(!gaps.is_empty()) {
                return;
            }
            let due = Instant::now() + self.flush_every;
            loop {
                let room = self.batch - pending.len();
                let taken = self.take(room, &mut pending, &mut gaps, &mut acks);
                if pending.len() >= self.batch {
                    self.write(&mut pending, &mut gaps);
                    continue;
                }
                if taken.closed
                    || taken.waiting
                    || !acks.is_empty()
                    || pending.is_empty()
                    || Instant::now() >= due
                {
                    break;
                }
                std::thread::sleep(POLL.min(due.saturating_duration_since(Instant::now())));
            }
            self.write(&mut pending, &mut gaps);
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
        }
    }

    /// Sleeps until there is something to do; `false` once the logger is gone
    /// and everything is written. Gap records that failed to write are tried again
    /// after `flush_every` even when nothing new arrives.
    fn wait_for_work(&self, retry_gaps: bool) -> bool {
        let mut queue = self.shared.lock();
        loop {
            if !queue.records.is_empty() || !queue.acks.is_empty() || !queue.gaps.is_empty() {
                queue.writer_idle = false;
                return true;
            }
            if queue.closed {
                return false;
            }
            queue.writer_idle = true;
            if retry_gaps {
                let (woken, timeout) = self
                    .shared
                    .work
                    .wait_timeout(queue, self.flush_every)
                    .unwrap_or_else(PoisonError::into_inner);
                queue = woken;
                if timeout.timed_out() {
                    queue.writer_idle = false;
                    return true;
                }
            } else {
                queue = self
                    .shared
                    .work
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    /// Moves up to `room` records, every sampled gap and — once no record queued
    /// before them is left behind — the flush requests out of the queue, and wakes
    /// evaluations waiting for room.
    fn take(
        &self,
        room: usize,
        pending: &mut Vec<NewDecision>,
        gaps: &mut HashMap<TenantId, Gap>,
        acks: &mut Vec<mpsc::Sender<()>>,
    ) -> Taken {
        let mut queue = self.shared.lock();
        let count = room.min(queue.records.len());
        pending.extend(queue.records.drain(..count));
        for (tenant, gap) in queue.gaps.drain() {
            add_gap(gaps, tenant, gap);
        }
        if queue.records.is_empty() {
            acks.append(&mut queue.acks);
        }
        if count > 0 && queue.waiting > 0 {
            self.shared.room.notify_all();
        }
        Taken {
            closed: queue.closed,
            waiting: queue.waiting > 0,
        }
    }

    fn count_logged(&self, written: &[NewDecision]) {
        let mut logged = self
            .shared
            .logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for record in written {
            let reason = record.reason.as_deref().unwrap_or("none");
            let key = (record.decision, reason.to_owned());
            if let Some(count) = logged.get_mut(&key) {
                *count += 1;
            } else if logged.len() < MAX_REASONS {
                logged.insert(key, 1);
            } else {
                *logged
                    .entry((record.decision, OTHER_REASONS.to_owned()))
                    .or_insert(0) += 1;
            }
        }
    }

    /// Writes the pending decisions, then the gap records. Decisions the store
    /// refuses become a gap; a gap record it refuses is tried again later, up to
    /// [`GAP_ATTEMPTS`] times.
    fn write(&self, pending: &mut Vec<NewDecision>, gaps: &mut HashMap<TenantId, Gap>) {
        if !pending.is_empty() {
            if let Err(error) = self.sink.write(pending) {
                let lost = pending.len();
                for record in pending.iter() {
                    add_gap(gaps, record.tenant_id, Gap::one(record.at));
                }
                self.shared
                    .failed
                    .fetch_add(u64::try_from(lost).unwrap_or(u64::MAX), Ordering::Relaxed);
                tracing::error!(%error, records = lost, "writing the decision log failed; a gap record stands for them");
            } else {
                self.count_logged(pending);
            }
            pending.clear();
        }
        if !gaps.is_empty() {
            let records: Vec<NewDecision> = gaps
                .iter()
                .map(|(tenant, gap)| NewDecision::gap(*tenant, gap.from, gap.until, gap.skipped))
                .collect();
            match self.sink.write(&records) {
                Ok(_) => gaps.clear(),
                Err(error) => {
                    gaps.retain(|tenant, gap| {
                        gap.attempts += 1;
                        if gap.attempts < GAP_ATTEMPTS {
                            return true;
                        }
                        tracing::error!(%error, %tenant, skipped = gap.skipped, "a decision log gap record cannot be written; given up");
                        false
                    });
                }
            }
        }
        // See `decision_log::append`: a request thread waiting for this core gets it
        // after each statement and after the commit, not after a scheduler slice.
        std::thread::yield_now();
    }
}
