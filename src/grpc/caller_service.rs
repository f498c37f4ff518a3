//! CallerService: operators manage latchkey's own callers.

use tonic::{Request, Response, Status};

use crate::domain::callers::model::{parse_name, parse_tls_identity};
use crate::domain::callers::service::Callers;
use crate::domain::callers::store::CallerStore;
use crate::domain::shared::error::{Error, Violations};

use super::app_password_service::unchecked;
use super::convert::{caller_to_pb, parse_role};
use super::pb::caller_service_server::CallerService;
use super::pb::{
    Caller, CreateCallerRequest, CreateCallerResponse, ListCallersRequest, ListCallersResponse,
    RevokeCallerRequest,
};
use super::{caller, names, paging};

pub struct CallerHandler<S> {
    callers: Callers<S>,
}

impl<S> CallerHandler<S> {
    pub fn new(callers: Callers<S>) -> Self {
        Self { callers }
    }
}

#[tonic::async_trait]
impl<S: CallerStore> CallerService for CallerHandler<S> {
    async fn create_caller(
        &self,
        request: Request<CreateCallerRequest>,
    ) -> Result<Response<CreateCallerResponse>, Status> {
        let actor = caller::name_of(&request);
        let request = request.into_inner();
        let mut v = Violations::default();
        let name = v.check("name", parse_name(&request.name));
        let role = v.check("role", parse_role(request.role));
        let tls_identity = v.check("tls_identity", parse_tls_identity(&request.tls_identity));
        v.finish()?;
        let (Some(name), Some(role), Some(tls_identity)) = (name, role, tls_identity) else {
            return Err(unchecked());
        };
        let (created, key) = self
            .callers
            .create_caller(name, role, tls_identity, &actor)
            .await?;
        Ok(Response::new(CreateCallerResponse {
            caller: Some(caller_to_pb(created)),
            key: key.expose().to_owned(),
        }))
    }

    async fn list_callers(
        &self,
        request: Request<ListCallersRequest>,
    ) -> Result<Response<ListCallersResponse>, Status> {
        let request = request.into_inner();
        let mut v = Violations::default();
        let page_size = v.check("page_size", paging::page_size(request.page_size));
        let after = v.check(
            "page_token",
            paging::parse_caller_token(&request.page_token),
        );
        v.finish()?;
        let (Some(page_size), Some(after)) = (page_size, after) else {
            return Err(unchecked());
        };
        let page = self
            .callers
            .list_callers(after.as_deref(), page_size)
            .await?;
        let next_page_token = paging::next_token(&page, |last| paging::caller_token(&last.name));
        Ok(Response::new(ListCallersResponse {
            callers: page.items.into_iter().map(caller_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn revoke_caller(
        &self,
        request: Request<RevokeCallerRequest>,
    ) -> Result<Response<Caller>, Status> {
        let actor = caller::name_of(&request);
        let name = names::parse_caller(&request.get_ref().name)
            .map_err(|why| Error::invalid("name", why))?;
        let revoked = self.callers.revoke_caller(&name, &actor).await?;
        Ok(Response::new(caller_to_pb(revoked)))
    }
}
