//! Blocks this replica has seen, so a throttled attempt costs a map lookup
//! and no read, and the throttled attempts they refused, coalesced by the
//! block for the audit flush (a throttled attempt writes nothing of its
//! own: that is what keeps a flood cheap).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::domain::audit::event::{Actor, AuditEvent, EventType};
use crate::domain::login::model::FailureReason;
use crate::domain::login::throttle::{source_network, Scope, ScopeKey, ScopeKind};
use crate::domain::shared::protocol::Protocol;
use crate::domain::shared::sync::lock;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

/// Kinds of throttled attempt kept per flush, each written as one row;
/// attempts of further kinds are written as one summary row.
pub const THROTTLED_ROWS_PER_FLUSH: usize = 1_000;
/// Distinct client addresses told apart per kind of throttled attempt.
const THROTTLED_ADDRESSES_TOLD: usize = 64;

/// A throttled attempt, as it is audited.
#[derive(Debug, Clone, Copy)]
pub struct ThrottledAttempt<'a> {
    /// The scope whose block refused it.
    pub by: &'a Scope,
    /// The account, only when it exists.
    pub username: Option<&'a Username>,
    pub client_ip: IpAddr,
    pub protocol: Protocol,
    pub actor: &'a Actor,
}

/// A block found in memory.
#[derive(Debug, Clone, Copy)]
pub(super) struct Found<'a> {
    /// The latest end among the blocks that still run.
    pub until: Timestamp,
    /// A blocked pair among them is of an existing account (the audit trail
    /// names an account only then).
    pub account_exists: bool,
    /// The first blocked scope asked about: what the attempt is audited
    /// under.
    pub by: &'a Scope,
}

#[derive(Debug)]
pub(super) struct Blocks {
    /// Blocks kept at most; past it a new block is not remembered (it is
    /// then read from the database like any other).
    capacity: usize,
    /// Each block's end, and (for a pair's) whether its account exists.
    ends: Mutex<HashMap<ScopeKey, (Timestamp, bool)>>,
    throttled: Mutex<Throttled>,
}

/// What a coalesced throttled attempt is counted by: the block that
/// refused it (a network's, a pair's or an account's), the protocol and
/// the proxy. However many addresses of a blocked /64 an attacker uses,
/// their attempts are one row per flush.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ThrottledKey {
    scope: ScopeKey,
    protocol: Protocol,
    actor: Actor,
}

/// The attempts one block refused since the last flush.
#[derive(Debug)]
struct ThrottledCount {
    by: ScopeKind,
    /// The account, for a pair's or an account's block of an existing one.
    username: Option<Username>,
    /// The first address, then the other distinct ones, up to
    /// [`THROTTLED_ADDRESSES_TOLD`]; never empty.
    addresses: Vec<IpAddr>,
    attempts: u32,
}

/// Throttled attempts not yet audited.
#[derive(Debug, Default)]
struct Throttled {
    by_scope: HashMap<ThrottledKey, ThrottledCount>,
    /// Attempts of kinds past [`THROTTLED_ROWS_PER_FLUSH`]: their count and
    /// the proxy of the first (the summary row's actor).
    overflow: Option<(Actor, u64)>,
}

impl Blocks {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ends: Mutex::default(),
            throttled: Mutex::default(),
        }
    }

    /// Blocks remembered now, and kinds of throttled attempt waiting for
    /// the flush.
    pub(super) fn sizes(&self) -> (usize, usize) {
        let kinds = lock(&self.throttled).by_scope.len();
        (lock(&self.ends).len(), kinds)
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The blocks among `scopes` that still run at `now`.
    pub(super) fn find<'a>(&self, scopes: &[&'a Scope], now: Timestamp) -> Option<Found<'a>> {
        let ends = lock(&self.ends);
        let mut found: Option<Found<'a>> = None;
        for &scope in scopes {
            let Some(&(until, account_exists)) = ends.get(&scope.key) else {
                continue;
            };
            if until <= now {
                continue;
            }
            let known = account_exists && scope.kind == ScopeKind::Pair;
            found = Some(match found {
                None => Found {
                    until,
                    account_exists: known,
                    by: scope,
                },
                Some(first) => Found {
                    until: first.until.max(until),
                    account_exists: first.account_exists || known,
                    by: first.by,
                },
            });
        }
        found
    }

    /// `account_exists` matters for a pair's block only.
    pub(super) fn remember(
        &self,
        scope: &Scope,
        until: Timestamp,
        now: Timestamp,
        account_exists: bool,
    ) {
        let mut ends = lock(&self.ends);
        if ends.len() >= self.capacity && !ends.contains_key(&scope.key) {
            ends.retain(|_, (until, _)| *until > now);
            if ends.len() >= self.capacity {
                return;
            }
        }
        ends.insert(scope.key, (until, account_exists));
    }

    pub(super) fn forget(&self, scope: &Scope) {
        lock(&self.ends).remove(&scope.key);
    }

    /// Notes a throttled attempt, to be audited coalesced at the next
    /// flush by the block that refused it. At most
    /// [`THROTTLED_ROWS_PER_FLUSH`] kinds are kept; attempts of further
    /// kinds are counted into one summary row.
    pub(super) fn note(&self, attempt: ThrottledAttempt<'_>) {
        let key = ThrottledKey {
            scope: attempt.by.key,
            protocol: attempt.protocol,
            actor: attempt.actor.clone(),
        };
        let mut throttled = lock(&self.throttled);
        let kinds = throttled.by_scope.len();
        match throttled.by_scope.get_mut(&key) {
            Some(count) => {
                count.attempts = count.attempts.saturating_add(1);
                if count.addresses.len() < THROTTLED_ADDRESSES_TOLD
                    && !count.addresses.contains(&attempt.client_ip)
                {
                    count.addresses.push(attempt.client_ip);
                }
            }
            None if kinds < THROTTLED_ROWS_PER_FLUSH => {
                let username = match attempt.by.kind {
                    ScopeKind::Source => None,
                    ScopeKind::Pair | ScopeKind::Account => attempt.username.cloned(),
                };
                let count = ThrottledCount {
                    by: attempt.by.kind,
                    username,
                    addresses: vec![attempt.client_ip],
                    attempts: 1,
                };
                throttled.by_scope.insert(key, count);
            }
            None => {
                let (_, attempts) = throttled
                    .overflow
                    .get_or_insert_with(|| (attempt.actor.clone(), 0));
                *attempts = attempts.saturating_add(1);
            }
        }
    }

    /// One row per block that refused attempts since the last call, and
    /// one summary row for attempts past the bound.
    pub(super) fn take_events(&self, now: Timestamp) -> Vec<AuditEvent> {
        let throttled = std::mem::take(&mut *lock(&self.throttled));
        let mut events: Vec<AuditEvent> = throttled
            .by_scope
            .into_iter()
            .map(|(key, count)| throttled_event(key, count, now))
            .collect();
        if let Some((actor, attempts)) = throttled.overflow {
            let mut event = AuditEvent::new(EventType::AuthenticationFailed, now, &actor).detail(
                format!(
                    "{} ({attempts} attempts refused by further blocks, past the {THROTTLED_ROWS_PER_FLUSH} written one by one per flush)",
                    FailureReason::THROTTLED
                ),
            );
            event.item_count = Some(i64::try_from(attempts).unwrap_or(i64::MAX));
            events.push(event);
        }
        events
    }
}

/// The audit row of the attempts one block refused.
fn throttled_event(key: ThrottledKey, count: ThrottledCount, now: Timestamp) -> AuditEvent {
    let first_ip = count.addresses[0];
    let network = source_network(first_ip);
    let blocked = match count.by {
        ScopeKind::Source => format!("the network {network} is blocked"),
        ScopeKind::Pair => format!("this account from the network {network} is blocked"),
        ScopeKind::Account => "the account is blocked".to_owned(),
    };
    let addresses = match count.addresses.len() {
        n if n >= THROTTLED_ADDRESSES_TOLD => format!("{n} or more addresses"),
        1 => "1 address".to_owned(),
        n => format!("{n} addresses"),
    };
    let mut event =
        AuditEvent::new(EventType::AuthenticationFailed, now, &key.actor).detail(format!(
            "{} ({blocked}; {} attempts from {addresses})",
            FailureReason::THROTTLED,
            count.attempts
        ));
    event.username = count.username;
    event.client_ip = Some(first_ip);
    event.protocol = Some(key.protocol);
    event.item_count = Some(i64::from(count.attempts));
    event
}
