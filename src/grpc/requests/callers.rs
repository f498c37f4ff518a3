//! CallerService's requests.

use tonic::Status;

use crate::domain::callers::model::{parse_name, parse_tls_identity, Role};

use crate::grpc::convert::parse_role;
use crate::grpc::pb::{CreateCallerRequest, ListCallersRequest, RevokeCallerRequest};
use crate::grpc::{names, paging};

use super::{all, check, optional, page, PageRequest};

#[derive(Debug)]
pub struct NewCaller {
    pub name: String,
    pub role: Role,
    pub tls_identity: Option<String>,
    pub tenant: Option<String>,
}

pub fn parse_create_caller(request: &CreateCallerRequest) -> Result<NewCaller, Status> {
    let tenant = !request.tenant.is_empty();
    let (name, role, tls_identity, tenant) = all((
        check("name", parse_name(&request.name)),
        check("role", parse_role(request.role)),
        check("tls_identity", parse_tls_identity(&request.tls_identity)),
        optional(
            "tenant",
            tenant.then(|| names::parse_tenant(&request.tenant)),
        ),
    ))
    .finish()?;
    Ok(NewCaller {
        name,
        role,
        tls_identity,
        tenant,
    })
}

pub fn parse_list_callers(request: &ListCallersRequest) -> Result<PageRequest<String>, Status> {
    page(
        request.page_size,
        paging::parse_caller_token(&request.page_token),
    )
}

/// The caller's name, from `callers/{name}`.
pub fn parse_revoke_caller(request: &RevokeCallerRequest) -> Result<String, Status> {
    check("name", names::parse_caller(&request.name)).finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::requests::testing::fields;

    #[test]
    fn a_new_caller_names_every_bad_field() {
        let request = CreateCallerRequest {
            name: String::new(),
            role: 99,
            tls_identity: "a\u{0}".into(),
            tenant: "acme".into(),
        };
        let status = parse_create_caller(&request).unwrap_err();
        assert_eq!(fields(status), ["name", "role", "tls_identity", "tenant"]);
    }

    #[test]
    fn a_listing_names_its_size_and_token() {
        let request = ListCallersRequest {
            page_size: 5000,
            page_token: "%%%".into(),
        };
        let status = parse_list_callers(&request).unwrap_err();
        assert_eq!(fields(status), ["page_size", "page_token"]);
    }
}
