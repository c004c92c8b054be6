//! The decision log writer: evaluations hand their records to a bounded channel and
//! return at once; one background thread writes them in batches (every `batch`
//! records or `flush_every`, whichever comes first). A full channel drops the record
//! and counts it — the request never waits for the log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use gatehouse_identity_store::decision_log::NewDecision;

use super::facts::DecisionSink;

enum Message {
    Record(Box<NewDecision>),
    /// Write what is queued, then answer (tests, shutdown, the CLI).
    Flush(mpsc::Sender<()>),
}

#[derive(Debug)]
pub(crate) struct DecisionLogger {
    sender: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Record(_) => f.write_str("Record"),
            Message::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl DecisionLogger {
    pub(crate) fn start(
        sink: Arc<dyn DecisionSink>,
        capacity: usize,
        batch: usize,
        flush_every: Duration,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::sync_channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let failed = Arc::clone(&dropped);
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || write_loop(&*sink, &receiver, batch.max(1), flush_every, &failed))?;
        Ok(DecisionLogger { sender, dropped })
    }

    pub(crate) fn record(&self, decision: NewDecision) {
        match self.sender.try_send(Message::Record(Box::new(decision))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let count = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Every power of two: a flood is visible without flooding the log.
                if count.is_power_of_two() {
                    tracing::warn!(dropped = count, "decision log queue full; records dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!("decision log writer is gone; record dropped");
            }
        }
    }

    /// Waits (at most `timeout`) until everything queued so far is written.
    pub(crate) fn flush(&self, timeout: Duration) {
        let (ack, done) = mpsc::channel();
        if self.sender.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(timeout);
        }
    }

    /// Records lost to a full queue, a gone writer or a failed write.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn write(sink: &dyn DecisionSink, pending: &mut Vec<NewDecision>, failed: &AtomicU64) {
    if pending.is_empty() {
        return;
    }
    if let Err(error) = sink.write(pending) {
        failed.fetch_add(pending.len() as u64, Ordering::Relaxed);
        tracing::error!(%error, records = pending.len(), "writing the decision log failed");
    }
    pending.clear();
    // See `decision_log::append`: a request thread waiting for this core gets it
    // after each statement and after the commit, not after a scheduler slice.
    std::thread::yield_now();
}

/// How often a writer with pending records looks for more. It sleeps in between
/// instead of blocking on the channel, so a record costs its sender no wake-up (a
/// futex call) — the writer wakes about once per batch, not once per record.
const POLL: Duration = Duration::from_millis(10);

fn write_loop(
    sink: &dyn DecisionSink,
    receiver: &mpsc::Receiver<Message>,
    batch: usize,
    flush_every: Duration,
    failed: &AtomicU64,
) {
    let mut pending: Vec<NewDecision> = Vec::with_capacity(batch);
    loop {
        // Idle: block until the first message.
        let Ok(first) = receiver.recv() else { return };
        let due = Instant::now() + flush_every;
        let mut message = Some(first);
        let mut acks = Vec::new();
        let mut gone = false;
        loop {
            while let Some(next) = message.take() {
                match next {
                    Message::Record(record) => pending.push(*record),
                    Message::Flush(ack) => acks.push(ack),
                }
                if pending.len() >= batch {
                    write(sink, &mut pending, failed);
                }
                message = match receiver.try_recv() {
                    Ok(next) => Some(next),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => {
                        gone = true;
                        None
                    }
                };
            }
            if gone || !acks.is_empty() || pending.is_empty() || Instant::now() >= due {
                break;
            }
            std::thread::sleep(POLL.min(due.saturating_duration_since(Instant::now())));
            message = match receiver.try_recv() {
                Ok(next) => Some(next),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => {
                    gone = true;
                    None
                }
            };
        }
        write(sink, &mut pending, failed);
        for ack in acks {
            let _ = ack.send(());
        }
        if gone {
            return;
        }
    }
}
