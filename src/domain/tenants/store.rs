//! What tenant management needs from storage.

use std::future::Future;

use super::model::{
    CreateTenantOutcome, DeleteTenantOutcome, MoveDomainOutcome, Tenant, TenantChange,
    TenantPolicy, UpdateTenantOutcome,
};
use crate::domain::audit::event::AuditEvent;
use crate::domain::shared::error::Result;
use crate::domain::shared::page::Page;
use crate::domain::shared::time::Timestamp;

/// Storage of tenants and the domains they own. Every method is one
/// transaction, with its audit event.
pub trait TenantStore: Clone + Send + Sync + 'static {
    /// Creates the tenant with its domains, unless its name or one of its
    /// domains is taken.
    fn create_tenant(
        &self,
        tenant: Tenant,
        event: AuditEvent,
    ) -> impl Future<Output = Result<CreateTenantOutcome>> + Send;

    fn tenant(&self, name: &str) -> impl Future<Output = Result<Option<Tenant>>> + Send;

    fn list_tenants(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<Tenant>>> + Send;

    /// Sets the display name, replaces the domains and/or the policy
    /// (`None`: left as they are). A domain another tenant owns is
    /// refused, never moved. The event's detail is completed with what
    /// changed.
    fn update_tenant(
        &self,
        name: &str,
        change: TenantChange,
        now: Timestamp,
        event: AuditEvent,
    ) -> impl Future<Output = Result<UpdateTenantOutcome>> + Send;

    /// The policy of the tenant owning `domain`, if one does.
    fn policy_of_domain(
        &self,
        domain: &str,
    ) -> impl Future<Output = Result<Option<TenantPolicy>>> + Send;

    /// Gives `domain` to tenant `to`, from whichever tenant owns it.
    fn move_domain(
        &self,
        domain: &str,
        to: &str,
        now: Timestamp,
        event: AuditEvent,
    ) -> impl Future<Output = Result<MoveDomainOutcome>> + Send;

    /// Deletes the tenant and releases its domains, unless a caller that
    /// is not revoked is scoped to it.
    fn delete_tenant(
        &self,
        name: &str,
        event: AuditEvent,
    ) -> impl Future<Output = Result<DeleteTenantOutcome>> + Send;
}
