//! Queries on app passwords.

use sea_orm::sea_query::{Expr, OnConflict, Query, SelectStatement};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use super::audit::insert_event;
use super::entities::app_password::SecretHash;
use super::entities::{account, app_password};
use super::{before_cursor, convert, db_error, SqlStore};
use crate::domain::app_passwords::model::{
    AppPassword, AppPasswordCursor, IssueOutcome, NewAppPassword,
};
use crate::domain::app_passwords::store::AppPasswordStore;
use crate::domain::audit::event::AuditEvent;
use crate::domain::shared::error::{Error, Reason, Result};
use crate::domain::shared::page::Page;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

/// Rows that count against the cap: neither revoked nor expired at `now`.
pub(super) fn active_at(now: Timestamp) -> Condition {
    Condition::all()
        .add(app_password::Column::RevokedAt.is_null())
        .add(
            Condition::any()
                .add(app_password::Column::ExpiresAt.is_null())
                .add(app_password::Column::ExpiresAt.gt(now.as_millis())),
        )
}

/// `SELECT id FROM account WHERE username = ?`, for statements that must
/// find and change rows in one go.
pub(super) fn account_id_of(username: &Username) -> SelectStatement {
    Query::select()
        .column(account::Column::Id)
        .from(account::Entity)
        .and_where(account::Column::Username.eq(username.as_str()))
        .to_owned()
}

/// One app password of one account, read on `connection` (the pool, or a
/// transaction that is about to commit).
async fn app_password_on(
    connection: &impl ConnectionTrait,
    username: &Username,
    id: Uuid,
) -> Result<Option<AppPassword>> {
    let found = app_password::Entity::find_by_id(id)
        .find_also_related(account::Entity)
        .filter(account::Column::Username.eq(username.as_str()))
        .one(connection)
        .await
        .map_err(db_error)?;
    Ok(found.and_then(|(row, account)| {
        account.map(|account| convert::app_password(row, Username::from_stored(account.username)))
    }))
}

impl AppPasswordStore for SqlStore {
    #[tracing::instrument(skip_all, fields(username = %new.username))]
    async fn issue(
        &self,
        new: NewAppPassword,
        cap: u32,
        event: AuditEvent,
    ) -> Result<IssueOutcome> {
        let created = account::ActiveModel {
            username: Set(new.username.as_str().to_owned()),
            created_at: Set(new.created_at.as_millis()),
            issue_count: Set(0),
            ..Default::default()
        };
        account::Entity::insert(created)
            .on_conflict(
                OnConflict::column(account::Column::Username)
                    .do_nothing_on([account::Column::Username])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(db_error)?;

        let txn = self.db.begin().await.map_err(db_error)?;
        // The first statement writes the account row: on PostgreSQL and MySQL
        // that locks the row, on SQLite it takes the database write lock. Every
        // other issue for this account now waits until we commit, so the
        // count below cannot go stale before our insert.
        let locked = account::Entity::update_many()
            .col_expr(
                account::Column::IssueCount,
                Expr::col(account::Column::IssueCount).add(1),
            )
            .filter(account::Column::Username.eq(new.username.as_str()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if locked.rows_affected == 0 {
            return Err(Error::FailedPrecondition(
                Reason::AccountDeleted,
                "the account was deleted while the password was being issued".to_owned(),
            ));
        }
        let account = account::Entity::find()
            .filter(account::Column::Username.eq(new.username.as_str()))
            .one(&txn)
            .await
            .map_err(db_error)?
            .ok_or_else(|| Error::internal("locked account row disappeared"))?;
        if account.disabled_at.is_some() {
            return Ok(IssueOutcome::AccountDisabled);
        }
        let active = app_password::Entity::find()
            .filter(app_password::Column::AccountId.eq(account.id))
            .filter(active_at(new.created_at))
            .count(&txn)
            .await
            .map_err(db_error)?;
        if active >= u64::from(cap) {
            return Ok(IssueOutcome::CapReached);
        }
        let selector_taken = app_password::Entity::find()
            .filter(app_password::Column::AccountId.eq(account.id))
            .filter(app_password::Column::Selector.eq(new.selector.as_str()))
            .count(&txn)
            .await
            .map_err(db_error)?
            > 0;
        if selector_taken {
            return Ok(IssueOutcome::SelectorTaken);
        }

        let row = app_password::ActiveModel {
            id: Set(new.id),
            account_id: Set(account.id),
            selector: Set(new.selector),
            secret_hash: Set(SecretHash(new.secret_hash)),
            display_name: Set(new.display_name),
            protocols: Set(new.protocols.bits()),
            allowed_networks: Set(new.allowed_networks.to_stored()),
            issued_by: Set(new.issued_by),
            created_at: Set(new.created_at.as_millis()),
            expires_at: Set(new.expires_at.map(Timestamp::as_millis)),
            revoked_at: Set(None),
            revoke_reason: Set(None),
            last_used_at: Set(None),
            last_used_ip: Set(None),
            last_used_protocol: Set(None),
            last_used_client: Set(None),
            use_count: Set(0),
            seen_networks: Set(String::new()),
        };
        app_password::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
            .map_err(db_error)?;
        insert_event(&txn, event).await?;
        // Read back before committing: once the commit returns, nothing
        // else can fail and turn an issued password into an error.
        let issued = app_password_on(&txn, &new.username, new.id)
            .await?
            .ok_or_else(|| Error::internal("issued app password not found before commit"))?;
        txn.commit().await.map_err(db_error)?;
        Ok(IssueOutcome::Issued(Box::new(issued)))
    }

    #[tracing::instrument(skip_all, fields(app_password = %id))]
    async fn get_app_password(&self, username: &Username, id: Uuid) -> Result<Option<AppPassword>> {
        app_password_on(&self.db, username, id).await
    }

    #[tracing::instrument(skip_all)]
    async fn list_app_passwords(
        &self,
        username: &Username,
        show_revoked: bool,
        after: Option<AppPasswordCursor>,
        limit: u32,
    ) -> Result<Option<Page<AppPassword>>> {
        let Some(account) = account::Entity::find()
            .filter(account::Column::Username.eq(username.as_str()))
            .one(&self.db)
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let mut query =
            app_password::Entity::find().filter(app_password::Column::AccountId.eq(account.id));
        if !show_revoked {
            query = query.filter(app_password::Column::RevokedAt.is_null());
        }
        if let Some(cursor) = after {
            query = query.filter(before_cursor(
                app_password::Column::CreatedAt,
                app_password::Column::Id,
                cursor.created_at.as_millis(),
                cursor.id,
            ));
        }
        let rows = query
            .order_by_desc(app_password::Column::CreatedAt)
            .order_by_desc(app_password::Column::Id)
            .limit(u64::from(limit) + 1)
            .all(&self.db)
            .await
            .map_err(db_error)?;
        let items = rows
            .into_iter()
            .map(|row| convert::app_password(row, username.clone()))
            .collect();
        Ok(Some(Page::from_overfetch(items, limit)))
    }

    /// The revocation is one statement, durable when it returns;
    /// `revoked_at IS NULL` keeps the first revocation's record, and the
    /// event is written only when this call revoked.
    #[tracing::instrument(skip_all, fields(app_password = %id))]
    async fn revoke_app_password(
        &self,
        username: &Username,
        id: Uuid,
        reason: &str,
        event: AuditEvent,
    ) -> Result<Option<AppPassword>> {
        let txn = self.db.begin().await.map_err(db_error)?;
        let revoked = app_password::Entity::update_many()
            .col_expr(
                app_password::Column::RevokedAt,
                Expr::value(event.at.as_millis()),
            )
            .col_expr(app_password::Column::RevokeReason, Expr::value(reason))
            .filter(app_password::Column::Id.eq(id))
            .filter(app_password::Column::RevokedAt.is_null())
            .filter(app_password::Column::AccountId.in_subquery(account_id_of(username)))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if revoked.rows_affected > 0 {
            insert_event(&txn, event).await?;
        }
        let now_is = app_password_on(&txn, username, id).await?;
        txn.commit().await.map_err(db_error)?;
        Ok(now_is)
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_account_app_passwords(
        &self,
        username: &Username,
        reason: &str,
        mut event: AuditEvent,
    ) -> Result<u64> {
        let txn = self.db.begin().await.map_err(db_error)?;
        let revoked = app_password::Entity::update_many()
            .col_expr(
                app_password::Column::RevokedAt,
                Expr::value(event.at.as_millis()),
            )
            .col_expr(app_password::Column::RevokeReason, Expr::value(reason))
            .filter(app_password::Column::AccountId.in_subquery(account_id_of(username)))
            .filter(active_at(event.at))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if revoked.rows_affected > 0 {
            event.item_count = Some(i64::try_from(revoked.rows_affected).unwrap_or(i64::MAX));
            insert_event(&txn, event).await?;
        }
        txn.commit().await.map_err(db_error)?;
        Ok(revoked.rows_affected)
    }
}
