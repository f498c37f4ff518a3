//! App password secrets: their format (`format`: version 2's 36 letters,
//! a marker, a deployment-wide selector stored in clear, 24 random letters
//! carrying 112.8 bits and a check; version 1's 28 still read), finding
//! them in text (`scan`), and argon2id hashing and verification on a fixed pool of
//! hashing threads with a bounded queue, so hashing memory is bounded and
//! a burst is refused at once rather than queued without end. A secret
//! never leaves this module except as a hash, or in the one response that
//! issues it.

pub mod format;
pub mod hashing;
pub mod pool;
pub mod scan;

pub use format::Secret;
pub use hashing::{HashParams, Hasher};
pub use pool::{Admission, HashPoolConfig, Ticket};
