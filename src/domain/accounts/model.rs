//! Accounts as the rules and the API see them.

use crate::domain::shared::error::{Error, Reason};
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub username: Username,
    pub created_at: Timestamp,
    pub disabled: Option<Disablement>,
    /// Neither revoked nor expired, as of the time of the query.
    pub active_app_passwords: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disablement {
    pub at: Timestamp,
    pub reason: String,
}

/// The error for an account that does not exist.
pub fn account_not_found(username: &Username) -> Error {
    Error::NotFound {
        reason: Reason::AccountNotFound,
        resource: format!("accounts/{username}"),
    }
}
