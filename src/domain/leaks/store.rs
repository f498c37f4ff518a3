//! What leak reports and lookups need from storage.

use std::future::Future;

use uuid::Uuid;

use crate::domain::app_passwords::model::AppPassword;
use crate::domain::audit::event::AuditEvent;
use crate::domain::shared::error::Result;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

/// A password found by its public id, with the stored hash its secret is
/// verified against.
#[derive(Debug, Clone)]
pub struct Named {
    pub app_password: AppPassword,
    /// The argon2id PHC string; never the secret.
    pub secret_hash: String,
}

pub trait LeakStore: Clone + Send + Sync + 'static {
    /// The password whose public id this is, in any state, if there is
    /// one (one indexed read, whether or not there is).
    fn by_public_id(&self, public_id: &str) -> impl Future<Output = Result<Option<Named>>> + Send;

    /// In one transaction: revokes each of `leaked` that is still active
    /// or suspended at `at` (not revoked, expired or idle-expired) with
    /// `reason`, writing its event only if it was; then writes `report`,
    /// if given (a report's last part). Returns how many were revoked.
    fn revoke_leaked(
        &self,
        leaked: Vec<(Username, Uuid, AuditEvent)>,
        reason: &str,
        at: Timestamp,
        report: Option<AuditEvent>,
    ) -> impl Future<Output = Result<u64>> + Send;
}
