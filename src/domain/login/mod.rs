//! Legacy logins: the decision Authenticate (and every proxy adapter)
//! makes for a username, a typed password, a protocol and a client address.
//!
//! The rules it owns:
//! - at most one argon2 verification per login: the selector inside the
//!   secret finds the one stored candidate; without one, a dummy hash costs
//!   the same (`decision`, `service`);
//! - the order of refusals, and that every refusal and failure costs and
//!   counts like a wrong password (`decision`);
//! - throttling per source network, account and pair, with a known-source
//!   exemption from the account's block and stale-device repeats counted
//!   once (`throttle` for the rules, `memory` for what a replica keeps);
//! - the verified-secret cache, consulted only for a login that would
//!   succeed (`verified_cache`);
//! - recording use, coalesced off the request path, with first-use and
//!   new-network events written at once (`usage`).

pub mod decision;
pub mod explain;
pub mod memory;
pub mod model;
pub mod service;
pub mod store;
pub mod throttle;
pub mod usage;
pub mod verified_cache;
pub mod warm;

pub use model::{FailureReason, LoginAttempt, LoginOutcome, TypedPassword};
pub use service::{LoginConfig, Logins, Stats};
pub use store::{LoginStore, ThrottleStore, UsageStore};
pub use throttle::ThrottleConfig;
pub use usage::UsageConfig;
pub use verified_cache::VerifiedCacheConfig;
