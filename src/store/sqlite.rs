//! The SQLite pool: its connections' settings, and the check that no
//! connection goes back to the pool inside a transaction.
//!
//! A statement that fails inside a transaction (SQLITE_FULL on a full disk,
//! an I/O error) may make SQLite roll back the whole transaction by itself,
//! or only the one statement. sqlx keeps its own count of open transactions
//! and cannot tell which: when SQLite has already rolled back, sqlx's
//! ROLLBACK fails and its count stays one too high; its next BEGIN is then
//! a SAVEPOINT, whose rollback (`ROLLBACK TO`) leaves SQLite's transaction
//! open. A connection left so holds the database's write lock for good:
//! every write of this process and of any other answers "database is
//! locked" until a restart (issue 22, measured: 0 of 1,625 issues in 25 s
//! after the disk had space again). So every connection is checked as it
//! is released, and closed (which rolls back whatever it held) unless both
//! SQLite and sqlx agree that no transaction is open. The check is a round
//! trip to the connection's thread, so it runs only for a while after a
//! statement failed (`Availability::suspect`): without an error, SQLite
//! never rolls back by itself and the two counts cannot part. Measured
//! before this was limited so: warm logins at 0.23-0.30x the no-op RPC
//! against 0.31x without the check, in one hour of this machine.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use sea_orm::sqlx::{self, ConnectOptions as _, Connection, Executor, Sqlite};
use sea_orm::{ConnectOptions, DatabaseConnection, DbErr, RuntimeErr, SqlxSqliteConnector};

use super::db::Availability;
use super::PoolConfig;

/// Opens the pool of `url` with `options` (the pool's sizes and timeouts).
/// WAL mode (readers never wait for the writer), a busy timeout, and
/// `synchronous` left FULL so that a returned write survives a power cut,
/// as the API promises.
pub(super) async fn connect(
    url: &str,
    options: ConnectOptions,
    pool: PoolConfig,
    availability: Arc<Availability>,
) -> Result<DatabaseConnection, DbErr> {
    let sqlite = SqliteConnectOptions::from_str(url)
        .map_err(connection_error)?
        // sqlx would log statements with their bound values, and those
        // include hashes on insert.
        .disable_statement_logging()
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_millis(pool.sqlite_busy_timeout_ms))
        .foreign_keys(true)
        .pragma("mmap_size", (pool.sqlite_mmap_mib << 20).to_string())
        .pragma("cache_size", format!("-{}", pool.sqlite_cache_mib << 10));
    let pool = options
        .sqlx_pool_options::<Sqlite>()
        .after_release(move |connection, _| {
            let suspect = availability.suspect();
            Box::pin(released(connection, suspect))
        })
        .connect_with(sqlite)
        .await
        .map_err(connection_error)?;
    Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
}

/// Whether a released connection may go back to the pool: only when no
/// transaction is open, by SQLite's account (a deferred BEGIN, which takes
/// no lock and touches no file, fails inside a transaction) and by sqlx's.
/// The check runs after anything the connection still had queued, such as
/// the rollback of a transaction dropped unfinished; only while `suspect`.
async fn released(connection: &mut SqliteConnection, suspect: bool) -> Result<bool, sqlx::Error> {
    if !suspect {
        return Ok(true);
    }
    if connection.execute("BEGIN; ROLLBACK").await.is_err() {
        tracing::warn!("an SQLite connection was released inside a transaction; closing it");
        return Ok(false);
    }
    if connection.is_in_transaction() {
        tracing::warn!("an SQLite connection's transaction count went astray; closing it");
        return Ok(false);
    }
    Ok(true)
}

fn connection_error(error: sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(error))
}
