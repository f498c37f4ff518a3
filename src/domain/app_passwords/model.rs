//! App passwords as the rules and the API see them. None of these types
//! carries a secret or a hash: they are safe to log and to return.

use std::net::IpAddr;
use std::time::Duration;

use uuid::Uuid;

use crate::domain::secrets::format::Secret;
use crate::domain::shared::client::ClientName;
use crate::domain::shared::error::{Error, Reason};
use crate::domain::shared::network::AllowedNetworks;
use crate::domain::shared::protocol::{Protocol, ProtocolSet};
use crate::domain::shared::time::{Span, Timestamp};
use crate::domain::shared::username::Username;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPassword {
    pub id: Uuid,
    pub username: Username,
    /// The secret's first group, which locates it (not part of its secret
    /// bits): shown as "begins with abcd" so a person can tell their
    /// passwords apart.
    pub selector: String,
    pub display_name: String,
    pub protocols: ProtocolSet,
    pub allowed_networks: AllowedNetworks,
    pub issued_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// Refused once unused for this long; `None`: no idle timeout.
    pub idle_timeout: Option<Duration>,
    /// When housekeeping marked it expired for being idle.
    pub idle_expired_at: Option<Timestamp>,
    pub last_use: Option<LastUse>,
    pub use_count: i64,
    pub suspended: Option<Suspension>,
    pub revoked: Option<Revocation>,
    /// When its settings or suspension last changed, if ever.
    pub updated_at: Option<Timestamp>,
}

/// What an app password looks like at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppPasswordState {
    Active,
    Suspended,
    Expired,
    IdleExpired,
    Revoked,
}

/// Why a password whose secret is right is refused, in the order the
/// rules are checked: its lifecycle first (revoked, expired, idle,
/// suspended), then its scope (protocol, network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Revoked,
    Expired,
    IdleExpired,
    Suspended,
    ProtocolNotAllowed,
    NetworkNotAllowed,
}

/// The rules that decide whether one app password may sign in, in one
/// place for Authenticate, ExplainLogin, the state shown in listings and
/// the checks of updates and housekeeping.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub revoked: bool,
    pub expires_at: Option<Timestamp>,
    pub idle_timeout: Option<Duration>,
    /// The last successful sign-in as stored, or the issue if none.
    /// Sign-ins are written coalesced (`usage.flush_interval_secs`), so a
    /// use on another replica may not be stored yet: idle expiry can come
    /// at most one flush interval early, never late.
    pub last_active_at: Timestamp,
    pub idle_expired: bool,
    pub suspended: bool,
    pub protocols: ProtocolSet,
    pub allowed_networks: &'a AllowedNetworks,
}

impl Rules<'_> {
    /// When it stops (or stopped) working for being idle, if it has an
    /// idle timeout.
    pub fn idle_deadline(&self) -> Option<Timestamp> {
        self.idle_timeout
            .map(|timeout| self.last_active_at.saturating_add(timeout))
    }

    /// Whether the idle timeout has run out at `now` (or housekeeping
    /// already marked it).
    pub fn is_idle(&self, now: Timestamp) -> bool {
        self.idle_expired || self.idle_deadline().is_some_and(|at| at <= now)
    }

    /// The first lifecycle rule that refuses it at `now`, whatever the
    /// login.
    pub fn lifecycle_refusal(&self, now: Timestamp) -> Option<Refusal> {
        if self.revoked {
            Some(Refusal::Revoked)
        } else if self.expires_at.is_some_and(|at| at <= now) {
            Some(Refusal::Expired)
        } else if self.is_idle(now) {
            Some(Refusal::IdleExpired)
        } else if self.suspended {
            Some(Refusal::Suspended)
        } else {
            None
        }
    }

    /// The first rule that refuses a login at `now` with `protocol` from
    /// `client_ip`; a login detail that is not known (`None`, for
    /// ExplainLogin) is not checked.
    pub fn refusal(
        &self,
        now: Timestamp,
        protocol: Option<Protocol>,
        client_ip: Option<IpAddr>,
    ) -> Option<Refusal> {
        self.lifecycle_refusal(now).or_else(|| {
            if protocol.is_some_and(|p| !self.protocols.allows(p)) {
                Some(Refusal::ProtocolNotAllowed)
            } else if client_ip.is_some_and(|ip| !self.allowed_networks.permits(ip)) {
                Some(Refusal::NetworkNotAllowed)
            } else {
                None
            }
        })
    }

    pub fn state(&self, now: Timestamp) -> AppPasswordState {
        match self.lifecycle_refusal(now) {
            None => AppPasswordState::Active,
            Some(Refusal::Revoked) => AppPasswordState::Revoked,
            Some(Refusal::Expired) => AppPasswordState::Expired,
            Some(Refusal::IdleExpired) => AppPasswordState::IdleExpired,
            Some(_) => AppPasswordState::Suspended,
        }
    }
}

impl AppPassword {
    pub fn rules(&self) -> Rules<'_> {
        Rules {
            revoked: self.revoked.is_some(),
            expires_at: self.expires_at,
            idle_timeout: self.idle_timeout,
            last_active_at: self
                .last_use
                .as_ref()
                .map_or(self.created_at, |last| last.at.max(self.created_at)),
            idle_expired: self.idle_expired_at.is_some(),
            suspended: self.suspended.is_some(),
            protocols: self.protocols,
            allowed_networks: &self.allowed_networks,
        }
    }

    pub fn state(&self, now: Timestamp) -> AppPasswordState {
        self.rules().state(now)
    }

    /// The resource name.
    pub fn name(&self) -> String {
        format!("accounts/{}/appPasswords/{}", self.username, self.id)
    }

    /// Where this password sorts in a newest-first listing.
    pub fn cursor(&self) -> AppPasswordCursor {
        AppPasswordCursor {
            created_at: self.created_at,
            id: self.id,
        }
    }

    /// When the next change to it is stamped: `now`, or the last change's
    /// time if the clocks of replicas disagree, so its audit events sort
    /// in the order the changes were made.
    pub fn next_change_at(&self, now: Timestamp) -> Timestamp {
        now.max(self.updated_at.unwrap_or(self.created_at))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastUse {
    pub at: Timestamp,
    pub client_ip: Option<IpAddr>,
    pub protocol: Option<Protocol>,
    /// How the client identified itself, if it did.
    pub client: Option<ClientName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    pub at: Timestamp,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub at: Timestamp,
    pub reason: String,
}

/// A position in an account's newest-first list of app passwords: the page
/// after it starts with the next older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppPasswordCursor {
    pub created_at: Timestamp,
    pub id: Uuid,
}

#[derive(Debug, Clone, Copy)]
pub enum Expiry {
    At(Timestamp),
    After(Duration),
}

/// An issue request, already validated for shape at the edge.
#[derive(Debug)]
pub struct IssueRequest {
    pub username: Username,
    pub display_name: String,
    pub protocols: ProtocolSet,
    pub expiry: Option<Expiry>,
    pub allowed_networks: AllowedNetworks,
    /// `None`: the server's default (`app_passwords.default_idle_timeout`).
    pub idle_timeout: Option<Duration>,
    pub issued_by: String,
}

/// A freshly issued password and its secret; the only value that ever holds
/// both.
#[derive(Debug)]
pub struct Issued {
    pub app_password: AppPassword,
    pub secret: Secret,
}

/// A new app password, hashed and ready to store.
#[derive(Debug)]
pub struct NewAppPassword {
    pub id: Uuid,
    pub username: Username,
    pub selector: String,
    /// The argon2id PHC string; never the secret.
    pub secret_hash: String,
    pub display_name: String,
    pub protocols: ProtocolSet,
    pub allowed_networks: AllowedNetworks,
    pub issued_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug)]
pub enum IssueOutcome {
    Issued(Box<AppPassword>),
    AccountDisabled,
    CapReached,
    /// The account already has a password with this selector (about one
    /// issue in 450,000 per existing password); draw a new secret.
    SelectorTaken,
}

/// The error for an app password that does not exist.
pub fn app_password_not_found(username: &Username, id: Uuid) -> Error {
    Error::NotFound {
        reason: Reason::AppPasswordNotFound,
        resource: format!("accounts/{username}/appPasswords/{id}"),
    }
}

/// The settings an update may change; `None` leaves one as it is. The
/// secret is not among them: it never changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsUpdate {
    pub display_name: Option<String>,
    pub protocols: Option<ProtocolSet>,
    pub allowed_networks: Option<AllowedNetworks>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<Timestamp>>,
    /// `Some(None)` removes the idle timeout.
    pub idle_timeout: Option<Option<Duration>>,
}

impl SettingsUpdate {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One change to a stored app password, made by storage atomically with
/// its audit event once the rules allowed it against the row as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub settings: SettingsUpdate,
    /// `Some(Some(_))` suspends, `Some(None)` resumes.
    pub suspension: Option<Option<Suspension>>,
    /// Marks it expired for being idle.
    pub idle_expired_at: Option<Timestamp>,
}

/// Which app passwords a bulk revocation takes, across all accounts; each
/// condition narrows, and at least one is required. Revoked and expired
/// passwords are never taken (they are not active).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkFilter {
    /// Not used to sign in since then (never-used ones: issued before it).
    pub unused_since: Option<Timestamp>,
    pub created_before: Option<Timestamp>,
    /// Allowed to sign in with this protocol.
    pub protocol: Option<Protocol>,
    /// Issued by this caller.
    pub issued_by: Option<String>,
}

impl BulkFilter {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// How an account's primary credential (its main password) changed, as
/// the account portal reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialChange {
    /// The user changed it themselves, signed in.
    SelfServiceChange,
    /// An administrator or helpdesk set a new one.
    AdminReset,
    /// The user regained access through account recovery.
    AccountRecovery,
    /// The user's second factor was reset.
    SecondFactorReset,
}

impl CredentialChange {
    pub const fn as_str(self) -> &'static str {
        match self {
            CredentialChange::SelfServiceChange => "self_service_change",
            CredentialChange::AdminReset => "admin_reset",
            CredentialChange::AccountRecovery => "account_recovery",
            CredentialChange::SecondFactorReset => "second_factor_reset",
        }
    }
}

/// What a change of the primary credential does to the account's app
/// passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangePolicy {
    /// Nothing: they keep working.
    Keep,
    /// Revoke those issued before the change; any issued after it (by the
    /// user who now holds the new credential) keep working.
    RevokeIssuedBefore,
    /// Revoke every active one.
    RevokeAll,
}

impl ChangePolicy {
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangePolicy::Keep => "keep",
            ChangePolicy::RevokeIssuedBefore => "revoke_issued_before",
            ChangePolicy::RevokeAll => "revoke_all",
        }
    }
}

/// The policy per kind of change (`[app_passwords.on_primary_change]`).
/// The defaults, and why, are in the README ("When the primary password
/// changes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangePolicies {
    pub self_service_change: ChangePolicy,
    pub admin_reset: ChangePolicy,
    pub account_recovery: ChangePolicy,
    pub second_factor_reset: ChangePolicy,
}

impl Default for ChangePolicies {
    fn default() -> Self {
        Self {
            self_service_change: ChangePolicy::Keep,
            admin_reset: ChangePolicy::RevokeIssuedBefore,
            account_recovery: ChangePolicy::RevokeAll,
            second_factor_reset: ChangePolicy::RevokeIssuedBefore,
        }
    }
}

impl ChangePolicies {
    pub fn for_change(&self, change: CredentialChange) -> ChangePolicy {
        match change {
            CredentialChange::SelfServiceChange => self.self_service_change,
            CredentialChange::AdminReset => self.admin_reset,
            CredentialChange::AccountRecovery => self.account_recovery,
            CredentialChange::SecondFactorReset => self.second_factor_reset,
        }
    }
}

/// The shortest idle timeout: sign-ins are stored coalesced, once per
/// flush interval (a minute by default), and the idle rule must not come
/// close to that granularity.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(3_600);
/// The longest: ten years.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(3_650 * 86_400);

/// `[app_passwords]`: the lifecycle of app passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppPasswordsConfig {
    /// The idle timeout of new app passwords that do not ask for one
    /// ("90d"); unset (the default): none.
    pub default_idle_timeout: Option<Span>,
    /// Revoked, expired and idle-expired app passwords are deleted this
    /// long after they ended ("90d"); their audit events stay for the
    /// audit retention. "0s" keeps them forever.
    pub prune_ended_after: Span,
    /// What a change of an account's primary credential does to its app
    /// passwords, per kind of change.
    pub on_primary_change: ChangePolicies,
}

impl Default for AppPasswordsConfig {
    fn default() -> Self {
        Self {
            default_idle_timeout: None,
            prune_ended_after: Span::days(90),
            on_primary_change: ChangePolicies::default(),
        }
    }
}

impl AppPasswordsConfig {
    /// Refuses, at start, settings that would fail later: a default idle
    /// timeout out of bounds would refuse every issue that asks for none.
    /// (A long usage flush interval is allowed: idle expiry may then come
    /// up to that interval early, as the README says, and housekeeping's
    /// mark waits that long past the deadline.)
    pub fn validate(&self) -> Result<(), String> {
        if let Some(timeout) = self.default_idle_timeout {
            check_idle_timeout(timeout.duration())
                .map_err(|why| format!("app_passwords.default_idle_timeout {why}"))?;
        }
        Ok(())
    }
}

/// An idle timeout within bounds, or why not.
pub fn check_idle_timeout(timeout: Duration) -> Result<Duration, String> {
    if timeout < MIN_IDLE_TIMEOUT {
        Err("must be at least 1 hour".to_owned())
    } else if timeout > MAX_IDLE_TIMEOUT {
        Err("must be at most 3650 days".to_owned())
    } else {
        Ok(timeout)
    }
}
