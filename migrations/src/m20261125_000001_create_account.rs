use sea_orm_migration::prelude::*;

use crate::exact_text;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let username = exact_text(manager, Account::Username, 256);

        manager
            .create_table(
                Table::create()
                    .table(Account::Table)
                    .col(
                        ColumnDef::new(Account::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(username)
                    .col(ColumnDef::new(Account::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Account::DisabledAt).big_integer().null())
                    .col(
                        ColumnDef::new(Account::DisableReason)
                            .string_len(500)
                            .null(),
                    )
                    // Bumped by every issue; the update doubles as the row lock
                    // that makes the per-account cap atomic.
                    .col(
                        ColumnDef::new(Account::IssueCount)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_account_username")
                    .table(Account::Table)
                    .col(Account::Username)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Account::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
pub(crate) enum Account {
    Table,
    Id,
    Username,
    CreatedAt,
    DisabledAt,
    DisableReason,
    IssueCount,
}
