//! Queries for leak reports and lookups: a password by its public id, and
//! the revocation of a report's verified passwords.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::app_passwords::{account_id_of, active_at};
use super::audit::insert_events;
use super::entities::{account, app_password};
use super::{convert, SqlStore};
use crate::domain::audit::event::AuditEvent;
use crate::domain::leaks::store::{LeakStore, Named};
use crate::domain::shared::error::Result;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

impl LeakStore for SqlStore {
    #[tracing::instrument(skip_all)]
    async fn by_public_id(&self, public_id: &str) -> Result<Option<Named>> {
        let found = app_password::Entity::find()
            .filter(app_password::Column::PublicId.eq(public_id))
            .find_also_related(account::Entity)
            .one(&self.db)
            .await?;
        Ok(found.and_then(|(row, account)| {
            let secret_hash = row.secret_hash.0.clone();
            account.map(|account| Named {
                app_password: convert::app_password(row, Username::from_stored(account.username)),
                secret_hash,
            })
        }))
    }

    #[tracing::instrument(skip_all, fields(leaked = leaked.len()))]
    async fn revoke_leaked(
        &self,
        leaked: Vec<(Username, Uuid, AuditEvent)>,
        reason: &str,
        at: Timestamp,
        report: AuditEvent,
    ) -> Result<u64> {
        let txn = self.db.begin().await?;
        let mut revoked = 0;
        let mut events = Vec::with_capacity(leaked.len() + 1);
        for (username, id, event) in leaked {
            let changed = app_password::Entity::update_many()
                .col_expr(app_password::Column::RevokedAt, Expr::value(at.as_millis()))
                .col_expr(app_password::Column::RevokeReason, Expr::value(reason))
                .filter(app_password::Column::Id.eq(id))
                .filter(app_password::Column::AccountId.in_subquery(account_id_of(&username)))
                .filter(active_at(at))
                .exec(&txn)
                .await?;
            if changed.rows_affected > 0 {
                revoked += changed.rows_affected;
                events.push(event);
            }
        }
        events.push(report);
        insert_events(&txn, events).await?;
        txn.commit().await?;
        Ok(revoked)
    }
}
