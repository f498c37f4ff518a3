//! Access tokens and what is known of them.

use std::fmt;
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::domain::app_passwords::model::AppPassword;
use crate::domain::shared::error::Result;
use crate::domain::shared::hex::lower_hex;
use crate::domain::shared::protocol::Protocol;
use crate::domain::shared::random;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

/// What every token starts with, so a scanner, a log filter or a person
/// tells it from an app password (`lk…`) at a glance.
pub const PREFIX: &str = "lkat_";
/// Random bytes in a token: 256 bits.
const RANDOM_BYTES: usize = 32;
/// A token's length: the prefix and 43 characters of unpadded base64url.
pub const TOKEN_LEN: usize = PREFIX.len() + 43;

/// An access token as handed to its client: a secret. Its `Debug` never
/// shows it, and its memory is wiped when dropped.
pub struct AccessToken(Zeroizing<String>);

impl AccessToken {
    /// A fresh token from the operating system's CSPRNG.
    pub fn generate() -> Result<Self> {
        use base64::Engine as _;
        let mut bytes = Zeroizing::new([0u8; RANDOM_BYTES]);
        random::fill(bytes.as_mut())?;
        let mut text = Zeroizing::new(String::with_capacity(TOKEN_LEN));
        text.push_str(PREFIX);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes.as_ref(), &mut text);
        Ok(Self(text))
    }

    /// The token, for the one answer that hands it out.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> TokenDigest {
        TokenDigest::of(&self.0)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// The SHA-256 (hex) a token is stored and found by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDigest(pub String);

impl TokenDigest {
    fn of(token: &str) -> Self {
        Self(lower_hex(&Sha256::digest(token.as_bytes())))
    }

    /// The digest of text a client sent as a token, when it could be one
    /// of ours: anything else is no token, answered without a read.
    pub fn of_presented(text: &str) -> Option<Self> {
        let rest = text.strip_prefix(PREFIX)?;
        let shaped = text.len() == TOKEN_LEN
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        shaped.then(|| Self::of(text))
    }
}

/// The login a token is issued for.
#[derive(Debug, Clone)]
pub struct Grant {
    pub app_password_id: Uuid,
    pub username: Username,
    pub protocol: Protocol,
    pub client_ip: IpAddr,
    /// The OAuth client (a caller's name) that asked.
    pub client_id: String,
}

/// A token as stored: its digest and what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub digest: TokenDigest,
    pub app_password_id: Uuid,
    pub protocol: Protocol,
    pub client_ip: IpAddr,
    pub client_id: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A stored token with its password and account as they are now.
#[derive(Debug, Clone)]
pub struct TokenState {
    pub token: StoredToken,
    pub app_password: AppPassword,
    pub account_disabled: bool,
}

/// What an introspection answers (RFC 7662).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Introspection {
    Active {
        username: Username,
        protocol: Protocol,
        client_id: String,
        client_ip: IpAddr,
        issued_at: Timestamp,
        expires_at: Timestamp,
    },
    /// Unknown, expired, revoked, or its login would no longer pass: the
    /// same answer for each (RFC 7662 §2.2 says no more).
    Inactive,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_shaped_and_found_by_their_digest_only() {
        let token = AccessToken::generate().unwrap();
        assert_eq!(token.expose().len(), TOKEN_LEN);
        assert!(token.expose().starts_with(PREFIX));
        assert_eq!(
            TokenDigest::of_presented(token.expose()),
            Some(token.digest())
        );
        assert_ne!(
            AccessToken::generate().unwrap().digest(),
            token.digest(),
            "two draws differ"
        );
        assert!(!format!("{token:?}").contains(&token.expose()[PREFIX.len()..]));
        for not_ours in [
            "",
            "lkat_",
            &token.expose()[..TOKEN_LEN - 1],
            &format!("{}a", token.expose()),
            &token.expose().replace("lkat_", "lkxx_"),
            &format!("lkat_{}", "a".repeat(42) + "+"),
        ] {
            assert_eq!(TokenDigest::of_presented(not_ours), None, "{not_ours}");
        }
    }
}
