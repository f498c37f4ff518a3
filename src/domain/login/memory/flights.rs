//! Guesses in flight: the places a login holds in each of its scopes (and
//! for its own guess) from the moment it goes on to argon2 until it is
//! decided, and the logins watching those scopes between their read and
//! their place.
//!
//! One login's way through, as `ThrottleMemory::place` drives it:
//!
//! ```text
//!            watch()                       place()
//!   ──────► Watching ──── room in every key ──────────► Holding ──► dropped:
//!            │  ▲                                         ▲        place given
//!            │  │ failures counted since the read         │        back, waiters
//!            │  │ took the room, none in flight           │        woken
//!            │  └──── ReadAgain(None) ◄──┤                │
//!            │                           │                │
//!            │       a key is full       │ woken, room    │
//!            └──────────────────────► Waiting ────────────┘ ReadAgain(Some):
//!                                        │                   read again
//!                                        │ deadline passes   holding the place
//!                                        ▼
//!                                      Busy (SCOPE_BUSY)
//! ```
//!
//! A key is a scope's (`source:…`, `pair:…`, `account:…`) with the room the
//! read left, or a guess's own digest, with room for one: a burst of the
//! same guess runs argon2 once, and the rest, woken when it is decided,
//! read again and find its answer remembered.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

use super::guesses::GuessDigest;
use crate::domain::login::throttle::ScopeKey;
use crate::domain::shared::sync::lock;

/// What holds places: a throttle scope, by its key, or one guess.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum FlightKey {
    Scope(ScopeKey),
    Guess(GuessDigest),
}

/// Places taken by guesses in flight, per key, and the logins watching
/// each key between their read and their place.
#[derive(Debug, Default)]
pub(super) struct Flights {
    keys: Mutex<HashMap<FlightKey, Flight>>,
}

#[derive(Debug)]
struct Flight {
    /// Guesses holding a place: being verified, or queued for it.
    taken: u32,
    /// Logins watching this key (read in progress, or holding a place).
    watchers: u32,
    /// Failures counted (or, for a guess, decisions made) while anyone
    /// watched it.
    failures: u64,
    released: Arc<Notify>,
}

/// The outcome of asking for places once.
pub(super) enum Reserve {
    /// The places are held until this is dropped.
    Held(Reservation),
    /// A key is full; resolves when a place in it is given back.
    Wait(Pin<Box<OwnedNotified>>),
    /// Failures were counted since the read, and nothing is in flight to
    /// wait for: read again.
    Reread,
}

/// A login watching its keys; stops watching when dropped.
#[derive(Debug)]
pub struct Watch {
    keys: Vec<FlightKey>,
    /// Each key's failure count when watching began.
    seen: Vec<u64>,
    flights: Arc<Flights>,
}

/// Places held by one guess in flight; given back when dropped, whatever
/// became of the request.
#[derive(Debug)]
pub struct Reservation {
    keys: Vec<FlightKey>,
    flights: Arc<Flights>,
}

impl Flights {
    pub(super) fn watch(self: &Arc<Self>, keys: Vec<FlightKey>) -> Watch {
        let mut flights = lock(&self.keys);
        let seen = keys
            .iter()
            .map(|key| {
                let flight = flights.entry(key.clone()).or_insert_with(|| Flight {
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

    /// Asks once for a place in each watched key, given the room the read
    /// left in each (in the order watched; a key past `room`, the guess's
    /// own, has room for one).
    pub(super) fn reserve(self: &Arc<Self>, watch: &Watch, room: &[u32]) -> Reserve {
        let mut flights = lock(&self.keys);
        let mut reread = false;
        for (i, key) in watch.keys.iter().enumerate() {
            let Some(flight) = flights.get(key) else {
                continue;
            };
            // A scope's room is what the read left, less what was counted
            // since it began.
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
            if let Some(flight) = flights.get_mut(key) {
                flight.taken += 1;
                flight.watchers += 1;
            }
        }
        Reserve::Held(Reservation {
            keys: watch.keys.clone(),
            flights: Arc::clone(self),
        })
    }

    /// Notes a failure counted in (or a decision made for) `keys`, for the
    /// logins watching them.
    pub(super) fn counted(&self, keys: impl IntoIterator<Item = FlightKey>) {
        let mut flights = lock(&self.keys);
        for key in keys {
            if let Some(flight) = flights.get_mut(&key) {
                flight.failures += 1;
            }
        }
    }

    /// Keys watched or held now.
    pub(super) fn len(&self) -> usize {
        lock(&self.keys).len()
    }

    /// Lets go of `keys`, giving back a place in each if `place`.
    fn release(&self, keys: &[FlightKey], place: bool) {
        let mut flights = lock(&self.keys);
        for key in keys {
            if let Some(flight) = flights.get_mut(key) {
                flight.watchers = flight.watchers.saturating_sub(1);
                if place {
                    flight.taken = flight.taken.saturating_sub(1);
                    flight.released.notify_waiters();
                }
                if flight.watchers == 0 {
                    flights.remove(key);
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
