//! The rules of latchkey: issuing, verifying, reviewing and revoking app
//! passwords, and managing accounts. Time, randomness and storage come in
//! from outside; nothing here knows about gRPC or SQL.

pub mod accounts;
pub mod app_passwords;
pub mod audit;
pub mod audit_trail;
pub mod authenticate;
pub mod caller;
pub mod callers;
pub mod clock;
pub mod error;
pub mod hash_pool;
pub mod hashing;
pub mod limits;
pub mod model;
pub mod network;
pub mod protocol;
pub mod secret;
pub mod store;
pub mod throttle;
pub mod usage_buffer;
pub mod username;
pub mod verified_cache;

use std::sync::Arc;

use clock::Clock;
use hashing::Hasher;

/// Limits an operator sets.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Active (unrevoked, unexpired) app passwords one account may hold.
    pub max_active_per_account: u32,
    pub throttle: throttle::ThrottleConfig,
    pub verified_cache: verified_cache::VerifiedCacheConfig,
    pub usage: usage_buffer::UsageConfig,
}

/// The domain's entry point; cheap to clone, shared by every handler.
pub struct Latchkey<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    store: S,
    hasher: Hasher,
    clock: Arc<dyn Clock>,
    policy: Policy,
    throttle: throttle::Throttle,
    verified: verified_cache::VerifiedCache,
    usage: usage_buffer::UsageBuffer,
}

impl<S> Clone for Latchkey<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: store::Store> Latchkey<S> {
    pub fn new(store: S, hasher: Hasher, clock: Arc<dyn Clock>, policy: Policy) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                hasher,
                clock,
                policy,
                throttle: throttle::Throttle::new(policy.throttle),
                verified: verified_cache::VerifiedCache::new(policy.verified_cache),
                usage: usage_buffer::UsageBuffer::new(policy.usage),
            }),
        }
    }

    /// argon2 verifications run since start (what the verified-secret
    /// cache saves shows here).
    pub fn argon2_verifications(&self) -> u64 {
        self.inner.hasher.verifications()
    }

    /// Verifications waiting for a hashing thread.
    pub fn hash_pool_queued(&self) -> usize {
        self.inner.hasher.pool().queued()
    }

    fn store(&self) -> &S {
        &self.inner.store
    }

    fn now(&self) -> clock::Timestamp {
        self.inner.clock.now()
    }
}
