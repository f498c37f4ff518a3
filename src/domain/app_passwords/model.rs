//! App passwords as the rules and the API see them. None of these types
//! carries a secret or a hash: they are safe to log and to return.

use std::net::IpAddr;
use std::time::Duration;

use uuid::Uuid;

use super::issue_bounds::{
    ACCOUNT_WINDOW, DEFAULT_ACCOUNT_ISSUES_PER_HOUR, DEFAULT_CALLER_ISSUES_PER_MINUTE,
};
use crate::domain::audit::event::{AuditEvent, EventType};
use crate::domain::secrets::format::Secret;
use crate::domain::shared::client::ClientName;
use crate::domain::shared::error::{Error, Reason};
use crate::domain::shared::network::AllowedNetworks;
use crate::domain::shared::patch::Patch;
use crate::domain::shared::protocol::{Protocol, ProtocolSet};
use crate::domain::shared::time::{in_words, Span, Timestamp, CLOCK_SKEW};
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
/// the checks of updates and housekeeping. A login's `Credential` holds
/// one as read; an `AppPassword` makes one from its fuller record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub revoked: bool,
    pub expires_at: Option<Timestamp>,
    pub idle_timeout: Option<Duration>,
    /// The last successful sign-in as stored, or the issue if none.
    /// Sign-ins are written coalesced (`usage.flush_interval`), so a
    /// use on another replica may not be stored yet: idle expiry can come
    /// at most one flush interval early, never late.
    pub last_active_at: Timestamp,
    pub idle_expired: bool,
    pub suspended: bool,
    pub protocols: ProtocolSet,
    pub allowed_networks: AllowedNetworks,
}

impl Rules {
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
    pub fn rules(&self) -> Rules {
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
            allowed_networks: self.allowed_networks.clone(),
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
    pub issued_by: crate::domain::audit::event::Actor,
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
    /// A version 2 password's selector, which must be free across the
    /// deployment (`Secret::public_id`); `None` for version 1.
    pub public_id: Option<String>,
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

/// What an issue is checked against in its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueLimits {
    /// Active passwords the account may hold (`max_active_app_passwords`).
    pub cap: u32,
    /// Passwords the account may have issued in any rolling hour
    /// (`app_passwords.account_issues_per_hour`).
    pub per_hour: u32,
}

#[derive(Debug)]
pub enum IssueOutcome {
    Issued(Box<AppPassword>),
    AccountDisabled,
    CapReached,
    /// The account's issue bound is reached; another may be issued after
    /// this long (`issue_bounds::account_wait`).
    AccountIssueLimit(Duration),
    /// The selector is taken: for version 2, by any password in the
    /// deployment (about 3% of issues at ten million live passwords); for
    /// version 1, by one of the account's. Draw a new secret.
    SelectorTaken,
}

/// What one issuer holds on an account: how much of it ExplainLogin
/// shows that issuer (`login::explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// It issued none of the account's passwords (or they were pruned).
    Nothing,
    /// Only passwords that are over: revoked, expired or idle-expired.
    /// Anyone with the role can make one (issue, then revoke).
    Ended,
    /// A password that counts toward the cap (active or suspended): a
    /// working credential of the account, which its user was told of.
    Live,
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
    pub expires_at: Patch<Timestamp>,
    pub idle_timeout: Patch<Duration>,
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
    /// `Set` suspends, `Clear` resumes.
    pub suspension: Patch<Suspension>,
    /// Marks it expired for being idle.
    pub idle_expired_at: Option<Timestamp>,
}

/// The actor of what housekeeping writes.
pub const HOUSEKEEPING: &str = "housekeeping";

/// Housekeeping as an actor: latchkey itself, no tenant.
pub fn housekeeping() -> crate::domain::audit::event::Actor {
    crate::domain::audit::event::Actor::system(HOUSEKEEPING)
}

/// The notices housekeeping writes into the audit trail, and so into the
/// change feed, each once however many replicas run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// Its expiry time passed (and it had not ended before).
    Expired,
    /// Its expiry time is within `watch.notice_before`.
    ExpiringSoon,
    /// Its idle deadline is within `watch.notice_before`.
    IdleExpiringSoon,
}

impl NoticeKind {
    /// In the order housekeeping writes them.
    pub const ALL: [NoticeKind; 3] = [
        NoticeKind::Expired,
        NoticeKind::ExpiringSoon,
        NoticeKind::IdleExpiringSoon,
    ];

    pub const fn event_type(self) -> EventType {
        match self {
            NoticeKind::Expired => EventType::AppPasswordExpired,
            NoticeKind::ExpiringSoon => EventType::AppPasswordExpiringSoon,
            NoticeKind::IdleExpiringSoon => EventType::AppPasswordIdleExpiringSoon,
        }
    }
}

/// Which app passwords are due a notice of `kind` at `now`, by the rules
/// (whether it was written already is the store's to say, from the
/// password's notice column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoticeWindow {
    pub kind: NoticeKind,
    pub now: Timestamp,
    /// Expiring soon: expiries up to this; idle expiring soon: idle
    /// deadlines up to this; expired: `now`.
    pub horizon: Timestamp,
}

impl NoticeWindow {
    /// The time `password` is due a notice about at `now`, if it is: for
    /// `Expired`, its expiry time, passed, unless it ended before (revoked,
    /// or marked idle-expired: it had its last event then); for
    /// `ExpiringSoon`, its expiry time, up to `horizon`, while it works
    /// (or is suspended, and could be resumed); for `IdleExpiringSoon`, its
    /// idle deadline, up to `horizon` and no earlier than half its idle
    /// timeout after its last use (with a timeout shorter than the notice,
    /// a notice after every use would be noise), while it works and unless
    /// it expires first (its expiry has notices of its own).
    pub fn due(&self, password: &AppPassword) -> Option<Timestamp> {
        let rules = password.rules();
        let live = matches!(
            rules.lifecycle_refusal(self.now),
            None | Some(Refusal::Suspended)
        );
        match self.kind {
            NoticeKind::Expired => {
                let expired = rules.expires_at.filter(|at| *at <= self.now)?;
                (!rules.revoked && !rules.idle_expired).then_some(expired)
            }
            NoticeKind::ExpiringSoon => rules.expires_at.filter(|at| live && *at <= self.horizon),
            NoticeKind::IdleExpiringSoon => {
                let deadline = rules.idle_deadline()?;
                let half = rules.idle_timeout? / 2;
                let near = deadline <= self.horizon && deadline <= self.now.saturating_add(half);
                let expires_first = rules.expires_at.is_some_and(|at| at <= deadline);
                (live && near && !expires_first).then_some(deadline)
            }
        }
    }

    /// The notice's audit event for `password`, due it `about` (from
    /// [`NoticeWindow::due`]).
    pub fn event(&self, password: &AppPassword, about: Timestamp) -> AuditEvent {
        let detail = match self.kind {
            NoticeKind::Expired => format!("expired {}", about.to_rfc3339()),
            NoticeKind::ExpiringSoon => format!("expires {}", about.to_rfc3339()),
            NoticeKind::IdleExpiringSoon => format!(
                "idle-expires {} unless used (unused since {})",
                about.to_rfc3339(),
                password.rules().last_active_at.to_rfc3339()
            ),
        };
        AuditEvent::new(self.kind.event_type(), self.now, &housekeeping())
            .app_password(&password.username, password.id)
            .detail(detail)
    }
}

/// One notice to write: the password, the time it is about (its expiry or
/// idle deadline, which storage checks is still the same) and its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: Uuid,
    pub about: Timestamp,
    pub event: AuditEvent,
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
    pub const ALL: [ChangePolicy; 3] = [
        ChangePolicy::Keep,
        ChangePolicy::RevokeIssuedBefore,
        ChangePolicy::RevokeAll,
    ];

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

/// How late a use may reach the database: it waits in its replica's usage
/// buffer for up to one flush interval, and replicas' clocks may differ.
/// Housekeeping waits this long past what it reads from a stored last use
/// before it acts on it (marks a password idle-expired, or writes that it
/// is about to be), so that a use still on its way cannot be missed.
pub fn usage_lag(usage_flush_interval: Duration) -> Duration {
    usage_flush_interval.saturating_add(CLOCK_SKEW)
}

/// The shortest `watch.notice_before`.
pub const MIN_NOTICE_BEFORE: Duration = Duration::from_secs(3_600);
/// The longest: a year.
pub const MAX_NOTICE_BEFORE: Duration = Duration::from_secs(365 * 86_400);

/// A `watch.notice_before` within bounds, or why not: an idle notice
/// waits [`usage_lag`] past the start of its window, so the window must be
/// longer than that.
pub fn check_notice_before(
    notice_before: Duration,
    usage_flush_interval: Duration,
) -> Result<Duration, String> {
    let lag = usage_lag(usage_flush_interval);
    if notice_before < MIN_NOTICE_BEFORE {
        Err(format!("must be at least {}", in_words(MIN_NOTICE_BEFORE)))
    } else if notice_before > MAX_NOTICE_BEFORE {
        Err(format!("must be at most {}", in_words(MAX_NOTICE_BEFORE)))
    } else if notice_before <= lag {
        Err(format!(
            "must be longer than usage.flush_interval plus {} ({} s): an idle notice waits that long for uses still on their way from other replicas",
            in_words(CLOCK_SKEW),
            lag.as_secs()
        ))
    } else {
        Ok(notice_before)
    }
}

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
    /// Passwords one account may have issued in any rolling hour, revoked
    /// ones included, on all replicas together (`issue_bounds`).
    pub account_issues_per_hour: u32,
    /// Passwords one caller may issue in any rolling minute, on each
    /// replica (`issue_bounds`).
    pub caller_issues_per_minute: u32,
}

impl Default for AppPasswordsConfig {
    fn default() -> Self {
        Self {
            default_idle_timeout: None,
            prune_ended_after: Span::days(90),
            on_primary_change: ChangePolicies::default(),
            account_issues_per_hour: DEFAULT_ACCOUNT_ISSUES_PER_HOUR,
            caller_issues_per_minute: DEFAULT_CALLER_ISSUES_PER_MINUTE,
        }
    }
}

/// A pruning delay (`prune_ended_after`) that keeps what the account's
/// issue bound counts, or why not: the bound counts an account's rows of
/// the last [`ACCOUNT_WINDOW`], revoked ones included, so they must not be
/// pruned before they stop counting. Zero keeps them forever.
pub fn check_prune_ended_after(prune: Duration) -> Result<Duration, String> {
    if prune.is_zero() || prune >= ACCOUNT_WINDOW {
        Ok(prune)
    } else {
        let window = in_words(ACCOUNT_WINDOW);
        Err(format!(
            "must be 0s (keep) or at least {window}: revoked passwords count toward account_issues_per_hour for {window}"
        ))
    }
}

/// An idle timeout within bounds, or why not.
pub fn check_idle_timeout(timeout: Duration) -> Result<Duration, String> {
    if timeout < MIN_IDLE_TIMEOUT {
        Err(format!("must be at least {}", in_words(MIN_IDLE_TIMEOUT)))
    } else if timeout > MAX_IDLE_TIMEOUT {
        Err(format!("must be at most {}", in_words(MAX_IDLE_TIMEOUT)))
    } else {
        Ok(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3_600);
    const DAY: Duration = Duration::from_secs(86_400);

    fn at(days: u64, hours: u64) -> Timestamp {
        Timestamp::from_millis(0).saturating_add(DAY * days as u32 + HOUR * hours as u32)
    }

    /// Issued at day 0, never used.
    fn password() -> AppPassword {
        AppPassword {
            id: Uuid::nil(),
            username: Username::parse("ann").unwrap(),
            selector: "tijc".to_owned(),
            display_name: "Phone".to_owned(),
            protocols: ProtocolSet::any(),
            allowed_networks: AllowedNetworks::default(),
            issued_by: "portal".to_owned(),
            created_at: at(0, 0),
            expires_at: None,
            idle_timeout: None,
            idle_expired_at: None,
            last_use: None,
            use_count: 0,
            suspended: None,
            revoked: None,
            updated_at: None,
        }
    }

    fn window(kind: NoticeKind, now: Timestamp, notice_before: Duration) -> NoticeWindow {
        NoticeWindow {
            kind,
            now,
            horizon: now.saturating_add(notice_before),
        }
    }

    #[test]
    fn expiry_notices_come_in_the_window_and_once_it_passed() {
        let mut expiring = password();
        expiring.expires_at = Some(at(10, 0));
        let soon = |now| window(NoticeKind::ExpiringSoon, now, DAY * 7).due(&expiring);
        assert_eq!(soon(at(2, 23)), None, "before the window");
        assert_eq!(soon(at(3, 0)), Some(at(10, 0)), "the window opens");
        assert_eq!(soon(at(9, 23)), Some(at(10, 0)));
        assert_eq!(soon(at(10, 0)), None, "expired: no longer soon");
        let expired = |password: &AppPassword, now| {
            window(NoticeKind::Expired, now, Duration::ZERO).due(password)
        };
        assert_eq!(expired(&expiring, at(9, 23)), None);
        assert_eq!(expired(&expiring, at(10, 0)), Some(at(10, 0)));
        assert_eq!(expired(&expiring, at(40, 0)), Some(at(10, 0)));

        // Suspended ones hear of it (they can be resumed); revoked and
        // idle-marked ones had their last event already.
        let mut suspended = expiring.clone();
        suspended.suspended = Some(Suspension {
            at: at(1, 0),
            reason: "lost".to_owned(),
        });
        assert_eq!(
            window(NoticeKind::ExpiringSoon, at(5, 0), DAY * 7).due(&suspended),
            Some(at(10, 0))
        );
        let mut revoked = expiring.clone();
        revoked.revoked = Some(Revocation {
            at: at(1, 0),
            reason: String::new(),
        });
        let mut marked = expiring.clone();
        marked.idle_timeout = Some(DAY);
        marked.idle_expired_at = Some(at(2, 0));
        for over in [&revoked, &marked] {
            assert_eq!(expired(over, at(11, 0)), None);
            assert_eq!(
                window(NoticeKind::ExpiringSoon, at(5, 0), DAY * 7).due(over),
                None
            );
        }
        assert_eq!(expired(&password(), at(11, 0)), None, "no expiry");
    }

    #[test]
    fn idle_notices_come_before_the_deadline_not_before_half_the_timeout() {
        let mut idle = password();
        idle.idle_timeout = Some(DAY * 30);
        let soon = |password: &AppPassword, now, before| {
            window(NoticeKind::IdleExpiringSoon, now, before).due(password)
        };
        assert_eq!(soon(&idle, at(22, 23), DAY * 7), None);
        assert_eq!(soon(&idle, at(23, 0), DAY * 7), Some(at(30, 0)));
        assert_eq!(soon(&idle, at(30, 0), DAY * 7), None, "idle by now");
        // A use moves the deadline.
        idle.last_use = Some(LastUse {
            at: at(25, 0),
            client_ip: None,
            protocol: None,
            client: None,
        });
        assert_eq!(soon(&idle, at(26, 0), DAY * 7), None);
        assert_eq!(soon(&idle, at(48, 0), DAY * 7), Some(at(55, 0)));

        // A timeout shorter than the notice: not before half of it.
        let mut short = password();
        short.idle_timeout = Some(DAY * 2);
        assert_eq!(soon(&short, at(0, 23), DAY * 7), None);
        assert_eq!(soon(&short, at(1, 0), DAY * 7), Some(at(2, 0)));

        // Expiring before its deadline: the expiry's notices say it.
        let mut expiring = password();
        expiring.idle_timeout = Some(DAY * 30);
        expiring.expires_at = Some(at(30, 0));
        assert_eq!(soon(&expiring, at(25, 0), DAY * 7), None);
        expiring.expires_at = Some(at(30, 1));
        assert_eq!(soon(&expiring, at(25, 0), DAY * 7), Some(at(30, 0)));
        assert_eq!(soon(&password(), at(25, 0), DAY * 7), None, "no timeout");
    }

    #[test]
    fn notice_events_name_the_password_and_the_time_they_are_about() {
        let mut expiring = password();
        expiring.expires_at = Some(Timestamp::from_millis(1_772_323_200_000));
        let now = Timestamp::from_millis(1_772_000_000_000);
        let soon = window(NoticeKind::ExpiringSoon, now, DAY * 7);
        let event = soon.event(&expiring, expiring.expires_at.unwrap());
        assert_eq!(event.event_type, EventType::AppPasswordExpiringSoon);
        assert_eq!((event.at, event.actor.as_str()), (now, HOUSEKEEPING));
        assert_eq!(event.app_password_id, Some(expiring.id));
        assert_eq!(event.username, Some(expiring.username.clone()));
        assert_eq!(event.detail, "expires 2026-03-01T00:00:00Z");
        let idle = window(NoticeKind::IdleExpiringSoon, now, DAY * 7)
            .event(&expiring, Timestamp::from_millis(1_772_323_200_000));
        assert_eq!(
            idle.detail,
            "idle-expires 2026-03-01T00:00:00Z unless used (unused since 1970-01-01T00:00:00Z)"
        );
    }

    #[test]
    fn notice_before_is_bounded_and_longer_than_the_usage_lag() {
        let flush = Duration::from_secs(60);
        assert!(check_notice_before(DAY * 7, flush).is_ok());
        assert!(check_notice_before(HOUR, flush).is_ok());
        assert!(check_notice_before(HOUR - Duration::from_secs(1), flush).is_err());
        assert!(check_notice_before(DAY * 365, flush).is_ok());
        assert!(check_notice_before(DAY * 366, flush).is_err());
        let refused = check_notice_before(HOUR, HOUR).unwrap_err();
        assert!(refused.contains("usage.flush_interval"), "{refused}");
    }
}
