use sea_orm_migration::prelude::*;

use crate::exact_text_null;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Caller keys with a life of their own:
/// - `expires_at`: after it, the caller is no longer recognised (NULL:
///   never expires);
/// - `allowed_networks`: the addresses its requests may come from,
///   comma-separated CIDRs ('': any);
/// - `last_used_ip`: the address of its last recorded use;
/// - `previous_key_id`, `previous_key_hash`, `previous_key_expires_at`:
///   the key a RotateCallerKey replaced, still recognised until then.
///
/// Every existing caller keeps no expiry, any address and one key: it
/// behaves exactly as before.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            ColumnDef::new(Caller::ExpiresAt)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Caller::AllowedNetworks)
                .string_len(1100)
                .not_null()
                .default("")
                .to_owned(),
            ColumnDef::new(Caller::LastUsedIp)
                .string_len(45)
                .null()
                .to_owned(),
            exact_text_null(manager, Caller::PreviousKeyId, 16),
            ColumnDef::new(Caller::PreviousKeyHash)
                .string_len(64)
                .null()
                .to_owned(),
            ColumnDef::new(Caller::PreviousKeyExpiresAt)
                .big_integer()
                .null()
                .to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Caller::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ux_caller_previous_key_id")
                    .table(Caller::Table)
                    .col(Caller::PreviousKeyId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ux_caller_previous_key_id")
                    .table(Caller::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Caller::ExpiresAt,
            Caller::AllowedNetworks,
            Caller::LastUsedIp,
            Caller::PreviousKeyId,
            Caller::PreviousKeyHash,
            Caller::PreviousKeyExpiresAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Caller::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Caller {
    Table,
    ExpiresAt,
    AllowedNetworks,
    LastUsedIp,
    PreviousKeyId,
    PreviousKeyHash,
    PreviousKeyExpiresAt,
}
