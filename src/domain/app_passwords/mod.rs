//! App passwords: issued with a generated secret that is returned once and
//! stored only as an argon2id hash; named, scoped to protocols and client
//! networks, optionally expiring, at most a configured number active per
//! account (checked atomically with the insert) and a bounded number issued
//! per account and per caller in time (`issue_bounds`); reviewable; revocable one
//! by one or all at once, durably before the call returns. Whether a login
//! may use one is decided in `login`, from the row read at every login.

pub mod issue_bounds;
pub mod model;
pub mod service;
pub mod store;

pub use model::{AppPassword, AppPasswordCursor, AppPasswordState, Expiry, IssueRequest, Issued};
pub use service::AppPasswords;
pub use store::AppPasswordStore;
