//! TenantService's requests.

use std::time::Duration;

use tonic::Status;

use crate::domain::app_passwords::model::{check_idle_timeout, ChangePolicy};
use crate::domain::tenants::model::{
    parse_display_name, parse_domain, parse_domains, parse_name, ChangeOverrides, TenantChange,
    TenantPolicy, MAX_ACTIVE_APP_PASSWORDS_LIMIT,
};
use crate::grpc::convert::{parse_positive_duration, parse_protocol_set};
use crate::grpc::pb;
use crate::grpc::pb::{
    CreateTenantRequest, ListTenantsRequest, MoveTenantDomainRequest, UpdateTenantRequest,
};
use crate::grpc::{names, paging};

use super::{all, check, page, Checked, PageRequest};

/// The most paths an update mask may name (there are three fields).
const MAX_MASK_PATHS: usize = 8;

#[derive(Debug)]
pub struct NewTenant {
    pub name: String,
    pub display_name: String,
    pub domains: Vec<String>,
    pub policy: TenantPolicy,
}

/// The longest maximum lifetime a tenant may set.
const MAX_LIFETIME_LIMIT: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A tenant's policy; `None` (the field left out) is the empty policy.
fn parse_policy(policy: Option<&pb::TenantPolicy>) -> Result<TenantPolicy, String> {
    let Some(policy) = policy else {
        return Ok(TenantPolicy::default());
    };
    let cap = match u32::try_from(policy.max_active_app_passwords) {
        Ok(0) => None,
        Ok(cap) if cap <= MAX_ACTIVE_APP_PASSWORDS_LIMIT => Some(cap),
        _ => {
            return Err(format!(
                "max_active_app_passwords must be 0 (the deployment's) to {MAX_ACTIVE_APP_PASSWORDS_LIMIT}"
            ))
        }
    };
    let max_lifetime = policy
        .max_lifetime
        .as_ref()
        .map(|d| {
            parse_positive_duration(d)
                .and_then(|d| {
                    (d <= MAX_LIFETIME_LIMIT)
                        .then_some(d)
                        .ok_or_else(|| "must be at most 100 years".to_owned())
                })
                .map_err(|why| format!("max_lifetime {why}"))
        })
        .transpose()?;
    let default_idle_timeout = policy
        .default_idle_timeout
        .as_ref()
        .map(|d| {
            parse_positive_duration(d)
                .and_then(check_idle_timeout)
                .map_err(|why| format!("default_idle_timeout {why}"))
        })
        .transpose()?;
    let allowed_protocols = if policy.allowed_protocols.is_empty() {
        None
    } else {
        let set = parse_protocol_set(&policy.allowed_protocols)
            .map_err(|why| format!("allowed_protocols {why}"))?;
        (!set.is_any()).then_some(set)
    };
    let change = |name: &str, value: i32| -> Result<Option<ChangePolicy>, String> {
        match pb::PrimaryChangePolicy::try_from(value) {
            Ok(pb::PrimaryChangePolicy::Unspecified) => Ok(None),
            Ok(pb::PrimaryChangePolicy::Keep) => Ok(Some(ChangePolicy::Keep)),
            Ok(pb::PrimaryChangePolicy::RevokeIssuedBefore) => {
                Ok(Some(ChangePolicy::RevokeIssuedBefore))
            }
            Ok(pb::PrimaryChangePolicy::RevokeAll) => Ok(Some(ChangePolicy::RevokeAll)),
            Err(_) => Err(format!("{name} is not a known policy")),
        }
    };
    Ok(TenantPolicy {
        max_active_app_passwords: cap,
        max_lifetime,
        default_idle_timeout,
        allowed_protocols,
        on_primary_change: ChangeOverrides {
            self_service_change: change("self_service_change", policy.self_service_change)?,
            admin_reset: change("admin_reset", policy.admin_reset)?,
            account_recovery: change("account_recovery", policy.account_recovery)?,
            second_factor_reset: change("second_factor_reset", policy.second_factor_reset)?,
        },
    })
}

pub fn parse_create_tenant(request: &CreateTenantRequest) -> Result<NewTenant, Status> {
    let Some(tenant) = &request.tenant else {
        return Checked::invalid("tenant", "is required").finish();
    };
    let (name, display_name, domains, policy) = all((
        check("tenant_id", parse_name(&request.tenant_id)),
        check(
            "tenant.display_name",
            parse_display_name(&tenant.display_name),
        ),
        check("tenant.domains", parse_domains(&tenant.domains)),
        check("tenant.policy", parse_policy(tenant.policy.as_ref())),
    ))
    .finish()?;
    Ok(NewTenant {
        name,
        display_name,
        domains,
        policy,
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
        Err("is required: display_name, domains and/or policy".to_owned())
    } else if paths.len() > MAX_MASK_PATHS {
        Err(format!("must name at most {MAX_MASK_PATHS} paths"))
    } else if let Some(unknown) = paths
        .iter()
        .find(|path| !matches!(path.as_str(), "display_name" | "domains" | "policy"))
    {
        Err(format!(
            "names {unknown:?}; only display_name, domains and policy can be updated"
        ))
    } else {
        Ok(paths)
    };
    let wants = |field: &str| paths.iter().any(|path| path == field);
    let (name, _, display_name, domains, policy) = all((
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
        check(
            "tenant.policy",
            wants("policy")
                .then(|| parse_policy(tenant.policy.as_ref()))
                .transpose(),
        ),
    ))
    .finish()?;
    Ok(TenantUpdate {
        name,
        change: TenantChange {
            display_name,
            domains,
            policy,
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
