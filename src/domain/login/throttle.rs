//! The throttle's rules: where failures are counted, and how counts turn
//! into blocks.
//!
//! Failures are counted in three scopes: the client's network (an IPv4
//! address, or an IPv6 /64, which one subscriber usually holds whole), the
//! account, and the pair of both. Past a scope's limit, attempts in that
//! scope are refused for a delay that doubles with every further failure, up
//! to a ceiling. Counters live in the database, so they survive restarts and
//! hold across replicas; what a replica remembers besides is in `memory`.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::shared::hex::lower_hex;
use crate::domain::shared::network::canonical_ip;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

/// Limits and delays; the defaults and their reasons are in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Failures from one client network, across all accounts.
    pub source_limit: u32,
    /// Failures for one account from one client network.
    pub pair_limit: u32,
    /// Failures for one account from all networks; NIST SP 800-63B §5.2.2
    /// allows at most 100 consecutive failures.
    pub account_limit: u32,
    /// The first block's length, in seconds; each further failure doubles it.
    pub base_delay_secs: u64,
    /// The longest block, in seconds.
    pub max_delay_secs: u64,
    /// A scope with no failure for this long starts counting from zero.
    pub window_secs: u64,
    /// How long a network stays a known source of an account after a
    /// successful sign-in from it, in days.
    pub known_source_days: u64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            source_limit: 30,
            pair_limit: 5,
            account_limit: 100,
            base_delay_secs: 30,
            max_delay_secs: 3600,
            window_secs: 86_400,
            known_source_days: 30,
        }
    }
}

/// Where failures are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeKind {
    Source,
    Pair,
    Account,
}

/// One counter's identity: its kind and a storage key derived from what it
/// counts (SHA-256, so usernames are not stored in clear).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub kind: ScopeKind,
    pub key: String,
}

impl Scope {
    fn new(kind: ScopeKind, parts: &[&str]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        let key = lower_hex(&hasher.finalize());
        Self { kind, key }
    }
}

/// The three scopes of one login.
#[derive(Debug, Clone)]
pub struct Scopes {
    pub source: Scope,
    pub pair: Scope,
    pub account: Scope,
}

impl Scopes {
    pub fn of(username: &Username, client: IpAddr) -> Self {
        let network = source_network(client).to_string();
        Self {
            source: Scope::new(ScopeKind::Source, &["source", &network]),
            pair: Scope::new(ScopeKind::Pair, &["pair", username.as_str(), &network]),
            account: Scope::new(ScopeKind::Account, &["account", username.as_str()]),
        }
    }

    pub fn all(&self) -> [&Scope; 3] {
        [&self.source, &self.pair, &self.account]
    }
}

/// IPv4 addresses count alone; IPv6 addresses by /64.
pub fn source_network(client: IpAddr) -> IpNet {
    match canonical_ip(client) {
        IpAddr::V4(v4) => IpNet::from(IpAddr::V4(v4)),
        IpAddr::V6(v6) => IpNet::new(IpAddr::V6(v6), 64)
            .map(|net| net.trunc())
            .unwrap_or_else(|_| IpNet::from(IpAddr::V6(v6))),
    }
}

/// A scope's counter as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub failures: u32,
    pub last_failure_at: Option<Timestamp>,
    pub blocked_until: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
}

/// The stored counters of one login's three scopes; a scope with no row
/// has the default (empty) counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeCounters {
    pub source: Counter,
    pub pair: Counter,
    pub account: Counter,
}

impl ScopeCounters {
    pub fn get(&self, kind: ScopeKind) -> Counter {
        match kind {
            ScopeKind::Source => self.source,
            ScopeKind::Pair => self.pair,
            ScopeKind::Account => self.account,
        }
    }
}

impl Scopes {
    pub fn get(&self, kind: ScopeKind) -> &Scope {
        match kind {
            ScopeKind::Source => &self.source,
            ScopeKind::Pair => &self.pair,
            ScopeKind::Account => &self.account,
        }
    }
}

/// How one scope's failures turn into blocks.
#[derive(Debug, Clone, Copy)]
pub struct FailureRule {
    pub limit: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub window: Duration,
}

impl FailureRule {
    /// The failures that still count at `now`: none once the last one is
    /// older than the window.
    pub fn current_failures(&self, counter: &Counter, now: Timestamp) -> u32 {
        let fresh = counter
            .last_failure_at
            .is_some_and(|at| now.since(at) < self.window);
        if fresh {
            counter.failures
        } else {
            0
        }
    }

    /// How many more guesses may be verified at `now` before this scope is
    /// blocked: up to the limit, and one at a time once a block has run
    /// out (its failure starts the next, longer block).
    pub fn room(&self, counter: &Counter, now: Timestamp) -> u32 {
        let failures = self.current_failures(counter, now);
        self.limit.saturating_sub(failures).max(1)
    }

    /// The counter after one more failure at `now`: counting restarts when
    /// the previous failure is older than the window, and from the limit on
    /// each failure doubles the block.
    pub fn after_failure(&self, counter: Counter, now: Timestamp) -> Counter {
        let failures = self.current_failures(&counter, now).saturating_add(1);
        let blocked_until = (failures >= self.limit).then(|| {
            let doublings = (failures - self.limit).min(30);
            let delay = self
                .base_delay
                .saturating_mul(1u32 << doublings)
                .min(self.max_delay);
            now.saturating_add(delay)
        });
        Counter {
            failures,
            last_failure_at: Some(now),
            blocked_until,
            last_success_at: counter.last_success_at,
        }
    }
}

impl ThrottleConfig {
    pub fn rule(&self, kind: ScopeKind) -> FailureRule {
        let limit = match kind {
            ScopeKind::Source => self.source_limit,
            ScopeKind::Pair => self.pair_limit,
            ScopeKind::Account => self.account_limit,
        };
        FailureRule {
            limit: limit.max(1),
            base_delay: Duration::from_secs(self.base_delay_secs),
            max_delay: Duration::from_secs(self.max_delay_secs.max(self.base_delay_secs)),
            window: Duration::from_secs(self.window_secs),
        }
    }

    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }

    pub fn known_source_for(&self) -> Duration {
        Duration::from_secs(self.known_source_days.saturating_mul(86_400))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    #[test]
    fn blocks_start_at_the_limit_and_double() {
        let rule = ThrottleConfig::default().rule(ScopeKind::Pair);
        let mut counter = Counter::default();
        for _ in 0..4 {
            counter = rule.after_failure(counter, at(100));
            assert_eq!(counter.blocked_until, None);
        }
        counter = rule.after_failure(counter, at(100));
        assert_eq!(counter.blocked_until, Some(at(130)));
        counter = rule.after_failure(counter, at(200));
        assert_eq!(counter.blocked_until, Some(at(260)));
        for _ in 0..20 {
            counter = rule.after_failure(counter, at(300));
        }
        assert_eq!(counter.blocked_until, Some(at(300 + 3600)), "capped");
        // A day later, counting starts over.
        counter = rule.after_failure(counter, at(300 + 86_400));
        assert_eq!((counter.failures, counter.blocked_until), (1, None));
    }

    #[test]
    fn ipv6_counts_by_64_and_ipv4_alone() {
        let a = Scopes::of(
            &Username::parse("u").unwrap(),
            "2001:db8:1:2::1".parse().unwrap(),
        );
        let b = Scopes::of(
            &Username::parse("u").unwrap(),
            "2001:db8:1:2:ffff::9".parse().unwrap(),
        );
        let c = Scopes::of(&Username::parse("u").unwrap(), "192.0.2.1".parse().unwrap());
        let d = Scopes::of(&Username::parse("u").unwrap(), "192.0.2.2".parse().unwrap());
        assert_eq!(a.source, b.source);
        assert_eq!(a.pair, b.pair);
        assert_ne!(c.source, d.source);
        assert_eq!(a.account, c.account);
    }
}
