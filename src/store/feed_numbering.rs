//! How feed events get their places on PostgreSQL: written pending by the
//! change's own transaction, numbered after it commits by one short
//! transaction that serves every commit before it (a group commit).
//!
//! The alternative, kept for SQLite and MariaDB and as
//! `database.feed_numbering = "row_lock"`, raises `event_feed.last_seq`
//! inside the change's transaction and holds that row's lock until the
//! commit: writers of the whole fleet queue for one lock, each for its
//! whole transaction (535 events/s from four replicas, BENCHMARKS.md).
//! Here the lock is held once per batch, for three statements:
//!
//! 1. `SELECT … FOR UPDATE` on the feed's row: runs of every replica take
//!    turns here.
//! 2. One statement numbers the pending rows its snapshot sees, in the
//!    order of their ids, from `last_seq + 1`, with one new history mark,
//!    raises `last_seq` and notifies. Under READ COMMITTED the
//!    statement's snapshot is taken after the lock was granted: every
//!    event committed before then is in it, and none a previous run
//!    numbered is still pending in it.
//! 3. Commit. The two statements go as one simple query, one implicit
//!    transaction: one round trip.
//!
//! Why the order is right: a run sees only committed events, and every one
//! committed before it began, so a reader that has seen place n has seen
//! every event committed before n's run. Within a run, id order is insert
//! order (`audit_event.id` is a sequence with no per-session cache): a
//! change that read another's committed result inserted its event after
//! that commit, so later; changes that did not see each other were
//! concurrent and either order is true. Mixed fleets are safe: a replica
//! that numbers under the row lock and a run here take turns on the same
//! row, and each sees the other's `last_seq`.
//!
//! A writer that dies between its commit and its run leaves pending rows:
//! every replica looks for rows pending through a whole sweep interval and
//! numbers them ([`FeedNumbering::sweep`]). Pruning never deletes a
//! pending row.

use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::sqlx::Row;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::audit::FEED_CHANNEL;
use super::db::Db;
use crate::domain::audit::feed::new_mark;

/// How a PostgreSQL replica gives feed events their places
/// (`database.feed_numbering`). SQLite and MariaDB always use the row lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedNumbering {
    /// Written pending, numbered by a short transaction after the commit.
    #[default]
    AfterCommit,
    /// Numbered in the change's own transaction, under the feed row's lock
    /// until it commits: the design before, kept to compare against and
    /// to fall back to. Replicas of either kind may share a database.
    RowLock,
}

/// One replica's numbering runs: at most one at a time, and each run
/// serves every commit that asked before it began.
#[derive(Debug, Default)]
pub(crate) struct Sequencer {
    /// Commits that asked for a run, counted.
    asked: AtomicU64,
    /// Held by the run under way; holds the count of asks the last finished
    /// run served (every ask counted before that run began).
    served: Mutex<u64>,
}

impl Sequencer {
    /// After a commit that wrote pending events: returns once a run that
    /// began after that commit has finished, running one if none has. The
    /// caller's events are then in the feed. Waiting callers queue on the
    /// mutex (FIFO) and most find their ask already served.
    pub(crate) async fn after_commit(&self, db: &Db) -> Result<(), DbErr> {
        let ask = self.asked.fetch_add(1, Ordering::AcqRel) + 1;
        let mut served = self.served.lock().await;
        if *served >= ask {
            return Ok(());
        }
        let serving = self.asked.load(Ordering::Acquire);
        number_pending(db).await?;
        *served = serving;
        Ok(())
    }

    /// Numbers what is pending now, in a run of its own (the sweep's).
    async fn run(&self, db: &Db) -> Result<u64, DbErr> {
        let mut served = self.served.lock().await;
        let serving = self.asked.load(Ordering::Acquire);
        let numbered = number_pending(db).await?;
        *served = serving;
        Ok(numbered)
    }
}

/// One numbering run, sent as one simple query: one round trip, and one
/// implicit transaction (PostgreSQL runs a query's statements as one,
/// committed at its end, rolled back whole on an error, leaving the
/// connection clean); returns how many events it numbered. The lock first,
/// in a statement of its own, so that the numbering statement's snapshot
/// is taken after it was granted; `head` then reads the `last_seq` the
/// previous holder left. The NOTIFY is sent only when something was
/// numbered. The mark is a number made here, written into the text (the
/// simple protocol takes no parameters).
async fn number_pending(db: &Db) -> Result<u64, DbErr> {
    let mark = new_mark() as i64;
    let sql = format!(
        "SELECT 1 FROM event_feed WHERE id = 1 FOR UPDATE; \
         WITH pending AS ( \
             SELECT id, row_number() OVER (ORDER BY id) AS n FROM audit_event \
             WHERE feed_pending \
         ), head AS ( \
             SELECT last_seq FROM event_feed WHERE id = 1 \
         ), numbered AS ( \
             UPDATE audit_event \
             SET seq = head.last_seq + pending.n, feed_mark = {mark}, feed_pending = FALSE \
             FROM pending, head WHERE audit_event.id = pending.id \
             RETURNING audit_event.seq \
         ), raised AS ( \
             UPDATE event_feed SET last_seq = (SELECT max(seq) FROM numbered) \
             WHERE id = 1 AND EXISTS (SELECT 1 FROM numbered) \
             RETURNING last_seq \
         ) \
         SELECT (SELECT count(*) FROM numbered) AS numbered, \
             (SELECT count(*) FROM raised, pg_notify('{FEED_CHANNEL}', '')) AS notified"
    );
    let rows = db.simple_query_pg(&sql).await?;
    let numbered: i64 = rows
        .last()
        .map(|row| row.try_get("numbered"))
        .transpose()
        .map_err(|error| DbErr::Query(sea_orm::RuntimeErr::SqlxError(error)))?
        .ok_or_else(|| DbErr::Custom("the numbering run returned no count".into()))?;
    Ok(u64::try_from(numbered).unwrap_or(0))
}

/// Finds events left pending by a writer that died (or failed) between
/// its commit and its run, and numbers them. Called every sweep interval:
/// the oldest pending row is remembered, and a run is made only when the
/// same row is still pending at the next look, so live writers, whose own
/// runs take a millisecond, are left to those runs.
#[derive(Debug, Default)]
pub(crate) struct Sweep {
    oldest_seen: Option<i64>,
}

impl Sweep {
    /// One look; returns how many events a run numbered (0 without one).
    pub(crate) async fn look(&mut self, db: &Db, sequencer: &Sequencer) -> Result<u64, DbErr> {
        let oldest: Option<i64> = db
            .query_one(Statement::from_string(
                DbBackend::Postgres,
                "SELECT min(id) AS oldest FROM audit_event WHERE feed_pending",
            ))
            .await?
            .map(|row| row.try_get("", "oldest"))
            .transpose()?
            .flatten();
        let stale = oldest.is_some() && oldest == self.oldest_seen;
        self.oldest_seen = oldest;
        if !stale {
            return Ok(0);
        }
        let numbered = sequencer.run(db).await?;
        if numbered > 0 {
            tracing::warn!(
                numbered,
                "numbered change-feed events left pending through a whole sweep interval (their \
                 writer stopped between its commit and its numbering, or the numbering is slow): \
                 they are in the feed now"
            );
        }
        self.oldest_seen = None;
        Ok(numbered)
    }
}
