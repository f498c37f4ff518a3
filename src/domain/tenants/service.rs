//! Managing tenants (TenantService, operators only).

use std::sync::Arc;

use super::model::{
    CreateTenantOutcome, DeleteTenantOutcome, MoveDomainOutcome, Tenant, TenantChange,
    TenantPolicy, UpdateTenantOutcome, DOMAINS_MAX,
};
use super::store::TenantStore;
use crate::domain::audit::event::{Actor, AuditEvent, EventType};
use crate::domain::shared::error::{Error, Reason, Result};
use crate::domain::shared::page::Page;
use crate::domain::shared::time::{Clock, Timestamp};

#[derive(Clone)]
pub struct Tenants<S> {
    store: S,
    clock: Arc<dyn Clock>,
}

impl<S: TenantStore> Tenants<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn event(&self, event_type: EventType, tenant: &str, actor: &Actor) -> AuditEvent {
        AuditEvent::new(event_type, self.now(), actor).detail(format!("tenants/{tenant}"))
    }

    /// Creates a tenant owning `domains` (parsed: sorted, no repeats).
    pub async fn create(
        &self,
        name: String,
        display_name: String,
        domains: Vec<String>,
        policy: TenantPolicy,
        actor: &Actor,
    ) -> Result<Tenant> {
        let now = self.now();
        let event = self
            .event(EventType::TenantCreated, &name, actor)
            .detail(format!("tenants/{name} domains={}", domains.join(",")));
        let tenant = Tenant {
            name: name.clone(),
            display_name,
            domains,
            policy,
            created_at: now,
            updated_at: now,
        };
        match self.store.create_tenant(tenant, event).await? {
            CreateTenantOutcome::Created(tenant) => Ok(tenant),
            CreateTenantOutcome::NameTaken => Err(Error::AlreadyExists(
                Reason::TenantNameTaken,
                format!("tenants/{name} already exists"),
            )),
            CreateTenantOutcome::DomainTaken { domain, owner } => {
                Err(domain_taken(&domain, &owner))
            }
        }
    }

    pub async fn get(&self, name: &str) -> Result<Tenant> {
        self.store
            .tenant(name)
            .await?
            .ok_or_else(|| not_found(name))
    }

    pub async fn list(&self, after: Option<&str>, limit: u32) -> Result<Page<Tenant>> {
        self.store.list_tenants(after, limit).await
    }

    /// Updates what `change` names. Replacing the domains never takes one
    /// from another tenant: that is [`Self::move_domain`], explicitly.
    pub async fn update(&self, name: &str, change: TenantChange, actor: &Actor) -> Result<Tenant> {
        let event = self.event(EventType::TenantUpdated, name, actor);
        match self
            .store
            .update_tenant(name, change, self.now(), event)
            .await?
        {
            UpdateTenantOutcome::Updated(tenant) => Ok(tenant),
            UpdateTenantOutcome::NotFound => Err(not_found(name)),
            UpdateTenantOutcome::DomainTaken { domain, owner } => {
                Err(domain_taken(&domain, &owner))
            }
        }
    }

    /// Moves `domain` to tenant `to`, from whichever tenant owned it (or
    /// none): the accounts of that domain leave the old tenant's callers'
    /// reach and enter the new one's, on every replica within the caller
    /// cache's TTL.
    pub async fn move_domain(&self, domain: &str, to: &str, actor: &Actor) -> Result<Tenant> {
        let event = self.event(EventType::TenantDomainMoved, to, actor);
        match self
            .store
            .move_domain(domain, to, self.now(), event)
            .await?
        {
            MoveDomainOutcome::Moved { tenant, .. } => Ok(tenant),
            MoveDomainOutcome::TenantNotFound => Err(not_found(to)),
            MoveDomainOutcome::Full => Err(Error::ResourceExhausted(
                Reason::TenantDomainsFull,
                format!(
                    "tenants/{to} owns {DOMAINS_MAX} domains, the most a tenant may; remove one first (UpdateTenant)"
                ),
            )),
        }
    }

    /// Deletes a tenant and releases its domains; refused while a caller
    /// that is not revoked is scoped to it (revoke those first).
    pub async fn delete(&self, name: &str, actor: &Actor) -> Result<()> {
        let event = self.event(EventType::TenantDeleted, name, actor);
        match self.store.delete_tenant(name, event).await? {
            DeleteTenantOutcome::Deleted => Ok(()),
            DeleteTenantOutcome::NotFound => Err(not_found(name)),
            DeleteTenantOutcome::InUse(callers) => Err(Error::FailedPrecondition(
                Reason::TenantInUse,
                format!(
                    "tenants/{name} has {callers} caller(s) that are not revoked; revoke them first"
                ),
            )),
        }
    }
}

fn not_found(name: &str) -> Error {
    Error::NotFound {
        reason: Reason::TenantNotFound,
        resource: format!("tenants/{name}"),
    }
}

fn domain_taken(domain: &str, owner: &str) -> Error {
    Error::AlreadyExists(
        Reason::DomainTaken,
        format!("{domain} belongs to tenants/{owner}; MoveTenantDomain moves it"),
    )
}
