use sea_orm_migration::prelude::*;

use crate::exact_text_null;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `app_password.public_id`: a version 2 password's selector (`lk` and six
/// letters), unique across the deployment, so a secret alone names its
/// password with no username (a leak report, a lookup by secret). NULL for
/// version 1 passwords, whose selector is unique only within an account;
/// a unique index allows any number of NULLs on all three backends.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AppPassword::Table)
                    .add_column(exact_text_null(manager, AppPassword::PublicId, 8))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_app_password_public_id")
                    .table(AppPassword::Table)
                    .col(AppPassword::PublicId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ux_app_password_public_id")
                    .table(AppPassword::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AppPassword::Table)
                    .drop_column(AppPassword::PublicId)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AppPassword {
    Table,
    PublicId,
}
