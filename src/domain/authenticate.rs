//! Verifying a legacy login.

use std::net::IpAddr;

use uuid::Uuid;

use super::error::Result;
use super::network::canonical_ip;
use super::protocol::Protocol;
use super::secret::Secret;
use super::store::{Store, Usage};
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

impl<S: Store> Latchkey<S> {
    /// Decides one login with exactly one argon2 verification: the selector
    /// inside the secret leads to at most one stored record, and when there
    /// is none the verification runs against a dummy hash.
    pub async fn authenticate(&self, attempt: LoginAttempt) -> Result<LoginOutcome> {
        let credential = match &attempt.secret {
            Some(secret) => {
                self.store()
                    .find_credential(&attempt.username, secret.selector())
                    .await?
            }
            None => None,
        };
        let stored_hash = credential.as_ref().map(|c| c.secret_hash.clone());
        let verified = self
            .inner
            .hasher
            .verify(stored_hash, attempt.secret)
            .await?;
        let Some(credential) = credential.filter(|_| verified) else {
            return Ok(LoginOutcome::Failure(FailureReason::InvalidCredentials));
        };

        // Checked after verification, cheapest first, so that none of these
        // reasons is observable without the right password.
        let now = self.now();
        let client_ip = canonical_ip(attempt.client_ip);
        let refusal = if credential.account_disabled {
            Some(FailureReason::AccountDisabled)
        } else if credential.revoked {
            Some(FailureReason::Revoked)
        } else if credential.expires_at.is_some_and(|at| at <= now) {
            Some(FailureReason::Expired)
        } else if !credential.protocols.allows(attempt.protocol) {
            Some(FailureReason::ProtocolNotAllowed)
        } else if !credential.allowed_networks.permits(client_ip) {
            Some(FailureReason::NetworkNotAllowed)
        } else {
            None
        };
        if let Some(reason) = refusal {
            return Ok(LoginOutcome::Failure(reason));
        }

        let usage = Usage {
            at: now,
            client_ip,
            protocol: attempt.protocol,
        };
        self.store()
            .record_use(credential.app_password_id, usage)
            .await?;
        Ok(LoginOutcome::Success {
            username: credential.username,
            app_password_id: credential.app_password_id,
        })
    }
}
