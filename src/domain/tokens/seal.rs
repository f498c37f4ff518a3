//! Sealed tokens: what a token is bound to, encrypted and authenticated
//! (AES-256-GCM) under a key every replica shares, so that any replica
//! reads a token another issued, and nothing is written when one is
//! issued.
//!
//! The key comes from `oauth2.key_file` (at least 32 random bytes, the
//! same on every replica), through SHA-256 with a label of its own, so the
//! same file could never serve as another key of latchkey's by accident.
//! Unset, each process draws its own at start: tokens are then read only
//! by the replica that issued them, and until it restarts (a line at
//! start says so). Each token has a fresh random 96-bit nonce. Random
//! nonces must stay well under 2³² seals per key, where a repeat becomes
//! likely (and with it, forged tags): that is about 500 days of 100
//! successful OAuth logins a second across all replicas, 50 days at 1,000.
//! Rotate the key file well within that (tokens live minutes, so a
//! rotation ends at most one lifetime of them; Dovecot never notices).
//! Introspection also refuses a token whose lifetime or issue time this
//! code would never seal (`service.rs::plausible`), which bounds what a
//! forgery could claim.

use std::net::{IpAddr, Ipv6Addr};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::model::{AccessToken, Claims, PREFIX, TOKEN_MAX_LEN};
use crate::domain::shared::error::{Error, Result};
use crate::domain::shared::protocol::Protocol;
use crate::domain::shared::random;
use crate::domain::shared::time::Timestamp;

const LABEL: &[u8] = b"latchkey oauth2 access token key v1\0";
const AAD: &[u8] = b"latchkey oauth2 access token v1";
const VERSION: u8 = 1;
/// Version, issued, expires, password, protocol, client address.
const FIXED_LEN: usize = 1 + 8 + 8 + 16 + 1 + 16;

/// The key tokens are sealed and opened with. No `Debug`.
pub struct TokenKey {
    key: LessSafeKey,
    /// The first 8 bytes of the key's SHA-256, hex: which key, for logs.
    id: String,
}

impl TokenKey {
    /// The key of a key file's `material`.
    pub fn from_material(material: &[u8]) -> std::result::Result<Self, String> {
        random::check_key_material(material)?;
        let mut hasher = Sha256::new();
        hasher.update(LABEL);
        hasher.update(material);
        let derived = Zeroizing::new(<[u8; 32]>::from(hasher.finalize()));
        Self::from_key(&derived).map_err(|_| "cannot be used as a key".to_owned())
    }

    /// A key of this process alone, from the operating system's CSPRNG.
    pub fn random() -> Result<Self> {
        let key = Zeroizing::new(random::key()?);
        Self::from_key(&key).map_err(|_| Error::internal("an AES key could not be made"))
    }

    fn from_key(key: &[u8; 32]) -> std::result::Result<Self, ring::error::Unspecified> {
        let id = crate::domain::shared::hex::lower_hex(&Sha256::digest(key)[..8]);
        Ok(Self {
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key)?),
            id,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// A token carrying `claims`.
    pub fn seal(&self, claims: &Claims) -> Result<AccessToken> {
        let mut nonce = [0u8; NONCE_LEN];
        random::fill(&mut nonce)?;
        let mut sealed = Zeroizing::new(Vec::with_capacity(
            NONCE_LEN + FIXED_LEN + claims.client_id.len() + AES_256_GCM.tag_len(),
        ));
        sealed.extend_from_slice(&nonce);
        sealed.push(VERSION);
        sealed.extend_from_slice(&claims.issued_at.as_millis().to_be_bytes());
        sealed.extend_from_slice(&claims.expires_at.as_millis().to_be_bytes());
        sealed.extend_from_slice(claims.app_password_id.as_bytes());
        sealed.push(u8::try_from(claims.protocol.code()).unwrap_or(u8::MAX));
        let ip = match claims.client_ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        sealed.extend_from_slice(&ip.octets());
        sealed.extend_from_slice(claims.client_id.as_bytes());
        let mut body = sealed.split_off(NONCE_LEN);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut body,
            )
            .map_err(|_| Error::internal("a token could not be sealed"))?;
        sealed.extend_from_slice(&body);
        let mut text = Zeroizing::new(String::with_capacity(TOKEN_MAX_LEN));
        text.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&sealed[..], &mut text);
        Ok(AccessToken::from_text(text))
    }

    /// What `presented` carries, if it is a token sealed with this key and
    /// untouched; `None` for anything else.
    pub fn open(&self, presented: &str) -> Option<Claims> {
        if presented.len() > TOKEN_MAX_LEN {
            return None;
        }
        let encoded = presented.strip_prefix(PREFIX)?;
        let mut sealed = Zeroizing::new(URL_SAFE_NO_PAD.decode(encoded).ok()?);
        if sealed.len() < NONCE_LEN + FIXED_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN]).ok()?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(AAD), &mut sealed[NONCE_LEN..])
            .ok()?;
        let (fixed, client_id) = plain.split_at(FIXED_LEN);
        if fixed[0] != VERSION {
            return None;
        }
        let millis = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&fixed[at..at + 8]);
            Timestamp::from_millis(i64::from_be_bytes(bytes))
        };
        let mut id = [0u8; 16];
        id.copy_from_slice(&fixed[17..33]);
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&fixed[34..50]);
        let ip = Ipv6Addr::from(ip);
        Some(Claims {
            issued_at: millis(1),
            expires_at: millis(9),
            app_password_id: Uuid::from_bytes(id),
            protocol: Protocol::from_code(i32::from(fixed[33]))?,
            client_ip: ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4),
            client_id: String::from_utf8(client_id.to_vec()).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(ip: &str) -> Claims {
        Claims {
            app_password_id: Uuid::from_u128(7),
            protocol: Protocol::Imap,
            client_ip: ip.parse().unwrap(),
            client_id: "dovecot".to_owned(),
            issued_at: Timestamp::from_millis(1_000),
            expires_at: Timestamp::from_millis(301_000),
        }
    }

    #[test]
    fn a_sealed_token_opens_with_its_key_only_and_untouched() {
        let key = TokenKey::from_material(&[7u8; 32]).unwrap();
        for ip in ["192.0.2.7", "2001:db8::1"] {
            let token = key.seal(&claims(ip)).unwrap();
            assert!(token.expose().starts_with(PREFIX));
            assert!(token.expose().len() <= TOKEN_MAX_LEN);
            assert_eq!(key.open(token.expose()), Some(claims(ip)));
            let same = TokenKey::from_material(&[7u8; 32]).unwrap();
            assert_eq!(
                same.open(token.expose()),
                Some(claims(ip)),
                "another replica"
            );
            let other = TokenKey::from_material(&[8u8; 32]).unwrap();
            assert_eq!(other.open(token.expose()), None, "another key");
            // Any one character changed: nothing.
            let text = token.expose();
            for at in PREFIX.len()..text.len() {
                let mut changed = text.to_owned().into_bytes();
                changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
                let changed = String::from_utf8(changed).unwrap();
                if changed != text {
                    assert_eq!(key.open(&changed), None, "changed at {at}");
                }
            }
        }
        let a = key.seal(&claims("192.0.2.7")).unwrap();
        let b = key.seal(&claims("192.0.2.7")).unwrap();
        assert_ne!(a.expose(), b.expose(), "a fresh nonce each");
        assert_eq!(key.open("lkat_"), None);
        assert_eq!(key.open(&"a".repeat(500)), None);
        assert!(TokenKey::from_material(&[1u8; 31]).is_err());
    }
}
