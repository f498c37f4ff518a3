use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // How the client that last used an app password identified itself
        // (IMAP ID name and version, an HTTP User-Agent), so a person
        // reviewing their app passwords sees "Thunderbird 115" beside the
        // last sign-in. At most 128 characters, no control characters.
        manager
            .alter_table(
                Table::alter()
                    .table(AppPassword::Table)
                    .add_column(
                        ColumnDef::new(AppPassword::LastUsedClient)
                            .string_len(512)
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AppPassword::Table)
                    .drop_column(AppPassword::LastUsedClient)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AppPassword {
    Table,
    LastUsedClient,
}
