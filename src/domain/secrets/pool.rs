//! A fixed set of hashing threads with a bounded queue in front.
//!
//! argon2 at the default parameters takes ~20 MiB and ~15 ms of one core
//! per verification. Run on the async runtime it would stall every request
//! sharing the worker; run on an unbounded pool, a burst would allocate
//! 20 MiB per waiting request. Here a fixed number of threads (default: one
//! per core) each own one argon2 memory buffer, reused for every job, so
//! hashing memory is bounded by workers × memory cost whatever the load; a
//! job that finds the queue full is refused at once (RESOURCE_EXHAUSTED)
//! rather than waiting without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use argon2::Block;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::domain::shared::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashPoolConfig {
    /// Hashing threads; 0 means one per core.
    pub workers: usize,
    /// Jobs that may wait for a thread; more are refused at once.
    pub queue: usize,
}

impl Default for HashPoolConfig {
    fn default() -> Self {
        Self {
            workers: 0,
            queue: 256,
        }
    }
}

/// A unit of hashing work: runs on a pool thread with that thread's buffer.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

pub struct HashPool {
    sender: SyncSender<Job>,
    load: Arc<Load>,
    workers: usize,
}

/// What the pool is doing now, for metrics.
#[derive(Debug, Default)]
struct Load {
    /// Jobs waiting for a thread.
    queued: AtomicUsize,
    /// Threads running a job.
    busy: AtomicUsize,
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
        })
    }

    /// Runs `job` on a pool thread and waits for its result; refused at once
    /// when the queue is full.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T> {
        let (reply, result) = oneshot::channel();
        let boxed: Job = Box::new(move |buffer| {
            let _ = reply.send(job(buffer));
        });
        self.load.queued.fetch_add(1, Ordering::SeqCst);
        match self.sender.try_send(boxed) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.load.queued.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::ResourceExhausted(
                    "too many password verifications are waiting; retry shortly".to_owned(),
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                self.load.queued.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::internal("the hashing threads are gone"));
            }
        }
        result
            .await
            .map_err(|_| Error::internal("a hashing thread dropped its job"))
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
        job(&mut buffer);
        load.busy.fetch_sub(1, Ordering::SeqCst);
    }
}
