//! AuditService: operators read the audit trail.

use tonic::{Request, Response, Status};

use crate::domain::audit::event::{AuditCursor, AuditFilter};
use crate::domain::audit::service::AuditTrail;
use crate::domain::audit::store::AuditStore;
use crate::domain::shared::error::Violations;

use super::app_password_service::unchecked;
use super::convert::{audit_event_to_pb, parse_event_types, parse_timestamp};
use super::pb::audit_service_server::AuditService;
use super::pb::{ListAuditEventsRequest, ListAuditEventsResponse};
use super::{names, paging};

pub struct AuditHandler<S> {
    audit: AuditTrail<S>,
}

impl<S> AuditHandler<S> {
    pub fn new(audit: AuditTrail<S>) -> Self {
        Self { audit }
    }
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
