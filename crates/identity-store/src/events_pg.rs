//! Cross-node domain events over PostgreSQL `LISTEN/NOTIFY`.
//!
//! Every node listens on one channel with a dedicated connection; publishing is a
//! `pg_notify` on a pooled connection. Nodes on SQLite need none of this: the
//! in-process bus is the whole story there.
//!
//! The listener polls the connection's input (`PQconsumeInput`, a non-blocking read)
//! every `poll` interval; diesel exposes no socket to wait on, and a 25 ms poll
//! costs nothing measurable while keeping cross-node latency far below a second.
//! After a reconnect it delivers `Resync`, because NOTIFYs sent while it was away
//! are lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, RunQueryDsl};
use gatehouse_core::Error as CoreError;
use gatehouse_core::events::{EventBus, EventEnvelope, EventTransport};

use crate::{AnyConnection, Pool};

pub const CHANNEL: &str = "gatehouse_events";
const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(10);
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct PgNotifyTransport {
    pool: Pool,
}

impl PgNotifyTransport {
    pub fn new(pool: Pool) -> Self {
        PgNotifyTransport { pool }
    }
}

impl EventTransport for PgNotifyTransport {
    fn publish(&self, envelope: &EventEnvelope) -> Result<(), CoreError> {
        let payload = envelope.to_json()?;
        let mut conn = self
            .pool
            .get()
            .map_err(|e| CoreError::Event(e.to_string()))?;
        let AnyConnection::Postgresql(pg) = &mut *conn else {
            return Err(CoreError::Event("NOTIFY needs a PostgreSQL pool".into()));
        };
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(CHANNEL)
            .bind::<Text, _>(payload)
            .execute(pg)
            .map(drop)
            .map_err(|e| CoreError::Event(e.to_string()))
    }
}

/// The running listener; stops (and joins its thread) when dropped.
#[derive(Debug)]
pub struct Listener {
    stop: Arc<AtomicBool>,
    listening: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
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
pub fn spawn_listener(url: String, bus: EventBus, poll: Duration) -> std::io::Result<Listener> {
    let stop = Arc::new(AtomicBool::new(false));
    let listening = Arc::new((Mutex::new(false), Condvar::new()));
    let thread = std::thread::Builder::new()
        .name("gatehouse-events".into())
        .spawn({
            let stop = Arc::clone(&stop);
            let listening = Arc::clone(&listening);
            move || listen_loop(&url, &bus, &stop, &listening, poll)
        })?;
    Ok(Listener {
        stop,
        listening,
        thread: Some(thread),
    })
}

fn listen_loop(
    url: &str,
    bus: &EventBus,
    stop: &AtomicBool,
    listening: &(Mutex<bool>, Condvar),
    poll: Duration,
) {
    let mut connected_before = false;
    while !stop.load(Ordering::Relaxed) {
        let connected = PgConnection::establish(url)
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
