//! What one replica remembers about logins, besides the counters in the
//! database:
//!
//! - **blocks** it has seen, so a throttled attempt costs a map lookup and
//!   no read;
//! - **recent wrong guesses**, by a keyed digest of the pair (account and
//!   source network), the exact client address, the protocol and the typed
//!   password, with the result of verifying it against the candidate's
//!   stored hash (a digest of that hash, and whether it matched). A guess
//!   made again within the throttle's window is decided on the state read
//!   now and the remembered result, so it costs a read but no argon2, is
//!   never counted twice (a stale device repeating an old password does
//!   not escalate its owner's block), and writes no row of its own: repeats
//!   are audited coalesced, one event with a count per guess, by the
//!   periodic flush. Because the state is read every time, a change such as
//!   re-enabling an account holds for a repeated guess at once; only a new
//!   stored hash (a new password with the same selector, a re-hash) makes
//!   the guess verified again. The digests are HMAC-SHA256 under a key made
//!   at start from the OS CSPRNG and never stored; the server does not
//!   start without one;
//! - **guesses in flight**: a login that goes on to argon2 holds a place in
//!   each of its scopes until it is decided, so however many arrive at once,
//!   no more reach argon2 than the scope's limit allows; the others wait for
//!   a place. An identical guess in flight holds a place of its own with
//!   room for one, so a burst of the same guess runs argon2 once and the
//!   rest are answered from memory.
//!
//! Every map is bounded. When the guesses are full, `guesses` decides
//! what gives way (guesses for unknown accounts first, each network within
//! its share); when the blocks are full, a new block is not remembered
//! (it is then read from the database like any other); throttled attempts
//! past their bound are summed into one audit row.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

use super::guesses::{GuessLimits, Guesses};
use super::model::FailureReason;
use super::throttle::{source_network, Scope, ScopeKind};
use crate::domain::audit::event::{AuditEvent, EventType};
use crate::domain::shared::error::{Error, Result};
use crate::domain::shared::protocol::Protocol;
use crate::domain::shared::random;
use crate::domain::shared::sync::lock;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

/// Blocks kept at most.
const MEMORY_ENTRIES: usize = 100_000;

pub use super::guesses::{Counted, GuessDigest, HashPrint, NewGuess};

/// What this replica remembers of a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recall {
    /// Not seen within the window: verify it and count it.
    New,
    /// Seen within the window, against another stored hash: verify it
    /// again, but do not count it again.
    Reverify,
    /// Seen within the window against this very hash: this is the result
    /// of verifying it; do not count it again.
    Known { matched: bool },
}

impl Recall {
    /// Whether the guess was counted within the window already.
    pub fn counted(self) -> bool {
        self != Recall::New
    }
}

/// Kinds of throttled attempt kept per flush, each written as one row;
/// attempts of further kinds are written as one summary row.
pub const THROTTLED_ROWS_PER_FLUSH: usize = 1_000;
/// Distinct client addresses told apart per kind of throttled attempt.
const THROTTLED_ADDRESSES_TOLD: usize = 64;

/// What a coalesced throttled attempt is counted by: the block that
/// refused it (a network's, a pair's or an account's), the protocol and
/// the proxy. However many addresses of a blocked /64 an attacker uses,
/// their attempts are one row per flush.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ThrottledKey {
    scope: String,
    protocol: Protocol,
    actor: String,
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

/// A throttled attempt, as it is audited.
#[derive(Debug, Clone, Copy)]
pub struct ThrottledAttempt<'a> {
    /// The scope whose block refused it.
    pub by: &'a Scope,
    /// The account, only when it exists.
    pub username: Option<&'a Username>,
    pub client_ip: IpAddr,
    pub protocol: Protocol,
    pub actor: &'a str,
}

/// Throttled attempts not yet audited.
#[derive(Debug, Default)]
struct Throttled {
    by_scope: HashMap<ThrottledKey, ThrottledCount>,
    /// Attempts of kinds past [`THROTTLED_ROWS_PER_FLUSH`]: their count and
    /// the proxy of the first (the summary row's actor).
    overflow: Option<(String, u64)>,
}

pub struct ThrottleMemory {
    /// How long a guess is remembered and not counted again: the
    /// throttle's window.
    window: Duration,
    /// HMAC-SHA256 keyed with a key from the OS CSPRNG, cloned per digest.
    guess_mac: Hmac<Sha256>,
    /// Each block's end, and (for a pair's) whether its account exists.
    blocks: Mutex<HashMap<String, (Timestamp, bool)>>,
    guesses: Mutex<Guesses>,
    /// Throttled attempts not yet audited, coalesced by the block that
    /// refused them.
    throttled: Mutex<Throttled>,
    flights: Arc<Flights>,
}

impl std::fmt::Debug for ThrottleMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottleMemory")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl ThrottleMemory {
    /// Fails when the OS cannot supply the digest key. `remembered`: how
    /// many wrong guesses it keeps at most (`guesses` says which, when full).
    pub fn new(window: Duration, remembered: usize) -> Result<Self> {
        Ok(Self {
            window,
            guess_mac: <Hmac<Sha256> as Mac>::new_from_slice(&random::key()?).map_err(|error| {
                Error::internal(format!("cannot key the guess digest: {error}"))
            })?,
            blocks: Mutex::new(HashMap::new()),
            guesses: Mutex::new(Guesses::new(GuessLimits::of(remembered))),
            throttled: Mutex::new(Throttled::default()),
            flights: Arc::new(Flights::default()),
        })
    }

    /// The latest block among `scopes` that this replica knows of and that
    /// still runs at `now`, whether the account of a blocked pair among
    /// them is known to exist (for the audit trail, which names an account
    /// only then), and the first of `scopes` that is blocked (what the
    /// attempt is audited under).
    pub fn cached_block<'a>(
        &self,
        scopes: &[&'a Scope],
        now: Timestamp,
    ) -> Option<(Timestamp, bool, &'a Scope)> {
        let blocks = lock(&self.blocks);
        let mut latest: Option<(Timestamp, bool, &'a Scope)> = None;
        for &scope in scopes {
            if let Some(&(until, account_exists)) = blocks.get(&scope.key) {
                if until > now {
                    let known = account_exists && scope.kind == ScopeKind::Pair;
                    let (at, was_known, by) = latest.unwrap_or((until, false, scope));
                    latest = Some((at.max(until), was_known || known, by));
                }
            }
        }
        latest
    }

    /// `account_exists` matters for a pair's block only.
    pub fn remember_block(
        &self,
        scope: &Scope,
        until: Timestamp,
        now: Timestamp,
        account_exists: bool,
    ) {
        let mut blocks = lock(&self.blocks);
        if blocks.len() >= MEMORY_ENTRIES && !blocks.contains_key(&scope.key) {
            blocks.retain(|_, (until, _)| *until > now);
            if blocks.len() >= MEMORY_ENTRIES {
                return;
            }
        }
        blocks.insert(scope.key.clone(), (until, account_exists));
    }

    /// Notes a throttled attempt, to be audited coalesced at the next
    /// flush by the block that refused it (a throttled attempt writes
    /// nothing of its own: that is what keeps a flood cheap). At most
    /// [`THROTTLED_ROWS_PER_FLUSH`] kinds are kept; attempts of further
    /// kinds are counted into one summary row.
    pub fn note_throttled(&self, attempt: ThrottledAttempt<'_>) {
        let key = ThrottledKey {
            scope: attempt.by.key.clone(),
            protocol: attempt.protocol,
            actor: attempt.actor.to_owned(),
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
                throttled.by_scope.insert(
                    key,
                    ThrottledCount {
                        by: attempt.by.kind,
                        username,
                        addresses: vec![attempt.client_ip],
                        attempts: 1,
                    },
                );
            }
            None => {
                let (_, attempts) = throttled
                    .overflow
                    .get_or_insert_with(|| (attempt.actor.to_owned(), 0));
                *attempts = attempts.saturating_add(1);
            }
        }
    }

    pub fn forget_block(&self, scope: &Scope) {
        lock(&self.blocks).remove(&scope.key);
    }

    /// The digest of one guess.
    pub fn digest(
        &self,
        pair: &Scope,
        client_ip: IpAddr,
        protocol: Protocol,
        typed: &str,
    ) -> GuessDigest {
        let mut mac = self.guess_mac.clone();
        mac.update(pair.key.as_bytes());
        mac.update(&[0]);
        mac.update(client_ip.to_string().as_bytes());
        mac.update(&[0]);
        mac.update(protocol.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(typed.as_bytes());
        GuessDigest::from_bytes(mac.finalize().into_bytes().into())
    }

    /// What this replica remembers of a guess at `now`, given the stored
    /// hash of the candidate read now.
    pub fn recall(
        &self,
        pair: &Scope,
        digest: &GuessDigest,
        candidate: HashPrint,
        now: Timestamp,
    ) -> Recall {
        let guesses = lock(&self.guesses);
        match guesses.find(&pair.key, digest) {
            Some(guess) if now.within(guess.counted_at, self.window) => {
                if guess.verified_against == candidate {
                    Recall::Known {
                        matched: guess.matched,
                    }
                } else {
                    Recall::Reverify
                }
            }
            _ => Recall::New,
        }
    }

    /// Remembers a wrong guess that was just decided: the hash it was
    /// verified against and whether it matched. `counted`: it was counted
    /// now; otherwise it is a repeat, which joins the guess's coalesced
    /// count instead of a row of its own. A new guess is kept if the
    /// memory's rules find it room (`guesses`).
    pub fn remember_guess(&self, pair: &Scope, guess: NewGuess, counted: Counted, now: Timestamp) {
        lock(&self.guesses).remember(&pair.key, guess, counted, now, self.window);
    }

    /// The coalesced audit events of repeats not yet written: one per
    /// guess repeated since the last call, with the number of repeats as
    /// its item count. Guesses past the window are forgotten here.
    pub fn take_repeats(&self, now: Timestamp) -> Vec<AuditEvent> {
        let throttled = std::mem::take(&mut *lock(&self.throttled));
        let mut events = lock(&self.guesses).take_repeats(now, self.window);
        events.extend(throttled_events(throttled, now));
        events
    }

    /// Puts back events whose write failed, to be tried at the next flush.
    pub fn put_back_repeats(&self, events: Vec<AuditEvent>) {
        lock(&self.guesses).put_back(events);
    }

    /// Guesses remembered now, for tests and metrics.
    pub fn remembered_guesses(&self) -> usize {
        lock(&self.guesses).remembered()
    }

    /// Starts watching a login's scopes (and its own guess) before its
    /// state is read: from here on, failures this replica counts in them
    /// are taken off the room that read computes, since the read may have
    /// missed them.
    pub fn watch(&self, scopes: &[&Scope], digest: &GuessDigest) -> Watch {
        let mut keys: Vec<String> = scopes.iter().map(|scope| scope.key.clone()).collect();
        keys.push(digest.flight_key());
        self.flights.watch(keys)
    }

    /// Takes a place for a guess in each watched scope, given the room
    /// the read left in each (in the order watched); its own guess has room
    /// for one, so an identical guess waits for this one's answer.
    pub fn reserve(&self, watch: &Watch, room: &[u32]) -> Reserve {
        self.flights.reserve(watch, room)
    }

    /// Notes that a guess was counted in `scopes`, for the logins watching
    /// them.
    pub fn counted(&self, scopes: &[&Scope]) {
        self.flights
            .counted(scopes.iter().map(|scope| scope.key.as_str()));
    }

    /// Notes that a guess was decided (its result is now remembered, or in
    /// the verified-secret cache), for the logins watching the same guess:
    /// one that read before this and asks for a place after it reads again,
    /// and finds the answer there instead of running argon2 a second time.
    pub fn decided(&self, digest: &GuessDigest) {
        let key = digest.flight_key();
        self.flights.counted(std::iter::once(key.as_str()));
    }

    /// Guesses in flight now, over all scopes, for tests.
    pub fn in_flight(&self) -> usize {
        lock(&self.flights.scopes).len()
    }
}

/// One row per block that refused attempts since the last flush, and one
/// summary row for attempts past the bound.
fn throttled_events(throttled: Throttled, now: Timestamp) -> Vec<AuditEvent> {
    let mut events: Vec<AuditEvent> = throttled
        .by_scope
        .into_iter()
        .map(|(key, count)| {
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
            let mut event = AuditEvent::new(EventType::AuthenticationFailed, now, &key.actor)
                .detail(format!(
                    "{} ({blocked}; {} attempts from {addresses})",
                    FailureReason::THROTTLED,
                    count.attempts
                ));
            event.username = count.username;
            event.client_ip = Some(first_ip);
            event.protocol = Some(key.protocol);
            event.item_count = Some(i64::from(count.attempts));
            event
        })
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

/// Places taken by guesses in flight, per scope key, and the logins
/// watching each scope between their read and their place.
#[derive(Debug, Default)]
struct Flights {
    scopes: Mutex<HashMap<String, Flight>>,
}

#[derive(Debug)]
struct Flight {
    /// Guesses holding a place: being verified, or queued for it.
    taken: u32,
    /// Logins watching this scope (read in progress, or holding a place).
    watchers: u32,
    /// Failures counted in this scope while anyone watched it.
    failures: u64,
    released: Arc<Notify>,
}

/// The outcome of asking for places.
pub enum Reserve {
    /// The places are held until this is dropped.
    Held(Reservation),
    /// A scope is full; resolves when a place in it is given back.
    Wait(Pin<Box<OwnedNotified>>),
    /// Failures were counted since the read, and nothing is in flight to
    /// wait for: read again.
    Reread,
}

/// A login watching its scopes; stops watching when dropped.
#[derive(Debug)]
pub struct Watch {
    keys: Vec<String>,
    /// Each scope's failure count when watching began.
    seen: Vec<u64>,
    flights: Arc<Flights>,
}

/// Places held by one guess in flight; given back when dropped, whatever
/// became of the request.
#[derive(Debug)]
pub struct Reservation {
    keys: Vec<String>,
    flights: Arc<Flights>,
}

impl Flights {
    fn watch(self: &Arc<Self>, keys: Vec<String>) -> Watch {
        let mut scopes = lock(&self.scopes);
        let seen = keys
            .iter()
            .map(|key| {
                let flight = scopes.entry(key.clone()).or_insert_with(|| Flight {
                    taken: 0,
                    watchers: 0,
                    failures: 0,
                    released: Arc::new(Notify::new()),
                });
                flight.watchers += 1;
                flight.failures
            })
            .collect();
        Watch {
            keys,
            seen,
            flights: Arc::clone(self),
        }
    }

    fn reserve(self: &Arc<Self>, watch: &Watch, room: &[u32]) -> Reserve {
        let mut scopes = lock(&self.scopes);
        let mut reread = false;
        for (i, key) in watch.keys.iter().enumerate() {
            let Some(flight) = scopes.get(key) else {
                continue;
            };
            // The guess's own key has room for one; a scope's room is what
            // the read left, less what was counted since it began.
            let room = room.get(i).copied().unwrap_or(1);
            let missed = flight.failures.saturating_sub(watch.seen[i]);
            let room = u64::from(room).saturating_sub(missed);
            if u64::from(flight.taken) >= room {
                if flight.taken == 0 {
                    reread = true;
                    continue;
                }
                let mut waiting = Box::pin(Arc::clone(&flight.released).notified_owned());
                // Registered before the lock is let go, so a place given
                // back in between still wakes it.
                waiting.as_mut().enable();
                return Reserve::Wait(waiting);
            }
        }
        if reread {
            return Reserve::Reread;
        }
        for key in &watch.keys {
            if let Some(flight) = scopes.get_mut(key) {
                flight.taken += 1;
                flight.watchers += 1;
            }
        }
        Reserve::Held(Reservation {
            keys: watch.keys.clone(),
            flights: Arc::clone(self),
        })
    }

    fn counted<'a>(&self, keys: impl Iterator<Item = &'a str>) {
        let mut scopes = lock(&self.scopes);
        for key in keys {
            if let Some(flight) = scopes.get_mut(key) {
                flight.failures += 1;
            }
        }
    }

    /// Lets go of `keys`, giving back a place in each if `place`.
    fn release(&self, keys: &[String], place: bool) {
        let mut scopes = lock(&self.scopes);
        for key in keys {
            if let Some(flight) = scopes.get_mut(key) {
                flight.watchers = flight.watchers.saturating_sub(1);
                if place {
                    flight.taken = flight.taken.saturating_sub(1);
                    flight.released.notify_waiters();
                }
                if flight.watchers == 0 {
                    scopes.remove(key);
                }
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.flights.release(&self.keys, false);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.flights.release(&self.keys, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::event::EventType;
    use crate::domain::login::throttle::Scopes;
    use crate::domain::shared::username::Username;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    fn memory() -> ThrottleMemory {
        ThrottleMemory::new(Duration::from_secs(86_400), 100_000).unwrap()
    }

    fn pair() -> Scope {
        Scopes::of(&Username::parse("u").unwrap(), "192.0.2.1".parse().unwrap()).pair
    }

    fn event() -> AuditEvent {
        AuditEvent::new(EventType::AuthenticationFailed, at(0), "proxy")
    }

    fn guess(
        digest: GuessDigest,
        verified_against: HashPrint,
        matched: bool,
        reason: FailureReason,
    ) -> NewGuess {
        NewGuess {
            digest,
            verified_against,
            matched,
            event: event(),
            reason,
            network: "192.0.2.1/32".parse().unwrap(),
            account_known: true,
        }
    }

    fn digest(memory: &ThrottleMemory, typed: &str) -> GuessDigest {
        memory.digest(&pair(), "192.0.2.1".parse().unwrap(), Protocol::Imap, typed)
    }

    #[test]
    fn a_repeat_is_known_against_the_same_hash_and_counted_once_within_the_window() {
        let memory = memory();
        let old = digest(&memory, "old password");
        let hash = HashPrint::of(Some("$argon2id$one"));
        assert_eq!(memory.recall(&pair(), &old, hash, at(0)), Recall::New);
        let reason = FailureReason::Revoked;
        memory.remember_guess(&pair(), guess(old, hash, true, reason), Counted::Now, at(0));
        assert_eq!(
            memory.recall(&pair(), &old, hash, at(86_399)),
            Recall::Known { matched: true }
        );
        let other_hash = HashPrint::of(Some("$argon2id$two"));
        assert_eq!(
            memory.recall(&pair(), &old, other_hash, at(10)),
            Recall::Reverify
        );
        assert_eq!(
            memory.recall(&pair(), &old, HashPrint::of(None), at(10)),
            Recall::Reverify
        );
        let other = digest(&memory, "another");
        assert_eq!(memory.recall(&pair(), &other, hash, at(10)), Recall::New);
        assert_eq!(
            memory.recall(&pair(), &old, hash, at(86_400)),
            Recall::New,
            "forgotten after the window"
        );
    }

    #[test]
    fn the_digest_binds_address_protocol_and_password() {
        let memory = memory();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let base = memory.digest(&pair(), ip, Protocol::Imap, "x");
        assert_ne!(
            base,
            memory.digest(&pair(), "192.0.2.2".parse().unwrap(), Protocol::Imap, "x")
        );
        assert_ne!(base, memory.digest(&pair(), ip, Protocol::Pop3, "x"));
        assert_ne!(base, memory.digest(&pair(), ip, Protocol::Imap, "y"));
        assert!(!format!("{base:?}").contains(&format!("{:?}", base.as_bytes())));
    }

    #[test]
    fn throttled_attempts_are_audited_coalesced_by_their_block_and_bounded() {
        let memory = memory();
        let alice = Username::parse("alice").unwrap();
        let scopes = Scopes::of(&alice, "2001:db8:1:2::1".parse().unwrap());
        let attempt = |by: &Scope, ip: IpAddr| {
            memory.note_throttled(ThrottledAttempt {
                by,
                username: Some(&alice),
                client_ip: ip,
                protocol: Protocol::Imap,
                actor: "proxy",
            })
        };
        // 500 addresses of one blocked /64, and one blocked pair.
        for n in 0..500u128 {
            let ip = IpAddr::from((0x2001_0db8_0001_0002_u128 << 64 | n).to_be_bytes());
            attempt(&scopes.source, ip);
        }
        attempt(&scopes.pair, "2001:db8:1:2::1".parse().unwrap());
        let mut events = memory.take_repeats(at(9));
        events.sort_by_key(|e| e.item_count);
        let counted: Vec<_> = events
            .iter()
            .map(|e| (e.username.clone(), e.item_count, e.detail.as_str()))
            .collect();
        assert_eq!(
            counted,
            [
                (
                    Some(alice.clone()),
                    Some(1),
                    "throttled (this account from the network 2001:db8:1:2::/64 is blocked; 1 attempts from 1 address)"
                ),
                (
                    None,
                    Some(500),
                    "throttled (the network 2001:db8:1:2::/64 is blocked; 500 attempts from 64 or more addresses)"
                ),
            ]
        );
        assert!(memory.take_repeats(at(10)).is_empty(), "written once");
        // A flood of distinct blocks: the rows are bounded, the rest summed.
        for n in 0..(THROTTLED_ROWS_PER_FLUSH as u32 + 1_000) {
            let ip = IpAddr::from(n.to_be_bytes());
            let scopes = Scopes::of(&Username::parse("x").unwrap(), ip);
            attempt(&scopes.source, ip);
        }
        let events = memory.take_repeats(at(11));
        assert_eq!(events.len(), THROTTLED_ROWS_PER_FLUSH + 1);
        let summary = events.iter().find(|e| e.item_count == Some(1_000)).unwrap();
        assert!(
            summary.detail.contains("past the 1000"),
            "{}",
            summary.detail
        );
        assert_eq!(
            events.iter().filter_map(|e| e.item_count).sum::<i64>(),
            THROTTLED_ROWS_PER_FLUSH as i64 + 1_000
        );
    }

    #[test]
    fn repeats_are_audited_coalesced_once_per_flush() {
        let memory = memory();
        let old = digest(&memory, "old password");
        let none = HashPrint::of(None);
        let expired = FailureReason::Expired;
        let remember = |counted, at| {
            memory.remember_guess(&pair(), guess(old, none, false, expired), counted, at);
        };
        remember(Counted::Now, at(0));
        for second in 1..=5 {
            remember(Counted::Before, at(second));
        }
        let events = memory.take_repeats(at(6));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].item_count, Some(5));
        assert_eq!(events[0].detail, "expired (repeated)");
        assert_eq!(events[0].at, at(6));
        assert!(memory.take_repeats(at(7)).is_empty(), "written once");
        // A guess past the window is forgotten; its last repeats are still
        // audited.
        remember(Counted::Before, at(8));
        let later = at(86_400 + 1);
        assert_eq!(memory.take_repeats(later)[0].item_count, Some(1));
        assert_eq!(memory.remembered_guesses(), 0);
    }

    fn scopes() -> Scopes {
        Scopes::of(&Username::parse("u").unwrap(), "192.0.2.1".parse().unwrap())
    }

    /// Watches the pair and takes a place with `room` there.
    fn take(memory: &ThrottleMemory, typed: &str, room: u32) -> (Watch, Reserve) {
        let scopes = scopes();
        let watch = memory.watch(&[&scopes.pair], &digest(memory, typed));
        let reserve = memory.reserve(&watch, &[room]);
        (watch, reserve)
    }

    #[test]
    fn places_are_bounded_per_scope_and_given_back_on_drop() {
        let memory = memory();
        let mut held = Vec::new();
        for n in 0..3 {
            match take(&memory, &format!("guess {n}"), 3) {
                (watch, Reserve::Held(reservation)) => held.push((watch, reservation)),
                _ => panic!("room for three"),
            }
        }
        assert!(matches!(take(&memory, "guess 3", 3).1, Reserve::Wait(_)));
        drop(held.pop());
        assert!(matches!(take(&memory, "guess 3", 3).1, Reserve::Held(_)));
        // An identical guess waits for the one in flight.
        assert!(matches!(take(&memory, "guess 0", 100).1, Reserve::Wait(_)));
        held.clear();
        assert_eq!(memory.in_flight(), 0, "every place given back");
    }

    #[test]
    fn failures_counted_after_a_read_began_are_taken_off_its_room() {
        let memory = memory();
        let scopes = scopes();
        let watch = memory.watch(&[&scopes.pair], &digest(&memory, "late"));
        // While this login reads, two other guesses are decided and counted.
        let (other, Reserve::Held(place)) = take(&memory, "early", 5) else {
            panic!("room");
        };
        memory.counted(&[&scopes.pair]);
        memory.counted(&[&scopes.pair]);
        drop(place);
        drop(other);
        // Its read said 2 left; both went since, and none is in flight.
        assert!(matches!(memory.reserve(&watch, &[2]), Reserve::Reread));
        assert!(matches!(memory.reserve(&watch, &[3]), Reserve::Held(_)));
    }

    #[test]
    fn a_guess_decided_after_a_read_began_sends_that_read_back() {
        let memory = memory();
        let scopes = scopes();
        let same = digest(&memory, "same guess");
        let late = memory.watch(&[&scopes.pair], &same);
        // The same guess, read earlier, is decided while this one reads.
        let (early, Reserve::Held(place)) = take(&memory, "same guess", 5) else {
            panic!("room");
        };
        memory.decided(&same);
        drop(place);
        drop(early);
        assert!(
            matches!(memory.reserve(&late, &[5]), Reserve::Reread),
            "read again, and find the answer"
        );
    }

    #[tokio::test]
    async fn a_waiting_guess_wakes_when_a_place_is_given_back() {
        let memory = memory();
        let (_first, Reserve::Held(held)) = take(&memory, "a", 1) else {
            panic!("room for one");
        };
        let (_second, Reserve::Wait(waiting)) = take(&memory, "b", 1) else {
            panic!("full");
        };
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap();
    }
}
