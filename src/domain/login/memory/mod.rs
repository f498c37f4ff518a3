//! What one replica remembers about logins, besides the counters in the
//! database, in three parts:
//!
//! - **blocks** it has seen (`blocks`), so a throttled attempt costs a map
//!   lookup and no read, and is audited coalesced by the block that
//!   refused it;
//! - **recent wrong guesses** (`guesses`), by a keyed digest of the pair
//!   (account and source network), the exact client address, the protocol
//!   and the typed password, with the result of verifying it against the
//!   candidate's stored hash (a digest of that hash, and whether it
//!   matched). A guess made again within the throttle's window is decided
//!   on the state read now and the remembered result, so it costs a read
//!   but no argon2, is never counted twice (a stale device repeating an old
//!   password does not escalate its owner's block), and writes no row of
//!   its own: repeats are audited coalesced, one event with a count per
//!   guess, by the periodic flush. Because the state is read every time, a
//!   change such as re-enabling an account holds for a repeated guess at
//!   once; only a new stored hash (a new password with the same selector,
//!   a re-hash) makes the guess verified again. The digests are
//!   HMAC-SHA256 under a key made at start from the OS CSPRNG and never
//!   stored; the server does not start without one;
//! - **guesses in flight** (`flights`, whose doc draws a login's states): a
//!   login that goes on to argon2 holds a place in each of its scopes until
//!   it is decided, so however many arrive at once, no more reach argon2
//!   than the scope's limit allows; the others wait for a place. An
//!   identical guess in flight holds a place of its own with room for one,
//!   so a burst of the same guess runs argon2 once and the rest are
//!   answered from memory.
//!
//! A login meets the memory at each of its steps (`service::Logins`):
//!
//! | step                 | asks                                   |
//! |----------------------|----------------------------------------|
//! | before the read      | `refuse_from_memory`, then `watch`     |
//! | after the gate       | `refused` (throttled) or `recall`      |
//! | before argon2        | `place`                                |
//! | once decided         | `counted` / `repeated`, `forget_block`, `decided` |
//! | the periodic flush   | `take_events`, `put_back_events`       |
//!
//! Every map is bounded, by one figure, `throttle.remembered_guesses`
//! ([`Sizes`] reports each map against it). When the guesses are full,
//! `guesses` decides what gives way (guesses for unknown accounts first,
//! each network within its share: the same limits are the fair share and
//! the memory bound); when the blocks are full (as many as guesses), a new
//! block is not remembered (it is then read from the database like any
//! other); throttled attempts past their bound are summed into one audit
//! row; a guess forgotten with repeats not yet written leaves at most one
//! event each, at most as many as guesses. At every bound the fallback is
//! the path with no memory, which is correct: a guess not remembered is
//! verified and counted when it comes again, a block not remembered is
//! read. Guesses in flight are bounded by the logins in flight.

mod blocks;
mod flights;
pub mod guesses;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use self::blocks::Blocks;
use self::flights::{FlightKey, Flights, Reserve};
use self::guesses::{GuessLimits, Guesses, NewGuess};
use super::model::FailureReason;
use super::throttle::{Scope, ScopeKind, Scopes};
use crate::domain::audit::event::{Actor, AuditEvent};
use crate::domain::shared::error::{Error, Reason, Result};
use crate::domain::shared::protocol::Protocol;
use crate::domain::shared::random;
use crate::domain::shared::sync::lock;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

pub use self::blocks::{ThrottledAttempt, THROTTLED_ROWS_PER_FLUSH};
pub use self::flights::{Reservation, Watch};
pub use self::guesses::{GuessDigest, HashPrint};

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

/// One login, as the memory knows it: its scopes, who and where it is from,
/// and the digest of its guess.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub scopes: &'a Scopes,
    pub username: &'a Username,
    pub client_ip: IpAddr,
    pub protocol: Protocol,
    pub actor: &'a Actor,
    pub digest: GuessDigest,
}

/// A wrong guess (or a right password a rule refused), as it is remembered.
#[derive(Debug)]
pub struct Failure {
    /// The stored hash it was verified against, and whether it matched.
    pub verified_against: HashPrint,
    pub matched: bool,
    pub reason: FailureReason,
    /// Its audit event, the template of the coalesced one of its repeats.
    pub event: AuditEvent,
    pub account_exists: bool,
}

/// How much the memory holds now, and its bounds (for metrics and tests;
/// no secret or address is in it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    pub guesses: usize,
    pub guesses_capacity: usize,
    pub blocks: usize,
    pub blocks_capacity: usize,
    /// Kinds of throttled attempt waiting for the audit flush (at most
    /// [`THROTTLED_ROWS_PER_FLUSH`]).
    pub throttled_kinds: usize,
    /// Coalesced events of forgotten guesses waiting for the flush.
    pub orphaned_events: usize,
    /// Keys with a login watching them or in flight.
    pub in_flight: usize,
}

/// Where a login that asked for a place stands.
#[derive(Debug)]
pub enum Place {
    /// It holds a place in each of its scopes: go on to argon2.
    Taken(Reservation),
    /// Read the state again first: what was counted since the read changed
    /// the room, or a place came free after a wait (and is held, so the
    /// login decides on what holds now, not on what held when it began to
    /// wait).
    ReadAgain(Option<Reservation>),
}

pub struct ThrottleMemory {
    /// How long a guess is remembered and not counted again: the
    /// throttle's window.
    window: Duration,
    /// HMAC-SHA256 keyed with a key from the OS CSPRNG, cloned per digest.
    guess_mac: Hmac<Sha256>,
    blocks: Blocks,
    guesses: Mutex<Guesses>,
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
    /// many wrong guesses it keeps at most (`guesses` says which, when full),
    /// and as many blocks.
    pub fn new(window: Duration, remembered: usize) -> Result<Self> {
        Ok(Self {
            window,
            guess_mac: <Hmac<Sha256> as Mac>::new_from_slice(&random::key()?).map_err(|error| {
                Error::internal(format!("cannot key the guess digest: {error}"))
            })?,
            blocks: Blocks::new(remembered),
            guesses: Mutex::new(Guesses::new(GuessLimits::of(remembered))),
            flights: Arc::new(Flights::default()),
        })
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
        mac.update(pair.key.as_str().as_bytes());
        mac.update(&[0]);
        // The address's bytes after its family, so their length is known.
        match client_ip {
            IpAddr::V4(v4) => {
                mac.update(&[4]);
                mac.update(&v4.octets());
            }
            IpAddr::V6(v6) => {
                mac.update(&[6]);
                mac.update(&v6.octets());
            }
        }
        mac.update(&[0]);
        mac.update(protocol.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(typed.as_bytes());
        GuessDigest::from_bytes(mac.finalize().into_bytes().into())
    }

    /// The end of a block of the login's source or pair that this replica
    /// knows of and that still runs at `now`, if any; the attempt is then
    /// noted for the audit flush. Nothing is read.
    pub fn refuse_from_memory(&self, attempt: &Attempt<'_>, now: Timestamp) -> Option<Timestamp> {
        let scopes = attempt.scopes;
        let found = self.blocks.find(&[&scopes.source, &scopes.pair], now)?;
        self.blocks.note(ThrottledAttempt {
            by: found.by,
            username: found.account_exists.then_some(attempt.username),
            client_ip: attempt.client_ip,
            protocol: attempt.protocol,
            actor: attempt.actor,
        });
        Some(found.until)
    }

    /// A read found the login throttled by `by`: remembers the blocks the
    /// gate named, so the next attempt is refused without a read, and notes
    /// the attempt for the audit flush.
    pub fn refused(
        &self,
        attempt: &Attempt<'_>,
        by: ScopeKind,
        remember: &[(ScopeKind, Timestamp)],
        account_exists: bool,
        now: Timestamp,
    ) {
        let scopes = attempt.scopes;
        for &(kind, until) in remember {
            self.blocks
                .remember(scopes.get(kind), until, now, account_exists);
        }
        self.blocks.note(ThrottledAttempt {
            by: scopes.get(by),
            username: account_exists.then_some(attempt.username),
            client_ip: attempt.client_ip,
            protocol: attempt.protocol,
            actor: attempt.actor,
        });
    }

    /// Forgets the block of a scope, once a success cleared it.
    pub fn forget_block(&self, scope: &Scope) {
        self.blocks.forget(scope);
    }

    /// What this replica remembers of a login's guess at `now`, given the
    /// stored hash of the candidate read now.
    pub fn recall(&self, attempt: &Attempt<'_>, candidate: HashPrint, now: Timestamp) -> Recall {
        let guesses = lock(&self.guesses);
        match guesses.find(attempt.scopes.pair.key.as_str(), &attempt.digest) {
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

    /// Starts watching a login's scopes (and its own guess) before its
    /// state is read: from here on, failures this replica counts in them
    /// are taken off the room that read computes, since the read may have
    /// missed them.
    pub fn watch(&self, attempt: &Attempt<'_>) -> Watch {
        let guess = FlightKey::Guess(attempt.digest);
        let keys = scope_keys(attempt.scopes).into_iter().chain([guess]);
        self.flights.watch(keys.collect())
    }

    /// Takes a place for a guess in each watched scope, given the room the
    /// read left in each (in the order of `Scopes::all`), waiting until
    /// `deadline` for one to come free. Past it the scope is busy: its
    /// places stayed taken by guesses still being checked, which is
    /// overload, not failure.
    pub async fn place(
        &self,
        watch: &Watch,
        room: &[u32],
        deadline: tokio::time::Instant,
    ) -> Result<Place> {
        loop {
            let waiting = match self.flights.reserve(watch, room) {
                Reserve::Held(reservation) => return Ok(Place::Taken(reservation)),
                Reserve::Reread => return Ok(Place::ReadAgain(None)),
                Reserve::Wait(waiting) => waiting,
            };
            if tokio::time::timeout_at(deadline, waiting).await.is_err() {
                return Err(Error::ResourceExhausted(
                    Reason::ScopeBusy,
                    "too many sign-ins of this account or network are being checked at once; retry shortly".to_owned(),
                ));
            }
            if let Reserve::Held(reservation) = self.flights.reserve(watch, room) {
                return Ok(Place::ReadAgain(Some(reservation)));
            }
        }
    }

    /// A failure counted now in the login's three scopes: the logins
    /// watching them are told, the guess is remembered (if the memory's
    /// rules find it room), and the blocks the count set are remembered
    /// (but the account's: a known source is exempt from it, which only a
    /// read can tell).
    pub fn counted<'s>(
        &self,
        attempt: &Attempt<'_>,
        failure: Failure,
        blocks: impl IntoIterator<Item = (&'s Scope, Timestamp)>,
        now: Timestamp,
    ) {
        let account_exists = failure.account_exists;
        self.flights.counted(scope_keys(attempt.scopes));
        self.remember(attempt, failure, guesses::Counted::Now, now);
        for (scope, until) in blocks {
            if scope.kind != ScopeKind::Account {
                self.blocks.remember(scope, until, now, account_exists);
            }
        }
    }

    /// A failure this replica counted within the window already: it joins
    /// the guess's coalesced repeat count instead of a row of its own.
    pub fn repeated(&self, attempt: &Attempt<'_>, failure: Failure, now: Timestamp) {
        self.remember(attempt, failure, guesses::Counted::Before, now);
    }

    fn remember(
        &self,
        attempt: &Attempt<'_>,
        failure: Failure,
        counted: guesses::Counted,
        now: Timestamp,
    ) {
        let guess = NewGuess {
            digest: attempt.digest,
            verified_against: failure.verified_against,
            matched: failure.matched,
            event: failure.event,
            reason: failure.reason,
            source: attempt.scopes.source.key,
            account_known: failure.account_exists,
        };
        let pair = attempt.scopes.pair.key.as_str();
        lock(&self.guesses).remember(pair, guess, counted, now, self.window);
    }

    /// Notes that a guess was decided (its result is now remembered, or in
    /// the verified-secret cache), for the logins watching the same guess:
    /// one that read before this and asks for a place after it reads again,
    /// and finds the answer there instead of running argon2 a second time.
    pub fn decided(&self, digest: &GuessDigest) {
        self.flights.counted([FlightKey::Guess(*digest)]);
    }

    /// The coalesced audit events not yet written: one per guess repeated
    /// since the last call, with the number of repeats as its item count,
    /// and one per block that refused attempts. Guesses past the window are
    /// forgotten here.
    pub fn take_events(&self, now: Timestamp) -> Vec<AuditEvent> {
        let mut events = lock(&self.guesses).take_repeats(now, self.window);
        events.extend(self.blocks.take_events(now));
        events
    }

    /// Puts back events whose write failed, to be tried at the next flush.
    pub fn put_back_events(&self, events: Vec<AuditEvent>) {
        lock(&self.guesses).put_back(events);
    }

    /// What each part holds now, and its bound.
    pub fn sizes(&self) -> Sizes {
        let (guesses, guesses_capacity, orphaned_events) = {
            let guesses = lock(&self.guesses);
            (guesses.remembered(), guesses.capacity(), guesses.orphaned())
        };
        let (blocks, throttled_kinds) = self.blocks.sizes();
        Sizes {
            guesses,
            guesses_capacity,
            blocks,
            blocks_capacity: self.blocks.capacity(),
            throttled_kinds,
            orphaned_events,
            in_flight: self.flights.len(),
        }
    }
}

/// The places a login's three scopes hold, in the order of `Scopes::all`.
fn scope_keys(scopes: &Scopes) -> [FlightKey; 3] {
    scopes.all().map(|scope| FlightKey::Scope(scope.key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::event::EventType;
    use tokio::time::Instant;

    static PROXY: std::sync::LazyLock<Actor> = std::sync::LazyLock::new(|| Actor::system("proxy"));

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    fn memory() -> ThrottleMemory {
        ThrottleMemory::new(Duration::from_secs(86_400), 100_000).unwrap()
    }

    fn user() -> Username {
        Username::parse("u").unwrap()
    }

    fn scopes_of(username: &Username, ip: &str) -> Scopes {
        Scopes::of(username, ip.parse().unwrap(), None)
    }

    /// `typed` by `u` over IMAP from `scopes`' address.
    fn attempt<'a>(
        memory: &ThrottleMemory,
        scopes: &'a Scopes,
        username: &'a Username,
        ip: &str,
        typed: &str,
    ) -> Attempt<'a> {
        let client_ip: IpAddr = ip.parse().unwrap();
        Attempt {
            scopes,
            username,
            client_ip,
            protocol: Protocol::Imap,
            actor: &PROXY,
            digest: memory.digest(&scopes.pair, client_ip, Protocol::Imap, typed),
        }
    }

    fn failure(verified_against: HashPrint, matched: bool, reason: FailureReason) -> Failure {
        Failure {
            verified_against,
            matched,
            reason,
            event: AuditEvent::new(EventType::AuthenticationFailed, at(0), &PROXY),
            account_exists: true,
        }
    }

    #[test]
    fn a_repeat_is_known_against_the_same_hash_and_counted_once_within_the_window() {
        let memory = memory();
        let (u, scopes) = (user(), scopes_of(&user(), "192.0.2.1"));
        let old = attempt(&memory, &scopes, &u, "192.0.2.1", "old password");
        let hash = HashPrint::of(Some("$argon2id$one"));
        assert_eq!(memory.recall(&old, hash, at(0)), Recall::New);
        let revoked = failure(hash, true, FailureReason::Revoked);
        memory.counted(&old, revoked, [], at(0));
        assert_eq!(
            memory.recall(&old, hash, at(86_399)),
            Recall::Known { matched: true }
        );
        let other_hash = HashPrint::of(Some("$argon2id$two"));
        assert_eq!(memory.recall(&old, other_hash, at(10)), Recall::Reverify);
        assert_eq!(
            memory.recall(&old, HashPrint::of(None), at(10)),
            Recall::Reverify
        );
        let other = attempt(&memory, &scopes, &u, "192.0.2.1", "another");
        assert_eq!(memory.recall(&other, hash, at(10)), Recall::New);
        assert_eq!(
            memory.recall(&old, hash, at(86_400)),
            Recall::New,
            "forgotten after the window"
        );
    }

    #[test]
    fn the_digest_binds_address_protocol_and_password() {
        let memory = memory();
        let pair = scopes_of(&user(), "192.0.2.1").pair;
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let base = memory.digest(&pair, ip, Protocol::Imap, "x");
        assert_ne!(
            base,
            memory.digest(&pair, "192.0.2.2".parse().unwrap(), Protocol::Imap, "x")
        );
        assert_ne!(base, memory.digest(&pair, ip, Protocol::Pop3, "x"));
        assert_ne!(base, memory.digest(&pair, ip, Protocol::Imap, "y"));
        assert!(!format!("{base:?}").contains(&format!("{:?}", base.as_bytes())));
    }

    #[test]
    fn blocks_answer_from_memory_until_they_end_and_a_success_forgets_them() {
        let memory = memory();
        let (u, scopes) = (user(), scopes_of(&user(), "192.0.2.1"));
        let login = attempt(&memory, &scopes, &u, "192.0.2.1", "x");
        assert_eq!(memory.refuse_from_memory(&login, at(0)), None);
        let remember = [(ScopeKind::Source, at(60)), (ScopeKind::Pair, at(120))];
        memory.refused(&login, ScopeKind::Source, &remember, true, at(0));
        assert_eq!(memory.refuse_from_memory(&login, at(1)), Some(at(120)));
        assert_eq!(memory.refuse_from_memory(&login, at(119)), Some(at(120)));
        assert_eq!(memory.refuse_from_memory(&login, at(120)), None);
        memory.refused(&login, ScopeKind::Pair, &remember[1..], true, at(0));
        memory.forget_block(&scopes.pair);
        assert_eq!(memory.refuse_from_memory(&login, at(1)), Some(at(60)));
        // Every refusal is one coalesced attempt of the block that refused.
        let counts: i64 = memory
            .take_events(at(2))
            .iter()
            .filter_map(|e| e.item_count)
            .sum();
        assert_eq!(counts, 5);
    }

    #[test]
    fn throttled_attempts_are_audited_coalesced_by_their_block_and_bounded() {
        let memory = memory();
        let alice = Username::parse("alice").unwrap();
        let refuse = |ip: IpAddr, by: ScopeKind| {
            let scopes = Scopes::of(&alice, ip, None);
            let login = attempt(&memory, &scopes, &alice, &ip.to_string(), "x");
            memory.refused(&login, by, &[], true, at(0));
        };
        // 500 addresses of one blocked /64, and one blocked pair.
        for n in 0..500u128 {
            let ip = IpAddr::from((0x2001_0db8_0001_0002_u128 << 64 | n).to_be_bytes());
            refuse(ip, ScopeKind::Source);
        }
        refuse("2001:db8:1:2::1".parse().unwrap(), ScopeKind::Pair);
        let mut events = memory.take_events(at(9));
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
        assert!(memory.take_events(at(10)).is_empty(), "written once");
        // A flood of distinct blocks: the rows are bounded, the rest summed.
        for n in 0..(THROTTLED_ROWS_PER_FLUSH as u32 + 1_000) {
            refuse(IpAddr::from(n.to_be_bytes()), ScopeKind::Source);
        }
        let events = memory.take_events(at(11));
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
        let (u, scopes) = (user(), scopes_of(&user(), "192.0.2.1"));
        let old = attempt(&memory, &scopes, &u, "192.0.2.1", "old password");
        let expired = || failure(HashPrint::of(None), false, FailureReason::Expired);
        memory.counted(&old, expired(), [], at(0));
        for second in 1..=5 {
            memory.repeated(&old, expired(), at(second));
        }
        let events = memory.take_events(at(6));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].item_count, Some(5));
        assert_eq!(events[0].detail, "expired (repeated)");
        assert_eq!(events[0].at, at(6));
        assert!(memory.take_events(at(7)).is_empty(), "written once");
        // A guess past the window is forgotten; its last repeats are still
        // audited.
        memory.repeated(&old, expired(), at(8));
        let later = at(86_400 + 1);
        assert_eq!(memory.take_events(later)[0].item_count, Some(1));
        assert_eq!(memory.sizes().guesses, 0);
    }

    /// Watches `typed`'s scopes and asks for a place with `room` in each,
    /// without waiting.
    async fn take(memory: &ThrottleMemory, typed: &str, room: u32) -> (Watch, Result<Place>) {
        let (u, scopes) = (user(), scopes_of(&user(), "192.0.2.1"));
        let watch = memory.watch(&attempt(memory, &scopes, &u, "192.0.2.1", typed));
        let place = memory.place(&watch, &[room; 3], Instant::now()).await;
        (watch, place)
    }

    fn busy(place: &Result<Place>) -> bool {
        matches!(place, Err(Error::ResourceExhausted(Reason::ScopeBusy, _)))
    }

    #[tokio::test]
    async fn places_are_bounded_per_scope_and_given_back_on_drop() {
        let memory = memory();
        let mut held = Vec::new();
        for n in 0..3 {
            match take(&memory, &format!("guess {n}"), 3).await {
                (watch, Ok(Place::Taken(reservation))) => held.push((watch, reservation)),
                _ => panic!("room for three"),
            }
        }
        assert!(busy(&take(&memory, "guess 3", 3).await.1));
        drop(held.pop());
        assert!(matches!(
            take(&memory, "guess 3", 3).await.1,
            Ok(Place::Taken(_))
        ));
        // An identical guess waits for the one in flight.
        assert!(busy(&take(&memory, "guess 0", 100).await.1));
        held.clear();
        assert_eq!(memory.sizes().in_flight, 0, "every place given back");
    }

    #[tokio::test]
    async fn failures_counted_after_a_read_began_are_taken_off_its_room() {
        let memory = memory();
        let (u, scopes) = (user(), scopes_of(&user(), "192.0.2.1"));
        let late = attempt(&memory, &scopes, &u, "192.0.2.1", "late");
        let watch = memory.watch(&late);
        // While this login reads, two other guesses are decided and counted.
        let (other, Ok(Place::Taken(place))) = take(&memory, "early", 5).await else {
            panic!("room");
        };
        for typed in ["early", "earlier"] {
            let early = attempt(&memory, &scopes, &u, "192.0.2.1", typed);
            let wrong = failure(
                HashPrint::of(None),
                false,
                FailureReason::InvalidCredentials,
            );
            memory.counted(&early, wrong, [], at(0));
        }
        drop(place);
        drop(other);
        // Its read said 2 left; both went since, and none is in flight.
        let now = Instant::now();
        assert!(matches!(
            memory.place(&watch, &[2; 3], now).await,
            Ok(Place::ReadAgain(None))
        ));
        assert!(matches!(
            memory.place(&watch, &[3; 3], now).await,
            Ok(Place::Taken(_))
        ));
    }

    #[tokio::test]
    async fn a_guess_decided_after_a_read_began_sends_that_read_back() {
        let memory = memory();
        let (u, scopes) = (user(), scopes_of(&user(), "192.0.2.1"));
        let same = attempt(&memory, &scopes, &u, "192.0.2.1", "same guess");
        let late = memory.watch(&same);
        // The same guess, read earlier, is decided while this one reads.
        let (early, Ok(Place::Taken(place))) = take(&memory, "same guess", 5).await else {
            panic!("room");
        };
        memory.decided(&same.digest);
        drop(place);
        drop(early);
        assert!(
            matches!(
                memory.place(&late, &[5; 3], Instant::now()).await,
                Ok(Place::ReadAgain(None))
            ),
            "read again, and find the answer"
        );
    }

    #[tokio::test]
    async fn a_waiting_guess_wakes_with_the_place_given_back() {
        let memory = memory();
        let (_first, Ok(Place::Taken(held))) = take(&memory, "a", 1).await else {
            panic!("room for one");
        };
        let (u, scopes) = (user(), scopes_of(&user(), "192.0.2.1"));
        let second = memory.watch(&attempt(&memory, &scopes, &u, "192.0.2.1", "b"));
        let waiting = memory.place(&second, &[1; 3], Instant::now() + Duration::from_secs(5));
        let give_back = async move {
            tokio::task::yield_now().await;
            drop(held);
        };
        let (placed, ()) = tokio::join!(waiting, give_back);
        assert!(
            matches!(placed, Ok(Place::ReadAgain(Some(_)))),
            "woken, it holds the place and reads again"
        );
    }
}
