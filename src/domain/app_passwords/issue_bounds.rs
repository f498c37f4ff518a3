//! How fast app passwords may be issued.
//!
//! Issuing is cheap to ask for and costly to grant: an argon2 hash, a row,
//! an audit event, and a notice to the user through the change feed. An
//! issuer in a loop of issue and revoke (a bug, or a stolen key) once wrote
//! 6,005 audit rows and 4,125 notifier events (mails to one user) in 68 s.
//! Two bounds
//! stop that, each refusing with RESOURCE_EXHAUSTED, a reason and when to
//! retry, before anything is hashed or written:
//!
//! - **per account**: at most `account_issues_per_hour` passwords issued in
//!   any rolling hour, counted from the database (the account's rows
//!   created in the last hour, revoked ones included), so it holds across
//!   replicas and restarts, and checked again in the issue's transaction
//!   under the account's lock, so concurrent issues cannot pass it together.
//!   This is what protects a user's mailbox;
//! - **per caller**: at most `caller_issues_per_minute` issues in any
//!   rolling minute, counted in each replica's memory (N replicas let N
//!   times as many through). It caps what one key can make a replica hash
//!   and write, at no cost to the database. It counts only issues that
//!   passed the account's checks, so a user hammering their own account
//!   through the portal uses up their account's bound, not the portal's.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::shared::error::{Error, Reason};
use crate::domain::shared::sync::lock;
use crate::domain::shared::time::Timestamp;

/// The per-account bound's window.
pub const ACCOUNT_WINDOW: Duration = Duration::from_secs(3_600);
/// The per-caller bound's window.
pub const CALLER_WINDOW: Duration = Duration::from_secs(60);

/// The default of `app_passwords.account_issues_per_hour`: enough to set
/// up every device a person has in one sitting, and at most 20 "new app
/// password" notices to a user in an hour.
pub const DEFAULT_ACCOUNT_ISSUES_PER_HOUR: u32 = 20;
/// The default of `app_passwords.caller_issues_per_minute`: two a second on
/// each replica, far above what people setting up devices ask of a portal,
/// and far below the loop it is there to stop.
pub const DEFAULT_CALLER_ISSUES_PER_MINUTE: u32 = 120;

/// Issues created after this (not at it) count against an account's bound
/// at `now`.
pub fn account_counted_after(now: Timestamp) -> Timestamp {
    now.saturating_sub(ACCOUNT_WINDOW)
}

/// How long until an account may have another password issued, under a
/// bound of `limit` an hour, given when its newest ones were issued after
/// [`account_counted_after`] (newest first; more than `limit` need not be
/// given); `None` when it may now.
pub fn account_wait(limit: u32, newest: &[Timestamp], now: Timestamp) -> Option<Duration> {
    let limit = limit as usize;
    if newest.len() < limit {
        return None;
    }
    let oldest_counted = newest.get(limit.saturating_sub(1))?;
    Some(
        oldest_counted
            .saturating_add(ACCOUNT_WINDOW)
            .since(now)
            .max(Duration::from_millis(1)),
    )
}

/// The refusal of an issue past the account's bound of `limit` an hour.
pub fn account_issue_limit(limit: u32, retry_after: Duration) -> Error {
    Error::RateLimited {
        reason: Reason::AccountIssueRateExceeded,
        message: format!(
            "{limit} app passwords were issued to this account within the last hour, the most it may have (app_passwords.account_issues_per_hour); retry in {} s",
            retry_after.as_secs().max(1)
        ),
        retry_after,
    }
}

/// Each caller's recent issues on this replica, for the per-caller bound.
/// Only callers that authenticated issue, so it holds one entry per
/// issuing caller, each at most the bound long.
#[derive(Debug, Default)]
pub struct CallerIssues {
    recent: Mutex<HashMap<String, VecDeque<Timestamp>>>,
}

impl CallerIssues {
    /// Counts an issue by `caller` at `now` if the bound allows it; else
    /// `Err` with how long until it would, counting nothing.
    pub fn admit(&self, caller: &str, limit: u32, now: Timestamp) -> Result<(), Error> {
        let mut recent = lock(&self.recent);
        let times = recent.entry(caller.to_owned()).or_default();
        let counted_after = now.saturating_sub(CALLER_WINDOW);
        while times.front().is_some_and(|at| *at <= counted_after) {
            times.pop_front();
        }
        match times.front() {
            Some(oldest) if times.len() >= limit as usize => {
                let retry_after = oldest
                    .saturating_add(CALLER_WINDOW)
                    .since(now)
                    .max(Duration::from_millis(1));
                Err(Error::RateLimited {
                    reason: Reason::CallerIssueRateExceeded,
                    message: format!(
                        "this caller issued {limit} app passwords within the last minute on this replica, the most it may (app_passwords.caller_issues_per_minute); retry in {} s",
                        retry_after.as_secs().max(1)
                    ),
                    retry_after,
                })
            }
            _ => {
                times.push_back(now);
                Ok(())
            }
        }
    }
}

impl CallerIssues {
    /// Gives back an issue counted at `at` that was then not made.
    pub fn refund(&self, caller: &str, at: Timestamp) {
        let mut recent = lock(&self.recent);
        if let Some(times) = recent.get_mut(caller) {
            if let Some(index) = times.iter().rposition(|time| *time == at) {
                times.remove(index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_000_000_000);

    fn retry_after(result: Result<(), Error>) -> Duration {
        match result {
            Err(Error::RateLimited { retry_after, .. }) => retry_after,
            other => panic!("not rate limited: {other:?}"),
        }
    }

    fn minutes(minutes: u64) -> Option<Duration> {
        Some(Duration::from_secs(60 * minutes))
    }

    #[test]
    fn an_account_waits_at_the_bound_until_its_oldest_counted_leaves_the_hour() {
        let at = |minutes: u64| T0.saturating_add(Duration::from_secs(60 * minutes));
        assert_eq!(account_wait(3, &[], at(0)), None);
        assert_eq!(account_wait(3, &[at(2), at(1)], at(2)), None);
        let full = [at(10), at(5), at(1)];
        assert_eq!(account_wait(3, &full, at(10)), minutes(51));
        // More than the bound (it was lowered): the third newest decides.
        let more = [at(10), at(5), at(3), at(1)];
        assert_eq!(account_wait(3, &more, at(10)), minutes(53));
        assert_eq!(account_counted_after(at(61)), at(1));
    }

    #[test]
    fn a_caller_is_admitted_up_to_the_bound_in_any_minute() {
        let issues = CallerIssues::default();
        let at = |secs: u64| T0.saturating_add(Duration::from_secs(secs));
        for second in 0..3 {
            assert!(issues.admit("portal", 3, at(second)).is_ok());
        }
        assert_eq!(
            retry_after(issues.admit("portal", 3, at(30))),
            Duration::from_secs(30)
        );
        assert!(issues.admit("helpdesk", 3, at(30)).is_ok(), "per caller");
        // The refusal counted nothing: the first leaves at 60 s.
        assert!(issues.admit("portal", 3, at(60)).is_ok());
        assert!(issues.admit("portal", 3, at(60)).is_err());
        assert!(issues.admit("portal", 3, at(62)).is_ok());
        assert!(issues.admit("portal", 3, at(63)).is_ok());
        assert!(issues.admit("portal", 3, at(63)).is_err());
        // An issue given back frees its place at once.
        issues.refund("portal", at(63));
        assert!(issues.admit("portal", 3, at(63)).is_ok());
    }
}
