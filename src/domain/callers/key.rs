//! Callers' bearer keys.
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
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::domain::shared::error::Result;
use crate::domain::shared::hex::lower_hex;
use crate::domain::shared::random;

pub const KEY_PREFIX: &str = "latchkey_";
const KEY_ID_LEN: usize = 12;
const KEY_ID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const KEY_SECRET_BYTES: usize = 32;
/// The longest key worth looking at; anything longer is not one of ours.
pub const KEY_MAX_BYTES: usize = 128;

/// A caller's bearer key. Wiped on drop; `Debug` shows only its public id.
#[derive(Clone)]
pub struct CallerKey(Zeroizing<String>);

impl CallerKey {
    /// Draws a new key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut key = Zeroizing::new(String::from(KEY_PREFIX));
        random::pick(KEY_ID_ALPHABET, KEY_ID_LEN, &mut key)?;
        key.push('_');
        let mut secret = Zeroizing::new([0u8; KEY_SECRET_BYTES]);
        random::fill(&mut secret[..])?;
        key.push_str(&URL_SAFE_NO_PAD.encode(&secret[..]));
        Ok(Self(key))
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
        let key = CallerKey::generate().unwrap();
        assert!(key.expose().starts_with(KEY_PREFIX));
        let parsed = CallerKey::parse(key.expose()).unwrap();
        assert_eq!(parsed.key_id(), key.key_id());
        assert!(parsed.matches(&key.digest()));
        assert!(!CallerKey::generate().unwrap().matches(&key.digest()));
        assert!(!format!("{key:?}").contains(&key.expose()[KEY_PREFIX.len() + 13..]));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let key = CallerKey::generate().unwrap();
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
}
