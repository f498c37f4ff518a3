//! The gRPC edge: thin handlers that validate and translate requests into
//! domain calls, and domain results into responses.

pub mod access;
mod account_service;
mod app_password_service;
mod audit_service;
pub mod auth;
pub mod caller;
mod caller_service;
pub(crate) mod convert;
mod deadline;
mod legacy_auth_service;
pub(crate) mod names;
mod paging;
mod redact;
pub mod request_log;
pub mod status;
mod tls_identity;
mod validate;

use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::domain::accounts::AccountStore;
use crate::domain::app_passwords::AppPasswordStore;
use crate::domain::audit::AuditStore;
use crate::domain::callers::CallerStore;
use crate::domain::login::{LoginStore, ThrottleStore, UsageStore};
use crate::domain::Services;

pub use account_service::AccountHandler;
pub use app_password_service::AppPasswordHandler;
pub use audit_service::AuditHandler;
pub use caller_service::CallerHandler;
pub use legacy_auth_service::LegacyAuthHandler;

/// Code generated from `proto/latchkey/v1`.
pub mod pb {
    tonic::include_proto!("latchkey.v1");

    /// The compiled protos, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/latchkey_descriptor.bin"));
}

use access::ReflectionAccess;
use pb::account_service_server::AccountServiceServer;
use pb::app_password_service_server::AppPasswordServiceServer;
use pb::audit_service_server::AuditServiceServer;
use pb::caller_service_server::CallerServiceServer;
use pb::legacy_auth_service_server::LegacyAuthServiceServer;

/// Fully qualified names of latchkey's own services, as health checks and
/// reflection name them.
pub const SERVICE_NAMES: [&str; 5] = [
    "latchkey.v1.AppPasswordService",
    "latchkey.v1.LegacyAuthService",
    "latchkey.v1.AccountService",
    "latchkey.v1.CallerService",
    "latchkey.v1.AuditService",
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
/// when enabled, server reflection in both v1 and v1alpha (grpcurl 1.8 only
/// speaks v1alpha).
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
        + UsageStore,
{
    let Services {
        logins,
        app_passwords,
        accounts,
        callers,
        audit,
        feed,
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
        );
    if reflection != ReflectionAccess::Off {
        let configure = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc error details, so grpcurl can print BadRequest.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        routes = routes
            .add_service(
                configure()
                    .build_v1()?
                    .max_decoding_message_size(limits.probe),
            )
            .add_service(
                configure()
                    .build_v1alpha()?
                    .max_decoding_message_size(limits.probe),
            );
    }
    Ok((routes, health_reporter))
}
