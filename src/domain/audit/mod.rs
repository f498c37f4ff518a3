//! The audit trail: who did what to which account, app password or caller,
//! and every failed login, with the client address and protocol where there
//! is one. Events carry names and ids, never a secret or a hash. Events are
//! written by the capability that makes the change, in the same
//! transaction; this module owns their vocabulary, reading and retention.

pub mod event;
pub mod feed;
pub mod service;
pub mod store;
pub mod watch;

pub use event::{AuditCursor, AuditEvent, AuditFilter, EventType};
pub use feed::{
    FeedEvent, FeedFilter, FeedPage, FeedPosition, Held, Place, ResumeToken, WatchConfig,
};
pub use service::AuditTrail;
pub use store::AuditStore;
pub use watch::{EventFeed, WatchItem, WatchRequest, WatchStats};
