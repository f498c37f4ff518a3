//! What the audit trail needs from storage.

use std::future::Future;
use std::time::Duration;

use super::event::{AuditCursor, AuditEvent, AuditFilter};
use super::feed::{FeedFilter, FeedPage, FeedPosition};
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

    /// Deletes events older than `before`; returns how many. The feed's
    /// pruned horizon moves first, to the newest feed event older than
    /// `before`, and every feed event up to it goes too, so a resume token
    /// either finds everything after it or is refused.
    fn prune_events(&self, before: Timestamp) -> impl Future<Output = Result<u64>> + Send;

    /// The feed's id, newest sequence number and pruned horizon.
    fn feed_position(&self) -> impl Future<Output = Result<FeedPosition>> + Send;

    /// Feed events with `after < seq <= through` that pass `filter`, in
    /// sequence order, at most `limit`, and the marks of the events at
    /// `after` and at `through`, all in one statement (one snapshot of one
    /// server: the marks say which history the events come from).
    /// `through` must be a head read before: everything up to it is
    /// committed.
    fn read_feed(
        &self,
        after: u64,
        through: u64,
        filter: &FeedFilter,
        limit: u32,
    ) -> impl Future<Output = Result<FeedPage>> + Send;

    /// Returns when the feed may have changed: on PostgreSQL at the next
    /// NOTIFY of a commit with feed events, or after ten times `poll` (the
    /// fallback, should the listening connection be down); elsewhere after
    /// `poll`.
    fn wait_for_feed(&self, poll: Duration) -> impl Future<Output = ()> + Send;

    /// Stops what `wait_for_feed` keeps open (PostgreSQL's listening
    /// connection) while nobody watches; the next wait opens it again.
    fn quiet_feed(&self) -> impl Future<Output = ()> + Send;
}
