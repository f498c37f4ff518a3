//! AccountService: translation only; the rules live in `domain`.

use tonic::{Request, Response, Status};

use crate::domain::accounts::service::Accounts;
use crate::domain::accounts::store::AccountStore;
use crate::domain::shared::error::{Error, Violations};

use super::app_password_service::unchecked;
use super::convert::account_to_pb;
use super::pb::account_service_server::AccountService;
use super::pb::{
    Account, DeleteAccountRequest, DisableAccountRequest, EnableAccountRequest, GetAccountRequest,
    ListAccountsRequest, ListAccountsResponse,
};
use super::{caller, names, paging, validate};

pub struct AccountHandler<S> {
    accounts: Accounts<S>,
}

impl<S> AccountHandler<S> {
    pub fn new(accounts: Accounts<S>) -> Self {
        Self { accounts }
    }
}

fn account_name(name: &str) -> Result<crate::domain::shared::username::Username, Status> {
    names::parse_account(name).map_err(|why| Error::invalid("name", why).into())
}

#[tonic::async_trait]
impl<S: AccountStore> AccountService for AccountHandler<S> {
    async fn get_account(
        &self,
        request: Request<GetAccountRequest>,
    ) -> Result<Response<Account>, Status> {
        let username = account_name(&request.get_ref().name)?;
        let account = self.accounts.get_account(&username).await?;
        Ok(Response::new(account_to_pb(account)))
    }

    async fn list_accounts(
        &self,
        request: Request<ListAccountsRequest>,
    ) -> Result<Response<ListAccountsResponse>, Status> {
        let request = request.into_inner();
        let mut v = Violations::default();
        let page_size = v.check("page_size", paging::page_size(request.page_size));
        let after = v.check(
            "page_token",
            paging::parse_account_token(&request.page_token),
        );
        v.finish()?;
        let (Some(page_size), Some(after)) = (page_size, after) else {
            return Err(unchecked());
        };

        let page = self
            .accounts
            .list_accounts(after.as_ref(), page_size)
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
        let actor = caller::name_of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let username = v.check("name", names::parse_account(&request.name));
        let reason = v.check("reason", validate::reason(&request.reason));
        v.finish()?;
        let (Some(username), Some(reason)) = (username, reason) else {
            return Err(unchecked());
        };
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
        let username = account_name(&request.get_ref().name)?;
        let account = self
            .accounts
            .enable_account(&username, &caller::name_of(&request))
            .await?;
        Ok(Response::new(account_to_pb(account)))
    }

    async fn delete_account(
        &self,
        request: Request<DeleteAccountRequest>,
    ) -> Result<Response<()>, Status> {
        let username = account_name(&request.get_ref().name)?;
        self.accounts
            .delete_account(&username, &caller::name_of(&request))
            .await?;
        Ok(Response::new(()))
    }
}
