//! Managing accounts. An account comes into being with its first app
//! password; operators can look at it, disable, enable and delete it.

use super::app_passwords::account_not_found;
use super::audit::{AuditEvent, EventType};
use super::error::Result;
use super::model::{Account, Page};
use super::store::Store;
use super::username::Username;
use super::Latchkey;

impl<S: Store> Latchkey<S> {
    pub async fn get_account(&self, username: &Username) -> Result<Account> {
        self.store()
            .get_account(username, self.now())
            .await?
            .ok_or_else(|| account_not_found(username))
    }

    pub async fn list_accounts(
        &self,
        after: Option<&Username>,
        limit: u32,
    ) -> Result<Page<Account>> {
        self.store().list_accounts(after, limit, self.now()).await
    }

    /// Every app password of the account stops working with the commit of
    /// this call; nothing is deleted, so enabling restores them.
    pub async fn disable_account(
        &self,
        username: &Username,
        reason: &str,
        actor: &str,
    ) -> Result<Account> {
        let event = AuditEvent::new(EventType::AccountDisabled, self.now(), actor)
            .account(username)
            .detail(reason);
        self.store()
            .set_account_disabled(username, Some(reason), event)
            .await?
            .ok_or_else(|| account_not_found(username))
    }

    pub async fn enable_account(&self, username: &Username, actor: &str) -> Result<Account> {
        let event = AuditEvent::new(EventType::AccountEnabled, self.now(), actor).account(username);
        self.store()
            .set_account_disabled(username, None, event)
            .await?
            .ok_or_else(|| account_not_found(username))
    }

    pub async fn delete_account(&self, username: &Username, actor: &str) -> Result<()> {
        let event = AuditEvent::new(EventType::AccountDeleted, self.now(), actor).account(username);
        if self.store().delete_account(username, event).await? {
            Ok(())
        } else {
            Err(account_not_found(username))
        }
    }
}
