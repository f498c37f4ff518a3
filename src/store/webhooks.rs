//! Webhook targets' cursors and leases: one row per target, every change
//! one conditional UPDATE, so two replicas never both hold a lease.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter};

use super::entities::webhook_cursor::{self, Column};
use super::SqlStore;
use crate::domain::audit::feed::Place;
use crate::domain::shared::error::Result;
use crate::domain::shared::time::Timestamp;
use crate::domain::webhooks::store::WebhookStore;

/// A place as stored: the same 64 bits, signed.
fn stored(place: Place) -> (i64, i64) {
    (
        i64::try_from(place.seq).unwrap_or(i64::MAX),
        place.mark as i64,
    )
}

fn place_of(row: &webhook_cursor::Model) -> Place {
    Place {
        seq: u64::try_from(row.seq).unwrap_or(0),
        mark: row.mark as u64,
    }
}

impl WebhookStore for SqlStore {
    #[tracing::instrument(skip_all, fields(target))]
    async fn open_cursor(&self, target: &str, start: Place) -> Result<()> {
        let (seq, mark) = stored(start);
        let row = webhook_cursor::ActiveModel {
            target: Set(target.to_owned()),
            seq: Set(seq),
            mark: Set(mark),
            holder: Set(None),
            lease_until: Set(0),
            writes: Set(0),
        };
        // "Do nothing" spelled as an update that changes nothing: MariaDB
        // has no ON DUPLICATE KEY IGNORE, which sea-query writes for it.
        let unchanged = Expr::col((webhook_cursor::Entity, Column::Writes));
        webhook_cursor::Entity::insert(row)
            .on_conflict(
                OnConflict::column(Column::Target)
                    .value(Column::Writes, unchanged)
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(target))]
    async fn has_cursor(&self, target: &str) -> Result<bool> {
        Ok(webhook_cursor::Entity::find_by_id(target.to_owned())
            .one(&self.db)
            .await?
            .is_some())
    }

    #[tracing::instrument(skip_all, fields(target))]
    async fn take_lease(
        &self,
        target: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<Place>> {
        webhook_cursor::Entity::update_many()
            .col_expr(Column::Holder, Expr::value(holder))
            .col_expr(Column::LeaseUntil, Expr::value(until.as_millis()))
            .col_expr(Column::Writes, Expr::col(Column::Writes).add(1))
            .filter(Column::Target.eq(target))
            .filter(
                Condition::any()
                    .add(Column::Holder.is_null())
                    .add(Column::Holder.eq(holder))
                    .add(Column::LeaseUntil.lt(now.as_millis())),
            )
            .exec(&self.db)
            .await?;
        let row = webhook_cursor::Entity::find_by_id(target.to_owned())
            .one(&self.db)
            .await?;
        Ok(row
            .filter(|row| row.holder.as_deref() == Some(holder))
            .map(|row| place_of(&row)))
    }

    #[tracing::instrument(skip_all, fields(target))]
    async fn advance(
        &self,
        target: &str,
        holder: &str,
        place: Place,
        until: Timestamp,
    ) -> Result<bool> {
        let (seq, mark) = stored(place);
        let updated = webhook_cursor::Entity::update_many()
            .col_expr(Column::Seq, Expr::value(seq))
            .col_expr(Column::Mark, Expr::value(mark))
            .col_expr(Column::LeaseUntil, Expr::value(until.as_millis()))
            .col_expr(Column::Writes, Expr::col(Column::Writes).add(1))
            .filter(Column::Target.eq(target))
            .filter(Column::Holder.eq(holder))
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected == 1)
    }

    #[tracing::instrument(skip_all, fields(target))]
    async fn release(&self, target: &str, holder: &str) -> Result<()> {
        webhook_cursor::Entity::update_many()
            .col_expr(Column::Holder, Expr::value(Option::<String>::None))
            .col_expr(Column::LeaseUntil, Expr::value(0i64))
            .col_expr(Column::Writes, Expr::col(Column::Writes).add(1))
            .filter(Column::Target.eq(target))
            .filter(Column::Holder.eq(holder))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}
