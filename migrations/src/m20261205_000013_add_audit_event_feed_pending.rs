use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `audit_event.feed_pending`: a feed event committed but not yet given
/// its place in the feed.
///
/// On PostgreSQL a transaction that records feed events no longer holds
/// the feed's one row lock until it commits: it writes its events pending
/// (no `seq`), and after the commit a short numbering transaction gives
/// every committed pending event its place, in the order of its `id`
/// (`store/feed_numbering.rs`, docs/change-feed.md, "How numbers follow
/// commits"). The partial index holds only pending rows, so finding them
/// costs nothing while there are none, however long the trail. SQLite and
/// MariaDB keep numbering under the lock and never write a pending row;
/// MariaDB has no partial indexes, so it gets no index.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvent::Table)
                    .add_column(
                        ColumnDef::new(AuditEvent::FeedPending)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() != DatabaseBackend::MySql {
            manager
                .get_connection()
                .execute_unprepared(
                    "CREATE INDEX ix_audit_event_feed_pending ON audit_event (id) \
                     WHERE feed_pending",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::MySql {
            manager
                .get_connection()
                .execute_unprepared("DROP INDEX ix_audit_event_feed_pending")
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvent::Table)
                    .drop_column(AuditEvent::FeedPending)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AuditEvent {
    Table,
    FeedPending,
}
