//! Reading and pruning the audit trail.

use std::sync::Arc;
use std::time::Duration;

use super::event::{AuditCursor, AuditEvent, AuditFilter};
use super::store::AuditStore;
use crate::domain::shared::error::Result;
use crate::domain::shared::page::Page;
use crate::domain::shared::time::Clock;

/// The audit trail's reading and pruning; cheap to clone.
#[derive(Clone)]
pub struct AuditTrail<S> {
    store: S,
    clock: Arc<dyn Clock>,
}

impl<S: AuditStore> AuditTrail<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        after: Option<AuditCursor>,
        limit: u32,
    ) -> Result<Page<AuditEvent>> {
        self.store.list_events(filter, after, limit).await
    }

    /// Deletes events older than `retention`; returns how many.
    pub async fn prune_audit_events(&self, retention: Duration) -> Result<u64> {
        let cutoff = self.clock.now().saturating_sub(retention);
        self.store.prune_events(cutoff).await
    }
}
