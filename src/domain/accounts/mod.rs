//! Accounts: an account comes into being with its first app password;
//! operators can look at it, disable it (every app password of it stops
//! working at once, nothing is deleted), enable it again, and delete it
//! with all its app passwords. The audit trail keeps what happened.

pub mod model;
pub mod service;
pub mod store;

pub use model::{Account, Disablement};
pub use service::Accounts;
pub use store::AccountStore;
