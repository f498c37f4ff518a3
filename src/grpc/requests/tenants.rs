//! TenantService's requests.

use tonic::Status;

use crate::domain::tenants::model::{parse_display_name, parse_domain, parse_domains, parse_name};
use crate::domain::tenants::service::TenantChange;
use crate::grpc::pb::{
    CreateTenantRequest, ListTenantsRequest, MoveTenantDomainRequest, UpdateTenantRequest,
};
use crate::grpc::{names, paging};

use super::{all, check, page, Checked, PageRequest};

/// The most paths an update mask may name (there are two fields).
const MAX_MASK_PATHS: usize = 8;

#[derive(Debug)]
pub struct NewTenant {
    pub name: String,
    pub display_name: String,
    pub domains: Vec<String>,
}

pub fn parse_create_tenant(request: &CreateTenantRequest) -> Result<NewTenant, Status> {
    let Some(tenant) = &request.tenant else {
        return Checked::invalid("tenant", "is required").finish();
    };
    let (name, display_name, domains) = all((
        check("tenant_id", parse_name(&request.tenant_id)),
        check(
            "tenant.display_name",
            parse_display_name(&tenant.display_name),
        ),
        check("tenant.domains", parse_domains(&tenant.domains)),
    ))
    .finish()?;
    Ok(NewTenant {
        name,
        display_name,
        domains,
    })
}

/// A tenant's name, from `tenants/{name}`.
pub fn parse_tenant_name(name: &str) -> Result<String, Status> {
    check("name", names::parse_tenant(name)).finish()
}

pub fn parse_list_tenants(request: &ListTenantsRequest) -> Result<PageRequest<String>, Status> {
    page(
        request.page_size,
        paging::parse_tenant_token(&request.page_token),
    )
}

#[derive(Debug)]
pub struct TenantUpdate {
    pub name: String,
    pub change: TenantChange,
}

pub fn parse_update_tenant(request: &UpdateTenantRequest) -> Result<TenantUpdate, Status> {
    let Some(tenant) = &request.tenant else {
        return Checked::invalid("tenant", "is required").finish();
    };
    let paths = request
        .update_mask
        .as_ref()
        .map(|mask| mask.paths.as_slice())
        .unwrap_or_default();
    let mask = if paths.is_empty() {
        Err("is required: display_name and/or domains".to_owned())
    } else if paths.len() > MAX_MASK_PATHS {
        Err(format!("must name at most {MAX_MASK_PATHS} paths"))
    } else if let Some(unknown) = paths
        .iter()
        .find(|path| !matches!(path.as_str(), "display_name" | "domains"))
    {
        Err(format!(
            "names {unknown:?}; only display_name and domains can be updated"
        ))
    } else {
        Ok(paths)
    };
    let wants = |field: &str| paths.iter().any(|path| path == field);
    let (name, _, display_name, domains) = all((
        check("tenant.name", names::parse_tenant(&tenant.name)),
        check("update_mask", mask),
        check(
            "tenant.display_name",
            wants("display_name")
                .then(|| parse_display_name(&tenant.display_name))
                .transpose(),
        ),
        check(
            "tenant.domains",
            wants("domains")
                .then(|| parse_domains(&tenant.domains))
                .transpose(),
        ),
    ))
    .finish()?;
    Ok(TenantUpdate {
        name,
        change: TenantChange {
            display_name,
            domains,
        },
    })
}

/// The tenant's name and the domain it is to get.
pub fn parse_move_tenant_domain(
    request: &MoveTenantDomainRequest,
) -> Result<(String, String), Status> {
    all((
        check("name", names::parse_tenant(&request.name)),
        check("domain", parse_domain(&request.domain)),
    ))
    .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::pb::Tenant;
    use crate::grpc::requests::testing::fields;

    #[test]
    fn a_new_tenant_names_every_bad_field() {
        let request = CreateTenantRequest {
            tenant_id: "Acme".into(),
            tenant: Some(Tenant {
                display_name: "a\u{0}".into(),
                domains: vec!["a@b".into()],
                ..Tenant::default()
            }),
        };
        let status = parse_create_tenant(&request).unwrap_err();
        assert_eq!(
            fields(status),
            ["tenant_id", "tenant.display_name", "tenant.domains"]
        );
    }

    #[test]
    fn an_update_needs_a_mask_of_known_fields() {
        let mut request = UpdateTenantRequest {
            tenant: Some(Tenant {
                name: "tenants/acme".into(),
                ..Tenant::default()
            }),
            update_mask: None,
        };
        assert_eq!(
            fields(parse_update_tenant(&request).unwrap_err()),
            ["update_mask"]
        );
        request.update_mask = Some(prost_types::FieldMask {
            paths: vec!["create_time".into()],
        });
        assert_eq!(
            fields(parse_update_tenant(&request).unwrap_err()),
            ["update_mask"]
        );
        request.update_mask = Some(prost_types::FieldMask {
            paths: vec!["domains".into()],
        });
        let update = parse_update_tenant(&request).unwrap();
        assert_eq!(update.change.domains, Some(Vec::new()));
        assert_eq!(update.change.display_name, None);
    }
}
