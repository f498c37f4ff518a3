//! What webhook delivery needs from storage: one cursor per target, with
//! the lease that makes one replica at a time its deliverer.

use std::future::Future;

use crate::domain::audit::feed::Place;
use crate::domain::shared::error::Result;
use crate::domain::shared::time::Timestamp;

/// A target's cursor and lease, as a holder sees them.
pub trait WebhookStore: Clone + Send + Sync + 'static {
    /// Makes `target`'s cursor at `start` unless it has one (a replica
    /// that makes it at once with another keeps the other's).
    fn open_cursor(&self, target: &str, start: Place) -> impl Future<Output = Result<()>> + Send;

    /// Whether `target`'s cursor exists.
    fn has_cursor(&self, target: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Takes or renews the lease of `target` for `holder` until `until`,
    /// where it is free, `holder`'s already, or ran out before `now`;
    /// returns the cursor's place when `holder` holds it, `None` when
    /// another does.
    fn take_lease(
        &self,
        target: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> impl Future<Output = Result<Option<Place>>> + Send;

    /// Moves the cursor to `place` and renews the lease until `until`, if
    /// `holder` still holds it; `false` when it does not (another replica
    /// took it: this one stops delivering).
    fn advance(
        &self,
        target: &str,
        holder: &str,
        place: Place,
        until: Timestamp,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Gives the lease up, if `holder` holds it, so another replica takes
    /// it at once.
    fn release(&self, target: &str, holder: &str) -> impl Future<Output = Result<()>> + Send;
}
