//! Reading and pruning the audit trail.

use std::time::Duration;

use super::audit::{AuditCursor, AuditEvent, AuditFilter};
use super::error::Result;
use super::model::Page;
use super::store::Store;
use super::Latchkey;

impl<S: Store> Latchkey<S> {
    pub async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        after: Option<AuditCursor>,
        limit: u32,
    ) -> Result<Page<AuditEvent>> {
        self.store().list_events(filter, after, limit).await
    }

    /// Deletes events older than `retention`; returns how many.
    pub async fn prune_audit_events(&self, retention: Duration) -> Result<u64> {
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = super::clock::Timestamp::from_millis(
            self.now().as_millis().saturating_sub(retention_ms),
        );
        self.store().prune_events(cutoff).await
    }
}
