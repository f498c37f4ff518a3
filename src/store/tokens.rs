//! Queries for OAuth 2.0 access tokens (`domain/tokens`): a token's
//! password and account, and the tokens revoked before they expired.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set, SqlErr};
use uuid::Uuid;

use super::entities::{account, app_password, oauth_revoked_token};
use super::{convert, SqlStore};
use crate::domain::shared::error::Result;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;
use crate::domain::tokens::model::{PasswordState, TokenDigest};
use crate::domain::tokens::store::TokenStore;

impl TokenStore for SqlStore {
    #[tracing::instrument(skip_all)]
    async fn token_state(
        &self,
        id: Uuid,
        digest: &TokenDigest,
    ) -> Result<(Option<PasswordState>, bool)> {
        let state = app_password::Entity::find_by_id(id)
            .find_also_related(account::Entity)
            .one(&self.db)
            .await?
            .and_then(|(password, account)| {
                account.map(|account| PasswordState {
                    account_disabled: account.disabled_at.is_some(),
                    app_password: convert::app_password(
                        password,
                        Username::from_stored(account.username),
                    ),
                })
            });
        let revoked = oauth_revoked_token::Entity::find_by_id(digest.0.clone())
            .one(&self.db)
            .await?
            .is_some();
        Ok((state, revoked))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_token(
        &self,
        digest: &TokenDigest,
        id: Uuid,
        expires_at: Timestamp,
    ) -> Result<()> {
        let inserted = oauth_revoked_token::Entity::insert(oauth_revoked_token::ActiveModel {
            digest: Set(digest.0.clone()),
            app_password_id: Set(id),
            expires_at: Set(expires_at.as_millis()),
        })
        .exec_without_returning(&self.db)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            // Revoked already (here or on another replica), or its password
            // is gone (deleted with its account, or pruned), which ended the
            // token already: nothing changes (RFC 7009 §2.2: 200).
            Err(error) => match error.sql_err() {
                Some(
                    SqlErr::UniqueConstraintViolation(_) | SqlErr::ForeignKeyConstraintViolation(_),
                ) => Ok(()),
                _ => Err(error.into()),
            },
        }
    }

    #[tracing::instrument(skip_all)]
    async fn prune_revoked_tokens(&self, now: Timestamp) -> Result<u64> {
        let deleted = oauth_revoked_token::Entity::delete_many()
            .filter(oauth_revoked_token::Column::ExpiresAt.lte(now.as_millis()))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }
}
