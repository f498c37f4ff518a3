//! Who may call what: the one table every request is checked against.
//!
//! Every RPC is listed by its full path. A path that is not listed is
//! refused to everyone, so a new RPC cannot be reachable until someone
//! decides here who may call it (the integration tests compare this table
//! with the compiled protos).

use serde::{Deserialize, Serialize};

use crate::domain::audit::feed::EventView;
use crate::domain::audit::EventType;
use crate::domain::callers::model::Role;

/// What a request needs before it reaches a handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credential (health checks).
    Open,
    /// Server reflection: as configured.
    Reflection,
    /// An authenticated caller with one of these roles; a caller scoped
    /// to a tenant too, the handler admitting only accounts it reaches
    /// (`domain::tenants::Reach`).
    Roles(&'static [Role]),
    /// A deployment-wide caller with one of these roles: a caller scoped
    /// to a tenant is refused here, whatever its role (callers, tenants,
    /// accounts across domains, bulk changes, the whole audit trail).
    Deployment(&'static [Role]),
}

const ISSUERS: &[Role] = &[Role::Issuer, Role::Operator];
const AUTHENTICATORS: &[Role] = &[Role::Authenticator, Role::Operator];
const OPERATORS: &[Role] = &[Role::Operator];
/// Secret scanners, and operators.
const REPORTERS: &[Role] = &[Role::Reporter, Role::Operator];
/// The change feed: each role sees what [`watchable`] gives it.
const WATCHERS: &[Role] = &[Role::Authenticator, Role::Notifier, Role::Operator];

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
        Access::Deployment(OPERATORS),
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
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.AccountService/ListAccounts",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.AccountService/DisableAccount",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.AccountService/EnableAccount",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.AccountService/DeleteAccount",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.CallerService/CreateCaller",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.CallerService/ListCallers",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.CallerService/RevokeCaller",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.CallerService/RotateCallerKey",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.AuditService/ListAuditEvents",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.TenantService/CreateTenant",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.TenantService/GetTenant",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.TenantService/ListTenants",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.TenantService/UpdateTenant",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.TenantService/DeleteTenant",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.TenantService/MoveTenantDomain",
        Access::Deployment(OPERATORS),
    ),
    (
        "/latchkey.v1.AuditService/WatchEvents",
        Access::Roles(WATCHERS),
    ),
    // A report names passwords by their secrets alone, in any tenant: a
    // reporter is deployment-wide, as an operator is.
    (
        "/latchkey.v1.LeakService/ReportLeakedSecrets",
        Access::Deployment(REPORTERS),
    ),
    (
        "/latchkey.v1.LeakService/LookupAppPassword",
        Access::Deployment(OPERATORS),
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

/// The events that make a login result a proxy cached stale: what an
/// authenticator may watch, to flush its cache (docs/proxies.md). Not the
/// events a proxy has no use for and should not hold: issues, first uses
/// and new networks (where users sign in from), notices, blocks.
const CACHE_EVENTS: &[EventType] = &[
    EventType::AppPasswordRevoked,
    EventType::AccountAppPasswordsRevoked,
    EventType::AppPasswordsBulkRevoked,
    EventType::PrimaryCredentialChanged,
    EventType::AppPasswordUpdated,
    EventType::AppPasswordSuspended,
    EventType::AppPasswordResumed,
    EventType::AppPasswordExpired,
    EventType::AppPasswordIdleExpired,
    EventType::AccountDisabled,
    EventType::AccountEnabled,
    EventType::AccountDeleted,
];

/// Every event about users' app passwords and accounts: what a notifier
/// may watch, to tell users. Not latchkey's own callers.
const USER_EVENTS: &[EventType] = &[
    EventType::AppPasswordIssued,
    EventType::AppPasswordRevoked,
    EventType::AccountAppPasswordsRevoked,
    EventType::AppPasswordsBulkRevoked,
    EventType::PrimaryCredentialChanged,
    EventType::AppPasswordUpdated,
    EventType::AppPasswordSuspended,
    EventType::AppPasswordResumed,
    EventType::AppPasswordExpiringSoon,
    EventType::AppPasswordIdleExpiringSoon,
    EventType::AppPasswordExpired,
    EventType::AppPasswordIdleExpired,
    EventType::AppPasswordFirstUse,
    EventType::AppPasswordNewNetwork,
    EventType::AccountLoginBlocked,
    EventType::AccountDisabled,
    EventType::AccountEnabled,
    EventType::AccountDeleted,
];

/// Every event in the feed: what an operator may watch.
const FEED_EVENTS: [EventType; 25] = {
    let mut feed = [EventType::AppPasswordIssued; 25];
    let mut from = 0;
    let mut to = 0;
    while from < EventType::ALL.len() {
        if EventType::ALL[from].in_feed() {
            feed[to] = EventType::ALL[from];
            to += 1;
        }
        from += 1;
    }
    feed
};

/// What `role` may watch in the change feed (WatchEvents); empty for a
/// role the access table keeps away from it.
pub fn watchable(role: Role) -> &'static [EventType] {
    match role {
        Role::Authenticator => CACHE_EVENTS,
        Role::Notifier => USER_EVENTS,
        Role::Operator => &FEED_EVENTS,
        Role::Issuer | Role::Reporter => &[],
    }
}

/// How much of each event `role`'s change feed carries: what the role
/// needs of the events [`watchable`] gives it, and no more.
///
/// - authenticators (proxies) flush a cached login: which account and
///   which app password changed, the type and the time
///   ([`EventView::Target`]); not an issuer's free-text reasons, an
///   update's old and new settings (networks among them), client
///   addresses, counts or who did it;
/// - notifiers tell a user what happened to their credentials: what, why
///   (the reason given), from where (a new network's address and
///   protocol), how many, and by whom (the portal, the helpdesk,
///   housekeeping): [`EventView::Whole`];
/// - operators: everything.
pub fn watch_view(role: Role) -> EventView {
    match role {
        Role::Notifier | Role::Operator => EventView::Whole,
        Role::Authenticator | Role::Issuer | Role::Reporter => EventView::Target,
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_see_only_feed_events_and_operators_see_them_all() {
        let in_feed: Vec<EventType> = EventType::ALL.into_iter().filter(|t| t.in_feed()).collect();
        assert_eq!(
            FEED_EVENTS.to_vec(),
            in_feed,
            "FEED_EVENTS is every feed type, once"
        );
        for role in Role::ALL {
            for event_type in watchable(role) {
                assert!(
                    event_type.in_feed(),
                    "{role} may watch {event_type:?}, which is not in the feed"
                );
            }
        }
        for event_type in CACHE_EVENTS {
            assert!(
                USER_EVENTS.contains(event_type),
                "a notifier sees what a proxy sees: {event_type:?}"
            );
        }
        assert!(!USER_EVENTS.contains(&EventType::CallerCreated));
        assert!(!CACHE_EVENTS.contains(&EventType::AppPasswordNewNetwork));
    }
}
