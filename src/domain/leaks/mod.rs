//! Leaked secrets (issue 26): a report of secrets found where they should
//! not be revokes the real, active ones with reason `LEAKED`; an operator
//! can ask which password a secret is, with no username. Both name a
//! password by the public id inside a version 2 secret
//! (`secrets::format`), and both run exactly one argon2 per secret that
//! passes its check, whatever it turns out to be, so neither's cost says
//! which secrets were real.

pub mod bounds;
pub mod input;
pub mod service;
pub mod store;

pub use service::{Found, Leaks, LeaksConfig, Receipt};
