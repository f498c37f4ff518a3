//! AuditService's requests.

use tonic::Status;

use crate::domain::audit::event::{AuditCursor, AuditFilter, EventType};
use crate::domain::audit::feed::{FeedFilter, ResumeToken};

use crate::grpc::convert::{parse_event_types, parse_timestamp};
use crate::grpc::pb::{ListAuditEventsRequest, WatchEventsRequest};
use crate::grpc::{names, paging};

use super::{all, check, optional};

/// What a stream watches and where it starts (`None`: after the newest
/// event now).
#[derive(Debug)]
pub struct WatchEvents {
    pub filter: FeedFilter,
    pub resume: Option<ResumeToken>,
}

#[derive(Debug)]
pub struct ListAuditEvents {
    pub filter: AuditFilter,
    /// The filter as page tokens carry it.
    pub key: String,
    pub page_size: u32,
    pub after: Option<AuditCursor>,
}

/// The event types asked for, each within `reach`; all of `reach` when
/// none are named.
fn watched_types(values: &[i32], reach: &[EventType]) -> Result<Vec<EventType>, String> {
    let mut types = parse_event_types(values)?;
    if let Some(denied) = types.iter().find(|t| !reach.contains(t)) {
        return Err(format!(
            "{} is not a type this caller's role may watch",
            denied.as_str()
        ));
    }
    if types.is_empty() {
        return Ok(reach.to_vec());
    }
    types.sort_unstable_by_key(|t| t.as_str());
    types.dedup();
    Ok(types)
}

/// A stream of the events within `reach`, the caller's role's.
pub fn parse_watch_events(
    request: &WatchEventsRequest,
    reach: &[EventType],
) -> Result<WatchEvents, Status> {
    let account = !request.account.is_empty();
    let resume = !request.resume_token.is_empty();
    let (event_types, username, resume) = all((
        check("types", watched_types(&request.types, reach)),
        optional(
            "account",
            account.then(|| names::parse_account(&request.account)),
        ),
        optional(
            "resume_token",
            resume.then(|| ResumeToken::decode(&request.resume_token)),
        ),
    ))
    .finish()?;
    Ok(WatchEvents {
        filter: FeedFilter {
            event_types,
            username,
            // Set by the handler from the caller's reach.
            tenant: None,
        },
        resume,
    })
}

/// The page token is bound to the filter as far as it could be read, so a
/// token from another listing is named even beside other bad fields.
pub fn parse_list_audit_events(
    request: &ListAuditEventsRequest,
) -> Result<ListAuditEvents, Status> {
    let account = !request.account.is_empty();
    let app_password = !request.app_password.is_empty();
    let username = optional(
        "account",
        account.then(|| names::parse_account(&request.account)),
    );
    let app_password = optional(
        "app_password",
        app_password.then(|| names::parse_app_password(&request.app_password)),
    );
    let event_types = check("types", parse_event_types(&request.types));
    let from = optional(
        "start_time",
        request.start_time.as_ref().map(parse_timestamp),
    );
    let until = optional("end_time", request.end_time.as_ref().map(parse_timestamp));
    let (app_password_username, app_password_id) = app_password.passed().cloned().flatten().unzip();
    let filter = AuditFilter {
        username: username
            .passed()
            .cloned()
            .flatten()
            .or(app_password_username),
        app_password_id,
        event_types: event_types.passed().cloned().unwrap_or_default(),
        from: from.passed().copied().flatten(),
        until: until.passed().copied().flatten(),
    };
    let key = filter_key(&filter);
    let (_, _, _, _, _, page_size, after) = all((
        username,
        app_password,
        event_types,
        from,
        until,
        check("page_size", paging::page_size(request.page_size)),
        check(
            "page_token",
            paging::parse_audit_token(&request.page_token, &key),
        ),
    ))
    .finish()?;
    Ok(ListAuditEvents {
        filter,
        key,
        page_size,
        after,
    })
}

/// The filter, rendered into page tokens so a token only continues the
/// listing it came from.
fn filter_key(filter: &AuditFilter) -> String {
    let mut types: Vec<&str> = filter.event_types.iter().map(|t| t.as_str()).collect();
    types.sort_unstable();
    [
        filter
            .username
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        filter
            .app_password_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        types.join(","),
        filter
            .from
            .map(|t| t.as_millis().to_string())
            .unwrap_or_default(),
        filter
            .until
            .map(|t| t.as_millis().to_string())
            .unwrap_or_default(),
    ]
    .join("\u{1}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::pb::AuditEventType;
    use crate::grpc::requests::testing::fields;

    #[test]
    fn a_watch_stays_within_its_reach() {
        let request = WatchEventsRequest {
            types: vec![AuditEventType::CallerCreated as i32],
            account: "bob".into(),
            resume_token: "garbage".into(),
        };
        let reach = [EventType::AppPasswordIssued];
        let status = parse_watch_events(&request, &reach).unwrap_err();
        assert_eq!(fields(status), ["types", "account", "resume_token"]);
        let watch = parse_watch_events(&WatchEventsRequest::default(), &reach).unwrap();
        assert_eq!(watch.filter.event_types, reach);
        assert_eq!(watch.resume, None);
    }

    #[test]
    fn a_page_token_is_checked_against_the_filter_as_far_as_it_was_read() {
        let token = paging::audit_token(
            &filter_key(&AuditFilter::default()),
            AuditCursor {
                at: crate::domain::shared::time::Timestamp::from_millis(1),
                id: 7,
            },
        );
        let request = |account: &str, types: Vec<i32>| ListAuditEventsRequest {
            account: account.into(),
            types,
            end_time: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            page_size: 2000,
            page_token: token.clone(),
            ..Default::default()
        };
        // The types and the end time could not be read: the token, minted
        // for no filter at all, still fits.
        let status = parse_list_audit_events(&request("", vec![999])).unwrap_err();
        assert_eq!(fields(status), ["types", "end_time", "page_size"]);
        // A readable account narrows the filter: the token does not fit it.
        let status = parse_list_audit_events(&request("accounts/bob", vec![])).unwrap_err();
        assert_eq!(fields(status), ["end_time", "page_size", "page_token"]);
    }
}
