use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The warm verifier of a device that signed in with this password
        // (src/domain/login/warm.rs): a keyed HMAC under a key the database
        // never holds, bound to the stored hash, and until when it stands
        // in for argon2. One column each, so that no backend needs a
        // statement of its own.
        manager
            .alter_table(
                Table::alter()
                    .table(AppPassword::Table)
                    .add_column(
                        ColumnDef::new(AppPassword::WarmVerifier)
                            .string_len(100)
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AppPassword::Table)
                    .add_column(ColumnDef::new(AppPassword::WarmUntil).big_integer().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [AppPassword::WarmUntil, AppPassword::WarmVerifier] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AppPassword::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum AppPassword {
    Table,
    WarmVerifier,
    WarmUntil,
}
