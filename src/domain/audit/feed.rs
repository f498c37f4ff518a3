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
//!
//! A number names an event only within one history of the database. After
//! a failover to a standby that had not replayed the newest commits, the
//! new primary hands those numbers out again, to other events. So each
//! transaction also stamps its feed events with a random *mark*, and a
//! place is the number and the mark of the event there ([`Place`]): a
//! place whose mark is not the one the database holds at its number
//! belongs to a history that is gone, and its watcher must resync
//! (`FEED_RESYNC_REQUIRED`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::domain::shared::span::as_unit::millis;

use super::event::{Actor, AuditEvent, EventType};
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

/// A place in the feed's history: a sequence number and the mark of the
/// event there. The start of the feed (0) and events written before marks
/// existed (migration 12) have mark 0; every other transaction's events
/// share one random mark that is never 0 ([`new_mark`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Place {
    pub seq: u64,
    pub mark: u64,
}

impl Place {
    /// Before the first event.
    pub const START: Place = Place { seq: 0, mark: 0 };
}

/// A new transaction's mark: random, never 0 (the mark of the start and of
/// events from before marks).
pub fn new_mark() -> u64 {
    loop {
        let mark = rand::random::<u64>();
        if mark != 0 {
            return mark;
        }
    }
}

/// What the feed holds at a number, as one read found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// The event there has this mark (0 at the start of the feed).
    Mark(u64),
    /// Its event was pruned: nothing is left to compare with. Only the
    /// horizon itself (`pruned_through`) is ever asked about: a place
    /// before it is refused as expired first.
    Pruned,
    /// No event has this number, and none was pruned: the number is ahead
    /// of this history (the database lost it, or never had it).
    Missing,
}

impl Held {
    /// What storage found at `seq` (`found`: the mark of the event there,
    /// `None` when there is none), read against the pruned horizon.
    pub fn at(seq: u64, found: Option<u64>, pruned_through: u64) -> Self {
        match found {
            Some(mark) => Held::Mark(mark),
            None if seq == 0 => Held::Mark(0),
            None if seq <= pruned_through => Held::Pruned,
            None => Held::Missing,
        }
    }

    /// The place at `seq` this names: its mark, 0 where the event was
    /// pruned; `None` when it is missing.
    pub fn place(self, seq: u64) -> Option<Place> {
        match self {
            Held::Mark(mark) => Some(Place { seq, mark }),
            Held::Pruned => Some(Place { seq, mark: 0 }),
            Held::Missing => None,
        }
    }

    /// Whether `place` is in the history that holds this.
    pub fn holds(self, place: Place) -> bool {
        match self {
            Held::Mark(mark) => mark == place.mark,
            Held::Pruned => true,
            Held::Missing => false,
        }
    }
}

/// One event in the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    pub seq: u64,
    /// Its transaction's mark.
    pub mark: u64,
    pub event: AuditEvent,
}

impl FeedEvent {
    pub fn place(&self) -> Place {
        Place {
            seq: self.seq,
            mark: self.mark,
        }
    }
}

/// One read of the feed: the events after a place, and what the feed holds
/// at that place and at the end of the range, all from one statement (so
/// from one history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedPage {
    /// The mark of the event at `after`, if there is one.
    pub after_mark: Option<u64>,
    /// The mark of the event at `through`, if there is one and the page
    /// reached it (it is not full).
    pub through_mark: Option<u64>,
    pub events: Vec<FeedEvent>,
}

/// Which events a watcher gets; both narrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedFilter {
    /// Never empty: what the watcher asked for, within what its role may
    /// see.
    pub event_types: Vec<EventType>,
    pub username: Option<Username>,
    /// A scoped watcher's tenant: only events of accounts of the domains
    /// that tenant owns when each page is read, chosen by the query from
    /// the tenant's domains as that statement sees them
    /// (`domain::tenants`). A domain moved away is out of the stream from
    /// the next page on, one moved in is in: an open stream needs no
    /// reconnect, and no cached list of domains can keep a lost one.
    /// `None`: every account's.
    pub tenant: Option<String>,
}

impl FeedFilter {
    /// Whether the filter wants `event` by its type and account (the
    /// query has chosen by the same rules; this checks what it read). The
    /// tenant's domains are the store's to check, in the statement that
    /// read the event.
    pub fn wants(&self, event: &AuditEvent) -> bool {
        self.event_types.contains(&event.event_type)
            && self
                .username
                .as_ref()
                .is_none_or(|username| event.username.as_ref() == Some(username))
    }
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
                    actor_tenant: _,
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
                    ..AuditEvent::new(event_type, at, &Actor::system(""))
                }
            }
        }
    }
}

/// A place in one database's feed: "everything after event `seq`", in
/// the history where the event at `seq` has mark `mark`.
///
/// On the wire: URL-safe base64 of a version byte (2), the feed's 16-byte
/// id, the sequence number and the mark (8 bytes each, big-endian). It
/// grants nothing (the caller's role decides what it sees), so it is not
/// signed; the feed id makes a token of another deployment an error
/// instead of a silent jump, and the mark one of a lost history (a
/// failover to a lagging standby, a restore) a resync instead of a silent
/// skip.
///
/// Version 1 (no mark), from before marks, is still read, as mark 0: the
/// mark of the events written before them. Such a token resumes as it did
/// when the event at its number is one of those, and is refused with
/// FEED_RESYNC_REQUIRED when the number has since been handed out again
/// (it can only have come from a history that is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeToken {
    feed: [u8; 16],
    pub seq: u64,
    pub mark: u64,
}

const TOKEN_VERSION: u8 = 2;
const TOKEN_BYTES: usize = 1 + 16 + 8 + 8;
const TOKEN_V1_BYTES: usize = 1 + 16 + 8;
/// The longest token text accepted before decoding.
pub const MAX_TOKEN_CHARS: usize = 64;

impl ResumeToken {
    /// The token of `place` in the feed `feed_id` (as stored).
    pub fn new(feed_id: &str, place: Place) -> Result<Self> {
        Ok(Self {
            feed: feed_bytes(feed_id)?,
            seq: place.seq,
            mark: place.mark,
        })
    }

    /// The token of `place` in the same feed.
    pub fn at(self, place: Place) -> Self {
        Self {
            seq: place.seq,
            mark: place.mark,
            ..self
        }
    }

    /// The place it names.
    pub fn place(&self) -> Place {
        Place {
            seq: self.seq,
            mark: self.mark,
        }
    }

    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.push(TOKEN_VERSION);
        bytes.extend_from_slice(&self.feed);
        bytes.extend_from_slice(&self.seq.to_be_bytes());
        bytes.extend_from_slice(&self.mark.to_be_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Parses a token's text; says what is wrong for the field's violation.
    pub fn decode(text: &str) -> Result<Self, String> {
        const MALFORMED: &str =
            "is not a resume token: pass one from a WatchEventsResponse unchanged";
        let malformed = || MALFORMED.to_owned();
        if text.len() > MAX_TOKEN_CHARS {
            return Err(malformed());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| malformed())?;
        let (feed, seq, mark) = match bytes.as_slice() {
            [TOKEN_VERSION, rest @ ..] if rest.len() == TOKEN_BYTES - 1 => {
                (&rest[..16], &rest[16..24], Some(&rest[24..]))
            }
            [1, rest @ ..] if rest.len() == TOKEN_V1_BYTES - 1 => {
                (&rest[..16], &rest[16..24], None)
            }
            _ => return Err(malformed()),
        };
        let number = |bytes: &[u8]| -> Result<u64, String> {
            Ok(u64::from_be_bytes(
                bytes.try_into().map_err(|_| malformed())?,
            ))
        };
        Ok(Self {
            feed: feed.try_into().map_err(|_| malformed())?,
            seq: number(seq)?,
            mark: mark.map(number).transpose()?.unwrap_or(0),
        })
    }

    /// Checks the token against the feed as it stands: it must be this
    /// feed's, not behind what was pruned, and of this history (`held`:
    /// what the feed holds at the token's number).
    pub fn check(&self, position: &FeedPosition, held: Held) -> Result<()> {
        if self.feed != feed_bytes(&position.feed_id)? {
            return Err(Error::invalid(
                "resume_token",
                "belongs to another latchkey deployment's feed",
            ));
        }
        if self.seq > position.head || !held.holds(self.place()) {
            return Err(Error::FailedPrecondition(
                Reason::FeedResyncRequired,
                "this resume token belongs to a history of the feed that the database no longer has (a failover to a standby that had not received every event, or a restore from a backup): events it was given may be gone and others took their places; resync from the source of truth, then watch without a token".to_owned(),
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

/// The status that ends a stream whose history is gone.
pub fn resync_required(what: &str) -> Error {
    Error::FailedPrecondition(
        Reason::FeedResyncRequired,
        format!("{what}: the change feed's history changed (a failover to a standby that had not received every event, or a restore from a backup), so events this stream sent may be gone and others took their places; resync from the source of truth, then watch without a token"),
    )
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

    const MARK: u64 = 0x5eed;

    fn at(seq: u64) -> Place {
        Place { seq, mark: MARK }
    }

    #[test]
    fn tokens_round_trip_and_are_checked_against_the_feed() {
        let token = ResumeToken::new(FEED, at(41)).unwrap();
        let decoded = ResumeToken::decode(&token.encode()).unwrap();
        assert_eq!(decoded, token);
        let here = Held::Mark(MARK);
        assert!(decoded.check(&position(41, 0), here).is_ok());
        assert!(
            decoded.check(&position(100, 41), here).is_ok(),
            "the next one is kept"
        );
        assert!(
            decoded.check(&position(100, 41), Held::Pruned).is_ok(),
            "at the horizon nothing is left to compare with"
        );
        assert!(matches!(
            decoded.check(&position(100, 42), Held::Pruned),
            Err(Error::FailedPrecondition(Reason::WatchTokenExpired, _))
        ));
        let foreign = FeedPosition {
            feed_id: "ffeeddccbbaa99887766554433221100".to_owned(),
            ..position(100, 0)
        };
        assert!(matches!(
            decoded.check(&foreign, here),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn a_token_of_a_lost_history_must_resync() {
        let token = ResumeToken::new(FEED, at(41)).unwrap();
        for (position, held) in [
            (position(40, 0), Held::Missing),
            (position(100, 0), Held::Mark(MARK + 1)),
            (position(100, 0), Held::Mark(0)),
            (position(100, 0), Held::Missing),
        ] {
            assert!(
                matches!(
                    token.check(&position, held),
                    Err(Error::FailedPrecondition(Reason::FeedResyncRequired, _))
                ),
                "{position:?} {held:?}"
            );
        }
        assert!(Held::at(0, None, 0).holds(Place::START));
        assert_eq!(Held::at(5, None, 5), Held::Pruned);
        assert_eq!(Held::at(6, None, 5), Held::Missing);
        assert_eq!(Held::at(6, Some(9), 5), Held::Mark(9));
        assert_ne!(new_mark(), 0);
    }

    #[test]
    fn version_1_tokens_name_events_from_before_marks() {
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&feed_bytes(FEED).unwrap());
        bytes.extend_from_slice(&41u64.to_be_bytes());
        let old = ResumeToken::decode(&URL_SAFE_NO_PAD.encode(bytes)).unwrap();
        assert_eq!(
            old,
            ResumeToken::new(FEED, Place { seq: 41, mark: 0 }).unwrap()
        );
        assert!(old.check(&position(50, 0), Held::Mark(0)).is_ok());
        assert!(matches!(
            old.check(&position(50, 0), Held::Mark(MARK)),
            Err(Error::FailedPrecondition(Reason::FeedResyncRequired, _))
        ));
    }

    #[test]
    fn the_target_view_keeps_which_changed_and_when_only() {
        let username = Username::parse("alice@example.com").unwrap();
        let id = uuid::Uuid::nil();
        let mut event = AuditEvent::new(
            EventType::AppPasswordUpdated,
            crate::domain::shared::time::Timestamp::from_millis(5),
            &Actor::system("portal"),
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
        let mut expected = AuditEvent::new(event.event_type, event.at, &Actor::system(""))
            .app_password(&username, id);
        expected.id = 7;
        assert_eq!(shown, expected);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = ResumeToken::new(FEED, at(7)).unwrap().encode();
        for bad in [
            String::new(),
            "x".to_owned(),
            "not base64 !".to_owned(),
            good[..good.len() - 2].to_owned(),
            format!("{good}AA"),
            "A".repeat(200),
            URL_SAFE_NO_PAD.encode([3u8; TOKEN_BYTES]),
            URL_SAFE_NO_PAD.encode([1u8; TOKEN_BYTES]),
        ] {
            assert!(ResumeToken::decode(&bad).is_err(), "{bad:?}");
        }
    }
}
