//! Login reads, batched when they arrive together.
//!
//! Every login reads its row afresh (revocation must hold on every replica
//! at once), and each statement costs a round trip: on SQLite a hand-off to
//! the connection's thread and back, which under load was most of what a
//! warm login cost. So the reads go through a few reader tasks. A reader
//! that is free takes the next read at once, with every other one already
//! waiting (up to [`MAX_BATCH`]), and answers them all with one statement.
//! Nothing waits to fill a batch: a lone login is read at once, alone, and
//! batches form only when logins arrive faster than reads complete. Each
//! read still happens after its login arrived, so what it sees is as fresh
//! as a read of its own.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::login::{read_logins, LoginKey, MAX_BATCH};
use crate::domain::error::{Error, Result};
use crate::domain::store::LoginState;

/// Reads waiting for a reader; a full queue makes logins wait to enqueue.
const QUEUE: usize = 4_096;

struct LoginRead {
    key: LoginKey,
    reply: oneshot::Sender<Result<LoginState>>,
}

#[derive(Debug, Clone)]
pub(super) struct LoginBatcher {
    queue: mpsc::Sender<LoginRead>,
}

impl LoginBatcher {
    /// Starts `readers` reader tasks on `db`; they stop when the last clone
    /// of the batcher is dropped.
    pub(super) fn start(db: &DatabaseConnection, readers: usize) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..readers.max(1) {
            tokio::spawn(read_batches(db.clone(), Arc::clone(&waiting)));
        }
        Self { queue }
    }

    pub(super) async fn read(&self, key: LoginKey) -> Result<LoginState> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(LoginRead { key, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::Unavailable("the login readers have stopped".into())
}

/// One reader: takes what is waiting, reads it, answers, and again.
async fn read_batches(db: DatabaseConnection, waiting: Arc<Mutex<mpsc::Receiver<LoginRead>>>) {
    loop {
        let batch = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match waiting.try_recv() {
                    Ok(read) => batch.push(read),
                    Err(_) => break,
                }
            }
            batch
        };
        let keys: Vec<&LoginKey> = batch.iter().map(|read| &read.key).collect();
        match read_logins(&db, &keys).await {
            Ok(states) => {
                for (read, state) in batch.into_iter().zip(states) {
                    // The login may have gone (its client cancelled).
                    let _ = read.reply.send(Ok(state));
                }
            }
            Err(error) => {
                for read in batch {
                    let _ = read.reply.send(Err(share(&error)));
                }
            }
        }
    }
}

/// The same error, for each login of a failed batch.
fn share(error: &Error) -> Error {
    match error {
        Error::Unavailable(source) => Error::Unavailable(source.to_string().into()),
        Error::Internal(source) => Error::internal(source.to_string()),
        other => Error::internal(other.to_string()),
    }
}
