use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `audit_event.feed_mark`: which history a feed event belongs to.
///
/// Every transaction that writes feed events stamps them with one random
/// number (never 0), and a resume token carries the mark of the event at
/// its place. After a failover to a standby that had not replayed the
/// newest commits, the new primary hands those sequence numbers out again,
/// to other events with other marks: a token, or a replica's idea of the
/// head, whose mark no longer matches the event at its place belongs to a
/// history that is gone, and its watchers are told to resync
/// (docs/change-feed.md, "History"). NULL (read as 0) for events written
/// before this migration, and for events outside the feed.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvent::Table)
                    .add_column(ColumnDef::new(AuditEvent::FeedMark).big_integer().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvent::Table)
                    .drop_column(AuditEvent::FeedMark)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AuditEvent {
    Table,
    FeedMark,
}
