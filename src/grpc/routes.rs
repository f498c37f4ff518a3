//! The roof of `grpc/`: every service the server answers, each handler
//! over its own domain service, with health checks and reflection.

use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::domain::accounts::AccountStore;
use crate::domain::app_passwords::AppPasswordStore;
use crate::domain::audit::AuditStore;
use crate::domain::callers::CallerStore;
use crate::domain::leaks::store::LeakStore;
use crate::domain::login::{LoginStore, ThrottleStore, UsageStore};
use crate::domain::shared::limits::LEAK_REPORT_MESSAGE_MAX_BYTES;
use crate::domain::tenants::TenantStore;
use crate::domain::Services;

use super::access::ReflectionAccess;
use super::gate::Gate;
use super::pb::account_service_server::AccountServiceServer;
use super::pb::app_password_service_server::AppPasswordServiceServer;
use super::pb::audit_service_server::AuditServiceServer;
use super::pb::caller_service_server::CallerServiceServer;
use super::pb::leak_service_server::LeakServiceServer;
use super::pb::legacy_auth_service_server::LegacyAuthServiceServer;
use super::pb::tenant_service_server::TenantServiceServer;
use super::pb::FILE_DESCRIPTOR_SET;
use super::{
    AccountHandler, AppPasswordHandler, AuditHandler, CallerHandler, LeakHandler,
    LegacyAuthHandler, TenantHandler,
};

/// Fully qualified names of latchkey's own services, as health checks and
/// reflection name them.
pub const SERVICE_NAMES: [&str; 7] = [
    "latchkey.v1.AppPasswordService",
    "latchkey.v1.LegacyAuthService",
    "latchkey.v1.AccountService",
    "latchkey.v1.CallerService",
    "latchkey.v1.AuditService",
    "latchkey.v1.TenantService",
    "latchkey.v1.LeakService",
];

/// The largest request message each kind of service accepts: a larger one
/// is refused from its length prefix, before any of it is buffered.
#[derive(Debug, Clone, Copy)]
pub struct MessageLimits {
    /// latchkey's own services.
    pub own: usize,
    /// Health checks and reflection, whose requests are tiny and which
    /// are open without a caller key.
    pub probe: usize,
}

/// Every service the server answers: latchkey's own, grpc.health.v1 and,
/// when enabled, server reflection.
pub async fn routes<S>(
    services: Services<S>,
    reflection: ReflectionAccess,
    limits: MessageLimits,
) -> Result<(Routes, tonic_health::server::HealthReporter), tonic_reflection::server::Error>
where
    S: AppPasswordStore
        + AccountStore
        + AuditStore
        + CallerStore
        + LoginStore
        + ThrottleStore
        + UsageStore
        + TenantStore
        + LeakStore,
{
    let Services {
        logins,
        app_passwords,
        accounts,
        callers,
        audit,
        feed,
        tenants,
        leaks,
        // The OAuth 2.0 door is HTTP only (`adapters::oauth2`).
        tokens: _,
    } = services;
    let max = limits.own;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let health_service = health_service.max_decoding_message_size(limits.probe);
    for service in SERVICE_NAMES {
        health_reporter
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }

    let mut routes = Routes::default()
        .add_service(health_service)
        .add_service(
            AppPasswordServiceServer::new(AppPasswordHandler::new(app_passwords))
                .max_decoding_message_size(max),
        )
        .add_service(
            LegacyAuthServiceServer::new(LegacyAuthHandler::new(logins))
                .max_decoding_message_size(max),
        )
        .add_service(
            AccountServiceServer::new(AccountHandler::new(accounts)).max_decoding_message_size(max),
        )
        .add_service(
            CallerServiceServer::new(CallerHandler::new(callers)).max_decoding_message_size(max),
        )
        .add_service(
            AuditServiceServer::new(AuditHandler::new(audit, feed)).max_decoding_message_size(max),
        )
        .add_service(
            TenantServiceServer::new(TenantHandler::new(tenants)).max_decoding_message_size(max),
        )
        .add_service({
            let at_once = leaks.requests_at_once();
            Gate::new(
                LeakServiceServer::new(LeakHandler::new(leaks))
                    .max_decoding_message_size(max.max(LEAK_REPORT_MESSAGE_MAX_BYTES)),
                at_once,
            )
        });
    if reflection != ReflectionAccess::Off {
        routes = with_reflection(routes, limits.probe)?;
    }
    Ok((routes, health_reporter))
}

/// `routes` and server reflection in both v1 and v1alpha (grpcurl 1.8 only
/// speaks v1alpha), over latchkey's protos, health's and google.rpc's.
fn with_reflection(
    routes: Routes,
    probe: usize,
) -> Result<Routes, tonic_reflection::server::Error> {
    let configure = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc error details, so grpcurl can print BadRequest.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    Ok(routes
        .add_service(configure().build_v1()?.max_decoding_message_size(probe))
        .add_service(
            configure()
                .build_v1alpha()?
                .max_decoding_message_size(probe),
        ))
}
