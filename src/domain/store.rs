//! What the rules need from storage. The sea-orm implementation lives in
//! `crate::store`; this trait keeps SQL out of the domain.
//!
//! Every method is one transaction: when it returns `Ok`, what it wrote is
//! committed and durable.

use std::future::Future;
use std::net::IpAddr;

use uuid::Uuid;

use super::audit::{AuditCursor, AuditEvent, AuditFilter};
use super::caller::Caller;
use super::clock::Timestamp;
use super::error::Result;
use super::model::{Account, AppPassword, AppPasswordCursor, Page};
use super::network::{AllowedNetworks, SeenNetworks};
use super::protocol::{Protocol, ProtocolSet};
use super::throttle::{Counter, FailureRule, Scope, ScopeCounters, Scopes};
use super::usage_buffer::PendingUse;
use super::username::Username;

/// A new app password, hashed and ready to store.
#[derive(Debug)]
pub struct NewAppPassword {
    pub id: Uuid,
    pub username: Username,
    pub selector: String,
    /// The argon2id PHC string; never the secret.
    pub secret_hash: String,
    pub display_name: String,
    pub protocols: ProtocolSet,
    pub allowed_networks: AllowedNetworks,
    pub issued_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug)]
pub enum IssueOutcome {
    Issued(Box<AppPassword>),
    AccountDisabled,
    CapReached,
    /// The account already has a password with this selector (about one
    /// issue in 450,000 per existing password); draw a new secret.
    SelectorTaken,
}

/// What Authenticate needs to decide a login, read in one indexed query.
#[derive(Debug)]
pub struct Credential {
    pub app_password_id: Uuid,
    pub username: Username,
    pub secret_hash: String,
    pub account_disabled: bool,
    pub revoked: bool,
    pub expires_at: Option<Timestamp>,
    pub protocols: ProtocolSet,
    pub allowed_networks: AllowedNetworks,
    pub use_count: i64,
    pub seen_networks: SeenNetworks,
}

/// Everything a login is decided on, read in one round trip to the
/// database (on SQLite each statement is a hand-off to the connection's
/// thread and back, and these hand-offs were most of a warm login's cost):
/// the stored counters of its three throttle scopes, whether the account
/// exists (for the audit trail only; it never changes the response), and
/// the one candidate credential.
#[derive(Debug)]
pub struct LoginState {
    pub counters: ScopeCounters,
    pub account_exists: bool,
    pub credential: Option<Credential>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub at: Timestamp,
    pub client_ip: IpAddr,
    pub protocol: Protocol,
}

#[derive(Debug)]
pub enum CreateCallerOutcome {
    Created(Caller),
    NameTaken,
    TlsIdentityTaken,
}

/// A caller's row as key verification needs it.
#[derive(Debug)]
pub struct StoredCaller {
    pub caller: Caller,
    pub key_digest: String,
}

/// Storage of app passwords and the logins that use them.
pub trait AppPasswordStore: Send + Sync + 'static {
    /// Creates the account if it does not exist, then, atomically with
    /// respect to every other issue for the same account, checks that it is
    /// enabled and below `cap` active passwords, inserts the password and
    /// writes `event`.
    fn issue(
        &self,
        new: NewAppPassword,
        cap: u32,
        event: AuditEvent,
    ) -> impl Future<Output = Result<IssueOutcome>> + Send;

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
    /// does for one, in one transaction. Passwords deleted meanwhile are
    /// skipped.
    fn record_uses(&self, batch: &[(Uuid, PendingUse)]) -> impl Future<Output = Result<()>> + Send;

    /// Replaces a password's hash, unless it changed since `old` was read.
    fn replace_hash(
        &self,
        id: Uuid,
        old: &str,
        new: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    fn get_app_password(
        &self,
        username: &Username,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<AppPassword>>> + Send;

    /// `None` when the account does not exist.
    fn list_app_passwords(
        &self,
        username: &Username,
        show_revoked: bool,
        after: Option<AppPasswordCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Option<Page<AppPassword>>>> + Send;

    /// Revokes unless already revoked, writing `event` if it did; returns
    /// the password as it now is, `None` when there is no such password.
    fn revoke_app_password(
        &self,
        username: &Username,
        id: Uuid,
        reason: &str,
        event: AuditEvent,
    ) -> impl Future<Output = Result<Option<AppPassword>>> + Send;

    /// Revokes every unrevoked, unexpired password of the account and, if
    /// any, writes `event` with their count; returns how many.
    fn revoke_account_app_passwords(
        &self,
        username: &Username,
        reason: &str,
        event: AuditEvent,
    ) -> impl Future<Output = Result<u64>> + Send;
}

/// What Authenticate reads before it decides a login.
pub trait LoginStore: Send + Sync + 'static {
    /// What a login needs, in one query: the counters of `scopes` and the
    /// one candidate record, the password of `username` whose selector is
    /// `selector`, if any.
    fn login_state(
        &self,
        scopes: &Scopes,
        username: &Username,
        selector: &str,
    ) -> impl Future<Output = Result<LoginState>> + Send;
}

/// Storage of accounts.
pub trait AccountStore: Send + Sync + 'static {
    fn get_account(
        &self,
        username: &Username,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Account>>> + Send;

    fn list_accounts(
        &self,
        after: Option<&Username>,
        limit: u32,
        now: Timestamp,
    ) -> impl Future<Output = Result<Page<Account>>> + Send;

    /// Disables (keeping the first disablement if already disabled) or, with
    /// `None`, enables, writing `event` if the state changed. Returns the
    /// account as it now is.
    fn set_account_disabled(
        &self,
        username: &Username,
        disable: Option<&str>,
        event: AuditEvent,
    ) -> impl Future<Output = Result<Option<Account>>> + Send;

    /// Deletes the account and its passwords and writes `event`; `false` if
    /// it did not exist.
    fn delete_account(
        &self,
        username: &Username,
        event: AuditEvent,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Storage of latchkey's own callers.
pub trait CallerStore: Send + Sync + 'static {
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

    /// The unrevoked caller whose TLS identity is one of `identities`.
    fn caller_by_tls_identity(
        &self,
        identities: &[String],
    ) -> impl Future<Output = Result<Option<Caller>>> + Send;

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

/// Storage of the audit trail.
pub trait AuditStore: Send + Sync + 'static {
    /// Writes one event on its own (a failed login changes nothing else).
    fn record_event(&self, event: AuditEvent) -> impl Future<Output = Result<()>> + Send;

    fn list_events(
        &self,
        filter: &AuditFilter,
        after: Option<AuditCursor>,
        limit: u32,
    ) -> impl Future<Output = Result<Page<AuditEvent>>> + Send;

    /// Deletes events older than `before`; returns how many.
    fn prune_events(&self, before: Timestamp) -> impl Future<Output = Result<u64>> + Send;
}

/// Storage of failed-login counters, shared by every replica.
pub trait ThrottleStore: Send + Sync + 'static {
    /// Adds one failure to each scope by its rule and writes `event`, all
    /// in one transaction, atomically with respect to every other replica:
    /// either the failure counts everywhere and is audited, or nothing
    /// changed. Returns the new counters.
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

/// Everything the domain needs from storage.
pub trait Store:
    AppPasswordStore + LoginStore + AccountStore + CallerStore + AuditStore + ThrottleStore
{
}

impl<T> Store for T where
    T: AppPasswordStore + LoginStore + AccountStore + CallerStore + AuditStore + ThrottleStore
{
}
