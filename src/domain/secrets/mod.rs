//! App password secrets: their format (28 lowercase letters from the OS
//! CSPRNG, the first four a selector stored in clear, the other 24 carrying
//! 112.8 bits), and argon2id hashing and verification on a fixed pool of
//! hashing threads with a bounded queue, so hashing memory is bounded and
//! a burst is refused at once rather than queued without end. A secret
//! never leaves this module except as a hash, or in the one response that
//! issues it.

pub mod format;
pub mod hashing;
pub mod pool;

pub use format::Secret;
pub use hashing::{HashParams, Hasher};
pub use pool::{Admission, HashPoolConfig, Ticket};
