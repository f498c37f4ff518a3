//! The one check of a loaded configuration: every section's bounds, at
//! load, so that what `Config::load` returns can be used as it is (no
//! clamps where it is wired). Each refusal names its key and the bound.
//! The rules the domain owns (an idle timeout's bounds, the notice window
//! against the usage lag, pruning against the issue bound) are its pure
//! functions, called from here.

use std::time::Duration;

use super::Config;
use crate::domain::app_passwords::model::{
    check_idle_timeout, check_notice_before, check_prune_ended_after,
};
use crate::domain::login::memory::guesses::GUESSES_PER_PAIR;
use crate::domain::shared::time::{in_words, Span};

/// The shortest of the server's timeouts and intervals that count in
/// seconds: HTTP/2 keepalive, the request and idle timeouts.
pub const MIN_SERVER_SECONDS: Duration = Duration::from_secs(1);
/// The shortest handshake and unproven-connection timeouts.
pub const MIN_SERVER_MILLIS: Duration = Duration::from_millis(1);
/// The most often the database is pinged for health.
pub const MIN_HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// The most often housekeeping runs.
pub const MIN_PRUNE_INTERVAL: Duration = Duration::from_secs(1);
/// How often the change feed may poll, at most and at least.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The largest SQLite page cache of one connection, in MiB.
pub const MAX_SQLITE_CACHE_MIB: u64 = 1024;
/// The longest warm window accepted.
pub const MAX_WARM_WINDOW: Duration = Duration::from_secs(90 * 86_400);

/// A duration setting, its key and its bounds.
struct Bounded {
    key: &'static str,
    value: Duration,
    min: Duration,
    max: Option<Duration>,
}

impl Bounded {
    fn at_least(key: &'static str, value: Duration, min: Duration) -> Self {
        Self {
            key,
            value,
            min,
            max: None,
        }
    }

    fn check(&self) -> Result<(), String> {
        let shown = Span::from_duration(self.value);
        if self.value < self.min {
            return Err(format!(
                "{} must be at least {}, not {shown}",
                self.key,
                in_words(self.min)
            ));
        }
        match self.max {
            Some(max) if self.value > max => Err(format!(
                "{} must be at most {}, not {shown}",
                self.key,
                in_words(max)
            )),
            _ => Ok(()),
        }
    }
}

/// A count that must be at least 1, and why.
fn at_least_one<T: PartialEq + Default>(key: &str, value: T, why: &str) -> Result<(), String> {
    if value == T::default() {
        Err(format!("{key} must be at least 1: {why}"))
    } else {
        Ok(())
    }
}

/// `rule(value)`'s refusal, prefixed with the key.
fn named<T>(key: &str, checked: Result<T, String>) -> Result<(), String> {
    checked.map(drop).map_err(|why| format!("{key} {why}"))
}

impl Config {
    /// Checks every section; the first setting out of bounds is refused,
    /// naming its key and the bound. `load` calls it; `App::build` calls it
    /// too, for a configuration made in code.
    pub fn validate(&self) -> Result<(), String> {
        for bounded in self.durations() {
            bounded.check()?;
        }
        at_least_one(
            "server.max_connections_per_peer",
            self.server.max_connections_per_peer,
            "with 0 no peer could connect",
        )?;
        named("database_url", self.database_url.check())?;
        self.check_app_passwords()?;
        self.check_memory()?;
        self.leaks.validate()?;
        self.oauth2.validate()?;
        self.check_watch()?;
        self.check_webhooks()
    }

    /// Each target's fields, and names that tell them apart.
    fn check_webhooks(&self) -> Result<(), String> {
        for (index, target) in self.webhooks.iter().enumerate() {
            target.check(index)?;
            if let Some(first) = self.webhooks[..index]
                .iter()
                .position(|other| other.name == target.name)
            {
                return Err(format!(
                    "webhooks[{index}].name {:?} is webhooks[{first}]'s too: each target needs a name of its own (its metrics and its cursor go by it)",
                    target.name
                ));
            }
        }
        Ok(())
    }

    /// The figures the memory bound is made of (README, "What failed
    /// logins leave behind").
    fn check_memory(&self) -> Result<(), String> {
        let guesses = self.throttle.remembered_guesses;
        if guesses < GUESSES_PER_PAIR {
            return Err(format!(
                "throttle.remembered_guesses must be at least {GUESSES_PER_PAIR} (one pair's \
                 guesses), not {guesses}"
            ));
        }
        let cache = self.database.sqlite_cache_mib;
        if cache > MAX_SQLITE_CACHE_MIB {
            return Err(format!(
                "database.sqlite_cache_mib must be at most {MAX_SQLITE_CACHE_MIB}, not {cache}"
            ));
        }
        Ok(())
    }

    /// Every bounded duration setting.
    fn durations(&self) -> [Bounded; 10] {
        let (server, secs, millis) = (&self.server, Duration::from_secs, Duration::from_millis);
        let warm_window = Bounded {
            key: "verified_cache.warm_window",
            value: secs(self.verified_cache.warm_window_secs),
            min: Duration::ZERO,
            // Only a window that is used is bounded.
            max: self
                .verified_cache
                .key_file
                .is_some()
                .then_some(MAX_WARM_WINDOW),
        };
        [
            Bounded::at_least(
                "server.handshake_timeout",
                millis(server.handshake_timeout_ms),
                MIN_SERVER_MILLIS,
            ),
            Bounded::at_least(
                "server.idle_timeout",
                secs(server.idle_timeout_secs),
                MIN_SERVER_SECONDS,
            ),
            Bounded::at_least(
                "server.keepalive_interval",
                secs(server.keepalive_interval_secs),
                MIN_SERVER_SECONDS,
            ),
            Bounded::at_least(
                "server.keepalive_timeout",
                secs(server.keepalive_timeout_secs),
                MIN_SERVER_SECONDS,
            ),
            Bounded::at_least(
                "server.request_timeout",
                secs(server.request_timeout_secs),
                MIN_SERVER_SECONDS,
            ),
            Bounded::at_least(
                "server.unproven_timeout",
                millis(server.unproven_timeout_ms),
                MIN_SERVER_MILLIS,
            ),
            Bounded::at_least(
                "database.health_check_interval",
                millis(self.database.health_check_interval_ms),
                MIN_HEALTH_CHECK_INTERVAL,
            ),
            Bounded::at_least(
                "audit.prune_interval",
                secs(self.audit.prune_interval_secs),
                MIN_PRUNE_INTERVAL,
            ),
            Bounded {
                key: "watch.poll_interval",
                value: millis(self.watch.poll_interval_ms),
                min: MIN_POLL_INTERVAL,
                max: Some(MAX_POLL_INTERVAL),
            },
            warm_window,
        ]
    }

    /// A default idle timeout out of bounds would refuse every issue that
    /// asks for none; a bound of 0 would refuse every issue; pruning within
    /// the account's window would let its issue bound forget revoked
    /// passwords. (A long usage flush interval is allowed: idle expiry may
    /// then come up to that interval early, as the README says, and
    /// housekeeping's mark waits that long past the deadline.)
    fn check_app_passwords(&self) -> Result<(), String> {
        let app_passwords = &self.app_passwords;
        if let Some(timeout) = app_passwords.default_idle_timeout {
            named(
                "app_passwords.default_idle_timeout",
                check_idle_timeout(timeout.duration()),
            )?;
        }
        let refuses_every_issue = "with 0 every issue is refused";
        at_least_one(
            "app_passwords.account_issues_per_hour",
            app_passwords.account_issues_per_hour,
            refuses_every_issue,
        )?;
        at_least_one(
            "app_passwords.caller_issues_per_minute",
            app_passwords.caller_issues_per_minute,
            refuses_every_issue,
        )?;
        named(
            "app_passwords.prune_ended_after",
            check_prune_ended_after(app_passwords.prune_ended_after.duration()),
        )
    }

    /// The streams' caps, and the notice window against the usage flush.
    fn check_watch(&self) -> Result<(), String> {
        let watch = &self.watch;
        let refused_anyway = "WatchEvents is refused to callers without the role anyway";
        at_least_one("watch.max_watchers", watch.max_watchers, refused_anyway)?;
        at_least_one(
            "watch.max_watchers_per_caller",
            watch.max_watchers_per_caller,
            refused_anyway,
        )?;
        named(
            "watch.notice_before",
            check_notice_before(
                watch.notice_before.duration(),
                self.usage.flush_interval().unwrap_or_default(),
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::app_passwords::model::AppPasswordsConfig;

    #[test]
    fn issue_bounds_must_allow_issues_and_outlive_pruning() {
        let config = |change: fn(&mut AppPasswordsConfig)| {
            let mut config = Config::default();
            change(&mut config.app_passwords);
            config.validate()
        };
        assert!(config(|_| {}).is_ok());
        assert!(config(|c| c.account_issues_per_hour = 0).is_err());
        assert!(config(|c| c.caller_issues_per_minute = 0).is_err());
        assert!(config(|c| c.prune_ended_after = Span::parse("59m").unwrap()).is_err());
        assert!(config(|c| c.prune_ended_after = Span::parse("1h").unwrap()).is_ok());
        assert!(config(|c| c.prune_ended_after = Span::parse("0s").unwrap()).is_ok());
    }

    #[test]
    fn what_was_clamped_is_refused_naming_the_key_and_the_bound() {
        let refused = |change: fn(&mut Config)| {
            let mut config = Config::default();
            change(&mut config);
            config.validate().unwrap_err()
        };
        type Change = fn(&mut Config);
        let cases: [(Change, &str); 6] = [
            (
                |c| c.server.request_timeout_secs = 0,
                "server.request_timeout must be at least 1 second, not 0s",
            ),
            (
                |c| c.server.keepalive_interval_secs = 0,
                "server.keepalive_interval must be at least 1 second, not 0s",
            ),
            (
                |c| c.database.health_check_interval_ms = 10,
                "database.health_check_interval must be at least 100 milliseconds, not 10ms",
            ),
            (
                |c| c.watch.poll_interval_ms = 61_000,
                "watch.poll_interval must be at most 1 minute, not 61s",
            ),
            (
                |c| c.throttle.remembered_guesses = 7,
                "throttle.remembered_guesses must be at least 8 (one pair's guesses), not 7",
            ),
            (
                |c| c.database.sqlite_cache_mib = 1025,
                "database.sqlite_cache_mib must be at most 1024, not 1025",
            ),
        ];
        for (change, why) in cases {
            assert_eq!(refused(change), why);
        }
        assert!(refused(|c| c.watch.max_watchers = 0)
            .starts_with("watch.max_watchers must be at least 1"));
        assert!(Config::default().validate().is_ok());
    }
}
