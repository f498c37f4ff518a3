//! Time as the rules see it. Rules take the time from a [`Clock`] handed to
//! them, never from the system directly, and background work waits on the
//! same clock, so tests move time instead of sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use uuid::timestamp::context::ContextV7;
use uuid::Uuid;

pub use super::span::{in_words, Span};
use super::sync::lock;

/// Milliseconds since the Unix epoch; the unit every table stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// A duration in whole milliseconds, saturating at `i64::MAX`.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Timestamp {
    /// 9999-12-31T23:59:59.999Z, the last instant a protobuf Timestamp (and
    /// so every JSON client of the API) can express; later ones are refused
    /// where they enter.
    pub const LATEST: Timestamp = Timestamp(253_402_300_799_999);

    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// `None` when the result would not fit, which only a hostile or absurd
    /// duration can cause; for input that must be refused rather than
    /// clamped.
    pub fn checked_add(self, duration: Duration) -> Option<Self> {
        let millis = i64::try_from(duration.as_millis()).ok()?;
        self.0.checked_add(millis).map(Self)
    }

    /// `duration` later, clamped at the end of representable time.
    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(millis(duration)))
    }

    /// `duration` earlier, clamped at the start of representable time.
    pub fn saturating_sub(self, duration: Duration) -> Self {
        Self(self.0.saturating_sub(millis(duration)))
    }

    /// How long after `earlier` this is; zero when `earlier` is not earlier
    /// (a clock moved backwards never makes a negative age).
    pub fn since(self, earlier: Timestamp) -> Duration {
        let elapsed = self.0.saturating_sub(earlier.0).max(0);
        Duration::from_millis(u64::try_from(elapsed).unwrap_or(0))
    }

    /// Whether less than `duration` has passed from `earlier` to this, and
    /// `earlier` is not in the future: "`earlier` is recent as of now".
    pub fn within(self, earlier: Timestamp, duration: Duration) -> bool {
        earlier <= self && self.since(earlier) < duration
    }

    /// RFC 3339 in UTC, `2026-03-01T00:00:00Z`, with milliseconds only
    /// when there are any (`…:00.250Z`): for texts people read, such as
    /// audit details.
    pub fn to_rfc3339(self) -> String {
        const DAY: i64 = 86_400_000;
        let (days, millis) = (self.0.div_euclid(DAY), self.0.rem_euclid(DAY));
        // Days since 1970-01-01 to a civil date (Howard Hinnant's
        // `civil_from_days`), in eras of 400 years.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
        let month = if shifted_month < 10 {
            shifted_month + 3
        } else {
            shifted_month - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        let seconds = millis / 1_000;
        let (hour, minute, second) = (seconds / 3_600, seconds / 60 % 60, seconds % 60);
        let fraction = match millis % 1_000 {
            0 => String::new(),
            ms => format!(".{ms:03}"),
        };
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z")
    }
}

/// A boxed future, so that a clock can be a trait object.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Resolves once this clock has moved `duration` past the time of the
    /// call. Background work (usage flushes, pruning) waits with this, so
    /// it follows the same clock as the rules.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(millis(since_epoch))
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that only moves when told to; for tests that exercise expiry,
/// pruning and flushing through the real server. Whatever sleeps on it
/// wakes when it is moved far enough.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<ManualInner>);

#[derive(Debug)]
struct ManualInner {
    millis: AtomicI64,
    moved: Notify,
    /// Sleeps being waited on now.
    asleep: AtomicUsize,
    /// Times a sleep woke to look at the clock after a move.
    looked: AtomicU64,
}

/// Counts a sleep as asleep while it is waited on.
struct Asleep(Arc<ManualInner>);

impl Asleep {
    fn new(inner: Arc<ManualInner>) -> Self {
        inner.asleep.fetch_add(1, Ordering::SeqCst);
        Self(inner)
    }
}

impl Drop for Asleep {
    fn drop(&mut self) {
        self.0.asleep.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ManualClock {
    pub fn starting_at(start: Timestamp) -> Self {
        Self(Arc::new(ManualInner {
            millis: AtomicI64::new(start.as_millis()),
            moved: Notify::new(),
            asleep: AtomicUsize::new(0),
            looked: AtomicU64::new(0),
        }))
    }

    pub fn set(&self, to: Timestamp) {
        self.0.millis.store(to.as_millis(), Ordering::SeqCst);
        self.0.moved.notify_waiters();
    }

    pub fn advance(&self, by: Duration) {
        self.0.millis.fetch_add(millis(by), Ordering::SeqCst);
        self.0.moved.notify_waiters();
    }

    /// How many sleeps on this clock are being waited on now.
    pub fn asleep(&self) -> usize {
        self.0.asleep.load(Ordering::SeqCst)
    }

    /// Moves the clock by `by`, then waits (on real time, at most `within`)
    /// until every task that was asleep on it has seen the move: each
    /// looked at the clock again, and as many are asleep as before, so one
    /// that woke has done what it woke for and gone back to sleep. What a
    /// test asserts did not happen at the moved time then did not happen,
    /// however slow the machine. `false` if that did not come within
    /// `within`.
    pub async fn advance_and_settle(&self, by: Duration, within: Duration) -> bool {
        let asleep = self.0.asleep.load(Ordering::SeqCst);
        let looked = self.0.looked.load(Ordering::SeqCst);
        self.advance(by);
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.0.looked.load(Ordering::SeqCst) >= looked + asleep as u64
                && self.0.asleep.load(Ordering::SeqCst) >= asleep
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.millis.load(Ordering::SeqCst))
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let inner = Arc::clone(&self.0);
        let until = self.now().saturating_add(duration);
        Box::pin(async move {
            let _asleep = Asleep::new(Arc::clone(&inner));
            loop {
                // Registered before the check, so a move between the check
                // and the wait still wakes it.
                let moved = inner.moved.notified();
                tokio::pin!(moved);
                moved.as_mut().enable();
                if inner.millis.load(Ordering::SeqCst) >= until.as_millis() {
                    return;
                }
                moved.await;
                inner.looked.fetch_add(1, Ordering::SeqCst);
            }
        })
    }
}

/// How far apart two clocks of one deployment may be: replicas' (a use
/// may reach the database that much late) and a caller's (a change it
/// reports may be dated that much in our future).
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// A new time-ordered id (UUIDv7) stamped with `now` from the injected
/// clock. Ids made in the same millisecond still sort in the order they
/// were made: one process-wide counter orders them.
pub fn new_id(now: Timestamp) -> Uuid {
    static CONTEXT: Mutex<ContextV7> = Mutex::new(ContextV7::new());
    let millis = u64::try_from(now.as_millis()).unwrap_or(0);
    let context = lock(&CONTEXT);
    Uuid::new_v7(uuid::Timestamp::from_unix(
        &*context,
        millis / 1000,
        u32::try_from(millis % 1000).unwrap_or(0) * 1_000_000,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_millis(millis)
    }

    #[test]
    fn arithmetic_saturates_and_never_goes_negative() {
        assert_eq!(at(1_000).saturating_add(Duration::from_secs(2)), at(3_000));
        assert_eq!(at(1_000).saturating_sub(Duration::from_secs(2)), at(-1_000));
        assert_eq!(
            at(i64::MAX - 1).saturating_add(Duration::from_secs(1)),
            at(i64::MAX)
        );
        assert_eq!(at(0).saturating_add(Duration::MAX), at(i64::MAX));
        assert_eq!(at(0).checked_add(Duration::MAX), None);
        assert_eq!(at(3_500).since(at(1_000)), Duration::from_millis(2_500));
        assert_eq!(at(1_000).since(at(3_500)), Duration::ZERO);
        assert!(at(1_999).within(at(1_000), Duration::from_secs(1)));
        assert!(!at(2_000).within(at(1_000), Duration::from_secs(1)));
        assert!(!at(1_000).within(at(1_001), Duration::from_secs(1)));
    }

    #[test]
    fn rfc3339_is_utc_with_milliseconds_only_when_there_are_any() {
        assert_eq!(at(0).to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(at(1_767_225_600_000).to_rfc3339(), "2026-01-01T00:00:00Z");
        assert_eq!(
            at(1_772_323_200_250).to_rfc3339(),
            "2026-03-01T00:00:00.250Z"
        );
        // A leap day, and the day before a March 1st.
        assert_eq!(at(951_782_400_000).to_rfc3339(), "2000-02-29T00:00:00Z");
        assert_eq!(
            at(1_709_251_199_999).to_rfc3339(),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(at(-1).to_rfc3339(), "1969-12-31T23:59:59.999Z");
        assert_eq!(Timestamp::LATEST.to_rfc3339(), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn ids_follow_the_clock_and_sort_in_order_within_a_millisecond() {
        let ids: Vec<Uuid> = (0..100).map(|_| new_id(at(1_767_225_600_000))).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        let (seconds, _) = ids[0].get_timestamp().unwrap().to_unix();
        assert_eq!(seconds, 1_767_225_600);
        assert!(new_id(at(1_767_225_600_001)) > ids[99]);
    }

    #[tokio::test]
    async fn a_sleep_on_the_manual_clock_ends_when_the_clock_is_moved() {
        let clock = ManualClock::starting_at(at(0));
        let sleeping = tokio::spawn(clock.sleep(Duration::from_secs(60)));
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!sleeping.is_finished());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleeping)
            .await
            .unwrap()
            .unwrap();
    }
}
