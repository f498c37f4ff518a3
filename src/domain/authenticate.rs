//! Verifying a legacy login.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use uuid::Uuid;
use zeroize::Zeroizing;

use super::audit::{AuditEvent, EventType};
use super::clock::Timestamp;
use super::error::Result;
use super::network::canonical_ip;
use super::protocol::Protocol;
use super::secret::Secret;
use super::store::{Credential, Store, Usage};
use super::throttle::{Counter, ScopeCounters, ScopeKind, Scopes};
use super::username::Username;
use super::Latchkey;

/// The password as typed, already bounded in length at the edge. Wiped on
/// drop; `Debug` shows nothing of it.
pub struct TypedPassword(Zeroizing<String>);

impl TypedPassword {
    pub fn new(typed: &str) -> Self {
        Self(Zeroizing::new(typed.to_owned()))
    }
}

impl fmt::Debug for TypedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TypedPassword(<redacted>)")
    }
}

#[derive(Debug)]
pub struct LoginAttempt {
    pub username: Username,
    pub password: TypedPassword,
    pub protocol: Protocol,
    pub client_ip: IpAddr,
    /// The proxy that asked, for the audit trail.
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    Success {
        username: Username,
        app_password_id: Uuid,
    },
    Failure(FailureReason),
    /// Too many recent failures in this login's scope; try again after
    /// `retry_after`. Decided before any verification.
    Throttled {
        retry_after: Duration,
    },
}

/// Only `InvalidCredentials` can be reached without knowing the password,
/// so the finer reasons tell nothing to someone guessing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    InvalidCredentials,
    AccountDisabled,
    Revoked,
    Expired,
    ProtocolNotAllowed,
    NetworkNotAllowed,
}

impl FailureReason {
    /// The code used in logs and the audit trail.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureReason::InvalidCredentials => "invalid_credentials",
            FailureReason::AccountDisabled => "account_disabled",
            FailureReason::Revoked => "revoked",
            FailureReason::Expired => "expired",
            FailureReason::ProtocolNotAllowed => "protocol_not_allowed",
            FailureReason::NetworkNotAllowed => "network_not_allowed",
        }
    }
}

impl<S: Store> Latchkey<S> {
    /// Decides one login. A throttled login is refused before anything else;
    /// every other one costs exactly one argon2 verification: the selector
    /// inside the secret leads to at most one stored record, and when there
    /// is none the verification runs against a dummy hash.
    pub async fn authenticate(&self, attempt: LoginAttempt) -> Result<LoginOutcome> {
        let now = self.now();
        let client_ip = canonical_ip(attempt.client_ip);
        let scopes = Scopes::of(&attempt.username, client_ip);
        let throttled = |until: Timestamp| {
            let wait = until.as_millis().saturating_sub(now.as_millis()).max(0);
            LoginOutcome::Throttled {
                retry_after: Duration::from_millis(u64::try_from(wait).unwrap_or(0)),
            }
        };
        // Blocks of the source and the pair that this replica has seen are
        // answered from memory, before anything is read.
        let remembered = [&scopes.source, &scopes.pair];
        if let Some(until) = self.inner.throttle.cached_block(&remembered, now) {
            return Ok(throttled(until));
        }

        let secret = Secret::parse(&attempt.password.0);
        // A malformed secret still runs the same query (with a selector that
        // matches nothing), so it costs what any other failure costs.
        let selector = secret.as_ref().map_or("", Secret::selector);
        let state = self
            .store()
            .login_state(&scopes, &attempt.username, selector)
            .await?;
        let pair_counter = match self.throttle_check(&scopes, &state.counters, now) {
            Ok(pair_counter) => pair_counter,
            Err(until) => return Ok(throttled(until)),
        };
        let stored_hash = state.credential.as_ref().map(|c| c.secret_hash.clone());
        // Kept for the verified-secret cache and for a re-hash.
        let known_secret = secret.clone();
        // The cache may stand in for argon2 only for a login that would
        // succeed: every refusal and every failure pays a full verification,
        // so timing still tells none of them apart.
        let refused = state
            .credential
            .as_ref()
            .and_then(|c| refusal(c, now, attempt.protocol, client_ip));
        let acceptable = state.credential.as_ref().filter(|_| refused.is_none());
        let cached = match (acceptable, &known_secret) {
            (Some(c), Some(secret)) => self.inner.verified.matches(c.app_password_id, secret, now),
            _ => false,
        };
        let verified = cached || self.inner.hasher.verify(stored_hash, secret).await?;
        if let (Some(c), Some(secret), true, false) = (acceptable, &known_secret, verified, cached)
        {
            self.inner.verified.remember(c.app_password_id, secret, now);
        }

        let credential = match state.credential {
            Some(credential) if verified => credential,
            _ => {
                let known = state.account_exists.then_some(&attempt.username);
                let event = failure_event(
                    &attempt,
                    now,
                    client_ip,
                    known,
                    None,
                    FailureReason::InvalidCredentials,
                );
                self.count_failure(&scopes, &attempt.password, now, event)
                    .await?;
                return Ok(LoginOutcome::Failure(FailureReason::InvalidCredentials));
            }
        };

        // A refusal with the right password counts as a failure too: a
        // revoked or expired password in use is as suspicious as a wrong
        // one, a stale device repeating it is counted once all the same, and
        // every failure then costs the same, so timing tells none apart.
        if let Some(reason) = refused {
            let event = failure_event(
                &attempt,
                now,
                client_ip,
                Some(&credential.username),
                Some(credential.app_password_id),
                reason,
            );
            self.count_failure(&scopes, &attempt.password, now, event)
                .await?;
            return Ok(LoginOutcome::Failure(reason));
        }

        self.clear_pair(&scopes, pair_counter, now).await?;
        let usage = Usage {
            at: now,
            client_ip,
            protocol: attempt.protocol,
        };
        self.record_use(&credential, usage, &attempt.actor).await?;
        if let Some(secret) =
            known_secret.filter(|_| self.inner.hasher.is_outdated(&credential.secret_hash))
        {
            self.upgrade_hash(&credential, secret).await;
        }
        Ok(LoginOutcome::Success {
            username: credential.username,
            app_password_id: credential.app_password_id,
        })
    }

    /// `Err(until)` when a stored block covers this login; otherwise the
    /// pair's counter, for the success path. The account's block is skipped
    /// for a known source of the account. Blocks of the source and the pair
    /// are remembered, so the next attempt is refused without a read.
    fn throttle_check(
        &self,
        scopes: &Scopes,
        counters: &ScopeCounters,
        now: Timestamp,
    ) -> std::result::Result<Counter, Timestamp> {
        let throttle = &self.inner.throttle;
        let pair = counters.pair;
        let known_for = throttle.config().known_source_for();
        let known_source = pair
            .last_success_at
            .is_some_and(|at| now.as_millis().saturating_sub(at.as_millis()) < millis(known_for));
        let mut latest = None;
        for kind in [ScopeKind::Source, ScopeKind::Pair, ScopeKind::Account] {
            if kind == ScopeKind::Account && known_source {
                continue;
            }
            let counter = counters.get(kind);
            if let Some(until) = counter.blocked_until.filter(|until| *until > now) {
                if kind != ScopeKind::Account {
                    throttle.remember_block(scopes.get(kind), until, now);
                }
                latest = latest.max(Some(until));
            }
        }
        latest.map_or(Ok(pair), Err)
    }

    /// Counts a wrong guess in all three scopes and audits it, in one
    /// transaction; a guess that repeats a recent one from the same source
    /// for the same account is audited but not counted again.
    async fn count_failure(
        &self,
        scopes: &Scopes,
        typed: &TypedPassword,
        now: Timestamp,
        event: AuditEvent,
    ) -> Result<()> {
        let throttle = &self.inner.throttle;
        if throttle.repeated_guess(&scopes.pair, &typed.0, now) {
            return self.store().record_event(event).await;
        }
        let rules = scopes
            .all()
            .into_iter()
            .map(|scope| (scope.clone(), throttle.config().rule(scope.kind)))
            .collect();
        let counters = self.store().record_failures(rules, now, event).await?;
        for (scope, counter) in counters {
            if let Some(until) = counter.blocked_until {
                if scope.kind != ScopeKind::Account {
                    throttle.remember_block(&scope, until, now);
                }
            }
        }
        Ok(())
    }

    /// A success proves this source holds a valid password for this account:
    /// its pair counter is cleared and the source becomes known. The
    /// source's and the account's counters are left alone: one good login
    /// does not clear a network that is spraying other accounts, nor an
    /// attack on this account from elsewhere. Written only when something
    /// changes, so a steady stream of good logins costs no write here.
    async fn clear_pair(&self, scopes: &Scopes, pair: Counter, now: Timestamp) -> Result<()> {
        let refresh_after = millis(Duration::from_secs(86_400));
        let stale = pair
            .last_success_at
            .is_none_or(|at| now.as_millis().saturating_sub(at.as_millis()) >= refresh_after);
        if pair.failures > 0 || pair.blocked_until.is_some() || stale {
            self.store().record_success(&scopes.pair, now).await?;
        }
        self.inner.throttle.forget_block(&scopes.pair);
        self.inner.throttle.forget_guesses(&scopes.pair);
        Ok(())
    }

    /// Re-hashes a verified secret whose stored hash has outdated argon2
    /// parameters, so that raising them upgrades every password in use
    /// without anyone re-issuing. Best effort: the login has succeeded
    /// either way, and a failed upgrade is tried again at the next login.
    async fn upgrade_hash(&self, credential: &Credential, secret: Secret) {
        let upgraded = match self.inner.hasher.hash(secret).await {
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

    /// Deletes failure counters that no longer matter.
    pub async fn prune_throttle_counters(&self) -> Result<u64> {
        let now = self.now();
        let config = self.inner.throttle.config();
        let window = millis(Duration::from_secs(config.window_secs));
        let known = millis(config.known_source_for());
        self.store()
            .prune_counters(
                Timestamp::from_millis(now.as_millis().saturating_sub(window)),
                Timestamp::from_millis(now.as_millis().saturating_sub(known)),
                now,
            )
            .await
    }
}

fn failure_event(
    attempt: &LoginAttempt,
    now: Timestamp,
    client_ip: IpAddr,
    account: Option<&Username>,
    app_password_id: Option<Uuid>,
    reason: FailureReason,
) -> AuditEvent {
    let mut event = AuditEvent::new(EventType::AuthenticationFailed, now, &attempt.actor)
        .detail(reason.as_str());
    event.username = account.cloned();
    event.app_password_id = app_password_id;
    event.client_ip = Some(client_ip);
    event.protocol = Some(attempt.protocol);
    event
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Why a verified password is still refused, cheapest check first.
fn refusal(
    credential: &Credential,
    now: Timestamp,
    protocol: Protocol,
    client_ip: IpAddr,
) -> Option<FailureReason> {
    if credential.account_disabled {
        Some(FailureReason::AccountDisabled)
    } else if credential.revoked {
        Some(FailureReason::Revoked)
    } else if credential.expires_at.is_some_and(|at| at <= now) {
        Some(FailureReason::Expired)
    } else if !credential.protocols.allows(protocol) {
        Some(FailureReason::ProtocolNotAllowed)
    } else if !credential.allowed_networks.permits(client_ip) {
        Some(FailureReason::NetworkNotAllowed)
    } else {
        None
    }
}
