//! A fixed pool of threads for password hashing, with a bounded queue.
//!
//! Argon2id is deliberately slow (≈ 14 ms of one core with the default parameters)
//! and uses a lot of memory (19 MiB). Run on tokio's blocking pool, every concurrent
//! sign-in would get a thread of its own: more hashes than cores taking turns on
//! them (slower per hash, measured in `docs/benchmarks.md`) and 19 MiB more memory
//! for each. Here a fixed number of threads, normally one per core, take jobs from
//! one queue; a job that finds the queue full is refused at once with
//! [`AuthnError::Busy`] instead of waiting without bound.
//!
//! Jobs carry no database connection: callers read what they need first, return
//! the connection to its pool, hash here, and take a connection again to write.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::AuthnError;
use crate::password::HashMemory;

/// Jobs that may wait per worker thread. With the default parameters a hash takes
/// ≈ 14 ms, so a full queue is about a second of work: enough for bursts, short
/// enough that a client does not wait long for a refusal it would get anyway.
pub(crate) const QUEUE_PER_WORKER: usize = 64;

/// A job gets its worker's [`HashMemory`]: Argon2's working memory is allocated once
/// per worker, not once per hash.
type Job = Box<dyn FnOnce(&mut HashMemory) + Send + 'static>;

/// The queue was full: the job was not accepted (and will not run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Busy;

/// Worker threads and the sending end of their queue. Dropping the pool closes the
/// queue; the threads finish the jobs already queued and then end (they are not
/// joined: the last reference may be dropped by a job on one of them).
pub(crate) struct HashingPool {
    queue: SyncSender<Job>,
    /// Jobs accepted and not yet taken by a worker.
    queued: Arc<AtomicUsize>,
    workers: usize,
    capacity: usize,
}

impl fmt::Debug for HashingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashingPool")
            .field("workers", &self.workers)
            .field("capacity", &self.capacity)
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl HashingPool {
    /// One worker per core the process may use, [`QUEUE_PER_WORKER`] queued jobs each.
    pub(crate) fn for_this_machine() -> Result<HashingPool, AuthnError> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        HashingPool::new(workers, workers * QUEUE_PER_WORKER)
    }

    /// `workers` threads (at least one) and room for `capacity` waiting jobs (at
    /// least one) besides those running.
    pub(crate) fn new(workers: usize, capacity: usize) -> Result<HashingPool, AuthnError> {
        let workers = workers.max(1);
        let capacity = capacity.max(1);
        let (queue, jobs) = mpsc::sync_channel::<Job>(capacity);
        let jobs = Arc::new(Mutex::new(jobs));
        let queued = Arc::new(AtomicUsize::new(0));
        for index in 0..workers {
            let jobs = Arc::clone(&jobs);
            let queued = Arc::clone(&queued);
            std::thread::Builder::new()
                .name(format!("gatehouse-hash-{index}"))
                .spawn(move || work(&jobs, &queued))
                .map_err(|e| AuthnError::Internal(format!("cannot start a hashing thread: {e}")))?;
        }
        Ok(HashingPool {
            queue,
            queued,
            workers,
            capacity,
        })
    }

    /// Jobs waiting for a worker now.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Queues `job`, or refuses it at once when the queue is full. The receiver gets
    /// the job's result; it is closed without one if the job panicked.
    pub(crate) fn submit<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<T>, Busy> {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            // Nobody may be waiting any more (the request was cancelled): fine.
            let _ = reply.send(job(memory));
        });
        // Counted before it is sent, so that a worker never takes one uncounted.
        self.queued.fetch_add(1, Ordering::Relaxed);
        match self.queue.try_send(job) {
            Ok(()) => Ok(result),
            // Disconnected cannot happen while `self` holds the sender and the workers
            // never drop the receiver; treat it as busy rather than panic.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                Err(Busy)
            }
        }
    }

    /// Runs `job` on the pool and waits for its result without blocking the caller's
    /// thread: [`AuthnError::Busy`] when the queue is full.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut HashMemory) -> T + Send + 'static,
    ) -> Result<T, AuthnError> {
        let result = self.submit(job).map_err(|Busy| {
            tracing::warn!(
                workers = self.workers,
                capacity = self.capacity,
                "password hashing queue is full; refusing the request"
            );
            AuthnError::Busy
        })?;
        result
            .await
            .map_err(|_| AuthnError::Internal("a password hashing job panicked".into()))
    }
}

#[cfg(test)]
impl HashingPool {
    /// Takes one worker (returns once it is taken) until the returned sender is used
    /// or dropped; the receiver then says the worker is free again.
    pub(crate) fn occupy_one_worker(&self) -> (mpsc::Sender<()>, oneshot::Receiver<()>) {
        let (release, wait) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel::<()>();
        let done = self
            .submit(move |_| {
                let _ = started.send(());
                let _ = wait.recv();
            })
            .unwrap_or_else(|Busy| panic!("no room to occupy a worker"));
        let _ = running.recv();
        (release, done)
    }
}

/// One worker: takes jobs until the queue is closed and empty. A panicking job is
/// contained (its caller sees the reply channel close) and the worker carries on.
fn work(jobs: &Mutex<Receiver<Job>>, queued: &AtomicUsize) {
    let mut memory = HashMemory::new();
    loop {
        // Hold the lock only while waiting for the next job, not while running it.
        let next = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else { return };
        queued.fetch_sub(1, Ordering::Relaxed);
        if catch_unwind(AssertUnwindSafe(|| job(&mut memory))).is_err() {
            tracing::error!("a password hashing job panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;
    use crate::PasswordHasher;
    use gatehouse_core::config::PasswordConfig;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap()
    }

    #[test]
    fn runs_jobs_and_returns_their_results() {
        let pool = HashingPool::new(2, 8).unwrap();
        let hasher = PasswordHasher::new(&PasswordConfig {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
            ..PasswordConfig::default()
        })
        .unwrap();
        let phc = hasher.hash("violet-harbor-quilt-97-lantern").unwrap();
        runtime().block_on(async {
            let (h, p) = (hasher.clone(), phc.clone());
            let right = pool
                .run(move |memory| h.verify_in(memory, &p, "violet-harbor-quilt-97-lantern"))
                .await
                .unwrap();
            assert!(right.is_match());
            let (h, p) = (hasher.clone(), phc.clone());
            let wrong = pool
                .run(move |memory| h.verify_in(memory, &p, "nope"))
                .await
                .unwrap();
            assert!(!wrong.is_match());
            assert_eq!(pool.run(|_| 6 * 7).await.unwrap(), 42);
        });
    }

    #[test]
    fn jobs_run_on_the_pools_own_threads() {
        let pool = HashingPool::new(2, 8).unwrap();
        assert_eq!(pool.workers, 2);
        let names: HashSet<String> = runtime().block_on(async {
            let mut names = HashSet::new();
            for _ in 0..20 {
                let name = pool
                    .run(|_| std::thread::current().name().map(str::to_owned))
                    .await
                    .unwrap()
                    .unwrap();
                names.insert(name);
            }
            names
        });
        assert!(!names.is_empty());
        assert!(
            names
                .iter()
                .all(|n| n == "gatehouse-hash-0" || n == "gatehouse-hash-1"),
            "{names:?}"
        );
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_accepts_again_when_drained() {
        let pool = HashingPool::new(1, 2).unwrap();
        // The only worker is busy; two jobs fit in the queue, the third does not.
        let (release, blocked) = pool.occupy_one_worker();
        assert_eq!(pool.queued(), 0);
        let first = pool.submit(|_| 1).unwrap();
        let second = pool.submit(|_| 2).unwrap();
        assert_eq!(pool.queued(), 2);
        assert_eq!(pool.submit(|_| 3).err(), Some(Busy));
        assert_eq!(pool.queued(), 2, "a refused job was counted");
        let rt = runtime();
        let refused = rt.block_on(pool.run(|_| 4));
        assert!(matches!(refused, Err(AuthnError::Busy)), "{refused:?}");

        release.send(()).unwrap();
        rt.block_on(async {
            blocked.await.unwrap();
            assert_eq!(first.await.unwrap(), 1);
            assert_eq!(second.await.unwrap(), 2);
            assert_eq!(pool.queued(), 0);
            // The queue drained: room again.
            assert_eq!(pool.run(|_| 5).await.unwrap(), 5);
        });
    }

    #[test]
    fn never_runs_more_jobs_at_once_than_it_has_workers() {
        let pool = Arc::new(HashingPool::new(3, 256).unwrap());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let rt = runtime();
        let results: Vec<usize> = rt.block_on(async {
            let tasks: Vec<_> = (0..64)
                .map(|i| {
                    let (pool, running, most) =
                        (Arc::clone(&pool), Arc::clone(&running), Arc::clone(&most));
                    tokio::spawn(async move {
                        pool.run(move |_| {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(2));
                            running.fetch_sub(1, Ordering::SeqCst);
                            i * 2
                        })
                        .await
                        .unwrap()
                    })
                })
                .collect();
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.unwrap());
            }
            results
        });
        assert_eq!(results, (0..64).map(|i| i * 2).collect::<Vec<_>>());
        let most = most.load(Ordering::SeqCst);
        assert!((1..=3).contains(&most), "{most} jobs ran at once");
    }

    #[test]
    fn a_panicking_job_fails_alone_and_the_worker_survives() {
        let pool = HashingPool::new(1, 4).unwrap();
        runtime().block_on(async {
            let failed = pool.run(|_| -> u8 { panic!("boom") }).await;
            assert!(matches!(failed, Err(AuthnError::Internal(_))), "{failed:?}");
            assert_eq!(pool.run(|_| 7).await.unwrap(), 7);
        });
    }

    #[test]
    fn dropping_the_pool_lets_queued_jobs_finish() {
        let pool = HashingPool::new(1, 4).unwrap();
        let (release, blocked) = pool.occupy_one_worker();
        let queued = pool.submit(|_| "done").unwrap();
        drop(pool);
        release.send(()).unwrap();
        runtime().block_on(async {
            blocked.await.unwrap();
            assert_eq!(queued.await.unwrap(), "done");
        });
    }
}
