//! Rows to domain values.

use crate::domain::clock::Timestamp;
use crate::domain::model::{Account, AppPassword, Disablement, LastUse, Revocation};
use crate::domain::network::AllowedNetworks;
use crate::domain::protocol::{Protocol, ProtocolSet};
use crate::domain::username::Username;

use super::entities::{account, app_password};

pub(super) fn app_password(row: app_password::Model, username: Username) -> AppPassword {
    AppPassword {
        id: row.id,
        username,
        display_name: row.display_name,
        protocols: ProtocolSet::from_bits(row.protocols),
        allowed_networks: AllowedNetworks::from_stored(&row.allowed_networks),
        issued_by: row.issued_by,
        created_at: Timestamp::from_millis(row.created_at),
        expires_at: row.expires_at.map(Timestamp::from_millis),
        last_use: row.last_used_at.map(|at| LastUse {
            at: Timestamp::from_millis(at),
            client_ip: row.last_used_ip.as_deref().and_then(|ip| ip.parse().ok()),
            protocol: row.last_used_protocol.and_then(Protocol::from_code),
        }),
        use_count: row.use_count,
        revoked: row.revoked_at.map(|at| Revocation {
            at: Timestamp::from_millis(at),
            reason: row.revoke_reason.unwrap_or_default(),
        }),
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
