//! Rows to domain values.

use crate::domain::accounts::model::{Account, Disablement};
use crate::domain::app_passwords::model::{AppPassword, LastUse, Revocation, Suspension};
use crate::domain::shared::client::ClientName;
use crate::domain::shared::network::AllowedNetworks;
use crate::domain::shared::protocol::{Protocol, ProtocolSet};
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

use crate::domain::audit::event::{AuditEvent, EventType};
use crate::domain::callers::model::{Caller, Role};

use super::entities::{account, app_password, audit_event, caller};

pub(super) fn app_password(row: app_password::Model, username: Username) -> AppPassword {
    AppPassword {
        id: row.id,
        username,
        selector: row.selector,
        display_name: row.display_name,
        protocols: ProtocolSet::from_bits(row.protocols),
        allowed_networks: AllowedNetworks::from_stored(&row.allowed_networks),
        issued_by: row.issued_by,
        created_at: Timestamp::from_millis(row.created_at),
        expires_at: row.expires_at.map(Timestamp::from_millis),
        idle_timeout: row.idle_timeout_ms.map(super::duration_of_millis),
        idle_expired_at: row.idle_expired_at.map(Timestamp::from_millis),
        last_use: row.last_used_at.map(|at| LastUse {
            at: Timestamp::from_millis(at),
            client_ip: row.last_used_ip.as_deref().and_then(|ip| ip.parse().ok()),
            protocol: row.last_used_protocol.and_then(Protocol::from_code),
            client: row.last_used_client.map(ClientName::from_stored),
        }),
        use_count: row.use_count,
        suspended: row.suspended_at.map(|at| Suspension {
            at: Timestamp::from_millis(at),
            reason: row.suspend_reason.unwrap_or_default(),
        }),
        revoked: row.revoked_at.map(|at| Revocation {
            at: Timestamp::from_millis(at),
            reason: row.revoke_reason.unwrap_or_default(),
        }),
        updated_at: row.updated_at.map(Timestamp::from_millis),
    }
}

pub(super) fn account(row: account::Model, active_app_passwords: u64) -> Account {
    Account {
        username: Username::from_stored(row.username),
        created_at: Timestamp::from_millis(row.created_at),
        disabled: row.disabled_at.map(|at| Disablement {
            at: Timestamp::from_millis(at),
            reason: row.disable_reason.unwrap_or_default(),
        }),
        active_app_passwords: u32::try_from(active_app_passwords).unwrap_or(u32::MAX),
    }
}

/// `None` for a row whose type this build does not know (written by a newer
/// version); such rows are skipped rather than failing the whole listing.
pub(super) fn audit_event(row: audit_event::Model) -> Option<AuditEvent> {
    Some(AuditEvent {
        id: row.id,
        at: Timestamp::from_millis(row.occurred_at),
        event_type: EventType::parse(&row.event_type)?,
        actor: row.actor,
        actor_tenant: row.actor_tenant,
        username: row.username.map(Username::from_stored),
        app_password_id: row.app_password_id,
        caller_name: row.caller_name,
        client_ip: row.client_ip.and_then(|ip| ip.parse().ok()),
        protocol: row.protocol.and_then(Protocol::from_code),
        item_count: row.item_count,
        detail: row.detail,
    })
}

/// `None` for a row with a role this build does not know.
pub(super) fn caller(row: caller::Model) -> Option<Caller> {
    Some(Caller {
        name: row.name,
        role: Role::parse(&row.role)?,
        tls_identity: row.tls_identity,
        created_at: Timestamp::from_millis(row.created_at),
        created_by: row.created_by,
        last_used_at: row.last_used_at.map(Timestamp::from_millis),
        revoked_at: row.revoked_at.map(Timestamp::from_millis),
        tenant: row.tenant,
        expires_at: row.expires_at.map(Timestamp::from_millis),
        allowed_networks: AllowedNetworks::from_stored(&row.allowed_networks),
        last_used_ip: row.last_used_ip.and_then(|ip| ip.parse().ok()),
        previous_key_expires_at: row.previous_key_expires_at.map(Timestamp::from_millis),
    })
}
