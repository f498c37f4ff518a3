//! The rules of latchkey, grouped by capability. Time, randomness and
//! storage come in from outside; nothing here knows about gRPC, HTTP or SQL.
//!
//! Each capability is a folder with the same shape: `model` (its values),
//! `store` (the storage traits it needs, implemented in `crate::store`),
//! `service` (the operations, generic over only those traits), and the
//! machinery it alone uses. The tree says where a rule lives:
//!
//! - `shared`: time and ids, the error type, usernames, networks,
//!   protocols, input bounds, pages, locking and randomness;
//! - `secrets`: the secret format, argon2id hashing, the hashing pool;
//! - `login`: the login decision, throttling, the verified-secret cache,
//!   usage recording;
//! - `app_passwords`: issuing, reviewing, revoking;
//! - `accounts`: disabling, enabling, deleting;
//! - `callers`: latchkey's own callers, their keys, roles and cache;
//! - `audit`: the audit trail's vocabulary, reading and retention;
//! - `tenants`: tenants, the domains they own, and what a scoped caller
//!   reaches;
//! - `leaks`: reports of leaked secrets, and lookup by secret;
//! - `tokens`: OAuth 2.0 access tokens, each bound to the login that
//!   made it;
//! - `webhooks`: the change feed pushed to configured targets, signed.
//!
//! Imports run one way: `shared` imports nothing else here; `secrets` and
//! `audit` import `shared`; the capabilities import those and, where a rule
//! spans two (issuing checks the account), each other's `model` and
//! `store`, never a `service`. No file imports a file that imports it.

pub mod accounts;
pub mod app_passwords;
pub mod audit;
pub mod callers;
pub mod leaks;
pub mod login;
pub mod secrets;
pub mod shared;
pub mod tenants;
pub mod tokens;
pub mod webhooks;

/// One service per capability, as `app` wires them: each gRPC handler is
/// given only its own, so the Authenticate handler holds `Logins` and
/// cannot reach an account deletion. Each is cheap to clone.
#[derive(Clone)]
pub struct Services<S> {
    pub logins: login::Logins<S>,
    pub app_passwords: app_passwords::AppPasswords<S>,
    pub accounts: accounts::Accounts<S>,
    pub callers: callers::Callers<S>,
    pub audit: audit::AuditTrail<S>,
    /// The change feed (WatchEvents).
    pub feed: audit::EventFeed<S>,
    pub tenants: tenants::Tenants<S>,
    pub leaks: leaks::Leaks<S>,
    /// OAuth 2.0 access tokens (the adapters' `/oauth2/*`).
    pub tokens: tokens::AccessTokens<S>,
}
