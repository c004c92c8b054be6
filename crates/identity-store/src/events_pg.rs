//! Cross-node domain events over PostgreSQL `LISTEN/NOTIFY`.
//!
//! Every node listens on one channel with a dedicated connection, and publishes
//! through another dedicated connection owned by a publisher thread: a request never
//! takes a second pooled connection to announce what it changed (with eight pooled
//! connections, eight requests each holding one and waiting for another stalled the
//! whole node), and a failed NOTIFY is retried rather than lost. Nodes on SQLite need
//! none of this: the in-process bus is the whole story there.
//!
//! The listener polls the connection's input (`PQconsumeInput`, a non-blocking read)
//! every `poll` interval; diesel exposes no socket to wait on, and a 25 ms poll
//! costs nothing measurable while keeping cross-node latency far below a second.
//! After a reconnect it delivers `Resync`, because NOTIFYs sent while it was away
//! are lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{PgConnection, RunQueryDsl};
use gatehouse_core::Error as CoreError;
use gatehouse_core::events::{DomainEvent, EventBus, EventEnvelope, EventTransport};
use gatehouse_core::ids::{EventId, NodeId};

use crate::db::{self, ConnectOptions};

pub const CHANNEL: &str = "gatehouse_events";
const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(10);
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Retries after a failed NOTIFY back off from this to [`MAX_RETRY_DELAY`].
const MIN_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
/// Events waiting for the database beyond this many are dropped oldest first, and
/// the other nodes are then told to resync (drop every cache) once it is back.
pub const OUTBOX_CAPACITY: usize = 65_536;
/// PostgreSQL refuses a NOTIFY payload of 8000 bytes or more. A bigger event (say, a
/// user's hundreds of ended sessions) is never sent: other nodes get `Resync`
/// instead, so one oversized event cannot block the queue behind it.
const MAX_PAYLOAD: usize = 7_900;

/// Publishes events to the other nodes through a dedicated connection.
///
/// [`EventTransport::publish`] only queues the event, so it never blocks a request
/// and never needs a pooled connection. A thread sends the queue in order, and on a
/// failure reconnects and sends the same event again (backing off up to 5 s): an
/// event is lost only when more than [`OUTBOX_CAPACITY`] wait at once, and then
/// the other nodes receive `Resync` instead.
#[derive(Debug)]
pub struct PgNotifyTransport {
    outbox: Arc<Outbox>,
    /// Joined on drop by a delivering (command-line) transport, so the process does
    /// not exit while the thread is closing its connection; a server's is left to
    /// end on its own.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Set for short-lived processes (the CLI): `publish` returns once the event is
    /// sent, or fails after this long.
    wait_for_delivery: Option<Duration>,
}

#[derive(Debug)]
struct Outbox {
    capacity: usize,
    state: Mutex<OutboxState>,
    /// Signalled when an event is queued, the queue empties, or the transport stops.
    changed: Condvar,
    counters: PublishCounters,
}

#[derive(Debug, Default)]
struct OutboxState {
    /// Payloads in order, each numbered so the sender pops exactly what it sent
    /// (the head may have been dropped for room while it was being sent).
    pending: VecDeque<(u64, String)>,
    next_number: u64,
    /// Events dropped since the last `Resync` went out.
    lost: u64,
    stop: bool,
}

/// What the publisher has done since start, for `/metrics`.
#[derive(Debug, Default)]
struct PublishCounters {
    published: AtomicU64,
    failed_attempts: AtomicU64,
    dropped: AtomicU64,
}

/// The publisher's counters since start and its queue length now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    pub published: u64,
    pub failed_attempts: u64,
    pub dropped: u64,
    pub queued: u64,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PgNotifyTransport {
    /// Starts the publisher thread; it connects on the first event (and after any
    /// failure) with the timeouts of `options`. `node` names this node in the
    /// `Resync` it sends after dropping events.
    pub fn start(options: ConnectOptions, node: NodeId) -> std::io::Result<Self> {
        Self::start_with_capacity(options, node, OUTBOX_CAPACITY)
    }

    /// [`PgNotifyTransport::start`] with another queue bound (tests fill it).
    pub fn start_with_capacity(
        options: ConnectOptions,
        node: NodeId,
        capacity: usize,
    ) -> std::io::Result<Self> {
        let outbox = Arc::new(Outbox {
            capacity: capacity.max(1),
            state: Mutex::new(OutboxState::default()),
            changed: Condvar::new(),
            counters: PublishCounters::default(),
        });
        let thread = std::thread::Builder::new()
            .name("gatehouse-publish".into())
            .spawn({
                let outbox = Arc::clone(&outbox);
                move || publish_loop(&options, node, &outbox)
            })?;
        Ok(PgNotifyTransport {
            outbox,
            thread: Mutex::new(Some(thread)),
            wait_for_delivery: None,
        })
    }

    /// A transport whose `publish` waits until the event has been sent (at most
    /// `timeout`), for a process that publishes and then exits.
    pub fn start_delivering(options: ConnectOptions, timeout: Duration) -> std::io::Result<Self> {
        let mut transport = Self::start(options, NodeId::new())?;
        transport.wait_for_delivery = Some(timeout);
        Ok(transport)
    }

    pub fn stats(&self) -> PublishStats {
        let counters = &self.outbox.counters;
        PublishStats {
            published: counters.published.load(Ordering::Relaxed),
            failed_attempts: counters.failed_attempts.load(Ordering::Relaxed),
            dropped: counters.dropped.load(Ordering::Relaxed),
            queued: self.outbox.lock().pending.len() as u64,
        }
    }

    /// Waits until every queued event has been sent; false if `timeout` passed
    /// first. For short-lived processes (the CLI) that publish and exit.
    pub fn flush(&self, timeout: Duration) -> bool {
        let state = self.outbox.lock();
        let (state, _) = self
            .outbox
            .changed
            .wait_timeout_while(state, timeout, |state| !state.pending.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        state.pending.is_empty()
    }
}

impl EventTransport for PgNotifyTransport {
    fn publish(&self, envelope: &EventEnvelope) -> Result<(), CoreError> {
        let payload = envelope.to_json()?;
        let mut state = self.outbox.lock();
        if payload.len() > MAX_PAYLOAD {
            state.lost += 1;
            self.outbox.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                bytes = payload.len(),
                "event too large for NOTIFY: other nodes will resync instead"
            );
            drop(state);
            self.outbox.changed.notify_all();
            return Ok(());
        }
        if state.pending.len() >= self.outbox.capacity {
            state.pending.pop_front();
            state.lost += 1;
            self.outbox.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                capacity = self.outbox.capacity,
                "event outbox full: dropped the oldest event; other nodes will resync"
            );
        }
        let number = state.next_number;
        state.next_number += 1;
        state.pending.push_back((number, payload));
        drop(state);
        self.outbox.changed.notify_all();
        match self.wait_for_delivery {
            Some(timeout) if !self.flush(timeout) => Err(CoreError::Event(format!(
                "the database did not take the event within {} ms",
                timeout.as_millis()
            ))),
            _ => Ok(()),
        }
    }
}

impl Drop for PgNotifyTransport {
    fn drop(&mut self) {
        self.outbox.lock().stop = true;
        self.outbox.changed.notify_all();
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let (Some(thread), Some(_)) = (thread, self.wait_for_delivery) {
            // Everything was delivered (or given up on) in `publish`; the thread is
            // idle and ends at once.
            let _ = thread.join();
        }
    }
}

fn publish_loop(options: &ConnectOptions, node: NodeId, outbox: &Outbox) {
    let mut conn: Option<PgConnection> = None;
    let mut delay = MIN_RETRY_DELAY;
    loop {
        // The next payload, left at the head of the queue until it has been sent;
        // `sending` says what it stands for: a resync for so many lost events, or
        // the queued event with that number.
        let (payload, sending) = {
            let state = outbox.lock();
            let state = outbox
                .changed
                .wait_while(state, |s| s.pending.is_empty() && s.lost == 0 && !s.stop)
                .unwrap_or_else(|p| p.into_inner());
            if state.stop {
                return;
            }
            if state.lost > 0 {
                (resync_payload(node), Sending::Resync(state.lost))
            } else {
                match state.pending.front() {
                    Some((number, payload)) => (payload.clone(), Sending::Event(*number)),
                    None => continue,
                }
            }
        };
        let sent = match conn.as_mut() {
            Some(pg) => notify(pg, &payload),
            None => db::connect_pg(options)
                .map_err(|e| e.to_string())
                .and_then(|mut pg| {
                    let sent = notify(&mut pg, &payload);
                    conn = Some(pg);
                    sent
                }),
        };
        match sent {
            Ok(()) => {
                delay = MIN_RETRY_DELAY;
                outbox.counters.published.fetch_add(1, Ordering::Relaxed);
                let mut state = outbox.lock();
                match sending {
                    // Events lost while the resync was on its way need one more.
                    Sending::Resync(covered) => state.lost = state.lost.saturating_sub(covered),
                    Sending::Event(number) => {
                        if state.pending.front().is_some_and(|(n, _)| *n == number) {
                            state.pending.pop_front();
                        }
                    }
                }
                drop(state);
                outbox.changed.notify_all();
            }
            Err(error) => {
                outbox
                    .counters
                    .failed_attempts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64,
                    "event not yet sent to other nodes; retrying");
                conn = None;
                // Waits on the condvar so that a stop ends the wait at once.
                let state = outbox.lock();
                let _ = outbox
                    .changed
                    .wait_timeout_while(state, delay, |s| !s.stop)
                    .unwrap_or_else(|p| p.into_inner());
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

/// What the payload being sent stands for.
enum Sending {
    /// A resync covering this many lost events.
    Resync(u64),
    /// The queued event with this number.
    Event(u64),
}

fn notify(pg: &mut PgConnection, payload: &str) -> Result<(), String> {
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(CHANNEL)
        .bind::<Text, _>(payload)
        .execute(pg)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn resync_payload(node: NodeId) -> String {
    let envelope = EventEnvelope {
        id: EventId::new(),
        origin: node,
        event: DomainEvent::Resync,
    };
    // Serialising a unit variant cannot fail; an empty payload is ignored remotely.
    envelope.to_json().unwrap_or_default()
}

/// The running listener; stops (and joins its thread) when dropped.
#[derive(Debug)]
pub struct Listener {
    stop: Arc<AtomicBool>,
    listening: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    /// Waits until the first `LISTEN` has been issued; false on timeout.
    pub fn wait_until_listening(&self, timeout: Duration) -> bool {
        let (lock, ready) = &*self.listening;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = ready
            .wait_timeout_while(guard, timeout, |listening| !*listening)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a thread that hands every event from other nodes to `bus`.
pub fn spawn_listener(
    options: ConnectOptions,
    bus: EventBus,
    poll: Duration,
) -> std::io::Result<Listener> {
    let stop = Arc::new(AtomicBool::new(false));
    let listening = Arc::new((Mutex::new(false), Condvar::new()));
    let thread = std::thread::Builder::new()
        .name("gatehouse-events".into())
        .spawn({
            let stop = Arc::clone(&stop);
            let listening = Arc::clone(&listening);
            move || listen_loop(&options, &bus, &stop, &listening, poll)
        })?;
    Ok(Listener {
        stop,
        listening,
        thread: Some(thread),
    })
}

fn listen_loop(
    options: &ConnectOptions,
    bus: &EventBus,
    stop: &AtomicBool,
    listening: &(Mutex<bool>, Condvar),
    poll: Duration,
) {
    let mut connected_before = false;
    while !stop.load(Ordering::Relaxed) {
        let connected = db::connect_pg(options)
            .map_err(|e| e.to_string())
            .and_then(|mut c| {
                c.batch_execute(&format!("LISTEN {CHANNEL}"))
                    .map_err(|e| e.to_string())?;
                Ok(c)
            });
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "event listener cannot connect; retrying");
                std::thread::sleep(RECONNECT_DELAY);
                continue;
            }
        };
        if connected_before {
            bus.deliver_resync();
        }
        connected_before = true;
        {
            let (lock, ready) = listening;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            ready.notify_all();
        }
        if let Err(error) = drain_until_broken(&mut conn, bus, stop, poll) {
            tracing::warn!(%error, "event listener lost its connection; reconnecting");
        }
    }
}

fn drain_until_broken(
    conn: &mut PgConnection,
    bus: &EventBus,
    stop: &AtomicBool,
    poll: Duration,
) -> diesel::QueryResult<()> {
    let mut last_check = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        for notification in conn.notifications_iter() {
            let notification = notification?;
            if notification.channel != CHANNEL {
                continue;
            }
            match EventEnvelope::from_json(&notification.payload) {
                Ok(envelope) => {
                    bus.deliver_remote(envelope);
                }
                Err(error) => tracing::warn!(%error, "ignoring undecodable event"),
            }
        }
        // A silently dropped connection never fails a read; a query finds out.
        if last_check.elapsed() >= HEALTH_CHECK_EVERY {
            conn.batch_execute("SELECT 1")?;
            last_check = Instant::now();
        }
        std::thread::sleep(poll);
    }
    Ok(())
}
