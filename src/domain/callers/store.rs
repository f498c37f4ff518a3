//! What caller management and recognition need from storage.

use std::future::Future;

use super::model::{Caller, CreateCallerOutcome, StoredCaller};
use crate::domain::audit::event::AuditEvent;
use crate::domain::shared::error::Result;
use crate::domain::shared::page::Page;
use crate::domain::shared::time::Timestamp;

/// Storage of latchkey's own callers. Every method is one transaction.
pub trait CallerStore: Clone + Send + Sync + 'static {
    fn create_caller(
        &self,
        caller: Caller,
        key_id: &str,
        key_digest: &str,
        event: AuditEvent,
    ) -> impl Future<Output = Result<CreateCallerOutcome>> + Send;

    fn caller_by_key_id(
        &self,
        key_id: &str,
    ) -> impl Future<Output = Result<Option<StoredCaller>>> + Send;

    /// The unrevoked callers whose TLS identity is one of `identities`,
    /// two at most (one more than a certificate may name).
    fn callers_by_tls_identity(
        &self,
        identities: &[String],
    ) -> impl Future<Output = Result<Vec<Caller>>> + Send;

    /// The domains of tenant `name`, sorted: what a caller scoped to it
    /// reaches (none for a tenant deleted since).
    fn tenant_domains(&self, name: &str) -> impl Future<Output = Result<Vec<String>>> + Send;

    fn touch_caller(&self, name: &str, now: Timestamp) -> impl Future<Output = Result<()>> + Send;

    fn list_callers(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<Caller>>> + Send;

    /// Revokes unless already revoked, writing `event` if it did.
    fn revoke_caller(
        &self,
        name: &str,
        event: AuditEvent,
    ) -> impl Future<Output = Result<Option<Caller>>> + Send;
}
