//! What logins need from storage: one read per login, and the writes its
//! effects make (failure counters, successes, usage, re-hashes).

use std::future::Future;

use uuid::Uuid;

use super::model::LoginState;
use super::throttle::{Counter, FailureRule, Scope, Scopes};
use super::usage::PendingUse;
use crate::domain::audit::event::AuditEvent;
use crate::domain::shared::error::Result;
use crate::domain::shared::network::SeenNetworks;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

/// What Authenticate reads before it decides a login.
pub trait LoginStore: Clone + Send + Sync + 'static {
    /// What a login needs, in one query: the counters of `scopes` and the
    /// one candidate record, the password of `username` whose selector is
    /// `selector`, if any.
    fn login_state(
        &self,
        scopes: &Scopes,
        username: &Username,
        selector: &str,
    ) -> impl Future<Output = Result<LoginState>> + Send;

    /// How many times `login_state` was asked for since start (each is a
    /// database read, alone or batched with others), for `Logins::stats`.
    fn login_reads(&self) -> u64;
}

/// Storage of failed-login counters, shared by every replica.
pub trait ThrottleStore: Clone + Send + Sync + 'static {
    /// Adds one failure to each scope by its rule and writes `event`, and
    /// the account's `AccountLoginBlocked` event if this failure started
    /// its block (`throttle::account_block_event`), all in one transaction,
    /// atomically with respect to every other replica: either the failure
    /// counts everywhere and is audited, or nothing changed. Returns the
    /// new counters.
    fn record_failures(
        &self,
        scopes: Vec<(Scope, FailureRule)>,
        now: Timestamp,
        event: AuditEvent,
    ) -> impl Future<Output = Result<Vec<(Scope, Counter)>>> + Send;

    /// Clears `scope`'s failures and notes a success.
    fn record_success(
        &self,
        scope: &Scope,
        now: Timestamp,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Deletes counters untouched since `idle_before`, not blocked at
    /// `now`, and without a success since `success_before`.
    fn prune_counters(
        &self,
        idle_before: Timestamp,
        success_before: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<u64>> + Send;
}

/// What successful logins write back to their app passwords.
pub trait UsageStore: Clone + Send + Sync + 'static {
    /// Records successful logins; with `seen_networks`, also replaces the
    /// password's seen networks and writes `events`, in one transaction.
    /// The last-used fields move only forward in time (replicas flush in
    /// any order); the count is added.
    fn record_use(
        &self,
        id: Uuid,
        usage: PendingUse,
        seen_networks: Option<SeenNetworks>,
        events: Vec<AuditEvent>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Records the coalesced usage of many app passwords, as `record_use`
    /// does for one, in one transaction, updating them in the order of
    /// their ids (so concurrent flushes from replicas cannot deadlock).
    /// Passwords deleted meanwhile are skipped.
    fn record_uses(&self, batch: &[(Uuid, PendingUse)]) -> impl Future<Output = Result<()>> + Send;

    /// Replaces a password's hash, unless it changed since `old` was read.
    fn replace_hash(
        &self,
        id: Uuid,
        old: &str,
        new: &str,
    ) -> impl Future<Output = Result<()>> + Send;
}
