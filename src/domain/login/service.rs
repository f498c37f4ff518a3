//! The login service: reads what a login is decided on, verifies the
//! password, asks `decision` what that comes to, and applies the effects.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::decision::{self, Decision, Effect, Facts, Gate, Verification};
use super::explain::{self, ExplainRequest, Explanation, Viewer};
use super::memory::{
    self, Failure, GuessDigest, HashPrint, Place, Recall, Reservation, Sizes, ThrottleMemory,
};
use super::model::{
    Credential, FailureReason, LoginAttempt, LoginOutcome, LoginState, Usage, Warm,
};
use super::store::{LoginStore, ThrottleStore, UsageStore};
use super::throttle::{Scopes, ThrottleConfig};
use super::usage::{success_events, PendingUse, UsageBuffer, UsageConfig};
use super::verified_cache::{VerifiedCache, VerifiedCacheConfig};
use super::warm::WarmKey;
use crate::domain::accounts::store::AccountStore;
use crate::domain::app_passwords::store::AppPasswordStore;
use crate::domain::audit::event::{Actor, AuditEvent, EventType};
use crate::domain::audit::store::AuditStore;
use crate::domain::secrets::format::{Reading, Secret};
use crate::domain::secrets::hashing::Hasher;
use crate::domain::secrets::pool::{Admission, Ticket};
use crate::domain::shared::error::{Error, Result};
use crate::domain::shared::network::canonical_ip;
use crate::domain::shared::time::{Clock, Timestamp};
use crate::domain::shared::username::Username;
use tokio_util::task::TaskTracker;

/// How logins are throttled, cached and recorded; the defaults and their
/// reasons are in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginConfig {
    pub throttle: ThrottleConfig,
    pub verified_cache: VerifiedCacheConfig,
    pub usage: UsageConfig,
    /// How long a caller that set no deadline is taken to wait.
    pub default_wait: Duration,
    /// The longest any caller is taken to wait, whatever deadline it set:
    /// the server cuts every request at its request timeout anyway, and a
    /// deadline of hours must not buy a place in the hashing queue that
    /// honest callers then wait behind.
    pub max_wait: Duration,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            throttle: ThrottleConfig::default(),
            verified_cache: VerifiedCacheConfig::default(),
            usage: UsageConfig::default(),
            default_wait: Duration::from_secs(5),
            max_wait: Duration::from_secs(30),
        }
    }
}

/// Counters and gauges of the login path's moving parts, read on demand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// argon2 verifications run since start, dummy ones included.
    pub argon2_verifications: u64,
    pub hash_pool_workers: usize,
    /// Verifications waiting for a hashing thread.
    pub hash_pool_queued: usize,
    /// Hashing threads running a job.
    pub hash_pool_busy: usize,
    /// Verified-secret cache lookups that skipped argon2, and that did not.
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// App passwords whose usage waits for the next flush.
    pub usage_pending: usize,
    /// Hashing jobs skipped because their caller had gone, and refused
    /// because they would not have started within the caller's deadline.
    pub hash_pool_skipped: u64,
    pub hash_pool_refused: u64,
    /// What the throttle's memory holds (guesses, blocks, throttled
    /// attempts and events waiting for the flush, guesses in flight), and
    /// its bounds.
    pub memory: Sizes,
    /// Logins whose stored warm verifier matched, where this process's
    /// cache did not (`warm.rs`).
    pub warm_hits: u64,
    /// Reads of what a login is decided on (`LoginStore::login_reads`).
    pub login_reads: u64,
}

/// Deciding legacy logins; cheap to clone, shared by the Authenticate
/// handler and the background tasks that flush usage and prune counters.
#[derive(Clone)]
pub struct Logins<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    store: S,
    hasher: Hasher,
    clock: Arc<dyn Clock>,
    config: LoginConfig,
    memory: ThrottleMemory,
    verified: VerifiedCache,
    /// The key of the warm verifiers every replica shares, if configured.
    warm: Option<WarmKey>,
    warm_hits: std::sync::atomic::AtomicU64,
    usage: UsageBuffer,
    /// Decisions running, for a stop to wait on before its last flush.
    running: TaskTracker,
}

impl<S> Logins<S>
where
    S: LoginStore + ThrottleStore + UsageStore + AuditStore + AppPasswordStore + AccountStore,
{
    /// What Authenticate would decide now for an account, and why
    /// (`explain`).
    pub async fn explain(&self, request: ExplainRequest, viewer: &Viewer) -> Result<Explanation> {
        let now = self.inner.clock.now();
        explain::explain(
            self.store(),
            &self.inner.config.throttle,
            now,
            request,
            viewer,
        )
        .await
    }
}

impl<S: LoginStore + ThrottleStore + UsageStore + AuditStore> Logins<S> {
    /// Fails when the OS cannot supply the keys of the in-memory digests.
    /// `warm`: the key of the warm verifiers the fleet shares
    /// (`login/warm.rs`); without one, only this process's cache spares
    /// argon2.
    pub fn new(
        store: S,
        hasher: Hasher,
        clock: Arc<dyn Clock>,
        config: LoginConfig,
        warm: Option<WarmKey>,
    ) -> Result<Self> {
        let window = Duration::from_secs(config.throttle.window_secs);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                hasher,
                clock,
                config,
                memory: ThrottleMemory::new(window, config.throttle.remembered_guesses)?,
                verified: VerifiedCache::new(config.verified_cache)?,
                warm,
                warm_hits: std::sync::atomic::AtomicU64::new(0),
                usage: UsageBuffer::new(config.usage),
                running: TaskTracker::new(),
            }),
        })
    }

    fn store(&self) -> &S {
        &self.inner.store
    }

    /// What the login path is doing, for metrics and tests.
    pub fn stats(&self) -> Stats {
        let hasher = &self.inner.hasher;
        let pool = hasher.pool();
        let (cache_hits, cache_misses) = self.inner.verified.hits_and_misses();
        Stats {
            argon2_verifications: hasher.verifications(),
            hash_pool_workers: pool.workers(),
            hash_pool_queued: pool.queued(),
            hash_pool_busy: pool.busy(),
            cache_hits,
            cache_misses,
            usage_pending: self.inner.usage.len(),
            hash_pool_skipped: pool.skipped(),
            hash_pool_refused: pool.refused(),
            memory: self.inner.memory.sizes(),
            warm_hits: self
                .inner
                .warm_hits
                .load(std::sync::atomic::Ordering::Relaxed),
            login_reads: self.store().login_reads(),
        }
    }

    /// Decides one login. A throttled login, and a repeat of a recent wrong
    /// guess, are answered before anything is read; every other one costs
    /// exactly one argon2 verification (or, for one that will succeed, a
    /// verified-secret cache hit): the selector inside the secret leads to
    /// at most one stored record, and when there is none the verification
    /// runs against a dummy hash.
    ///
    /// The decision runs in a task of its own, so a caller that goes away
    /// (a deadline, a reset stream) cannot take a guess back: once its
    /// password is being checked it is counted; one not yet checked is
    /// dropped without argon2.
    pub async fn authenticate(&self, attempt: LoginAttempt) -> Result<LoginOutcome> {
        let ticket = Ticket::new();
        let _caller = CancelOnDrop(ticket.clone());
        let logins = self.clone();
        self.inner
            .running
            .spawn(async move { logins.decide(attempt, ticket).await })
            .await
            .map_err(|error| Error::internal(format!("a login task failed: {error}")))?
    }

    /// One login, in steps: answer from memory; read and gate; verify
    /// without argon2 where memory allows; take a place among the scope's
    /// guesses in flight (which may send it back to read again); verify
    /// with argon2; conclude.
    async fn decide(&self, attempt: LoginAttempt, ticket: Ticket) -> Result<LoginOutcome> {
        let typed = Typed::of(&self.inner, &attempt);
        let memory = &self.inner.memory;
        let remembered = typed.attempt(&attempt);
        // A place taken after waiting for one, kept while the state is read
        // again: a login that waited decides on what holds now.
        let mut held: Option<Reservation> = None;
        loop {
            if ticket.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let now = self.inner.clock.now();
            if let Some(until) = memory.refuse_from_memory(&remembered, now) {
                return Ok(throttled(until, now));
            }
            let watch = memory.watch(&remembered);
            let (state, may_use_cache, room) = match self.read(&attempt, &typed, now).await? {
                Gated::Throttled(until) => return Ok(throttled(until, now)),
                Gated::Verify {
                    state,
                    may_use_cache,
                    room,
                } => (state, may_use_cache, room),
            };
            let facts = typed.facts(&state, &attempt, now);
            let login = Login::new(&attempt, &typed, &facts, memory);
            // A failed check needs no argon2, but still takes its place among
            // the scope's guesses in flight below: a burst of them must not
            // all pass the gate on one read and count past the limit.
            if !typed.check_failed {
                if let Some(verification) = self.verify_from_memory(&login, may_use_cache) {
                    return self.conclude(&login, verification).await;
                }
            }
            let _place = match held.take() {
                Some(place) => place,
                None => match memory.place(&watch, &room, typed.deadline).await? {
                    Place::Taken(place) => place,
                    Place::ReadAgain(place) => {
                        held = place;
                        continue;
                    }
                },
            };
            if typed.check_failed {
                return self.conclude(&login, Verification::CheckFailed).await;
            }
            let matched = self.verify_with_argon2(&login, &ticket).await?;
            return self
                .conclude(&login, Verification::Argon2 { matched })
                .await;
        }
    }

    /// Reads what the login is decided on, and gates it: a stored block
    /// refuses it here (and is remembered, so the next attempt is refused
    /// without a read).
    async fn read(&self, attempt: &LoginAttempt, typed: &Typed, now: Timestamp) -> Result<Gated> {
        let state = self
            .store()
            .login_state(&typed.scopes, &typed.looked_up, &typed.selector)
            .await?;
        match decision::gate(
            &typed.facts(&state, attempt, now),
            &self.inner.config.throttle,
        ) {
            Gate::Throttled {
                until,
                remember,
                by,
            } => {
                let remembered = typed.attempt(attempt);
                let memory = &self.inner.memory;
                memory.refused(&remembered, by, &remember, state.account_exists, now);
                Ok(Gated::Throttled(until))
            }
            Gate::Verify {
                may_use_cache,
                room,
            } => Ok(Gated::Verify {
                state,
                may_use_cache,
                room: room.map(|(_, room)| room),
            }),
        }
    }

    /// A login that may be decided without argon2: a repeat of a guess
    /// this replica verified against this very hash, or (only for one that
    /// would succeed) this process's cache, then the warm verifier a device
    /// left through any replica (`warm.rs`).
    fn verify_from_memory(&self, login: &Login<'_>, may_use_cache: bool) -> Option<Verification> {
        if let Recall::Known { matched } = login.recall {
            return Some(Verification::Remembered { matched });
        }
        let candidate = login.facts.state.credential.as_ref()?;
        let secret = login.typed.secret.as_ref()?;
        let now = login.facts.now;
        let cached = may_use_cache
            && (self
                .inner
                .verified
                .matches(candidate.app_password_id, secret, now)
                || self.warm_matches(candidate, secret, now));
        cached.then_some(Verification::Cached)
    }

    /// Runs argon2 against the candidate's hash, or without one the dummy,
    /// within what is left of the login's deadline.
    async fn verify_with_argon2(&self, login: &Login<'_>, ticket: &Ticket) -> Result<bool> {
        let typed = login.typed;
        let admission = Admission {
            wait: typed
                .deadline
                .saturating_duration_since(tokio::time::Instant::now()),
            ticket: Some(ticket.clone()),
        };
        let credential = login.facts.state.credential.as_ref();
        let stored = credential.map(|c| c.secret_hash.clone());
        self.inner
            .hasher
            .verify(stored, typed.secret.clone(), admission)
            .await
    }

    /// Decides a verified login and applies what the decision says.
    async fn conclude(
        &self,
        login: &Login<'_>,
        verification: Verification,
    ) -> Result<LoginOutcome> {
        let outdated = login
            .facts
            .state
            .credential
            .as_ref()
            .is_some_and(|c| self.inner.hasher.is_outdated(&c.secret_hash));
        let Decision { outcome, effects } = decision::decide(login.facts, verification, outdated);
        for effect in effects {
            self.apply(effect, login).await?;
        }
        self.inner.memory.decided(&login.typed.digest);
        Ok(outcome)
    }

    /// Applies one effect of a decision.
    async fn apply(&self, effect: Effect, login: &Login<'_>) -> Result<()> {
        let Login { attempt, facts, .. } = login;
        let (scopes, secret) = (&login.typed.scopes, login.typed.secret.as_ref());
        let now = facts.now;
        let memory = &self.inner.memory;
        match effect {
            Effect::CountFailure {
                reason,
                account_known,
                app_password_id,
            } => {
                let mut event = failure_event(attempt, facts, reason);
                if account_known {
                    event.username = Some(attempt.username.clone());
                }
                event.app_password_id = app_password_id;
                self.count_failure(login, reason, event).await
            }
            Effect::ClearPair => self.store().record_success(&scopes.pair, now).await,
            Effect::ForgetPair => {
                memory.forget_block(&scopes.pair);
                Ok(())
            }
            Effect::RememberVerified { app_password_id } => {
                if let Some(secret) = secret {
                    self.inner.verified.remember(app_password_id, secret, now);
                }
                Ok(())
            }
            Effect::RecordUse => match &facts.state.credential {
                Some(credential) => {
                    let usage = Usage {
                        at: now,
                        client_ip: facts.client_ip,
                        protocol: attempt.protocol,
                        client: attempt.client.clone(),
                    };
                    // A success is the only time a warm verifier is made.
                    let warm = match (&self.inner.warm, secret) {
                        (Some(key), Some(secret)) => key.due(
                            credential.warm.as_ref(),
                            credential.app_password_id,
                            &credential.secret_hash,
                            secret,
                            now,
                        ),
                        _ => None,
                    };
                    self.record_use(credential, usage, warm, &attempt.actor)
                        .await
                }
                None => Ok(()),
            },
            Effect::Rehash => {
                if let (Some(credential), Some(secret)) = (&facts.state.credential, secret) {
                    self.upgrade_hash(credential, secret.clone()).await;
                }
                Ok(())
            }
        }
    }

    /// Counts a wrong guess in all three scopes and audits it, in one
    /// transaction, and remembers it. A guess this replica counted within
    /// the window is not counted again: it joins the guess's coalesced
    /// repeat count, written by the next flush, instead of a row of its own.
    async fn count_failure(
        &self,
        login: &Login<'_>,
        reason: FailureReason,
        event: AuditEvent,
    ) -> Result<()> {
        let memory = &self.inner.memory;
        let now = login.facts.now;
        let remembered = login.typed.attempt(login.attempt);
        let failure = |event| Failure {
            verified_against: login.print,
            // Every refusal but a wrong password is reached with a right one.
            matched: reason != FailureReason::InvalidCredentials,
            reason,
            event,
            account_exists: login.facts.state.account_exists,
        };
        if login.recall.counted() {
            memory.repeated(&remembered, failure(event), now);
            return Ok(());
        }
        let throttle = &self.inner.config.throttle;
        let scopes = login.typed.scopes.all();
        let rules = scopes
            .iter()
            .map(|&scope| (*scope, throttle.rule(scope.kind)))
            .collect();
        let counters = self
            .store()
            .record_failures(rules, now, event.clone())
            .await?;
        let blocks = counters
            .iter()
            .filter_map(|(scope, counter)| Some((scope, counter.blocked_until?)));
        memory.counted(&remembered, failure(event), blocks, now);
        Ok(())
    }

    /// Records a success's usage: at once when it earns an audit event (or
    /// coalescing is off), else in the usage buffer, which a background task
    /// writes once per interval.
    async fn record_use(
        &self,
        credential: &Credential,
        usage: Usage,
        warm: Option<Warm>,
        actor: &Actor,
    ) -> Result<()> {
        let (seen_networks, events) = success_events(credential, &usage, actor);
        let buffer = &self.inner.usage;
        if seen_networks.is_none() && buffer.config().flush_interval().is_some() {
            buffer.add(credential.app_password_id, PendingUse::one(usage, warm));
            return Ok(());
        }
        self.store()
            .record_use(
                credential.app_password_id,
                PendingUse::one(usage, warm),
                seen_networks,
                events,
            )
            .await
    }

    /// Whether the warm verifier stored with `credential` stands for
    /// `secret` now; a hit is remembered in this process's cache too.
    fn warm_matches(&self, credential: &Credential, secret: &Secret, now: Timestamp) -> bool {
        let (Some(key), Some(warm)) = (&self.inner.warm, &credential.warm) else {
            return false;
        };
        let id = credential.app_password_id;
        let hit = key.matches(warm, id, &credential.secret_hash, secret, now);
        if hit {
            self.inner
                .warm_hits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.verified.remember(id, secret, now);
        }
        hit
    }

    /// Re-hashes a verified secret whose stored hash has outdated argon2
    /// parameters, so that raising them upgrades every password in use
    /// without anyone re-issuing. Best effort: the login has succeeded
    /// either way, and a failed upgrade is tried again at the next login.
    async fn upgrade_hash(&self, credential: &Credential, secret: Secret) {
        let hasher = &self.inner.hasher;
        let upgraded = match hasher.hash(secret, hasher.default_admission()).await {
            Ok(hash) => {
                self.store()
                    .replace_hash(credential.app_password_id, &credential.secret_hash, &hash)
                    .await
            }
            Err(error) => Err(error),
        };
        match upgraded {
            Ok(()) => {
                tracing::info!(app_password = %credential.app_password_id, "re-hashed with the configured argon2 parameters")
            }
            Err(error) => {
                tracing::warn!(app_password = %credential.app_password_id, %error, "re-hashing failed; will retry at the next login")
            }
        }
    }

    /// Writes the usage gathered in the buffer, in transactions of a few
    /// hundred rows: each is one commit for many rows, and none holds
    /// SQLite's write lock long enough to stall a login's write. What a
    /// failure leaves unwritten is kept for the next flush. Returns how many
    /// app passwords were written.
    pub async fn flush_usage(&self) -> Result<usize> {
        const PER_TRANSACTION: usize = 256;
        let batch = self.inner.usage.take();
        let mut written = 0;
        for chunk in batch.chunks(PER_TRANSACTION) {
            if let Err(error) = self.store().record_uses(chunk).await {
                self.inner.usage.put_back(batch[written..].to_vec());
                return Err(error);
            }
            written += chunk.len();
        }
        Ok(written)
    }

    /// Writes the coalesced audit events of repeated wrong guesses: one per
    /// guess repeated since the last flush, with the number of repeats.
    /// What a failure leaves unwritten is kept for the next flush. Returns
    /// how many events were written.
    pub async fn flush_repeats(&self) -> Result<usize> {
        const PER_TRANSACTION: usize = 256;
        let memory = &self.inner.memory;
        let mut events = memory.take_events(self.inner.clock.now());
        let mut written = 0;
        while !events.is_empty() {
            let rest = events.split_off(events.len().min(PER_TRANSACTION));
            let count = events.len();
            if let Err(error) = self.store().record_events(events.clone()).await {
                events.extend(rest);
                memory.put_back_events(events);
                return Err(error);
            }
            written += count;
            events = rest;
        }
        Ok(written)
    }

    /// How coalescing is configured, for the task that flushes.
    pub fn usage_config(&self) -> UsageConfig {
        self.inner.usage.config()
    }

    /// Resolves when the usage buffer has filled and should be flushed early.
    pub async fn usage_buffer_filled(&self) {
        self.inner.usage.filled().await;
    }

    /// Deletes failure counters that no longer matter: idle for a whole
    /// window, not blocked, and without a success that keeps a source known.
    pub async fn prune_throttle_counters(&self) -> Result<u64> {
        let now = self.inner.clock.now();
        let config = &self.inner.config.throttle;
        let window = Duration::from_secs(config.window_secs);
        self.store()
            .prune_counters(
                now.saturating_sub(window),
                now.saturating_sub(config.known_source_for()),
                now,
            )
            .await
    }

    /// Resolves once no decision is running: a stop waits on this before
    /// its last flush, so a guess being checked when its caller left is
    /// still counted and audited.
    ///
    /// The tracker is closed at the first settle and stays closed: closing
    /// only lets `wait` resolve once it is empty (decisions spawned after
    /// are still tracked), so every later settle waits for what runs then.
    pub async fn settle(&self) {
        self.inner.running.close();
        self.inner.running.wait().await;
    }

    /// The clock the login path runs on, for the background tasks.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }
}

/// What a login is decided on that stays the same while it waits for a
/// place: its scopes, its address, the secret parsed from what was typed
/// (and its selector), the digest of the guess, and its deadline.
struct Typed {
    client_ip: IpAddr,
    scopes: Scopes,
    /// The username the login's state is read by: the one typed, or, for
    /// an account outside the proxy's tenant, one no account can have, so
    /// that the same query finds nothing and the login is decided, and
    /// costs, exactly as an unknown user's.
    looked_up: Username,
    secret: Option<Secret>,
    /// A version 2 secret whose check letters are wrong (a typing error,
    /// or a guess that is not worth an argon2 run): it is read, gated and
    /// counted as any wrong password, and refused with the same answer,
    /// without argon2. What sets it apart is in the typed text alone, so
    /// the shorter answer tells nothing of the account.
    check_failed: bool,
    /// A malformed secret still runs the same query (with a selector that
    /// matches nothing), so it costs what any other failure costs.
    selector: String,
    digest: GuessDigest,
    deadline: tokio::time::Instant,
}

impl Typed {
    fn of<S>(inner: &Inner<S>, attempt: &LoginAttempt) -> Self {
        let config = &inner.config;
        let wait = attempt
            .wait
            .unwrap_or(config.default_wait)
            .min(config.max_wait);
        let client_ip = canonical_ip(attempt.client_ip);
        let (scopes, looked_up) = match attempt.reach.tenant() {
            Some(tenant) if !attempt.reach.reaches(&attempt.username) => (
                Scopes::outside(tenant, &attempt.username, client_ip),
                Username::nobody(),
            ),
            _ => (
                Scopes::of(&attempt.username, client_ip, attempt.reach.tenant()),
                attempt.username.clone(),
            ),
        };
        let typed = attempt.password.expose();
        let digest = inner
            .memory
            .digest(&scopes.pair, client_ip, attempt.protocol, typed);
        let (secret, check_failed) = match Secret::read(typed) {
            Reading::Secret(secret) => (Some(secret), false),
            Reading::CheckFailed => (None, true),
            Reading::NotASecret => (None, false),
        };
        Self {
            client_ip,
            looked_up,
            selector: secret.as_ref().map_or("", Secret::selector).to_owned(),
            scopes,
            secret,
            check_failed,
            digest,
            deadline: tokio::time::Instant::now() + wait,
        }
    }

    /// What the decision is made on, given the state read at `now`.
    fn facts<'a>(
        &self,
        state: &'a LoginState,
        attempt: &LoginAttempt,
        now: Timestamp,
    ) -> Facts<'a> {
        Facts {
            state,
            protocol: attempt.protocol,
            client_ip: self.client_ip,
            now,
        }
    }

    /// The login as the throttle memory knows it.
    fn attempt<'a>(&'a self, attempt: &'a LoginAttempt) -> memory::Attempt<'a> {
        memory::Attempt {
            scopes: &self.scopes,
            username: &attempt.username,
            client_ip: self.client_ip,
            protocol: attempt.protocol,
            actor: &attempt.actor,
            digest: self.digest,
        }
    }
}

/// A login read and gated. Lives on the stack for one step, so the size
/// of its state is no reason to box it (a heap allocation per login).
#[allow(clippy::large_enum_variant)]
enum Gated {
    /// A stored block refuses it until then.
    Throttled(Timestamp),
    /// Verify it, on `state`; see `decision::Gate::Verify`.
    Verify {
        state: LoginState,
        may_use_cache: bool,
        room: [u32; 3],
    },
}

/// One login being decided, once its state is read.
struct Login<'a> {
    attempt: &'a LoginAttempt,
    typed: &'a Typed,
    facts: &'a Facts<'a>,
    /// The stored hash the guess is checked against.
    print: HashPrint,
    /// What this replica remembers of the guess against that hash.
    recall: Recall,
}

impl<'a> Login<'a> {
    fn new(
        attempt: &'a LoginAttempt,
        typed: &'a Typed,
        facts: &'a Facts<'a>,
        memory: &ThrottleMemory,
    ) -> Self {
        let candidate = facts.state.credential.as_ref();
        let print = HashPrint::of(candidate.map(|c| c.secret_hash.as_str()));
        let recall = memory.recall(&typed.attempt(attempt), print, facts.now);
        Self {
            attempt,
            typed,
            facts,
            print,
            recall,
        }
    }
}

/// Cancels the ticket of a login whose caller went away before its
/// password was checked.
struct CancelOnDrop(Ticket);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn throttled(until: Timestamp, now: Timestamp) -> LoginOutcome {
    LoginOutcome::Throttled {
        retry_after: until.since(now),
    }
}

fn failure_event(attempt: &LoginAttempt, facts: &Facts<'_>, reason: FailureReason) -> AuditEvent {
    let mut event = AuditEvent::new(EventType::AuthenticationFailed, facts.now, &attempt.actor)
        .detail(reason.as_str());
    event.client_ip = Some(facts.client_ip);
    event.protocol = Some(attempt.protocol);
    event
}
