//! Reporting leaked secrets, and looking a password up by its secret.
//!
//! **A report** (ReportLeakedSecrets, callers with the `reporter` or
//! `operator` role) holds up to [`REPORT_SECRETS_MAX`] secrets and where
//! they were found. Each distinct version 2 secret whose check holds costs
//! the same: one read by its public id and one argon2 verification, against
//! the stored hash or, with none, the dummy. Those that verify and are
//! active or suspended are revoked with reason [`LEAKED`], each audited as
//! a revocation (with the report's source) and so in the change feed, where
//! a notifier tells the user. The report itself is audited (operators see
//! its counts). The answer is the same whatever the secrets were: how many
//! were received. Text that is not a version 2 secret (a version 1 secret,
//! garbage, a failed check) costs no argon2 and is not acted on.
//!
//! A report is idempotent: sending it again revokes nothing more and costs
//! the same. A report cut short (the hashing pool full, the database gone)
//! answers with the error; whatever it revoked stays revoked (it revokes
//! what verified every `REVOKE_EVERY` checked secrets), and sending
//! it again finishes it.
//!
//! **A lookup** (LookupAppPassword, operators only) takes one secret and,
//! where it verifies, answers which password it is, in any state. Where it
//! does not (no password has its public id, or the rest is wrong) the
//! answer is the same NOT_FOUND, so a lookup with a made-up secret learns
//! nothing of which public ids exist. Every lookup is audited.
//!
//! **Bounds** (`LeaksConfig`, in this replica's memory, `bounds`): the
//! secrets that pass their check count against the caller's and the
//! replica's hourly bounds before anything is read; a report past either
//! is refused whole (RESOURCE_EXHAUSTED with a retry delay), charging
//! nothing. Lookups count one each against the caller's bound.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::bounds::{Charges, Refused};
use super::store::LeakStore;
use crate::domain::app_passwords::model::{AppPassword, AppPasswordState};
use crate::domain::audit::event::{Actor, AuditEvent, EventType};
use crate::domain::audit::store::AuditStore;
use crate::domain::secrets::format::{Reading, Secret, Version};
use crate::domain::secrets::hashing::Hasher;
use crate::domain::secrets::pool::Admission;
use crate::domain::shared::error::{Error, Reason, Result};
use crate::domain::shared::limits::REPORT_SECRETS_MAX;
use crate::domain::shared::time::Clock;

/// The revoke reason of a password reported as leaked.
pub const LEAKED: &str = "LEAKED";
/// Checked secrets a report verifies between its revocations: a report cut
/// short loses at most this many secrets' work.
const REVOKE_EVERY: usize = 100;
/// How long a report's or lookup's verification waits for a place on the
/// hashing threads before the call fails (UNAVAILABLE, retry).
const HASH_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaksConfig {
    /// Secrets that pass their check one caller may report within any
    /// hour, on this replica.
    pub caller_secrets_per_hour: u32,
    /// Secrets that pass their check all callers together may report
    /// within any hour, on this replica: each costs one argon2 run.
    pub replica_secrets_per_hour: u32,
    /// Lookups one operator may make within any hour, on this replica.
    pub lookups_per_hour: u32,
}

impl Default for LeaksConfig {
    fn default() -> Self {
        Self {
            caller_secrets_per_hour: 5_000,
            replica_secrets_per_hour: 20_000,
            lookups_per_hour: 600,
        }
    }
}

impl LeaksConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.caller_secrets_per_hour < REPORT_SECRETS_MAX as u32 {
            return Err(format!(
                "leaks.caller_secrets_per_hour must be at least {REPORT_SECRETS_MAX}, one full report"
            ));
        }
        if self.replica_secrets_per_hour < self.caller_secrets_per_hour {
            return Err(
                "leaks.replica_secrets_per_hour must be at least leaks.caller_secrets_per_hour"
                    .to_owned(),
            );
        }
        if self.lookups_per_hour == 0 {
            return Err("leaks.lookups_per_hour must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// One secret of a report, as found, and where it was found.
/// No `Debug`: it holds the secret as typed.
#[derive(Clone, Copy)]
pub struct Found<'a> {
    pub typed: &'a str,
    pub source: &'a str,
}

/// What a report is answered with: the same for any secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub received: u32,
}

/// Leak reports and lookups by secret; cheap to clone.
#[derive(Clone)]
pub struct Leaks<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    store: S,
    hasher: Hasher,
    clock: Arc<dyn Clock>,
    config: LeaksConfig,
    reports: Charges,
    lookups: Charges,
    at_once: Arc<Semaphore>,
}

/// Leak reports and lookups running at once on one replica, through either
/// door (gRPC's `grpc/gate.rs`, before a message is decoded; HTTP's
/// `adapters/leak_reports.rs`, before a body is read): a report's message
/// may be 128 KiB (512 KiB of JSON over HTTP) and cost up to 1,000 argon2
/// runs, so however many connections send them, at most this many are held
/// in memory and verified at once; the rest wait, within their deadline.
pub const REQUESTS_AT_ONCE: usize = 4;

impl<S: LeakStore + AuditStore> Leaks<S> {
    pub fn new(store: S, hasher: Hasher, clock: Arc<dyn Clock>, config: LeaksConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                hasher,
                clock,
                config,
                reports: Charges::default(),
                lookups: Charges::default(),
                at_once: Arc::new(Semaphore::new(REQUESTS_AT_ONCE)),
            }),
        }
    }

    /// The permits of [`REQUESTS_AT_ONCE`], which both doors take before
    /// they read a request.
    pub fn requests_at_once(&self) -> Arc<Semaphore> {
        Arc::clone(&self.inner.at_once)
    }

    /// The time the service runs on, for converting what it returns.
    pub fn now(&self) -> crate::domain::shared::time::Timestamp {
        self.inner.clock.now()
    }

    /// Reports secrets, each with where it was found, as `summary` (where
    /// the report came from, for its audit row); all bounded at the edge.
    /// See the module's documentation.
    pub async fn report(
        &self,
        found: &[Found<'_>],
        summary: &str,
        actor: &Actor,
    ) -> Result<Receipt> {
        let now = self.inner.clock.now();
        let mut seen = HashSet::new();
        let checked: Vec<(Secret, &str)> = found
            .iter()
            .filter_map(|found| match Secret::read(found.typed) {
                Reading::Secret(secret) if secret.version() == Version::Two => {
                    Some((secret, found.source))
                }
                _ => None,
            })
            .filter(|(secret, _)| seen.insert(secret.clone()))
            .collect();
        let config = &self.inner.config;
        let weight = u32::try_from(checked.len()).unwrap_or(u32::MAX);
        self.inner
            .reports
            .charge(
                &actor.name,
                weight,
                config.caller_secrets_per_hour,
                Some(config.replica_secrets_per_hour),
                now,
            )
            .map_err(|refused| report_refused(refused, config))?;

        // Every checked secret costs the same: one read, one argon2. What
        // verified is revoked every REVOKE_EVERY checked secrets, whether
        // or not any did (the statements depend on the count checked
        // alone), so a report cut short (its deadline, the hashing pool
        // full) keeps what it revoked, and sending it again finishes it.
        let (mut verified, mut revoked, mut leaked) = (0, 0, Vec::new());
        for (index, (secret, source)) in checked.iter().enumerate() {
            if let Some(app_password) = self.verified(secret).await? {
                verified += 1;
                if matches!(
                    app_password.state(now),
                    AppPasswordState::Active | AppPasswordState::Suspended
                ) {
                    let event = AuditEvent::new(EventType::AppPasswordRevoked, now, actor)
                        .app_password(&app_password.username, app_password.id)
                        .detail(format!("{LEAKED}: {source}"));
                    leaked.push((app_password.username, app_password.id, event));
                }
            }
            let chunk_done = (index + 1) % REVOKE_EVERY == 0 && index + 1 < checked.len();
            if chunk_done {
                revoked += self
                    .inner
                    .store
                    .revoke_leaked(std::mem::take(&mut leaked), LEAKED, now, None)
                    .await?;
            }
        }
        let received = u32::try_from(found.len()).unwrap_or(u32::MAX);
        // The counts are for operators (the audit trail); the reporter's
        // answer is the receipt alone. "Verified" counts those already
        // over, which a revocation leaves as they are.
        let report = AuditEvent::new(EventType::LeakReported, now, actor).detail(format!(
            "{received} received, {} passed the check, {verified} verified: {summary}",
            checked.len()
        ));
        revoked += self
            .inner
            .store
            .revoke_leaked(leaked, LEAKED, now, Some(report))
            .await?;
        tracing::info!(
            reporter = %actor.name,
            received,
            checked = checked.len(),
            revoked,
            "leak report"
        );
        Ok(Receipt { received })
    }

    /// The password `typed` is, where it verifies; see the module's
    /// documentation.
    pub async fn lookup(&self, typed: &str, actor: &Actor) -> Result<AppPassword> {
        let now = self.inner.clock.now();
        let limit = self.inner.config.lookups_per_hour;
        self.inner
            .lookups
            .charge(&actor.name, 1, limit, None, now)
            .map_err(|refused| {
                let (Refused::Caller(retry_after) | Refused::Replica(retry_after)) = refused;
                Error::RateLimited {
                    reason: Reason::LookupRateExceeded,
                    message: format!(
                        "this caller looked up {limit} secrets within the last hour on this replica, the most it may (leaks.lookups_per_hour); retry in {} s",
                        retry_after.as_secs().max(1)
                    ),
                    retry_after,
                }
            })?;
        let secret = match Secret::read(typed) {
            Reading::Secret(secret) if secret.version() == Version::Two => secret,
            Reading::Secret(_) => {
                return Err(Error::FailedPrecondition(
                    Reason::SecretVersionOne,
                    "a version 1 secret (28 letters) names no password without its username: ListAppPasswords of the account shows its first group".to_owned(),
                ))
            }
            Reading::CheckFailed => {
                return Err(Error::invalid(
                    "secret",
                    "its check letters are wrong: a mistyped secret (version 2 secrets check themselves)",
                ))
            }
            Reading::NotASecret => {
                return Err(Error::invalid(
                    "secret",
                    "not an app password: 36 letters beginning lk (spaces and dashes ignored)",
                ))
            }
        };
        let found = self.verified(&secret).await?;
        let mut event = AuditEvent::new(EventType::AppPasswordLookedUp, now, actor);
        event = match &found {
            Some(p) => event.app_password(&p.username, p.id).detail("verified"),
            None => event.detail("no password has this secret"),
        };
        self.inner.store.record_events(vec![event]).await?;
        found.ok_or_else(|| Error::NotFound {
            reason: Reason::AppPasswordNotFound,
            resource: "the app password with this secret".to_owned(),
        })
    }

    /// One read by public id and one argon2 run, whatever is found.
    async fn verified(&self, secret: &Secret) -> Result<Option<AppPassword>> {
        let public_id = secret.public_id().unwrap_or_default();
        let named = self.inner.store.by_public_id(public_id).await?;
        let stored = named.as_ref().map(|n| n.secret_hash.clone());
        let admission = Admission {
            wait: HASH_WAIT,
            ticket: None,
        };
        let matched = self
            .inner
            .hasher
            .verify(stored, Some(secret.clone()), admission)
            .await?;
        Ok(named.filter(|_| matched).map(|n| n.app_password))
    }
}

fn report_refused(refused: Refused, config: &LeaksConfig) -> Error {
    let (whose, limit, setting, retry_after) = match refused {
        Refused::Caller(wait) => (
            "this caller",
            config.caller_secrets_per_hour,
            "caller_secrets_per_hour",
            wait,
        ),
        Refused::Replica(wait) => (
            "all callers together",
            config.replica_secrets_per_hour,
            "replica_secrets_per_hour",
            wait,
        ),
    };
    Error::RateLimited {
        reason: Reason::LeakReportRateExceeded,
        message: format!(
            "{whose} reported {limit} checked secrets within the last hour on this replica, the most allowed (leaks.{setting}); nothing of this report was done; retry in {} s",
            retry_after.as_secs().max(1)
        ),
        retry_after,
    }
}
