//! Storage on sea-orm: SQLite, PostgreSQL or MySQL/MariaDB, chosen by the
//! database URL.

mod accounts;
mod app_passwords;
mod convert;
pub mod entities;
mod errors;

use std::net::IpAddr;
use std::time::Duration;

use latchkey_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::clock::Timestamp;
use crate::domain::error::Result;
use crate::domain::model::{Account, AppPassword, AppPasswordCursor, Page};
use crate::domain::store::{Credential, IssueOutcome, NewAppPassword, Store, Usage};
use crate::domain::username::Username;
pub use errors::db_error;

/// Connection pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub max_connections: u32,
    /// How long a request waits for a connection before it fails with
    /// UNAVAILABLE; short, so an outage fails requests fast instead of
    /// queueing them.
    pub acquire_timeout_ms: u64,
    /// How long SQLite waits on a locked database before giving up.
    pub sqlite_busy_timeout_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout_ms: 3_000,
            sqlite_busy_timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqlStore {
    db: DatabaseConnection,
}

impl SqlStore {
    /// Opens a pool. SQLite runs in WAL mode (readers never wait for the
    /// writer) with a busy timeout; `synchronous` stays FULL so that a
    /// returned write survives a power cut, as the API promises.
    pub async fn connect(url: &str, pool: PoolConfig) -> Result<Self> {
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(pool.max_connections)
            .min_connections(1)
            .connect_timeout(Duration::from_millis(pool.acquire_timeout_ms))
            .acquire_timeout(Duration::from_millis(pool.acquire_timeout_ms))
            // sqlx would log statements with their bound values, and those
            // include hashes on insert.
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(move |sqlite| {
                sqlite
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_millis(pool.sqlite_busy_timeout_ms))
                    .foreign_keys(true)
            });
        let db = Database::connect(options).await.map_err(db_error)?;
        Ok(Self { db })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        Migrator::up(&self.db, None).await.map_err(db_error)
    }

    pub async fn close(self) -> Result<()> {
        self.db.close().await.map_err(db_error)
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
}

impl Store for SqlStore {
    async fn issue(&self, new: NewAppPassword, cap: u32) -> Result<IssueOutcome> {
        self.issue_app_password(new, cap).await
    }

    async fn find_credential(
        &self,
        username: &Username,
        selector: &str,
    ) -> Result<Option<Credential>> {
        self.credential(username, selector).await
    }

    async fn record_use(&self, id: Uuid, usage: Usage) -> Result<()> {
        self.record_app_password_use(id, usage).await
    }

    async fn get_app_password(&self, username: &Username, id: Uuid) -> Result<Option<AppPassword>> {
        self.app_password(username, id).await
    }

    async fn list_app_passwords(
        &self,
        username: &Username,
        show_revoked: bool,
        after: Option<AppPasswordCursor>,
        limit: u32,
    ) -> Result<Option<Page<AppPassword>>> {
        self.app_passwords_page(username, show_revoked, after, limit)
            .await
    }

    async fn revoke_app_password(
        &self,
        username: &Username,
        id: Uuid,
        reason: &str,
        now: Timestamp,
    ) -> Result<Option<AppPassword>> {
        self.revoke_one(username, id, reason, now).await
    }

    async fn revoke_account_app_passwords(
        &self,
        username: &Username,
        reason: &str,
        now: Timestamp,
    ) -> Result<u64> {
        self.revoke_all(username, reason, now).await
    }

    async fn get_account(&self, username: &Username, now: Timestamp) -> Result<Option<Account>> {
        self.account(username, now).await
    }

    async fn list_accounts(
        &self,
        after: Option<&Username>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Page<Account>> {
        self.accounts_page(after, limit, now).await
    }

    async fn set_account_disabled(
        &self,
        username: &Username,
        disable: Option<(Timestamp, &str)>,
        now: Timestamp,
    ) -> Result<Option<Account>> {
        self.set_disabled(username, disable, now).await
    }

    async fn delete_account(&self, username: &Username) -> Result<bool> {
        self.delete(username).await
    }
}

/// Stored text form of a client address.
fn ip_to_stored(ip: IpAddr) -> String {
    ip.to_string()
}
