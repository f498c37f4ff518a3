//! LeakService: who calls, the request parsed (`requests`), one call of
//! the domain service, the answer converted.

use tonic::{Request, Response, Status};

use crate::domain::audit::store::AuditStore;
use crate::domain::leaks::store::LeakStore;
use crate::domain::leaks::{Found, Leaks};

use super::caller;
use super::convert::app_password_to_pb;
use super::pb::leak_service_server::LeakService;
use super::pb::{
    AppPassword, LookupAppPasswordRequest, ReportLeakedSecretsRequest, ReportLeakedSecretsResponse,
};
use super::requests::{self, LeakReport};

pub struct LeakHandler<S> {
    leaks: Leaks<S>,
}

impl<S> LeakHandler<S> {
    pub fn new(leaks: Leaks<S>) -> Self {
        Self { leaks }
    }
}

#[tonic::async_trait]
impl<S: LeakStore + AuditStore> LeakService for LeakHandler<S> {
    async fn report_leaked_secrets(
        &self,
        request: Request<ReportLeakedSecretsRequest>,
    ) -> Result<Response<ReportLeakedSecretsResponse>, Status> {
        let actor = caller::actor_of(&request);
        let LeakReport { secrets, source } =
            requests::parse_report_leaked_secrets(request.get_ref())?;
        let found: Vec<Found<'_>> = secrets
            .iter()
            .map(|typed| Found {
                typed,
                source: &source,
            })
            .collect();
        let receipt = self.leaks.report(&found, &source, &actor).await?;
        Ok(Response::new(ReportLeakedSecretsResponse {
            received: i32::try_from(receipt.received).unwrap_or(i32::MAX),
        }))
    }

    async fn lookup_app_password(
        &self,
        request: Request<LookupAppPasswordRequest>,
    ) -> Result<Response<AppPassword>, Status> {
        let actor = caller::actor_of(&request);
        let secret = requests::parse_lookup_app_password(request.get_ref())?;
        let found = self.leaks.lookup(secret, &actor).await?;
        Ok(Response::new(app_password_to_pb(found, self.leaks.now())))
    }
}
