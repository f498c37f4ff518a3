//! A target's deliverer: one task per target on every replica; the one
//! holding the target's lease delivers, the others wait to take it over.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::model::{Delivery, Signed, Target, FIRST_BACKOFF};
use super::store::WebhookStore;
use crate::domain::audit::feed::{FeedFilter, FeedPosition, Held, Place};
use crate::domain::audit::store::AuditStore;
use crate::domain::audit::watch::PAGE;
use crate::domain::shared::backoff::Backoff;
use crate::domain::shared::error::Result;
use crate::domain::shared::time::{Clock, Timestamp};

/// How long a lease lasts unless renewed (at least three request
/// timeouts): a replica that dies with it is replaced within this. The
/// holder renews it at a third of it.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a replica that does not hold a target's lease tries to take
/// it: a lease given up at a stop is taken over within this. The try is
/// an UPDATE that matches no row while the lease is held.
const TAKE_OVER_EVERY: Duration = Duration::from_secs(2);

/// Sends one attempt: the delivery, with the headers of its signature.
/// The wiring's HTTP client; the deliverer bounds it with the target's
/// timeout.
pub trait Post: Send + Sync + 'static {
    /// The status code the target answered, or why there was none.
    fn post(
        &self,
        delivery: &Delivery,
        signed: &Signed,
    ) -> impl Future<Output = std::result::Result<u16, String>> + Send;
}

/// A target's counters on this replica, for metrics and tests.
#[derive(Debug, Default)]
pub struct TargetStats {
    delivered: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    lag: AtomicU64,
}

/// What [`TargetStats`] held when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCounts {
    pub target: String,
    /// Events the target answered with a 2xx.
    pub delivered: u64,
    /// Attempts that failed: a non-2xx answer, no answer within the
    /// timeout, or no connection.
    pub failed: u64,
    /// Feed places pruned (`audit.retention_days`) before they were
    /// delivered: an upper bound of the target's events lost, since the
    /// pruned ones' types are not known.
    pub skipped: u64,
    /// Feed places between the target's cursor and the feed's head, as
    /// the lease holder last saw them (0 on the other replicas).
    pub lag: u64,
}

/// The counters of every target on this replica; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct WebhookStats {
    targets: Arc<Vec<(String, Arc<TargetStats>)>>,
}

impl WebhookStats {
    pub fn counts(&self) -> Vec<TargetCounts> {
        self.targets
            .iter()
            .map(|(target, stats)| TargetCounts {
                target: target.clone(),
                delivered: stats.delivered.load(Relaxed),
                failed: stats.failed.load(Relaxed),
                skipped: stats.skipped.load(Relaxed),
                lag: stats.lag.load(Relaxed),
            })
            .collect()
    }
}

/// Every target's deliverer, made before the server serves.
pub struct Webhooks<S, P> {
    deliverers: Vec<Deliverer<S, P>>,
    stats: WebhookStats,
}

impl<S: WebhookStore + AuditStore, P: Post> Webhooks<S, P> {
    /// A deliverer per target, each with its own client.
    pub fn new(
        targets: Vec<(Target, P)>,
        store: &S,
        clock: &Arc<dyn Clock>,
        poll: Duration,
    ) -> Self {
        let deliverers: Vec<Deliverer<S, P>> = targets
            .into_iter()
            .map(|(target, post)| Deliverer {
                post,
                filter: FeedFilter {
                    event_types: target.event_types.clone(),
                    username: None,
                    tenant: None,
                },
                lease: LEASE.max(target.timeout * 3),
                target,
                store: store.clone(),
                clock: Arc::clone(clock),
                holder: format!("{:032x}", rand::random::<u128>()),
                poll,
                stats: Arc::default(),
            })
            .collect();
        let stats = WebhookStats {
            targets: Arc::new(
                deliverers
                    .iter()
                    .map(|d| (d.target.name.clone(), Arc::clone(&d.stats)))
                    .collect(),
            ),
        };
        Self { deliverers, stats }
    }

    pub fn stats(&self) -> WebhookStats {
        self.stats.clone()
    }

    /// The deliverers, to be run each in a task of its own.
    pub fn into_deliverers(self) -> Vec<Deliverer<S, P>> {
        self.deliverers
    }
}

/// One target's deliverer on one replica.
pub struct Deliverer<S, P> {
    target: Target,
    filter: FeedFilter,
    store: S,
    post: P,
    clock: Arc<dyn Clock>,
    /// This deliverer's id in the lease: random, for this process's life.
    holder: String,
    lease: Duration,
    /// How often the holder looks for new events while caught up.
    poll: Duration,
    stats: Arc<TargetStats>,
}

/// How a spell of holding the lease ended.
enum Spell {
    /// The server is stopping.
    Stopped,
    /// Another replica holds the lease (or took it over).
    NotHolder,
}

/// How delivering one event ended.
enum Attempts {
    /// The target answered 2xx.
    Delivered,
    /// Retention pruned it before it was delivered.
    Pruned,
    Ended(Spell),
}

/// The lease holder's state between two writes of its cursor.
struct Holding {
    place: Place,
    renewed: Instant,
}

impl<S: WebhookStore + AuditStore, P: Post> Deliverer<S, P> {
    /// Delivers while this replica holds the target's lease, waits for it
    /// while another does, until `stop`; then gives the lease up.
    ///
    /// ```text
    ///            take_lease ok                 stop
    ///  waiting ───────────────→ holding ──────────────→ released
    ///     ↑  ←─────────────────   │ ↺ deliver, advance
    ///     │   lease lost / held    │
    ///     └── storage error ←──────┘ (retried after a wait)
    /// ```
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let name = self.target.name.as_str();
        let mut errors = Backoff::new(FIRST_BACKOFF, self.lease / 3);
        loop {
            let wait = match self.hold(&mut stop).await {
                Ok(Spell::Stopped) => break,
                Ok(Spell::NotHolder) => {
                    errors.reset();
                    self.stats.lag.store(0, Relaxed);
                    TAKE_OVER_EVERY
                }
                Err(error) => {
                    tracing::warn!(target = name, %error, "webhook delivery: the database failed; will retry");
                    errors.next_wait()
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
        if let Err(error) = self.store.release(name, &self.holder).await {
            tracing::warn!(target = name, %error, "webhook delivery: giving the lease up failed; another replica takes it when it runs out");
        }
    }

    fn until(&self) -> Timestamp {
        self.clock.now().saturating_add(self.lease)
    }

    /// Takes the lease and delivers until it is lost or the server stops.
    async fn hold(&self, stop: &mut watch::Receiver<bool>) -> Result<Spell> {
        let name = self.target.name.as_str();
        if !self.store.has_cursor(name).await? {
            // A new target starts at the feed's head, as a WatchEvents
            // stream without a token does.
            let position = self.store.feed_position().await?;
            let start = self.place_at(position.head, &position).await?;
            self.store.open_cursor(name, start).await?;
        }
        let now = self.clock.now();
        let Some(place) = self
            .store
            .take_lease(name, &self.holder, now, self.until())
            .await?
        else {
            return Ok(Spell::NotHolder);
        };
        tracing::info!(
            target = name,
            seq = place.seq,
            "delivering webhooks from this replica"
        );
        let mut holding = Holding {
            place,
            renewed: Instant::now(),
        };
        loop {
            let position = self.store.feed_position().await?;
            self.stats
                .lag
                .store(position.head.saturating_sub(holding.place.seq), Relaxed);
            if position.head > holding.place.seq || position.pruned_through > holding.place.seq {
                if let Some(spell) = self.deliver_page(&position, &mut holding, stop).await? {
                    return Ok(spell);
                }
                continue;
            }
            if !self.renew_if_due(&mut holding).await? {
                return Ok(Spell::NotHolder);
            }
            tokio::select! {
                () = tokio::time::sleep(self.poll) => {}
                _ = stop.wait_for(|stop| *stop) => return Ok(Spell::Stopped),
            }
        }
    }

    /// Reads the page after the cursor and delivers it, moving the cursor
    /// past each event delivered (and past the events the filter left
    /// out, so the cursor keeps up with the feed). `Some` when the spell
    /// ends.
    async fn deliver_page(
        &self,
        position: &FeedPosition,
        holding: &mut Holding,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<Spell>> {
        let name = self.target.name.as_str();
        let place = holding.place;
        let page = self
            .store
            .read_feed(place.seq, position.head, &self.filter, PAGE)
            .await?;
        // After the page: pruning moves the horizon before it deletes, so
        // a page that lost events to a prune sees a horizon past `place`.
        let pruned_through = self.store.feed_position().await?.pruned_through;
        if pruned_through > place.seq {
            let skipped = pruned_through - place.seq;
            tracing::error!(
                target = name,
                from = place.seq,
                through = pruned_through,
                skipped,
                "webhook target fell behind the audit retention (audit.retention_days): events were pruned before they were delivered; carrying on from the oldest event held"
            );
            self.stats.skipped.fetch_add(skipped, Relaxed);
            return self
                .move_to(
                    holding,
                    Place {
                        seq: pruned_through,
                        mark: 0,
                    },
                )
                .await;
        }
        if !Held::at(place.seq, page.after_mark, pruned_through).holds(place) {
            let restart = place.seq.min(position.head);
            tracing::error!(
                target = name,
                seq = place.seq,
                head = position.head,
                "the change feed's history changed (a failover to a standby that had not received every event, or a restore): events delivered from the lost history stay delivered, and the target must resync from the source of truth; carrying on from the new history"
            );
            let restart = self.place_at(restart, position).await?;
            // Bounded: a history that still does not hold the new place
            // is read again after a poll, not at once.
            tokio::time::sleep(self.poll).await;
            return self.move_to(holding, restart).await;
        }
        let full = page.events.len() == PAGE as usize;
        for event in &page.events {
            let delivery = Delivery::of(&position.feed_id, event)
                .map_err(crate::domain::shared::error::Error::internal)?;
            match self.deliver(&delivery, holding, stop).await? {
                Attempts::Delivered => {}
                // Read again: the page's start finds the horizon past it.
                Attempts::Pruned => return Ok(None),
                Attempts::Ended(spell) => return Ok(Some(spell)),
            }
            self.stats.delivered.fetch_add(1, Relaxed);
            if let Some(spell) = self.move_to(holding, event.place()).await? {
                return Ok(Some(spell));
            }
            self.stats
                .lag
                .store(position.head.saturating_sub(event.seq), Relaxed);
        }
        if !full {
            let through =
                Held::at(position.head, page.through_mark, pruned_through).place(position.head);
            if let Some(through) = through.filter(|through| *through != holding.place) {
                return self.move_to(holding, through).await;
            }
        }
        Ok(None)
    }

    /// Sends `delivery` until the target answers 2xx, or retention prunes
    /// it while it is retried (then it is skipped as the page's start is:
    /// the cursor has fallen behind what the feed holds), or the spell
    /// ends.
    async fn deliver(
        &self,
        delivery: &Delivery,
        holding: &mut Holding,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Attempts> {
        let name = self.target.name.as_str();
        let mut backoff = Backoff::new(FIRST_BACKOFF, self.target.max_backoff);
        let mut attempt = 0u32;
        loop {
            if !self.renew_if_due(holding).await? {
                return Ok(Attempts::Ended(Spell::NotHolder));
            }
            if attempt > 0 {
                let position = self.store.feed_position().await?;
                if position.pruned_through > holding.place.seq {
                    return Ok(Attempts::Pruned);
                }
                // The head moves on while this event waits.
                self.stats
                    .lag
                    .store(position.head.saturating_sub(holding.place.seq), Relaxed);
            }
            attempt = attempt.saturating_add(1);
            let timestamp = self.clock.now().as_millis().div_euclid(1000);
            let signed = delivery.sign(&self.target.key, timestamp);
            let sent = tokio::time::timeout(self.target.timeout, self.post.post(delivery, &signed));
            let why = tokio::select! {
                sent = sent => match sent {
                    Ok(Ok(status)) if (200..300).contains(&status) => return Ok(Attempts::Delivered),
                    Ok(Ok(status)) => format!("answered {status}"),
                    Ok(Err(why)) => why,
                    Err(_) => format!("no answer within {} s", self.target.timeout.as_secs()),
                },
                _ = stop.wait_for(|stop| *stop) => return Ok(Attempts::Ended(Spell::Stopped)),
            };
            self.stats.failed.fetch_add(1, Relaxed);
            let wait = backoff.next_wait();
            tracing::warn!(
                target = name,
                seq = delivery.seq,
                attempt,
                retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                why = %why,
                "a webhook delivery failed; will retry"
            );
            // Asleep in steps, renewing the lease between them: a long
            // backoff keeps the target on this replica.
            let until = Instant::now() + wait;
            while Instant::now() < until {
                let step = until.min(Instant::now() + self.lease / 3);
                tokio::select! {
                    () = tokio::time::sleep_until(step) => {}
                    _ = stop.wait_for(|stop| *stop) => return Ok(Attempts::Ended(Spell::Stopped)),
                }
                if !self.renew_if_due(holding).await? {
                    return Ok(Attempts::Ended(Spell::NotHolder));
                }
            }
        }
    }

    /// Writes the cursor at `place` (renewing the lease); `Some` when the
    /// lease was lost.
    async fn move_to(&self, holding: &mut Holding, place: Place) -> Result<Option<Spell>> {
        let name = self.target.name.as_str();
        if !self
            .store
            .advance(name, &self.holder, place, self.until())
            .await?
        {
            tracing::warn!(
                target = name,
                "another replica took this webhook target's lease; it delivers from now on"
            );
            return Ok(Some(Spell::NotHolder));
        }
        holding.place = place;
        holding.renewed = Instant::now();
        Ok(None)
    }

    /// Renews the lease when a third of it has passed since the last
    /// write; `false` when it was lost.
    async fn renew_if_due(&self, holding: &mut Holding) -> Result<bool> {
        if holding.renewed.elapsed() < self.lease / 3 {
            return Ok(true);
        }
        let place = holding.place;
        Ok(self.move_to(holding, place).await?.is_none())
    }

    /// The place at `seq` in the feed's history now.
    async fn place_at(&self, seq: u64, position: &FeedPosition) -> Result<Place> {
        let page = self.store.read_feed(seq, seq, &self.filter, 0).await?;
        Ok(Held::at(seq, page.after_mark, position.pruned_through)
            .place(seq)
            .unwrap_or(Place { seq, mark: 0 }))
    }
}
