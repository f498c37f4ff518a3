//! Transaction pooling in front of PostgreSQL, refused at start.
//!
//! Behind pgbouncer with `pool_mode = transaction` (or any pooler that
//! gives a server connection to another client between transactions),
//! latchkey would run statements that can be confused, so it does not
//! start: [`refuse_transaction_pooling`] says so, naming pgbouncer's
//! transaction pooling. Session pooling, and a direct connection, pass.
//!
//! Why refuse rather than run correctly there (docs/deploy.md,
//! "pgbouncer"):
//! - sqlx 0.8 prepares every statement sea-orm sends as a *named* server
//!   statement (`sqlx_s_1`, `sqlx_s_2`, … numbered per client connection)
//!   in one exchange and binds it in a later one. Under transaction
//!   pooling the later exchange may reach another server connection,
//!   where the same name was prepared by another client for another
//!   statement: seen as `bind message supplies 2 parameters, but prepared
//!   statement "sqlx_s_3" requires 3`, and when the shapes match, the
//!   wrong statement runs.
//! - `statement_cache_capacity(0)` does not help: sqlx still prepares
//!   named statements then (and never closes them). Unnamed statements
//!   need `persistent(false)` on each query, which sea-orm does not
//!   expose, and would still be parsed and bound in two exchanges.
//! - pgbouncer 1.21 and later can track named statements per server
//!   connection (`max_prepared_statements`), but Debian 12 ships 1.18, and
//!   what latchkey cannot test it does not claim.
//! - The change feed's LISTEN needs a session of its own as well.
//!
//! How it is told: two connections of latchkey's own, `first` idle between
//! statements and `second` holding a transaction open, each asking which
//! server process serves it (`pg_backend_pid()`, in simple queries, which
//! prepare nothing). On a direct connection or under session pooling a
//! client keeps its server process for its whole life: `first` always
//! sees its own, and `second` never sees it. Under transaction pooling the
//! idle `first` has no server: pgbouncer hands its last one to the next
//! transaction (`second`'s, at once on a quiet pool), and `first`'s next
//! statement gets another while `second` holds that one. Either sighting
//! refuses, and so does `second` seeing another server than in an earlier
//! round; there are no false refusals. The check is repeated, since other
//! clients' traffic can hide a round: on a busy pool another client may
//! take `first`'s server between its statements and hand it back before
//! `first` asks again (seen in CI, with the machine's cores busy), but not
//! round after round while `second` keeps getting the same other one.

use std::fmt;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgConnection;
use sea_orm::sqlx::{self, Connection, Row};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection};

use crate::domain::shared::error::{Error, Outage, Result};

/// How many times the check looks before it concludes that server
/// connections stay with their clients.
const ROUNDS: usize = 16;

/// Fails when the PostgreSQL connections behind `db` are pooled per
/// transaction, or when the check gets no server connection `within`
/// (behind pgbouncer in session mode, a pool too small for the replicas;
/// docs/deploy.md). Other backends pass at once.
///
/// Holds one connection from `db`'s pool and one of its own while it runs,
/// so a replica's connections at start stay within
/// `database.max_connections + 1`.
pub(super) async fn refuse_transaction_pooling(
    db: &DatabaseConnection,
    within: Duration,
) -> Result<()> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    let pool = db.get_postgres_connection_pool();
    let checked = tokio::time::timeout(within, async {
        let mut first = pool.acquire().await?;
        let options = pool.connect_options();
        let mut second = PgConnection::connect_with(&options).await?;
        let changed = server_changes_hands(&mut first, &mut second).await;
        // The check's own connection goes whatever it found; `first` goes
        // back to the pool.
        let _ = second.close().await;
        changed
    })
    .await;
    match checked {
        Ok(Ok(false)) => Ok(()),
        Ok(Ok(true)) => Err(Error::Internal(Box::new(Refused::TransactionPooling))),
        Ok(Err(error)) => Err(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(error)).into()),
        Err(_elapsed) => Err(Error::Unavailable(
            Outage::Transient,
            Box::new(Refused::NoServer(within)),
        )),
    }
}

/// Whether a server process was seen serving another client than the one
/// it served before (see the module doc).
async fn server_changes_hands(
    first: &mut PgConnection,
    second: &mut PgConnection,
) -> std::result::Result<bool, sqlx::Error> {
    let own = server_process(first).await?;
    let mut seconds = None;
    for _ in 0..ROUNDS {
        sqlx::raw_sql("BEGIN").execute(&mut *second).await?;
        let held = server_process(second).await;
        let again = server_process(first).await;
        sqlx::raw_sql("ROLLBACK").execute(&mut *second).await?;
        let held = held?;
        if held == own || again? != own || *seconds.get_or_insert(held) != held {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The server process serving `connection`'s statement, asked in a simple
/// query (no statement is prepared).
async fn server_process(connection: &mut PgConnection) -> std::result::Result<i32, sqlx::Error> {
    sqlx::raw_sql("SELECT pg_backend_pid()")
        .fetch_one(connection)
        .await?
        .try_get(0)
}

/// Why the check refused to go on.
#[derive(Debug)]
enum Refused {
    TransactionPooling,
    NoServer(Duration),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::TransactionPooling => f.write_str(
                "refusing to run behind transaction pooling (pgbouncer's pool_mode = transaction, \
                 or a pooler that does the same): a PostgreSQL server connection served another \
                 client between two of latchkey's statements, and latchkey's prepared statements \
                 and its change feed's LISTEN need a server connection per client connection. \
                 Set pool_mode = session for latchkey's database in pgbouncer.ini, with a \
                 pool_size of at least replicas × (database.max_connections + 1), or connect to \
                 PostgreSQL directly (docs/deploy.md, \"pgbouncer\")",
            ),
            Refused::NoServer(within) => write!(
                f,
                "no PostgreSQL server connection within {} ms; behind pgbouncer in session \
                 mode, its pool_size for latchkey's database must be at least replicas × \
                 (database.max_connections + 1), or requests wait for a server connection \
                 that never frees (docs/deploy.md, \"pgbouncer\")",
                within.as_millis()
            ),
        }
    }
}

impl std::error::Error for Refused {}
