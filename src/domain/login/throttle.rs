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

use crate::domain::shared::span::as_unit::{days, secs};
use sha2::{Digest, Sha256};

use crate::domain::audit::event::{AuditEvent, EventType};
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
    #[serde(rename = "base_delay", alias = "base_delay_secs", with = "secs")]
    pub base_delay_secs: u64,
    /// The longest block, in seconds.
    #[serde(rename = "max_delay", alias = "max_delay_secs", with = "secs")]
    pub max_delay_secs: u64,
    /// A scope with no failure for this long starts counting from zero.
    #[serde(rename = "window", alias = "window_secs", with = "secs")]
    pub window_secs: u64,
    /// How long a network stays a known source of an account after a
    /// successful sign-in from it, in days.
    #[serde(rename = "known_source", alias = "known_source_days", with = "days")]
    pub known_source_days: u64,
    /// Recent wrong guesses each replica remembers, so repeats are not
    /// counted again (`login/memory/guesses.rs` says which it keeps when full),
    /// and blocks it remembers: about 0.6 KiB a guess and 0.2 KiB a block
    /// (README, "What failed logins leave behind").
    pub remembered_guesses: usize,
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
            remembered_guesses: 50_000,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope {
    pub kind: ScopeKind,
    pub key: ScopeKey,
}

impl Scope {
    fn new(kind: ScopeKind, parts: &[&str]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        Self {
            kind,
            key: ScopeKey::of(&hasher.finalize().into()),
        }
    }
}

/// A scope's storage key: the lowercase hex of a SHA-256, as stored, held
/// inline, so a login copies its keys (into the memory's maps, into its
/// read) without an allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeKey([u8; 64]);

/// All zeros: the key of no scope, for statements built without values.
impl Default for ScopeKey {
    fn default() -> Self {
        Self([b'0'; 64])
    }
}

impl ScopeKey {
    fn of(digest: &[u8; 32]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut key = [0u8; 64];
        for (i, byte) in digest.iter().enumerate() {
            key[2 * i] = HEX[usize::from(byte >> 4)];
            key[2 * i + 1] = HEX[usize::from(byte & 0xf)];
        }
        Self(key)
    }

    pub fn as_str(&self) -> &str {
        // Only ever hex digits, written by `of`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::ops::Deref for ScopeKey {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for ScopeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    /// The scopes of a login asked for by a caller of `door`'s tenant (a
    /// tenant's proxy), or (`None`) by a deployment-wide caller.
    pub fn of(username: &Username, client: IpAddr, door: Option<&str>) -> Self {
        let network = source_network(client).to_string();
        Self {
            source: Self::source(&network, door),
            pair: Scope::new(ScopeKind::Pair, &["pair", username.as_str(), &network]),
            account: Scope::new(ScopeKind::Account, &["account", username.as_str()]),
        }
    }

    /// The scopes of a login a tenant's proxy asked for an account outside
    /// its tenant (`domain::tenants`): its network counts as any of the
    /// tenant's, but its pair and account counters are the tenant's own,
    /// never the account's. Such guesses are throttled like any, and lock
    /// nobody of another tenant out.
    pub fn outside(tenant: &str, username: &Username, client: IpAddr) -> Self {
        let network = source_network(client).to_string();
        let name = username.as_str();
        Self {
            source: Self::source(&network, Some(tenant)),
            pair: Scope::new(
                ScopeKind::Pair,
                &["pair", "outside", tenant, name, &network],
            ),
            account: Scope::new(ScopeKind::Account, &["account", "outside", tenant, name]),
        }
    }

    /// A network's counter is one per front door's owner: a tenant's
    /// proxies count its failures apart from every other tenant's and from
    /// the deployment-wide proxies'. The client address is what a proxy
    /// reports, so a shared counter would let one tenant's proxy, or its
    /// users' guesses, block a network for every other tenant's users
    /// (say, a mobile carrier's NAT that they share).
    fn source(network: &str, door: Option<&str>) -> Scope {
        match door {
            None => Scope::new(ScopeKind::Source, &["source", network]),
            Some(tenant) => Scope::new(ScopeKind::Source, &["source", "tenant", tenant, network]),
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

impl Counter {
    /// Whether it refuses logins at `now`.
    pub fn blocks_at(&self, now: Timestamp) -> bool {
        self.blocked_until.is_some_and(|until| until > now)
    }
}

/// The event for a failure at `now` that started a block of its account:
/// the account scope's counter did not block at `now` before it (never
/// blocked, or the last block ran out) and does after it. Failures that
/// come while a block lasts (guesses already in flight) lengthen it and
/// start nothing. `None` for any other scope, and when no account by that
/// name exists (`failure`, its audit event, names the account only then):
/// a name nobody holds has no one to tell.
pub fn account_block_event(
    kind: ScopeKind,
    before: &Counter,
    after: &Counter,
    now: Timestamp,
    failure: &AuditEvent,
) -> Option<AuditEvent> {
    if kind != ScopeKind::Account || before.blocks_at(now) || !after.blocks_at(now) {
        return None;
    }
    let until = after.blocked_until?;
    let username = failure.username.as_ref()?;
    let mut event = AuditEvent::new(EventType::AccountLoginBlocked, now, &failure.by())
        .account(username)
        .detail(format!(
            "blocked until {} after {} failed logins",
            until.to_rfc3339(),
            after.failures
        ));
    event.client_ip = failure.client_ip;
    event.protocol = failure.protocol;
    Some(event)
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
    use crate::domain::audit::event::Actor;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    /// The keys are what is stored: the lowercase hex SHA-256 of the
    /// parts, each ended by a NUL, exactly as they have always been.
    #[test]
    fn scope_keys_are_the_stored_hex_sha256() {
        let alice = Username::parse("alice").unwrap();
        let scopes = Scopes::of(&alice, "2001:db8::1".parse().unwrap(), None);
        let hex = |parts: &[&str]| {
            let mut hasher = Sha256::new();
            for part in parts {
                hasher.update(part.as_bytes());
                hasher.update([0]);
            }
            crate::domain::shared::hex::lower_hex(&hasher.finalize())
        };
        assert_eq!(
            scopes.source.key.as_str(),
            hex(&["source", "2001:db8::/64"])
        );
        let pair = hex(&["pair", "alice", "2001:db8::/64"]);
        assert_eq!(scopes.pair.key.as_str(), pair);
        assert_eq!(scopes.account.key.as_str(), hex(&["account", "alice"]));
        assert_eq!(
            scopes.account.key.as_str(),
            "b825cadfc282f923ce84451138d526c06304208bd74638c55751e054b7f40dd8",
            "pinned: a new key format would orphan every stored counter"
        );
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
    fn an_account_block_is_announced_when_it_starts_and_again_after_it_ran_out() {
        let config = ThrottleConfig {
            account_limit: 3,
            ..ThrottleConfig::default()
        };
        let rule = config.rule(ScopeKind::Account);
        let ann = Username::parse("ann").unwrap();
        let failure = |now: Timestamp| {
            let mut event = AuditEvent::new(
                EventType::AuthenticationFailed,
                now,
                &Actor::system("proxy"),
            )
            .account(&ann)
            .detail("invalid_credentials");
            event.client_ip = Some("192.0.2.7".parse().unwrap());
            event
        };
        let mut counter = Counter::default();
        let mut announced = Vec::new();
        let mut fail = |counter: &mut Counter, now: Timestamp, kind: ScopeKind| {
            let after = rule.after_failure(*counter, now);
            announced.extend(account_block_event(
                kind,
                counter,
                &after,
                now,
                &failure(now),
            ));
            *counter = after;
        };
        for _ in 0..3 {
            fail(&mut counter, at(100), ScopeKind::Account);
        }
        // A failure in flight while the block lasts lengthens it, quietly.
        fail(&mut counter, at(110), ScopeKind::Account);
        // Once it ran out, the next failure starts another block.
        fail(&mut counter, at(200), ScopeKind::Account);
        // Other scopes never announce.
        let mut pair = Counter::default();
        for _ in 0..10 {
            fail(&mut pair, at(100), ScopeKind::Pair);
        }
        assert_eq!(announced.len(), 2, "{announced:?}");
        let first = &announced[0];
        assert_eq!(first.event_type, EventType::AccountLoginBlocked);
        assert_eq!(first.username, Some(ann.clone()));
        assert_eq!((first.at, first.actor.as_str()), (at(100), "proxy"));
        assert_eq!(first.client_ip, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(
            first.detail,
            "blocked until 1970-01-01T00:02:10Z after 3 failed logins"
        );
        assert_eq!(
            announced[1].detail,
            "blocked until 1970-01-01T00:05:20Z after 5 failed logins"
        );

        // An account nobody holds: its failures name no account.
        let mut unknown = Counter::default();
        for _ in 0..3 {
            let after = rule.after_failure(unknown, at(100));
            let mut anonymous = failure(at(100));
            anonymous.username = None;
            assert_eq!(
                account_block_event(ScopeKind::Account, &unknown, &after, at(100), &anonymous),
                None
            );
            unknown = after;
        }
        assert!(unknown.blocks_at(at(100)));
    }

    #[test]
    fn ipv6_counts_by_64_and_ipv4_alone() {
        let a = Scopes::of(
            &Username::parse("u").unwrap(),
            "2001:db8:1:2::1".parse().unwrap(),
            None,
        );
        let b = Scopes::of(
            &Username::parse("u").unwrap(),
            "2001:db8:1:2:ffff::9".parse().unwrap(),
            None,
        );
        let c = Scopes::of(
            &Username::parse("u").unwrap(),
            "192.0.2.1".parse().unwrap(),
            None,
        );
        let d = Scopes::of(
            &Username::parse("u").unwrap(),
            "192.0.2.2".parse().unwrap(),
            None,
        );
        assert_eq!(a.source, b.source);
        assert_eq!(a.pair, b.pair);
        assert_ne!(c.source, d.source);
        assert_eq!(a.account, c.account);
    }

    #[test]
    fn a_network_counts_apart_for_each_tenants_doors() {
        let alice = Username::parse("alice@a.test").unwrap();
        let ip = "192.0.2.1".parse().unwrap();
        let deployment = Scopes::of(&alice, ip, None);
        let a = Scopes::of(&alice, ip, Some("a"));
        let b = Scopes::outside("b", &alice, ip);
        let sources = [deployment.source, a.source, b.source];
        for (i, one) in sources.iter().enumerate() {
            for other in &sources[i + 1..] {
                assert_ne!(one, other);
            }
        }
        // The account's own counters are the same whoever's door it came
        // through (and never touched from outside its tenant).
        assert_eq!((deployment.pair, deployment.account), (a.pair, a.account));
        assert_ne!(a.account, b.account);
        // An outsider's failures through B's doors count where B's own do.
        let b_own = Scopes::of(&Username::parse("bob@b.test").unwrap(), ip, Some("b"));
        assert_eq!(b.source, b_own.source);
    }
}
