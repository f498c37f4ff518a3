//! The one error type of the domain. The gRPC layer maps it to a status in
//! one table (`grpc::status`); nothing here knows about tonic.

use std::fmt;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request was malformed; nothing was changed.
    #[error("invalid argument: {}", FieldViolations(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// `resource` names what was missing, e.g. `accounts/alice`.
    #[error("{resource} not found")]
    NotFound { reason: Reason, resource: String },
    /// What the request would create exists already.
    #[error("{1}")]
    AlreadyExists(Reason, String),
    /// The target is in a state that forbids the operation.
    #[error("{1}")]
    FailedPrecondition(Reason, String),
    /// A quota or cap is reached.
    #[error("{1}")]
    ResourceExhausted(Reason, String),
    /// The caller may not act on the target: decided from the request
    /// alone (a name outside the caller's tenant), never from what is
    /// stored, so it says nothing about whether the target exists.
    #[error("{1}")]
    PermissionDenied(Reason, String),
    /// A rate bound is reached: nothing was done, and the same request may
    /// succeed after `retry_after`.
    #[error("{message}")]
    RateLimited {
        reason: Reason,
        message: String,
        retry_after: std::time::Duration,
    },
    /// The caller is no longer recognised (revoked while a stream of its
    /// was open).
    #[error("{0}")]
    Unauthenticated(String),
    /// The database could not be reached, did not answer in time, or
    /// refused to write (`Outage` says which). Nothing was changed and the
    /// request may be retried.
    #[error("storage unavailable")]
    Unavailable(Outage, #[source] BoxError),
    /// The caller went away before the work started; nothing was done.
    #[error("cancelled")]
    Cancelled,
    /// A bug or an unexpected state; details go to the log, never to callers.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

/// Why storage could not serve a request. Each is retryable: the request
/// changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// A fault of this one request: a lost connection, a lock that was not
    /// released in time, a deadlock, a full pool.
    Transient,
    /// The replica knows the database is unreachable and answers at once,
    /// without trying, until its probe reaches the database again.
    Down,
    /// The database's disk is full: reads go on, writes are refused until
    /// space returns.
    DiskFull,
    /// The database accepts no writes: a read-only server, a standby, a
    /// demoted primary.
    ReadOnly,
}

/// Why a request failed, as a stable code callers can branch on without
/// reading the message (`google.rpc.ErrorInfo.reason`, domain `latchkey`).
/// Never renamed: callers depend on them. The protos list them per RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    InvalidArgument,
    AccountNotFound,
    AppPasswordNotFound,
    CallerNotFound,
    CallerNameTaken,
    TlsIdentityTaken,
    AccountDisabled,
    AccountDeleted,
    AppPasswordCapReached,
    /// A suspend, resume or update of a revoked app password.
    AppPasswordRevoked,
    /// A suspend, resume or update of an expired (or idle-expired) one.
    AppPasswordExpired,
    HashingQueueFull,
    ScopeBusy,
    BootstrapKeyConflict,
    BackupNotSupported,
    BackupTargetExists,
    StorageUnavailable,
    /// The database's disk is full; writes are refused until space returns.
    StorageFull,
    /// The database accepts no writes (a read-only server or a standby).
    StorageReadOnly,
    Cancelled,
    Internal,
    /// No valid caller credential (set by the authentication layer).
    CallerUnauthenticated,
    /// The caller's role does not allow the method.
    RoleNotAllowed,
    WatchTokenExpired,
    /// The change feed's history changed under a watcher (a failover to a
    /// standby that lost events, a restore): resync, then watch anew.
    FeedResyncRequired,
    TooManyWatchers,
    /// The account had as many app passwords issued within the last hour
    /// as it may (`app_passwords.account_issues_per_hour`).
    AccountIssueRateExceeded,
    /// The caller issued as many app passwords within the last minute as it
    /// may on this replica (`app_passwords.caller_issues_per_minute`).
    CallerIssueRateExceeded,
    /// The account's domain is not one of the caller's tenant's.
    OutsideTenant,
    TenantNotFound,
    TenantNameTaken,
    /// The domain belongs to another tenant (MoveTenantDomain moves it).
    DomainTaken,
    /// The tenant still has callers that are not revoked.
    TenantInUse,
    /// A revoked caller cannot be given a new key.
    CallerRevoked,
    /// The tenant already owns as many domains as a tenant may.
    TenantDomainsFull,
    /// The caller's, or this replica's, hourly bound on secrets reported
    /// as leaked is reached (`leaks.*_secrets_per_hour`).
    LeakReportRateExceeded,
    /// The caller looked up as many secrets within the last hour as it may
    /// (`leaks.lookups_per_hour`).
    LookupRateExceeded,
    /// A version 1 secret names no password without its username.
    SecretVersionOne,
}

impl Reason {
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidArgument => "INVALID_ARGUMENT",
            Reason::AccountNotFound => "ACCOUNT_NOT_FOUND",
            Reason::AppPasswordNotFound => "APP_PASSWORD_NOT_FOUND",
            Reason::CallerNotFound => "CALLER_NOT_FOUND",
            Reason::CallerNameTaken => "CALLER_NAME_TAKEN",
            Reason::TlsIdentityTaken => "TLS_IDENTITY_TAKEN",
            Reason::AccountDisabled => "ACCOUNT_DISABLED",
            Reason::AccountDeleted => "ACCOUNT_DELETED",
            Reason::AppPasswordCapReached => "APP_PASSWORD_CAP_REACHED",
            Reason::AppPasswordRevoked => "APP_PASSWORD_REVOKED",
            Reason::AppPasswordExpired => "APP_PASSWORD_EXPIRED",
            Reason::HashingQueueFull => "HASHING_QUEUE_FULL",
            Reason::ScopeBusy => "SCOPE_BUSY",
            Reason::BootstrapKeyConflict => "BOOTSTRAP_KEY_CONFLICT",
            Reason::BackupNotSupported => "BACKUP_NOT_SUPPORTED",
            Reason::BackupTargetExists => "BACKUP_TARGET_EXISTS",
            Reason::StorageUnavailable => "STORAGE_UNAVAILABLE",
            Reason::StorageFull => "STORAGE_FULL",
            Reason::StorageReadOnly => "STORAGE_READ_ONLY",
            Reason::Cancelled => "CANCELLED",
            Reason::Internal => "INTERNAL",
            Reason::CallerUnauthenticated => "CALLER_UNAUTHENTICATED",
            Reason::RoleNotAllowed => "ROLE_NOT_ALLOWED",
            Reason::WatchTokenExpired => "WATCH_TOKEN_EXPIRED",
            Reason::FeedResyncRequired => "FEED_RESYNC_REQUIRED",
            Reason::TooManyWatchers => "TOO_MANY_WATCHERS",
            Reason::AccountIssueRateExceeded => "ACCOUNT_ISSUE_RATE_EXCEEDED",
            Reason::CallerIssueRateExceeded => "CALLER_ISSUE_RATE_EXCEEDED",
            Reason::OutsideTenant => "OUTSIDE_TENANT",
            Reason::TenantNotFound => "TENANT_NOT_FOUND",
            Reason::TenantNameTaken => "TENANT_NAME_TAKEN",
            Reason::DomainTaken => "DOMAIN_TAKEN",
            Reason::TenantInUse => "TENANT_IN_USE",
            Reason::CallerRevoked => "CALLER_REVOKED",
            Reason::TenantDomainsFull => "TENANT_DOMAINS_FULL",
            Reason::LeakReportRateExceeded => "LEAK_REPORT_RATE_EXCEEDED",
            Reason::LookupRateExceeded => "LOOKUP_RATE_EXCEEDED",
            Reason::SecretVersionOne => "SECRET_VERSION_ONE",
        }
    }
}

impl Error {
    /// The stable reason of this error.
    pub fn reason(&self) -> Reason {
        match self {
            Error::InvalidArgument(_) => Reason::InvalidArgument,
            Error::NotFound { reason, .. }
            | Error::AlreadyExists(reason, _)
            | Error::FailedPrecondition(reason, _)
            | Error::ResourceExhausted(reason, _)
            | Error::PermissionDenied(reason, _)
            | Error::RateLimited { reason, .. } => *reason,
            Error::Unauthenticated(_) => Reason::CallerUnauthenticated,
            Error::Unavailable(Outage::Transient | Outage::Down, _) => Reason::StorageUnavailable,
            Error::Unavailable(Outage::DiskFull, _) => Reason::StorageFull,
            Error::Unavailable(Outage::ReadOnly, _) => Reason::StorageReadOnly,
            Error::Cancelled => Reason::Cancelled,
            Error::Internal(_) => Reason::Internal,
        }
    }

    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into().into())
    }
}

/// One bad field of a request: the API's field name and what is wrong with
/// it, in words a caller can act on. Never contains the field's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

struct FieldViolations<'a>(&'a [FieldViolation]);

impl fmt::Display for FieldViolations<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, violation) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", violation.field, violation.description)?;
        }
        Ok(())
    }
}
