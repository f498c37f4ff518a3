//! Managing accounts: looking at them, disabling, enabling and deleting.

use std::sync::Arc;

use super::model::{account_not_found, Account};
use super::store::AccountStore;
use crate::domain::audit::event::{Actor, AuditEvent, EventType};
use crate::domain::shared::error::Result;
use crate::domain::shared::page::Page;
use crate::domain::shared::time::{Clock, Timestamp};
use crate::domain::shared::username::Username;

/// The account operations; cheap to clone.
#[derive(Clone)]
pub struct Accounts<S> {
    store: S,
    clock: Arc<dyn Clock>,
}

impl<S: AccountStore> Accounts<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub async fn get_account(&self, username: &Username) -> Result<Account> {
        self.store
            .get_account(username, self.now())
            .await?
            .ok_or_else(|| account_not_found(username))
    }

    pub async fn list_accounts(
        &self,
        after: Option<&Username>,
        limit: u32,
    ) -> Result<Page<Account>> {
        self.store.list_accounts(after, limit, self.now()).await
    }

    /// Every app password of the account stops working with the commit of
    /// this call; nothing is deleted, so enabling restores them.
    pub async fn disable_account(
        &self,
        username: &Username,
        reason: &str,
        actor: &Actor,
    ) -> Result<Account> {
        let event = AuditEvent::new(EventType::AccountDisabled, self.now(), actor)
            .account(username)
            .detail(reason);
        self.store
            .set_account_disabled(username, Some(reason), event)
            .await?
            .ok_or_else(|| account_not_found(username))
    }

    pub async fn enable_account(&self, username: &Username, actor: &Actor) -> Result<Account> {
        let event = AuditEvent::new(EventType::AccountEnabled, self.now(), actor).account(username);
        self.store
            .set_account_disabled(username, None, event)
            .await?
            .ok_or_else(|| account_not_found(username))
    }

    pub async fn delete_account(&self, username: &Username, actor: &Actor) -> Result<()> {
        let event = AuditEvent::new(EventType::AccountDeleted, self.now(), actor).account(username);
        if self.store.delete_account(username, event).await? {
            Ok(())
        } else {
            Err(account_not_found(username))
        }
    }
}
