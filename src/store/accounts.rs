//! Queries on accounts.

use std::collections::HashMap;

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::app_passwords::{account_id_of, active_at};
use super::audit::insert_event;
use super::entities::{account, app_password};
use super::{convert, SqlStore};
use crate::domain::accounts::model::Account;
use crate::domain::accounts::store::AccountStore;
use crate::domain::audit::event::AuditEvent;
use crate::domain::shared::error::Result;
use crate::domain::shared::page::Page;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

impl AccountStore for SqlStore {
    #[tracing::instrument(skip_all, fields(username = %username))]
    async fn get_account(&self, username: &Username, now: Timestamp) -> Result<Option<Account>> {
        account_on(&self.db, username, now).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_accounts(
        &self,
        after: Option<&Username>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Page<Account>> {
        let mut query = account::Entity::find();
        if let Some(after) = after {
            query = query.filter(account::Column::Username.gt(after.as_str()));
        }
        let rows = query
            .order_by_asc(account::Column::Username)
            .limit(u64::from(limit) + 1)
            .all(&self.db)
            .await?;
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        let counts = active_counts(&self.db, &ids, now).await?;
        let items = rows
            .into_iter()
            .map(|row| {
                let active = counts.get(&row.id).copied().unwrap_or(0);
                convert::account(row, active)
            })
            .collect();
        Ok(Page::from_overfetch(items, limit))
    }

    /// The state change and its event commit together; a repeated call
    /// changes nothing and records nothing.
    #[tracing::instrument(skip_all, fields(username = %username))]
    async fn set_account_disabled(
        &self,
        username: &Username,
        disable: Option<&str>,
        event: AuditEvent,
    ) -> Result<Option<Account>> {
        let by_username = account::Column::Username.eq(username.as_str());
        let update = match disable {
            Some(reason) => account::Entity::update_many()
                .col_expr(
                    account::Column::DisabledAt,
                    Expr::value(event.at.as_millis()),
                )
                .col_expr(account::Column::DisableReason, Expr::value(reason))
                .filter(by_username)
                .filter(account::Column::DisabledAt.is_null()),
            None => account::Entity::update_many()
                .col_expr(
                    account::Column::DisabledAt,
                    Expr::value(Option::<i64>::None),
                )
                .col_expr(
                    account::Column::DisableReason,
                    Expr::value(Option::<String>::None),
                )
                .filter(by_username)
                .filter(account::Column::DisabledAt.is_not_null()),
        };
        let now = event.at;
        let txn = self.db.begin().await?;
        let changed = update.exec(&txn).await?;
        if changed.rows_affected > 0 {
            insert_event(&txn, event).await?;
        }
        let now_is = account_on(&txn, username, now).await?;
        txn.commit().await?;
        Ok(now_is)
    }

    /// Deletes the passwords, then the account, then records it, in one
    /// transaction whose first statement writes (so SQLite takes its write
    /// lock up front). The account's audit events stay: they are the record
    /// of what happened to it.
    #[tracing::instrument(skip_all, fields(username = %username))]
    async fn delete_account(&self, username: &Username, event: AuditEvent) -> Result<bool> {
        let txn = self.db.begin().await?;
        app_password::Entity::delete_many()
            .filter(app_password::Column::AccountId.in_subquery(account_id_of(username)))
            .exec(&txn)
            .await?;
        let deleted = account::Entity::delete_many()
            .filter(account::Column::Username.eq(username.as_str()))
            .exec(&txn)
            .await?;
        if deleted.rows_affected > 0 {
            insert_event(&txn, event).await?;
        }
        txn.commit().await?;
        Ok(deleted.rows_affected > 0)
    }
}

/// One account with its active password count, read on `connection` (the
/// pool, or a transaction that is about to commit).
async fn account_on(
    connection: &impl ConnectionTrait,
    username: &Username,
    now: Timestamp,
) -> Result<Option<Account>> {
    let Some(row) = account::Entity::find()
        .filter(account::Column::Username.eq(username.as_str()))
        .one(connection)
        .await?
    else {
        return Ok(None);
    };
    let mut counts = active_counts(connection, &[row.id], now).await?;
    let active = counts.remove(&row.id).unwrap_or(0);
    Ok(Some(convert::account(row, active)))
}

/// Active app passwords per account, in one grouped query.
async fn active_counts(
    connection: &impl ConnectionTrait,
    account_ids: &[i64],
    now: Timestamp,
) -> Result<HashMap<i64, u64>> {
    if account_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, i64)> = app_password::Entity::find()
        .select_only()
        .column(app_password::Column::AccountId)
        .column_as(app_password::Column::Id.count(), "active")
        .filter(app_password::Column::AccountId.is_in(account_ids.iter().copied()))
        .filter(active_at(now))
        .group_by(app_password::Column::AccountId)
        .into_tuple()
        .all(connection)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, count)| (id, u64::try_from(count).unwrap_or(0)))
        .collect())
}
