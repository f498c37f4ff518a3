//! App passwords: issued with a generated secret that is returned once and
//! stored only as an argon2id hash; named, scoped to protocols and client
//! networks, optionally expiring, at most a configured number active per
//! account (checked atomically with the insert) and a bounded number issued
//! per account and per caller in time (`issue_bounds`); reviewable; revocable one
//! by one or all at once, durably before the call returns. Whether a login
//! may use one is decided in `login`, from the row read at every login.
//!
//! `model::Rules` is the one copy of the rules that decide whether a
//! password may sign in (revoked, expired, idle, suspended, protocol,
//! network): Authenticate, ExplainLogin, listings and the checks of updates
//! and housekeeping all use it. Every change of one password goes through
//! `AppPasswordStore::change_app_password`: the store locks the row, the
//! service's plan decides on the row as it is, and the change and its
//! audit event commit together. Housekeeping's notices (`model::NoticeWindow`:
//! expired, expiring soon, idle expiring soon) read candidates in id order
//! and write each once, by a compare-and-set on its notice column in its
//! event's transaction.

pub mod issue_bounds;
pub mod model;
pub mod service;
pub mod store;

pub use model::{AppPassword, AppPasswordCursor, AppPasswordState, Expiry, IssueRequest, Issued};
pub use service::AppPasswords;
pub use store::AppPasswordStore;
