//! The health probe: the one that finds out whether the database is
//! reachable and whether it takes writes, for [`Availability`]. It runs on
//! a pool of one connection of its own, so that a replica whose pool is
//! busy with requests is never taken for one whose database is down, and a
//! request never waits on it. One probe runs at a time: the health watch
//! calls it (`app/background.rs`), every interval and whenever a request
//! has seen a connection fail.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::{Alias, OnConflict, Query};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement};

use super::db::{Availability, Writes};
use super::errors::{classify, Class};

#[derive(Debug, Clone)]
pub(super) struct Probe {
    db: DatabaseConnection,
    availability: Arc<Availability>,
    /// How long each step may take.
    within: Duration,
}

impl Probe {
    pub(super) fn new(
        db: DatabaseConnection,
        availability: Arc<Availability>,
        within: Duration,
    ) -> Self {
        Self {
            db,
            availability,
            within,
        }
    }

    /// Probes, each step within its bound, and tells [`Availability`]:
    /// - the database reachable or not (a statement answered);
    /// - on PostgreSQL, whether the server is read-only (a standby, or
    ///   `default_transaction_read_only`): writes would fail there;
    /// - while writes are failing, and none was refused for a bound,
    ///   whether a write of its own succeeds.
    ///
    /// Answers whether the replica can serve.
    pub(super) async fn run(&self) -> bool {
        let within = self.within;
        let read_only = match tokio::time::timeout(within, self.read_only()).await {
            Ok(Ok(read_only)) => read_only,
            Ok(Err(_)) | Err(_) => {
                self.availability.set_down(true);
                return false;
            }
        };
        self.availability.set_down(false);
        if read_only {
            self.availability.set_writes(Writes::ReadOnly);
        } else if self.availability.writes() != Writes::Succeed
            && !self.availability.refused_within(within)
        {
            match tokio::time::timeout(within, self.write()).await {
                Ok(Ok(())) => self.availability.set_writes(Writes::Succeed),
                Ok(Err(error)) => match classify(&error) {
                    Class::DiskFull => self.availability.set_writes(Writes::DiskFull),
                    Class::ReadOnly => self.availability.set_writes(Writes::ReadOnly),
                    _ => {}
                },
                Err(_) => {}
            }
        }
        self.availability.serving()
    }

    pub(super) async fn close(&self) {
        let _ = self.db.clone().close().await;
    }

    /// Whether the server says it takes no writes; on SQLite and MySQL
    /// only a refused write says so, and this is a ping.
    async fn read_only(&self) -> Result<bool, DbErr> {
        let backend = self.db.get_database_backend();
        if backend != DatabaseBackend::Postgres {
            self.db.ping().await?;
            return Ok(false);
        }
        let row = self
            .db
            .query_one(Statement::from_string(
                backend,
                "SELECT current_setting('transaction_read_only') AS read_only",
            ))
            .await?;
        let setting: Option<String> = match row {
            Some(row) => row.try_get("", "read_only")?,
            None => None,
        };
        Ok(setting.as_deref() == Some("on"))
    }

    /// Rewrites the probe's one row (migration 11): a write that must reach
    /// the disk, and touches nothing a request reads.
    async fn write(&self) -> Result<(), DbErr> {
        let (table, id, probes) = (
            Alias::new("write_probe"),
            Alias::new("id"),
            Alias::new("probes"),
        );
        let mut insert = Query::insert();
        insert
            .into_table(table.clone())
            .columns([id.clone(), probes.clone()])
            .values([1.into(), 1.into()])
            .map_err(|error| DbErr::Custom(error.to_string()))?
            .on_conflict(
                OnConflict::column(id)
                    .value(
                        probes.clone(),
                        sea_orm::sea_query::Expr::col((table, probes)).add(1),
                    )
                    .to_owned(),
            );
        let backend = self.db.get_database_backend();
        self.db.execute(backend.build(&insert)).await?;
        Ok(())
    }
}
