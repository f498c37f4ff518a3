use sea_orm_migration::prelude::*;

use crate::exact_text;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Caller::Table)
                    .col(
                        ColumnDef::new(Caller::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(exact_text(manager, Caller::Name, 64))
                    .col(ColumnDef::new(Caller::Role).string_len(32).not_null())
                    // The public half of a caller key, to find its row.
                    .col(exact_text(manager, Caller::KeyId, 16))
                    // SHA-256 of the whole key, hex: keys are 256-bit random,
                    // so a fast hash is as strong as a slow one here.
                    .col(ColumnDef::new(Caller::KeyHash).string_len(64).not_null())
                    .col(ColumnDef::new(Caller::TlsIdentity).string_len(255).null())
                    .col(ColumnDef::new(Caller::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Caller::CreatedBy).string_len(64).not_null())
                    .col(ColumnDef::new(Caller::LastUsedAt).big_integer().null())
                    .col(ColumnDef::new(Caller::RevokedAt).big_integer().null())
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("ux_caller_name", Caller::Name),
            ("ux_caller_key_id", Caller::KeyId),
            ("ux_caller_tls_identity", Caller::TlsIdentity),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Caller::Table)
                        .col(column)
                        .unique()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Caller::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Caller {
    Table,
    Id,
    Name,
    Role,
    KeyId,
    KeyHash,
    TlsIdentity,
    CreatedAt,
    CreatedBy,
    LastUsedAt,
    RevokedAt,
}
