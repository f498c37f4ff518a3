//! WatchEvents: streams of the change feed, each a task that reads the
//! feed from storage after its place and hands events to its stream.
//!
//! One task per replica follows the feed's head ([`EventFeed::follow`]):
//! woken by the database where it can (PostgreSQL's NOTIFY, sent by every
//! transaction that writes feed events) and by a bounded poll everywhere,
//! it publishes the newest sequence number on a watch channel. A stream's
//! task sleeps on that channel, reads what is new in pages, and sends each
//! event into a small bounded channel that the transport drains as the
//! client reads. A slow or stalled client therefore costs one page and the
//! channel (and the transport's flow-control windows), never the backlog:
//! its task waits on the send and reads on from its place later.
//!
//! Every read is anchored: it also reads the marks of the events at its
//! two ends, in the same statement, and a place whose mark the database no
//! longer holds there is a history that is gone (a failover to a standby
//! that lost events). The follower checks the head it published at every
//! wake-up, so it also sees a head that went back, and then ends every
//! stream with FEED_RESYNC_REQUIRED; a stream checks its own place at each
//! read. Neither ever steps from one history into another silently.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::event::{AuditEvent, EventType};
use super::feed::{
    resync_required, EventView, FeedEvent, FeedFilter, FeedPosition, Held, Place, ResumeToken,
    WatchConfig,
};
use super::store::AuditStore;
use crate::domain::shared::error::{Error, Reason, Result};
use crate::domain::shared::sync::lock;

/// Events read from storage at once, per stream.
pub const PAGE: u32 = 256;
/// The least time between two checkpoints of one stream: a watcher whose
/// filter leaves most events out learns its place at this pace, not at
/// every commit.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Feed reads one replica runs at once, whatever the number of streams: a
/// commit wakes every stream, and their reads must not crowd the pool's
/// connections out from under logins.
const CONCURRENT_READS: usize = 4;
/// Items waiting between a stream's task and its transport. Items ready
/// together are encoded into one HTTP/2 write, so this is also how many
/// messages a backlog's writes carry at most (~10 KiB): big frames, which
/// clients' HTTP/2 libraries prefer (h2 closes a connection that buffers
/// too many unread frames under 256 bytes).
const CHANNEL: usize = 64;

/// What a watcher asks for.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// The caller's name: its streams are counted against its limit.
    pub caller: String,
    pub filter: FeedFilter,
    /// How much of each event the stream carries (by the caller's role).
    pub view: EventView,
    /// Where to start: after this token's place, or (`None`) after the
    /// newest event now.
    pub resume: Option<ResumeToken>,
}

/// What a stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    /// An event, and the token of its place.
    Event {
        event: AuditEvent,
        token: ResumeToken,
    },
    /// No event, only a newer place: sent first (so a watcher has a token
    /// before any event arrives) and whenever the stream has caught up
    /// past events its filter left out (so its token keeps up with the
    /// feed and does not fall behind retention while nothing matches).
    Checkpoint(ResumeToken),
}

/// Counters of the feed on this replica, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchStats {
    /// Streams open now.
    pub watchers: u64,
    /// Events read from storage for streams, all told.
    pub events_read: u64,
    /// Events handed to streams' transports, all told.
    pub events_sent: u64,
}

/// The change feed's streams; cheap to clone.
#[derive(Clone)]
pub struct EventFeed<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    store: S,
    config: WatchConfig,
    /// The newest place this replica knows of.
    head: watch::Sender<Place>,
    /// Counts the times the follower saw the feed's history change: each
    /// ends every stream open then (FEED_RESYNC_REQUIRED).
    resyncs: watch::Sender<u64>,
    /// Set when the server stops: streams end.
    closing: watch::Sender<bool>,
    /// Told when a stream opens, so the follower, idle while nobody
    /// watches, wakes.
    opened: tokio::sync::Notify,
    /// Callers the follower saw revoked in the feed since this replica
    /// started: their streams end.
    revoked: watch::Sender<HashSet<String>>,
    reads: tokio::sync::Semaphore,
    watchers: Mutex<Watchers>,
    events_read: std::sync::atomic::AtomicU64,
    events_sent: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Watchers {
    total: u32,
    by_caller: HashMap<String, u32>,
}

/// A stream's place among the watchers, given back when it ends.
struct Slot<S> {
    inner: Arc<Inner<S>>,
    caller: String,
}

impl<S> Drop for Slot<S> {
    fn drop(&mut self) {
        let mut watchers = lock(&self.inner.watchers);
        watchers.total = watchers.total.saturating_sub(1);
        if let Some(count) = watchers.by_caller.get_mut(&self.caller) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                watchers.by_caller.remove(&self.caller);
            }
        }
    }
}

impl<S: AuditStore> EventFeed<S> {
    pub fn new(store: S, config: WatchConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                config,
                head: watch::Sender::new(Place::START),
                resyncs: watch::Sender::new(0),
                closing: watch::Sender::new(false),
                opened: tokio::sync::Notify::new(),
                revoked: watch::Sender::new(HashSet::new()),
                reads: tokio::sync::Semaphore::new(CONCURRENT_READS),
                watchers: Mutex::new(Watchers::default()),
                events_read: 0.into(),
                events_sent: 0.into(),
            }),
        }
    }

    pub fn config(&self) -> &WatchConfig {
        &self.inner.config
    }

    pub fn stats(&self) -> WatchStats {
        use std::sync::atomic::Ordering::Relaxed;
        WatchStats {
            watchers: u64::from(lock(&self.inner.watchers).total),
            events_read: self.inner.events_read.load(Relaxed),
            events_sent: self.inner.events_sent.load(Relaxed),
        }
    }

    /// Opens a stream: checks the caller's limits and the token against
    /// the feed, then starts the stream's task. The receiver ends when the
    /// feed closes (the server stops) or storage fails (its last item is
    /// the error); dropping it ends the task.
    pub async fn watch(&self, request: WatchRequest) -> Result<mpsc::Receiver<Result<WatchItem>>> {
        let slot = self.take_slot(&request.caller)?;
        // Before the start is read: a change of history the follower sees
        // after this read ends this stream too.
        let resyncs = self.inner.resyncs.subscribe();
        let position = self.inner.store.feed_position().await?;
        let start = match request.resume {
            Some(token) => {
                let held = self.held(token.seq, &position, &request.filter).await?;
                token.check(&position, held)?;
                token
            }
            None => {
                let head = self
                    .held(position.head, &position, &request.filter)
                    .await?
                    .place(position.head)
                    .ok_or_else(|| resync_required("the feed's newest event is missing"))?;
                ResumeToken::new(&position.feed_id, head)?
            }
        };
        let (sender, receiver) = mpsc::channel(CHANNEL);
        self.inner.opened.notify_one();
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let stream = Stream {
                inner,
                caller: request.caller,
                filter: request.filter,
                view: request.view,
                start,
                sender,
                resyncs,
            };
            let _ = stream.follow().await;
            drop(slot);
        });
        Ok(receiver)
    }

    /// What the feed holds at `seq` now.
    async fn held(&self, seq: u64, position: &FeedPosition, filter: &FeedFilter) -> Result<Held> {
        let page = self.inner.store.read_feed(seq, seq, filter, 0).await?;
        Ok(Held::at(seq, page.after_mark, position.pruned_through))
    }

    fn take_slot(&self, caller: &str) -> Result<Slot<S>> {
        let config = &self.inner.config;
        let mut watchers = lock(&self.inner.watchers);
        if watchers.total >= config.max_watchers {
            return Err(Error::ResourceExhausted(
                Reason::TooManyWatchers,
                format!(
                    "this replica serves at most {} WatchEvents streams (watch.max_watchers); retry later, or on another replica",
                    config.max_watchers
                ),
            ));
        }
        let count = watchers.by_caller.entry(caller.to_owned()).or_insert(0);
        if *count >= config.max_watchers_per_caller {
            return Err(Error::ResourceExhausted(
                Reason::TooManyWatchers,
                format!(
                    "this caller has {} WatchEvents streams open on this replica, the most it may (watch.max_watchers_per_caller); close one first",
                    config.max_watchers_per_caller
                ),
            ));
        }
        *count += 1;
        watchers.total += 1;
        Ok(Slot {
            inner: Arc::clone(&self.inner),
            caller: caller.to_owned(),
        })
    }

    /// Follows the feed's head until `stop` is set: after every wake-up
    /// (the database's, or the poll's), reads the newest number, checks
    /// that the place it published last is still in the feed's history,
    /// and tells the streams if the head moved, or ends them all if the
    /// history changed. A failed read is logged and retried at the next
    /// wake-up. While no stream is open it only waits for one (a stream
    /// reads its start from the database itself).
    pub async fn follow(&self, mut stop: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.inner.config.poll_interval_ms.max(1));
        loop {
            if lock(&self.inner.watchers).total == 0 {
                self.inner.store.quiet_feed().await;
                tokio::select! {
                    () = self.inner.opened.notified() => {}
                    _ = stop.changed() => return,
                }
            }
            if let Err(error) = self.advance().await {
                tracing::warn!(%error, "reading the change feed's head failed; will retry");
            }
            tokio::select! {
                () = self.inner.store.wait_for_feed(poll) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One look at the feed's head. Only this task publishes heads, each
    /// once the revocations up to it are noted.
    async fn advance(&self) -> Result<()> {
        let position = self.inner.store.feed_position().await?;
        let published = *self.inner.head.borrow();
        let head = if position.head < published.seq {
            None
        } else {
            self.note_revocations(published, &position).await?
        };
        match head {
            Some(head) => {
                if head != published {
                    self.inner.head.send_replace(head);
                }
            }
            None => {
                tracing::warn!(
                    published = published.seq,
                    head = position.head,
                    "the change feed's history changed (the database failed over to a standby that had not received every event, or was restored): every stream ends with FEED_RESYNC_REQUIRED"
                );
                // The streams first: none reads on into the new history.
                self.inner.resyncs.send_modify(|count| *count += 1);
                let any = FeedFilter {
                    event_types: vec![EventType::CallerRevoked],
                    username: None,
                    tenant: None,
                };
                let head = self
                    .held(position.head, &position, &any)
                    .await?
                    .place(position.head)
                    .unwrap_or(Place::START);
                self.inner.head.send_replace(head);
            }
        }
        Ok(())
    }

    /// Notes the callers revoked after `from` up to the head of
    /// `position`, before the streams hear of the new head: a revoked
    /// caller's streams end before they could send what follows its
    /// revocation. Returns the head's place, or `None` when `from` is no
    /// longer in the feed's history (or the head is missing).
    async fn note_revocations(
        &self,
        from: Place,
        position: &FeedPosition,
    ) -> Result<Option<Place>> {
        let filter = FeedFilter {
            event_types: vec![EventType::CallerRevoked],
            username: None,
            tenant: None,
        };
        let through = position.head;
        let mut place = from;
        loop {
            let page = self
                .inner
                .store
                .read_feed(place.seq, through, &filter, PAGE)
                .await?;
            if !Held::at(place.seq, page.after_mark, position.pruned_through).holds(place) {
                return Ok(None);
            }
            let names: Vec<String> = page
                .events
                .iter()
                .filter_map(|event| event.event.caller_name.clone())
                .collect();
            if !names.is_empty() {
                self.inner
                    .revoked
                    .send_modify(|revoked| revoked.extend(names));
            }
            match page.events.last() {
                Some(last) if page.events.len() == PAGE as usize => place = last.place(),
                _ => {
                    return Ok(
                        Held::at(through, page.through_mark, position.pruned_through)
                            .place(through),
                    )
                }
            }
        }
    }

    /// Ends every stream (the server is stopping): each ends with an
    /// UNAVAILABLE status, and its client resumes elsewhere from its last
    /// token.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Resolves once the feed closes (the server is stopping).
    pub async fn closed(&self) {
        let mut closing = self.inner.closing.subscribe();
        let _ = closing.wait_for(|closing| *closing).await;
    }
}

/// One stream's task.
struct Stream<S> {
    inner: Arc<Inner<S>>,
    caller: String,
    filter: FeedFilter,
    view: EventView,
    start: ResumeToken,
    sender: mpsc::Sender<Result<WatchItem>>,
    /// Changes when the follower sees the feed's history change.
    resyncs: watch::Receiver<u64>,
}

/// Why a stream's task stopped sending.
struct Ended;

impl<S: AuditStore> Stream<S> {
    async fn follow(&self) -> Result<(), Ended> {
        let mut head = self.inner.head.subscribe();
        // Waited on below; `self.resyncs` itself is only looked at, so it
        // still says whether the count changed since the stream opened.
        let mut resyncs = self.resyncs.clone();
        let mut closing = self.inner.closing.subscribe();
        let mut revoked = self.inner.revoked.subscribe();
        let mut token = self.start;
        self.send(Ok(WatchItem::Checkpoint(token)), &mut closing)
            .await?;
        let mut told = token.seq;
        let mut told_at = tokio::time::Instant::now();
        loop {
            // The head first: the follower notes revocations and changes
            // of history before it publishes a head past them, so a head
            // read here that holds what follows one is checked against it
            // just below, before anything is read up to it.
            let newest = *head.borrow_and_update();
            if revoked.borrow_and_update().contains(&self.caller) {
                let revoked = Error::Unauthenticated(
                    "this caller was revoked; its streams are closed".to_owned(),
                );
                return Err(self.end_with(revoked, &mut closing).await);
            }
            if self.resyncs.has_changed().unwrap_or(true) {
                let error = resync_required("this stream's place is gone");
                return Err(self.end_with(error, &mut closing).await);
            }
            if newest.seq > token.seq {
                let page = match self.read_after(token.place(), newest).await {
                    Ok(page) => page,
                    Err(error) => return Err(self.end_with(error, &mut closing).await),
                };
                let read = page.len();
                self.inner
                    .events_read
                    .fetch_add(read as u64, std::sync::atomic::Ordering::Relaxed);
                for event in page {
                    token = token.at(event.place());
                    self.send(
                        Ok(WatchItem::Event {
                            event: self.view.show(event.event),
                            token,
                        }),
                        &mut closing,
                    )
                    .await?;
                    self.inner
                        .events_sent
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    told = token.seq;
                    told_at = tokio::time::Instant::now();
                }
                if read < PAGE as usize {
                    // Everything up to `newest` is committed and was read,
                    // in the history that holds `newest`.
                    token = token.at(newest);
                }
                continue;
            }
            let checkpoint_due = told_at + CHECKPOINT_EVERY;
            if token.seq > told && tokio::time::Instant::now() >= checkpoint_due {
                self.send(Ok(WatchItem::Checkpoint(token)), &mut closing)
                    .await?;
                told = token.seq;
                told_at = tokio::time::Instant::now();
            }
            let behind = token.seq > told;
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return Err(Ended) },
                changed = revoked.changed() => if changed.is_err() { return Err(Ended) },
                changed = resyncs.changed() => if changed.is_err() { return Err(Ended) },
                () = tokio::time::sleep_until(checkpoint_due), if behind => {}
                _ = closing.wait_for(|closing| *closing) => return Err(Ended),
                () = self.sender.closed() => return Err(Ended),
            }
        }
    }

    /// The page after `place` up to `newest`, under the replica's bound
    /// on concurrent reads; then the pruned horizon, read after the page
    /// (pruning moves the horizon before it deletes, so a page that lost
    /// events to a prune sees a horizon past `place`): such a stream ends
    /// with WATCH_TOKEN_EXPIRED rather than step over what was deleted.
    /// And the page's ends must be in one history with `place` and
    /// `newest` (their marks, read in the page's statement): else the
    /// stream ends with FEED_RESYNC_REQUIRED rather than step from one
    /// history into another.
    async fn read_after(&self, place: Place, newest: Place) -> Result<Vec<FeedEvent>> {
        let store = &self.inner.store;
        let _permit = self
            .inner
            .reads
            .acquire()
            .await
            .map_err(|_| Error::internal("the feed's read bound was closed"))?;
        let page = store
            .read_feed(place.seq, newest.seq, &self.filter, PAGE)
            .await?;
        let pruned_through = store.feed_position().await?.pruned_through;
        if pruned_through > place.seq {
            return Err(Error::FailedPrecondition(
                Reason::WatchTokenExpired,
                "this stream fell behind the audit retention and events were pruned before it read them: resync, then watch without a token".to_owned(),
            ));
        }
        if !Held::at(place.seq, page.after_mark, pruned_through).holds(place) {
            return Err(resync_required("this stream's place is gone"));
        }
        if page.events.len() < PAGE as usize
            && !Held::at(newest.seq, page.through_mark, pruned_through).holds(newest)
        {
            return Err(resync_required(
                "the feed's head this stream was told of is gone",
            ));
        }
        Ok(page.events)
    }

    /// Sends `error` as the stream's last item (unless the feed closes
    /// first) and ends it.
    async fn end_with(&self, error: Error, closing: &mut watch::Receiver<bool>) -> Ended {
        let _ = self.send(Err(error), closing).await;
        Ended
    }

    /// Sends one item, waiting while the stream's channel is full: this
    /// wait is the back-pressure. Ends when the client has gone or the
    /// feed closes.
    async fn send(
        &self,
        item: Result<WatchItem>,
        closing: &mut watch::Receiver<bool>,
    ) -> Result<(), Ended> {
        tokio::select! {
            sent = self.sender.send(item) => sent.map_err(|_| Ended),
            _ = closing.wait_for(|closing| *closing) => Err(Ended),
        }
    }
}
