//! What issuing, reviewing and revoking app passwords need from storage.

use std::future::Future;

use uuid::Uuid;

use super::model::{AppPassword, AppPasswordCursor, IssueOutcome, NewAppPassword};
use crate::domain::audit::event::AuditEvent;
use crate::domain::shared::error::Result;
use crate::domain::shared::page::Page;
use crate::domain::shared::username::Username;

/// Storage of app passwords. Every method is one transaction: when it
/// returns `Ok`, what it wrote is committed and durable.
pub trait AppPasswordStore: Clone + Send + Sync + 'static {
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
