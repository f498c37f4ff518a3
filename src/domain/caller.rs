//! Callers of latchkey itself, their roles and their bearer keys.
//!
//! A key looks like `latchkey_k7q2m4x9a3bd_Yc3…`: the fixed prefix lets
//! secret scanners recognise a leaked key, the middle part (60 bits, stored
//! in clear) finds the caller's row, and the last part carries 256 random
//! bits. Only the key's SHA-256 is stored: for a random 256-bit secret a
//! fast hash is as strong as a slow one, and keys are checked on every
//! request.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::{Rng, TryRngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::clock::Timestamp;
use super::hex::lower_hex;

pub const KEY_PREFIX: &str = "latchkey_";
const KEY_ID_LEN: usize = 12;
const KEY_ID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const KEY_SECRET_BYTES: usize = 32;
/// The longest key worth looking at; anything longer is not one of ours.
pub const KEY_MAX_BYTES: usize = 128;
pub const NAME_MAX_CHARS: usize = 64;
pub const TLS_IDENTITY_MAX_BYTES: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Manages app passwords of any account.
    Issuer,
    /// Verifies logins, and nothing else.
    Authenticator,
    /// Everything.
    Operator,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Issuer, Role::Authenticator, Role::Operator];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Issuer => "issuer",
            Role::Authenticator => "authenticator",
            Role::Operator => "operator",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == value)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub tls_identity: Option<String>,
    pub created_at: Timestamp,
    pub created_by: String,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// A caller name: 1 to 64 of `a-z 0-9 . _ -`, so it is safe in resource
/// names, log lines and shell commands alike.
pub fn parse_name(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("is required".to_owned());
    }
    if raw.len() > NAME_MAX_CHARS {
        return Err(format!("must be at most {NAME_MAX_CHARS} characters"));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may contain only a-z, 0-9, '.', '_' and '-'".to_owned());
    }
    Ok(raw.to_owned())
}

/// A TLS identity: what a client certificate's subject CN or SAN must equal.
pub fn parse_tls_identity(raw: &str) -> Result<Option<String>, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.len() > TLS_IDENTITY_MAX_BYTES {
        return Err(format!("must be at most {TLS_IDENTITY_MAX_BYTES} bytes"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(Some(trimmed.to_owned()))
}

/// A caller's bearer key. Wiped on drop; `Debug` shows only its public id.
#[derive(Clone)]
pub struct CallerKey(Zeroizing<String>);

impl CallerKey {
    pub fn generate() -> Self {
        let mut rng = OsRng.unwrap_err();
        let mut key = Zeroizing::new(String::from(KEY_PREFIX));
        for _ in 0..KEY_ID_LEN {
            key.push(char::from(
                KEY_ID_ALPHABET[rng.random_range(0..KEY_ID_ALPHABET.len())],
            ));
        }
        key.push('_');
        let mut secret = Zeroizing::new([0u8; KEY_SECRET_BYTES]);
        rng.fill(&mut secret[..]);
        key.push_str(&URL_SAFE_NO_PAD.encode(&secret[..]));
        Self(key)
    }

    /// Reads a presented key; `None` if it is not shaped like one.
    pub fn parse(presented: &str) -> Option<Self> {
        if presented.len() > KEY_MAX_BYTES {
            return None;
        }
        let rest = presented.strip_prefix(KEY_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let id_ok = id.len() == KEY_ID_LEN && id.bytes().all(|b| KEY_ID_ALPHABET.contains(&b));
        let secret_ok = URL_SAFE_NO_PAD
            .decode(secret)
            .is_ok_and(|bytes| bytes.len() == KEY_SECRET_BYTES);
        (id_ok && secret_ok).then(|| Self(Zeroizing::new(presented.to_owned())))
    }

    /// The public part that finds the caller's row.
    pub fn key_id(&self) -> &str {
        &self.0[KEY_PREFIX.len()..KEY_PREFIX.len() + KEY_ID_LEN]
    }

    /// What is stored: the key's SHA-256, hex-encoded.
    pub fn digest(&self) -> String {
        lower_hex(&Sha256::digest(self.0.as_bytes()))
    }

    /// Compares against a stored digest in constant time.
    pub fn matches(&self, stored_digest: &str) -> bool {
        self.digest()
            .as_bytes()
            .ct_eq(stored_digest.as_bytes())
            .into()
    }

    /// The key itself, for the one response that hands it out.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CallerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallerKey({}…)", self.key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back_and_match_their_digest_only() {
        let key = CallerKey::generate();
        assert!(key.expose().starts_with(KEY_PREFIX));
        let parsed = CallerKey::parse(key.expose()).unwrap();
        assert_eq!(parsed.key_id(), key.key_id());
        assert!(parsed.matches(&key.digest()));
        assert!(!CallerKey::generate().matches(&key.digest()));
        assert!(!format!("{key:?}").contains(&key.expose()[KEY_PREFIX.len() + 13..]));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let key = CallerKey::generate();
        for bad in [
            "",
            "Bearer x",
            &key.expose()[1..],
            &key.expose()[..key.expose().len() - 1],
            &format!("{}x", key.expose()),
            &key.expose().replace(KEY_PREFIX, "latchkey_A"),
        ] {
            assert!(CallerKey::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn names_and_roles() {
        assert!(parse_name("imap-proxy.eu_1").is_ok());
        for bad in ["", "Imap", "a b", "a/b", &"a".repeat(65)] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
