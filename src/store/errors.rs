//! Which database errors mean "try again later" and which are bugs.

use sea_orm::sqlx;
use sea_orm::{DbErr, RuntimeErr};

use crate::domain::shared::error::Error;

/// Maps a database error into the domain's terms: anything that says the
/// database is unreachable, restarting, overloaded or locked is
/// `Unavailable` (the request changed nothing and may be retried); the rest
/// is `Internal`. The store's one conversion, so `?` on a database call
/// says it; it lives here, with the store: the domain's error type knows
/// nothing of SQL.
impl From<DbErr> for Error {
    fn from(error: DbErr) -> Self {
        if is_transient(&error) {
            Error::Unavailable(Box::new(error))
        } else {
            Error::Internal(Box::new(error))
        }
    }
}

fn is_transient(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)) => {
            is_transient_sqlx(error)
        }
        _ => false,
    }
}

fn is_transient_sqlx(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => is_transient_database_error(db.as_ref()),
        _ => false,
    }
}

/// SQLite: BUSY, LOCKED, IOERR, CANTOPEN (primary codes 5, 6, 10, 14, with
/// any extended code); PostgreSQL: class 08 (connection), 57P01-57P03
/// (shutdown, starting up), 40001/40P01 (serialization failure, deadlock),
/// 53300 (too many connections); MySQL: 1040 (too many connections), 1205
/// (lock wait timeout), 1213 (deadlock).
fn is_transient_database_error(error: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = error.code() else {
        return false;
    };
    if error
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .is_some()
    {
        return code
            .parse::<u32>()
            .is_ok_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 14));
    }
    if error
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        return code.starts_with("08")
            || matches!(
                &*code,
                "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300"
            );
    }
    if let Some(mysql) = error.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // 1020: a write under MariaDB's innodb_snapshot_isolation (on by
        // default from 11.6.2) to a row changed since the transaction's
        // snapshot; the change feed's one row is written by every
        // transaction with feed events, so it happens under concurrency
        // there. Retrying succeeds (README, "Configuration").
        return matches!(mysql.number(), 1020 | 1040 | 1205 | 1213);
    }
    false
}
