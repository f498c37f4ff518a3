//! Access tokens and what they carry.

use std::fmt;
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::domain::app_passwords::model::AppPassword;
use crate::domain::shared::hex::lower_hex;
use crate::domain::shared::protocol::Protocol;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

/// What every token starts with, so a scanner, a log filter or a person
/// tells it from an app password (`lk…`) or a caller key (`latchkey_…`).
pub const PREFIX: &str = "lkat_";
/// The longest token: the prefix and the base64url of a nonce, the fixed
/// fields, a 64-byte client id and the tag. Longer text is no token.
pub const TOKEN_MAX_LEN: usize = 256;

/// An access token as handed to its client: a secret. Its `Debug` never
/// shows it, and its memory is wiped when dropped.
pub struct AccessToken(Zeroizing<String>);

impl AccessToken {
    pub(super) fn from_text(text: Zeroizing<String>) -> Self {
        Self(text)
    }

    /// The token, for the one answer that hands it out.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// What a token is bound to: the login that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub app_password_id: Uuid,
    pub protocol: Protocol,
    /// In canonical form.
    pub client_ip: IpAddr,
    /// The OAuth client (a caller's name) that asked.
    pub client_id: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// The login a token is issued for.
#[derive(Debug, Clone)]
pub struct Grant {
    pub app_password_id: Uuid,
    pub protocol: Protocol,
    pub client_ip: IpAddr,
    pub client_id: String,
}

/// The SHA-256 (hex) a revoked token is remembered by until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDigest(pub String);

impl TokenDigest {
    pub fn of(token: &str) -> Self {
        Self(lower_hex(&Sha256::digest(token.as_bytes())))
    }
}

/// A token's password and account as they are now.
#[derive(Debug, Clone)]
pub struct PasswordState {
    pub app_password: AppPassword,
    pub account_disabled: bool,
}

/// What an introspection answers (RFC 7662).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Introspection {
    Active {
        username: Username,
        claims: Claims,
    },
    /// Unknown, expired, revoked, or its login would no longer pass: the
    /// same answer for each (RFC 7662 §2.2 says no more).
    Inactive,
}
