//! Managing accounts. An account comes into being with its first app
//! password; operators can look at it, disable, enable and delete it.

use super::app_passwords::account_not_found;
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
    pub async fn disable_account(&self, username: &Username, reason: &str) -> Result<Account> {
        let now = self.now();
        self.store()
            .set_account_disabled(username, Some((now, reason)), now)
            .await?
            .ok_or_else(|| account_not_found(username))
    }

    pub async fn enable_account(&self, username: &Username) -> Result<Account> {
        self.store()
            .set_account_disabled(username, None, self.now())
            .await?
            .ok_or_else(|| account_not_found(username))
    }

    pub async fn delete_account(&self, username: &Username) -> Result<()> {
        if self.store().delete_account(username).await? {
            Ok(())
        } else {
            Err(account_not_found(username))
        }
    }
}
