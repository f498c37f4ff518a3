//! Queries for leak reports and lookups: a password by its public id, and
//! the revocation of a report's verified passwords.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::app_passwords::{active_at, lock_for_write};
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
        report: Option<AuditEvent>,
    ) -> Result<u64> {
        let txn = self.db.begin().await?;
        lock_for_write(&txn).await?;
        // Which of them are still active or suspended, locked (PostgreSQL,
        // MySQL; SQLite holds the write lock already), and then those
        // revoked: two statements for the whole report, whatever it held,
        // so neither the statements nor their number tell how many were
        // real. (A password id is unique across accounts, and each came
        // from the read by its public id.)
        let ids: Vec<Uuid> = leaked.iter().map(|(_, id, _)| *id).collect();
        let live: Vec<Uuid> = app_password::Entity::find()
            .select_only()
            .column(app_password::Column::Id)
            .filter(app_password::Column::Id.is_in(ids))
            .filter(active_at(at))
            .lock_exclusive()
            .into_tuple()
            .all(&txn)
            .await?;
        let revoked = app_password::Entity::update_many()
            .col_expr(app_password::Column::RevokedAt, Expr::value(at.as_millis()))
            .col_expr(app_password::Column::RevokeReason, Expr::value(reason))
            .filter(app_password::Column::Id.is_in(live.iter().copied()))
            .exec(&txn)
            .await?;
        let live: std::collections::HashSet<Uuid> = live.into_iter().collect();
        let mut events: Vec<AuditEvent> = leaked
            .into_iter()
            .filter(|(_, id, _)| live.contains(id))
            .map(|(_, _, event)| event)
            .collect();
        events.extend(report);
        insert_events(&txn, events).await?;
        txn.commit().await?;
        Ok(revoked.rows_affected)
    }
}
