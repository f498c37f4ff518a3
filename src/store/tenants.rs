//! Queries on tenants and the domains they own.

use std::collections::BTreeSet;
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::audit::insert_event;
use super::db::Tx;
use super::entities::{caller, tenant, tenant_domain};
use super::SqlStore;
use crate::domain::app_passwords::model::ChangePolicy;
use crate::domain::audit::event::AuditEvent;
use crate::domain::shared::error::{Error, Result};
use crate::domain::shared::page::Page;
use crate::domain::shared::protocol::ProtocolSet;
use crate::domain::shared::time::Timestamp;
use crate::domain::tenants::model::{
    ChangeOverrides, CreateTenantOutcome, DeleteTenantOutcome, MoveDomainOutcome, Tenant,
    TenantChange, TenantPolicy, UpdateTenantOutcome, DOMAINS_MAX,
};
use crate::domain::tenants::store::TenantStore;

/// The tenant's row, locked until the transaction ends (on SQLite the
/// transaction holds the write lock already: `lock_for_write`).
async fn locked_tenant(txn: &Tx, name: &str) -> Result<Option<tenant::Model>> {
    Ok(tenant::Entity::find()
        .filter(tenant::Column::Name.eq(name))
        .lock_exclusive()
        .one(txn)
        .await?)
}

/// The tenant's domains, sorted by their bytes: `Reach::reaches` searches
/// them so, and a database's collation may order text otherwise
/// (PostgreSQL's ignores punctuation under most locales).
pub(super) async fn domains_of(
    txn: &impl sea_orm::ConnectionTrait,
    name: &str,
) -> Result<Vec<String>> {
    let mut domains: Vec<String> = tenant_domain::Entity::find()
        .select_only()
        .column(tenant_domain::Column::Domain)
        .filter(tenant_domain::Column::Tenant.eq(name))
        .into_tuple()
        .all(txn)
        .await?;
    domains.sort_unstable();
    Ok(domains)
}

/// The first of `domains` that a tenant other than `name` owns, and its
/// owner.
async fn taken_elsewhere(
    txn: &Tx,
    domains: &[String],
    name: &str,
) -> Result<Option<(String, String)>> {
    if domains.is_empty() {
        return Ok(None);
    }
    let owned: Vec<(String, String)> = tenant_domain::Entity::find()
        .select_only()
        .column(tenant_domain::Column::Domain)
        .column(tenant_domain::Column::Tenant)
        .filter(tenant_domain::Column::Domain.is_in(domains.iter().map(String::as_str)))
        .filter(tenant_domain::Column::Tenant.ne(name))
        .order_by_asc(tenant_domain::Column::Domain)
        .lock_exclusive()
        .into_tuple()
        .all(txn)
        .await?;
    Ok(owned.into_iter().next())
}

async fn add_domains(txn: &Tx, domains: &[String], name: &str, now: Timestamp) -> Result<()> {
    if domains.is_empty() {
        return Ok(());
    }
    let rows = domains.iter().map(|domain| tenant_domain::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        domain: Set(domain.clone()),
        tenant: Set(name.to_owned()),
        added_at: Set(now.as_millis()),
    });
    tenant_domain::Entity::insert_many(rows)
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// A policy's stored form: JSON of its set fields, durations in
/// milliseconds, protocols as their bits, policies by their names.
fn policy_to_stored(policy: &TenantPolicy) -> String {
    let millis = |d: Option<Duration>| d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let change = |p: Option<ChangePolicy>| p.map(ChangePolicy::as_str);
    let overrides = &policy.on_primary_change;
    serde_json::json!({
        "max_active_app_passwords": policy.max_active_app_passwords,
        "max_lifetime_ms": millis(policy.max_lifetime),
        "default_idle_timeout_ms": millis(policy.default_idle_timeout),
        "allowed_protocols": policy.allowed_protocols.map(ProtocolSet::bits),
        "self_service_change": change(overrides.self_service_change),
        "admin_reset": change(overrides.admin_reset),
        "account_recovery": change(overrides.account_recovery),
        "second_factor_reset": change(overrides.second_factor_reset),
    })
    .to_string()
}

/// Reads a stored policy back. Fails closed: a policy that cannot be read
/// is an error, never an empty policy (which would lift the tenant's
/// limits).
fn policy_from_stored(stored: &str) -> Result<TenantPolicy> {
    let unreadable = || Error::internal("a tenant's stored policy cannot be read");
    let value: serde_json::Value = serde_json::from_str(stored).map_err(|_| unreadable())?;
    let field = |name: &str| value.get(name).filter(|v| !v.is_null());
    let millis = |name: &str| -> Result<Option<Duration>> {
        field(name)
            .map(|v| v.as_u64().map(Duration::from_millis).ok_or_else(unreadable))
            .transpose()
    };
    let change = |name: &str| -> Result<Option<ChangePolicy>> {
        field(name)
            .map(|v| {
                v.as_str()
                    .and_then(|s| ChangePolicy::ALL.into_iter().find(|p| p.as_str() == s))
                    .ok_or_else(unreadable)
            })
            .transpose()
    };
    Ok(TenantPolicy {
        max_active_app_passwords: field("max_active_app_passwords")
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(unreadable)
            })
            .transpose()?,
        max_lifetime: millis("max_lifetime_ms")?,
        default_idle_timeout: millis("default_idle_timeout_ms")?,
        allowed_protocols: field("allowed_protocols")
            .map(|v| {
                v.as_i64()
                    .map(ProtocolSet::from_bits)
                    .ok_or_else(unreadable)
            })
            .transpose()?,
        on_primary_change: ChangeOverrides {
            self_service_change: change("self_service_change")?,
            admin_reset: change("admin_reset")?,
            account_recovery: change("account_recovery")?,
            second_factor_reset: change("second_factor_reset")?,
        },
    })
}

fn tenant_of(row: tenant::Model, domains: Vec<String>) -> Result<Tenant> {
    Ok(Tenant {
        policy: policy_from_stored(&row.policy)?,
        name: row.name,
        display_name: row.display_name,
        domains,
        created_at: Timestamp::from_millis(row.created_at),
        updated_at: Timestamp::from_millis(row.updated_at),
    })
}

fn unique_violation(error: &sea_orm::DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

impl TenantStore for SqlStore {
    /// Name and domains are unique: checked inside the transaction, and
    /// backed by unique indexes should two creations race.
    #[tracing::instrument(skip_all, fields(tenant = %new.name))]
    async fn create_tenant(&self, new: Tenant, event: AuditEvent) -> Result<CreateTenantOutcome> {
        let txn = self.db.begin().await?;
        super::app_passwords::lock_for_write(&txn).await?;
        if locked_tenant(&txn, &new.name).await?.is_some() {
            return Ok(CreateTenantOutcome::NameTaken);
        }
        if let Some((domain, owner)) = taken_elsewhere(&txn, &new.domains, &new.name).await? {
            return Ok(CreateTenantOutcome::DomainTaken { domain, owner });
        }
        let row = tenant::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            name: Set(new.name.clone()),
            display_name: Set(new.display_name.clone()),
            policy: Set(policy_to_stored(&new.policy)),
            created_at: Set(new.created_at.as_millis()),
            updated_at: Set(new.updated_at.as_millis()),
        };
        if let Err(error) = tenant::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
        {
            if unique_violation(&error) {
                return Ok(CreateTenantOutcome::NameTaken);
            }
            return Err(error.into());
        }
        add_domains(&txn, &new.domains, &new.name, new.created_at).await?;
        insert_event(&txn, event).await?;
        txn.commit().await?;
        Ok(CreateTenantOutcome::Created(new))
    }

    #[tracing::instrument(skip_all)]
    async fn tenant(&self, name: &str) -> Result<Option<Tenant>> {
        let Some(row) = tenant::Entity::find()
            .filter(tenant::Column::Name.eq(name))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let domains = domains_of(&self.db, name).await?;
        Ok(Some(tenant_of(row, domains)?))
    }

    #[tracing::instrument(skip_all)]
    async fn list_tenants(&self, after: Option<&str>, limit: u32) -> Result<Page<Tenant>> {
        let mut query = tenant::Entity::find();
        if let Some(after) = after {
            query = query.filter(tenant::Column::Name.gt(after));
        }
        let rows = query
            .order_by_asc(tenant::Column::Name)
            .limit(u64::from(limit) + 1)
            .all(&self.db)
            .await?;
        let names: Vec<&str> = rows.iter().map(|row| row.name.as_str()).collect();
        let owned: Vec<(String, String)> = if names.is_empty() {
            Vec::new()
        } else {
            tenant_domain::Entity::find()
                .select_only()
                .column(tenant_domain::Column::Tenant)
                .column(tenant_domain::Column::Domain)
                .filter(tenant_domain::Column::Tenant.is_in(names))
                .order_by_asc(tenant_domain::Column::Domain)
                .into_tuple()
                .all(&self.db)
                .await?
        };
        let items = rows
            .into_iter()
            .map(|row| {
                let mut domains: Vec<String> = owned
                    .iter()
                    .filter(|(owner, _)| *owner == row.name)
                    .map(|(_, domain)| domain.clone())
                    .collect();
                domains.sort_unstable();
                tenant_of(row, domains)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit))
    }

    #[tracing::instrument(skip_all, fields(tenant = %name))]
    async fn update_tenant(
        &self,
        name: &str,
        change: TenantChange,
        now: Timestamp,
        mut event: AuditEvent,
    ) -> Result<UpdateTenantOutcome> {
        let TenantChange {
            display_name,
            domains,
            policy,
        } = change;
        let txn = self.db.begin().await?;
        super::app_passwords::lock_for_write(&txn).await?;
        let Some(row) = locked_tenant(&txn, name).await? else {
            return Ok(UpdateTenantOutcome::NotFound);
        };
        let mut changes = Vec::new();
        let mut current = domains_of(&txn, name).await?;
        if let Some(wanted) = domains {
            if let Some((domain, owner)) = taken_elsewhere(&txn, &wanted, name).await? {
                return Ok(UpdateTenantOutcome::DomainTaken { domain, owner });
            }
            let had: BTreeSet<&String> = current.iter().collect();
            let wants: BTreeSet<&String> = wanted.iter().collect();
            let added: Vec<String> = wants.difference(&had).map(|d| (*d).clone()).collect();
            let removed: Vec<String> = had.difference(&wants).map(|d| (*d).clone()).collect();
            if !removed.is_empty() {
                tenant_domain::Entity::delete_many()
                    .filter(tenant_domain::Column::Tenant.eq(name))
                    .filter(tenant_domain::Column::Domain.is_in(removed.iter().map(String::as_str)))
                    .exec(&txn)
                    .await?;
                changes.push(format!("-{}", removed.join(",-")));
            }
            if !added.is_empty() {
                add_domains(&txn, &added, name, now).await?;
                changes.push(format!("+{}", added.join(",+")));
            }
            current = wanted;
        }
        let mut active: tenant::ActiveModel = row.clone().into();
        if let Some(display_name) = display_name.filter(|d| *d != row.display_name) {
            changes.push("display_name".to_owned());
            active.display_name = Set(display_name);
        }
        if let Some(policy) = policy {
            let stored = policy_to_stored(&policy);
            if stored != row.policy {
                changes.push(format!("policy {stored}"));
                active.policy = Set(stored);
            }
        }
        if changes.is_empty() {
            // Nothing changed: nothing written, no event.
            return Ok(UpdateTenantOutcome::Updated(tenant_of(row, current)?));
        }
        active.updated_at = Set(now.as_millis());
        let row = tenant::Entity::update(active).exec(&txn).await?;
        event = event.detail(format!("tenants/{name} {}", changes.join(" ")));
        insert_event(&txn, event).await?;
        txn.commit().await?;
        Ok(UpdateTenantOutcome::Updated(tenant_of(row, current)?))
    }

    #[tracing::instrument(skip_all)]
    async fn policy_of_domain(&self, domain: &str) -> Result<Option<TenantPolicy>> {
        let stored: Option<String> = tenant::Entity::find()
            .select_only()
            .column(tenant::Column::Policy)
            .filter(
                tenant::Column::Name.in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(tenant_domain::Column::Tenant)
                        .from(tenant_domain::Entity)
                        .and_where(tenant_domain::Column::Domain.eq(domain))
                        .to_owned(),
                ),
            )
            .into_tuple()
            .one(&self.db)
            .await?;
        stored.as_deref().map(policy_from_stored).transpose()
    }

    #[tracing::instrument(skip_all, fields(tenant = %to))]
    async fn move_domain(
        &self,
        domain: &str,
        to: &str,
        now: Timestamp,
        event: AuditEvent,
    ) -> Result<MoveDomainOutcome> {
        let txn = self.db.begin().await?;
        super::app_passwords::lock_for_write(&txn).await?;
        let Some(row) = locked_tenant(&txn, to).await? else {
            return Ok(MoveDomainOutcome::TenantNotFound);
        };
        let owner: Option<String> = tenant_domain::Entity::find()
            .select_only()
            .column(tenant_domain::Column::Tenant)
            .filter(tenant_domain::Column::Domain.eq(domain))
            .lock_exclusive()
            .into_tuple()
            .one(&txn)
            .await?;
        if owner.as_deref() != Some(to) {
            // The tenant's row is locked, so its count cannot grow meanwhile.
            if domains_of(&txn, to).await?.len() >= DOMAINS_MAX {
                return Ok(MoveDomainOutcome::Full);
            }
            tenant_domain::Entity::delete_many()
                .filter(tenant_domain::Column::Domain.eq(domain))
                .exec(&txn)
                .await?;
            add_domains(&txn, &[domain.to_owned()], to, now).await?;
            // Both tenants changed.
            tenant::Entity::update_many()
                .col_expr(tenant::Column::UpdatedAt, Expr::value(now.as_millis()))
                .filter(
                    tenant::Column::Name.is_in([Some(to), owner.as_deref()].into_iter().flatten()),
                )
                .exec(&txn)
                .await?;
            let from = owner
                .as_deref()
                .map_or("none".to_owned(), |o| format!("tenants/{o}"));
            let event = event.detail(format!("{domain} from {from} to tenants/{to}"));
            insert_event(&txn, event).await?;
        }
        let domains = domains_of(&txn, to).await?;
        let row = locked_tenant(&txn, to).await?.unwrap_or(row);
        txn.commit().await?;
        Ok(MoveDomainOutcome::Moved {
            tenant: tenant_of(row, domains)?,
            from: owner,
        })
    }

    #[tracing::instrument(skip_all, fields(tenant = %name))]
    async fn delete_tenant(&self, name: &str, event: AuditEvent) -> Result<DeleteTenantOutcome> {
        let txn = self.db.begin().await?;
        super::app_passwords::lock_for_write(&txn).await?;
        if locked_tenant(&txn, name).await?.is_none() {
            return Ok(DeleteTenantOutcome::NotFound);
        }
        let callers = caller::Entity::find()
            .filter(caller::Column::Tenant.eq(name))
            .filter(caller::Column::RevokedAt.is_null())
            .count(&txn)
            .await?;
        if callers > 0 {
            return Ok(DeleteTenantOutcome::InUse(callers));
        }
        tenant_domain::Entity::delete_many()
            .filter(tenant_domain::Column::Tenant.eq(name))
            .exec(&txn)
            .await?;
        tenant::Entity::delete_many()
            .filter(tenant::Column::Name.eq(name))
            .exec(&txn)
            .await?;
        insert_event(&txn, event).await?;
        txn.commit().await?;
        Ok(DeleteTenantOutcome::Deleted)
    }
}
