//! Issuing, reviewing and revoking app passwords.

use std::sync::Arc;

use uuid::Uuid;

use std::fmt::Write as _;
use std::time::Duration;

use super::issue_bounds::{account_counted_after, account_issue_limit, account_wait, CallerIssues};
use super::model::{
    app_password_not_found, check_idle_timeout, housekeeping, usage_lag, AppPassword,
    AppPasswordCursor, AppPasswordsConfig, BulkFilter, Change, ChangePolicy, CredentialChange,
    Expiry, IssueLimits, IssueOutcome, IssueRequest, Issued, NewAppPassword, Notice, NoticeKind,
    NoticeWindow, Refusal, SettingsUpdate, Suspension,
};
use super::store::AppPasswordStore;
use crate::domain::accounts::model::account_not_found;
use crate::domain::accounts::store::AccountStore;
use crate::domain::audit::event::{Actor, AuditEvent, EventType};
use crate::domain::audit::store::AuditStore;
use crate::domain::secrets::format::Secret;
use crate::domain::secrets::hashing::Hasher;
use crate::domain::shared::error::{Error, Reason, Result};
use crate::domain::shared::page::Page;
use crate::domain::shared::patch::Patch;
use crate::domain::shared::time::{in_words, new_id, Clock, Timestamp, CLOCK_SKEW};
use crate::domain::shared::username::Username;
use crate::domain::tenants::model::{domain_of, TenantPolicy};
use crate::domain::tenants::store::TenantStore;

/// How many times a selector collision is retried before giving up. A
/// version 2 selector is drawn from 308 million values: at ten million live
/// passwords 3% of draws collide, so eight in a row (one in 10¹²) would
/// mean the generator is broken.
const SELECTOR_ATTEMPTS: usize = 8;

/// Issuing, reviewing and revoking app passwords; cheap to clone.
#[derive(Clone)]
pub struct AppPasswords<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    store: S,
    hasher: Hasher,
    clock: Arc<dyn Clock>,
    /// Active (unrevoked, unexpired) app passwords one account may hold.
    max_active_per_account: u32,
    config: AppPasswordsConfig,
    /// How long after its idle deadline housekeeping marks a password: a
    /// login refuses it from the deadline on, but a use on another replica
    /// may reach the database up to one usage flush interval late (and
    /// replicas' clocks may differ), and a mark is for good. The idle
    /// notice waits as long past the start of its window.
    idle_mark_grace: Duration,
    /// How long before its expiry, and before its idle deadline, a password
    /// gets its "expiring soon" notice (`watch.notice_before`).
    notice_before: Duration,
    /// Each caller's recent issues on this replica (`issue_bounds`).
    caller_issues: CallerIssues,
}

/// Passwords one batch of a bulk revocation or of housekeeping takes: one
/// transaction each, so memory and lock time stay bounded whatever the
/// number of rows.
const BATCH: u32 = 1_000;
/// Passwords one transaction of notices takes: each is locked from its
/// notice's write until the commit, so fewer than a bulk revocation's.
const NOTICE_BATCH: u32 = 100;
/// How many matching passwords a `validate_only` bulk revocation shows.
const SAMPLE: u32 = 10;
/// How late a change of the primary credential may be reported.
const OLDEST_CHANGE: Duration = Duration::from_secs(30 * 86_400);

/// What a bulk revocation did, or (validate only) would do.
#[derive(Debug, Clone, Default)]
pub struct BulkOutcome {
    /// Validate only: how many passwords match now.
    pub matching: u64,
    /// Validate only: the first few of them.
    pub sample: Vec<AppPassword>,
    pub revoked: u64,
    /// Accounts audited (one event per account per batch).
    pub accounts: u64,
    /// Whether nothing that matches is left; if not (the call's time ran
    /// out), the same request again goes on where this one stopped.
    pub complete: bool,
}

/// What a change of the primary credential did.
#[derive(Debug, Clone, Copy)]
pub struct ChangeOutcome {
    pub policy: ChangePolicy,
    pub revoked: u64,
}

impl<S: AppPasswordStore + AccountStore + AuditStore + TenantStore> AppPasswords<S> {
    pub fn new(
        store: S,
        hasher: Hasher,
        clock: Arc<dyn Clock>,
        max_active_per_account: u32,
        config: AppPasswordsConfig,
        usage_flush_interval: Duration,
        notice_before: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                hasher,
                clock,
                max_active_per_account,
                config,
                idle_mark_grace: usage_lag(usage_flush_interval),
                notice_before,
                caller_issues: CallerIssues::default(),
            }),
        }
    }

    fn store(&self) -> &S {
        &self.inner.store
    }

    /// The clock the rules run on, for callers that present state "as of
    /// now".
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// The policy of the tenant owning `username`'s domain; the default
    /// (every field the deployment's) when no tenant does.
    async fn tenant_policy(&self, username: &Username) -> Result<TenantPolicy> {
        let Some(domain) = domain_of(username) else {
            return Ok(TenantPolicy::default());
        };
        Ok(self
            .store()
            .policy_of_domain(domain)
            .await?
            .unwrap_or_default())
    }

    pub async fn issue(&self, request: IssueRequest) -> Result<Issued> {
        let now = self.now();
        let policy = self.tenant_policy(&request.username).await?;
        if let Some(allowed) = policy.allowed_protocols {
            if !request.protocols.within(allowed) {
                return Err(Error::invalid(
                    "protocols",
                    format!("the account's tenant allows only {allowed}"),
                ));
            }
        }
        let expires_at = match request.expiry {
            None => None,
            Some(Expiry::At(at)) if at <= now => {
                return Err(Error::invalid("expire_time", "must be in the future"))
            }
            Some(Expiry::At(at)) => Some(at),
            Some(Expiry::After(ttl)) => Some(
                now.checked_add(ttl)
                    .filter(|at| *at <= Timestamp::LATEST)
                    .ok_or_else(|| Error::invalid("ttl", "must end before the year 10000"))?,
            ),
        };
        if expires_at.is_some_and(|at| at > Timestamp::LATEST) {
            return Err(Error::invalid(
                "expire_time",
                "must be before the year 10000",
            ));
        }
        // The tenant's maximum life: a longer one is refused, none given
        // gets the maximum.
        let expires_at = match (policy.max_lifetime, expires_at) {
            (None, expires_at) => expires_at,
            (Some(max), None) => Some(now.saturating_add(max)),
            (Some(max), Some(at)) if at > now.saturating_add(max) => {
                let field = match request.expiry {
                    Some(Expiry::After(_)) => "ttl",
                    _ => "expire_time",
                };
                return Err(Error::invalid(
                    field,
                    format!(
                        "the account's tenant allows app passwords at most {}",
                        in_words(max)
                    ),
                ));
            }
            (Some(_), at) => at,
        };
        let idle_timeout = request
            .idle_timeout
            .or(policy.default_idle_timeout)
            .or(self
                .inner
                .config
                .default_idle_timeout
                .map(|span| span.duration()))
            .map(check_idle_timeout)
            .transpose()
            .map_err(|description| Error::invalid("idle_timeout", description))?;
        let limits = IssueLimits {
            cap: policy
                .max_active_app_passwords
                .unwrap_or(self.inner.max_active_per_account),
            per_hour: self.inner.config.account_issues_per_hour,
        };
        let cap = limits.cap;

        // A cheap early refusal, so a disabled, full or busy account costs
        // no hashing; `Store::issue` checks the same again atomically.
        if let Some(account) = self.store().get_account(&request.username, now).await? {
            if account.disabled.is_some() {
                return Err(account_disabled());
            }
            if account.active_app_passwords >= cap {
                return Err(cap_reached(cap));
            }
            let newest = self
                .store()
                .newest_issues(
                    &request.username,
                    account_counted_after(now),
                    limits.per_hour,
                )
                .await?;
            if let Some(wait) = account_wait(limits.per_hour, &newest, now) {
                return Err(account_issue_limit(limits.per_hour, wait));
            }
        }
        // Only what passed the account's checks counts against the caller,
        // so one user's loop on their own account spends that account's
        // bound, not the portal's.
        self.inner.caller_issues.admit(
            &request.issued_by.name,
            self.inner.config.caller_issues_per_minute,
            now,
        )?;

        // An issue the transaction then refuses (the account's bound or
        // cap, met by a concurrent issue) gives its count back: a burst at
        // one account must not spend the caller's bound.
        let issued = self
            .issue_admitted(&request, limits, expires_at, idle_timeout, now)
            .await;
        if issued.is_err() {
            self.inner
                .caller_issues
                .refund(&request.issued_by.name, now);
        }
        issued
    }

    /// The issue's write, once the caller's bound admitted it.
    async fn issue_admitted(
        &self,
        request: &IssueRequest,
        limits: IssueLimits,
        expires_at: Option<Timestamp>,
        idle_timeout: Option<Duration>,
        now: Timestamp,
    ) -> Result<Issued> {
        let cap = limits.cap;
        for _ in 0..SELECTOR_ATTEMPTS {
            let secret = Secret::generate()?;
            let hasher = &self.inner.hasher;
            let secret_hash = hasher
                .hash(secret.clone(), hasher.default_admission())
                .await?;
            let new = NewAppPassword {
                id: new_id(now),
                username: request.username.clone(),
                selector: secret.selector().to_owned(),
                public_id: secret.public_id().map(str::to_owned),
                secret_hash,
                display_name: request.display_name.clone(),
                protocols: request.protocols,
                allowed_networks: request.allowed_networks.clone(),
                issued_by: request.issued_by.name.clone(),
                created_at: now,
                expires_at,
                idle_timeout,
            };
            let event = AuditEvent::new(EventType::AppPasswordIssued, now, &request.issued_by)
                .app_password(&request.username, new.id)
                .detail(&request.display_name);
            match self.store().issue(new, limits, event).await? {
                IssueOutcome::Issued(app_password) => {
                    return Ok(Issued {
                        app_password: *app_password,
                        secret,
                    })
                }
                IssueOutcome::AccountDisabled => return Err(account_disabled()),
                IssueOutcome::CapReached => return Err(cap_reached(cap)),
                IssueOutcome::AccountIssueLimit(wait) => {
                    return Err(account_issue_limit(limits.per_hour, wait))
                }
                IssueOutcome::SelectorTaken => continue,
            }
        }
        Err(Error::internal("no free selector after repeated attempts"))
    }

    pub async fn get_app_password(&self, username: &Username, id: Uuid) -> Result<AppPassword> {
        self.store()
            .get_app_password(username, id)
            .await?
            .ok_or_else(|| app_password_not_found(username, id))
    }

    pub async fn list_app_passwords(
        &self,
        username: &Username,
        show_revoked: bool,
        after: Option<AppPasswordCursor>,
        limit: u32,
    ) -> Result<Page<AppPassword>> {
        self.store()
            .list_app_passwords(username, show_revoked, None, after, limit)
            .await?
            .ok_or_else(|| account_not_found(username))
    }

    /// Durable when it returns; every replica refuses the password from then
    /// on, since Authenticate reads the row on every login.
    pub async fn revoke_app_password(
        &self,
        username: &Username,
        id: Uuid,
        reason: &str,
        actor: &Actor,
    ) -> Result<AppPassword> {
        let event = AuditEvent::new(EventType::AppPasswordRevoked, self.now(), actor)
            .app_password(username, id)
            .detail(reason);
        self.store()
            .revoke_app_password(username, id, reason, event)
            .await?
            .ok_or_else(|| app_password_not_found(username, id))
    }

    pub async fn revoke_account_app_passwords(
        &self,
        username: &Username,
        reason: &str,
        actor: &Actor,
    ) -> Result<u64> {
        let event = AuditEvent::new(EventType::AccountAppPasswordsRevoked, self.now(), actor)
            .account(username)
            .detail(reason);
        self.store()
            .revoke_account_app_passwords(username, None, reason, event, false)
            .await
    }

    /// Changes the settings named in `update`; the secret never changes.
    /// Durable when it returns, and every replica's next login decides on
    /// the new settings (each login reads the row). A revoked or expired
    /// password cannot be updated: it is over, and an update must not
    /// bring it back; a suspended one can. An update that changes nothing
    /// writes nothing.
    pub async fn update(
        &self,
        username: &Username,
        id: Uuid,
        update: SettingsUpdate,
        actor: &Actor,
    ) -> Result<AppPassword> {
        let now = self.now();
        if let Patch::Set(at) = update.expires_at {
            if at <= now {
                return Err(Error::invalid(
                    "app_password.expire_time",
                    "must be in the future",
                ));
            }
            if at > Timestamp::LATEST {
                return Err(Error::invalid(
                    "app_password.expire_time",
                    "must be before the year 10000",
                ));
            }
        }
        if let Patch::Set(timeout) = update.idle_timeout {
            check_idle_timeout(timeout)
                .map_err(|description| Error::invalid("app_password.idle_timeout", description))?;
        }
        let policy = self.tenant_policy(username).await?;
        if let (Some(allowed), Some(protocols)) = (policy.allowed_protocols, update.protocols) {
            if !protocols.within(allowed) {
                return Err(Error::invalid(
                    "app_password.protocols",
                    format!("the account's tenant allows only {allowed}"),
                ));
            }
        }
        let actor = actor.to_owned();
        self.change(username, id, move |current| {
            refuse_if_over(current, now)?;
            // The tenant's maximum life counts from the password's issue.
            if let Some(max) = policy.max_lifetime {
                let latest = current.created_at.saturating_add(max);
                let too_late = match update.expires_at {
                    Patch::Set(at) => at > latest,
                    Patch::Clear => true,
                    Patch::Keep => false,
                };
                if too_late {
                    return Err(Error::invalid(
                        "app_password.expire_time",
                        format!(
                            "the account's tenant allows app passwords at most {} from their issue ({})",
                            in_words(max),
                            latest.to_rfc3339()
                        ),
                    ));
                }
            }
            let (settings, described) = changed_settings(current, update);
            if settings.is_empty() {
                return Ok(None);
            }
            let event = AuditEvent::new(
                EventType::AppPasswordUpdated,
                current.next_change_at(now),
                &actor,
            )
            .app_password(&current.username, current.id)
            .detail(described);
            Ok(Some((
                Change {
                    settings,
                    ..Change::default()
                },
                event,
            )))
        })
        .await
    }

    /// Suspends one app password: refused (reason `suspended`) until it is
    /// resumed, on every replica from the moment this returns. Suspending
    /// a suspended one succeeds and keeps the first suspension.
    pub async fn suspend(
        &self,
        username: &Username,
        id: Uuid,
        reason: &str,
        actor: &Actor,
    ) -> Result<AppPassword> {
        let now = self.now();
        let (reason, actor) = (reason.to_owned(), actor.to_owned());
        self.change(username, id, move |current| {
            refuse_if_over(current, now)?;
            if current.suspended.is_some() {
                return Ok(None);
            }
            let at = current.next_change_at(now);
            let event = AuditEvent::new(EventType::AppPasswordSuspended, at, &actor)
                .app_password(&current.username, current.id)
                .detail(reason.as_str());
            Ok(Some((
                Change {
                    suspension: Patch::Set(Suspension { at, reason }),
                    ..Change::default()
                },
                event,
            )))
        })
        .await
    }

    /// Resumes a suspended app password; resuming an active one succeeds
    /// and changes nothing.
    pub async fn resume(
        &self,
        username: &Username,
        id: Uuid,
        actor: &Actor,
    ) -> Result<AppPassword> {
        let now = self.now();
        let actor = actor.to_owned();
        self.change(username, id, move |current| {
            refuse_if_over(current, now)?;
            if current.suspended.is_none() {
                return Ok(None);
            }
            let event = AuditEvent::new(
                EventType::AppPasswordResumed,
                current.next_change_at(now),
                &actor,
            )
            .app_password(&current.username, current.id);
            Ok(Some((
                Change {
                    suspension: Patch::Clear,
                    ..Change::default()
                },
                event,
            )))
        })
        .await
    }

    async fn change<F>(&self, username: &Username, id: Uuid, plan: F) -> Result<AppPassword>
    where
        F: FnOnce(&AppPassword) -> Result<Option<(Change, AuditEvent)>> + Send,
    {
        self.store()
            .change_app_password(username, id, plan)
            .await?
            .ok_or_else(|| app_password_not_found(username, id))
    }

    /// Applies the configured policy for `change` of the account's primary
    /// credential, made at `changed_at` (now if not given), and audits the
    /// report whatever the policy, with how many passwords it revoked.
    pub async fn primary_credential_changed(
        &self,
        username: &Username,
        change: CredentialChange,
        changed_at: Option<Timestamp>,
        actor: &Actor,
    ) -> Result<ChangeOutcome> {
        let now = self.now();
        let changed_at = changed_at.unwrap_or(now);
        // The portal's clock may be ahead of ours.
        if changed_at > now.saturating_add(CLOCK_SKEW) {
            return Err(Error::invalid("change_time", "must not be in the future"));
        }
        if changed_at < now.saturating_sub(OLDEST_CHANGE) {
            return Err(Error::invalid(
                "change_time",
                format!(
                    "must be within the last {} (a report that late is a bug to look into; revoke what must go explicitly)",
                    in_words(OLDEST_CHANGE)
                ),
            ));
        }
        let policy = self
            .tenant_policy(username)
            .await?
            .on_primary_change
            .over(self.inner.config.on_primary_change)
            .for_change(change);
        let event = AuditEvent::new(EventType::PrimaryCredentialChanged, now, actor)
            .account(username)
            .detail(format!(
                "{}: {} (changed at {})",
                change.as_str(),
                policy.as_str(),
                changed_at.as_millis()
            ));
        let reason = format!("primary credential changed ({})", change.as_str());
        let issued_before = match policy {
            ChangePolicy::Keep => {
                // Nothing to revoke, but the report is still audited.
                self.store().record_events(vec![event]).await?;
                return Ok(ChangeOutcome { policy, revoked: 0 });
            }
            ChangePolicy::RevokeIssuedBefore => Some(changed_at),
            ChangePolicy::RevokeAll => None,
        };
        let revoked = self
            .store()
            .revoke_account_app_passwords(username, issued_before, &reason, event, true)
            .await?;
        Ok(ChangeOutcome { policy, revoked })
    }

    /// Revokes, across all accounts, every active app password matching
    /// `filter`, in batches of [`BATCH`], each its own transaction with one
    /// audit event per account; works for at most `budget`, then returns
    /// with `complete: false`, and the same request again goes on (the
    /// filter no longer matches what was revoked). With `validate_only`,
    /// counts and samples what matches and changes nothing.
    pub async fn bulk_revoke(
        &self,
        filter: &BulkFilter,
        reason: &str,
        validate_only: bool,
        budget: Duration,
        actor: &Actor,
    ) -> Result<BulkOutcome> {
        if filter.is_empty() {
            return Err(Error::invalid(
                "filter",
                "at least one condition is required (a bulk revocation of every app password is RevokeAccountAppPasswords per account, on purpose)",
            ));
        }
        if validate_only {
            let (matching, sample) = self
                .store()
                .count_matching(filter, self.now(), SAMPLE)
                .await?;
            return Ok(BulkOutcome {
                matching,
                sample,
                complete: true,
                ..BulkOutcome::default()
            });
        }
        let started = tokio::time::Instant::now();
        let mut outcome = BulkOutcome::default();
        let mut after = None;
        loop {
            let event = AuditEvent::new(EventType::AppPasswordsBulkRevoked, self.now(), actor)
                .detail(reason);
            let batch = self
                .store()
                .revoke_matching(filter, after, BATCH, reason, event)
                .await?;
            outcome.revoked += batch.revoked;
            outcome.accounts += batch.accounts;
            match batch.last_id {
                None => {
                    outcome.complete = true;
                    return Ok(outcome);
                }
                Some(last) => after = Some(last),
            }
            if started.elapsed() >= budget {
                return Ok(outcome);
            }
            // Let logins have the database between batches.
            tokio::task::yield_now().await;
        }
    }

    /// Marks the passwords whose idle timeout ran out as idle-expired, one
    /// audit event each. Each is decided again under the row's lock, so
    /// replicas running this at once mark (and audit) each one once.
    /// Returns how many this call marked.
    pub async fn expire_idle(&self) -> Result<u64> {
        let mut marked = 0;
        let mut after = None;
        let grace = self.inner.idle_mark_grace;
        loop {
            let now = self.now();
            let before = now.saturating_sub(grace);
            let candidates = self
                .store()
                .idle_candidates(now, before, after, BATCH)
                .await?;
            let Some((_, last)) = candidates.last() else {
                return Ok(marked);
            };
            after = Some(*last);
            for (username, id) in candidates {
                let mut did = false;
                self.store()
                    .change_app_password(&username, id, |current| {
                        let rules = current.rules();
                        // Decided again on the row as it is now: a use
                        // flushed meanwhile moves the deadline.
                        let due = rules.idle_deadline().is_some_and(|at| at <= before);
                        if rules.lifecycle_refusal(now) != Some(Refusal::IdleExpired)
                            || current.idle_expired_at.is_some()
                            || !due
                        {
                            return Ok(None);
                        }
                        did = true;
                        let at = current.next_change_at(now);
                        let event =
                            AuditEvent::new(EventType::AppPasswordIdleExpired, at, &housekeeping())
                                .app_password(&current.username, current.id)
                                .detail(format!(
                                    "unused since {}",
                                    rules.last_active_at.as_millis()
                                ));
                        Ok(Some((
                            Change {
                                idle_expired_at: Some(at),
                                ..Change::default()
                            },
                            event,
                        )))
                    })
                    .await?;
                marked += u64::from(did);
            }
        }
    }

    /// Writes the notices of `kind` that are due now, one audit event each
    /// (actor "housekeeping"), in batches of [`NOTICE_BATCH`], each one
    /// transaction. Each notice is written once per time it is about
    /// (expiry, idle deadline), however many replicas run this at once:
    /// the store writes it only if the password's notice column still
    /// says it was not (compare-and-set). Returns how many this call wrote.
    ///
    /// The idle notice's window starts `watch.notice_before` before the
    /// stored idle deadline, but the notice waits the idle mark's grace
    /// past that: a use from before the window may still be on its way
    /// from another replica's usage buffer, and would have moved the
    /// deadline. A use that reaches the database later moves the deadline,
    /// and the later deadline earns its own notice.
    pub async fn send_notices(&self, kind: NoticeKind) -> Result<u64> {
        let mut written = 0;
        let mut after = None;
        loop {
            let now = self.now();
            let horizon = match kind {
                NoticeKind::Expired => now,
                NoticeKind::ExpiringSoon => now.saturating_add(self.inner.notice_before),
                NoticeKind::IdleExpiringSoon => now
                    .saturating_add(self.inner.notice_before)
                    .saturating_sub(self.inner.idle_mark_grace),
            };
            let window = NoticeWindow { kind, now, horizon };
            let candidates = self
                .store()
                .notice_candidates(&window, after, NOTICE_BATCH)
                .await?;
            let Some(last) = candidates.last() else {
                return Ok(written);
            };
            after = Some(last.id);
            let notices = candidates
                .iter()
                .filter_map(|password| {
                    let about = window.due(password)?;
                    Some(Notice {
                        id: password.id,
                        about,
                        event: window.event(password, about),
                    })
                })
                .collect();
            written += self.store().record_notices(&window, notices).await?;
        }
    }

    /// Deletes app passwords that ended (revoked, expired, idle-expired)
    /// longer ago than `app_passwords.prune_ended_after`; their audit
    /// events stay. Returns how many.
    pub async fn prune_ended(&self) -> Result<u64> {
        let keep = self.inner.config.prune_ended_after.duration();
        if keep.is_zero() {
            return Ok(0);
        }
        let before = self.now().saturating_sub(keep);
        let mut deleted = 0;
        loop {
            let batch = self.store().prune_ended(before, BATCH).await?;
            deleted += batch;
            if batch < u64::from(BATCH) {
                return Ok(deleted);
            }
        }
    }
}

/// Refuses a change to a password that is over: revoked, expired or
/// idle-expired.
fn refuse_if_over(current: &AppPassword, now: Timestamp) -> Result<()> {
    match current.rules().lifecycle_refusal(now) {
        Some(Refusal::Revoked) => Err(Error::FailedPrecondition(
            Reason::AppPasswordRevoked,
            "the app password is revoked".to_owned(),
        )),
        Some(Refusal::Expired | Refusal::IdleExpired) => Err(Error::FailedPrecondition(
            Reason::AppPasswordExpired,
            "the app password has expired".to_owned(),
        )),
        _ => Ok(()),
    }
}

/// The settings of `update` that differ from `current`, and a description
/// of each change for the audit trail (names, protocols, networks and
/// times: nothing secret).
fn changed_settings(current: &AppPassword, update: SettingsUpdate) -> (SettingsUpdate, String) {
    let time =
        |at: &Option<Timestamp>| at.map_or("none".to_owned(), |at| at.as_millis().to_string());
    let span = |d: &Option<Duration>| d.map_or("none".to_owned(), |d| format!("{}s", d.as_secs()));
    let mut diff = Diff::default();
    let changed = SettingsUpdate {
        display_name: diff.field(
            "display_name",
            &current.display_name,
            update.display_name,
            |name| format!("{name:?}"),
        ),
        protocols: diff.field(
            "protocols",
            &current.protocols,
            update.protocols,
            ToString::to_string,
        ),
        allowed_networks: diff.field(
            "allowed_networks",
            &current.allowed_networks,
            update.allowed_networks,
            |networks| networks.to_stored(),
        ),
        expires_at: diff
            .field(
                "expire_time",
                &current.expires_at,
                update.expires_at.change(),
                time,
            )
            .map_or(Patch::Keep, Patch::from),
        idle_timeout: diff
            .field(
                "idle_timeout",
                &current.idle_timeout,
                update.idle_timeout.change(),
                span,
            )
            .map_or(Patch::Keep, Patch::from),
    };
    (changed, diff.described)
}

/// The changes of an update, described as `field: from -> to; ...`.
#[derive(Default)]
struct Diff {
    described: String,
}

impl Diff {
    /// `to`, if given and unlike `from`; then the change is described,
    /// each side shown by `show`.
    fn field<T: PartialEq>(
        &mut self,
        field: &str,
        from: &T,
        to: Option<T>,
        show: impl Fn(&T) -> String,
    ) -> Option<T> {
        let to = to.filter(|to| to != from)?;
        if !self.described.is_empty() {
            self.described.push_str("; ");
        }
        let _ = write!(self.described, "{field}: {} -> {}", show(from), show(&to));
        Some(to)
    }
}

fn account_disabled() -> Error {
    Error::FailedPrecondition(
        Reason::AccountDisabled,
        "the account is disabled".to_owned(),
    )
}

fn cap_reached(cap: u32) -> Error {
    Error::ResourceExhausted(
        Reason::AppPasswordCapReached,
        format!(
            "the account already has the maximum of {cap} active app passwords; revoke one first"
        ),
    )
}
