//! Which database errors mean "try again later", of which kind, and which
//! are bugs: the store's one classification, used by the conversion into
//! the domain's error and by what the replica learns of its database
//! (`db.rs`).

use sea_orm::sqlx;
use sea_orm::{DbErr, RuntimeErr};

use crate::domain::shared::error::{Error, Outage};

/// The message of the error a replica answers with, without trying, while
/// it knows its database is down (`db.rs`).
pub(super) const KNOWN_DOWN: &str =
    "the database is unreachable; answering at once until a probe reaches it";

/// What a database error says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// The database cannot be reached: a connection was refused, reset or
    /// lost, or the server is shutting down or starting.
    Unreachable,
    /// This replica already knew the database was down and did not try.
    KnownDown,
    /// Retryable, and says nothing about the database as a whole: a lock, a
    /// deadlock, a full pool, too many connections.
    Transient,
    /// The disk under the database is full.
    DiskFull,
    /// The database refuses writes.
    ReadOnly,
    /// Anything else: a bug or an unexpected state.
    Bug,
}

/// Maps a database error into the domain's terms: anything retryable is
/// `Unavailable`, with the [`Outage`] it is (the request changed nothing
/// and may be retried); the rest is `Internal`. The store's one
/// conversion, so `?` on a database call says it; it lives here, with the
/// store: the domain's error type knows nothing of SQL.
impl From<DbErr> for Error {
    fn from(error: DbErr) -> Self {
        let outage = match classify(&error) {
            Class::Unreachable | Class::Transient => Outage::Transient,
            Class::KnownDown => Outage::Down,
            Class::DiskFull => Outage::DiskFull,
            Class::ReadOnly => Outage::ReadOnly,
            Class::Bug => return Error::Internal(Box::new(error)),
        };
        Error::Unavailable(outage, Box::new(error))
    }
}

/// Whether `error` says the database chose this transaction as a deadlock
/// (or serialization) victim and rolled all of it back: nothing of it was
/// written, so running it again counts nothing twice.
pub(super) fn rolled_back(error: &Error) -> bool {
    let Error::Unavailable(Outage::Transient, source) = error else {
        return false;
    };
    let Some(
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)),
    ) = source.downcast_ref::<DbErr>()
    else {
        return false;
    };
    let Some(database) = error.as_database_error() else {
        return false;
    };
    if let Some(mysql) = database.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(mysql.number(), 1213 | 1020);
    }
    if database
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        return matches!(database.code().as_deref(), Some("40001" | "40P01"));
    }
    false
}

pub(super) fn classify(error: &DbErr) -> Class {
    match error {
        DbErr::Conn(RuntimeErr::Internal(message)) if message == KNOWN_DOWN => Class::KnownDown,
        DbErr::ConnectionAcquire(_) => Class::Transient,
        DbErr::Conn(RuntimeErr::SqlxError(error))
        | DbErr::Exec(RuntimeErr::SqlxError(error))
        | DbErr::Query(RuntimeErr::SqlxError(error)) => classify_sqlx(error),
        DbErr::Conn(_) => Class::Unreachable,
        _ => Class::Bug,
    }
}

fn classify_sqlx(error: &sqlx::Error) -> Class {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => Class::Unreachable,
        // A full pool is this replica's load, not the database's absence.
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => Class::Transient,
        sqlx::Error::Database(db) => classify_database_error(db.as_ref()),
        _ => Class::Bug,
    }
}

/// By the database's own codes.
///
/// - SQLite (primary code, any extended code): FULL 13 is a full disk,
///   READONLY 8 a refused write; BUSY 5, LOCKED 6, IOERR 10 and CANTOPEN 14
///   are transient.
/// - PostgreSQL: class 08 (connection) and 57P01-57P03 (shutdown, starting
///   up) unreachable; 53100 a full disk; 25006 a read-only transaction (a
///   standby, `default_transaction_read_only`); 40001/40P01 (serialization
///   failure, deadlock) and 53300 (too many connections) transient.
/// - MySQL/MariaDB: 1021 and 1114 a full disk; 1290, 1792 and 1836 a
///   read-only server; 1020, 1040, 1205 and 1213 transient.
fn classify_database_error(error: &dyn sqlx::error::DatabaseError) -> Class {
    let Some(code) = error.code() else {
        return Class::Bug;
    };
    if error
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .is_some()
    {
        return match code.parse::<u32>().map(|code| code & 0xff) {
            Ok(13) => Class::DiskFull,
            Ok(8) => Class::ReadOnly,
            Ok(5 | 6 | 10 | 14) => Class::Transient,
            _ => Class::Bug,
        };
    }
    if error
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        return match &*code {
            code if code.starts_with("08") => Class::Unreachable,
            "57P01" | "57P02" | "57P03" => Class::Unreachable,
            "53100" => Class::DiskFull,
            "25006" => Class::ReadOnly,
            "40001" | "40P01" | "53300" => Class::Transient,
            _ => Class::Bug,
        };
    }
    if let Some(mysql) = error.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return match mysql.number() {
            1021 | 1114 => Class::DiskFull,
            1290 | 1792 | 1836 => Class::ReadOnly,
            // 1020: a write under MariaDB's innodb_snapshot_isolation (on
            // by default from 11.6.2) to a row changed since the
            // transaction's snapshot; the change feed's one row is written
            // by every transaction with feed events, so it happens under
            // concurrency there. Retrying succeeds (README,
            // "Configuration").
            1020 | 1040 | 1205 | 1213 => Class::Transient,
            _ => Class::Bug,
        };
    }
    Class::Bug
}
