//! latchkey's schema, as sea-orm migrations that run unchanged on SQLite,
//! PostgreSQL and MySQL/MariaDB.
//!
//! Times are stored as `BIGINT` milliseconds since the Unix epoch: the same
//! type and the same comparisons on every backend, and no 2038 limit
//! (MySQL's `TIMESTAMP` has one, and app passwords may expire later).

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_account;
mod m20261125_000002_create_app_password;
mod m20261125_000003_create_caller;
mod m20261125_000004_create_audit_event;
mod m20261125_000005_add_app_password_seen_networks;
mod m20261125_000006_create_auth_throttle;
mod m20261125_000007_add_app_password_last_used_client;
mod m20261125_000008_add_app_password_lifecycle;
mod m20261125_000009_create_event_feed;
mod m20261204_000010_add_app_password_warm_verifier;
mod m20261204_000011_create_write_probe;
mod m20261204_000012_add_audit_event_feed_mark;
mod m20261205_000013_add_audit_event_feed_pending;
mod m20261205_000014_create_tenant;
mod m20261205_000015_add_caller_key_life;
mod m20261205_000016_clear_ambiguous_account_domain;
mod m20261205_000017_add_app_password_public_id;
mod m20261205_000018_create_oauth_revoked_token;
mod m20261205_000019_create_webhook_cursor;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_account::Migration),
            Box::new(m20261125_000002_create_app_password::Migration),
            Box::new(m20261125_000003_create_caller::Migration),
            Box::new(m20261125_000004_create_audit_event::Migration),
            Box::new(m20261125_000005_add_app_password_seen_networks::Migration),
            Box::new(m20261125_000006_create_auth_throttle::Migration),
            Box::new(m20261125_000007_add_app_password_last_used_client::Migration),
            Box::new(m20261125_000008_add_app_password_lifecycle::Migration),
            Box::new(m20261125_000009_create_event_feed::Migration),
            Box::new(m20261204_000010_add_app_password_warm_verifier::Migration),
            Box::new(m20261204_000011_create_write_probe::Migration),
            Box::new(m20261204_000012_add_audit_event_feed_mark::Migration),
            Box::new(m20261205_000013_add_audit_event_feed_pending::Migration),
            Box::new(m20261205_000014_create_tenant::Migration),
            Box::new(m20261205_000015_add_caller_key_life::Migration),
            Box::new(m20261205_000016_clear_ambiguous_account_domain::Migration),
            Box::new(m20261205_000017_add_app_password_public_id::Migration),
            Box::new(m20261205_000018_create_oauth_revoked_token::Migration),
            Box::new(m20261205_000019_create_webhook_cursor::Migration),
        ]
    }
}

/// A `varchar(len)` column compared for identity (usernames, selectors),
/// which must compare byte for byte. MySQL's default collations fold case
/// and accents, which would merge distinct normalized usernames, so there it
/// gets a binary collation; the other backends compare bytes already.
pub(crate) fn exact_text<C: IntoIden>(manager: &SchemaManager, name: C, len: u32) -> ColumnDef {
    let mut column = exact_text_type(manager, name, len);
    column.not_null();
    column
}

/// [`exact_text`] for a column that may be NULL.
pub(crate) fn exact_text_null<C: IntoIden>(
    manager: &SchemaManager,
    name: C,
    len: u32,
) -> ColumnDef {
    let mut column = exact_text_type(manager, name, len);
    column.null();
    column
}

fn exact_text_type<C: IntoIden>(manager: &SchemaManager, name: C, len: u32) -> ColumnDef {
    let mut column = ColumnDef::new(name);
    if manager.get_database_backend() == sea_orm_migration::sea_orm::DatabaseBackend::MySql {
        column.custom(Alias::new(format!(
            "varchar({len}) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
        )));
    } else {
        column.string_len(len);
    }
    column
}
