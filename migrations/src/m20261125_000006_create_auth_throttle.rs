use sea_orm_migration::prelude::*;

use crate::exact_text;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Failed-login counters, one row per scope (a client network, an
        // account, or the pair), shared by every replica.
        manager
            .create_table(
                Table::create()
                    .table(AuthThrottle::Table)
                    // SHA-256 (hex) of the scope, so usernames are not kept
                    // in clear and every key has the same length.
                    .col(exact_text(manager, AuthThrottle::ScopeKey, 64).primary_key())
                    .col(
                        ColumnDef::new(AuthThrottle::Failures)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuthThrottle::LastFailureAt)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(AuthThrottle::BlockedUntil)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(AuthThrottle::LastSuccessAt)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(AuthThrottle::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_auth_throttle_updated")
                    .table(AuthThrottle::Table)
                    .col(AuthThrottle::UpdatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuthThrottle::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AuthThrottle {
    Table,
    ScopeKey,
    Failures,
    LastFailureAt,
    BlockedUntil,
    LastSuccessAt,
    UpdatedAt,
}
