//! What a login is, what it is decided on, and what it comes to.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use uuid::Uuid;
use zeroize::Zeroizing;

use super::throttle::ScopeCounters;
use crate::domain::app_passwords::model::{Refusal, Rules};
use crate::domain::shared::client::ClientName;
use crate::domain::shared::network::SeenNetworks;
use crate::domain::shared::protocol::Protocol;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

/// The password as typed, already bounded in length at the edge. Wiped on
/// drop; `Debug` shows nothing of it.
pub struct TypedPassword(Zeroizing<String>);

impl TypedPassword {
    pub fn new(typed: &str) -> Self {
        Self(Zeroizing::new(typed.to_owned()))
    }

    /// The text as typed; only the login service reads it (to parse it as
    /// a secret, and to recognise a repeated wrong guess by its keyed
    /// digest).
    pub(crate) fn expose(&self) -> &str {
        &self.0
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
    pub actor: crate::domain::audit::event::Actor,
    /// Which accounts the proxy reaches (`domain::tenants`): a login for
    /// any other is decided as an unknown user's.
    pub reach: crate::domain::tenants::model::Reach,
    /// How long the caller will wait for the answer (its deadline), if it
    /// said; otherwise the configured default applies.
    pub wait: Option<Duration>,
    /// How the client identified itself, if it did.
    pub client: Option<ClientName>,
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
    IdleExpired,
    Suspended,
    ProtocolNotAllowed,
    NetworkNotAllowed,
}

impl From<Refusal> for FailureReason {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Revoked => FailureReason::Revoked,
            Refusal::Expired => FailureReason::Expired,
            Refusal::IdleExpired => FailureReason::IdleExpired,
            Refusal::Suspended => FailureReason::Suspended,
            Refusal::ProtocolNotAllowed => FailureReason::ProtocolNotAllowed,
            Refusal::NetworkNotAllowed => FailureReason::NetworkNotAllowed,
        }
    }
}

impl FailureReason {
    /// The code of a throttled attempt in the audit trail (throttling is
    /// not a failure reason of a decided login: it comes before any).
    pub const THROTTLED: &'static str = "throttled";

    /// Every reason, for whatever must name them all (fail2ban's filter
    /// is checked against this list).
    pub const ALL: [FailureReason; 8] = [
        FailureReason::InvalidCredentials,
        FailureReason::AccountDisabled,
        FailureReason::Revoked,
        FailureReason::Expired,
        FailureReason::IdleExpired,
        FailureReason::Suspended,
        FailureReason::ProtocolNotAllowed,
        FailureReason::NetworkNotAllowed,
    ];

    /// The code used in logs and the audit trail.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureReason::InvalidCredentials => "invalid_credentials",
            FailureReason::AccountDisabled => "account_disabled",
            FailureReason::Revoked => "revoked",
            FailureReason::Expired => "expired",
            FailureReason::IdleExpired => "idle_expired",
            FailureReason::Suspended => "suspended",
            FailureReason::ProtocolNotAllowed => "protocol_not_allowed",
            FailureReason::NetworkNotAllowed => "network_not_allowed",
        }
    }
}

/// A device's warm verifier as stored beside its password
/// (`login/warm.rs`): it stands in for argon2 until `until`, for a login
/// that would succeed. Not a secret by itself (useless without the key the
/// database never holds), but kept out of `Debug` all the same.
#[derive(Clone, PartialEq, Eq)]
pub struct Warm {
    pub verifier: String,
    pub until: Timestamp,
}

impl std::fmt::Debug for Warm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warm")
            .field("until", &self.until)
            .finish_non_exhaustive()
    }
}

/// The one stored app password a login can be checked against (found by
/// the selector inside the typed secret), as a login needs it.
#[derive(Debug, Clone)]
pub struct Credential {
    pub app_password_id: Uuid,
    pub username: Username,
    pub secret_hash: String,
    pub account_disabled: bool,
    /// Whether it may sign in: the same rules every reader applies.
    pub rules: Rules,
    pub use_count: i64,
    pub seen_networks: SeenNetworks,
    /// The warm verifier a device left, if any (`login/warm.rs`).
    pub warm: Option<Warm>,
}

/// Everything a login is decided on, read in one round trip to the
/// database (on SQLite each statement is a hand-off to the connection's
/// thread and back, and these hand-offs were most of a warm login's cost):
/// the stored counters of its three throttle scopes, whether the account
/// exists (for the audit trail only; it never changes the response), and
/// the one candidate credential.
#[derive(Debug, Clone)]
pub struct LoginState {
    pub counters: ScopeCounters,
    pub account_exists: bool,
    pub credential: Option<Credential>,
}

/// One successful login's use of its app password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub at: Timestamp,
    pub client_ip: IpAddr,
    pub protocol: Protocol,
    pub client: Option<ClientName>,
}
