use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The change feed (WatchEvents) and the notices housekeeping sends once.
///
/// - `event_feed`: one row. `last_seq` is the sequence number of the
///   newest event in the feed; a transaction that writes feed events
///   raises it by their count and keeps the row locked until it commits,
///   so sequence order is commit order (docs/change-feed.md). `pruned_through`: every event up to it has been pruned and
///   every later one is kept. `feed_id`: random, names this database's
///   feed in resume tokens, so a token of another deployment is refused.
/// - `audit_event.seq`: the event's place in the feed; NULL for events not
///   in the feed (failed logins) and for those written before this
///   migration.
/// - `app_password`: `expiry_noticed_for` (the expiry time an "expiring
///   soon" event was written for: an update may move it, and the new one
///   earns a new notice), `expired_noticed_at` (the "expired" event was
///   written) and `idle_noticed_deadline` (the idle deadline an "idle
///   expiring soon" event was written for: a use moves the deadline).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EventFeed::Table)
                    .col(
                        ColumnDef::new(EventFeed::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(EventFeed::LastSeq).big_integer().not_null())
                    .col(
                        ColumnDef::new(EventFeed::PrunedThrough)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(EventFeed::FeedId).string_len(32).not_null())
                    .to_owned(),
            )
            .await?;
        let random_id = match manager.get_database_backend() {
            DatabaseBackend::Postgres => "replace(gen_random_uuid()::text, '-', '')",
            DatabaseBackend::MySql => "replace(uuid(), '-', '')",
            DatabaseBackend::Sqlite => "lower(hex(randomblob(16)))",
        };
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "INSERT INTO event_feed (id, last_seq, pruned_through, feed_id) VALUES (1, 0, 0, {random_id})"
            ))
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvent::Table)
                    .add_column(ColumnDef::new(AuditEvent::Seq).big_integer().null())
                    .to_owned(),
            )
            .await?;
        // Unique: one event per place. NULLs (events outside the feed) do
        // not collide on any of the three backends.
        manager
            .create_index(
                Index::create()
                    .name("ux_audit_event_seq")
                    .table(AuditEvent::Table)
                    .col(AuditEvent::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        for column in [
            AppPassword::ExpiryNoticedFor,
            AppPassword::ExpiredNoticedAt,
            AppPassword::IdleNoticedDeadline,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AppPassword::Table)
                        .add_column(ColumnDef::new(column).big_integer().null())
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            AppPassword::ExpiryNoticedFor,
            AppPassword::ExpiredNoticedAt,
            AppPassword::IdleNoticedDeadline,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AppPassword::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("ux_audit_event_seq")
                    .table(AuditEvent::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvent::Table)
                    .drop_column(AuditEvent::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(EventFeed::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum EventFeed {
    Table,
    Id,
    LastSeq,
    PrunedThrough,
    FeedId,
}

#[derive(DeriveIden)]
enum AuditEvent {
    Table,
    Seq,
}

#[derive(DeriveIden)]
enum AppPassword {
    Table,
    ExpiryNoticedFor,
    ExpiredNoticedAt,
    IdleNoticedDeadline,
}
