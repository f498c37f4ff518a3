//! Tenants: the customers of one deployment. A tenant owns account
//! domains; a caller scoped to a tenant reaches only accounts of those
//! domains ([`model::Reach`]). Operators manage tenants and are never
//! scoped themselves.
//!
//! The rules, decided here and documented in the README ("Hosting many
//! domains"):
//! - an account's domain is the part of its (normalized) username after
//!   its `@`; a username without one, with nothing after it, or with
//!   several `@` (whose domain depends on who splits it) has no domain
//!   and belongs to no tenant: only deployment-wide callers reach it;
//! - a domain is matched exactly, never by suffix: a tenant owning
//!   `example.com` does not own `eu.example.com` unless it lists it too
//!   (hosting providers sell subdomains to different customers, and a
//!   suffix rule would hand one customer another's);
//! - a domain belongs to at most one tenant; moving it to another is its
//!   own call (MoveTenantDomain), audited, never a side effect of an update;
//! - a name outside the caller's tenant is refused with PERMISSION_DENIED
//!   (`OUTSIDE_TENANT`), decided from the name alone before anything is
//!   read, so the answer is the same whether the account exists or not.
//!   Authenticate is the exception: there an outsider's login is answered
//!   as an unknown user's is, at the same cost (`login::service`).

pub mod model;
pub mod service;
pub mod store;

pub use model::{Reach, Tenant};
pub use service::Tenants;
pub use store::TenantStore;
