//! App passwords as the rules and the API see them. None of these types
//! carries a secret or a hash: they are safe to log and to return.

use std::net::IpAddr;
use std::time::Duration;

use uuid::Uuid;

use crate::domain::secrets::format::Secret;
use crate::domain::shared::client::ClientName;
use crate::domain::shared::error::{Error, Reason};
use crate::domain::shared::network::AllowedNetworks;
use crate::domain::shared::protocol::{Protocol, ProtocolSet};
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPassword {
    pub id: Uuid,
    pub username: Username,
    pub display_name: String,
    pub protocols: ProtocolSet,
    pub allowed_networks: AllowedNetworks,
    pub issued_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_use: Option<LastUse>,
    pub use_count: i64,
    pub revoked: Option<Revocation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppPasswordState {
    Active,
    Expired,
    Revoked,
}

impl AppPassword {
    pub fn state(&self, now: Timestamp) -> AppPasswordState {
        if self.revoked.is_some() {
            AppPasswordState::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            AppPasswordState::Expired
        } else {
            AppPasswordState::Active
        }
    }

    /// Where this password sorts in a newest-first listing.
    pub fn cursor(&self) -> AppPasswordCursor {
        AppPasswordCursor {
            created_at: self.created_at,
            id: self.id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastUse {
    pub at: Timestamp,
    pub client_ip: Option<IpAddr>,
    pub protocol: Option<Protocol>,
    /// How the client identified itself, if it did.
    pub client: Option<ClientName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub at: Timestamp,
    pub reason: String,
}

/// A position in an account's newest-first list of app passwords: the page
/// after it starts with the next older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppPasswordCursor {
    pub created_at: Timestamp,
    pub id: Uuid,
}

#[derive(Debug, Clone, Copy)]
pub enum Expiry {
    At(Timestamp),
    After(Duration),
}

/// An issue request, already validated for shape at the edge.
#[derive(Debug)]
pub struct IssueRequest {
    pub username: Username,
    pub display_name: String,
    pub protocols: ProtocolSet,
    pub expiry: Option<Expiry>,
    pub allowed_networks: AllowedNetworks,
    pub issued_by: String,
}

/// A freshly issued password and its secret; the only value that ever holds
/// both.
#[derive(Debug)]
pub struct Issued {
    pub app_password: AppPassword,
    pub secret: Secret,
}

/// A new app password, hashed and ready to store.
#[derive(Debug)]
pub struct NewAppPassword {
    pub id: Uuid,
    pub username: Username,
    pub selector: String,
    /// The argon2id PHC string; never the secret.
    pub secret_hash: String,
    pub display_name: String,
    pub protocols: ProtocolSet,
    pub allowed_networks: AllowedNetworks,
    pub issued_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug)]
pub enum IssueOutcome {
    Issued(Box<AppPassword>),
    AccountDisabled,
    CapReached,
    /// The account already has a password with this selector (about one
    /// issue in 450,000 per existing password); draw a new secret.
    SelectorTaken,
}

/// The error for an app password that does not exist.
pub fn app_password_not_found(username: &Username, id: Uuid) -> Error {
    Error::NotFound {
        reason: Reason::AppPasswordNotFound,
        resource: format!("accounts/{username}/appPasswords/{id}"),
    }
}
