//! What access tokens need from storage.

use std::future::Future;

use super::model::{StoredToken, TokenDigest, TokenState};
use crate::domain::shared::error::Result;
use crate::domain::shared::time::Timestamp;

pub trait TokenStore: Clone + Send + Sync + 'static {
    /// Stores `token`, then, in the same transaction, deletes its
    /// password's tokens beyond the newest `keep` and those expired at
    /// `token.issued_at`.
    fn insert_token(
        &self,
        token: StoredToken,
        keep: u32,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The token stored under `digest`, with its password and account as
    /// they are now (one read).
    fn token_state(
        &self,
        digest: &TokenDigest,
    ) -> impl Future<Output = Result<Option<TokenState>>> + Send;

    /// Deletes the token stored under `digest` if `client_id` was issued
    /// it; whether one was deleted.
    fn delete_token(
        &self,
        digest: &TokenDigest,
        client_id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Deletes the tokens expired at `now`; how many.
    fn prune_tokens(&self, now: Timestamp) -> impl Future<Output = Result<u64>> + Send;
}
