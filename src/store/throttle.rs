//! Failed-login counters, shared by every replica through the database.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, TransactionTrait,
};

use super::entities::auth_throttle;
use super::{db_error, SqlStore};
use crate::domain::clock::Timestamp;
use crate::domain::error::{Error, Result};
use crate::domain::store::ThrottleStore;
use crate::domain::throttle::{Counter, FailureRule, Scope};

fn counter(row: &auth_throttle::Model) -> Counter {
    Counter {
        failures: u32::try_from(row.failures).unwrap_or(u32::MAX),
        last_failure_at: row.last_failure_at.map(Timestamp::from_millis),
        blocked_until: row.blocked_until.map(Timestamp::from_millis),
        last_success_at: row.last_success_at.map(Timestamp::from_millis),
    }
}

fn empty_row(key: &str, now: Timestamp) -> auth_throttle::ActiveModel {
    auth_throttle::ActiveModel {
        scope_key: Set(key.to_owned()),
        failures: Set(0),
        last_failure_at: Set(None),
        blocked_until: Set(None),
        last_success_at: Set(None),
        updated_at: Set(now.as_millis()),
    }
}

impl ThrottleStore for SqlStore {
    async fn counters(&self, scopes: &[&Scope]) -> Result<HashMap<String, Counter>> {
        let rows = auth_throttle::Entity::find()
            .filter(auth_throttle::Column::ScopeKey.is_in(scopes.iter().map(|s| s.key.as_str())))
            .all(&self.db)
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|row| (row.scope_key.clone(), counter(row)))
            .collect())
    }

    /// One transaction that makes sure the row exists, locks it with a
    /// write, reads it and writes the next state: concurrent failures in
    /// one scope queue on the lock, so none is lost.
    #[tracing::instrument(skip_all, err(Display))]
    async fn record_failure(
        &self,
        scope: &Scope,
        rule: FailureRule,
        now: Timestamp,
    ) -> Result<Counter> {
        let txn = self.db.begin().await.map_err(db_error)?;
        auth_throttle::Entity::insert(empty_row(&scope.key, now))
            .on_conflict(
                OnConflict::column(auth_throttle::Column::ScopeKey)
                    .do_nothing_on([auth_throttle::Column::ScopeKey])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(db_error)?;
        let by_key = auth_throttle::Column::ScopeKey.eq(scope.key.as_str());
        auth_throttle::Entity::update_many()
            .col_expr(
                auth_throttle::Column::UpdatedAt,
                Expr::value(now.as_millis()),
            )
            .filter(by_key.clone())
            .exec(&txn)
            .await
            .map_err(db_error)?;
        let row = auth_throttle::Entity::find()
            .filter(by_key.clone())
            .one(&txn)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::internal("locked throttle row disappeared"))?;
        let next = rule.after_failure(counter(&row), now);
        auth_throttle::Entity::update_many()
            .col_expr(
                auth_throttle::Column::Failures,
                Expr::value(i64::from(next.failures)),
            )
            .col_expr(
                auth_throttle::Column::LastFailureAt,
                Expr::value(next.last_failure_at.map(Timestamp::as_millis)),
            )
            .col_expr(
                auth_throttle::Column::BlockedUntil,
                Expr::value(next.blocked_until.map(Timestamp::as_millis)),
            )
            .filter(by_key)
            .exec(&txn)
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        Ok(next)
    }

    #[tracing::instrument(skip_all, err(Display))]
    async fn record_success(&self, scope: &Scope, now: Timestamp) -> Result<()> {
        let mut row = empty_row(&scope.key, now);
        row.last_success_at = Set(Some(now.as_millis()));
        auth_throttle::Entity::insert(row)
            .on_conflict(
                OnConflict::column(auth_throttle::Column::ScopeKey)
                    .update_columns([
                        auth_throttle::Column::Failures,
                        auth_throttle::Column::LastFailureAt,
                        auth_throttle::Column::BlockedUntil,
                        auth_throttle::Column::LastSuccessAt,
                        auth_throttle::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, err(Display))]
    async fn prune_counters(
        &self,
        idle_before: Timestamp,
        success_before: Timestamp,
        now: Timestamp,
    ) -> Result<u64> {
        let deleted = auth_throttle::Entity::delete_many()
            .filter(auth_throttle::Column::UpdatedAt.lt(idle_before.as_millis()))
            .filter(
                Condition::any()
                    .add(auth_throttle::Column::BlockedUntil.is_null())
                    .add(auth_throttle::Column::BlockedUntil.lt(now.as_millis())),
            )
            .filter(
                Condition::any()
                    .add(auth_throttle::Column::LastSuccessAt.is_null())
                    .add(auth_throttle::Column::LastSuccessAt.lt(success_before.as_millis())),
            )
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(deleted.rows_affected)
    }
}
