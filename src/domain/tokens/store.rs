//! What access tokens need from storage: nothing when one is issued; the
//! password's state, and the tokens revoked before they expired.

use std::future::Future;

use uuid::Uuid;

use super::model::{PasswordState, TokenDigest};
use crate::domain::shared::error::Result;
use crate::domain::shared::time::Timestamp;

pub trait TokenStore: Clone + Send + Sync + 'static {
    /// The password `id` and its account as they are now, and whether a
    /// token of `digest` was revoked (two indexed reads).
    fn token_state(
        &self,
        id: uuid::Uuid,
        digest: &TokenDigest,
    ) -> impl Future<Output = Result<(Option<PasswordState>, bool)>> + Send;

    /// Remembers that the token of `digest`, a token of the password `id`,
    /// is revoked, until `expires_at`; revoking it again changes nothing.
    fn revoke_token(
        &self,
        digest: &TokenDigest,
        id: Uuid,
        expires_at: Timestamp,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Forgets revocations of tokens expired at `now`; how many.
    fn prune_revoked_tokens(&self, now: Timestamp) -> impl Future<Output = Result<u64>> + Send;
}
