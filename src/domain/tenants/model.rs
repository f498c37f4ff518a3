//! Tenants, their domains, and what a scoped caller reaches.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::app_passwords::model::{ChangePolicies, ChangePolicy};
use crate::domain::shared::protocol::ProtocolSet;

use crate::domain::shared::error::{Error, Reason};
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

pub const NAME_MAX_CHARS: usize = 64;
pub const DISPLAY_NAME_MAX_CHARS: usize = 200;
/// A DNS name's longest text form, in bytes.
pub const DOMAIN_MAX_BYTES: usize = 253;
/// The most domains one tenant owns: far above a hosting customer's, and
/// small enough that a scoped caller's domains are one short list in
/// every query that filters by them.
pub const DOMAINS_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: String,
    pub display_name: String,
    /// Sorted.
    pub domains: Vec<String>,
    pub policy: TenantPolicy,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a tenant sets for its accounts' app passwords, each overriding the
/// deployment's setting; `None` (every field, for a new tenant) keeps the
/// deployment's.
///
/// A policy applies to the accounts of the tenant's domains whoever asks
/// (a deployment-wide issuer too), at every issue, update and report of a
/// primary-credential change from the moment it is set. Passwords already
/// issued keep the protocols and expiry they were issued with: changing a
/// working password under its user would break their device mid-sync
/// without a word. To end them, revoke them (RevokeAccountAppPasswords,
/// BulkRevokeAppPasswords by protocol or age).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantPolicy {
    /// Active app passwords one account may hold.
    pub max_active_app_passwords: Option<u32>,
    /// The longest life an app password may be issued with; a password
    /// issued without an expiry gets this one.
    pub max_lifetime: Option<Duration>,
    /// The idle timeout of passwords that ask for none.
    pub default_idle_timeout: Option<Duration>,
    /// The protocols a password may carry ("any" is refused under a list).
    pub allowed_protocols: Option<ProtocolSet>,
    /// What a primary-credential change does, per kind of change.
    pub on_primary_change: ChangeOverrides,
}

/// Per kind of primary-credential change: the tenant's policy, or `None`
/// for the deployment's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeOverrides {
    pub self_service_change: Option<ChangePolicy>,
    pub admin_reset: Option<ChangePolicy>,
    pub account_recovery: Option<ChangePolicy>,
    pub second_factor_reset: Option<ChangePolicy>,
}

impl ChangeOverrides {
    /// The deployment's `policies`, with these overrides applied.
    pub fn over(&self, policies: ChangePolicies) -> ChangePolicies {
        ChangePolicies {
            self_service_change: self
                .self_service_change
                .unwrap_or(policies.self_service_change),
            admin_reset: self.admin_reset.unwrap_or(policies.admin_reset),
            account_recovery: self.account_recovery.unwrap_or(policies.account_recovery),
            second_factor_reset: self
                .second_factor_reset
                .unwrap_or(policies.second_factor_reset),
        }
    }
}

/// The largest cap a tenant may set: the same bound the deployment's has.
pub const MAX_ACTIVE_APP_PASSWORDS_LIMIT: u32 = 10_000;

/// A tenant name: 1 to 64 of `a-z 0-9 . _ -`, like a caller's.
pub fn parse_name(raw: &str) -> Result<String, String> {
    crate::domain::callers::model::parse_name(raw)
}

pub fn parse_display_name(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.chars().count() > DISPLAY_NAME_MAX_CHARS {
        return Err(format!(
            "must be at most {DISPLAY_NAME_MAX_CHARS} characters"
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(trimmed.to_owned())
}

/// A domain as accounts' usernames spell it: normalized exactly as a
/// username is (so `Example.COM` and `example.com` are one domain), then
/// dot-separated labels, none empty, no `@`, at most 253 bytes.
pub fn parse_domain(raw: &str) -> Result<String, String> {
    let normalized = Username::parse(raw)?;
    let domain = normalized.as_str();
    if domain.len() > DOMAIN_MAX_BYTES {
        return Err(format!("must be at most {DOMAIN_MAX_BYTES} bytes"));
    }
    if domain.contains('@') {
        return Err("is a domain, without '@' or anything before it".to_owned());
    }
    if domain.split('.').any(str::is_empty) {
        return Err("must be dot-separated labels, none empty".to_owned());
    }
    Ok(domain.to_owned())
}

/// Domains, each parsed, sorted and without repeats; at most
/// [`DOMAINS_MAX`]. `Err` names the first bad one by its index.
pub fn parse_domains(raw: &[String]) -> Result<Vec<String>, String> {
    if raw.len() > DOMAINS_MAX {
        return Err(format!("must be at most {DOMAINS_MAX} domains"));
    }
    let mut domains = Vec::with_capacity(raw.len());
    for (i, domain) in raw.iter().enumerate() {
        domains.push(parse_domain(domain).map_err(|why| format!("[{i}] {why}"))?);
    }
    domains.sort();
    domains.dedup();
    Ok(domains)
}

/// The account's domain: what follows the one `@` of its username, if
/// anything does. A username with several `@` has none: which part is
/// its domain depends on who reads it (a mail server may split at the
/// first, a parser at the last), so it belongs to no tenant, and no
/// tenant's caller can name `alice@a.test@b.test` to reach what another
/// system files under `a.test`. Migrations 14 and 16 fill
/// `audit_event.account_domain` of existing rows by the same rule.
pub fn domain_of(username: &Username) -> Option<&str> {
    username
        .as_str()
        .split_once('@')
        .map(|(_, domain)| domain)
        .filter(|domain| !domain.is_empty() && !domain.contains('@'))
}

/// Which accounts a caller reaches: every one, or those of its tenant's
/// domains (as read when the caller was recognised; a domain moved since
/// is reached or lost within the caller cache's TTL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    Deployment,
    Tenant {
        name: String,
        /// At most [`DOMAINS_MAX`], so a scan is as fast as a search.
        domains: Arc<[String]>,
    },
}

impl Reach {
    /// Reaches nothing: for a request that somehow carries no caller, so
    /// that a missing scope fails closed.
    pub fn nothing() -> Self {
        Self::Tenant {
            name: String::new(),
            domains: Arc::from(Vec::new()),
        }
    }

    pub fn reaches(&self, username: &Username) -> bool {
        match self {
            Self::Deployment => true,
            Self::Tenant { domains, .. } => {
                domain_of(username).is_some_and(|domain| domains.iter().any(|d| d == domain))
            }
        }
    }

    /// Refuses an account outside the reach, from its name alone.
    pub fn admit(&self, username: &Username) -> Result<(), Error> {
        if self.reaches(username) {
            return Ok(());
        }
        Err(Error::PermissionDenied(
            Reason::OutsideTenant,
            format!("accounts/{username} is outside the caller's tenant"),
        ))
    }

    /// The tenant's name, for a scoped caller.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::Deployment => None,
            Self::Tenant { name, .. } => Some(name),
        }
    }
}

/// What an update changes: `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct TenantChange {
    pub display_name: Option<String>,
    pub domains: Option<Vec<String>>,
    /// Replaces the whole policy.
    pub policy: Option<TenantPolicy>,
}

#[derive(Debug)]
pub enum CreateTenantOutcome {
    Created(Tenant),
    NameTaken,
    /// The domain belongs to that tenant.
    DomainTaken {
        domain: String,
        owner: String,
    },
}

#[derive(Debug)]
pub enum UpdateTenantOutcome {
    Updated(Tenant),
    NotFound,
    DomainTaken { domain: String, owner: String },
}

#[derive(Debug)]
pub enum MoveDomainOutcome {
    /// Moved from that tenant (`None`: the domain was nobody's).
    Moved {
        tenant: Tenant,
        from: Option<String>,
    },
    TenantNotFound,
    /// The tenant owns [`DOMAINS_MAX`] domains already: nothing moved.
    Full,
}

#[derive(Debug)]
pub enum DeleteTenantOutcome {
    Deleted,
    NotFound,
    /// That many unrevoked callers are scoped to it.
    InUse(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).unwrap()
    }

    #[test]
    fn a_domain_is_what_follows_the_last_at_and_is_matched_exactly() {
        assert_eq!(domain_of(&user("alice@example.com")), Some("example.com"));
        assert_eq!(domain_of(&user("a@b@example.com")), None);
        assert_eq!(domain_of(&user("alice")), None);
        assert_eq!(domain_of(&user("alice@")), None);
        let reach = Reach::Tenant {
            name: "acme".to_owned(),
            domains: Arc::from(vec!["acme.test".to_owned(), "example.com".to_owned()]),
        };
        assert!(reach.reaches(&user("Alice@Example.COM")));
        assert!(!reach.reaches(&user("alice@eu.example.com")));
        assert!(!reach.reaches(&user("alice@badexample.com")));
        assert!(!reach.reaches(&user("alice")));
        assert!(!reach.reaches(&user("alice@acme.test@example.com")));
        assert!(!reach.reaches(&user("alice@example.com@acme.test")));
        assert!(reach.admit(&user("bob@other.test")).is_err());
        assert!(Reach::Deployment.reaches(&user("alice")));
        assert!(!Reach::nothing().reaches(&user("alice@example.com")));
    }

    #[test]
    fn domains_are_normalized_sorted_and_bounded() {
        assert_eq!(
            parse_domains(&[
                "B.test".to_owned(),
                "a.test".to_owned(),
                "b.test".to_owned()
            ]),
            Ok(vec!["a.test".to_owned(), "b.test".to_owned()])
        );
        for bad in ["", "a@b.test", ".test", "a..test", "a b.test", "a/b"] {
            assert!(parse_domain(bad).is_err(), "{bad:?}");
        }
        assert!(parse_domain(&format!("{}.test", "a".repeat(250))).is_err());
        let many: Vec<String> = (0..=DOMAINS_MAX).map(|n| format!("d{n}.test")).collect();
        assert!(parse_domains(&many).is_err());
    }
}
