//! What the audit trail needs from storage.

use std::future::Future;

use super::event::{AuditCursor, AuditEvent, AuditFilter};
use crate::domain::shared::error::Result;
use crate::domain::shared::page::Page;
use crate::domain::shared::time::Timestamp;

/// Storage of the audit trail. Events are also written by the other
/// capabilities' stores, in the same transaction as the change they
/// record; this trait is for what stands alone.
pub trait AuditStore: Clone + Send + Sync + 'static {
    /// Writes events that record no other change (the coalesced repeats of
    /// failed logins), in one transaction.
    fn record_events(&self, events: Vec<AuditEvent>) -> impl Future<Output = Result<()>> + Send;

    fn list_events(
        &self,
        filter: &AuditFilter,
        after: Option<AuditCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<AuditEvent>>> + Send;

    /// Deletes events older than `before`; returns how many.
    fn prune_events(&self, before: Timestamp) -> impl Future<Output = Result<u64>> + Send;
}
