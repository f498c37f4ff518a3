//! TenantService: who calls, the request parsed (`requests`), one call of
//! the domain service, the answer converted.

use tonic::{Request, Response, Status};

use crate::domain::tenants::service::Tenants;
use crate::domain::tenants::store::TenantStore;

use super::convert::tenant_to_pb;
use super::pb::tenant_service_server::TenantService;
use super::pb::{
    CreateTenantRequest, DeleteTenantRequest, GetTenantRequest, ListTenantsRequest,
    ListTenantsResponse, MoveTenantDomainRequest, Tenant, UpdateTenantRequest,
};
use super::requests::{self, NewTenant, TenantUpdate};
use super::{caller, paging};

pub struct TenantHandler<S> {
    tenants: Tenants<S>,
}

impl<S> TenantHandler<S> {
    pub fn new(tenants: Tenants<S>) -> Self {
        Self { tenants }
    }
}

#[tonic::async_trait]
impl<S: TenantStore> TenantService for TenantHandler<S> {
    async fn create_tenant(
        &self,
        request: Request<CreateTenantRequest>,
    ) -> Result<Response<Tenant>, Status> {
        let actor = caller::actor_of(&request);
        let NewTenant {
            name,
            display_name,
            domains,
            policy,
        } = requests::parse_create_tenant(request.get_ref())?;
        let tenant = self
            .tenants
            .create(name, display_name, domains, policy, &actor)
            .await?;
        Ok(Response::new(tenant_to_pb(tenant)))
    }

    async fn get_tenant(
        &self,
        request: Request<GetTenantRequest>,
    ) -> Result<Response<Tenant>, Status> {
        let name = requests::parse_tenant_name(&request.get_ref().name)?;
        Ok(Response::new(tenant_to_pb(self.tenants.get(&name).await?)))
    }

    async fn list_tenants(
        &self,
        request: Request<ListTenantsRequest>,
    ) -> Result<Response<ListTenantsResponse>, Status> {
        let page = requests::parse_list_tenants(request.get_ref())?;
        let page = self
            .tenants
            .list(page.after.as_deref(), page.page_size)
            .await?;
        let next_page_token = paging::next_token(&page, |last| paging::tenant_token(&last.name));
        Ok(Response::new(ListTenantsResponse {
            tenants: page.items.into_iter().map(tenant_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn update_tenant(
        &self,
        request: Request<UpdateTenantRequest>,
    ) -> Result<Response<Tenant>, Status> {
        let actor = caller::actor_of(&request);
        let TenantUpdate { name, change } = requests::parse_update_tenant(request.get_ref())?;
        let tenant = self.tenants.update(&name, change, &actor).await?;
        Ok(Response::new(tenant_to_pb(tenant)))
    }

    async fn delete_tenant(
        &self,
        request: Request<DeleteTenantRequest>,
    ) -> Result<Response<()>, Status> {
        let actor = caller::actor_of(&request);
        let name = requests::parse_tenant_name(&request.get_ref().name)?;
        self.tenants.delete(&name, &actor).await?;
        Ok(Response::new(()))
    }

    async fn move_tenant_domain(
        &self,
        request: Request<MoveTenantDomainRequest>,
    ) -> Result<Response<Tenant>, Status> {
        let actor = caller::actor_of(&request);
        let (name, domain) = requests::parse_move_tenant_domain(request.get_ref())?;
        let tenant = self.tenants.move_domain(&domain, &name, &actor).await?;
        Ok(Response::new(tenant_to_pb(tenant)))
    }
}
