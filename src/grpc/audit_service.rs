//! AuditService: operators read the audit trail; watchers stream the
//! change feed.

use std::pin::Pin;

use futures_util::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::domain::audit::event::AuditCursor;
use crate::domain::audit::feed::EventView;
use crate::domain::audit::service::AuditTrail;
use crate::domain::audit::store::AuditStore;
use crate::domain::audit::watch::{EventFeed, WatchItem, WatchRequest};
use crate::domain::shared::error::Result as DomainResult;

use super::convert::{audit_event_to_pb, watch_item_to_pb};
use super::pb::audit_service_server::AuditService;
use super::pb::{
    ListAuditEventsRequest, ListAuditEventsResponse, WatchEventsRequest, WatchEventsResponse,
};
use super::requests::{self, WatchEvents};
use super::{access, caller, paging};

pub struct AuditHandler<S> {
    audit: AuditTrail<S>,
    feed: EventFeed<S>,
}

impl<S> AuditHandler<S> {
    pub fn new(audit: AuditTrail<S>, feed: EventFeed<S>) -> Self {
        Self { audit, feed }
    }
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
        let WatchEvents { mut filter, resume } =
            requests::parse_watch_events(request.get_ref(), reach)?;
        // A scoped watcher: an account of its tenant only, and events of
        // the domains its tenant owns at each read, chosen by the query.
        let scope = caller::reach_of(&request);
        if let Some(username) = &filter.username {
            scope.admit(username)?;
        }
        filter.tenant = scope.tenant().map(str::to_owned);
        let receiver = self
            .feed
            .watch(WatchRequest {
                caller,
                filter,
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
        let list = requests::parse_list_audit_events(request.get_ref())?;
        let page = self
            .audit
            .list_audit_events(&list.filter, list.after, list.page_size)
            .await?;
        let next_page_token = paging::next_token(&page, |last| {
            paging::audit_token(
                &list.key,
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
