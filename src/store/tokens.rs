//! Queries for OAuth 2.0 access tokens (`domain/tokens`): stored by digest,
//! bounded per password, read with their password and account.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};

use super::entities::{account, app_password, oauth_token};
use super::{convert, SqlStore};
use crate::domain::shared::error::{Error, Result};
use crate::domain::shared::protocol::Protocol;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;
use crate::domain::tokens::model::{StoredToken, TokenDigest, TokenState};
use crate::domain::tokens::store::TokenStore;

impl TokenStore for SqlStore {
    #[tracing::instrument(skip_all)]
    async fn insert_token(&self, token: StoredToken, keep: u32) -> Result<()> {
        let password = token.app_password_id;
        let now = token.issued_at.as_millis();
        let txn = self.db.begin().await?;
        oauth_token::Entity::insert(oauth_token::ActiveModel {
            digest: Set(token.digest.0),
            app_password_id: Set(password),
            protocol: Set(token.protocol.code()),
            client_ip: Set(token.client_ip.to_string()),
            client_id: Set(token.client_id),
            issued_at: Set(now),
            expires_at: Set(token.expires_at.as_millis()),
        })
        .exec_without_returning(&txn)
        .await?;
        // The password's tokens past its newest `keep`, and its expired
        // ones. Each insert trims, so there are at most `keep` + 1 (a few
        // more under concurrent inserts), found by the (password, issued)
        // index; skipped here, since an OFFSET without a LIMIT is not SQL
        // on every backend.
        let newest_first: Vec<String> = oauth_token::Entity::find()
            .select_only()
            .column(oauth_token::Column::Digest)
            .filter(oauth_token::Column::AppPasswordId.eq(password))
            .order_by_desc(oauth_token::Column::IssuedAt)
            .order_by_desc(oauth_token::Column::Digest)
            .into_tuple()
            .all(&txn)
            .await?;
        let beyond: Vec<String> = newest_first
            .into_iter()
            .skip(usize::try_from(keep).unwrap_or(usize::MAX))
            .collect();
        let dropped = oauth_token::Entity::delete_many()
            .filter(oauth_token::Column::AppPasswordId.eq(password))
            .filter(
                oauth_token::Column::ExpiresAt
                    .lte(now)
                    .or(oauth_token::Column::Digest.is_in(beyond)),
            )
            .exec(&txn)
            .await?;
        txn.commit().await?;
        if dropped.rows_affected > 0 {
            tracing::debug!(
                dropped = dropped.rows_affected,
                "dropped a password's old tokens"
            );
        }
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn token_state(&self, digest: &TokenDigest) -> Result<Option<TokenState>> {
        let Some(row) = oauth_token::Entity::find_by_id(digest.0.clone())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let Some((password, Some(account))) = app_password::Entity::find_by_id(row.app_password_id)
            .find_also_related(account::Entity)
            .one(&self.db)
            .await?
        else {
            // Its password was deleted (the row goes with it, by its
            // foreign key): no token.
            return Ok(None);
        };
        let token = StoredToken {
            digest: TokenDigest(row.digest),
            app_password_id: row.app_password_id,
            protocol: Protocol::from_code(row.protocol)
                .ok_or_else(|| Error::internal("an access token's protocol is unknown"))?,
            client_ip: row
                .client_ip
                .parse()
                .map_err(|_| Error::internal("an access token's client address is malformed"))?,
            client_id: row.client_id,
            issued_at: Timestamp::from_millis(row.issued_at),
            expires_at: Timestamp::from_millis(row.expires_at),
        };
        Ok(Some(TokenState {
            token,
            account_disabled: account.disabled_at.is_some(),
            app_password: convert::app_password(password, Username::from_stored(account.username)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_token(&self, digest: &TokenDigest, client_id: &str) -> Result<bool> {
        let deleted = oauth_token::Entity::delete_many()
            .filter(oauth_token::Column::Digest.eq(digest.0.as_str()))
            .filter(oauth_token::Column::ClientId.eq(client_id))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected > 0)
    }

    #[tracing::instrument(skip_all)]
    async fn prune_tokens(&self, now: Timestamp) -> Result<u64> {
        let deleted = oauth_token::Entity::delete_many()
            .filter(oauth_token::Column::ExpiresAt.lte(now.as_millis()))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }
}
