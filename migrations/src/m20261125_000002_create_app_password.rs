use sea_orm_migration::prelude::*;

use crate::exact_text;
use crate::m20261125_000001_create_account::Account;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let selector = exact_text(manager, AppPassword::Selector, 8);

        manager
            .create_table(
                Table::create()
                    .table(AppPassword::Table)
                    .col(
                        ColumnDef::new(AppPassword::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AppPassword::AccountId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(selector)
                    .col(
                        ColumnDef::new(AppPassword::SecretHash)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AppPassword::DisplayName)
                            .string_len(100)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AppPassword::Protocols)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AppPassword::AllowedNetworks)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AppPassword::IssuedBy)
                            .string_len(128)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AppPassword::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AppPassword::ExpiresAt).big_integer().null())
                    .col(ColumnDef::new(AppPassword::RevokedAt).big_integer().null())
                    .col(
                        ColumnDef::new(AppPassword::RevokeReason)
                            .string_len(500)
                            .null(),
                    )
                    .col(ColumnDef::new(AppPassword::LastUsedAt).big_integer().null())
                    .col(
                        ColumnDef::new(AppPassword::LastUsedIp)
                            .string_len(45)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(AppPassword::LastUsedProtocol)
                            .integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(AppPassword::UseCount)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_app_password_account")
                            .from(AppPassword::Table, AppPassword::AccountId)
                            .to(Account::Table, Account::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Authenticate's one lookup: (account, selector) leads to one row.
        manager
            .create_index(
                Index::create()
                    .name("ux_app_password_account_selector")
                    .table(AppPassword::Table)
                    .col(AppPassword::AccountId)
                    .col(AppPassword::Selector)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Listing newest first, and counting an account's active passwords.
        manager
            .create_index(
                Index::create()
                    .name("ix_app_password_account_created")
                    .table(AppPassword::Table)
                    .col(AppPassword::AccountId)
                    .col(AppPassword::CreatedAt)
                    .col(AppPassword::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AppPassword::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum AppPassword {
    Table,
    Id,
    AccountId,
    Selector,
    SecretHash,
    DisplayName,
    Protocols,
    AllowedNetworks,
    IssuedBy,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
    RevokeReason,
    LastUsedAt,
    LastUsedIp,
    LastUsedProtocol,
    UseCount,
}
