//! AccountService's requests.

use tonic::Status;

use crate::domain::shared::username::Username;

use crate::grpc::names;
use crate::grpc::paging;
use crate::grpc::pb::{
    DeleteAccountRequest, DisableAccountRequest, EnableAccountRequest, GetAccountRequest,
    ListAccountsRequest,
};

use super::{account_and_reason, check, page, AccountReason, PageRequest};

/// The account a request's `name` names.
fn account_name(name: &str) -> Result<Username, Status> {
    check("name", names::parse_account(name)).finish()
}

pub fn parse_get_account(request: &GetAccountRequest) -> Result<Username, Status> {
    account_name(&request.name)
}

pub fn parse_enable_account(request: &EnableAccountRequest) -> Result<Username, Status> {
    account_name(&request.name)
}

pub fn parse_delete_account(request: &DeleteAccountRequest) -> Result<Username, Status> {
    account_name(&request.name)
}

pub fn parse_disable_account(request: &DisableAccountRequest) -> Result<AccountReason, Status> {
    account_and_reason("name", &request.name, &request.reason)
}

pub fn parse_list_accounts(request: &ListAccountsRequest) -> Result<PageRequest<Username>, Status> {
    page(
        request.page_size,
        paging::parse_account_token(&request.page_token),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::requests::testing::fields;

    #[test]
    fn a_disablement_names_its_account_and_reason() {
        let request = DisableAccountRequest {
            name: "alice".into(),
            reason: "x".repeat(501),
        };
        let status = parse_disable_account(&request).unwrap_err();
        assert_eq!(fields(status), ["name", "reason"]);
    }

    #[test]
    fn a_listing_names_its_size_and_token() {
        let request = ListAccountsRequest {
            page_size: -1,
            page_token: "%%%".into(),
        };
        let status = parse_list_accounts(&request).unwrap_err();
        assert_eq!(fields(status), ["page_size", "page_token"]);
        let first = parse_list_accounts(&ListAccountsRequest::default()).unwrap();
        assert_eq!(first.after, None);
    }
}
