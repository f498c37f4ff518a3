//! AppPasswordService's requests.

use std::time::Duration;

use uuid::Uuid;

use tonic::Status;

use crate::domain::app_passwords::model::{
    check_idle_timeout, BulkFilter, CredentialChange, Expiry, IssueRequest,
};
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

use crate::grpc::convert::{
    parse_change, parse_login_protocol, parse_positive_duration, parse_protocol_set,
    parse_timestamp,
};
use crate::grpc::pb::issue_app_password_request::Expiration;
use crate::grpc::pb::{
    self, BulkRevokeAppPasswordsRequest, GetAppPasswordRequest, IssueAppPasswordRequest,
    ListAppPasswordsRequest, ReportPrimaryCredentialChangeRequest, ResumeAppPasswordRequest,
    RevokeAccountAppPasswordsRequest, RevokeAppPasswordRequest, SuspendAppPasswordRequest,
};
use crate::grpc::{names, paging, validate};

use super::{all, check, optional, AccountReason, Checked};

/// `accounts/{username}/appPasswords/{id}`, read.
#[derive(Debug)]
pub struct AppPasswordName {
    pub username: Username,
    pub id: Uuid,
}

/// One app password and why it is changed (revoked, suspended).
#[derive(Debug)]
pub struct ReasonedChange {
    pub name: AppPasswordName,
    pub reason: String,
}

#[derive(Debug)]
pub struct ListAppPasswords {
    pub username: Username,
    pub show_revoked: bool,
    pub page_size: u32,
    pub after: Option<crate::domain::app_passwords::model::AppPasswordCursor>,
}

#[derive(Debug)]
pub struct CredentialChangeReport {
    pub username: Username,
    pub change: CredentialChange,
    pub changed_at: Option<Timestamp>,
}

#[derive(Debug)]
pub struct BulkRevoke {
    pub filter: BulkFilter,
    pub reason: String,
    pub validate_only: bool,
}

/// The app password a request's `field` names.
pub(super) fn app_password_name(field: &str, name: &str) -> Checked<AppPasswordName> {
    check(field, names::parse_app_password(name))
        .map(|(username, id)| AppPasswordName { username, id })
}

pub(super) fn idle_timeout(timeout: &prost_types::Duration) -> Result<Duration, String> {
    parse_positive_duration(timeout).and_then(check_idle_timeout)
}

/// An app password issued as asked, by `issued_by`.
pub fn parse_issue_app_password(
    request: &IssueAppPasswordRequest,
    issued_by: crate::domain::audit::event::Actor,
) -> Result<IssueRequest, Status> {
    let expiry = match &request.expiration {
        None => Checked::valid(None),
        Some(Expiration::ExpireTime(at)) => {
            check("expire_time", parse_timestamp(at)).map(|at| Some(Expiry::At(at)))
        }
        Some(Expiration::Ttl(ttl)) => {
            check("ttl", parse_positive_duration(ttl)).map(|ttl| Some(Expiry::After(ttl)))
        }
    };
    let (username, display_name, protocols, expiry, allowed_networks, idle_timeout) = all((
        check("parent", names::parse_account(&request.parent)),
        check(
            "display_name",
            validate::display_name(&request.display_name),
        ),
        check("protocols", parse_protocol_set(&request.protocols)),
        expiry,
        check(
            "allowed_networks",
            validate::allowed_networks(&request.allowed_networks),
        ),
        optional(
            "idle_timeout",
            request.idle_timeout.as_ref().map(idle_timeout),
        ),
    ))
    .finish()?;
    Ok(IssueRequest {
        username,
        display_name,
        protocols,
        expiry,
        allowed_networks,
        idle_timeout,
        issued_by,
    })
}

pub fn parse_list_app_passwords(
    request: &ListAppPasswordsRequest,
) -> Result<ListAppPasswords, Status> {
    let show_revoked = request.show_revoked;
    let username = check("parent", names::parse_account(&request.parent));
    // A token is bound to its account: checked only against a valid one.
    let after = optional(
        "page_token",
        username.passed().map(|username| {
            paging::parse_app_password_token(&request.page_token, username, show_revoked)
        }),
    );
    let (username, page_size, after) = all((
        username,
        check("page_size", paging::page_size(request.page_size)),
        after,
    ))
    .finish()?;
    Ok(ListAppPasswords {
        username,
        show_revoked,
        page_size,
        after: after.flatten(),
    })
}

pub fn parse_get_app_password(request: &GetAppPasswordRequest) -> Result<AppPasswordName, Status> {
    app_password_name("name", &request.name).finish()
}

pub fn parse_resume_app_password(
    request: &ResumeAppPasswordRequest,
) -> Result<AppPasswordName, Status> {
    app_password_name("name", &request.name).finish()
}

/// An app password's name and a free-text reason, both checked.
fn name_and_reason(name: &str, reason: &str) -> Result<ReasonedChange, Status> {
    let (name, reason) = all((
        app_password_name("name", name),
        check("reason", validate::reason(reason)),
    ))
    .finish()?;
    Ok(ReasonedChange { name, reason })
}

pub fn parse_revoke_app_password(
    request: &RevokeAppPasswordRequest,
) -> Result<ReasonedChange, Status> {
    name_and_reason(&request.name, &request.reason)
}

pub fn parse_suspend_app_password(
    request: &SuspendAppPasswordRequest,
) -> Result<ReasonedChange, Status> {
    name_and_reason(&request.name, &request.reason)
}

pub fn parse_revoke_account_app_passwords(
    request: &RevokeAccountAppPasswordsRequest,
) -> Result<AccountReason, Status> {
    super::account_and_reason("parent", &request.parent, &request.reason)
}

pub fn parse_report_primary_credential_change(
    request: &ReportPrimaryCredentialChangeRequest,
) -> Result<CredentialChangeReport, Status> {
    let (username, change, changed_at) = all((
        check("parent", names::parse_account(&request.parent)),
        check("change", parse_change(request.change)),
        optional(
            "change_time",
            request.change_time.as_ref().map(parse_timestamp),
        ),
    ))
    .finish()?;
    Ok(CredentialChangeReport {
        username,
        change,
        changed_at,
    })
}

pub fn parse_bulk_revoke_app_passwords(
    request: &BulkRevokeAppPasswordsRequest,
) -> Result<BulkRevoke, Status> {
    let reason = validate::reason(&request.reason).and_then(|reason| {
        if reason.is_empty() {
            Err("is required".to_owned())
        } else {
            Ok(reason)
        }
    });
    let (filter, reason) = all((
        bulk_filter(request.filter.as_ref()),
        check("reason", reason),
    ))
    .finish()?;
    Ok(BulkRevoke {
        filter,
        reason,
        validate_only: request.validate_only,
    })
}

/// A bulk filter, every condition checked; violations under `filter.*`.
fn bulk_filter(filter: Option<&pb::AppPasswordFilter>) -> Checked<BulkFilter> {
    let Some(filter) = filter else {
        return Checked::invalid("filter", "is required");
    };
    let protocol = filter.protocol != pb::Protocol::Unspecified as i32;
    let issued_by = !filter.issued_by.is_empty();
    all((
        optional(
            "filter.unused_since",
            filter.unused_since.as_ref().map(parse_timestamp),
        ),
        optional(
            "filter.created_before",
            filter.created_before.as_ref().map(parse_timestamp),
        ),
        optional(
            "filter.protocol",
            protocol.then(|| parse_login_protocol(filter.protocol)),
        ),
        optional(
            "filter.issued_by",
            issued_by.then(|| crate::domain::callers::model::parse_name(&filter.issued_by)),
        ),
    ))
    .map(
        |(unused_since, created_before, protocol, issued_by)| BulkFilter {
            unused_since,
            created_before,
            protocol,
            issued_by,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::event::Actor;
    use crate::grpc::requests::testing::fields;

    fn timestamp(seconds: i64, nanos: i32) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds, nanos }
    }

    #[test]
    fn an_issue_names_every_bad_field_in_order() {
        let request = IssueAppPasswordRequest {
            parent: "users/alice".into(),
            display_name: " ".into(),
            protocols: vec![],
            expiration: Some(Expiration::Ttl(prost_types::Duration::default())),
            allowed_networks: vec!["not a network".into()],
            idle_timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
        };
        let status = parse_issue_app_password(&request, Actor::system("issuer")).unwrap_err();
        assert_eq!(
            fields(status),
            [
                "parent",
                "display_name",
                "protocols",
                "ttl",
                "allowed_networks",
                "idle_timeout"
            ]
        );
        let request = IssueAppPasswordRequest {
            parent: "accounts/alice".into(),
            display_name: "Phone".into(),
            protocols: vec![pb::Protocol::Imap as i32],
            ..Default::default()
        };
        let issue = parse_issue_app_password(&request, Actor::system("issuer")).unwrap();
        assert_eq!(issue.username.as_str(), "alice");
        assert!(issue.expiry.is_none() && issue.idle_timeout.is_none());
        assert_eq!(issue.issued_by.name, "issuer");
    }

    #[test]
    fn a_listing_checks_its_token_only_against_a_valid_parent() {
        let bad = |parent: &str| ListAppPasswordsRequest {
            parent: parent.into(),
            page_size: -1,
            page_token: "not-a-token".into(),
            ..Default::default()
        };
        let status = parse_list_app_passwords(&bad("alice")).unwrap_err();
        assert_eq!(fields(status), ["parent", "page_size"]);
        let status = parse_list_app_passwords(&bad("accounts/alice")).unwrap_err();
        assert_eq!(fields(status), ["page_size", "page_token"]);
    }

    #[test]
    fn a_bulk_revocation_names_its_filter_and_reason() {
        let request = BulkRevokeAppPasswordsRequest::default();
        assert_eq!(
            fields(parse_bulk_revoke_app_passwords(&request).unwrap_err()),
            ["filter", "reason"]
        );
        let request = BulkRevokeAppPasswordsRequest {
            filter: Some(pb::AppPasswordFilter {
                unused_since: Some(timestamp(i64::MAX, 0)),
                protocol: 999,
                issued_by: "\n".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            fields(parse_bulk_revoke_app_passwords(&request).unwrap_err()),
            [
                "filter.unused_since",
                "filter.protocol",
                "filter.issued_by",
                "reason"
            ]
        );
    }

    #[test]
    fn a_credential_change_names_every_bad_field() {
        let request = ReportPrimaryCredentialChangeRequest {
            parent: String::new(),
            change: 0,
            change_time: Some(timestamp(0, 1_000_000_000)),
        };
        assert_eq!(
            fields(parse_report_primary_credential_change(&request).unwrap_err()),
            ["parent", "change", "change_time"]
        );
    }

    #[test]
    fn names_and_reasons_are_checked_together() {
        let request = RevokeAppPasswordRequest {
            name: "accounts/alice".into(),
            reason: "x".repeat(501),
        };
        assert_eq!(
            fields(parse_revoke_app_password(&request).unwrap_err()),
            ["name", "reason"]
        );
        let request = RevokeAccountAppPasswordsRequest {
            parent: "accounts/a/b".into(),
            reason: "a\u{7}".into(),
        };
        assert_eq!(
            fields(parse_revoke_account_app_passwords(&request).unwrap_err()),
            ["parent", "reason"]
        );
    }
}
