//! latchkey's own callers: who may call it and in which role. A caller is
//! recognised by a bearer key (only its SHA-256 is stored; compared in
//! constant time on every request) or by the identity in a verified TLS
//! client certificate. A role bounds what a caller may call (the table is
//! `grpc::access`): a proxy that verifies logins cannot issue passwords.
//! A caller's row is cached for a short TTL; a revocation through this
//! replica holds here at once, on other replicas within the TTL.

pub mod cache;
pub mod key;
pub mod model;
pub mod service;
pub mod store;

pub use cache::CallerCacheConfig;
pub use key::CallerKey;
pub use model::{Caller, Role};
pub use service::Callers;
pub use store::CallerStore;
