//! What caller management and recognition need from storage.

use std::future::Future;

use std::net::IpAddr;

use super::model::{Caller, CreateCallerOutcome, RotateKeyOutcome, StoredCaller};
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

    /// Records a use at `now`, from `from` when known.
    fn touch_caller(
        &self,
        name: &str,
        now: Timestamp,
        from: Option<IpAddr>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Makes `key_id`/`key_digest` the caller's key; the key it replaces
    /// keeps working until `old_until`, and an older one stops at once.
    fn rotate_caller_key(
        &self,
        name: &str,
        key_id: &str,
        key_digest: &str,
        old_until: Timestamp,
        event: AuditEvent,
    ) -> impl Future<Output = Result<RotateKeyOutcome>> + Send;

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
