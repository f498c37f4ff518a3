//! Failed-login counters, shared by every replica through the database.

use std::collections::HashMap;

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::audit::insert_event;
use super::entities::auth_throttle;
use super::{db_error, SqlStore};
use crate::domain::audit::AuditEvent;
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

/// Locks the rows of `scopes` (which must exist, sorted by key) in key
/// order, reads their latest committed state and writes the next one: two
/// statements, whatever the number of scopes. `FOR UPDATE` makes the read
/// current: under MySQL's REPEATABLE READ a plain read would see the
/// transaction's first snapshot and lose increments made since.
async fn count_failures(
    txn: &DatabaseTransaction,
    scopes: Vec<(Scope, FailureRule)>,
    now: Timestamp,
) -> Result<Vec<(Scope, Counter)>> {
    let keys = scopes.iter().map(|(scope, _)| scope.key.as_str());
    let rows: HashMap<String, auth_throttle::Model> = auth_throttle::Entity::find()
        .filter(auth_throttle::Column::ScopeKey.is_in(keys))
        .order_by_asc(auth_throttle::Column::ScopeKey)
        .lock_exclusive()
        .all(txn)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|row| (row.scope_key.clone(), row))
        .collect();
    let mut counters = Vec::with_capacity(scopes.len());
    let mut next_rows = Vec::with_capacity(scopes.len());
    for (scope, rule) in scopes {
        let row = rows
            .get(&scope.key)
            .ok_or_else(|| Error::internal("throttle row missing after insert"))?;
        let next = rule.after_failure(counter(row), now);
        next_rows.push(auth_throttle::ActiveModel {
            scope_key: Set(scope.key.clone()),
            failures: Set(i64::from(next.failures)),
            last_failure_at: Set(next.last_failure_at.map(Timestamp::as_millis)),
            blocked_until: Set(next.blocked_until.map(Timestamp::as_millis)),
            last_success_at: Set(row.last_success_at),
            updated_at: Set(now.as_millis()),
        });
        counters.push((scope, next));
    }
    // Every row exists and is locked: this upsert only ever updates.
    auth_throttle::Entity::insert_many(next_rows)
        .on_conflict(overwrite([
            auth_throttle::Column::Failures,
            auth_throttle::Column::LastFailureAt,
            auth_throttle::Column::BlockedUntil,
            auth_throttle::Column::UpdatedAt,
        ]))
        .exec_without_returning(txn)
        .await
        .map_err(db_error)?;
    Ok(counters)
}

/// An upsert's conflict clause: on a row with the same key, overwrite
/// `columns` with the inserted values.
fn overwrite(columns: impl IntoIterator<Item = auth_throttle::Column>) -> OnConflict {
    OnConflict::column(auth_throttle::Column::ScopeKey)
        .update_columns(columns)
        .to_owned()
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
    /// The rows are made to exist first, by an idempotent insert; then the
    /// transaction takes them in key order, so concurrent ones lock in the
    /// same order and cannot deadlock, and counts: concurrent failures in
    /// one scope queue on its lock, so none is lost. The audit event commits
    /// with them.
    ///
    /// On SQLite and PostgreSQL the insert is the transaction's first
    /// statement: on SQLite that takes the database's write lock before
    /// anything is read, and the failure costs one commit. On MySQL it runs
    /// before the transaction, on its own: inside, it would take gap locks
    /// that deadlock concurrent first failures.
    #[tracing::instrument(skip_all)]
    async fn record_failures(
        &self,
        mut scopes: Vec<(Scope, FailureRule)>,
        now: Timestamp,
        event: AuditEvent,
    ) -> Result<Vec<(Scope, Counter)>> {
        scopes.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        let rows_exist = || {
            auth_throttle::Entity::insert_many(
                scopes.iter().map(|(scope, _)| empty_row(&scope.key, now)),
            )
            .on_conflict(
                OnConflict::column(auth_throttle::Column::ScopeKey)
                    .do_nothing_on([auth_throttle::Column::ScopeKey])
                    .to_owned(),
            )
        };
        let inside = self.db.get_database_backend() != DbBackend::MySql;
        if !inside {
            rows_exist()
                .exec_without_returning(&self.db)
                .await
                .map_err(db_error)?;
        }
        let txn = self.db.begin().await.map_err(db_error)?;
        if inside {
            rows_exist()
                .exec_without_returning(&txn)
                .await
                .map_err(db_error)?;
        }
        let counters = count_failures(&txn, scopes, now).await?;
        insert_event(&txn, event).await?;
        txn.commit().await.map_err(db_error)?;
        Ok(counters)
    }

    #[tracing::instrument(skip_all)]
    async fn record_success(&self, scope: &Scope, now: Timestamp) -> Result<()> {
        let mut row = empty_row(&scope.key, now);
        row.last_success_at = Set(Some(now.as_millis()));
        auth_throttle::Entity::insert(row)
            .on_conflict(overwrite([
                auth_throttle::Column::Failures,
                auth_throttle::Column::LastFailureAt,
                auth_throttle::Column::BlockedUntil,
                auth_throttle::Column::LastSuccessAt,
                auth_throttle::Column::UpdatedAt,
            ]))
            .exec_without_returning(&self.db)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
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
