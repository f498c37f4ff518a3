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
//! Every map is bounded; when one is full, what is new is not remembered
//! (it is then verified and counted like any other guess), never the
//! other way round.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

use super::model::FailureReason;
use super::throttle::Scope;
use crate::domain::audit::event::AuditEvent;
use crate::domain::shared::error::{Error, Result};
use crate::domain::shared::protocol::Protocol;
use crate::domain::shared::random;
use crate::domain::shared::sync::lock;
use crate::domain::shared::time::Timestamp;

/// Distinct recent wrong guesses remembered per pair.
const GUESSES_PER_PAIR: usize = 8;
/// Blocks, remembered guesses and coalesced events kept at most.
const MEMORY_ENTRIES: usize = 100_000;

/// A keyed digest of one guess: pair, exact client address, protocol and
/// the password as typed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuessDigest([u8; 32]);

impl std::fmt::Debug for GuessDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuessDigest(<redacted>)")
    }
}

impl GuessDigest {
    /// The key a guess in flight holds, as if it were a scope of its own.
    fn flight_key(&self) -> String {
        let mut key = String::with_capacity(70);
        key.push_str("guess:");
        key.push_str(&crate::domain::shared::hex::lower_hex(&self.0));
        key
    }
}

/// A digest of the stored hash a guess was verified against (`none` when
/// there was no candidate), so a remembered result is used only against
/// that very hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashPrint([u8; 16]);

impl HashPrint {
    pub fn of(stored_hash: Option<&str>) -> Self {
        let digest = Sha256::digest(stored_hash.unwrap_or("none").as_bytes());
        let mut print = [0u8; 16];
        print.copy_from_slice(&digest[..16]);
        Self(print)
    }
}

/// One remembered wrong guess.
#[derive(Debug)]
struct Guess {
    digest: GuessDigest,
    /// The hash it was verified against, and whether it matched (a right
    /// password that a rule refused).
    verified_against: HashPrint,
    matched: bool,
    /// When it was counted; within the window it is not counted again.
    counted_at: Timestamp,
    /// The failure's audit event, as the template of the coalesced one.
    event: AuditEvent,
    reason: FailureReason,
    /// Repeats not yet audited.
    repeats: u32,
}

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

pub struct ThrottleMemory {
    /// How long a guess is remembered and not counted again: the
    /// throttle's window.
    window: Duration,
    /// HMAC-SHA256 keyed with a key from the OS CSPRNG, cloned per digest.
    guess_mac: Hmac<Sha256>,
    blocks: Mutex<HashMap<String, Timestamp>>,
    guesses: Mutex<Guesses>,
    flights: Arc<Flights>,
}

#[derive(Debug, Default)]
struct Guesses {
    by_pair: HashMap<String, Vec<Guess>>,
    count: usize,
    /// Coalesced events of guesses forgotten before the flush wrote them.
    orphaned: Vec<AuditEvent>,
}

impl std::fmt::Debug for ThrottleMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThrottleMemory")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl ThrottleMemory {
    /// Fails when the OS cannot supply the digest key.
    pub fn new(window: Duration) -> Result<Self> {
        Ok(Self {
            window,
            guess_mac: <Hmac<Sha256> as Mac>::new_from_slice(&random::key()?).map_err(|error| {
                Error::internal(format!("cannot key the guess digest: {error}"))
            })?,
            blocks: Mutex::new(HashMap::new()),
            guesses: Mutex::new(Guesses::default()),
            flights: Arc::new(Flights::default()),
        })
    }

    /// The latest block among `scopes` that this replica knows of and that
    /// still runs at `now`.
    pub fn cached_block(&self, scopes: &[&Scope], now: Timestamp) -> Option<Timestamp> {
        let blocks = lock(&self.blocks);
        scopes
            .iter()
            .filter_map(|scope| blocks.get(&scope.key).copied())
            .filter(|until| *until > now)
            .max()
    }

    pub fn remember_block(&self, scope: &Scope, until: Timestamp, now: Timestamp) {
        let mut blocks = lock(&self.blocks);
        if blocks.len() >= MEMORY_ENTRIES && !blocks.contains_key(&scope.key) {
            blocks.retain(|_, until| *until > now);
            if blocks.len() >= MEMORY_ENTRIES {
                return;
            }
        }
        blocks.insert(scope.key.clone(), until);
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
        GuessDigest(mac.finalize().into_bytes().into())
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
        let mut guesses = lock(&self.guesses);
        match guesses
            .by_pair
            .get_mut(&pair.key)
            .and_then(|recent| find(recent, digest))
        {
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
    /// count instead of a row of its own.
    #[allow(clippy::too_many_arguments)]
    pub fn remember_guess(
        &self,
        pair: &Scope,
        digest: GuessDigest,
        verified_against: HashPrint,
        matched: bool,
        reason: FailureReason,
        event: AuditEvent,
        counted: bool,
        now: Timestamp,
    ) {
        let mut guesses = lock(&self.guesses);
        let window = self.window;
        if let Some(guess) = guesses
            .by_pair
            .get_mut(&pair.key)
            .and_then(|recent| find(recent, &digest))
        {
            guess.verified_against = verified_against;
            guess.matched = matched;
            guess.reason = reason;
            if counted {
                guess.counted_at = now;
            } else {
                guess.repeats = guess.repeats.saturating_add(1);
            }
            return;
        }
        if guesses.count >= MEMORY_ENTRIES {
            guesses.prune(now, window);
            if guesses.count >= MEMORY_ENTRIES {
                return;
            }
        }
        let Guesses {
            by_pair,
            count,
            orphaned,
        } = &mut *guesses;
        let recent = by_pair.entry(pair.key.clone()).or_default();
        if recent.len() == GUESSES_PER_PAIR {
            let oldest = recent.remove(0);
            *count -= 1;
            orphan(orphaned, oldest, now);
        }
        recent.push(Guess {
            digest,
            verified_against,
            matched,
            counted_at: now,
            event,
            reason,
            repeats: u32::from(!counted),
        });
        *count += 1;
    }

    /// Forgets a pair's wrong guesses (after it signed in successfully);
    /// their coalesced repeats are still audited.
    pub fn forget_guesses(&self, pair: &Scope, now: Timestamp) {
        let mut guesses = lock(&self.guesses);
        let Guesses {
            by_pair,
            count,
            orphaned,
        } = &mut *guesses;
        for guess in by_pair.remove(&pair.key).unwrap_or_default() {
            *count -= 1;
            orphan(orphaned, guess, now);
        }
    }

    /// The coalesced audit events of repeats not yet written: one per
    /// guess repeated since the last call, with the number of repeats as
    /// its item count. Guesses past the window are forgotten here.
    pub fn take_repeats(&self, now: Timestamp) -> Vec<AuditEvent> {
        let mut guesses = lock(&self.guesses);
        let mut events = std::mem::take(&mut guesses.orphaned);
        for recent in guesses.by_pair.values_mut() {
            for guess in recent.iter_mut() {
                if let Some(event) = coalesced(guess, now) {
                    events.push(event);
                }
            }
        }
        guesses.prune(now, self.window);
        events
    }

    /// Puts back events whose write failed, to be tried at the next flush.
    pub fn put_back_repeats(&self, events: Vec<AuditEvent>) {
        let mut guesses = lock(&self.guesses);
        let room = MEMORY_ENTRIES.saturating_sub(guesses.orphaned.len());
        guesses.orphaned.extend(events.into_iter().take(room));
    }

    /// Guesses remembered now, for tests and metrics.
    pub fn remembered_guesses(&self) -> usize {
        lock(&self.guesses).count
    }

    /// Takes a place for a guess in each of `scopes` whose room is given
    /// (the first that is full makes it wait), and in its own digest's
    /// (room for one: an identical guess waits for this one's answer).
    pub fn reserve(&self, scopes: &[(&Scope, u32)], digest: &GuessDigest) -> Reserve {
        let guess = digest.flight_key();
        let mut wanted: Vec<(&str, u32)> = scopes
            .iter()
            .map(|(scope, room)| (scope.key.as_str(), *room))
            .collect();
        wanted.push((guess.as_str(), 1));
        self.flights.reserve(&wanted)
    }

    /// Guesses in flight now, over all scopes, for tests.
    pub fn in_flight(&self) -> usize {
        lock(&self.flights.scopes).len()
    }
}

fn find<'a>(recent: &'a mut [Guess], digest: &GuessDigest) -> Option<&'a mut Guess> {
    recent
        .iter_mut()
        .find(|guess| bool::from(guess.digest.0[..].ct_eq(&digest.0[..])))
}

/// The coalesced event of a guess's unwritten repeats, if any.
fn coalesced(guess: &mut Guess, now: Timestamp) -> Option<AuditEvent> {
    if guess.repeats == 0 {
        return None;
    }
    let mut event = guess.event.clone();
    event.at = now;
    event.item_count = Some(i64::from(guess.repeats));
    event.detail = format!("{} (repeated)", guess.reason.as_str());
    guess.repeats = 0;
    Some(event)
}

fn orphan(orphaned: &mut Vec<AuditEvent>, mut guess: Guess, now: Timestamp) {
    if orphaned.len() < MEMORY_ENTRIES {
        orphaned.extend(coalesced(&mut guess, now));
    }
}

impl Guesses {
    /// Drops guesses past the window, keeping their unwritten repeats.
    fn prune(&mut self, now: Timestamp, window: Duration) {
        let Guesses {
            by_pair,
            count,
            orphaned,
        } = self;
        by_pair.retain(|_, recent| {
            let (keep, old): (Vec<Guess>, Vec<Guess>) = std::mem::take(recent)
                .into_iter()
                .partition(|guess| now.within(guess.counted_at, window));
            for guess in old {
                *count -= 1;
                orphan(orphaned, guess, now);
            }
            *recent = keep;
            !recent.is_empty()
        });
    }
}

/// Places taken by guesses in flight, per scope key.
#[derive(Debug, Default)]
struct Flights {
    scopes: Mutex<HashMap<String, Flight>>,
}

#[derive(Debug)]
struct Flight {
    taken: u32,
    released: Arc<Notify>,
}

/// The outcome of asking for places.
pub enum Reserve {
    /// The places are held until this is dropped.
    Held(Reservation),
    /// A scope is full; resolves when a place in it is given back.
    Wait(Pin<Box<OwnedNotified>>),
}

/// Places held by one guess in flight; given back when dropped, whatever
/// became of the request.
#[derive(Debug)]
pub struct Reservation {
    keys: Vec<String>,
    flights: Arc<Flights>,
}

impl Flights {
    fn reserve(self: &Arc<Self>, wanted: &[(&str, u32)]) -> Reserve {
        let mut scopes = lock(&self.scopes);
        for (key, room) in wanted {
            if let Some(flight) = scopes.get(*key) {
                if flight.taken >= *room {
                    let mut waiting = Box::pin(Arc::clone(&flight.released).notified_owned());
                    // Registered before the lock is let go, so a place given
                    // back in between still wakes it.
                    waiting.as_mut().enable();
                    return Reserve::Wait(waiting);
                }
            }
        }
        for (key, _) in wanted {
            scopes
                .entry((*key).to_owned())
                .or_insert_with(|| Flight {
                    taken: 0,
                    released: Arc::new(Notify::new()),
                })
                .taken += 1;
        }
        Reserve::Held(Reservation {
            keys: wanted.iter().map(|(key, _)| (*key).to_owned()).collect(),
            flights: Arc::clone(self),
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut scopes = lock(&self.flights.scopes);
        for key in &self.keys {
            if let Some(flight) = scopes.get_mut(key) {
                flight.taken = flight.taken.saturating_sub(1);
                flight.released.notify_waiters();
                if flight.taken == 0 {
                    scopes.remove(key);
                }
            }
        }
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
        ThrottleMemory::new(Duration::from_secs(86_400)).unwrap()
    }

    fn pair() -> Scope {
        Scopes::of(&Username::parse("u").unwrap(), "192.0.2.1".parse().unwrap()).pair
    }

    fn event() -> AuditEvent {
        AuditEvent::new(EventType::AuthenticationFailed, at(0), "proxy")
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
        memory.remember_guess(&pair(), old, hash, true, reason, event(), true, at(0));
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
        assert!(!format!("{base:?}").contains(&format!("{:?}", base.0)));
    }

    #[test]
    fn repeats_are_audited_coalesced_once_per_flush() {
        let memory = memory();
        let old = digest(&memory, "old password");
        let none = HashPrint::of(None);
        let expired = FailureReason::Expired;
        memory.remember_guess(&pair(), old, none, false, expired, event(), true, at(0));
        for second in 1..=5 {
            memory.remember_guess(
                &pair(),
                old,
                none,
                false,
                expired,
                event(),
                false,
                at(second),
            );
        }
        let events = memory.take_repeats(at(6));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].item_count, Some(5));
        assert_eq!(events[0].detail, "expired (repeated)");
        assert_eq!(events[0].at, at(6));
        assert!(memory.take_repeats(at(7)).is_empty(), "written once");
        // A success forgets the pair's guesses; their repeats are still audited.
        memory.remember_guess(&pair(), old, none, false, expired, event(), false, at(8));
        memory.forget_guesses(&pair(), at(9));
        assert_eq!(memory.remembered_guesses(), 0);
        assert_eq!(memory.take_repeats(at(10))[0].item_count, Some(1));
    }

    #[test]
    fn places_are_bounded_per_scope_and_given_back_on_drop() {
        let memory = memory();
        let scopes = Scopes::of(&Username::parse("u").unwrap(), "192.0.2.1".parse().unwrap());
        let mut held = Vec::new();
        for n in 0..3 {
            let digest = digest(&memory, &format!("guess {n}"));
            match memory.reserve(&[(&scopes.pair, 3)], &digest) {
                Reserve::Held(reservation) => held.push(reservation),
                Reserve::Wait(_) => panic!("room for three"),
            }
        }
        let fourth = digest(&memory, "guess 3");
        assert!(matches!(
            memory.reserve(&[(&scopes.pair, 3)], &fourth),
            Reserve::Wait(_)
        ));
        drop(held.pop());
        assert!(matches!(
            memory.reserve(&[(&scopes.pair, 3)], &fourth),
            Reserve::Held(_)
        ));
        // An identical guess waits for the one in flight.
        let same = digest(&memory, "guess 0");
        assert!(matches!(
            memory.reserve(&[(&scopes.pair, 100)], &same),
            Reserve::Wait(_)
        ));
        held.clear();
        assert_eq!(memory.in_flight(), 0, "every place given back");
    }

    #[tokio::test]
    async fn a_waiting_guess_wakes_when_a_place_is_given_back() {
        let memory = memory();
        let scopes = Scopes::of(&Username::parse("u").unwrap(), "192.0.2.1".parse().unwrap());
        let first = digest(&memory, "a");
        let Reserve::Held(held) = memory.reserve(&[(&scopes.pair, 1)], &first) else {
            panic!("room for one");
        };
        let Reserve::Wait(waiting) = memory.reserve(&[(&scopes.pair, 1)], &digest(&memory, "b"))
        else {
            panic!("full");
        };
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap();
    }
}
