//! The store's one door to the database. Every statement and transaction
//! goes through [`Db`] (and the [`Tx`] it begins), which keeps what this
//! replica has learned of its database, [`Availability`], and acts on it:
//!
//! - **Down.** Once the probe (`SqlStore::probe`, one at a time, on a
//!   connection of its own) finds the database unreachable, every request
//!   is answered UNAVAILABLE at once, without waiting for a connection
//!   that cannot be made, until the probe reaches it again. A request that
//!   sees a connection fail does not decide this itself: it wakes the
//!   probe, so one reset connection never turns the replica away.
//! - **Writes failing.** A write refused because the disk is full, or
//!   because the server accepts no writes, marks writes as failing; only
//!   the probe's own write clears it. (A request's write may succeed on a
//!   full disk where SQLite reuses its log's space while the next fails:
//!   health would flap with every request.)
//!
//! Health reports SERVING only when neither holds (`app/background.rs`).
//! Each change is logged once, here, not by every request it refuses.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult,
    QueryResult, RuntimeErr, Statement, TransactionTrait,
};
use tokio::sync::Notify;

use super::errors::{classify, Class, KNOWN_DOWN};
use super::feed_numbering::Sequencer;

/// How long after a failed statement released connections are checked for
/// a transaction left open; the connection of the failed statement is
/// released as its request unwinds, well within this.
const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// Whether writes succeed, as far as this replica knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Writes {
    Succeed = 0,
    DiskFull = 1,
    ReadOnly = 2,
}

impl Writes {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Writes::DiskFull,
            2 => Writes::ReadOnly,
            _ => Writes::Succeed,
        }
    }
}

/// What this replica knows of its database; shared by every clone of the
/// store.
#[derive(Debug)]
pub(crate) struct Availability {
    down: AtomicBool,
    writes: AtomicU8,
    /// When a request's write was last refused, in milliseconds since
    /// `started`: the probe's write clears a failing state only once none
    /// has been for a probe's interval.
    last_refused: AtomicU64,
    /// Until when (milliseconds since `started`) a released SQLite
    /// connection is checked for a transaction left open: for a while after
    /// any statement failed (`sqlite.rs`).
    suspect_until: AtomicU64,
    started: Instant,
    /// Wakes the probe: a request saw a connection fail, or a state changed.
    wake: Notify,
    /// Whose disk fills, as the log says it: SQLite's file, or the server.
    disk: String,
}

impl Availability {
    /// For the database at `url`: an SQLite file's disk is named by the
    /// file (an operator's `df` finds its file system), a server's is the
    /// server's (its URL, which may hold a password, is not logged).
    pub(crate) fn new(url: &str) -> Self {
        let disk = match super::sqlite_file(url) {
            Some(path) => format!(
                "the file system holding the SQLite database {}",
                path.display()
            ),
            None if super::is_sqlite(url) => "the memory holding the SQLite database".to_owned(),
            None => "the database server's disk".to_owned(),
        };
        Self {
            disk,
            down: AtomicBool::new(false),
            writes: AtomicU8::new(Writes::Succeed as u8),
            last_refused: AtomicU64::new(0),
            suspect_until: AtomicU64::new(0),
            started: Instant::now(),
            wake: Notify::new(),
        }
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    pub(crate) fn writes(&self) -> Writes {
        Writes::from_u8(self.writes.load(Ordering::Acquire))
    }

    /// Whether the replica can serve: the database reachable, and writes
    /// succeeding.
    pub(crate) fn serving(&self) -> bool {
        !self.is_down() && self.writes() == Writes::Succeed
    }

    /// Waits until a request asks for a probe or a state changes.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// What the probe found: the database reachable or not.
    pub(crate) fn set_down(&self, down: bool) {
        if self.down.swap(down, Ordering::AcqRel) == down {
            return;
        }
        if down {
            tracing::error!(
                "database unreachable: answering UNAVAILABLE at once until a probe reaches it"
            );
        } else {
            tracing::warn!("database reachable again: serving");
        }
        self.wake.notify_one();
    }

    fn now_millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a statement failed within the last `SUSPECT_FOR`: only then
    /// can a connection have been left inside a transaction (`sqlite.rs`).
    pub(crate) fn suspect(&self) -> bool {
        self.now_millis() < self.suspect_until.load(Ordering::Acquire)
    }

    /// Whether a request's write was refused within the last `within`.
    pub(crate) fn refused_within(&self, within: Duration) -> bool {
        let last = Duration::from_millis(self.last_refused.load(Ordering::Acquire));
        self.writes() != Writes::Succeed && self.started.elapsed().saturating_sub(last) < within
    }

    pub(crate) fn set_writes(&self, writes: Writes) {
        if writes != Writes::Succeed {
            self.last_refused
                .store(self.now_millis(), Ordering::Release);
        }
        let before = Writes::from_u8(self.writes.swap(writes as u8, Ordering::AcqRel));
        if before == writes {
            return;
        }
        match writes {
            Writes::DiskFull => tracing::error!(
                "{} is full: writes are refused (UNAVAILABLE, STORAGE_FULL) until space \
                 returns; reads go on",
                self.disk
            ),
            Writes::ReadOnly => tracing::error!(
                "the database accepts no writes (a read-only server or a standby): writes are \
                 refused (UNAVAILABLE, STORAGE_READ_ONLY) until it does"
            ),
            Writes::Succeed => tracing::warn!("writes succeed again"),
        }
        self.wake.notify_one();
    }

    /// Learns from one statement's outcome.
    fn learn<T>(&self, result: Result<T, DbErr>) -> Result<T, DbErr> {
        if let Err(error) = &result {
            let class = classify(error);
            if class != Class::KnownDown {
                let until = self
                    .now_millis()
                    .saturating_add(SUSPECT_FOR.as_millis() as u64);
                self.suspect_until.fetch_max(until, Ordering::AcqRel);
            }
            match class {
                Class::Unreachable => self.wake.notify_one(),
                Class::DiskFull => self.set_writes(Writes::DiskFull),
                Class::ReadOnly => self.set_writes(Writes::ReadOnly),
                Class::KnownDown | Class::Transient | Class::Bug => {}
            }
        }
        result
    }

    fn admit(&self) -> Result<(), DbErr> {
        if self.is_down() {
            return Err(DbErr::Conn(RuntimeErr::Internal(KNOWN_DOWN.to_owned())));
        }
        Ok(())
    }
}

/// The pool, through the replica's [`Availability`].
#[derive(Debug, Clone)]
pub(crate) struct Db {
    conn: DatabaseConnection,
    availability: Arc<Availability>,
    /// On PostgreSQL unless `database.feed_numbering = "row_lock"`: feed
    /// events are written pending and numbered after the commit
    /// (`feed_numbering.rs`).
    sequencer: Option<Arc<Sequencer>>,
}

impl Db {
    pub(super) fn new(
        conn: DatabaseConnection,
        availability: Arc<Availability>,
        sequencer: Option<Arc<Sequencer>>,
    ) -> Self {
        Self {
            conn,
            availability,
            sequencer,
        }
    }

    /// Several statements as one simple query on PostgreSQL (one round
    /// trip, one implicit transaction: never write `BEGIN` in it, which
    /// an error would leave open on a pooled connection), and the rows of
    /// all of them, in order. Through the door like every
    /// other statement. The text takes no parameters: only for SQL made
    /// of the store's own constants and numbers.
    pub(super) async fn simple_query_pg(
        &self,
        sql: &str,
    ) -> Result<Vec<sea_orm::sqlx::postgres::PgRow>, DbErr> {
        self.availability.admit()?;
        let run = async {
            let mut conn = self
                .conn
                .get_postgres_connection_pool()
                .acquire()
                .await
                .map_err(|error| DbErr::Conn(RuntimeErr::SqlxError(error)))?;
            // A text with no arguments goes as a simple query.
            sea_orm::sqlx::Executor::fetch_all(&mut *conn, sql)
                .await
                .map_err(|error| DbErr::Query(RuntimeErr::SqlxError(error)))
        };
        self.availability.learn(run.await)
    }

    /// The numbering runs, when this replica numbers feed events after
    /// their commits.
    pub(super) fn sequencer(&self) -> Option<&Arc<Sequencer>> {
        self.sequencer.as_ref()
    }

    /// The pool itself, for what goes around the door: migrations, the
    /// probe, closing, the feed's LISTEN connection.
    pub(super) fn pool(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub(super) async fn begin(&self) -> Result<Tx, DbErr> {
        self.availability.admit()?;
        let txn = self.availability.learn(self.conn.begin().await)?;
        Ok(Tx {
            txn,
            db: self.clone(),
            pending_feed: AtomicBool::new(false),
        })
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.availability.admit()?;
        self.availability.learn(self.conn.execute(stmt).await)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.availability.admit()?;
        self.availability
            .learn(self.conn.execute_unprepared(sql).await)
    }

    async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.availability.admit()?;
        self.availability.learn(self.conn.query_one(stmt).await)
    }

    async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.availability.admit()?;
        self.availability.learn(self.conn.query_all(stmt).await)
    }
}

/// A transaction begun through [`Db`].
#[derive(Debug)]
pub(crate) struct Tx {
    txn: DatabaseTransaction,
    db: Db,
    /// Whether it wrote feed events pending, to be numbered after its
    /// commit.
    pending_feed: AtomicBool,
}

impl Tx {
    /// Whether feed events written in this transaction are written pending
    /// and numbered after the commit (`feed_numbering.rs`); if not, the
    /// writer numbers them under the feed row's lock.
    pub(super) fn numbers_after_commit(&self) -> bool {
        self.db.sequencer.is_some()
    }

    /// Notes that this transaction wrote pending feed events.
    pub(super) fn wrote_pending_feed(&self) {
        self.pending_feed.store(true, Ordering::Relaxed);
    }

    /// Commits; with pending feed events, returns once they are numbered,
    /// so an answered request's events are in the feed. Should that run
    /// fail, the change is committed all the same and the request succeeds
    /// (retrying it would repeat a change that happened): its events wait
    /// for the next run, or the sweep's (`feed_numbering::Sweep`).
    pub(super) async fn commit(self) -> Result<(), DbErr> {
        let pending = self.pending_feed.load(Ordering::Relaxed);
        let db = self.db.clone();
        self.commit_only().await?;
        if let (true, Some(sequencer)) = (pending, &db.sequencer) {
            if let Err(error) = sequencer.after_commit(&db).await {
                tracing::warn!(
                    %error,
                    "numbering committed change-feed events failed; the next run or the sweep \
                     numbers them"
                );
            }
        }
        Ok(())
    }

    /// Commits, and nothing else: the numbering run's own commit.
    pub(super) async fn commit_only(self) -> Result<(), DbErr> {
        self.db.availability.learn(self.txn.commit().await)
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Tx {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.db.availability.learn(self.txn.execute(stmt).await)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.db
            .availability
            .learn(self.txn.execute_unprepared(sql).await)
    }

    async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.db.availability.learn(self.txn.query_one(stmt).await)
    }

    async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.db.availability.learn(self.txn.query_all(stmt).await)
    }
}
