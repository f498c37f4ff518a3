//! Warm verifiers: one argon2 per device for the whole fleet, kept across
//! restarts.
//!
//! After a login succeeds, latchkey stores beside the password a verifier
//! of the secret: `v1:<key id>:<HMAC-SHA-256>` over the password's id, its
//! stored argon2 hash and the secret, under a key read from
//! `verified_cache.key_file`, which every replica is given and the
//! database never holds. A later login with that secret, on any replica
//! and after any restart, that would succeed is checked by recomputing the
//! HMAC (no argon2), until the verifier's window runs out.
//!
//! Why this keeps the promise that a database dump alone lets nobody check
//! a guess faster than argon2: the HMAC needs the key, which is not in the
//! database; without it a verifier is 32 random-looking bytes. With the
//! key too, the secrets carry 112.8 bits, which NIST SP 800-63B §5.1.2.2
//! deems enough for an approved one-way function alone. The window bounds
//! how long an active device's fast verifier exists.
//!
//! What holds it to the rules:
//! - the password's row is read on every login and every refusal rule is
//!   applied first: a verifier is consulted only for a login that would
//!   succeed (`decision::gate`'s `may_use_cache`), so revoking, suspending,
//!   disabling or rescoping is exact at once on every replica, and a login
//!   that would be refused costs its one argon2 like any other failure;
//! - it covers the stored hash: a re-hash or any new hash drops it;
//! - it is written only after a success, never for a wrong password, and
//!   only when there is none under this key or it is past half its window
//!   (at most two writes per device per window), coalesced with the usage
//!   flush: losing one costs one argon2 later, never correctness;
//! - one under another key id (a retired or unknown key) is ignored, and
//!   replaced at the device's next success.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::model::Warm;
use crate::domain::secrets::format::Secret;
use crate::domain::shared::hex::lower_hex;
use crate::domain::shared::time::Timestamp;

const VERSION: &str = "v1";

/// The key warm verifiers are made under, and its id (the first 8 bytes of
/// its SHA-256, in hex: it names the key, and tells nothing of it).
pub struct WarmKey {
    id: String,
    key: Zeroizing<Vec<u8>>,
    window: Duration,
}

impl std::fmt::Debug for WarmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmKey")
            .field("id", &self.id)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl WarmKey {
    /// A key from the bytes of its file; `Err` says why they will not do.
    pub fn new(material: &[u8], window: Duration) -> Result<Self, String> {
        crate::domain::shared::random::check_key_material(material)?;
        let digest = Sha256::digest(material);
        Ok(Self {
            id: lower_hex(&digest[..8]),
            key: Zeroizing::new(material.to_vec()),
            window,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self, app_password: Uuid, stored_hash: &str, secret: &Secret) -> Option<[u8; 32]> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).ok()?;
        mac.update(b"latchkey warm verifier v1\0");
        mac.update(app_password.as_bytes());
        mac.update(stored_hash.as_bytes());
        mac.update(b"\0");
        mac.update(secret.canonical());
        Some(mac.finalize().into_bytes().into())
    }

    /// The verifier of `secret` for the password `app_password` whose
    /// stored hash is `stored_hash`.
    fn verifier(&self, app_password: Uuid, stored_hash: &str, secret: &Secret) -> Option<String> {
        let mac = self.mac(app_password, stored_hash, secret)?;
        Some(format!("{VERSION}:{}:{}", self.id, lower_hex(&mac)))
    }

    /// Whether `warm`, as stored, stands for `secret` at `now`: made under
    /// this key, still in its window, for this very stored hash.
    pub fn matches(
        &self,
        warm: &Warm,
        app_password: Uuid,
        stored_hash: &str,
        secret: &Secret,
        now: Timestamp,
    ) -> bool {
        if warm.until <= now || !self.made_here(warm) {
            return false;
        }
        let Some(expected) = self.verifier(app_password, stored_hash, secret) else {
            return false;
        };
        bool::from(expected.as_bytes().ct_eq(warm.verifier.as_bytes()))
    }

    fn made_here(&self, warm: &Warm) -> bool {
        let mut parts = warm.verifier.splitn(3, ':');
        parts.next() == Some(VERSION) && parts.next() == Some(self.id.as_str())
    }

    /// The verifier to store after a success at `now`, if one is due: none
    /// stored for this secret and stored hash under this key (a re-hash, a
    /// rotated key), or the one stored is past half its window.
    pub fn due(
        &self,
        stored: Option<&Warm>,
        app_password: Uuid,
        stored_hash: &str,
        secret: &Secret,
        now: Timestamp,
    ) -> Option<Warm> {
        if self.window.is_zero() {
            return None;
        }
        let verifier = self.verifier(app_password, stored_hash, secret)?;
        let current = stored.is_some_and(|warm| {
            warm.until > now
                && warm.until.since(now) > self.window / 2
                && bool::from(warm.verifier.as_bytes().ct_eq(verifier.as_bytes()))
        });
        (!current).then(|| Warm {
            verifier,
            until: now.saturating_add(self.window),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(seconds: u64) -> Timestamp {
        Timestamp::from_millis(1_000_000_000_000).saturating_add(Duration::from_secs(seconds))
    }

    #[test]
    fn a_verifier_matches_only_its_secret_hash_key_and_window() {
        let key = WarmKey::new(&[7u8; 32], DAY).unwrap();
        let (id, secret) = (Uuid::now_v7(), Secret::generate().unwrap());
        let warm = key.due(None, id, "$argon2id$a", &secret, at(0)).unwrap();
        assert!(key.matches(&warm, id, "$argon2id$a", &secret, at(10)));
        let other = Secret::generate().unwrap();
        assert!(
            !key.matches(&warm, id, "$argon2id$a", &other, at(10)),
            "another secret"
        );
        assert!(
            !key.matches(&warm, id, "$argon2id$b", &secret, at(10)),
            "a re-hash"
        );
        assert!(!key.matches(&warm, Uuid::now_v7(), "$argon2id$a", &secret, at(10)));
        assert!(
            !key.matches(&warm, id, "$argon2id$a", &secret, at(86_400)),
            "past its window"
        );
        let dumped_elsewhere = WarmKey::new(&[8u8; 32], DAY).unwrap();
        assert!(
            !dumped_elsewhere.matches(&warm, id, "$argon2id$a", &secret, at(10)),
            "made under another key"
        );
        assert!(!format!("{key:?}").contains("7, 7"), "no key in Debug");
    }

    #[test]
    fn a_verifier_is_due_when_missing_foreign_or_past_half_its_window() {
        let key = WarmKey::new(&[7u8; 32], DAY).unwrap();
        let (id, secret) = (Uuid::now_v7(), Secret::generate().unwrap());
        let warm = key.due(None, id, "h", &secret, at(0)).unwrap();
        assert!(key.due(Some(&warm), id, "h", &secret, at(43_000)).is_none());
        assert!(key.due(Some(&warm), id, "h", &secret, at(43_201)).is_some());
        let retired = WarmKey::new(&[9u8; 32], DAY).unwrap();
        assert!(retired.due(Some(&warm), id, "h", &secret, at(1)).is_some());
        assert!(
            key.due(Some(&warm), id, "rehashed", &secret, at(1))
                .is_some(),
            "a new stored hash"
        );
        assert!(WarmKey::new(&[1u8; 31], DAY).is_err(), "too short");
    }
}
