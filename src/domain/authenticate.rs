//! Verifying a legacy login.

use std::net::IpAddr;

use uuid::Uuid;

use super::audit::{AuditEvent, EventType};
use super::error::Result;
use super::network::{canonical_ip, SeenNetworks};
use super::protocol::Protocol;
use super::secret::Secret;
use super::store::{Credential, Store, Usage};
use super::username::Username;
use super::Latchkey;

#[derive(Debug)]
pub struct LoginAttempt {
    pub username: Username,
    /// `None` when what was typed cannot be an app password; such a login
    /// still costs one verification, like any other failure.
    pub secret: Option<Secret>,
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
    /// Decides one login with exactly one argon2 verification: the selector
    /// inside the secret leads to at most one stored record, and when there
    /// is none the verification runs against a dummy hash.
    pub async fn authenticate(&self, mut attempt: LoginAttempt) -> Result<LoginOutcome> {
        // A malformed secret still runs the same query (with a selector that
        // matches nothing), so it costs what any other failure costs.
        let selector = attempt.secret.as_ref().map_or("", Secret::selector);
        let lookup = self
            .store()
            .find_credential(&attempt.username, selector)
            .await?;
        let stored_hash = lookup.credential.as_ref().map(|c| c.secret_hash.clone());
        let verified = self
            .inner
            .hasher
            .verify(stored_hash, attempt.secret.take())
            .await?;
        let now = self.now();
        let client_ip = canonical_ip(attempt.client_ip);

        let credential = match lookup.credential {
            Some(credential) if verified => credential,
            _ => {
                let known = lookup.account_exists.then_some(&attempt.username);
                self.record_failure(
                    &attempt,
                    client_ip,
                    known,
                    None,
                    FailureReason::InvalidCredentials,
                )
                .await?;
                return Ok(LoginOutcome::Failure(FailureReason::InvalidCredentials));
            }
        };

        if let Some(reason) = refusal(&credential, now, attempt.protocol, client_ip) {
            self.record_failure(
                &attempt,
                client_ip,
                Some(&credential.username),
                Some(credential.app_password_id),
                reason,
            )
            .await?;
            return Ok(LoginOutcome::Failure(reason));
        }

        let usage = Usage {
            at: now,
            client_ip,
            protocol: attempt.protocol,
        };
        let (seen_networks, events) = self.success_events(&credential, &usage, &attempt.actor);
        self.store()
            .record_use(credential.app_password_id, usage, seen_networks, events)
            .await?;
        Ok(LoginOutcome::Success {
            username: credential.username,
            app_password_id: credential.app_password_id,
        })
    }

    /// The audit events a success earns: the password's first use, or its
    /// first success from a network it was not used from before (the first
    /// use is from a new network by definition, so it is one event, not two).
    /// `None` and no events when nothing is new, which is the common case
    /// and then costs no extra write.
    fn success_events(
        &self,
        credential: &Credential,
        usage: &Usage,
        actor: &str,
    ) -> (Option<SeenNetworks>, Vec<AuditEvent>) {
        let network = SeenNetworks::network_of(usage.client_ip);
        let event_type = if credential.use_count == 0 {
            EventType::AppPasswordFirstUse
        } else if !credential.seen_networks.contains(&network) {
            EventType::AppPasswordNewNetwork
        } else {
            return (None, Vec::new());
        };
        let mut event = AuditEvent::new(event_type, usage.at, actor)
            .app_password(&credential.username, credential.app_password_id)
            .detail(network.to_string());
        event.client_ip = Some(usage.client_ip);
        event.protocol = Some(usage.protocol);
        (Some(credential.seen_networks.with(network)), vec![event])
    }

    async fn record_failure(
        &self,
        attempt: &LoginAttempt,
        client_ip: IpAddr,
        account: Option<&Username>,
        app_password_id: Option<Uuid>,
        reason: FailureReason,
    ) -> Result<()> {
        let mut event =
            AuditEvent::new(EventType::AuthenticationFailed, self.now(), &attempt.actor)
                .detail(reason.as_str());
        event.username = account.cloned();
        event.app_password_id = app_password_id;
        event.client_ip = Some(client_ip);
        event.protocol = Some(attempt.protocol);
        self.store().record_event(event).await
    }
}

/// Why a verified password is still refused, cheapest check first.
fn refusal(
    credential: &Credential,
    now: super::clock::Timestamp,
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
