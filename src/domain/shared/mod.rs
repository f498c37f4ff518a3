//! The vocabulary every capability shares: time and ids, the one error
//! type, usernames, client networks, protocols, the bounds on every input,
//! pages, patches of optional settings, and the two primitives with a single rule each (taking a lock,
//! drawing randomness). Nothing here knows about app passwords, logins or
//! callers; every other module of the domain may import this one, and this
//! one imports none of them.

pub mod backoff;
pub mod client;
pub mod error;
pub mod hex;
pub mod limits;
pub mod network;
pub mod page;
pub mod patch;
pub mod percent;
pub mod protocol;
pub mod random;
pub mod span;
pub mod sync;
pub mod time;
pub mod username;
