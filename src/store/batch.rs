//! Statements shared by the requests that arrive together.
//!
//! Every statement costs a round trip (on SQLite, a hand-off to the
//! connection's thread and back) and every commit an fsync, and under load
//! those were most of what a login cost. So the login read and the failure
//! write go through a few worker tasks: a worker that is free takes the
//! next job at once, with every other one already waiting (up to a bound),
//! and does them all with one statement or one transaction. Nothing waits
//! to fill a batch: a lone job runs at once, alone, and batches form only
//! when jobs arrive faster than they complete. Each job still runs after
//! its request arrived, so a read is as fresh as a read of its own, and a
//! write is committed before its request is answered.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::db::Db;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::domain::shared::error::{Error, Outage, Result};

/// Jobs waiting for a worker; a full queue makes requests wait to enqueue.
const QUEUE: usize = 4_096;

type Reply<R> = oneshot::Sender<Result<R>>;
type Waiting<T, R> = Arc<Mutex<mpsc::Receiver<(T, Reply<R>)>>>;
pub(super) type BatchFuture<R> = Pin<Box<dyn Future<Output = Result<Vec<R>>> + Send>>;

/// Runs a batch of jobs; answers one result per job, in their order.
pub(super) type RunBatch<T, R> = fn(Db, Vec<T>) -> BatchFuture<R>;

#[derive(Debug)]
pub(super) struct Batcher<T, R> {
    queue: mpsc::Sender<(T, Reply<R>)>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts `workers` tasks on `db`, each running up to `max_batch` jobs
    /// at a time with `run`; they stop when the last clone is dropped.
    pub(super) fn start(db: &Db, workers: usize, max_batch: usize, run: RunBatch<T, R>) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..workers.max(1) {
            tokio::spawn(work(db.clone(), Arc::clone(&waiting), max_batch, run));
        }
        Self { queue }
    }

    pub(super) async fn submit(&self, job: T) -> Result<R> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((job, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::Unavailable(
        Outage::Transient,
        "the database workers have stopped".into(),
    )
}

/// One worker: takes what is waiting, runs it, answers, and again.
async fn work<T, R>(db: Db, waiting: Waiting<T, R>, max_batch: usize, run: RunBatch<T, R>) {
    loop {
        let (jobs, replies): (Vec<T>, Vec<Reply<R>>) = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < max_batch.max(1) {
                match waiting.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch.into_iter().unzip()
        };
        match run(db.clone(), jobs).await {
            Ok(results) if results.len() == replies.len() => {
                for (reply, result) in replies.into_iter().zip(results) {
                    // The request may have gone (its client cancelled).
                    let _ = reply.send(Ok(result));
                }
            }
            Ok(_) => {
                for reply in replies {
                    let _ = reply.send(Err(Error::internal("a batch lost a job's result")));
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(share(&error)));
                }
            }
        }
    }
}

/// The same error, for each job of a failed batch.
fn share(error: &Error) -> Error {
    match error {
        Error::Unavailable(outage, source) => {
            Error::Unavailable(*outage, source.to_string().into())
        }
        Error::Internal(source) => Error::internal(source.to_string()),
        other => Error::internal(other.to_string()),
    }
}
