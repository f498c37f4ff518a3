//! The gRPC edge: thin handlers that validate and translate requests into
//! domain calls, and domain results into responses. `pb` (the generated
//! code) is the floor every file here imports; `routes` is the roof that
//! assembles the handlers.

pub mod access;
mod account_service;
mod app_password_service;
mod audit_service;
pub mod auth;
pub mod caller;
mod caller_service;
pub(crate) mod convert;
mod deadline;
mod gate;
mod leak_service;
mod legacy_auth_service;
pub(crate) mod names;
mod paging;
pub mod pb;
mod redact;
pub mod request_log;
mod requests;
mod routes;
pub mod status;
mod tenant_service;
mod tls_identity;
mod validate;

pub use account_service::AccountHandler;
pub use app_password_service::AppPasswordHandler;
pub use audit_service::AuditHandler;
pub use caller_service::CallerHandler;
pub use leak_service::LeakHandler;
pub use legacy_auth_service::LegacyAuthHandler;
pub use routes::{routes, MessageLimits, SERVICE_NAMES};
pub use tenant_service::TenantHandler;
