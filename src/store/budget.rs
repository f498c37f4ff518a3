//! PostgreSQL's connection budget, said at start.
//!
//! Each replica opens up to `database.max_connections` connections (the
//! change feed's LISTEN connection is one of them), and one more for a
//! moment at start (`pooling.rs`). PostgreSQL serves at most its own
//! `max_connections`, less `superuser_reserved_connections`, to ordinary
//! roles, and a role or a database may have a `CONNECTION LIMIT`. Past
//! that it refuses with SQLSTATE 53300, which sqlx's pool takes for a
//! passing state and retries in silence until its acquire timeout: all an
//! operator saw was "pool timed out". So:
//! - [`explain_refusal`]: when the pool cannot open its first connection,
//!   one connection of its own asks again, and a 53300 becomes an error
//!   that names PostgreSQL's limit and the budget; any other refusal it
//!   hears (connection refused, no such database, a bad password, on
//!   MariaDB too) replaces the pool's "pool timed out", which hid it;
//! - [`warn_if_short`]: once connected, a warning when the server has
//!   fewer free connections than this replica may still open.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::mysql::MySqlConnection;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use sea_orm::sqlx::{self, Connection};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, RuntimeErr, Statement};

use super::PoolConfig;
use crate::domain::shared::error::{Error, Outage};

/// SQLSTATE too_many_connections: the server's `max_connections`, or a
/// role's or a database's `CONNECTION LIMIT`, is reached.
const TOO_MANY_CONNECTIONS: &str = "53300";

/// `error`, from opening the pool on `url`, or, when PostgreSQL refuses
/// connections for their number, an error that says so.
pub(super) async fn explain_refusal(url: &str, error: DbErr, pool: PoolConfig) -> Error {
    let timed_out = matches!(
        &error,
        DbErr::Conn(RuntimeErr::SqlxError(sqlx::Error::PoolTimedOut))
    );
    if !timed_out {
        return error.into();
    }
    let within = Duration::from_millis(pool.acquire_timeout_ms);
    let heard = if url.starts_with("postgres") {
        let Ok(options) = PgConnectOptions::from_str(url) else {
            return error.into();
        };
        match tokio::time::timeout(within, PgConnection::connect_with(&options)).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                return error.into();
            }
            Ok(Err(heard)) => heard,
            Err(_) => return error.into(),
        }
    } else if url.starts_with("mysql") || url.starts_with("mariadb") {
        match tokio::time::timeout(within, MySqlConnection::connect(url)).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                return error.into();
            }
            Ok(Err(heard)) => heard,
            Err(_) => return error.into(),
        }
    } else {
        return error.into();
    };
    match heard {
        sqlx::Error::Database(refusal)
            if refusal.code().as_deref() == Some(TOO_MANY_CONNECTIONS) =>
        {
            Error::Unavailable(
                Outage::Transient,
                Box::new(TooManyConnections {
                    said: refusal.message().to_owned(),
                    pool,
                }),
            )
        }
        // What the server (or the network) said, not the pool's wait.
        heard => DbErr::Conn(RuntimeErr::SqlxError(heard)).into(),
    }
}

/// Warns when the PostgreSQL server behind `db` has fewer free connections
/// for ordinary roles than this replica may still open. A warning, not a
/// refusal: other replicas' idle connections close in time, and behind
/// pgbouncer the server's numbers are not the pool's.
pub(super) async fn warn_if_short(db: &DatabaseConnection, pool: PoolConfig) {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return;
    }
    let room = db
        .query_one(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT current_setting('max_connections')::int4 AS max, \
             current_setting('superuser_reserved_connections')::int4 AS reserved, \
             (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int4 AS open",
        ))
        .await;
    let Ok(Some(row)) = room else {
        return;
    };
    let (Ok(max), Ok(reserved), Ok(open)) = (
        row.try_get::<i32>("", "max"),
        row.try_get::<i32>("", "reserved"),
        row.try_get::<i32>("", "open"),
    ) else {
        return;
    };
    let free = i64::from(max) - i64::from(reserved) - i64::from(open);
    // This replica holds one connection now, and may open the rest.
    let wanted = i64::from(pool.max_connections) - 1;
    if free < wanted {
        tracing::warn!(
            postgres_max_connections = max,
            superuser_reserved_connections = reserved,
            open_connections = open,
            free_connections = free,
            database_max_connections = pool.max_connections,
            "PostgreSQL has room for {free} more connections, and this replica may open {wanted} \
             more (database.max_connections = {}); past PostgreSQL's max_connections it refuses \
             them (SQLSTATE 53300) and requests wait, then fail UNAVAILABLE. Budget: replicas × \
             (database.max_connections + 1) + other clients ≤ max_connections − \
             superuser_reserved_connections (docs/deploy.md, \"Connection budget\")",
            pool.max_connections
        );
    }
}

/// PostgreSQL refused a connection for the number of connections.
#[derive(Debug)]
struct TooManyConnections {
    /// What PostgreSQL said: its `max_connections` ("too many clients
    /// already"), or a role's or a database's `CONNECTION LIMIT`.
    said: String,
    pool: PoolConfig,
}

impl fmt::Display for TooManyConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PostgreSQL refuses connections for their number (SQLSTATE 53300: {}). Each \
             replica opens up to database.max_connections ({}) connections and one more at \
             start: replicas × {} + other clients must stay within PostgreSQL's \
             max_connections − superuser_reserved_connections (100 − 3 by default), and within \
             the role's and the database's CONNECTION LIMIT. Lower database.max_connections, \
             run fewer replicas, raise max_connections (a server restart), or put pgbouncer in \
             session mode in front (docs/deploy.md, \"Connection budget\")",
            self.said,
            self.pool.max_connections,
            u64::from(self.pool.max_connections) + 1,
        )
    }
}

impl std::error::Error for TooManyConnections {}
