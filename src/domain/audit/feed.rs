//! The change feed's values: a place in it, the resume token that names
//! one, and what a watcher asks for.
//!
//! Every audit event of a type that is [`EventType::in_feed`] gets a
//! sequence number when it is written, in the transaction of its change:
//! the next one after the newest, taken under a lock that is held until
//! that transaction commits. So numbers are handed out in commit order:
//! once a reader sees number `n` committed, every lower number is committed
//! too (or was never handed out, when its transaction rolled back and gave
//! it up). A watcher's place is therefore one number, and "everything
//! after it" never skips a late commit (docs/change-feed.md).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::domain::shared::span::as_unit::millis;

use super::event::{AuditEvent, EventType};
use crate::domain::shared::error::{Error, Reason, Result};
use crate::domain::shared::time::Span;
use crate::domain::shared::username::Username;

/// The feed as stored: whose it is, its newest event and how much of it
/// has been pruned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPosition {
    /// This database's feed (32 hex digits), written once by migration.
    pub feed_id: String,
    /// The newest event's sequence number; 0 when there is none.
    pub head: u64,
    /// Every event up to this number has been pruned (retention); every
    /// later one is kept.
    pub pruned_through: u64,
}

/// One event in the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    pub seq: u64,
    pub event: AuditEvent,
}

/// Which events a watcher gets; both narrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedFilter {
    /// Never empty: what the watcher asked for, within what its role may
    /// see.
    pub event_types: Vec<EventType>,
    pub username: Option<Username>,
}

/// How much of each event a watcher's stream carries; which role gets
/// which is in the access table (`grpc::access::watch_view`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventView {
    /// Every field.
    Whole,
    /// Which account and which app password changed, how and when: the
    /// type, the time, the account, the app password and the event's id.
    /// Not who did it (the actor), the caller concerned, a login's client
    /// address and protocol, a count, or the detail (an issuer's reason, an
    /// update's old and new settings, networks among them): what a proxy
    /// flushing its cache needs, and nothing it should hold.
    Target,
}

impl EventView {
    /// `event` as this view shows it.
    pub fn show(self, event: AuditEvent) -> AuditEvent {
        match self {
            EventView::Whole => event,
            EventView::Target => {
                // Every field named: a new one is shown only once decided.
                let AuditEvent {
                    id,
                    at,
                    event_type,
                    username,
                    app_password_id,
                    actor: _,
                    caller_name: _,
                    client_ip: _,
                    protocol: _,
                    item_count: _,
                    detail: _,
                } = event;
                AuditEvent {
                    id,
                    username,
                    app_password_id,
                    ..AuditEvent::new(event_type, at, "")
                }
            }
        }
    }
}

/// A place in one database's feed: "everything after event `seq`".
///
/// On the wire: URL-safe base64 of a version byte (1), the feed's 16-byte
/// id and the sequence number (8 bytes, big-endian). It grants nothing (the
/// caller's role decides what it sees), so it is not signed; the feed id
/// makes a token of another deployment an error instead of a silent jump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeToken {
    feed: [u8; 16],
    pub seq: u64,
}

const TOKEN_VERSION: u8 = 1;
const TOKEN_BYTES: usize = 1 + 16 + 8;
/// The longest token text accepted before decoding.
pub const MAX_TOKEN_CHARS: usize = 64;

impl ResumeToken {
    /// The token of place `seq` in the feed `feed_id` (as stored).
    pub fn new(feed_id: &str, seq: u64) -> Result<Self> {
        Ok(Self {
            feed: feed_bytes(feed_id)?,
            seq,
        })
    }

    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.push(TOKEN_VERSION);
        bytes.extend_from_slice(&self.feed);
        bytes.extend_from_slice(&self.seq.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Parses a token's text; says what is wrong for the field's violation.
    pub fn decode(text: &str) -> Result<Self, String> {
        const MALFORMED: &str =
            "is not a resume token: pass one from a WatchEventsResponse unchanged";
        if text.len() > MAX_TOKEN_CHARS {
            return Err(MALFORMED.to_owned());
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| MALFORMED.to_owned())?;
        let [version, rest @ ..] = bytes.as_slice() else {
            return Err(MALFORMED.to_owned());
        };
        if *version != TOKEN_VERSION || rest.len() != TOKEN_BYTES - 1 {
            return Err(MALFORMED.to_owned());
        }
        let (feed, seq) = rest.split_at(16);
        let feed: [u8; 16] = feed.try_into().map_err(|_| MALFORMED.to_owned())?;
        let seq: [u8; 8] = seq.try_into().map_err(|_| MALFORMED.to_owned())?;
        Ok(Self {
            feed,
            seq: u64::from_be_bytes(seq),
        })
    }

    /// Checks the token against the feed as it stands: it must be this
    /// feed's, not ahead of it, and not behind what was pruned.
    pub fn check(&self, position: &FeedPosition) -> Result<()> {
        if self.feed != feed_bytes(&position.feed_id)? {
            return Err(Error::invalid(
                "resume_token",
                "belongs to another latchkey deployment's feed",
            ));
        }
        if self.seq > position.head {
            return Err(Error::invalid(
                "resume_token",
                "is ahead of this feed: it was not issued by it (or the database was restored from an older backup; resync and watch without a token)",
            ));
        }
        if self.seq < position.pruned_through {
            return Err(Error::FailedPrecondition(
                Reason::WatchTokenExpired,
                "events after this resume token have been pruned (audit.retention_days): resync from the source of truth, then watch without a token".to_owned(),
            ));
        }
        Ok(())
    }
}

fn feed_bytes(feed_id: &str) -> Result<[u8; 16]> {
    let bad = || Error::internal("the stored feed id is not 32 hex digits");
    if feed_id.len() != 32 || !feed_id.is_ascii() {
        return Err(bad());
    }
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&feed_id[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(bytes)
}

/// `[watch]`: the change feed and the notices housekeeping sends into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// How often each replica looks for new events where the database has
    /// no wake-up of its own (SQLite, MariaDB), in milliseconds; on
    /// PostgreSQL, LISTEN/NOTIFY wakes it and this poll is only the
    /// fallback, at ten times the interval.
    #[serde(rename = "poll_interval", alias = "poll_interval_ms", with = "millis")]
    pub poll_interval_ms: u64,
    /// Streams one caller may hold open at once.
    pub max_watchers_per_caller: u32,
    /// Streams all callers together may hold open on one replica.
    pub max_watchers: u32,
    /// How long before an app password's expiry (and before its idle
    /// deadline) housekeeping writes the "expiring soon" event, e.g. "7d";
    /// 1 hour to 365 days, and longer than the usage flush interval plus
    /// 5 minutes (`app_passwords::model::check_notice_before`, which the
    /// configuration's check calls at load).
    pub notice_before: Span,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 100,
            max_watchers_per_caller: 4,
            max_watchers: 256,
            notice_before: Span::days(7),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEED: &str = "00112233445566778899aabbccddeeff";

    fn position(head: u64, pruned_through: u64) -> FeedPosition {
        FeedPosition {
            feed_id: FEED.to_owned(),
            head,
            pruned_through,
        }
    }

    #[test]
    fn tokens_round_trip_and_are_checked_against_the_feed() {
        let token = ResumeToken::new(FEED, 41).unwrap();
        let decoded = ResumeToken::decode(&token.encode()).unwrap();
        assert_eq!(decoded, token);
        assert!(decoded.check(&position(41, 0)).is_ok());
        assert!(
            decoded.check(&position(100, 41)).is_ok(),
            "the next one is kept"
        );
        assert!(matches!(
            decoded.check(&position(100, 42)),
            Err(Error::FailedPrecondition(Reason::WatchTokenExpired, _))
        ));
        assert!(matches!(
            decoded.check(&position(40, 0)),
            Err(Error::InvalidArgument(_))
        ));
        let foreign = FeedPosition {
            feed_id: "ffeeddccbbaa99887766554433221100".to_owned(),
            ..position(100, 0)
        };
        assert!(matches!(
            decoded.check(&foreign),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn the_target_view_keeps_which_changed_and_when_only() {
        let username = Username::parse("alice@example.com").unwrap();
        let id = uuid::Uuid::nil();
        let mut event = AuditEvent::new(
            EventType::AppPasswordUpdated,
            crate::domain::shared::time::Timestamp::from_millis(5),
            "portal",
        )
        .app_password(&username, id)
        .detail("allowed_networks: 192.0.2.0/24 -> 198.51.100.0/24");
        event.id = 7;
        event.client_ip = Some("192.0.2.1".parse().unwrap());
        event.protocol = Some(crate::domain::shared::protocol::Protocol::Imap);
        event.item_count = Some(3);
        event.caller_name = Some("someone".to_owned());
        assert_eq!(EventView::Whole.show(event.clone()), event);
        let shown = EventView::Target.show(event.clone());
        let mut expected =
            AuditEvent::new(event.event_type, event.at, "").app_password(&username, id);
        expected.id = 7;
        assert_eq!(shown, expected);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = ResumeToken::new(FEED, 7).unwrap().encode();
        for bad in [
            String::new(),
            "x".to_owned(),
            "not base64 !".to_owned(),
            good[..good.len() - 2].to_owned(),
            format!("{good}AA"),
            "A".repeat(200),
            URL_SAFE_NO_PAD.encode([2u8; TOKEN_BYTES]),
        ] {
            assert!(ResumeToken::decode(&bad).is_err(), "{bad:?}");
        }
    }
}
