use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// An account whose username holds more than one `@` has no domain
/// (`domain::tenants::domain_of`): which part is its domain depends on
/// who reads it (latchkey took the last `@`; a mail server may take the
/// first), so it belongs to no tenant and no scoped caller reaches it,
/// nor its events in a tenant's change feed. Migration 14 filled
/// `audit_event.account_domain` of such rows from the last `@`: cleared
/// here.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE audit_event SET account_domain = NULL WHERE username LIKE '%@%@%'",
            )
            .await?;
        Ok(())
    }

    /// Nothing to undo: migration 14's own down drops the column.
    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
