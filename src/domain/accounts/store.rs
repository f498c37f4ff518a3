//! What account management needs from storage.

use std::future::Future;

use super::model::Account;
use crate::domain::audit::event::AuditEvent;
use crate::domain::shared::error::Result;
use crate::domain::shared::page::Page;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

/// Storage of accounts. Every method is one transaction: when it returns
/// `Ok`, what it wrote is committed and durable.
pub trait AccountStore: Clone + Send + Sync + 'static {
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
