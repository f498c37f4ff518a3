//! Failed-login counters, shared by every replica through the database.

use std::collections::HashMap;

use super::db::{Db, Tx};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::audit::insert_events;
use super::batch::BatchFuture;
use super::entities::auth_throttle;
use super::SqlStore;
use crate::domain::audit::event::AuditEvent;
use crate::domain::login::store::ThrottleStore;
use crate::domain::login::throttle::{account_block_event, Counter, FailureRule, Scope};
use crate::domain::shared::error::{Error, Result};
use crate::domain::shared::time::Timestamp;

fn counter(row: &auth_throttle::Model) -> Counter {
    Counter {
        failures: u32::try_from(row.failures).unwrap_or(u32::MAX),
        last_failure_at: row.last_failure_at.map(Timestamp::from_millis),
        blocked_until: row.blocked_until.map(Timestamp::from_millis),
        last_success_at: row.last_success_at.map(Timestamp::from_millis),
    }
}

/// One failed login to write: its scopes with their rules, when, and its
/// audit event.
#[derive(Debug, Clone)]
pub(super) struct FailureWrite {
    scopes: Vec<(Scope, FailureRule)>,
    now: Timestamp,
    event: AuditEvent,
}

/// The most failed logins one transaction writes.
pub(super) const MAX_FAILURE_BATCH: usize = 16;

/// Writes failed logins in one transaction, for the batcher: each gets its
/// scopes' counters as they stand after it, in the order they came.
pub(super) fn write_failures(
    db: Db,
    failures: Vec<FailureWrite>,
) -> BatchFuture<Vec<(Scope, Counter)>> {
    Box::pin(async move {
        // A deadlock victim was rolled back whole (on MariaDB, a batch's
        // row locks can meet housekeeping's prune of the same table): run
        // it again, a few times, rather than fail logins that counted
        // nothing.
        let mut attempts = 0;
        loop {
            match record_failure_batch(&db, failures.clone()).await {
                Err(error) if attempts < DEADLOCK_RETRIES && super::errors::rolled_back(&error) => {
                    attempts += 1;
                    tracing::debug!(%error, attempts, "failed-login batch chosen as a deadlock victim; run again");
                }
                answer => return answer,
            }
        }
    })
}

/// How many times a failed-login batch rolled back as a deadlock victim
/// runs again before its logins are answered UNAVAILABLE.
const DEADLOCK_RETRIES: u32 = 3;

/// The rows are made to exist first, by an idempotent insert; then the
/// transaction takes them in key order, so concurrent ones lock in the
/// same order and cannot deadlock, and counts: concurrent failures in one
/// scope queue on its lock, so none is lost. The audit events commit with
/// them: each failure's, and after it the account's block it started, if it
/// started one (`account_block_event`), all written by one call, so the
/// batch takes its feed sequence numbers once.
///
/// On SQLite and PostgreSQL the insert is the transaction's first
/// statement: on SQLite that takes the database's write lock before
/// anything is read, and the batch costs one commit. On MySQL it runs
/// before the transaction, on its own: inside, it would take gap locks
/// that deadlock concurrent first failures.
async fn record_failure_batch(
    db: &Db,
    failures: Vec<FailureWrite>,
) -> Result<Vec<Vec<(Scope, Counter)>>> {
    let mut keys: Vec<&str> = failures
        .iter()
        .flat_map(|failure| failure.scopes.iter().map(|(scope, _)| scope.key.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let Some(latest) = failures.iter().map(|failure| failure.now).max() else {
        return Ok(Vec::new());
    };
    let rows_exist = || {
        auth_throttle::Entity::insert_many(keys.iter().map(|key| empty_row(key, latest)))
            .on_conflict(
                OnConflict::column(auth_throttle::Column::ScopeKey)
                    .do_nothing_on([auth_throttle::Column::ScopeKey])
                    .to_owned(),
            )
    };
    let inside = db.get_database_backend() != DbBackend::MySql;
    if !inside {
        rows_exist().exec_without_returning(db).await?;
    }
    let txn = db.begin().await?;
    if inside {
        rows_exist().exec_without_returning(&txn).await?;
    }
    let mut rows = lock_rows(&txn, &keys).await?;
    let mut answers = Vec::with_capacity(failures.len());
    let mut events = Vec::with_capacity(failures.len());
    for failure in failures {
        let mut counters = Vec::with_capacity(failure.scopes.len());
        let mut blocked = None;
        for (scope, rule) in failure.scopes {
            let row = rows
                .get_mut(scope.key.as_str())
                .ok_or_else(|| Error::internal("throttle row missing after insert"))?;
            let before = counter(row);
            let next = rule.after_failure(before, failure.now);
            blocked = blocked.or(account_block_event(
                scope.kind,
                &before,
                &next,
                failure.now,
                &failure.event,
            ));
            row.failures = i64::from(next.failures);
            row.last_failure_at = next.last_failure_at.map(Timestamp::as_millis);
            row.blocked_until = next.blocked_until.map(Timestamp::as_millis);
            row.updated_at = failure.now.as_millis();
            counters.push((scope, next));
        }
        answers.push(counters);
        events.push(failure.event);
        events.extend(blocked);
    }
    // Every row exists and is locked: this upsert only ever updates.
    auth_throttle::Entity::insert_many(rows.into_values().map(auth_throttle::ActiveModel::from))
        .on_conflict(overwrite([
            auth_throttle::Column::Failures,
            auth_throttle::Column::LastFailureAt,
            auth_throttle::Column::BlockedUntil,
            auth_throttle::Column::UpdatedAt,
        ]))
        .exec_without_returning(&txn)
        .await?;
    insert_events(&txn, events).await?;
    txn.commit().await?;
    Ok(answers)
}

/// Locks the rows of `keys` (sorted) in key order and reads their latest
/// committed state. `FOR UPDATE` makes the read current: under MySQL's
/// REPEATABLE READ a plain read would see the transaction's first snapshot
/// and lose increments made since.
async fn lock_rows(txn: &Tx, keys: &[&str]) -> Result<HashMap<String, auth_throttle::Model>> {
    Ok(auth_throttle::Entity::find()
        .filter(auth_throttle::Column::ScopeKey.is_in(keys.iter().copied()))
        .order_by_asc(auth_throttle::Column::ScopeKey)
        .lock_exclusive()
        .all(txn)
        .await?
        .into_iter()
        .map(|row| (row.scope_key.clone(), row))
        .collect())
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
    /// Written by the failure batcher: with every other failure waiting
    /// when it is taken, in one transaction (`record_failure_batch`).
    #[tracing::instrument(skip_all)]
    async fn record_failures(
        &self,
        scopes: Vec<(Scope, FailureRule)>,
        now: Timestamp,
        event: AuditEvent,
    ) -> Result<Vec<(Scope, Counter)>> {
        self.failures
            .submit(FailureWrite { scopes, now, event })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn record_success(&self, scope: &Scope, now: Timestamp) -> Result<()> {
        let mut row = empty_row(scope.key.as_str(), now);
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
            .await?;
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
            .await?;
        Ok(deleted.rows_affected)
    }
}
