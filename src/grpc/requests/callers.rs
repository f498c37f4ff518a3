//! CallerService's requests.

use tonic::Status;

use std::time::Duration;

use crate::domain::callers::model::{
    parse_name, parse_tls_identity, KeyLimits, ROTATION_OVERLAP_DEFAULT, ROTATION_OVERLAP_MAX,
};
use crate::grpc::convert::parse_timestamp;
use crate::grpc::validate;

use crate::grpc::convert::parse_role;
use crate::grpc::pb::{
    CreateCallerRequest, ListCallersRequest, RevokeCallerRequest, RotateCallerKeyRequest,
};
use crate::grpc::{names, paging};

use super::{all, check, optional, page, PageRequest};

use crate::domain::callers::model::NewCaller;

pub fn parse_create_caller(request: &CreateCallerRequest) -> Result<NewCaller, Status> {
    let tenant = !request.tenant.is_empty();
    let (name, role, tls_identity, tenant, expires_at, allowed_networks) = all((
        check("name", parse_name(&request.name)),
        check("role", parse_role(request.role)),
        check("tls_identity", parse_tls_identity(&request.tls_identity)),
        optional(
            "tenant",
            tenant.then(|| names::parse_tenant(&request.tenant)),
        ),
        optional(
            "expire_time",
            request.expire_time.as_ref().map(parse_timestamp),
        ),
        check(
            "allowed_networks",
            validate::allowed_networks(&request.allowed_networks),
        ),
    ))
    .finish()?;
    Ok(NewCaller {
        name,
        role,
        tls_identity,
        tenant,
        limits: KeyLimits {
            expires_at,
            allowed_networks,
        },
    })
}

/// The caller's name, and how long its old key keeps working.
pub fn parse_rotate_caller_key(
    request: &RotateCallerKeyRequest,
) -> Result<(String, Duration), Status> {
    all((
        check("name", names::parse_caller(&request.name)),
        optional("overlap", request.overlap.as_ref().map(parse_overlap)),
    ))
    .map(|(name, overlap)| (name, overlap.unwrap_or(ROTATION_OVERLAP_DEFAULT)))
    .finish()
}

fn parse_overlap(overlap: &prost_types::Duration) -> Result<Duration, String> {
    let overlap = Duration::try_from(*overlap).map_err(|_| "must not be negative".to_owned())?;
    if overlap > ROTATION_OVERLAP_MAX {
        return Err(format!(
            "must be at most {} hours",
            ROTATION_OVERLAP_MAX.as_secs() / 3600
        ));
    }
    Ok(overlap)
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
            ..Default::default()
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
