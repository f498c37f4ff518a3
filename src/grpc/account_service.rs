//! AccountService: who calls, the request parsed (`requests`), one call of
//! the domain service, the answer converted; the rules live in `domain`.

use tonic::{Request, Response, Status};

use crate::domain::accounts::service::Accounts;
use crate::domain::accounts::store::AccountStore;

use super::convert::account_to_pb;
use super::pb::account_service_server::AccountService;
use super::pb::{
    Account, DeleteAccountRequest, DisableAccountRequest, EnableAccountRequest, GetAccountRequest,
    ListAccountsRequest, ListAccountsResponse,
};
use super::requests::{self, AccountReason};
use super::{caller, paging};

pub struct AccountHandler<S> {
    accounts: Accounts<S>,
}

impl<S> AccountHandler<S> {
    pub fn new(accounts: Accounts<S>) -> Self {
        Self { accounts }
    }
}

#[tonic::async_trait]
impl<S: AccountStore> AccountService for AccountHandler<S> {
    async fn get_account(
        &self,
        request: Request<GetAccountRequest>,
    ) -> Result<Response<Account>, Status> {
        let username = requests::parse_get_account(request.get_ref())?;
        let account = self.accounts.get_account(&username).await?;
        Ok(Response::new(account_to_pb(account)))
    }

    async fn list_accounts(
        &self,
        request: Request<ListAccountsRequest>,
    ) -> Result<Response<ListAccountsResponse>, Status> {
        let page = requests::parse_list_accounts(request.get_ref())?;
        let page = self
            .accounts
            .list_accounts(page.after.as_ref(), page.page_size)
            .await?;
        let next_page_token =
            paging::next_token(&page, |last| paging::account_token(&last.username));
        Ok(Response::new(ListAccountsResponse {
            accounts: page.items.into_iter().map(account_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn disable_account(
        &self,
        request: Request<DisableAccountRequest>,
    ) -> Result<Response<Account>, Status> {
        let actor = caller::actor_of(&request);
        let AccountReason { username, reason } =
            requests::parse_disable_account(request.get_ref())?;
        let account = self
            .accounts
            .disable_account(&username, &reason, &actor)
            .await?;
        Ok(Response::new(account_to_pb(account)))
    }

    async fn enable_account(
        &self,
        request: Request<EnableAccountRequest>,
    ) -> Result<Response<Account>, Status> {
        let actor = caller::actor_of(&request);
        let username = requests::parse_enable_account(request.get_ref())?;
        let account = self.accounts.enable_account(&username, &actor).await?;
        Ok(Response::new(account_to_pb(account)))
    }

    async fn delete_account(
        &self,
        request: Request<DeleteAccountRequest>,
    ) -> Result<Response<()>, Status> {
        let actor = caller::actor_of(&request);
        let username = requests::parse_delete_account(request.get_ref())?;
        self.accounts.delete_account(&username, &actor).await?;
        Ok(Response::new(()))
    }
}
