//! The login service: reads what a login is decided on, verifies the
//! password, asks `decision` what that comes to, and applies the effects.

use std::sync::Arc;
use std::time::Duration;

use super::decision::{self, Decision, Effect, Facts, Gate, Verification};
use super::explain::{self, ExplainRequest, Explanation, Viewer};
use super::memory::{
    Counted, GuessDigest, HashPrint, NewGuess, Recall, Reservation, Reserve, ThrottleMemory,
    ThrottledAttempt,
};
use super::model::{Credential, FailureReason, LoginAttempt, LoginOutcome, Usage, Warm};
use super::store::{LoginStore, ThrottleStore, UsageStore};
use super::throttle::{source_network, ScopeKind, Scopes, ThrottleConfig};
use super::usage::{success_events, PendingUse, UsageBuffer, UsageConfig};
use super::verified_cache::{VerifiedCache, VerifiedCacheConfig};
use super::warm::WarmKey;
use crate::domain::accounts::store::AccountStore;
use crate::domain::app_passwords::store::AppPasswordStore;
use crate::domain::audit::event::{AuditEvent, EventType};
use crate::domain::audit::store::AuditStore;
use crate::domain::secrets::format::Secret;
use crate::domain::secrets::hashing::Hasher;
use crate::domain::secrets::pool::{Admission, Ticket};
use crate::domain::shared::error::{Error, Reason, Result};
use crate::domain::shared::network::canonical_ip;
use crate::domain::shared::time::{Clock, Timestamp};
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
    /// Wrong guesses remembered, and scopes with a guess in flight.
    pub remembered_guesses: usize,
    pub guesses_in_flight: usize,
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
            remembered_guesses: self.inner.memory.remembered_guesses(),
            guesses_in_flight: self.inner.memory.in_flight(),
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

    async fn decide(&self, attempt: LoginAttempt, ticket: Ticket) -> Result<LoginOutcome> {
        let config = &self.inner.config;
        let wait = attempt
            .wait
            .unwrap_or(config.default_wait)
            .min(config.max_wait);
        let deadline = tokio::time::Instant::now() + wait;
        let client_ip = canonical_ip(attempt.client_ip);
        let scopes = Scopes::of(&attempt.username, client_ip);
        let memory = &self.inner.memory;
        let typed = attempt.password.expose();
        let digest = memory.digest(&scopes.pair, client_ip, attempt.protocol, typed);
        let secret = Secret::parse(typed);
        // A malformed secret still runs the same query (with a selector that
        // matches nothing), so it costs what any other failure costs.
        let selector = secret.as_ref().map_or("", Secret::selector).to_owned();
        // A place taken after waiting for one, kept while the state is read
        // again: a login that waited decides on what holds now, not on
        // what held when it started waiting.
        let mut held: Option<Reservation> = None;
        'read: loop {
            if ticket.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let now = self.inner.clock.now();
            // Blocks of the source and the pair that this replica has seen
            // are answered from memory, before anything is read.
            if let Some((until, account_exists, by)) =
                memory.cached_block(&[&scopes.source, &scopes.pair], now)
            {
                memory.note_throttled(ThrottledAttempt {
                    by,
                    username: account_exists.then_some(&attempt.username),
                    client_ip,
                    protocol: attempt.protocol,
                    actor: &attempt.actor,
                });
                return Ok(throttled(until, now));
            }
            let watch = memory.watch(&scopes.all(), &digest);
            let state = self
                .store()
                .login_state(&scopes, &attempt.username, &selector)
                .await?;
            let facts = Facts {
                state: &state,
                protocol: attempt.protocol,
                client_ip,
                now,
            };
            let (may_use_cache, room) = match decision::gate(&facts, &self.inner.config.throttle) {
                Gate::Throttled {
                    until,
                    remember,
                    by,
                } => {
                    for (kind, blocked_until) in remember {
                        memory.remember_block(
                            scopes.get(kind),
                            blocked_until,
                            now,
                            state.account_exists,
                        );
                    }
                    memory.note_throttled(ThrottledAttempt {
                        by: scopes.get(by),
                        username: state.account_exists.then_some(&attempt.username),
                        client_ip,
                        protocol: attempt.protocol,
                        actor: &attempt.actor,
                    });
                    return Ok(throttled(until, now));
                }
                Gate::Verify {
                    may_use_cache,
                    room,
                } => (may_use_cache, room),
            };
            let candidate = state.credential.as_ref();
            let print = HashPrint::of(candidate.map(|c| c.secret_hash.as_str()));
            let recall = memory.recall(&scopes.pair, &digest, print, now);
            let login = Login {
                attempt: &attempt,
                scopes: &scopes,
                facts: &facts,
                secret: secret.as_ref(),
                digest,
                print,
                counted_before: recall.counted(),
            };
            // A guess this replica verified against this very hash is
            // decided without argon2 (and, being a repeat, writes no row).
            if let Recall::Known { matched } = recall {
                return self
                    .conclude(&login, Verification::Remembered { matched })
                    .await;
            }
            // Only a login that would succeed may skip argon2: this
            // process's cache first, then the warm verifier a device left
            // through any replica (`warm.rs`).
            let cached = match (candidate, &secret) {
                (Some(c), Some(secret)) if may_use_cache => {
                    self.inner.verified.matches(c.app_password_id, secret, now)
                        || self.warm_matches(c, secret, now)
                }
                _ => false,
            };
            if cached {
                return self.conclude(&login, Verification::Cached).await;
            }

            // Every other login holds a place among its scopes' guesses in
            // flight until it is decided, or waits for one. A waiter woken
            // by a place given back asks again without reading (the watch
            // takes off what was counted since its read); once it has a
            // place, it reads the state again before going on.
            let rooms = room.map(|(_, room)| room);
            let _held = match held.take() {
                Some(reservation) => reservation,
                None => loop {
                    match memory.reserve(&watch, &rooms) {
                        Reserve::Held(reservation) => break reservation,
                        Reserve::Reread => continue 'read,
                        Reserve::Wait(place) => {
                            if tokio::time::timeout_at(deadline, place).await.is_err() {
                                // The scope's places stayed taken by guesses
                                // still being checked: overload, not failures.
                                return Err(Error::ResourceExhausted(
                                    Reason::ScopeBusy,
                                    "too many sign-ins of this account or network are being checked at once; retry shortly".to_owned(),
                                ));
                            }
                            if let Reserve::Held(reservation) = memory.reserve(&watch, &rooms) {
                                held = Some(reservation);
                                continue 'read;
                            }
                        }
                    }
                },
            };
            let admission = Admission {
                wait: deadline.saturating_duration_since(tokio::time::Instant::now()),
                ticket: Some(ticket.clone()),
            };
            let stored = candidate.map(|c| c.secret_hash.clone());
            let matched = self
                .inner
                .hasher
                .verify(stored, secret.clone(), admission)
                .await?;
            return self
                .conclude(&login, Verification::Argon2 { matched })
                .await;
        }
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
        self.inner.memory.decided(&login.digest);
        Ok(outcome)
    }

    /// Applies one effect of a decision.
    async fn apply(&self, effect: Effect, login: &Login<'_>) -> Result<()> {
        let Login {
            attempt,
            scopes,
            facts,
            secret,
            ..
        } = login;
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
                    self.upgrade_hash(credential, (*secret).clone()).await;
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
        let pair = &login.scopes.pair;
        // Every refusal but a wrong password is reached with a right one.
        let matched = reason != FailureReason::InvalidCredentials;
        let remember = |event: AuditEvent, counted: Counted| {
            let guess = NewGuess {
                digest: login.digest,
                verified_against: login.print,
                matched,
                event,
                reason,
                network: source_network(login.facts.client_ip),
                account_known: login.facts.state.account_exists,
            };
            memory.remember_guess(pair, guess, counted, now);
        };
        if login.counted_before {
            remember(event, Counted::Before);
            return Ok(());
        }
        let throttle = &self.inner.config.throttle;
        let rules = login
            .scopes
            .all()
            .into_iter()
            .map(|scope| (scope.clone(), throttle.rule(scope.kind)))
            .collect();
        let counters = self
            .store()
            .record_failures(rules, now, event.clone())
            .await?;
        memory.counted(&login.scopes.all());
        remember(event, Counted::Now);
        for (scope, counter) in counters {
            if let Some(until) = counter.blocked_until {
                if scope.kind != ScopeKind::Account {
                    memory.remember_block(&scope, until, now, login.facts.state.account_exists);
                }
            }
        }
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
        actor: &str,
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
        let mut events = memory.take_repeats(self.inner.clock.now());
        let mut written = 0;
        while !events.is_empty() {
            let rest = events.split_off(events.len().min(PER_TRANSACTION));
            let count = events.len();
            if let Err(error) = self.store().record_events(events.clone()).await {
                events.extend(rest);
                memory.put_back_repeats(events);
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

/// One login being decided, as its effects need it.
struct Login<'a> {
    attempt: &'a LoginAttempt,
    scopes: &'a Scopes,
    facts: &'a Facts<'a>,
    secret: Option<&'a Secret>,
    digest: GuessDigest,
    /// The stored hash the guess is checked against.
    print: HashPrint,
    /// This replica counted the same guess within the window.
    counted_before: bool,
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
