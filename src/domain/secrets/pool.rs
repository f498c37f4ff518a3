//! A fixed set of hashing threads with a bounded queue in front.
//!
//! argon2 at the default parameters takes ~20 MiB and ~15 ms of one core
//! per verification. Run on the async runtime it would stall every request
//! sharing the worker; run on an unbounded pool, a burst would allocate
//! 20 MiB per waiting request. Here a fixed number of threads (default: one
//! per core) each own one argon2 memory buffer, reused for every job, so
//! hashing memory is bounded by workers × memory cost whatever the load.
//!
//! A job is admitted when its expected wait (the jobs ahead of it over the
//! threads, times the recent time per job) fits within what its caller will
//! wait, and refused at once (RESOURCE_EXHAUSTED) otherwise: a reconnect
//! storm is served as far as the deadlines allow, and the rest learn at
//! once to come back. The queue also has a hard cap (`queue`), so its own
//! memory (a few hundred bytes per job) stays bounded. A job whose caller
//! has gone before a thread takes it is not run at all.

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Block;
use serde::{Deserialize, Serialize};

use crate::domain::shared::span::as_unit::millis;
use tokio::sync::oneshot;

use crate::domain::shared::error::{Error, Reason, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashPoolConfig {
    /// Hashing threads; 0 means one per core.
    pub workers: usize,
    /// At most this many jobs wait for a thread, whatever their deadlines.
    pub queue: usize,
    /// How long a caller that sets no deadline is taken to wait, in
    /// milliseconds: a typical proxy's authentication timeout.
    #[serde(rename = "default_wait", alias = "default_wait_ms", with = "millis")]
    pub default_wait_ms: u64,
}

impl Default for HashPoolConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            queue: 4_096,
            default_wait_ms: 5_000,
        }
    }
}

/// Whether a job's caller still wants it: a job not yet started is
/// skipped once its ticket is cancelled; a started one runs to the end.
#[derive(Debug, Clone, Default)]
pub struct Ticket(Arc<AtomicU8>);

const WAITING: u8 = 0;
const STARTED: u8 = 1;
const CANCELLED: u8 = 2;

impl Ticket {
    pub fn new() -> Self {
        Self::default()
    }

    /// The caller has gone; a job not yet started will not be.
    pub fn cancel(&self) {
        let _ = self
            .0
            .compare_exchange(WAITING, CANCELLED, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst) == CANCELLED
    }

    /// Marks the job started, unless it was cancelled first.
    fn start(&self) -> bool {
        self.0
            .compare_exchange(WAITING, STARTED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// What a job is admitted on: how long its caller will wait for it, and
/// the ticket that says whether the caller is still there.
#[derive(Debug, Clone)]
pub struct Admission {
    pub wait: Duration,
    pub ticket: Option<Ticket>,
}

/// A unit of hashing work: runs on a pool thread with that thread's buffer.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

pub struct HashPool {
    sender: SyncSender<Job>,
    load: Arc<Load>,
    workers: usize,
    default_wait: Duration,
}

/// What the pool is doing now, for admission and metrics.
#[derive(Debug, Default)]
struct Load {
    /// Jobs waiting for a thread.
    queued: AtomicUsize,
    /// Threads running a job.
    busy: AtomicUsize,
    /// Recent time per job, in nanoseconds (a moving average).
    job_nanos: AtomicU64,
    /// Jobs skipped because their caller had gone.
    skipped: AtomicU64,
    /// Jobs refused because they would not have started in time.
    refused: AtomicU64,
}

impl std::fmt::Debug for HashPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashPool")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

impl HashPool {
    pub fn new(config: HashPoolConfig) -> Result<Self> {
        let workers = if config.workers == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            config.workers
        };
        let (sender, receiver) = sync_channel::<Job>(config.queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let load = Arc::new(Load::default());
        for index in 0..workers {
            let receiver = Arc::clone(&receiver);
            let load = Arc::clone(&load);
            std::thread::Builder::new()
                .name(format!("latchkey-hash-{index}"))
                .spawn(move || work(&receiver, &load))
                .map_err(|error| {
                    Error::internal(format!("cannot start a hashing thread: {error}"))
                })?;
        }
        Ok(Self {
            sender,
            load,
            workers,
            default_wait: Duration::from_millis(config.default_wait_ms),
        })
    }

    /// How long a caller that set no deadline is taken to wait.
    pub fn default_wait(&self) -> Duration {
        self.default_wait
    }

    /// How long a job submitted now is expected to wait for a thread.
    pub fn expected_wait(&self) -> Duration {
        let ahead = u64::try_from(self.queued()).unwrap_or(u64::MAX);
        let workers = u64::try_from(self.workers.max(1)).unwrap_or(1);
        let rounds = ahead / workers + 1;
        Duration::from_nanos(
            self.load
                .job_nanos
                .load(Ordering::Relaxed)
                .saturating_mul(rounds),
        )
    }

    /// Runs `job` on a pool thread and waits for its result; refused at once
    /// when it would not start within `admission.wait`, or the queue is at
    /// its cap. `Error::Cancelled` if the ticket was cancelled before a
    /// thread took the job.
    pub async fn run<T: Send + 'static>(
        &self,
        admission: Admission,
        job: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T> {
        if self.expected_wait() > admission.wait {
            self.load.refused.fetch_add(1, Ordering::Relaxed);
            return Err(too_busy());
        }
        let (reply, result) = oneshot::channel();
        let load = Arc::clone(&self.load);
        let ticket = admission.ticket;
        let boxed: Job = Box::new(move |buffer| {
            if ticket.as_ref().is_some_and(|ticket| !ticket.start()) {
                load.skipped.fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(Err(Error::Cancelled));
                return;
            }
            let _ = reply.send(Ok(job(buffer)));
        });
        self.load.queued.fetch_add(1, Ordering::SeqCst);
        match self.sender.try_send(boxed) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.load.queued.fetch_sub(1, Ordering::SeqCst);
                self.load.refused.fetch_add(1, Ordering::Relaxed);
                return Err(too_busy());
            }
            Err(TrySendError::Disconnected(_)) => {
                self.load.queued.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::internal("the hashing threads are gone"));
            }
        }
        result
            .await
            .map_err(|_| Error::internal("a hashing thread dropped its job"))?
    }

    /// Jobs skipped because their caller had gone, since start.
    pub fn skipped(&self) -> u64 {
        self.load.skipped.load(Ordering::Relaxed)
    }

    /// Jobs refused because they would not have started in time, since
    /// start.
    pub fn refused(&self) -> u64 {
        self.load.refused.load(Ordering::Relaxed)
    }

    /// Jobs waiting for a thread.
    pub fn queued(&self) -> usize {
        self.load.queued.load(Ordering::SeqCst)
    }

    /// Threads running a job now.
    pub fn busy(&self) -> usize {
        self.load.busy.load(Ordering::SeqCst)
    }

    pub fn workers(&self) -> usize {
        self.workers
    }
}

/// A pool thread: takes jobs until the pool is dropped, always with the
/// same buffer, which only ever grows to the largest memory cost seen.
fn work(receiver: &Mutex<Receiver<Job>>, load: &Load) {
    let mut buffer: Vec<Block> = Vec::new();
    loop {
        let job = {
            let Ok(receiver) = receiver.lock() else {
                return;
            };
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        load.busy.fetch_add(1, Ordering::SeqCst);
        load.queued.fetch_sub(1, Ordering::SeqCst);
        let started = Instant::now();
        // A job that panics (a bug) drops its reply, so its caller gets an
        // internal error; the thread and its buffer stay for the next job.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut buffer))).is_err() {
            tracing::error!("a hashing job panicked; its caller gets an internal error");
            buffer = Vec::new();
        }
        // A skipped job takes next to nothing and would drag the average
        // down; only real work (over a microsecond) moves it.
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if took > 1_000 {
            let old = load.job_nanos.load(Ordering::Relaxed);
            let new = if old == 0 { took } else { (old * 7 + took) / 8 };
            load.job_nanos.store(new, Ordering::Relaxed);
        }
        load.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

fn too_busy() -> Error {
    Error::ResourceExhausted(
        Reason::HashingQueueFull,
        "too many password verifications are waiting to finish within the deadline; retry shortly"
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use futures::FutureExt;

    use super::*;

    /// A pool of `workers` threads with room for `queue` waiting jobs.
    fn pool(workers: usize, queue: usize) -> Arc<HashPool> {
        Arc::new(
            HashPool::new(HashPoolConfig {
                workers,
                queue,
                default_wait_ms: 5_000,
            })
            .unwrap(),
        )
    }

    /// Admitted on `wait`, with `ticket` if any.
    fn admit(wait: Duration, ticket: Option<&Ticket>) -> Admission {
        Admission {
            wait,
            ticket: ticket.cloned(),
        }
    }

    /// Gives one thread a job that runs until the returned sender sends or
    /// is dropped; returns once a thread has taken it.
    async fn hold(pool: &Arc<HashPool>) -> (mpsc::Sender<()>, tokio::task::JoinHandle<Result<()>>) {
        let (release, released) = mpsc::channel::<()>();
        let (started, running) = oneshot::channel();
        let pool = Arc::clone(pool);
        let held = tokio::spawn(async move {
            pool.run(admit(Duration::MAX, None), move |_| {
                let _ = started.send(());
                let _ = released.recv();
            })
            .await
        });
        running.await.unwrap();
        (release, held)
    }

    /// Sets the recent time per job, as if measured.
    fn recent_job_time(pool: &HashPool, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap();
        pool.load.job_nanos.store(nanos, Ordering::Relaxed);
    }

    fn refused_at_once<T>(outcome: Option<Result<T>>) -> bool {
        matches!(
            outcome,
            Some(Err(Error::ResourceExhausted(Reason::HashingQueueFull, _)))
        )
    }

    const SECOND: Duration = Duration::from_secs(1);
    const MILLI: Duration = Duration::from_millis(1);

    /// "A job whose caller has gone before a thread takes it is not run at
    /// all": queued behind a held thread, a job whose ticket is cancelled
    /// is skipped (counted, never run), the one behind it, whose caller is
    /// still there, runs; and the counters of waiting and running jobs say
    /// so at each step.
    #[tokio::test]
    async fn a_cancelled_job_queued_behind_a_busy_thread_is_skipped() {
        let pool = pool(1, 8);
        let (release, held) = hold(&pool).await;
        assert_eq!((pool.busy(), pool.queued()), (1, 0));

        let ran = Arc::new(Mutex::new(Vec::new()));
        let job = |name: &'static str| {
            let ran = Arc::clone(&ran);
            move |_: &mut Vec<Block>| ran.lock().unwrap().push(name)
        };
        let (gone, stays) = (Ticket::new(), Ticket::new());
        let mut first = Box::pin(pool.run(admit(Duration::MAX, Some(&gone)), job("gone")));
        let mut second = Box::pin(pool.run(admit(Duration::MAX, Some(&stays)), job("stays")));
        assert!((&mut first).now_or_never().is_none(), "queued");
        assert!((&mut second).now_or_never().is_none(), "queued");
        assert_eq!((pool.busy(), pool.queued()), (1, 2));

        gone.cancel();
        assert!(gone.is_cancelled());
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        assert!(matches!(first.await, Err(Error::Cancelled)));
        second.await.unwrap();
        assert_eq!(
            *ran.lock().unwrap(),
            ["stays"],
            "the cancelled job never ran"
        );
        assert_eq!((pool.skipped(), pool.refused(), pool.queued()), (1, 0, 0));
        // Once started, a job's ticket can no longer be cancelled.
        stays.cancel();
        assert!(!stays.is_cancelled());

        // Neither job left a count behind: the thread is taken by the next
        // job as the only one running, with nothing waiting.
        let (release, held) = hold(&pool).await;
        assert_eq!((pool.busy(), pool.queued()), (1, 0));
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
    }

    /// The admission arithmetic: a job is refused when its expected wait
    /// (the jobs ahead of it over the threads, plus its own round, times
    /// the recent time per job) is longer than its caller will wait, and
    /// admitted when it fits, to the nanosecond. Refused at once: each
    /// refusal is answered while the only thread is still held, before
    /// anything ahead of it could have run.
    #[tokio::test]
    async fn a_job_that_would_not_start_in_time_is_refused_at_once() {
        let pool = pool(1, 8);
        let (release, held) = hold(&pool).await;
        recent_job_time(&pool, SECOND);
        let mut admitted = Vec::new();
        for ahead in 0..3u32 {
            let expected = SECOND * (ahead + 1);
            assert_eq!(pool.expected_wait(), expected);
            let late = pool.run(admit(expected - MILLI, None), |_| ());
            assert!(refused_at_once(late.now_or_never()), "{ahead} ahead");
            let mut fits = Box::pin(pool.run(admit(expected, None), |_| ()));
            assert!((&mut fits).now_or_never().is_none(), "{ahead} ahead");
            admitted.push(fits);
        }
        assert_eq!((pool.refused(), pool.queued(), pool.busy()), (3, 3, 1));

        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        for job in admitted {
            job.await.unwrap();
        }
        assert_eq!((pool.refused(), pool.skipped()), (3, 0));
    }

    /// The jobs ahead are shared among the threads: with two threads held,
    /// a job behind two waiting ones expects two rounds, not three.
    #[tokio::test]
    async fn the_expected_wait_counts_rounds_over_the_threads() {
        let pool = pool(2, 8);
        let holds = [hold(&pool).await, hold(&pool).await];
        assert_eq!((pool.busy(), pool.queued()), (2, 0));
        recent_job_time(&pool, SECOND);
        let mut waiting = Vec::new();
        for (ahead, rounds) in [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3)] {
            assert_eq!(pool.queued(), ahead);
            assert_eq!(pool.expected_wait(), SECOND * rounds, "{ahead} ahead");
            let mut job = Box::pin(pool.run(admit(Duration::MAX, None), |_| ()));
            assert!((&mut job).now_or_never().is_none());
            waiting.push(job);
        }
        for (release, held) in holds {
            release.send(()).unwrap();
            held.await.unwrap().unwrap();
        }
        for job in waiting {
            job.await.unwrap();
        }
    }

    /// The queue's hard cap holds whatever the deadline: past it a job is
    /// refused at once, and counted.
    #[tokio::test]
    async fn a_full_queue_refuses_at_once_whatever_the_deadline() {
        let pool = pool(1, 2);
        let (release, held) = hold(&pool).await;
        let mut waiting = Vec::new();
        for _ in 0..2 {
            let mut job = Box::pin(pool.run(admit(Duration::MAX, None), |_| ()));
            assert!((&mut job).now_or_never().is_none());
            waiting.push(job);
        }
        let past_the_cap = pool.run(admit(Duration::MAX, None), |_| ());
        assert!(refused_at_once(past_the_cap.now_or_never()));
        assert_eq!((pool.refused(), pool.queued()), (1, 2));
        release.send(()).unwrap();
        held.await.unwrap().unwrap();
        for job in waiting {
            job.await.unwrap();
        }
    }
}
