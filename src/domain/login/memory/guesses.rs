//! A replica's bounded memory of recent wrong guesses (what `memory`
//! recalls them by, and why, is in its module doc): which guesses it keeps
//! when it is full, so that no flood of guesses can turn repeat protection
//! off for the devices it is for.
//!
//! The rules, in the order they apply to a new guess:
//!
//! 1. A pair (account and source network) keeps its 8 latest guesses; a
//!    ninth replaces the pair's oldest.
//! 2. Guesses for accounts that do not exist matter least: they protect
//!    only the source's counter from a stale device of a deleted account.
//!    They take at most half of the memory, and at most
//!    [`GuessLimits::per_network`] of them come from one source: a network
//!    (an IPv4 address, an IPv6 /64) as its throttle counter counts it, so
//!    apart for each tenant's proxies. A new one past the source's share is
//!    not remembered (the source's own repeats are then counted, on its own
//!    counter: it is the source that sent them, and another tenant's proxy
//!    reporting the same network cannot use up its share); past the half,
//!    it replaces the oldest such guess, from whichever source.
//! 3. When the memory is full, guesses past the window are dropped first
//!    (at most once a minute, so a memory kept full costs no walk on every
//!    guess); then a new guess replaces the oldest guess for an unknown
//!    account, and only when there is none, a guess for an existing account
//!    replaces the oldest guess for an existing account. A flood of
//!    guesses for unknown accounts, from however many networks, never
//!    pushes out an existing account's stale device.
//!
//! "Oldest" is least recently seen: a repeat makes its guess the newest of
//! its kind, so a stale device that keeps repeating (every few minutes, as
//! mail clients do) is the last of its kind to give way, even to a flood of
//! guesses at real accounts.
//!
//! Nothing here is a secret's plaintext: a guess is kept as a keyed digest
//! ([`GuessDigest`], which `memory` computes).
//! A guess forgotten before its repeats were audited leaves its coalesced
//! event behind for the next flush (`orphaned`, itself bounded).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::audit::event::AuditEvent;
use crate::domain::login::model::FailureReason;
use crate::domain::login::throttle::ScopeKey;
use crate::domain::shared::time::Timestamp;

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
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(super) fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
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

/// Distinct recent wrong guesses remembered per pair.
pub const GUESSES_PER_PAIR: usize = 8;

/// How much the memory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuessLimits {
    /// Guesses at most, of every kind.
    pub total: usize,
    /// Guesses for unknown accounts at most: half the total.
    pub unknown: usize,
    /// Guesses for unknown accounts from one source (a network, as its
    /// throttle counter counts it) at most: 1% of the total, and never
    /// fewer than one pair's worth.
    pub per_network: usize,
}

impl GuessLimits {
    pub fn of(total: usize) -> Self {
        let total = total.max(GUESSES_PER_PAIR);
        Self {
            total,
            unknown: (total / 2).max(1),
            per_network: (total / 100).max(GUESSES_PER_PAIR),
        }
    }
}

/// A wrong guess, as it is remembered.
#[derive(Debug)]
pub struct Guess {
    pub digest: GuessDigest,
    /// The hash it was verified against, and whether it matched (a right
    /// password that a rule refused).
    pub verified_against: HashPrint,
    pub matched: bool,
    /// When it was counted; within the window it is not counted again.
    pub counted_at: Timestamp,
    /// The failure's audit event, as the template of the coalesced one.
    pub event: AuditEvent,
    pub reason: FailureReason,
    /// Repeats not yet audited.
    pub repeats: u32,
    /// The source scope it came from, and whether its account exists.
    pub source: ScopeKey,
    pub account_known: bool,
    /// Its place in the order of arrival.
    seq: u64,
}

/// Whether a remembered guess was counted when it was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Counted now, in the three scopes.
    Now,
    /// Counted before, within the window: a repeat.
    Before,
}

/// A guess to remember: what `Guess` holds but its place.
#[derive(Debug)]
pub struct NewGuess {
    pub digest: GuessDigest,
    pub verified_against: HashPrint,
    pub matched: bool,
    pub event: AuditEvent,
    pub reason: FailureReason,
    pub source: ScopeKey,
    pub account_known: bool,
}

impl NewGuess {
    /// The guess as kept, counted at `counted_at`, with `repeats` not yet
    /// audited (its place is given when it is attached).
    fn remembered(self, counted_at: Timestamp, repeats: u32) -> Guess {
        // The coalesced event writes a detail of its own: the template's
        // is not kept.
        let event = AuditEvent {
            detail: String::new(),
            ..self.event
        };
        Guess {
            digest: self.digest,
            verified_against: self.verified_against,
            matched: self.matched,
            counted_at,
            event,
            reason: self.reason,
            repeats,
            source: self.source,
            account_known: self.account_known,
            seq: 0,
        }
    }
}

/// Where a guess is, in the order of arrival. The pair's key is shared
/// with the map's, not copied.
#[derive(Debug, Clone)]
struct Place {
    seq: u64,
    pair: Arc<str>,
}

#[derive(Debug)]
pub struct Guesses {
    limits: GuessLimits,
    by_pair: HashMap<Arc<str>, Vec<Guess>>,
    count: usize,
    unknown: usize,
    /// Guesses for unknown accounts per source.
    unknown_per_source: HashMap<ScopeKey, usize>,
    /// The order of arrival, oldest first, of each kind: a place whose
    /// guess is gone is skipped when met, and the queues are rebuilt from
    /// what is left at every prune.
    unknown_order: VecDeque<Place>,
    known_order: VecDeque<Place>,
    next_seq: u64,
    /// Coalesced events of guesses forgotten before the flush wrote them.
    orphaned: Vec<AuditEvent>,
    /// When a full memory was last pruned.
    pruned_when_full: Option<Timestamp>,
}

impl Guesses {
    pub fn new(limits: GuessLimits) -> Self {
        Self {
            limits,
            by_pair: HashMap::new(),
            count: 0,
            unknown: 0,
            unknown_per_source: HashMap::new(),
            unknown_order: VecDeque::new(),
            known_order: VecDeque::new(),
            next_seq: 0,
            orphaned: Vec::new(),
            pruned_when_full: None,
        }
    }

    /// Guesses remembered now.
    pub fn remembered(&self) -> usize {
        self.count
    }

    /// Guesses it keeps at most.
    pub fn capacity(&self) -> usize {
        self.limits.total
    }

    /// Coalesced events of forgotten guesses, waiting for the flush (at
    /// most [`Guesses::capacity`]).
    pub fn orphaned(&self) -> usize {
        self.orphaned.len()
    }

    /// The remembered guess of `pair` with this digest.
    pub fn find(&self, pair: &str, digest: &GuessDigest) -> Option<&Guess> {
        self.by_pair
            .get(pair)
            .and_then(|recent| recent.iter().find(|guess| same(&guess.digest, digest)))
    }

    /// Remembers a guess of `pair` just decided at `now`. One remembered
    /// already is updated (a repeat adds to its count; a guess counted again
    /// after the window takes the new result and event) and becomes the
    /// newest of its kind, so a device that keeps repeating is the last to
    /// give way. A new one is kept if the rules find it room; returns
    /// whether the guess is remembered.
    pub fn remember(
        &mut self,
        pair: &str,
        guess: NewGuess,
        counted: Counted,
        now: Timestamp,
        window: Duration,
    ) -> bool {
        let known = self.find(pair, &guess.digest).map(|known| known.seq);
        let Some(old) = known.and_then(|seq| self.detach(pair, seq)) else {
            let repeats = u32::from(counted == Counted::Before);
            return self.insert(pair, guess, repeats, now, window);
        };
        let updated = match counted {
            Counted::Now => guess.remembered(now, old.repeats),
            Counted::Before => Guess {
                event: old.event,
                ..guess.remembered(old.counted_at, old.repeats.saturating_add(1))
            },
        };
        self.attach(pair, updated);
        true
    }

    /// Remembers a new guess of `pair` at `now`, counted now (`repeats` 0)
    /// or as a repeat (1), making room by the module's rules; returns
    /// whether it was remembered.
    fn insert(
        &mut self,
        pair: &str,
        guess: NewGuess,
        repeats: u32,
        now: Timestamp,
        window: Duration,
    ) -> bool {
        let pair_full = self
            .by_pair
            .get(pair)
            .is_some_and(|recent| recent.len() >= GUESSES_PER_PAIR);
        if pair_full {
            if let Some(oldest) = self
                .by_pair
                .get(pair)
                .and_then(|recent| recent.iter().map(|g| g.seq).min())
            {
                self.remove(pair, oldest, now);
            }
        } else if !self.make_room(&guess, now, window) {
            return false;
        }
        self.attach(pair, guess.remembered(now, repeats));
        true
    }

    /// Adds a guess as the newest of its kind, counting it in.
    fn attach(&mut self, pair: &str, mut guess: Guess) {
        guess.seq = self.next_seq;
        self.next_seq += 1;
        // Most pairs of a spray hold one guess: room for one, not the four
        // a first push would make.
        let (pair, recent) = match self.by_pair.get_key_value(pair) {
            Some((key, _)) => (Arc::clone(key), None),
            None => (Arc::<str>::from(pair), Some(Vec::with_capacity(1))),
        };
        let place = Place {
            seq: guess.seq,
            pair: Arc::clone(&pair),
        };
        if guess.account_known {
            self.known_order.push_back(place);
        } else {
            self.unknown += 1;
            *self.unknown_per_source.entry(guess.source).or_insert(0) += 1;
            self.unknown_order.push_back(place);
        }
        self.count += 1;
        self.by_pair
            .entry(pair)
            .or_insert_with(|| recent.unwrap_or_default())
            .push(guess);
    }

    /// Takes a guess out, counting it out (its place in the order is left
    /// behind, and skipped when met).
    fn detach(&mut self, pair: &str, seq: u64) -> Option<Guess> {
        let recent = self.by_pair.get_mut(pair)?;
        let at = recent.iter().position(|guess| guess.seq == seq)?;
        let guess = recent.remove(at);
        if recent.is_empty() {
            self.by_pair.remove(pair);
        }
        self.count -= 1;
        if !guess.account_known {
            self.unknown -= 1;
            if let Some(n) = self.unknown_per_source.get_mut(&guess.source) {
                *n -= 1;
                if *n == 0 {
                    self.unknown_per_source.remove(&guess.source);
                }
            }
        }
        Some(guess)
    }

    /// Room for `guess`, by the module's rules 2 and 3; `false` when it is
    /// not to be remembered.
    fn make_room(&mut self, guess: &NewGuess, now: Timestamp, window: Duration) -> bool {
        if !guess.account_known {
            let from_source = self
                .unknown_per_source
                .get(&guess.source)
                .copied()
                .unwrap_or(0);
            if from_source >= self.limits.per_network {
                return false;
            }
            if self.unknown >= self.limits.unknown && !self.evict_oldest(false, now) {
                return false;
            }
        }
        if self.count < self.limits.total {
            return true;
        }
        let recently = self
            .pruned_when_full
            .is_some_and(|at| now.within(at, Duration::from_secs(60)));
        if !recently {
            self.pruned_when_full = Some(now);
            self.prune(now, window);
            if self.count < self.limits.total {
                return true;
            }
        }
        self.evict_oldest(false, now) || (guess.account_known && self.evict_oldest(true, now))
    }

    /// Forgets the oldest guess of one kind (for an existing account, or
    /// not); `false` if there is none.
    fn evict_oldest(&mut self, account_known: bool, now: Timestamp) -> bool {
        loop {
            let order = if account_known {
                &mut self.known_order
            } else {
                &mut self.unknown_order
            };
            let Some(place) = order.pop_front() else {
                return false;
            };
            if self.remove(&place.pair, place.seq, now) {
                return true;
            }
        }
    }

    /// Forgets one guess, keeping its unwritten repeats; `false` if it was
    /// gone already.
    fn remove(&mut self, pair: &str, seq: u64, now: Timestamp) -> bool {
        match self.detach(pair, seq) {
            Some(guess) => {
                self.orphan(guess, now);
                true
            }
            None => false,
        }
    }

    /// Keeps a forgotten guess's unwritten repeats for the next flush.
    fn orphan(&mut self, mut guess: Guess, now: Timestamp) {
        if self.orphaned.len() < self.limits.total {
            self.orphaned.extend(coalesced(&mut guess, now));
        }
    }

    /// The coalesced events of repeats not yet written (one per guess
    /// repeated since the last call), and those of guesses forgotten
    /// since; guesses past the window are forgotten here.
    pub fn take_repeats(&mut self, now: Timestamp, window: Duration) -> Vec<AuditEvent> {
        let mut events = std::mem::take(&mut self.orphaned);
        for recent in self.by_pair.values_mut() {
            for guess in recent.iter_mut() {
                events.extend(coalesced(guess, now));
            }
        }
        self.prune(now, window);
        events
    }

    /// Puts back events whose write failed, to be tried at the next flush.
    pub fn put_back(&mut self, events: Vec<AuditEvent>) {
        let room = self.limits.total.saturating_sub(self.orphaned.len());
        self.orphaned.extend(events.into_iter().take(room));
    }

    /// Drops guesses past the window, keeping their unwritten repeats, and
    /// rebuilds the orders of arrival from what is left.
    fn prune(&mut self, now: Timestamp, window: Duration) {
        let old: Vec<(Arc<str>, u64)> = self
            .by_pair
            .iter()
            .flat_map(|(pair, recent)| {
                recent
                    .iter()
                    .filter(|guess| !now.within(guess.counted_at, window))
                    .map(move |guess| (Arc::clone(pair), guess.seq))
            })
            .collect();
        for (pair, seq) in old {
            self.remove(&pair, seq, now);
        }
        let mut places: Vec<(u64, bool, Arc<str>)> = self
            .by_pair
            .iter()
            .flat_map(|(pair, recent)| {
                recent
                    .iter()
                    .map(move |guess| (guess.seq, guess.account_known, Arc::clone(pair)))
            })
            .collect();
        places.sort_unstable_by_key(|(seq, _, _)| *seq);
        self.unknown_order.clear();
        self.known_order.clear();
        for (seq, account_known, pair) in places {
            let place = Place { seq, pair };
            if account_known {
                self.known_order.push_back(place);
            } else {
                self.unknown_order.push_back(place);
            }
        }
    }
}

fn same(a: &GuessDigest, b: &GuessDigest) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::event::{Actor, EventType};

    const WINDOW: Duration = Duration::from_secs(86_400);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    /// The source scope of `network` for the doors of `door`'s tenant
    /// (`None`: the deployment-wide ones).
    fn source_of(network: &str, door: Option<&str>) -> ScopeKey {
        let network: ipnet::IpNet = network.parse().unwrap();
        let anyone = crate::domain::shared::username::Username::parse("u").unwrap();
        crate::domain::login::throttle::Scopes::of(&anyone, network.addr(), door)
            .source
            .key
    }

    /// A guess numbered `n` from `network`, for an existing account or not.
    fn guess(n: u32, network: &str, account_known: bool) -> NewGuess {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        NewGuess {
            digest: GuessDigest::from_bytes(bytes),
            verified_against: HashPrint::of(None),
            matched: false,
            event: AuditEvent::new(
                EventType::AuthenticationFailed,
                at(0),
                &Actor::system("proxy"),
            ),
            reason: FailureReason::InvalidCredentials,
            source: source_of(network, None),
            account_known,
        }
    }

    /// `count` guesses for existing accounts, each with `repeats`.
    fn fill_known(guesses: &mut Guesses, count: u32, repeats: u32) {
        for n in 0..count {
            let pair = format!("known {n}");
            let new = guess(n, "192.0.2.1/32", true);
            assert!(guesses.insert(&pair, new, repeats, at(0), WINDOW));
        }
    }

    fn digest(n: u32) -> GuessDigest {
        guess(n, "192.0.2.1/32", true).digest
    }

    /// The network of attacker number `n`: an IPv6 /64 of its own.
    fn attacker(n: u32) -> String {
        format!("2001:db8:{:x}:{:x}::/64", n >> 16, n & 0xffff)
    }

    #[test]
    fn one_tenants_proxy_cannot_use_up_another_tenants_share_of_a_network() {
        let mut guesses = Guesses::new(GuessLimits::of(200));
        let from = |n: u32, door| NewGuess {
            source: source_of("203.0.113.7/32", door),
            ..guess(n, "203.0.113.7/32", false)
        };
        // B's proxy reports 30 unknown-account guesses from the network:
        // 8 are remembered, its share.
        let b_side = (0..30u32)
            .filter(|&n| guesses.insert(&format!("b {n}"), from(n, Some("b")), 0, at(1), WINDOW))
            .count();
        assert_eq!(b_side, 8);
        // A's share of the same network is whole.
        let a_side = (0..8u32)
            .filter(|&n| {
                guesses.insert(
                    &format!("a {n}"),
                    from(100 + n, Some("a")),
                    0,
                    at(1),
                    WINDOW,
                )
            })
            .count();
        assert_eq!(a_side, 8);
    }

    #[test]
    fn a_flood_for_unknown_accounts_from_many_networks_keeps_known_devices() {
        // 200 in all: at most 100 for unknown accounts, 8 per network.
        let mut guesses = Guesses::new(GuessLimits::of(200));
        assert!(guesses.insert(
            "stale device",
            guess(0, "192.0.2.7/32", true),
            0,
            at(0),
            WINDOW
        ));
        // 3,000 guesses for unknown accounts, 30 from each of 100 networks
        // (under every throttle limit), each for a pair of its own.
        let mut remembered = 0;
        for n in 0..3_000u32 {
            let network = attacker(n / 30);
            let pair = format!("unknown {n}");
            remembered +=
                usize::from(guesses.insert(&pair, guess(n + 1, &network, false), 0, at(1), WINDOW));
        }
        assert_eq!(remembered, 100 * 8, "8 of each network's 30");
        assert_eq!(
            guesses.remembered(),
            1 + 100,
            "half the memory, and the stale device"
        );
        assert!(guesses.find("stale device", &digest(0)).is_some());
        // The newest are kept, the oldest went.
        assert!(guesses.find("unknown 2970", &digest(2971)).is_some());
        assert!(guesses.find("unknown 0", &digest(1)).is_none());
        // Existing accounts' devices still find room, up to the whole memory.
        for n in 0..99u32 {
            let pair = format!("known {n}");
            assert!(guesses.insert(
                &pair,
                guess(10_000 + n, "198.51.100.1/32", true),
                0,
                at(2),
                WINDOW
            ));
        }
        assert_eq!(guesses.remembered(), 200);
        // Full: a new known device's guess takes an unknown one's place; a
        // new unknown one takes an unknown one's place too, never a known.
        assert!(guesses.insert(
            "known new",
            guess(20_000, "198.51.100.2/32", true),
            0,
            at(3),
            WINDOW
        ));
        assert!(guesses.insert(
            "unknown new",
            guess(20_001, &attacker(5_000), false),
            0,
            at(3),
            WINDOW
        ));
        assert_eq!(guesses.remembered(), 200);
        assert!(guesses.find("stale device", &digest(0)).is_some());
        assert!(guesses.find("known 0", &digest(10_000)).is_some());
    }

    #[test]
    fn a_memory_of_known_devices_only_gives_way_oldest_first() {
        let mut guesses = Guesses::new(GuessLimits::of(10));
        fill_known(&mut guesses, 10, 0);
        assert!(
            !guesses.insert(
                "unknown",
                guess(100, "192.0.2.9/32", false),
                0,
                at(1),
                WINDOW
            ),
            "an unknown account's guess never pushes out a known one"
        );
        assert!(guesses.insert(
            "known 10",
            guess(10, "192.0.2.1/32", true),
            0,
            at(1),
            WINDOW
        ));
        assert!(
            guesses.find("known 0", &digest(0)).is_none(),
            "the oldest went"
        );
        assert!(guesses.find("known 1", &digest(1)).is_some());
        assert_eq!(guesses.remembered(), 10);
    }

    #[test]
    fn a_device_that_keeps_repeating_is_the_last_to_give_way() {
        let mut guesses = Guesses::new(GuessLimits::of(10));
        fill_known(&mut guesses, 10, 0);
        let repeat = guess(0, "192.0.2.1/32", true);
        assert!(guesses.remember("known 0", repeat, Counted::Before, at(5), WINDOW));
        assert_eq!(guesses.remembered(), 10);
        let new = guess(10, "192.0.2.1/32", true);
        assert!(guesses.remember("known 10", new, Counted::Now, at(6), WINDOW));
        assert!(guesses.find("known 0", &digest(0)).is_some(), "seen last");
        assert!(
            guesses.find("known 1", &digest(1)).is_none(),
            "the oldest went"
        );
        assert_eq!(guesses.find("known 0", &digest(0)).unwrap().repeats, 1);
        // Its class follows the account: created since, it is now known.
        let mut unknown = Guesses::new(GuessLimits::of(100));
        let first = guess(7, "192.0.2.1/32", false);
        assert!(unknown.remember("p", first, Counted::Now, at(0), WINDOW));
        assert_eq!(unknown.unknown, 1);
        let again = guess(7, "192.0.2.1/32", true);
        assert!(unknown.remember("p", again, Counted::Now, at(86_401), WINDOW));
        assert_eq!((unknown.unknown, unknown.remembered()), (0, 1));
    }

    #[test]
    fn guesses_past_the_window_make_room_first_and_keep_their_repeats() {
        let mut guesses = Guesses::new(GuessLimits::of(10));
        fill_known(&mut guesses, 10, 1);
        let later = at(86_400 + 1);
        assert!(guesses.insert("new", guess(99, "192.0.2.1/32", true), 0, later, WINDOW));
        assert_eq!(guesses.remembered(), 1);
        let events = guesses.take_repeats(later, WINDOW);
        assert_eq!(events.len(), 10, "each forgotten guess's one repeat");
    }

    #[test]
    fn a_pair_keeps_its_latest_eight() {
        let mut guesses = Guesses::new(GuessLimits::of(1_000));
        for n in 0..12u32 {
            assert!(guesses.insert("pair", guess(n, "192.0.2.1/32", false), 0, at(0), WINDOW));
        }
        assert_eq!(guesses.remembered(), GUESSES_PER_PAIR);
        assert!(guesses.find("pair", &digest(3)).is_none());
        assert!(guesses.find("pair", &digest(4)).is_some());
    }
}
