//! What issuing, reviewing and revoking app passwords need from storage.

use std::future::Future;

use uuid::Uuid;

use super::model::{
    AppPassword, AppPasswordCursor, BulkFilter, Change, Holding, IssueLimits, IssueOutcome,
    NewAppPassword, Notice, NoticeWindow,
};
use crate::domain::audit::event::AuditEvent;
use crate::domain::shared::error::Result;
use crate::domain::shared::page::Page;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

/// Storage of app passwords. Every method is one transaction: when it
/// returns `Ok`, what it wrote is committed and durable.
pub trait AppPasswordStore: Clone + Send + Sync + 'static {
    /// Creates the account if it does not exist, then, atomically with
    /// respect to every other issue for the same account, checks that it is
    /// enabled, below `limits.cap` active passwords and within its issue
    /// bound (`issue_bounds::account_wait` on its newest issues), inserts
    /// the password and writes `event`.
    fn issue(
        &self,
        new: NewAppPassword,
        limits: IssueLimits,
        event: AuditEvent,
    ) -> impl Future<Output = Result<IssueOutcome>> + Send;

    /// When the account's newest passwords were issued, newest first:
    /// those created after `after`, at most `limit`, revoked ones included.
    fn newest_issues(
        &self,
        username: &Username,
        after: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Timestamp>>> + Send;

    fn get_app_password(
        &self,
        username: &Username,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<AppPassword>>> + Send;

    /// `None` when the account does not exist. With `issued_by`, only
    /// the passwords that caller issued.
    fn list_app_passwords(
        &self,
        username: &Username,
        show_revoked: bool,
        issued_by: Option<&str>,
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

    /// Revokes every unrevoked, unexpired password of the account (only
    /// those issued before `issued_before`, if given) and writes `event`
    /// with their count: if any, or always with `audit_none`. Returns how
    /// many.
    fn revoke_account_app_passwords(
        &self,
        username: &Username,
        issued_before: Option<Timestamp>,
        reason: &str,
        event: AuditEvent,
        audit_none: bool,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Changes one password as `plan` decides, atomically with respect to
    /// every other change of it on any replica: the row is locked, `plan`
    /// sees it as it is then and returns the change and its audit event,
    /// or `None` when there is nothing to do, or an error, which changes
    /// nothing. The change, `updated_at` (the event's time) and the event
    /// are committed together, as one. Returns the password as it now is;
    /// `None` when there is no such password.
    fn change_app_password<F>(
        &self,
        username: &Username,
        id: Uuid,
        plan: F,
    ) -> impl Future<Output = Result<Option<AppPassword>>> + Send
    where
        F: FnOnce(&AppPassword) -> Result<Option<(Change, AuditEvent)>> + Send;

    /// How many active (unrevoked, unexpired, not idle-expired) passwords
    /// match `filter` at `now`, and up to `sample` of them.
    fn count_matching(
        &self,
        filter: &BulkFilter,
        now: Timestamp,
        sample: u32,
    ) -> impl Future<Output = Result<(u64, Vec<AppPassword>)>> + Send;

    /// Revokes, in one transaction, up to `limit` active passwords matching
    /// `filter` whose ids come after `after`, in id order, writing one
    /// `event` per account with its count. Returns what it did.
    fn revoke_matching(
        &self,
        filter: &BulkFilter,
        after: Option<Uuid>,
        limit: u32,
        reason: &str,
        event: AuditEvent,
    ) -> impl Future<Output = Result<BulkBatch>> + Send;

    /// Up to `limit` passwords, in id order after `after`, that are not
    /// marked, revoked or expired at `now`, but went idle by `before`
    /// (their stored last use plus their idle timeout).
    fn idle_candidates(
        &self,
        now: Timestamp,
        before: Timestamp,
        after: Option<Uuid>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(Username, Uuid)>>> + Send;

    /// Up to `limit` passwords, in id order after `after`, due `window`'s
    /// notice (as [`NoticeWindow::due`] says) and not yet noticed for the
    /// time it is about: its notice column is empty, or holds another
    /// expiry (`ExpiringSoon`) or an earlier idle deadline
    /// (`IdleExpiringSoon`).
    fn notice_candidates(
        &self,
        window: &NoticeWindow,
        after: Option<Uuid>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AppPassword>>> + Send;

    /// Writes `notices` in one transaction: for each, the password's notice
    /// column is set only if it is still due `window`'s notice about the
    /// same time and not yet noticed for it (one conditional update, a
    /// compare-and-set), and its event is written only if it was. Returns
    /// how many were written: replicas writing the same notices at once
    /// write each once.
    fn record_notices(
        &self,
        window: &NoticeWindow,
        notices: Vec<Notice>,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// What `issuer` holds on the account at `now`: nothing, only
    /// passwords that are over, or a live one.
    fn holding_of(
        &self,
        username: &Username,
        issuer: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Holding>> + Send;

    /// Deletes up to `limit` passwords revoked, expired or idle-expired
    /// before `ended_before`; returns how many.
    fn prune_ended(
        &self,
        ended_before: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<u64>> + Send;
}

/// One batch of a bulk revocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkBatch {
    pub revoked: u64,
    pub accounts: u64,
    /// The last id looked at; `None` when nothing matched after `after`
    /// (the revocation is complete).
    pub last_id: Option<Uuid>,
}
