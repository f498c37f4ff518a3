//! What one replica remembers about failed logins, besides the counters
//! in the database: blocks it has seen (so a throttled attempt costs a map
//! lookup, no read), and keyed digests of each pair's recent wrong guesses
//! (so a stale device repeating the same wrong password is counted once).
//! The digests are HMAC-SHA256 under a key made at start from the OS CSPRNG
//! and never stored; the server does not start without one. Both maps are
//! bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::throttle::Scope;
use crate::domain::shared::error::Result;
use crate::domain::shared::random;
use crate::domain::shared::sync::lock;
use crate::domain::shared::time::Timestamp;

/// How many distinct recent wrong guesses are remembered per pair, and how
/// many pairs / blocks are kept in memory at most.
const RECENT_GUESSES: usize = 8;
const MEMORY_ENTRIES: usize = 100_000;

/// Digests of a pair's recent wrong guesses, oldest first, with when each
/// was last made.
type RecentGuesses = VecDeque<([u8; 32], Timestamp)>;

pub struct ThrottleMemory {
    /// How long a wrong guess is remembered: the throttle's window.
    window: Duration,
    guess_key: [u8; 32],
    blocks: Mutex<HashMap<String, Timestamp>>,
    guesses: Mutex<HashMap<String, RecentGuesses>>,
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
            guess_key: random::key()?,
            blocks: Mutex::new(HashMap::new()),
            guesses: Mutex::new(HashMap::new()),
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
        if blocks.len() >= MEMORY_ENTRIES {
            blocks.retain(|_, until| *until > now);
            if blocks.len() >= MEMORY_ENTRIES {
                blocks.clear();
            }
        }
        blocks.insert(scope.key.clone(), until);
    }

    pub fn forget_block(&self, scope: &Scope) {
        lock(&self.blocks).remove(&scope.key);
    }

    /// Records a wrong guess for `pair`; `true` if the same guess was made
    /// recently (a stale device retrying), which then is not counted again.
    pub fn repeated_guess(&self, pair: &Scope, typed: &str, now: Timestamp) -> bool {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.guess_key) else {
            return false;
        };
        mac.update(pair.key.as_bytes());
        mac.update(typed.as_bytes());
        let digest: [u8; 32] = mac.finalize().into_bytes().into();
        let window = self.window;
        let recent_at = |at: Timestamp| now.since(at) < window;
        let mut guesses = lock(&self.guesses);
        if guesses.len() >= MEMORY_ENTRIES && !guesses.contains_key(&pair.key) {
            guesses.retain(|_, recent| recent.back().is_some_and(|(_, at)| recent_at(*at)));
            if guesses.len() >= MEMORY_ENTRIES {
                guesses.clear();
            }
        }
        let recent = guesses.entry(pair.key.clone()).or_default();
        recent.retain(|(_, at)| recent_at(*at));
        if recent
            .iter()
            .any(|(seen, _)| bool::from(seen[..].ct_eq(&digest[..])))
        {
            return true;
        }
        if recent.len() == RECENT_GUESSES {
            recent.pop_front();
        }
        recent.push_back((digest, now));
        false
    }

    /// Forgets a pair's wrong guesses (after it signed in successfully).
    pub fn forget_guesses(&self, pair: &Scope) {
        lock(&self.guesses).remove(&pair.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::login::throttle::Scopes;
    use crate::domain::shared::username::Username;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_millis(seconds * 1000)
    }

    #[test]
    fn a_repeated_wrong_guess_is_recognised() {
        let memory = ThrottleMemory::new(Duration::from_secs(86_400)).unwrap();
        let pair = Scopes::of(&Username::parse("u").unwrap(), "192.0.2.1".parse().unwrap()).pair;
        assert!(!memory.repeated_guess(&pair, "old password", at(0)));
        assert!(memory.repeated_guess(&pair, "old password", at(10)));
        assert!(!memory.repeated_guess(&pair, "another", at(10)));
        assert!(
            !memory.repeated_guess(&pair, "old password", at(10 + 86_400)),
            "forgotten after the window"
        );
    }
}
