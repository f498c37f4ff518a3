//! Protobuf ↔ domain values.

use std::time::Duration;

use crate::domain::accounts::model::Account;
use crate::domain::app_passwords::model::{
    AppPassword, AppPasswordState, ChangePolicy, CredentialChange,
};
use crate::domain::audit::event::{AuditEvent, EventType};
use crate::domain::audit::watch::WatchItem;
use crate::domain::callers::model::{Caller, Role};
use crate::domain::login::explain::{Explanation, ScopeState};
use crate::domain::login::model::{FailureReason, LoginOutcome};
use crate::domain::secrets::format;
use crate::domain::shared::protocol::{Protocol, ProtocolSet};
use crate::domain::shared::time::Timestamp;

use super::names;
use super::pb::{self, LoginExplanation, WatchEventsResponse};

pub fn timestamp(at: Timestamp) -> prost_types::Timestamp {
    let millis = at.as_millis();
    prost_types::Timestamp {
        seconds: millis.div_euclid(1000),
        // Always in 0..1_000_000_000, so the cast cannot truncate.
        nanos: (millis.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A duration for a response; one too long for protobuf's (never one
/// latchkey gives) is zero.
pub fn duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(duration).unwrap_or_default()
}

/// Reads a timestamp given by a caller; millisecond precision is kept.
/// Only instants a protobuf Timestamp can express are taken (years 1 to
/// 9999), so everything stored can be given back to every client.
pub fn parse_timestamp(at: &prost_types::Timestamp) -> Result<Timestamp, String> {
    if !(0..1_000_000_000).contains(&at.nanos) {
        return Err("nanos must be between 0 and 999,999,999".to_owned());
    }
    const FIRST_SECOND: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
    if !(FIRST_SECOND..=Timestamp::LATEST.as_millis() / 1000).contains(&at.seconds) {
        return Err("must be between the years 1 and 9999".to_owned());
    }
    at.seconds
        .checked_mul(1000)
        .and_then(|millis| millis.checked_add(i64::from(at.nanos / 1_000_000)))
        .map(Timestamp::from_millis)
        .ok_or_else(|| "is out of range".to_owned())
}

/// Reads a positive duration given by a caller.
pub fn parse_positive_duration(duration: &prost_types::Duration) -> Result<Duration, String> {
    let parsed = Duration::try_from(*duration).map_err(|_| "must be positive".to_owned())?;
    if parsed.is_zero() {
        return Err("must be positive".to_owned());
    }
    Ok(parsed)
}

pub fn protocol_to_pb(protocol: Protocol) -> pb::Protocol {
    match protocol {
        Protocol::Imap => pb::Protocol::Imap,
        Protocol::Pop3 => pb::Protocol::Pop3,
        Protocol::Smtp => pb::Protocol::Smtp,
        Protocol::CalDav => pb::Protocol::Caldav,
        Protocol::CardDav => pb::Protocol::Carddav,
        Protocol::ExchangeActiveSync => pb::Protocol::ExchangeActivesync,
        Protocol::ExchangeWebServices => pb::Protocol::ExchangeWebServices,
        Protocol::Mapi => pb::Protocol::Mapi,
    }
}

/// A protocol as named by a login: concrete, never ANY or UNSPECIFIED.
pub fn parse_login_protocol(value: i32) -> Result<Protocol, String> {
    match pb::Protocol::try_from(value) {
        Ok(pb::Protocol::Unspecified) => Err("is required".to_owned()),
        Ok(pb::Protocol::Any) => Err("must name the login's concrete protocol, not ANY".to_owned()),
        Ok(pb::Protocol::Imap) => Ok(Protocol::Imap),
        Ok(pb::Protocol::Pop3) => Ok(Protocol::Pop3),
        Ok(pb::Protocol::Smtp) => Ok(Protocol::Smtp),
        Ok(pb::Protocol::Caldav) => Ok(Protocol::CalDav),
        Ok(pb::Protocol::Carddav) => Ok(Protocol::CardDav),
        Ok(pb::Protocol::ExchangeActivesync) => Ok(Protocol::ExchangeActiveSync),
        Ok(pb::Protocol::ExchangeWebServices) => Ok(Protocol::ExchangeWebServices),
        Ok(pb::Protocol::Mapi) => Ok(Protocol::Mapi),
        Err(_) => Err(format!("{value} is not a known protocol")),
    }
}

/// The protocols an issued password allows: ANY alone, or concrete ones.
pub fn parse_protocol_set(values: &[i32]) -> Result<ProtocolSet, String> {
    if values.is_empty() {
        return Err("at least one protocol is required (PROTOCOL_ANY allows all)".to_owned());
    }
    if values.len() > crate::domain::shared::limits::PROTOCOLS_MAX {
        return Err(format!(
            "must have at most {} entries",
            crate::domain::shared::limits::PROTOCOLS_MAX
        ));
    }
    if values.contains(&(pb::Protocol::Any as i32)) {
        return if values.len() == 1 {
            Ok(ProtocolSet::any())
        } else {
            Err("PROTOCOL_ANY cannot be combined with other protocols".to_owned())
        };
    }
    let protocols = values
        .iter()
        .map(|&value| parse_login_protocol(value))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ProtocolSet::of(protocols))
}

pub fn app_password_to_pb(password: AppPassword, now: Timestamp) -> pb::AppPassword {
    let state = match password.state(now) {
        AppPasswordState::Active => pb::app_password::State::Active,
        AppPasswordState::Expired => pb::app_password::State::Expired,
        AppPasswordState::Revoked => pb::app_password::State::Revoked,
        AppPasswordState::Suspended => pb::app_password::State::Suspended,
        AppPasswordState::IdleExpired => pb::app_password::State::IdleExpired,
    };
    let idle_expire_time = password
        .idle_expired_at
        .or_else(|| password.rules().idle_deadline())
        .map(timestamp);
    let protocols = if password.protocols.is_any() {
        vec![pb::Protocol::Any as i32]
    } else {
        password
            .protocols
            .protocols()
            .map(|p| protocol_to_pb(p) as i32)
            .collect()
    };
    let last_use = password.last_use.as_ref();
    pb::AppPassword {
        name: names::app_password(&password.username, password.id),
        username: password.username.to_string(),
        display_name: password.display_name,
        protocols,
        allowed_networks: password.allowed_networks.entries(),
        create_time: Some(timestamp(password.created_at)),
        expire_time: password.expires_at.map(timestamp),
        issued_by: password.issued_by,
        state: state as i32,
        last_use_time: last_use.map(|u| timestamp(u.at)),
        last_use_client_ip: last_use
            .and_then(|u| u.client_ip)
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        last_use_protocol: last_use
            .and_then(|u| u.protocol)
            .map_or(pb::Protocol::Unspecified, protocol_to_pb) as i32,
        last_use_client: last_use
            .and_then(|u| u.client.as_ref())
            .map(|client| client.to_string())
            .unwrap_or_default(),
        use_count: password.use_count,
        revoke_time: password.revoked.as_ref().map(|r| timestamp(r.at)),
        revoke_reason: password.revoked.map(|r| r.reason).unwrap_or_default(),
        secret_prefix: format::hint(&password.selector),
        idle_timeout: password.idle_timeout.map(duration),
        idle_expire_time,
        suspend_time: password.suspended.as_ref().map(|s| timestamp(s.at)),
        suspend_reason: password.suspended.map(|s| s.reason).unwrap_or_default(),
        update_time: password.updated_at.map(timestamp),
    }
}

pub fn account_to_pb(account: Account) -> pb::Account {
    let state = if account.disabled.is_some() {
        pb::account::State::Disabled
    } else {
        pb::account::State::Active
    };
    pb::Account {
        name: names::account(&account.username),
        username: account.username.to_string(),
        state: state as i32,
        create_time: Some(timestamp(account.created_at)),
        disable_time: account.disabled.as_ref().map(|d| timestamp(d.at)),
        disable_reason: account.disabled.map(|d| d.reason).unwrap_or_default(),
        active_app_password_count: i32::try_from(account.active_app_passwords).unwrap_or(i32::MAX),
    }
}

pub fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::Issuer => pb::Role::Issuer,
        Role::Authenticator => pb::Role::Authenticator,
        Role::Operator => pb::Role::Operator,
        Role::Notifier => pb::Role::Notifier,
        Role::Reporter => pb::Role::Reporter,
    }
}

pub fn parse_role(value: i32) -> Result<Role, String> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Issuer) => Ok(Role::Issuer),
        Ok(pb::Role::Authenticator) => Ok(Role::Authenticator),
        Ok(pb::Role::Operator) => Ok(Role::Operator),
        Ok(pb::Role::Notifier) => Ok(Role::Notifier),
        Ok(pb::Role::Reporter) => Ok(Role::Reporter),
        Ok(pb::Role::Unspecified) => Err("is required".to_owned()),
        Err(_) => Err(format!("{value} is not a known role")),
    }
}

fn tenant_policy_to_pb(policy: &crate::domain::tenants::model::TenantPolicy) -> pb::TenantPolicy {
    let change = |p: Option<ChangePolicy>| {
        p.map_or(pb::PrimaryChangePolicy::Unspecified, policy_to_pb) as i32
    };
    let overrides = &policy.on_primary_change;
    pb::TenantPolicy {
        max_active_app_passwords: policy
            .max_active_app_passwords
            .map_or(0, |cap| i32::try_from(cap).unwrap_or(i32::MAX)),
        max_lifetime: policy.max_lifetime.map(duration),
        default_idle_timeout: policy.default_idle_timeout.map(duration),
        allowed_protocols: policy
            .allowed_protocols
            .map(|set| set.protocols().map(|p| protocol_to_pb(p) as i32).collect())
            .unwrap_or_default(),
        self_service_change: change(overrides.self_service_change),
        admin_reset: change(overrides.admin_reset),
        account_recovery: change(overrides.account_recovery),
        second_factor_reset: change(overrides.second_factor_reset),
    }
}

pub fn tenant_to_pb(tenant: crate::domain::tenants::model::Tenant) -> pb::Tenant {
    pb::Tenant {
        policy: Some(tenant_policy_to_pb(&tenant.policy)),
        name: names::tenant(&tenant.name),
        display_name: tenant.display_name,
        domains: tenant.domains,
        create_time: Some(timestamp(tenant.created_at)),
        update_time: Some(timestamp(tenant.updated_at)),
    }
}

pub fn caller_to_pb(caller: Caller) -> pb::Caller {
    pb::Caller {
        name: names::caller(&caller.name),
        display_name: caller.name,
        role: role_to_pb(caller.role) as i32,
        tls_identity: caller.tls_identity.unwrap_or_default(),
        create_time: Some(timestamp(caller.created_at)),
        created_by: caller.created_by,
        last_use_time: caller.last_used_at.map(timestamp),
        revoke_time: caller.revoked_at.map(timestamp),
        tenant: caller
            .tenant
            .as_deref()
            .map(names::tenant)
            .unwrap_or_default(),
        expire_time: caller.expires_at.map(timestamp),
        allowed_networks: caller.allowed_networks.entries(),
        last_use_ip: caller
            .last_used_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        previous_key_expire_time: caller.previous_key_expires_at.map(timestamp),
    }
}

const EVENT_TYPES: [(EventType, pb::AuditEventType); 28] = [
    (
        EventType::AppPasswordExpired,
        pb::AuditEventType::AppPasswordExpired,
    ),
    (
        EventType::AppPasswordExpiringSoon,
        pb::AuditEventType::AppPasswordExpiringSoon,
    ),
    (
        EventType::AppPasswordIdleExpiringSoon,
        pb::AuditEventType::AppPasswordIdleExpiringSoon,
    ),
    (
        EventType::AccountLoginBlocked,
        pb::AuditEventType::AccountLoginBlocked,
    ),
    (EventType::TenantCreated, pb::AuditEventType::TenantCreated),
    (EventType::TenantUpdated, pb::AuditEventType::TenantUpdated),
    (EventType::TenantDeleted, pb::AuditEventType::TenantDeleted),
    (
        EventType::TenantDomainMoved,
        pb::AuditEventType::TenantDomainMoved,
    ),
    (
        EventType::CallerKeyRotated,
        pb::AuditEventType::CallerKeyRotated,
    ),
    (EventType::LeakReported, pb::AuditEventType::LeakReported),
    (
        EventType::AppPasswordLookedUp,
        pb::AuditEventType::AppPasswordLookedUp,
    ),
    (
        EventType::AppPasswordUpdated,
        pb::AuditEventType::AppPasswordUpdated,
    ),
    (
        EventType::AppPasswordSuspended,
        pb::AuditEventType::AppPasswordSuspended,
    ),
    (
        EventType::AppPasswordResumed,
        pb::AuditEventType::AppPasswordResumed,
    ),
    (
        EventType::AppPasswordIdleExpired,
        pb::AuditEventType::AppPasswordIdleExpired,
    ),
    (
        EventType::AppPasswordsBulkRevoked,
        pb::AuditEventType::AppPasswordsBulkRevoked,
    ),
    (
        EventType::PrimaryCredentialChanged,
        pb::AuditEventType::PrimaryCredentialChanged,
    ),
    (
        EventType::AppPasswordIssued,
        pb::AuditEventType::AppPasswordIssued,
    ),
    (
        EventType::AppPasswordRevoked,
        pb::AuditEventType::AppPasswordRevoked,
    ),
    (
        EventType::AccountAppPasswordsRevoked,
        pb::AuditEventType::AccountAppPasswordsRevoked,
    ),
    (
        EventType::AccountDisabled,
        pb::AuditEventType::AccountDisabled,
    ),
    (
        EventType::AccountEnabled,
        pb::AuditEventType::AccountEnabled,
    ),
    (
        EventType::AccountDeleted,
        pb::AuditEventType::AccountDeleted,
    ),
    (EventType::CallerCreated, pb::AuditEventType::CallerCreated),
    (EventType::CallerRevoked, pb::AuditEventType::CallerRevoked),
    (
        EventType::AuthenticationFailed,
        pb::AuditEventType::AuthenticationFailed,
    ),
    (
        EventType::AppPasswordFirstUse,
        pb::AuditEventType::AppPasswordFirstUse,
    ),
    (
        EventType::AppPasswordNewNetwork,
        pb::AuditEventType::AppPasswordNewNetwork,
    ),
];

pub fn parse_event_types(values: &[i32]) -> Result<Vec<EventType>, String> {
    if values.len() > EVENT_TYPES.len() + 5 {
        return Err(format!(
            "must have at most {} entries",
            EVENT_TYPES.len() + 5
        ));
    }
    values
        .iter()
        .map(|&value| {
            event_type_from_pb(value).ok_or_else(|| format!("{value} is not a known event type"))
        })
        .collect()
}

/// The event type a wire value names; `None` for one this build does not
/// know (or UNSPECIFIED).
pub fn event_type_from_pb(value: i32) -> Option<EventType> {
    EVENT_TYPES
        .iter()
        .find(|(_, pb)| *pb as i32 == value)
        .map(|&(domain, _)| domain)
}

pub fn event_type_to_pb(event_type: EventType) -> pb::AuditEventType {
    EVENT_TYPES
        .iter()
        .find(|(domain, _)| *domain == event_type)
        .map_or(pb::AuditEventType::Unspecified, |&(_, pb)| pb)
}

pub fn audit_event_to_pb(event: AuditEvent) -> pb::AuditEvent {
    let event_type = event_type_to_pb(event.event_type);
    let app_password = match (&event.username, event.app_password_id) {
        (Some(username), Some(id)) => names::app_password(username, id),
        _ => String::new(),
    };
    pb::AuditEvent {
        name: format!("auditEvents/{}", event.id),
        occur_time: Some(timestamp(event.at)),
        r#type: event_type as i32,
        actor: event.actor,
        account: event
            .username
            .as_ref()
            .map(names::account)
            .unwrap_or_default(),
        app_password,
        caller: event
            .caller_name
            .as_deref()
            .map(names::caller)
            .unwrap_or_default(),
        client_ip: event.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        protocol: event
            .protocol
            .map_or(pb::Protocol::Unspecified, protocol_to_pb) as i32,
        item_count: event.item_count.unwrap_or_default(),
        detail: event.detail,
        actor_tenant: event
            .actor_tenant
            .as_deref()
            .map(names::tenant)
            .unwrap_or_default(),
    }
}

pub fn parse_change(value: i32) -> Result<CredentialChange, String> {
    use pb::PrimaryCredentialChange as Pb;
    match Pb::try_from(value) {
        Ok(Pb::SelfServiceChange) => Ok(CredentialChange::SelfServiceChange),
        Ok(Pb::AdminReset) => Ok(CredentialChange::AdminReset),
        Ok(Pb::AccountRecovery) => Ok(CredentialChange::AccountRecovery),
        Ok(Pb::SecondFactorReset) => Ok(CredentialChange::SecondFactorReset),
        Ok(Pb::Unspecified) => Err("is required".to_owned()),
        Err(_) => Err(format!("{value} is not a known kind of change")),
    }
}

pub fn policy_to_pb(policy: ChangePolicy) -> pb::PrimaryChangePolicy {
    match policy {
        ChangePolicy::Keep => pb::PrimaryChangePolicy::Keep,
        ChangePolicy::RevokeIssuedBefore => pb::PrimaryChangePolicy::RevokeIssuedBefore,
        ChangePolicy::RevokeAll => pb::PrimaryChangePolicy::RevokeAll,
    }
}

pub fn reason_to_pb(reason: FailureReason) -> pb::FailureReason {
    match reason {
        FailureReason::InvalidCredentials => pb::FailureReason::InvalidCredentials,
        FailureReason::AccountDisabled => pb::FailureReason::AccountDisabled,
        FailureReason::Revoked => pb::FailureReason::Revoked,
        FailureReason::Expired => pb::FailureReason::Expired,
        FailureReason::IdleExpired => pb::FailureReason::IdleExpired,
        FailureReason::Suspended => pb::FailureReason::Suspended,
        FailureReason::ProtocolNotAllowed => pb::FailureReason::ProtocolNotAllowed,
        FailureReason::NetworkNotAllowed => pb::FailureReason::NetworkNotAllowed,
    }
}

/// Authenticate's answer. A refusal names its reason, but no account or
/// password.
pub fn login_outcome_to_pb(outcome: LoginOutcome) -> pb::AuthenticateResponse {
    let refused = |reason: pb::FailureReason, retry_after| pb::AuthenticateResponse {
        authenticated: false,
        failure_reason: reason as i32,
        username: String::new(),
        app_password: String::new(),
        retry_after,
    };
    match outcome {
        LoginOutcome::Success {
            username,
            app_password_id,
        } => pb::AuthenticateResponse {
            authenticated: true,
            failure_reason: pb::FailureReason::Unspecified as i32,
            app_password: names::app_password(&username, app_password_id),
            username: username.to_string(),
            retry_after: None,
        },
        LoginOutcome::Failure(reason) => refused(reason_to_pb(reason), None),
        LoginOutcome::Throttled { retry_after } => {
            refused(pb::FailureReason::Throttled, Some(duration(retry_after)))
        }
    }
}

pub fn scope_to_pb(scope: ScopeState) -> pb::ThrottleScope {
    pb::ThrottleScope {
        failures: i32::try_from(scope.failures).unwrap_or(i32::MAX),
        limit: i32::try_from(scope.limit).unwrap_or(i32::MAX),
        blocked_until: scope.blocked_until.map(timestamp),
        known_source: scope.known_source,
    }
}

pub fn explanation_to_pb(explanation: Explanation, now: Timestamp) -> LoginExplanation {
    LoginExplanation {
        username: explanation.username.to_string(),
        account_exists: explanation.account_exists,
        account_disabled: explanation.disabled.is_some(),
        disable_reason: explanation.disabled.unwrap_or_default(),
        app_passwords: explanation
            .app_passwords
            .into_iter()
            .map(|(password, refused)| pb::AppPasswordVerdict {
                app_password: Some(app_password_to_pb(password, now)),
                refused_by: refused.map_or(pb::FailureReason::Unspecified, reason_to_pb) as i32,
            })
            .collect(),
        source: explanation.source.map(scope_to_pb),
        pair: explanation.pair.map(scope_to_pb),
        account: explanation.account.map(scope_to_pb),
        recent_failures: explanation
            .recent_failures
            .into_iter()
            .map(|event| pb::FailedLogin {
                occur_time: Some(timestamp(event.at)),
                reason: event.detail,
                client_ip: event.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                protocol: event
                    .protocol
                    .map_or(pb::Protocol::Unspecified, protocol_to_pb)
                    as i32,
                count: event.item_count.unwrap_or(1),
                app_password: match (&event.username, event.app_password_id) {
                    (Some(username), Some(id)) => names::app_password(username, id),
                    _ => String::new(),
                },
            })
            .collect(),
        summary: explanation.summary,
    }
}

/// One item of a change feed's stream.
pub fn watch_item_to_pb(item: WatchItem) -> WatchEventsResponse {
    match item {
        WatchItem::Event { event, token } => WatchEventsResponse {
            audit_event: Some(audit_event_to_pb(event)),
            resume_token: token.encode(),
        },
        WatchItem::Checkpoint(token) => WatchEventsResponse {
            audit_event: None,
            resume_token: token.encode(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_including_before_the_epoch() {
        for millis in [0, 1, 999, 1_764_000_000_123, -1, -1001] {
            let at = Timestamp::from_millis(millis);
            assert_eq!(parse_timestamp(&timestamp(at)), Ok(at));
        }
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert!(parse_timestamp(&bad).is_err());
        let huge = prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert!(parse_timestamp(&huge).is_err());
    }

    #[test]
    fn protocol_lists_are_any_alone_or_concrete() {
        let any = pb::Protocol::Any as i32;
        let imap = pb::Protocol::Imap as i32;
        assert!(parse_protocol_set(&[any]).unwrap().is_any());
        assert!(parse_protocol_set(&[any, imap]).is_err());
        assert!(parse_protocol_set(&[]).is_err());
        assert!(parse_protocol_set(&[0]).is_err());
        assert!(parse_protocol_set(&[999]).is_err());
        assert!(parse_protocol_set(&[imap]).unwrap().allows(Protocol::Imap));
    }
}
