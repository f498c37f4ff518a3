//! The audit trail's vocabulary. Events carry who, what and which target;
//! never a secret.

use std::net::IpAddr;

use uuid::Uuid;

use crate::domain::shared::protocol::Protocol;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    AppPasswordIssued,
    AppPasswordRevoked,
    AccountAppPasswordsRevoked,
    AccountDisabled,
    AccountEnabled,
    AccountDeleted,
    CallerCreated,
    CallerRevoked,
    AuthenticationFailed,
    AppPasswordFirstUse,
    AppPasswordNewNetwork,
    AppPasswordUpdated,
    AppPasswordSuspended,
    AppPasswordResumed,
    AppPasswordIdleExpired,
    /// A bulk revocation's passwords of one account.
    AppPasswordsBulkRevoked,
    PrimaryCredentialChanged,
    /// Housekeeping saw it pass its expiry time.
    AppPasswordExpired,
    /// Its expiry time is near (`watch.notice_before`).
    AppPasswordExpiringSoon,
    /// Its idle deadline is near: unless it is used, it idle-expires.
    AppPasswordIdleExpiringSoon,
    /// The account's failure counter started a block.
    AccountLoginBlocked,
    TenantCreated,
    /// Its display name or domains changed (the detail says which).
    TenantUpdated,
    TenantDeleted,
    /// A domain was given to a tenant, from another or from none.
    TenantDomainMoved,
    /// A caller was given a new key (the detail says until when the old
    /// one works).
    CallerKeyRotated,
    /// A report of leaked secrets (ReportLeakedSecrets): its source, and
    /// how many it held, passed their check and were revoked (each
    /// revocation is an `AppPasswordRevoked` of its own).
    LeakReported,
    /// An operator looked up a password by its secret
    /// (LookupAppPassword); it names the password only where the secret
    /// verified.
    AppPasswordLookedUp,
}

impl EventType {
    pub const ALL: [EventType; 28] = [
        EventType::AppPasswordIssued,
        EventType::AppPasswordRevoked,
        EventType::AccountAppPasswordsRevoked,
        EventType::AccountDisabled,
        EventType::AccountEnabled,
        EventType::AccountDeleted,
        EventType::CallerCreated,
        EventType::CallerRevoked,
        EventType::AuthenticationFailed,
        EventType::AppPasswordFirstUse,
        EventType::AppPasswordNewNetwork,
        EventType::AppPasswordUpdated,
        EventType::AppPasswordSuspended,
        EventType::AppPasswordResumed,
        EventType::AppPasswordIdleExpired,
        EventType::AppPasswordsBulkRevoked,
        EventType::PrimaryCredentialChanged,
        EventType::AppPasswordExpired,
        EventType::AppPasswordExpiringSoon,
        EventType::AppPasswordIdleExpiringSoon,
        EventType::AccountLoginBlocked,
        EventType::TenantCreated,
        EventType::TenantUpdated,
        EventType::TenantDeleted,
        EventType::TenantDomainMoved,
        EventType::CallerKeyRotated,
        EventType::LeakReported,
        EventType::AppPasswordLookedUp,
    ];

    /// The stored name. Never rename: stored rows use it.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::AppPasswordIssued => "app_password_issued",
            EventType::AppPasswordRevoked => "app_password_revoked",
            EventType::AccountAppPasswordsRevoked => "account_app_passwords_revoked",
            EventType::AccountDisabled => "account_disabled",
            EventType::AccountEnabled => "account_enabled",
            EventType::AccountDeleted => "account_deleted",
            EventType::CallerCreated => "caller_created",
            EventType::CallerRevoked => "caller_revoked",
            EventType::AuthenticationFailed => "authentication_failed",
            EventType::AppPasswordFirstUse => "app_password_first_use",
            EventType::AppPasswordNewNetwork => "app_password_new_network",
            EventType::AppPasswordUpdated => "app_password_updated",
            EventType::AppPasswordSuspended => "app_password_suspended",
            EventType::AppPasswordResumed => "app_password_resumed",
            EventType::AppPasswordIdleExpired => "app_password_idle_expired",
            EventType::AppPasswordsBulkRevoked => "app_passwords_bulk_revoked",
            EventType::PrimaryCredentialChanged => "primary_credential_changed",
            EventType::AppPasswordExpired => "app_password_expired",
            EventType::AppPasswordExpiringSoon => "app_password_expiring_soon",
            EventType::AppPasswordIdleExpiringSoon => "app_password_idle_expiring_soon",
            EventType::AccountLoginBlocked => "account_login_blocked",
            EventType::TenantCreated => "tenant_created",
            EventType::TenantUpdated => "tenant_updated",
            EventType::TenantDeleted => "tenant_deleted",
            EventType::TenantDomainMoved => "tenant_domain_moved",
            EventType::CallerKeyRotated => "caller_key_rotated",
            EventType::LeakReported => "leak_reported",
            EventType::AppPasswordLookedUp => "app_password_looked_up",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }

    /// Whether events of this type are in the change feed (WatchEvents):
    /// every change, and not the failed logins, which an attack writes by
    /// the thousand (the feed has the block they start instead), nor what
    /// changed nothing: a lookup, a leak report (the revocations it made
    /// are in the feed as revocations).
    pub const fn in_feed(self) -> bool {
        !matches!(
            self,
            EventType::AuthenticationFailed
                | EventType::LeakReported
                | EventType::AppPasswordLookedUp
        )
    }
}

/// The longest detail stored, in characters.
pub const DETAIL_MAX_CHARS: usize = 500;

/// Who caused an event: a caller's name, and the tenant it is scoped to
/// (written into every event it causes); or latchkey itself
/// ("housekeeping", "cli"), which has no tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor {
    pub name: String,
    pub tenant: Option<String>,
}

impl Actor {
    pub fn new(name: impl Into<String>, tenant: Option<String>) -> Self {
        Self {
            name: name.into(),
            tenant,
        }
    }

    /// latchkey itself, or a person at its command line: no tenant.
    pub fn system(name: &str) -> Self {
        Self::new(name, None)
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Assigned by storage; 0 until written.
    pub id: i64,
    pub at: Timestamp,
    pub event_type: EventType,
    /// The caller that made the request.
    pub actor: String,
    /// The tenant that caller is scoped to, if any.
    pub actor_tenant: Option<String>,
    pub username: Option<Username>,
    pub app_password_id: Option<Uuid>,
    pub caller_name: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub protocol: Option<Protocol>,
    pub item_count: Option<i64>,
    pub detail: String,
}

impl AuditEvent {
    pub fn new(event_type: EventType, at: Timestamp, actor: &Actor) -> Self {
        Self {
            id: 0,
            at,
            event_type,
            actor: actor.name.clone(),
            actor_tenant: actor.tenant.clone(),
            username: None,
            app_password_id: None,
            caller_name: None,
            client_ip: None,
            protocol: None,
            item_count: None,
            detail: String::new(),
        }
    }

    /// Who caused it, as the [`Actor`] it was made with.
    pub fn by(&self) -> Actor {
        Actor::new(self.actor.clone(), self.actor_tenant.clone())
    }

    pub fn account(mut self, username: &Username) -> Self {
        self.username = Some(username.clone());
        self
    }

    pub fn app_password(mut self, username: &Username, id: Uuid) -> Self {
        self.username = Some(username.clone());
        self.app_password_id = Some(id);
        self
    }

    /// Sets the detail, cut to [`DETAIL_MAX_CHARS`] (the stored column's
    /// size; an update's old and new networks can be longer) with "…".
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        let mut detail: String = detail.into();
        if let Some((cut, _)) = detail.char_indices().nth(DETAIL_MAX_CHARS - 1) {
            detail.truncate(cut);
            detail.push('…');
        }
        self.detail = detail;
        self
    }
}

/// Which events to list; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub username: Option<Username>,
    pub app_password_id: Option<Uuid>,
    pub event_types: Vec<EventType>,
    pub from: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// A position in the newest-first list of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor {
    pub at: Timestamp,
    pub id: i64,
}
