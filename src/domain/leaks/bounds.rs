//! The hourly bounds on leak reports and lookups, kept in this replica's
//! memory: each caller's, and the replica's as a whole (all callers
//! together). Each protects this replica's argon2 threads: a report costs
//! one argon2 per secret that passes its check, so its weight is that
//! count. With several replicas, the deployment's bound is the replica
//! bound times their number.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::shared::sync::lock;
use crate::domain::shared::time::Timestamp;

/// How long a charge counts.
pub const WINDOW: Duration = Duration::from_secs(3_600);

/// The key the replica-wide bound is charged under (no caller name is
/// empty).
const REPLICA: &str = "";

/// What was charged, by whom, within the last [`WINDOW`].
#[derive(Debug, Default)]
pub struct Charges {
    recent: Mutex<HashMap<String, VecDeque<(Timestamp, u32)>>>,
}

/// Which bound refused a charge, and how long until it would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Caller(Duration),
    Replica(Duration),
}

impl Charges {
    /// Charges `weight` to `caller` and to the replica at `now` if both
    /// stay within their bounds; else charges nothing and says which bound
    /// refused, and when the charge would pass. A weight above a bound
    /// waits for that bound's whole window to empty.
    pub fn charge(
        &self,
        caller: &str,
        weight: u32,
        caller_limit: u32,
        replica_limit: Option<u32>,
        now: Timestamp,
    ) -> Result<(), Refused> {
        let mut recent = lock(&self.recent);
        let counted_after = now.saturating_sub(WINDOW);
        for charges in recent.values_mut() {
            while charges.front().is_some_and(|(at, _)| *at <= counted_after) {
                charges.pop_front();
            }
        }
        recent.retain(|_, charges| !charges.is_empty());
        let wait = |charges: Option<&VecDeque<(Timestamp, u32)>>, limit: u32| {
            wait_for(charges, weight.min(limit), limit, now)
        };
        if let Some(wait) = wait(recent.get(caller), caller_limit) {
            return Err(Refused::Caller(wait));
        }
        if let Some(limit) = replica_limit {
            if let Some(wait) = wait(recent.get(REPLICA), limit) {
                return Err(Refused::Replica(wait));
            }
        }
        if weight == 0 {
            return Ok(());
        }
        recent
            .entry(caller.to_owned())
            .or_default()
            .push_back((now, weight));
        if replica_limit.is_some() {
            recent
                .entry(REPLICA.to_owned())
                .or_default()
                .push_back((now, weight));
        }
        Ok(())
    }
}

/// How long until `weight` more fits under `limit`, if it does not now.
fn wait_for(
    charges: Option<&VecDeque<(Timestamp, u32)>>,
    weight: u32,
    limit: u32,
    now: Timestamp,
) -> Option<Duration> {
    let charges = charges?;
    let mut counted: u64 = charges.iter().map(|(_, w)| u64::from(*w)).sum();
    if counted + u64::from(weight) <= u64::from(limit) {
        return None;
    }
    for (at, charged) in charges {
        counted -= u64::from(*charged);
        if counted + u64::from(weight) <= u64::from(limit) {
            return Some(
                at.saturating_add(WINDOW)
                    .since(now)
                    .max(Duration::from_millis(1)),
            );
        }
    }
    Some(WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_000_000_000);

    fn at(minutes: u64) -> Timestamp {
        T0.saturating_add(Duration::from_secs(60 * minutes))
    }

    #[test]
    fn a_caller_is_charged_by_weight_within_the_hour() {
        let charges = Charges::default();
        assert_eq!(charges.charge("github", 600, 1_000, None, at(0)), Ok(()));
        assert_eq!(charges.charge("github", 400, 1_000, None, at(10)), Ok(()));
        // Full: one more waits until the first charge leaves the hour, and
        // the refusal charged nothing.
        assert_eq!(
            charges.charge("github", 1, 1_000, None, at(20)),
            Err(Refused::Caller(Duration::from_secs(40 * 60)))
        );
        assert_eq!(charges.charge("other", 1_000, 1_000, None, at(20)), Ok(()));
        assert_eq!(charges.charge("github", 600, 1_000, None, at(60)), Ok(()));
        assert!(charges.charge("github", 1, 1_000, None, at(60)).is_err());
        // Weightless calls (no secret passed its check) always pass.
        assert_eq!(charges.charge("github", 0, 1_000, None, at(60)), Ok(()));
    }

    #[test]
    fn the_replica_bound_counts_every_caller() {
        let charges = Charges::default();
        assert_eq!(charges.charge("a", 500, 1_000, Some(800), at(0)), Ok(()));
        assert_eq!(
            charges.charge("b", 400, 1_000, Some(800), at(1)),
            Err(Refused::Replica(Duration::from_secs(59 * 60)))
        );
        // Refused by the replica bound: b was charged nothing.
        assert_eq!(charges.charge("b", 300, 1_000, Some(800), at(2)), Ok(()));
    }
}
