use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The client networks (IPv4 /24, IPv6 /64) an app password has
        // succeeded from, most recent last, so the first success from a new
        // one can be audited without another query on the hot path.
        manager
            .alter_table(
                Table::alter()
                    .table(AppPassword::Table)
                    .add_column(
                        ColumnDef::new(AppPassword::SeenNetworks)
                            .string_len(1024)
                            .not_null()
                            .default(""),
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
                    .drop_column(AppPassword::SeenNetworks)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum AppPassword {
    Table,
    SeenNetworks,
}
