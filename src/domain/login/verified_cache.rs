//! Remembers which secret last verified for each app password, so that a
//! client reconnecting with the same secret skips argon2.
//!
//! Only a keyed digest is kept (HMAC-SHA256 under a key made at process
//! start and never stored), never the secret, with a TTL and a size bound.
//! The password's row is still read on every login and every refusal rule
//! still applies, so the cache only saves work and can never grant what
//! the database would deny; a wrong password never enters it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

use crate::domain::shared::span::as_unit::secs;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::domain::secrets::format::Secret;
use crate::domain::shared::error::Result;
use crate::domain::shared::random;
use crate::domain::shared::sync::lock;
use crate::domain::shared::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifiedCacheConfig {
    /// How long a verified secret is trusted without argon2, in seconds; 0
    /// turns the cache off.
    #[serde(rename = "ttl", alias = "ttl_secs", with = "secs")]
    pub ttl_secs: u64,
    /// At most this many app passwords are remembered.
    pub capacity: usize,
}

impl Default for VerifiedCacheConfig {
    fn default() -> Self {
        Self {
            ttl_secs: 300,
            capacity: 100_000,
        }
    }
}

pub struct VerifiedCache {
    config: VerifiedCacheConfig,
    key: [u8; 32],
    entries: Mutex<HashMap<Uuid, ([u8; 32], Timestamp)>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl VerifiedCache {
    /// Fails when the OS cannot supply the digest key.
    pub fn new(config: VerifiedCacheConfig) -> Result<Self> {
        Ok(Self {
            config,
            key: random::key()?,
            entries: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    fn digest(&self, id: Uuid, secret: &Secret) -> Option<[u8; 32]> {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.key).ok()?;
        mac.update(id.as_bytes());
        mac.update(secret.canonical());
        Some(mac.finalize().into_bytes().into())
    }

    /// Whether `secret` verified for `id` within the TTL.
    pub fn matches(&self, id: Uuid, secret: &Secret, now: Timestamp) -> bool {
        let Some(digest) = self.digest(id, secret) else {
            return false;
        };
        let entries = lock(&self.entries);
        let hit = entries
            .get(&id)
            .is_some_and(|(known, until)| *until > now && bool::from(known.ct_eq(&digest)));
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        hit
    }

    /// Lookups answered from the cache, and lookups that needed argon2,
    /// since start.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Records that `secret` verified for `id` at `now`.
    pub fn remember(&self, id: Uuid, secret: &Secret, now: Timestamp) {
        if self.config.ttl_secs == 0 || self.config.capacity == 0 {
            return;
        }
        let Some(digest) = self.digest(id, secret) else {
            return;
        };
        let until = now.saturating_add(Duration::from_secs(self.config.ttl_secs));
        let mut entries = lock(&self.entries);
        if entries.len() >= self.config.capacity && !entries.contains_key(&id) {
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.config.capacity {
                // Still full of live entries: drop an arbitrary one; it only
                // costs that password one argon2 verification later.
                if let Some(victim) = entries.keys().next().copied() {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(id, (digest, until));
    }

    pub fn forget(&self, id: Uuid) {
        lock(&self.entries).remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_verified_secret_matches_within_its_ttl() {
        let cache = VerifiedCache::new(VerifiedCacheConfig {
            ttl_secs: 60,
            capacity: 2,
        })
        .unwrap();
        let (id, secret, other) = (
            Uuid::now_v7(),
            Secret::generate().unwrap(),
            Secret::generate().unwrap(),
        );
        let t0 = Timestamp::from_millis(0);
        assert!(!cache.matches(id, &secret, t0));
        cache.remember(id, &secret, t0);
        assert!(cache.matches(id, &secret, Timestamp::from_millis(59_999)));
        assert!(!cache.matches(id, &other, t0));
        assert!(
            !cache.matches(Uuid::now_v7(), &secret, t0),
            "bound to its password"
        );
        assert!(
            !cache.matches(id, &secret, Timestamp::from_millis(60_000)),
            "expired"
        );
        for _ in 0..5 {
            cache.remember(Uuid::now_v7(), &Secret::generate().unwrap(), t0);
        }
        assert!(cache.entries.lock().unwrap().len() <= 2, "bounded");
        cache.remember(id, &secret, t0);
        cache.forget(id);
        assert!(!cache.matches(id, &secret, t0));
    }
}
