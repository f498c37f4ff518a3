//! Callers of latchkey itself: their names, roles and TLS identities.

use std::fmt;

use std::net::IpAddr;

use crate::domain::audit::event::Actor;
use crate::domain::shared::network::AllowedNetworks;
use crate::domain::shared::time::Timestamp;
use crate::domain::tenants::model::Reach;

pub const NAME_MAX_CHARS: usize = 64;
pub const TLS_IDENTITY_MAX_BYTES: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Manages app passwords of any account.
    Issuer,
    /// Verifies logins, and nothing else.
    Authenticator,
    /// Everything.
    Operator,
    /// Watches the change feed for users' events, and nothing else.
    Notifier,
    /// Reports leaked secrets (a secret scanner), and nothing else.
    Reporter,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Issuer,
        Role::Authenticator,
        Role::Operator,
        Role::Notifier,
        Role::Reporter,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Issuer => "issuer",
            Role::Authenticator => "authenticator",
            Role::Operator => "operator",
            Role::Notifier => "notifier",
            Role::Reporter => "reporter",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == value)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub tls_identity: Option<String>,
    pub created_at: Timestamp,
    pub created_by: String,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// The tenant it is scoped to; `None`: deployment-wide. Set at
    /// creation, never changed.
    pub tenant: Option<String>,
    /// When it stops being recognised; `None`: never.
    pub expires_at: Option<Timestamp>,
    /// The addresses its requests may come from (the peer of the
    /// connection); empty: any.
    pub allowed_networks: AllowedNetworks,
    /// The address of its last recorded use.
    pub last_used_ip: Option<IpAddr>,
    /// Until when the key a rotation replaced still works; `None` once
    /// there is no such key.
    pub previous_key_expires_at: Option<Timestamp>,
}

/// The longest a rotated-out key keeps working beside its successor.
pub const ROTATION_OVERLAP_MAX: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// The overlap when a rotation names none: long enough to roll a new key
/// out to a service's replicas, short enough that a key rotated because it
/// leaked dies the same hour.
pub const ROTATION_OVERLAP_DEFAULT: std::time::Duration = std::time::Duration::from_secs(3600);

/// A caller to create, its fields parsed.
#[derive(Debug, Clone)]
pub struct NewCaller {
    pub name: String,
    pub role: Role,
    pub tls_identity: Option<String>,
    pub tenant: Option<String>,
    pub limits: KeyLimits,
}

impl NewCaller {
    /// A deployment-wide caller with a key of no limits.
    pub fn plain(name: String, role: Role) -> Self {
        Self {
            name,
            role,
            tls_identity: None,
            tenant: None,
            limits: KeyLimits::default(),
        }
    }
}

/// What a new caller's key is limited by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub expires_at: Option<Timestamp>,
    pub allowed_networks: AllowedNetworks,
}

impl Caller {
    /// Neither revoked nor expired at `now`.
    pub fn usable_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|until| now < until)
    }

    /// The caller as the audit trail records who acted.
    pub fn actor(&self) -> Actor {
        Actor::new(self.name.clone(), self.tenant.clone())
    }
}

/// A caller recognised by its credential, with what it reaches.
#[derive(Debug, Clone)]
pub struct Recognised {
    pub caller: Caller,
    pub reach: Reach,
}

/// A caller name: 1 to 64 of `a-z 0-9 . _ -`, so it is safe in resource
/// names, log lines and shell commands alike.
pub fn parse_name(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("is required".to_owned());
    }
    if raw.len() > NAME_MAX_CHARS {
        return Err(format!("must be at most {NAME_MAX_CHARS} characters"));
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("may contain only a-z, 0-9, '.', '_' and '-'".to_owned());
    }
    Ok(raw.to_owned())
}

/// A TLS identity: what a client certificate's subject CN or SAN must equal.
pub fn parse_tls_identity(raw: &str) -> Result<Option<String>, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.len() > TLS_IDENTITY_MAX_BYTES {
        return Err(format!("must be at most {TLS_IDENTITY_MAX_BYTES} bytes"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(Some(trimmed.to_owned()))
}

/// A caller's row as key verification needs it.
#[derive(Debug)]
pub struct StoredCaller {
    pub caller: Caller,
    pub key_digest: String,
    /// For the key a rotation replaced: when it stops working.
    pub key_expires_at: Option<Timestamp>,
}

/// Why a caller cannot be created.
#[derive(Debug)]
pub enum CreateCallerOutcome {
    Created(Box<Caller>),
    NameTaken,
    TlsIdentityTaken,
    /// The tenant it would be scoped to does not exist.
    TenantNotFound,
}

#[derive(Debug)]
pub enum RotateKeyOutcome {
    Rotated(Box<Caller>),
    NotFound,
    Revoked,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_roles() {
        assert!(parse_name("imap-proxy.eu_1").is_ok());
        for bad in ["", "Imap", "a b", "a/b", &"a".repeat(65)] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
