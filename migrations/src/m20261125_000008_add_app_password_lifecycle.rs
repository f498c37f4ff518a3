use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The lifecycle of one app password beyond issue and revoke: suspension
/// (undone by resuming), an idle timeout and the time housekeeping marked
/// it idle-expired, and when its settings last changed. SQLite alters one
/// column per statement, so each is its own.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            // Set while suspended; NULL when active again.
            ColumnDef::new(AppPassword::SuspendedAt)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(AppPassword::SuspendReason)
                .string_len(2048)
                .null()
                .to_owned(),
            // Milliseconds without a successful sign-in after which the
            // password stops working; NULL: no idle timeout.
            ColumnDef::new(AppPassword::IdleTimeoutMs)
                .big_integer()
                .null()
                .to_owned(),
            // When housekeeping marked it expired for being idle.
            ColumnDef::new(AppPassword::IdleExpiredAt)
                .big_integer()
                .null()
                .to_owned(),
            // When its settings or suspension last changed; NULL: never
            // since it was issued. Also orders the audit events of racing
            // changes (each is stamped no earlier than the last).
            ColumnDef::new(AppPassword::UpdatedAt)
                .big_integer()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AppPassword::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            AppPassword::SuspendedAt,
            AppPassword::SuspendReason,
            AppPassword::IdleTimeoutMs,
            AppPassword::IdleExpiredAt,
            AppPassword::UpdatedAt,
        ] {
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
    SuspendedAt,
    SuspendReason,
    IdleTimeoutMs,
    IdleExpiredAt,
    UpdatedAt,
}
