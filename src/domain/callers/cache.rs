//! Callers recognised recently, so that a steady stream of requests from
//! one proxy does not read its caller row on every request.
//!
//! Every request names its caller, and reading the caller's row each time
//! was a third of a warm login's database round trips. The trade: a caller
//! revoked through this replica is refused here at once (its entries are
//! dropped), but another replica, or a server beside the CLI that revoked
//! it, refuses it only once its entry is older than the TTL (default one
//! second; 0 reads the row on every request). App passwords are never
//! cached this way: their revocation holds on every replica at once.
//!
//! An entry holds the caller's row as read (for a key, its stored SHA-256,
//! never the key), and a presented key is still compared with it in
//! constant time on every request. Only rows that exist are cached, so the
//! cache holds at most one entry per caller credential, however many made-up
//! keys arrive; it is bounded all the same.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::shared::span::as_unit::millis;

use super::model::Caller;
use crate::domain::shared::sync::lock;
use crate::domain::shared::time::Timestamp;
use crate::domain::tenants::model::Reach;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallerCacheConfig {
    /// How long a caller's row is trusted without reading it again, in
    /// milliseconds: the longest a caller revoked elsewhere goes on working
    /// on this replica. 0 turns the cache off.
    #[serde(rename = "ttl", alias = "ttl_ms", with = "millis")]
    pub ttl_ms: u64,
}

impl Default for CallerCacheConfig {
    fn default() -> Self {
        Self { ttl_ms: 1_000 }
    }
}

/// At most this many entries; far above any real number of callers.
const CAPACITY: usize = 4_096;

/// What a request presented, as the cache is keyed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredentialId {
    /// A bearer key's public id.
    KeyId(String),
    /// The identities of a TLS client certificate, in the order presented.
    Certificate(Vec<String>),
}

/// A caller's row as read: the caller, and for a key its stored digest.
#[derive(Debug, Clone)]
pub struct CachedCaller {
    pub caller: Caller,
    pub key_digest: Option<String>,
    /// For a rotated-out key: when it stops working.
    pub key_expires_at: Option<Timestamp>,
    /// What it reaches, as read with its row.
    pub reach: Reach,
}

#[derive(Debug)]
pub struct CallerCache {
    ttl: Duration,
    entries: Mutex<HashMap<CredentialId, (CachedCaller, Timestamp)>>,
}

impl CallerCache {
    pub fn new(config: CallerCacheConfig) -> Self {
        Self {
            ttl: Duration::from_millis(config.ttl_ms),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<CredentialId, (CachedCaller, Timestamp)>> {
        lock(&self.entries)
    }

    /// Read within the TTL; a clock moved back before the read makes an
    /// entry stale, never longer-lived.
    fn fresh(&self, read_at: Timestamp, now: Timestamp) -> bool {
        now.within(read_at, self.ttl)
    }

    /// The row read for `id` within the TTL, if any.
    pub fn get(&self, id: &CredentialId, now: Timestamp) -> Option<CachedCaller> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries();
        let (cached, read_at) = entries.get(id)?;
        self.fresh(*read_at, now).then(|| cached.clone())
    }

    /// Remembers the row read for `id` at `now`.
    pub fn put(&self, id: CredentialId, cached: CachedCaller, now: Timestamp) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= CAPACITY && !entries.contains_key(&id) {
            entries.retain(|_, (_, read_at)| self.fresh(*read_at, now));
            if entries.len() >= CAPACITY {
                return;
            }
        }
        entries.insert(id, (cached, now));
    }

    /// Notes that the caller's last use was recorded at `at`, so that the
    /// cached row does not make the next requests record it again.
    pub fn touched(&self, name: &str, at: Timestamp, from: Option<std::net::IpAddr>) {
        for (cached, _) in self.entries().values_mut() {
            if cached.caller.name == name {
                cached.caller.last_used_at = Some(at);
                cached.caller.last_used_ip = from.or(cached.caller.last_used_ip);
            }
        }
    }

    /// Forgets every entry of the caller, for a revocation on this replica.
    pub fn forget(&self, name: &str) {
        self.entries()
            .retain(|_, (cached, _)| cached.caller.name != name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::callers::model::Role;

    fn caller(name: &str) -> CachedCaller {
        CachedCaller {
            caller: Caller {
                name: name.to_owned(),
                role: Role::Authenticator,
                tls_identity: None,
                created_at: Timestamp::from_millis(0),
                created_by: "test".to_owned(),
                last_used_at: None,
                revoked_at: None,
                tenant: None,
                expires_at: None,
                allowed_networks: Default::default(),
                last_used_ip: None,
                previous_key_expires_at: None,
            },
            key_digest: Some("digest".to_owned()),
            key_expires_at: None,
            reach: Reach::Deployment,
        }
    }

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_millis(millis)
    }

    #[test]
    fn entries_live_for_the_ttl_only() {
        let cache = CallerCache::new(CallerCacheConfig { ttl_ms: 1_000 });
        let id = CredentialId::KeyId("k".to_owned());
        cache.put(id.clone(), caller("proxy"), at(10_000));
        assert!(cache.get(&id, at(10_999)).is_some());
        assert!(cache.get(&id, at(11_000)).is_none());
        // A clock moved backwards does not make an entry live longer.
        assert!(cache.get(&id, at(9_000)).is_none());
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        let cache = CallerCache::new(CallerCacheConfig { ttl_ms: 0 });
        let id = CredentialId::KeyId("k".to_owned());
        cache.put(id.clone(), caller("proxy"), at(0));
        assert!(cache.get(&id, at(0)).is_none());
    }

    #[test]
    fn forgetting_and_touching_apply_to_every_credential_of_the_caller() {
        let cache = CallerCache::new(CallerCacheConfig::default());
        let key = CredentialId::KeyId("k".to_owned());
        let cert = CredentialId::Certificate(vec!["proxy.internal".to_owned()]);
        let other = CredentialId::KeyId("o".to_owned());
        cache.put(key.clone(), caller("proxy"), at(0));
        cache.put(cert.clone(), caller("proxy"), at(0));
        cache.put(other.clone(), caller("other"), at(0));
        cache.touched("proxy", at(5), None);
        assert_eq!(
            cache.get(&cert, at(6)).unwrap().caller.last_used_at,
            Some(at(5))
        );
        cache.forget("proxy");
        assert!(cache.get(&key, at(6)).is_none());
        assert!(cache.get(&cert, at(6)).is_none());
        assert!(cache.get(&other, at(6)).is_some());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = CallerCache::new(CallerCacheConfig::default());
        for n in 0..CAPACITY + 10 {
            cache.put(CredentialId::KeyId(n.to_string()), caller("proxy"), at(0));
        }
        assert_eq!(cache.entries().len(), CAPACITY);
        // Once the old entries are stale, a new one makes room by dropping them.
        cache.put(
            CredentialId::KeyId("new".to_owned()),
            caller("proxy"),
            at(5_000),
        );
        assert_eq!(cache.entries().len(), 1);
    }
}
