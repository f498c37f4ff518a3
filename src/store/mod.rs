//! Storage on sea-orm: SQLite, PostgreSQL or MySQL/MariaDB, chosen by the
//! database URL. Each file implements one of the domain's storage traits.

mod accounts;
mod app_passwords;
mod audit;
mod batch;
mod budget;
mod callers;
mod convert;
mod db;
pub mod entities;
mod errors;
mod feed_numbering;
mod feed_wakeups;
mod leaks;
mod login;
mod pooling;
mod probe;
mod sqlite;
mod tenants;
mod throttle;
mod tokens;
mod usage;
mod webhooks;

use std::time::Duration;

use latchkey_migrations::{Migrator, MigratorTrait};
use sea_orm::sea_query::Value;
use sea_orm::{ColumnTrait, Condition};
use sea_orm::{ConnectOptions, Database};
use serde::{Deserialize, Serialize};

use crate::domain::shared::span::as_unit::millis;
pub use feed_numbering::FeedNumbering;

use crate::domain::login::model::LoginState;
use crate::domain::login::throttle::{Counter, Scope};
use crate::domain::shared::error::{Error, Reason, Result};

/// The pool's size on SQLite unless the configuration gives one (`Config::
/// load`; 16 on PostgreSQL and MariaDB). SQLite serves one process from a
/// file: its writes take turns whatever the pool's size, and its reads are
/// a batch of logins per statement, so a few connections serve all that
/// two cores can ask. Each connection is a thread of sqlx's with its own
/// page cache and, in glibc, its own malloc arena; under a spray of
/// distinct failures 16 of them grew the process by 117 MiB at 300,000
/// failures and still growing, 4 by 69-71 MiB and flat (BENCHMARKS.md,
/// "The spray"). With 4, one task reads logins (a quarter of the pool),
/// and its batches fill. Chosen where the configuration is loaded, so a
/// `Config` built in code keeps 16 unless it says otherwise.
pub const SQLITE_MAX_CONNECTIONS: u32 = 4;

/// Whether `url` names an SQLite database: `sqlite:`, in that letter case,
/// as sea-orm tells its backends apart. The one test of it, for the store
/// and the configuration.
pub fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}

/// The file an SQLite `url` names, as given (relative to the working
/// directory, or absolute); `None` for another backend or an in-memory
/// database. The one reading of the path, for the store and the commands
/// that say which database they used.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let path = path.trim_start_matches("//");
    let in_memory = path.is_empty()
        || path == ":memory:"
        || params.split('&').any(|param| param == "mode=memory");
    (!in_memory).then(|| std::path::PathBuf::from(path))
}

/// Connection pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    pub max_connections: u32,
    /// How long a request waits for a connection before it fails with
    /// UNAVAILABLE; short, so an outage fails requests fast instead of
    /// queueing them.
    #[serde(rename = "acquire_timeout", alias = "acquire_timeout_ms", with = "millis")]
    pub acquire_timeout_ms: u64,
    /// How long SQLite waits on a locked database before giving up.
    #[serde(rename = "sqlite_busy_timeout", alias = "sqlite_busy_timeout_ms", with = "millis")]
    pub sqlite_busy_timeout_ms: u64,
    /// How much of an SQLite file is read through a memory map, in MiB; 0
    /// (the default) reads through SQLite's page cache of each connection.
    /// Before login reads were batched, a map made warm logins with
    /// 1,000,000 app passwords stored as fast as with 1,000 (BENCHMARKS.md,
    /// run B); but each connection maps the file apart and the kernel maps
    /// pages around each one read, so the process's RSS counts shared page
    /// cache many times over and stops saying how much memory latchkey uses.
    pub sqlite_mmap_mib: u64,
    /// SQLite's page cache of each pooled connection, in MiB (SQLite's own
    /// default is about 2): the pool's cache is at most this × `max_connections`.
    pub sqlite_cache_mib: u64,
    /// How often the database is probed for grpc.health.v1
    /// (`store/probe.rs`): a database that refuses or drops connections is
    /// known to be down, and health NOT_SERVING, within about this; one
    /// that answers nothing, within this and `acquire_timeout`.
    #[serde(rename = "health_check_interval", alias = "health_check_interval_ms", with = "millis")]
    pub health_check_interval_ms: u64,
    /// How a PostgreSQL replica gives change-feed events their places:
    /// `after_commit` (written pending, numbered after the commit by one
    /// short transaction per batch) or `row_lock` (numbered in the
    /// change's transaction, holding the feed's one row until it commits:
    /// the design before, one writer of the fleet at a time). SQLite and
    /// MariaDB always use the row lock. Replicas of either kind may share a
    /// database (docs/change-feed.md).
    pub feed_numbering: FeedNumbering,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout_ms: 3_000,
            sqlite_busy_timeout_ms: 5_000,
            sqlite_mmap_mib: 0,
            sqlite_cache_mib: 2,
            health_check_interval_ms: 500,
            feed_numbering: FeedNumbering::AfterCommit,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqlStore {
    db: db::Db,
    /// What the replica knows of its database, and the one probe that
    /// finds out (`db.rs`, `probe.rs`).
    availability: std::sync::Arc<db::Availability>,
    probe: probe::Probe,
    /// Login reads, batched when they arrive together.
    logins: batch::Batcher<login::LoginKey, LoginState>,
    /// Login reads asked for since start, for `LoginStore::login_reads`.
    login_reads: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Failed logins' writes, committed together when they arrive together.
    failures: batch::Batcher<throttle::FailureWrite, Vec<(Scope, Counter)>>,
    /// What wakes the change feed's follower.
    feed_wakeups: feed_wakeups::FeedWakeups,
}

impl SqlStore {
    /// Opens a pool (SQLite's own settings are in `sqlite.rs`).
    pub async fn connect(url: &str, pool: PoolConfig) -> Result<Self> {
        let is_sqlite = is_sqlite(url);
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(pool.max_connections)
            .min_connections(1)
            .connect_timeout(Duration::from_millis(pool.acquire_timeout_ms))
            .acquire_timeout(Duration::from_millis(pool.acquire_timeout_ms))
            // sqlx would log statements with their bound values, and those
            // include hashes on insert.
            .sqlx_logging(false)
            // A pooled SQLite connection is a file handle that cannot go
            // stale, and pinging it first is a round trip to its worker
            // thread on every query. Over a network the ping is kept: it
            // is what keeps a dead connection from failing a request after
            // an outage.
            .test_before_acquire(!is_sqlite);
        // As long as a request waits for a connection: a probe refused or
        // reset finds the database down at once, one that hears nothing
        // within this does too, and one slowed by a busy machine is not
        // mistaken for an outage any sooner than a request would be.
        let acquire_wait = Duration::from_millis(pool.acquire_timeout_ms);
        let mut probe_options = options.clone();
        probe_options
            .max_connections(1)
            .min_connections(0)
            .connect_timeout(acquire_wait)
            .acquire_timeout(acquire_wait)
            .test_before_acquire(false);
        let availability = std::sync::Arc::new(db::Availability::new(url));
        let (db, probe_db) = if is_sqlite {
            let both = std::sync::Arc::clone(&availability);
            (
                sqlite::connect(url, options, pool, both.clone()).await?,
                sqlite::connect(url, probe_options, pool, both).await?,
            )
        } else {
            // PostgreSQL: a refusal for the number of connections said as
            // such, and transaction pooling refused (`budget.rs`,
            // `pooling.rs`).
            let db = match Database::connect(options).await {
                Ok(db) => db,
                Err(error) => return Err(budget::explain_refusal(url, error, pool).await),
            };
            pooling::refuse_transaction_pooling(&db, acquire_wait).await?;
            budget::warn_if_short(&db, pool).await;
            (db, Database::connect(probe_options).await?)
        };
        let probe = probe::Probe::new(probe_db, std::sync::Arc::clone(&availability), acquire_wait);
        let after_commit = sea_orm::ConnectionTrait::get_database_backend(&db)
            == sea_orm::DbBackend::Postgres
            && pool.feed_numbering == FeedNumbering::AfterCommit;
        let sequencer = after_commit.then(std::sync::Arc::default);
        let db = db::Db::new(db, std::sync::Arc::clone(&availability), sequencer);
        // A quarter of the pool reads logins, and as many workers write
        // failures (on SQLite one: its writes take turns anyway, and one
        // writer never sleeps in SQLite's busy handler waiting for another).
        // Each holds a connection only while its batch runs.
        // At most 64: a pool sized past any server's room (a test does)
        // must not spawn a worker per four connections of it.
        let workers = usize::try_from(pool.max_connections / 4)
            .unwrap_or(1)
            .min(64);
        let logins = batch::Batcher::start(&db, workers, login::MAX_BATCH, login::read_batch);
        let writers = if is_sqlite { 1 } else { workers };
        let failures = batch::Batcher::start(
            &db,
            writers,
            throttle::MAX_FAILURE_BATCH,
            throttle::write_failures,
        );
        Ok(Self {
            db,
            availability,
            probe,
            logins,
            login_reads: std::sync::Arc::default(),
            failures,
            feed_wakeups: feed_wakeups::FeedWakeups::default(),
        })
    }

    /// Refuses a database whose schema is not this latchkey's: no
    /// migration table (an empty database, or not latchkey's), or
    /// migrations this binary has that it lacks. Reads only: the commands
    /// that open an existing database (`migrate_on_start` off) must change
    /// nothing before they are sure it is the server's.
    /// Returns why, in words for the command's error, on refusal.
    pub async fn check_schema(&self) -> std::result::Result<(), String> {
        use sea_orm::ConnectionTrait;
        let applied = self
            .db
            .query_all(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                "SELECT version FROM seaql_migrations",
            ))
            .await
            .map_err(|_| {
                "it has no latchkey schema (no seaql_migrations table): it is empty, or not \
                 latchkey's"
                    .to_owned()
            })?;
        let applied: std::collections::HashSet<String> = applied
            .iter()
            .filter_map(|row| row.try_get::<String>("", "version").ok())
            .collect();
        let missing: Vec<String> = Migrator::migrations()
            .iter()
            .map(|migration| migration.name().to_owned())
            .filter(|name| !applied.contains(name))
            .collect();
        match missing.last() {
            None => Ok(()),
            Some(newest) => Err(format!(
                "its schema lacks {} of this latchkey's migrations (the newest: {newest})",
                missing.len()
            )),
        }
    }

    /// Applies pending migrations.
    /// Applies pending migrations; says how many, once (sea-orm's own line
    /// per migration is left out of the default log filter).
    pub async fn migrate(&self) -> Result<()> {
        let pending = Migrator::get_pending_migrations(self.db.pool()).await?;
        Migrator::up(self.db.pool(), None).await?;
        if let Some(newest) = pending.last() {
            tracing::info!(
                applied = pending.len(),
                newest = newest.name(),
                "database migrations applied"
            );
        }
        Ok(())
    }

    /// Writes a consistent copy of an SQLite database to `path` while it
    /// serves (`VACUUM INTO`: one read transaction, so the copy is the
    /// database as of one instant, with every committed write before it).
    /// `path` must not exist. PostgreSQL and MariaDB have their own tools
    /// for this (docs/deploy.md).
    pub async fn backup_to(&self, path: &std::path::Path) -> Result<()> {
        use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
        if self.db.get_database_backend() != DatabaseBackend::Sqlite {
            return Err(Error::FailedPrecondition(
                Reason::BackupNotSupported,
                "latchkey backup copies SQLite databases; for PostgreSQL use pg_dump or pg_basebackup, for MariaDB mariadb-dump (docs/deploy.md)".to_owned(),
            ));
        }
        if path.exists() {
            return Err(Error::FailedPrecondition(
                Reason::BackupTargetExists,
                format!(
                    "{} exists already; a backup never overwrites",
                    path.display()
                ),
            ));
        }
        let target = path
            .to_str()
            .ok_or_else(|| Error::invalid("path", "must be valid UTF-8"))?;
        self.db
            .execute(Statement::from_sql_and_values(
                DatabaseBackend::Sqlite,
                "VACUUM INTO ?",
                [target.into()],
            ))
            .await?;
        Ok(())
    }

    /// Probes the database (`probe.rs`) and answers whether the replica
    /// can serve: the database reachable, and its writes succeeding.
    pub async fn probe(&self) -> bool {
        self.probe.run().await
    }

    /// Waits until a request has seen a connection fail, or what the
    /// replica knows of its database changed: time for a probe.
    pub async fn probe_wanted(&self) {
        self.availability.woken().await;
    }

    /// Numbers change-feed events left pending by a writer that stopped
    /// between its commit and its numbering, once they have been pending
    /// through a whole interval of this sweep (`feed_numbering::Sweep`);
    /// every `interval` until `stop`. Only PostgreSQL has pending events;
    /// every replica sweeps, whatever its own `database.feed_numbering`.
    pub async fn sweep_feed(
        &self,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        use sea_orm::ConnectionTrait;
        if self.db.get_database_backend() != sea_orm::DbBackend::Postgres {
            return;
        }
        let sequencer = self.db.sequencer().cloned().unwrap_or_default();
        let mut sweep = feed_numbering::Sweep::default();
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.changed() => return,
            }
            if let Err(error) = sweep.look(&self.db, &sequencer).await {
                tracing::debug!(%error, "looking for pending change-feed events failed; will retry");
            }
        }
    }

    pub async fn close(self) -> Result<()> {
        self.feed_wakeups.stop().await;
        self.probe.close().await;
        Ok(self.db.pool().clone().close().await?)
    }
}

/// A stored duration in milliseconds; a negative one (never written) is
/// zero.
pub(crate) fn duration_of_millis(millis: i64) -> Duration {
    Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// A duration as stored, in milliseconds, saturating.
pub(crate) fn millis_of_duration(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Rows after a `(time, id)` cursor in a newest-first listing: older, or as
/// old with a smaller id. Every paged listing orders by the same pair.
fn before_cursor(
    time: impl ColumnTrait,
    id: impl ColumnTrait,
    at: i64,
    last_id: impl Into<Value> + Clone,
) -> Condition {
    Condition::any()
        .add(time.lt(at))
        .add(Condition::all().add(time.eq(at)).add(id.lt(last_id)))
}

/// `values` padded to `size` with copies of its last one (a list in `IN`
/// means the same with repeats), so that a statement listing them has the
/// same text whatever their number: sqlx prepares each distinct text once
/// per connection and keeps it, and statements whose lists vary in length
/// would fill those caches (on PostgreSQL, seen as RSS rising during a bulk
/// revocation with a varying number of accounts per batch).
pub(crate) fn fixed_shape<T: Clone>(mut values: Vec<T>, size: u32) -> Vec<T> {
    if let Some(last) = values.last().cloned() {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if values.len() < size {
            values.resize(size, last);
        }
    }
    values
}
