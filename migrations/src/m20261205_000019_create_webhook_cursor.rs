use sea_orm_migration::prelude::*;

use crate::{exact_text, exact_text_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// One row per webhook target (`[[webhooks]]`, by its name): the change
/// feed's place delivered through (`seq` and the `mark` of the event
/// there), and the lease that lets one replica at a time deliver to the
/// target (`holder`, a replica's random id, until `lease_until`, in
/// milliseconds since the epoch; `holder` NULL: free). `writes` counts
/// every write of the row, so each one changes it (MySQL counts a row an
/// UPDATE leaves as it was as not affected).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookCursor::Table)
                    .if_not_exists()
                    .col(exact_text(manager, WebhookCursor::Target, 64).primary_key())
                    .col(ColumnDef::new(WebhookCursor::Seq).big_integer().not_null())
                    .col(ColumnDef::new(WebhookCursor::Mark).big_integer().not_null())
                    .col(exact_text_null(manager, WebhookCursor::Holder, 32))
                    .col(
                        ColumnDef::new(WebhookCursor::LeaseUntil)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(WebhookCursor::Writes)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebhookCursor::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum WebhookCursor {
    Table,
    Target,
    Seq,
    Mark,
    Holder,
    LeaseUntil,
    Writes,
}
