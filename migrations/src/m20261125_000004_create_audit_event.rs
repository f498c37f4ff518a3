use sea_orm_migration::prelude::*;

use crate::exact_text_null;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvent::Table)
                    .col(
                        ColumnDef::new(AuditEvent::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AuditEvent::OccurredAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuditEvent::EventType)
                            .string_len(48)
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuditEvent::Actor).string_len(64).not_null())
                    .col(exact_text_null(manager, AuditEvent::Username, 256))
                    .col(ColumnDef::new(AuditEvent::AppPasswordId).uuid().null())
                    .col(exact_text_null(manager, AuditEvent::CallerName, 64))
                    .col(ColumnDef::new(AuditEvent::ClientIp).string_len(45).null())
                    .col(ColumnDef::new(AuditEvent::Protocol).integer().null())
                    .col(ColumnDef::new(AuditEvent::ItemCount).big_integer().null())
                    .col(
                        ColumnDef::new(AuditEvent::Detail)
                            .string_len(500)
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Newest-first listing, alone or filtered by account, password or type;
        // the time index also serves retention pruning.
        let indexes: [(&str, &[AuditEvent]); 4] = [
            (
                "ix_audit_event_time",
                &[AuditEvent::OccurredAt, AuditEvent::Id],
            ),
            (
                "ix_audit_event_username",
                &[AuditEvent::Username, AuditEvent::OccurredAt],
            ),
            (
                "ix_audit_event_app_password",
                &[AuditEvent::AppPasswordId, AuditEvent::OccurredAt],
            ),
            (
                "ix_audit_event_type",
                &[AuditEvent::EventType, AuditEvent::OccurredAt],
            ),
        ];
        for (name, columns) in indexes {
            let mut index = Index::create();
            index.name(name).table(AuditEvent::Table);
            for &column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvent::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditEvent {
    Table,
    Id,
    OccurredAt,
    EventType,
    Actor,
    Username,
    AppPasswordId,
    CallerName,
    ClientIp,
    Protocol,
    ItemCount,
    Detail,
}
