//! CallerService: operators manage latchkey's own callers. Who calls, the
//! request parsed (`requests`), one call of the domain service, the answer
//! converted.

use tonic::{Request, Response, Status};

use crate::domain::callers::service::Callers;
use crate::domain::callers::store::CallerStore;

use super::convert::caller_to_pb;
use super::pb::caller_service_server::CallerService;
use super::pb::{
    Caller, CreateCallerRequest, CreateCallerResponse, ListCallersRequest, ListCallersResponse,
    RevokeCallerRequest, RotateCallerKeyRequest, RotateCallerKeyResponse,
};
use super::requests;
use super::{caller, paging};

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
        let actor = caller::actor_of(&request);
        let new = requests::parse_create_caller(request.get_ref())?;
        let (created, key) = self.callers.create_caller(new, &actor).await?;
        Ok(Response::new(CreateCallerResponse {
            caller: Some(caller_to_pb(created)),
            key: key.expose().to_owned(),
        }))
    }

    async fn list_callers(
        &self,
        request: Request<ListCallersRequest>,
    ) -> Result<Response<ListCallersResponse>, Status> {
        let page = requests::parse_list_callers(request.get_ref())?;
        let page = self
            .callers
            .list_callers(page.after.as_deref(), page.page_size)
            .await?;
        let next_page_token = paging::next_token(&page, |last| paging::caller_token(&last.name));
        Ok(Response::new(ListCallersResponse {
            callers: page.items.into_iter().map(caller_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn rotate_caller_key(
        &self,
        request: Request<RotateCallerKeyRequest>,
    ) -> Result<Response<RotateCallerKeyResponse>, Status> {
        let actor = caller::actor_of(&request);
        let (name, overlap) = requests::parse_rotate_caller_key(request.get_ref())?;
        let (rotated, key) = self.callers.rotate_key(&name, overlap, &actor).await?;
        Ok(Response::new(RotateCallerKeyResponse {
            caller: Some(caller_to_pb(rotated)),
            key: key.expose().to_owned(),
        }))
    }

    async fn revoke_caller(
        &self,
        request: Request<RevokeCallerRequest>,
    ) -> Result<Response<Caller>, Status> {
        let actor = caller::actor_of(&request);
        let name = requests::parse_revoke_caller(request.get_ref())?;
        let revoked = self.callers.revoke_caller(&name, &actor).await?;
        Ok(Response::new(caller_to_pb(revoked)))
    }
}
