//! Who may call what: the one table every request is checked against.
//!
//! Every RPC is listed by its full path. A path that is not listed is
//! refused to everyone, so a new RPC cannot be reachable until someone
//! decides here who may call it (the integration tests compare this table
//! with the compiled protos).

use serde::{Deserialize, Serialize};

use crate::domain::callers::model::Role;

/// What a request needs before it reaches a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credential (health checks).
    Open,
    /// Server reflection: as configured.
    Reflection,
    /// An authenticated caller with one of these roles.
    Roles(&'static [Role]),
}

const ISSUERS: &[Role] = &[Role::Issuer, Role::Operator];
const AUTHENTICATORS: &[Role] = &[Role::Authenticator, Role::Operator];
const OPERATORS: &[Role] = &[Role::Operator];

/// Every method latchkey serves, and who may call it.
pub const POLICY: &[(&str, Access)] = &[
    (
        "/latchkey.v1.AppPasswordService/IssueAppPassword",
        Access::Roles(ISSUERS),
    ),
    (
        "/latchkey.v1.AppPasswordService/ListAppPasswords",
        Access::Roles(ISSUERS),
    ),
    (
        "/latchkey.v1.AppPasswordService/GetAppPassword",
        Access::Roles(ISSUERS),
    ),
    (
        "/latchkey.v1.AppPasswordService/RevokeAppPassword",
        Access::Roles(ISSUERS),
    ),
    (
        "/latchkey.v1.AppPasswordService/RevokeAccountAppPasswords",
        Access::Roles(ISSUERS),
    ),
    (
        "/latchkey.v1.AppPasswordService/UpdateAppPassword",
        Access::Roles(ISSUERS),
    ),
    (
        "/latchkey.v1.AppPasswordService/SuspendAppPassword",
        Access::Roles(ISSUERS),
    ),
    (
        "/latchkey.v1.AppPasswordService/ResumeAppPassword",
        Access::Roles(ISSUERS),
    ),
    (
        "/latchkey.v1.AppPasswordService/ReportPrimaryCredentialChange",
        Access::Roles(ISSUERS),
    ),
    // Across all accounts: operators only.
    (
        "/latchkey.v1.AppPasswordService/BulkRevokeAppPasswords",
        Access::Roles(OPERATORS),
    ),
    (
        "/latchkey.v1.LegacyAuthService/Authenticate",
        Access::Roles(AUTHENTICATORS),
    ),
    // The helpdesk: operators, and issuers for their own users (checked in
    // `domain::login::explain`). Not authenticators: a proxy has no use for
    // another account's throttle state and failures.
    (
        "/latchkey.v1.LegacyAuthService/ExplainLogin",
        Access::Roles(ISSUERS),
    ),
    (
        "/latchkey.v1.AccountService/GetAccount",
        Access::Roles(OPERATORS),
    ),
    (
        "/latchkey.v1.AccountService/ListAccounts",
        Access::Roles(OPERATORS),
    ),
    (
        "/latchkey.v1.AccountService/DisableAccount",
        Access::Roles(OPERATORS),
    ),
    (
        "/latchkey.v1.AccountService/EnableAccount",
        Access::Roles(OPERATORS),
    ),
    (
        "/latchkey.v1.AccountService/DeleteAccount",
        Access::Roles(OPERATORS),
    ),
    (
        "/latchkey.v1.CallerService/CreateCaller",
        Access::Roles(OPERATORS),
    ),
    (
        "/latchkey.v1.CallerService/ListCallers",
        Access::Roles(OPERATORS),
    ),
    (
        "/latchkey.v1.CallerService/RevokeCaller",
        Access::Roles(OPERATORS),
    ),
    (
        "/latchkey.v1.AuditService/ListAuditEvents",
        Access::Roles(OPERATORS),
    ),
    ("/grpc.health.v1.Health/Check", Access::Open),
    ("/grpc.health.v1.Health/Watch", Access::Open),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Access::Reflection,
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Access::Reflection,
    ),
];

/// `None` for a path not in [`POLICY`]: refused.
pub fn access_for(path: &str) -> Option<Access> {
    entry(path).map(|&(_, access)| access)
}

/// The path as a `'static` name when it is a known method (for metrics
/// labels, which must come from a fixed set).
pub fn known_method(path: &str) -> Option<&'static str> {
    entry(path).map(|&(method, _)| method)
}

fn entry(path: &str) -> Option<&'static (&'static str, Access)> {
    POLICY.iter().find(|(method, _)| *method == path)
}

/// Who may use server reflection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReflectionAccess {
    /// Anyone who can reach the port: the API's shape is no secret.
    Open,
    /// Any authenticated caller, whatever its role.
    Authenticated,
    /// Not served.
    Off,
}
