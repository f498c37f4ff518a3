//! What the domain knows about accounts and app passwords. None of these
//! types carries a secret or a hash: they are safe to log and to return.

use std::net::IpAddr;

use uuid::Uuid;

use super::clock::Timestamp;
use super::network::AllowedNetworks;
use super::protocol::{Protocol, ProtocolSet};
use super::username::Username;

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

/// One page of a listing; `more` says whether anything follows it.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}

impl<T> Page<T> {
    /// Builds a page from a query that fetched one row beyond `limit`, the
    /// cheapest way to learn whether another page exists.
    pub fn from_overfetch(mut items: Vec<T>, limit: u32) -> Self {
        let limit = limit as usize;
        let more = items.len() > limit;
        items.truncate(limit);
        Self { items, more }
    }
}
