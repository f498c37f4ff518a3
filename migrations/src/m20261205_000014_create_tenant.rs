use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

use crate::{exact_text, exact_text_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tenants: customers of one deployment, each owning account domains.
///
/// - `tenant`: one row per tenant, by name (the `tenants/{tenant}` id),
///   with its app-password policy.
/// - `tenant_domain`: which tenant owns a domain. The domain is the key,
///   so a domain belongs to at most one tenant.
/// - `caller.tenant`: the tenant a caller is scoped to; NULL (every
///   existing caller) is deployment-wide, exactly as before.
/// - `audit_event.actor_tenant`: the tenant of the caller that caused the
///   event, written with it; NULL for deployment-wide callers and
///   latchkey's own housekeeping.
/// - `audit_event.account_domain`: the domain of the event's account (the
///   part of its username after the last `@`), so that a tenant's change
///   feed is filtered in the query. Filled here for existing rows
///   (migration 16 clears it where the username holds several `@`).
///
/// No tenant exists until an operator makes one.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenant::Table)
                    .col(
                        ColumnDef::new(Tenant::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(exact_text(manager, Tenant::Name, 64))
                    .col(
                        ColumnDef::new(Tenant::DisplayName)
                            .string_len(200)
                            .not_null(),
                    )
                    // Its app-password policy, as JSON (store/tenants.rs):
                    // read whole with the tenant, never queried into.
                    .col(ColumnDef::new(Tenant::Policy).string_len(1000).not_null())
                    .col(ColumnDef::new(Tenant::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Tenant::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_tenant_name")
                    .table(Tenant::Table)
                    .col(Tenant::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TenantDomain::Table)
                    .col(
                        ColumnDef::new(TenantDomain::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(exact_text(manager, TenantDomain::Domain, 255))
                    .col(exact_text(manager, TenantDomain::Tenant, 64))
                    .col(
                        ColumnDef::new(TenantDomain::AddedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_tenant_domain_domain")
                    .table(TenantDomain::Table)
                    .col(TenantDomain::Domain)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_tenant_domain_tenant")
                    .table(TenantDomain::Table)
                    .col(TenantDomain::Tenant)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Caller::Table)
                    .add_column(exact_text_null(manager, Caller::Tenant, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvent::Table)
                    .add_column(exact_text_null(manager, AuditEvent::ActorTenant, 64))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvent::Table)
                    .add_column(exact_text_null(manager, AuditEvent::AccountDomain, 255))
                    .to_owned(),
            )
            .await?;
        // The part after the last '@', as `domain::tenants::domain_of`
        // takes it; none when empty.
        let after_last_at = match manager.get_database_backend() {
            DatabaseBackend::Postgres => "substring(username from '@([^@]*)$')",
            DatabaseBackend::MySql => "SUBSTRING_INDEX(username, '@', -1)",
            // rtrim strips every trailing character but '@': what is left
            // is the username up to its last '@'.
            DatabaseBackend::Sqlite => {
                "replace(username, rtrim(username, replace(username, '@', '')), '')"
            }
        };
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "UPDATE audit_event SET account_domain = NULLIF({after_last_at}, '') \
                 WHERE username LIKE '%@%'"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [AuditEvent::ActorTenant, AuditEvent::AccountDomain] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AuditEvent::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Caller::Table)
                    .drop_column(Caller::Tenant)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(TenantDomain::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Tenant::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Tenant {
    Table,
    Id,
    Name,
    DisplayName,
    Policy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum TenantDomain {
    Table,
    Id,
    Domain,
    Tenant,
    AddedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Caller {
    Table,
    Tenant,
}

#[derive(DeriveIden, Clone, Copy)]
enum AuditEvent {
    Table,
    ActorTenant,
    AccountDomain,
}
