//! AuditService: operators read the audit trail; watchers stream the
//! change feed.

use std::pin::Pin;

use futures_util::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::domain::audit::event::{AuditCursor, AuditFilter, EventType};
use crate::domain::audit::feed::{EventView, FeedFilter, ResumeToken};
use crate::domain::audit::service::AuditTrail;
use crate::domain::audit::store::AuditStore;
use crate::domain::audit::watch::{EventFeed, WatchItem, WatchRequest};
use crate::domain::shared::error::{Result as DomainResult, Violations};

use super::app_password_service::unchecked;
use super::convert::{audit_event_to_pb, parse_event_types, parse_timestamp, watch_item_to_pb};
use super::pb::audit_service_server::AuditService;
use super::pb::{
    ListAuditEventsRequest, ListAuditEventsResponse, WatchEventsRequest, WatchEventsResponse,
};
use super::{access, caller, names, paging};

pub struct AuditHandler<S> {
    audit: AuditTrail<S>,
    feed: EventFeed<S>,
}

impl<S> AuditHandler<S> {
    pub fn new(audit: AuditTrail<S>, feed: EventFeed<S>) -> Self {
        Self { audit, feed }
    }
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

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEventsResponse, Status>> + Send>>;

/// The stream's items until its task ends; then, unless the last item was
/// an error already, UNAVAILABLE (the replica is stopping): the client
/// reconnects with its last token. Once the feed closes, items still
/// waiting are dropped and UNAVAILABLE comes next: the client's token
/// covers them, and a client that stopped reading cannot keep the stream
/// open by not taking them.
fn watch_stream<S: AuditStore>(
    receiver: mpsc::Receiver<DomainResult<WatchItem>>,
    feed: EventFeed<S>,
) -> WatchStream {
    let stopping = || {
        Err(Status::unavailable(
            "this replica is stopping; reconnect with the last resume_token",
        ))
    };
    Box::pin(futures_util::stream::unfold(
        Some((receiver, feed)),
        move |state| async move {
            let (mut receiver, feed) = state?;
            tokio::select! {
                biased;
                () = feed.closed() => Some((stopping(), None)),
                item = receiver.recv() => match item {
                    Some(Ok(item)) => Some((Ok(watch_item_to_pb(item)), Some((receiver, feed)))),
                    Some(Err(error)) => Some((Err(Status::from(error)), None)),
                    None => Some((stopping(), None)),
                },
            }
        },
    ))
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

#[tonic::async_trait]
impl<S: AuditStore> AuditService for AuditHandler<S> {
    type WatchEventsStream = WatchStream;

    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        // The access table lets only watchers here; each sees its reach,
        // and of each event its view.
        let role = caller::role_of(&request);
        let reach = role.map_or(&[][..], access::watchable);
        let view = role.map_or(EventView::Target, access::watch_view);
        let caller = caller::name_of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let event_types = v.check("types", watched_types(&request.types, reach));
        let username = if request.account.is_empty() {
            Some(None)
        } else {
            v.check("account", names::parse_account(&request.account))
                .map(Some)
        };
        let resume = if request.resume_token.is_empty() {
            Some(None)
        } else {
            v.check("resume_token", ResumeToken::decode(&request.resume_token))
                .map(Some)
        };
        v.finish()?;
        let (Some(event_types), Some(username), Some(resume)) = (event_types, username, resume)
        else {
            return Err(unchecked());
        };
        let receiver = self
            .feed
            .watch(WatchRequest {
                caller,
                filter: FeedFilter {
                    event_types,
                    username,
                },
                view,
                resume,
            })
            .await?;
        Ok(Response::new(watch_stream(receiver, self.feed.clone())))
    }

    async fn list_audit_events(
        &self,
        request: Request<ListAuditEventsRequest>,
    ) -> Result<Response<ListAuditEventsResponse>, Status> {
        let request = request.into_inner();
        let mut v = Violations::default();
        let username = if request.account.is_empty() {
            None
        } else {
            v.check("account", names::parse_account(&request.account))
        };
        let app_password = if request.app_password.is_empty() {
            None
        } else {
            v.check(
                "app_password",
                names::parse_app_password(&request.app_password),
            )
        };
        let event_types = v.check("types", parse_event_types(&request.types));
        let from = request
            .start_time
            .as_ref()
            .and_then(|t| v.check("start_time", parse_timestamp(t)));
        let until = request
            .end_time
            .as_ref()
            .and_then(|t| v.check("end_time", parse_timestamp(t)));
        let page_size = v.check("page_size", paging::page_size(request.page_size));
        let (app_password_username, app_password_id) = app_password.unzip();
        let filter = AuditFilter {
            username: username.or(app_password_username),
            app_password_id,
            event_types: event_types.unwrap_or_default(),
            from,
            until,
        };
        let key = filter_key(&filter);
        let after = v.check(
            "page_token",
            paging::parse_audit_token(&request.page_token, &key),
        );
        v.finish()?;
        let (Some(page_size), Some(after)) = (page_size, after) else {
            return Err(unchecked());
        };

        let page = self
            .audit
            .list_audit_events(&filter, after, page_size)
            .await?;
        let next_page_token = paging::next_token(&page, |last| {
            paging::audit_token(
                &key,
                AuditCursor {
                    at: last.at,
                    id: last.id,
                },
            )
        });
        Ok(Response::new(ListAuditEventsResponse {
            audit_events: page.items.into_iter().map(audit_event_to_pb).collect(),
            next_page_token,
        }))
    }
}
