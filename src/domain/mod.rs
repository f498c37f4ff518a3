//! The rules of latchkey: issuing, verifying, reviewing and revoking app
//! passwords, and managing accounts. Time, randomness and storage come in
//! from outside; nothing here knows about gRPC or SQL.

pub mod accounts;
pub mod app_passwords;
pub mod audit;
pub mod audit_trail;
pub mod authenticate;
pub mod caller;
pub mod caller_cache;
pub mod callers;
pub mod clock;
pub mod error;
pub mod hash_pool;
pub mod hashing;
pub mod hex;
pub mod limits;
pub mod model;
pub mod network;
pub mod protocol;
pub mod secret;
pub mod store;
pub mod throttle;
pub mod usage;
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
    pub caller_cache: caller_cache::CallerCacheConfig,
    pub verified_cache: verified_cache::VerifiedCacheConfig,
    pub usage: usage_buffer::UsageConfig,
}

/// Counters and gauges of the domain's moving parts, read on demand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// argon2 verifications run since start, dummy ones included.
    pub argon2_verifications: u64,
    pub hash_pool_workers: usize,
    /// Verifications waiting for a hashing thread.
    pub hash_pool_queued: usize,
    /// Hashing threads running a job.
    pub hash_pool_busy: usize,
    /// Verified-secret cache lookups that skipped argon2, and that did not.
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// App passwords whose usage waits for the next flush.
    pub usage_pending: usize,
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
    callers: caller_cache::CallerCache,
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
                callers: caller_cache::CallerCache::new(policy.caller_cache),
                verified: verified_cache::VerifiedCache::new(policy.verified_cache),
                usage: usage_buffer::UsageBuffer::new(policy.usage),
            }),
        }
    }

    /// What the server is doing, for metrics and tests.
    pub fn stats(&self) -> Stats {
        let pool = self.inner.hasher.pool();
        let (cache_hits, cache_misses) = self.inner.verified.hits_and_misses();
        Stats {
            argon2_verifications: self.inner.hasher.verifications(),
            hash_pool_workers: pool.workers(),
            hash_pool_queued: pool.queued(),
            hash_pool_busy: pool.busy(),
            cache_hits,
            cache_misses,
            usage_pending: self.inner.usage.len(),
        }
    }

    fn store(&self) -> &S {
        &self.inner.store
    }

    fn now(&self) -> clock::Timestamp {
        self.inner.clock.now()
    }
}
