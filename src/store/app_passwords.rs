//! Queries on app passwords.

use sea_orm::sea_query::{Expr, Func, OnConflict, Query, SelectStatement, SimpleExpr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr, UpdateMany,
};
use uuid::Uuid;

use super::audit::insert_event;
use super::audit::insert_events;
use super::entities::app_password::SecretHash;
use super::entities::{account, app_password};
use super::{before_cursor, convert, fixed_shape, millis_of_duration, SqlStore};
use crate::domain::app_passwords::issue_bounds::{account_counted_after, account_wait};
use crate::domain::app_passwords::model::{
    AppPassword, AppPasswordCursor, BulkFilter, Change, Holding, IssueLimits, IssueOutcome,
    NewAppPassword, Notice, NoticeKind, NoticeWindow,
};
use crate::domain::app_passwords::store::{AppPasswordStore, BulkBatch};
use crate::domain::audit::event::AuditEvent;
use crate::domain::shared::error::{Error, Reason, Result};
use crate::domain::shared::page::Page;
use crate::domain::shared::protocol::ProtocolSet;
use crate::domain::shared::time::Timestamp;
use crate::domain::shared::username::Username;

/// A column of `app_password`, named with its table (statements that
/// join `account` would find some names ambiguous).
fn column(column: app_password::Column) -> Expr {
    Expr::col((app_password::Entity, column))
}

/// `COALESCE(last_used_at, created_at)`: its stored last use, or its issue
/// (`Rules::last_active_at`).
fn last_active() -> SimpleExpr {
    use app_password::Column as C;
    Func::coalesce([column(C::LastUsedAt).into(), column(C::CreatedAt).into()]).into()
}

/// `COALESCE(last_used_at, created_at) + idle_timeout_ms`: when an app
/// password goes idle by its stored last use (`Rules::idle_deadline`).
fn idle_deadline() -> SimpleExpr {
    Expr::expr(last_active()).add(column(app_password::Column::IdleTimeoutMs))
}

/// Rows that count against the cap: neither revoked nor expired nor idle
/// at `now` (`Rules::lifecycle_refusal`, suspension aside: suspended ones
/// count, since they can be resumed at any time).
pub(super) fn active_at(now: Timestamp) -> Condition {
    Condition::all()
        .add(app_password::Column::RevokedAt.is_null())
        .add(app_password::Column::IdleExpiredAt.is_null())
        .add(
            Condition::any()
                .add(app_password::Column::IdleTimeoutMs.is_null())
                .add(Expr::expr(idle_deadline()).gt(now.as_millis())),
        )
        .add(unexpired_at(now))
}

/// Rows whose `expire_time` has not passed at `now`.
fn unexpired_at(now: Timestamp) -> Condition {
    Condition::any()
        .add(app_password::Column::ExpiresAt.is_null())
        .add(app_password::Column::ExpiresAt.gt(now.as_millis()))
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
        .await?;
    Ok(found.and_then(|(row, account)| {
        account.map(|account| convert::app_password(row, Username::from_stored(account.username)))
    }))
}

/// Creates the account's row if it has none yet (an account exists from
/// its first app password on).
async fn ensure_account(
    db: &impl ConnectionTrait,
    username: &Username,
    created_at: Timestamp,
) -> Result<()> {
    let created = account::ActiveModel {
        username: Set(username.as_str().to_owned()),
        created_at: Set(created_at.as_millis()),
        issue_count: Set(0),
        ..Default::default()
    };
    account::Entity::insert(created)
        .on_conflict(
            OnConflict::column(account::Column::Username)
                .do_nothing_on([account::Column::Username])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Locks the account for an issue and reads it. The first statement writes
/// the account row: on PostgreSQL and MySQL that locks the row, on SQLite
/// it takes the database write lock. Every other issue for this account
/// then waits until this transaction commits, so the counts that follow
/// cannot go stale before its insert.
async fn lock_account(txn: &impl ConnectionTrait, username: &Username) -> Result<account::Model> {
    let locked = account::Entity::update_many()
        .col_expr(
            account::Column::IssueCount,
            Expr::col(account::Column::IssueCount).add(1),
        )
        .filter(account::Column::Username.eq(username.as_str()))
        .exec(txn)
        .await?;
    if locked.rows_affected == 0 {
        return Err(Error::FailedPrecondition(
            Reason::AccountDeleted,
            "the account was deleted while the password was being issued".to_owned(),
        ));
    }
    account::Entity::find()
        .filter(account::Column::Username.eq(username.as_str()))
        .one(txn)
        .await?
        .ok_or_else(|| Error::internal("locked account row disappeared"))
}

/// Why an issue is refused, if it is, under the account's lock (so
/// concurrent issues cannot pass a bound together): a disabled account,
/// the cap of active passwords, the hourly bound, a selector in use.
async fn issue_refusal(
    txn: &impl ConnectionTrait,
    account: &account::Model,
    new: &NewAppPassword,
    limits: IssueLimits,
) -> Result<Option<IssueOutcome>> {
    if account.disabled_at.is_some() {
        return Ok(Some(IssueOutcome::AccountDisabled));
    }
    let of_account = app_password::Column::AccountId.eq(account.id);
    let active = app_password::Entity::find()
        .filter(of_account.clone())
        .filter(active_at(new.created_at))
        .count(txn)
        .await?;
    if active >= u64::from(limits.cap) {
        return Ok(Some(IssueOutcome::CapReached));
    }
    let newest = newest_issues_on(
        txn,
        of_account.clone(),
        account_counted_after(new.created_at),
        limits.per_hour,
    )
    .await?;
    if let Some(wait) = account_wait(limits.per_hour, &newest, new.created_at) {
        return Ok(Some(IssueOutcome::AccountIssueLimit(wait)));
    }
    // A version 2 selector must be free across the deployment (it is the
    // password's public id), a version 1 one within the account.
    let mut holders = Condition::any().add(of_account);
    if let Some(public_id) = &new.public_id {
        holders = holders.add(app_password::Column::PublicId.eq(public_id.as_str()));
    }
    let selector_taken = app_password::Entity::find()
        .filter(holders)
        .filter(app_password::Column::Selector.eq(new.selector.as_str()))
        .count(txn)
        .await?
        > 0;
    Ok(selector_taken.then_some(IssueOutcome::SelectorTaken))
}

/// The row of a new app password: nothing used, noticed or warm yet.
fn new_row(new: NewAppPassword, account_id: i64) -> app_password::ActiveModel {
    app_password::ActiveModel {
        id: Set(new.id),
        account_id: Set(account_id),
        selector: Set(new.selector),
        public_id: Set(new.public_id),
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
        suspended_at: Set(None),
        suspend_reason: Set(None),
        idle_timeout_ms: Set(new.idle_timeout.map(millis_of_duration)),
        idle_expired_at: Set(None),
        updated_at: Set(None),
        expiry_noticed_for: Set(None),
        expired_noticed_at: Set(None),
        idle_noticed_deadline: Set(None),
        warm_verifier: Set(None),
        warm_until: Set(None),
    }
}

/// The update that applies `change`, made at `at`: only the columns it
/// sets.
fn change_update(change: Change, at: Timestamp) -> UpdateMany<app_password::Entity> {
    let mut update = app_password::Entity::update_many()
        .col_expr(app_password::Column::UpdatedAt, Expr::value(at.as_millis()));
    let settings = change.settings;
    if let Some(display_name) = settings.display_name {
        update = update.col_expr(app_password::Column::DisplayName, Expr::value(display_name));
    }
    if let Some(protocols) = settings.protocols {
        update = update.col_expr(
            app_password::Column::Protocols,
            Expr::value(protocols.bits()),
        );
    }
    if let Some(networks) = settings.allowed_networks {
        update = update.col_expr(
            app_password::Column::AllowedNetworks,
            Expr::value(networks.to_stored()),
        );
    }
    if let Some(expires_at) = settings.expires_at.change() {
        update = update.col_expr(
            app_password::Column::ExpiresAt,
            Expr::value(expires_at.map(Timestamp::as_millis)),
        );
    }
    if let Some(idle_timeout) = settings.idle_timeout.change() {
        update = update.col_expr(
            app_password::Column::IdleTimeoutMs,
            Expr::value(idle_timeout.map(millis_of_duration)),
        );
    }
    if let Some(suspension) = change.suspension.change() {
        update = update
            .col_expr(
                app_password::Column::SuspendedAt,
                Expr::value(suspension.as_ref().map(|s| s.at.as_millis())),
            )
            .col_expr(
                app_password::Column::SuspendReason,
                Expr::value(suspension.map(|s| s.reason)),
            );
    }
    if let Some(at) = change.idle_expired_at {
        update = update.col_expr(
            app_password::Column::IdleExpiredAt,
            Expr::value(at.as_millis()),
        );
    }
    update
}

impl AppPasswordStore for SqlStore {
    #[tracing::instrument(skip_all, fields(username = %new.username))]
    async fn issue(
        &self,
        new: NewAppPassword,
        limits: IssueLimits,
        event: AuditEvent,
    ) -> Result<IssueOutcome> {
        ensure_account(&self.db, &new.username, new.created_at).await?;
        let txn = self.db.begin().await?;
        let account = lock_account(&txn, &new.username).await?;
        if let Some(refused) = issue_refusal(&txn, &account, &new, limits).await? {
            return Ok(refused);
        }
        let (username, id) = (new.username.clone(), new.id);
        let inserted = app_password::Entity::insert(new_row(new, account.id))
            .exec_without_returning(&txn)
            .await;
        // Another account's issue took the same public id between the
        // check above and this insert (the account lock does not cover
        // other accounts): the unique index refuses it, and a new secret
        // is drawn. The transaction is dropped, so rolled back.
        if let Err(error) = inserted {
            return match error.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => Ok(IssueOutcome::SelectorTaken),
                _ => Err(error.into()),
            };
        }
        insert_event(&txn, event).await?;
        // Read back before committing: once the commit returns, nothing
        // else can fail and turn an issued password into an error.
        let issued = app_password_on(&txn, &username, id)
            .await?
            .ok_or_else(|| Error::internal("issued app password not found before commit"))?;
        txn.commit().await?;
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
        issued_by: Option<&str>,
        after: Option<AppPasswordCursor>,
        limit: u32,
    ) -> Result<Option<Page<AppPassword>>> {
        let Some(account) = account::Entity::find()
            .filter(account::Column::Username.eq(username.as_str()))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let mut query =
            app_password::Entity::find().filter(app_password::Column::AccountId.eq(account.id));
        if !show_revoked {
            query = query.filter(app_password::Column::RevokedAt.is_null());
        }
        if let Some(issuer) = issued_by {
            query = query.filter(app_password::Column::IssuedBy.eq(issuer));
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
            .await?;
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
        let txn = self.db.begin().await?;
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
            .await?;
        if revoked.rows_affected > 0 {
            insert_event(&txn, event).await?;
        }
        let now_is = app_password_on(&txn, username, id).await?;
        txn.commit().await?;
        Ok(now_is)
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_account_app_passwords(
        &self,
        username: &Username,
        issued_before: Option<Timestamp>,
        reason: &str,
        mut event: AuditEvent,
        audit_none: bool,
    ) -> Result<u64> {
        let txn = self.db.begin().await?;
        let mut update = app_password::Entity::update_many()
            .col_expr(
                app_password::Column::RevokedAt,
                Expr::value(event.at.as_millis()),
            )
            .col_expr(app_password::Column::RevokeReason, Expr::value(reason))
            .filter(app_password::Column::AccountId.in_subquery(account_id_of(username)))
            .filter(active_at(event.at));
        if let Some(before) = issued_before {
            update = update.filter(app_password::Column::CreatedAt.lt(before.as_millis()));
        }
        let revoked = update.exec(&txn).await?;
        if revoked.rows_affected > 0 || audit_none {
            event.item_count = Some(i64::try_from(revoked.rows_affected).unwrap_or(i64::MAX));
            insert_event(&txn, event).await?;
        }
        txn.commit().await?;
        Ok(revoked.rows_affected)
    }

    #[tracing::instrument(skip_all, fields(app_password = %id))]
    async fn change_app_password<F>(
        &self,
        username: &Username,
        id: Uuid,
        plan: F,
    ) -> Result<Option<AppPassword>>
    where
        F: FnOnce(&AppPassword) -> Result<Option<(Change, AuditEvent)>> + Send,
    {
        let txn = self.db.begin().await?;
        // A write first, to lock the row (PostgreSQL, MySQL) or the
        // database (SQLite) before reading it: every other change of this
        // password now waits until we commit, so `plan` decides on what
        // is there, and racing changes are applied and audited one after
        // the other.
        app_password::Entity::update_many()
            .col_expr(
                app_password::Column::UpdatedAt,
                Expr::col(app_password::Column::UpdatedAt).into(),
            )
            .filter(app_password::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        let Some(current) = app_password_on(&txn, username, id).await? else {
            return Ok(None);
        };
        let Some((change, event)) = plan(&current)? else {
            return Ok(Some(current));
        };
        change_update(change, event.at)
            .filter(app_password::Column::Id.eq(id))
            .exec(&txn)
            .await?;
        insert_event(&txn, event).await?;
        let now_is = app_password_on(&txn, username, id).await?;
        txn.commit().await?;
        Ok(now_is)
    }

    #[tracing::instrument(skip_all)]
    async fn count_matching(
        &self,
        filter: &BulkFilter,
        now: Timestamp,
        sample: u32,
    ) -> Result<(u64, Vec<AppPassword>)> {
        let count = app_password::Entity::find()
            .filter(matching(filter, now))
            .count(&self.db)
            .await?;
        let rows = app_password::Entity::find()
            .find_also_related(account::Entity)
            .filter(matching(filter, now))
            .order_by_asc(app_password::Column::Id)
            .limit(u64::from(sample))
            .all(&self.db)
            .await?;
        let sample = rows
            .into_iter()
            .filter_map(|(row, account)| {
                account.map(|a| convert::app_password(row, Username::from_stored(a.username)))
            })
            .collect();
        Ok((count, sample))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_matching(
        &self,
        filter: &BulkFilter,
        after: Option<Uuid>,
        limit: u32,
        reason: &str,
        event: AuditEvent,
    ) -> Result<BulkBatch> {
        let now = event.at;
        let txn = self.db.begin().await?;
        lock_for_write(&txn).await?;
        let mut query = app_password::Entity::find().filter(matching(filter, now));
        if let Some(after) = after {
            query = query.filter(app_password::Column::Id.gt(after));
        }
        // Locked (PostgreSQL, MySQL; SQLite holds the write lock already):
        // every row read here is still active when it is revoked, so the
        // per-account counts below are exact.
        let rows = query
            .order_by_asc(app_password::Column::Id)
            .limit(u64::from(limit))
            .lock_exclusive()
            .all(&txn)
            .await?;
        let Some(last_id) = rows.last().map(|row| row.id) else {
            txn.commit().await?;
            return Ok(BulkBatch::default());
        };
        let ids = fixed_shape(rows.iter().map(|row| row.id).collect(), limit);
        let revoked = app_password::Entity::update_many()
            .col_expr(
                app_password::Column::RevokedAt,
                Expr::value(now.as_millis()),
            )
            .col_expr(app_password::Column::RevokeReason, Expr::value(reason))
            .filter(app_password::Column::Id.is_in(ids))
            .exec(&txn)
            .await?;
        let mut per_account: std::collections::BTreeMap<i64, i64> = Default::default();
        for row in &rows {
            *per_account.entry(row.account_id).or_default() += 1;
        }
        let usernames: std::collections::HashMap<i64, String> = account::Entity::find()
            .select_only()
            .column(account::Column::Id)
            .column(account::Column::Username)
            .filter(
                account::Column::Id
                    .is_in(fixed_shape(per_account.keys().copied().collect(), limit)),
            )
            .into_tuple::<(i64, String)>()
            .all(&txn)
            .await?
            .into_iter()
            .collect();
        let accounts = per_account.len() as u64;
        let events = per_account.into_iter().filter_map(|(account_id, count)| {
            let username = usernames.get(&account_id)?;
            let mut event = event
                .clone()
                .account(&Username::from_stored(username.clone()));
            event.item_count = Some(count);
            Some(event)
        });
        insert_events(&txn, events.collect()).await?;
        txn.commit().await?;
        Ok(BulkBatch {
            revoked: revoked.rows_affected,
            accounts,
            last_id: Some(last_id),
        })
    }

    #[tracing::instrument(skip_all)]
    async fn idle_candidates(
        &self,
        now: Timestamp,
        before: Timestamp,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<(Username, Uuid)>> {
        // Unmarked, not revoked or expired by time, and idle by `before`.
        let idle = Condition::all()
            .add(app_password::Column::RevokedAt.is_null())
            .add(app_password::Column::IdleExpiredAt.is_null())
            .add(app_password::Column::IdleTimeoutMs.is_not_null())
            .add(unexpired_at(now))
            .add(Expr::expr(idle_deadline()).lte(before.as_millis()));
        let found = in_id_order(&self.db, idle, after, limit).await?;
        Ok(found
            .into_iter()
            .map(|password| (password.username, password.id))
            .collect())
    }

    #[tracing::instrument(skip_all, fields(kind = ?window.kind))]
    async fn notice_candidates(
        &self,
        window: &NoticeWindow,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<AppPassword>> {
        in_id_order(&self.db, notice_due(window), after, limit).await
    }

    /// One conditional update per notice, each locking its row until the
    /// commit (in id order, as the candidates came, so replicas writing
    /// the same batch queue on its first row instead of deadlocking); a
    /// replica that gets the row after another wrote its notice finds the
    /// condition false and writes nothing. The events go in with one
    /// `insert_events`, so the batch takes its feed numbers once.
    #[tracing::instrument(skip_all, fields(kind = ?window.kind, notices = notices.len()))]
    async fn record_notices(&self, window: &NoticeWindow, notices: Vec<Notice>) -> Result<u64> {
        use app_password::Column as C;
        if notices.is_empty() {
            return Ok(0);
        }
        let txn = self.db.begin().await?;
        let mut events = Vec::with_capacity(notices.len());
        for notice in notices {
            let (noticed, value) = match window.kind {
                NoticeKind::Expired => (C::ExpiredNoticedAt, window.now),
                NoticeKind::ExpiringSoon => (C::ExpiryNoticedFor, notice.about),
                NoticeKind::IdleExpiringSoon => (C::IdleNoticedDeadline, notice.about),
            };
            let about = match window.kind {
                NoticeKind::Expired | NoticeKind::ExpiringSoon => {
                    C::ExpiresAt.eq(notice.about.as_millis())
                }
                NoticeKind::IdleExpiringSoon => {
                    Expr::expr(idle_deadline()).eq(notice.about.as_millis())
                }
            };
            let written = app_password::Entity::update_many()
                .col_expr(noticed, Expr::value(value.as_millis()))
                .filter(C::Id.eq(notice.id))
                .filter(notice_due(window))
                .filter(about)
                .exec(&txn)
                .await?;
            if written.rows_affected == 1 {
                events.push(notice.event);
            }
        }
        let written = events.len() as u64;
        insert_events(&txn, events).await?;
        txn.commit().await?;
        Ok(written)
    }

    #[tracing::instrument(skip_all)]
    async fn newest_issues(
        &self,
        username: &Username,
        after: Timestamp,
        limit: u32,
    ) -> Result<Vec<Timestamp>> {
        let account = app_password::Column::AccountId.in_subquery(account_id_of(username));
        newest_issues_on(&self.db, account, after, limit).await
    }

    #[tracing::instrument(skip_all)]
    async fn holding_of(
        &self,
        username: &Username,
        issuer: &str,
        now: Timestamp,
    ) -> Result<Holding> {
        let issued = || {
            app_password::Entity::find()
                .filter(app_password::Column::AccountId.in_subquery(account_id_of(username)))
                .filter(app_password::Column::IssuedBy.eq(issuer))
        };
        let exists = |query: sea_orm::Select<app_password::Entity>| async {
            let found: Option<Uuid> = query
                .select_only()
                .column(app_password::Column::Id)
                .into_tuple()
                .one(&self.db)
                .await?;
            Ok::<_, Error>(found.is_some())
        };
        Ok(if exists(issued().filter(active_at(now))).await? {
            Holding::Live
        } else if exists(issued()).await? {
            Holding::Ended
        } else {
            Holding::Nothing
        })
    }

    #[tracing::instrument(skip_all)]
    async fn prune_ended(&self, ended_before: Timestamp, limit: u32) -> Result<u64> {
        use app_password::Column as C;
        let before = ended_before.as_millis();
        let ids: Vec<Uuid> = app_password::Entity::find()
            .select_only()
            .column(C::Id)
            .filter(
                Condition::any()
                    .add(C::RevokedAt.lt(before))
                    .add(C::ExpiresAt.lt(before))
                    .add(C::IdleExpiredAt.lt(before)),
            )
            .limit(u64::from(limit))
            .into_tuple()
            .all(&self.db)
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let deleted = app_password::Entity::delete_many()
            .filter(C::Id.is_in(fixed_shape(ids, limit)))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }
}

/// When the account's newest passwords were issued after `after`, newest
/// first, at most `limit`: a range of `ix_app_password_account_created`.
/// `account` picks the account's rows.
async fn newest_issues_on(
    connection: &impl ConnectionTrait,
    account: SimpleExpr,
    after: Timestamp,
    limit: u32,
) -> Result<Vec<Timestamp>> {
    use app_password::Column as C;
    let created: Vec<i64> = app_password::Entity::find()
        .select_only()
        .column(C::CreatedAt)
        .filter(account)
        .filter(C::CreatedAt.gt(after.as_millis()))
        .order_by_desc(C::CreatedAt)
        .limit(u64::from(limit))
        .into_tuple()
        .all(connection)
        .await?;
    Ok(created.into_iter().map(Timestamp::from_millis).collect())
}

/// Up to `limit` passwords matching `condition`, in id order after
/// `after`: housekeeping's candidates, read outside any transaction and
/// decided again where they are changed.
async fn in_id_order(
    db: &super::db::Db,
    condition: Condition,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<AppPassword>> {
    let mut query = app_password::Entity::find()
        .find_also_related(account::Entity)
        .filter(condition);
    if let Some(after) = after {
        query = query.filter(app_password::Column::Id.gt(after));
    }
    let rows = query
        .order_by_asc(app_password::Column::Id)
        .limit(u64::from(limit))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(row, account)| {
            account.map(|a| convert::app_password(row, Username::from_stored(a.username)))
        })
        .collect())
}

/// Rows due `window`'s notice (`NoticeWindow::due`) and not yet noticed
/// for the time it is about (the notice columns of migration 9).
fn notice_due(window: &NoticeWindow) -> Condition {
    use app_password::Column as C;
    let (now, horizon) = (window.now, window.horizon.as_millis());
    match window.kind {
        NoticeKind::Expired => Condition::all()
            .add(C::RevokedAt.is_null())
            .add(C::IdleExpiredAt.is_null())
            .add(C::ExpiresAt.lte(now.as_millis()))
            .add(C::ExpiredNoticedAt.is_null()),
        NoticeKind::ExpiringSoon => active_at(now).add(C::ExpiresAt.lte(horizon)).add(
            Condition::any()
                .add(C::ExpiryNoticedFor.is_null())
                .add(column(C::ExpiryNoticedFor).ne(column(C::ExpiresAt))),
        ),
        NoticeKind::IdleExpiringSoon => active_at(now)
            .add(C::IdleTimeoutMs.is_not_null())
            .add(Expr::expr(idle_deadline()).lte(horizon))
            // deadline <= now + timeout / 2, without a division.
            .add(
                Expr::expr(Expr::expr(idle_deadline()).add(last_active()))
                    .lte(now.as_millis().saturating_mul(2)),
            )
            .add(
                Condition::any()
                    .add(C::ExpiresAt.is_null())
                    .add(column(C::ExpiresAt).gt(idle_deadline())),
            )
            .add(
                Condition::any()
                    .add(C::IdleNoticedDeadline.is_null())
                    .add(column(C::IdleNoticedDeadline).lt(idle_deadline())),
            ),
    }
}

/// Active passwords matching a bulk filter at `now`.
fn matching(filter: &BulkFilter, now: Timestamp) -> Condition {
    use app_password::Column as C;
    let mut condition = active_at(now);
    if let Some(since) = filter.unused_since {
        let since = since.as_millis();
        condition = condition.add(
            Condition::any().add(C::LastUsedAt.lt(since)).add(
                Condition::all()
                    .add(C::LastUsedAt.is_null())
                    .add(C::CreatedAt.lt(since)),
            ),
        );
    }
    if let Some(before) = filter.created_before {
        condition = condition.add(C::CreatedAt.lt(before.as_millis()));
    }
    if let Some(protocol) = filter.protocol {
        // Those that allow it: its bit, or the bit of "any protocol".
        let mask = ProtocolSet::of([protocol]).bits() | ProtocolSet::any().bits();
        condition = condition.add(
            Expr::col((app_password::Entity, C::Protocols))
                .binary(sea_orm::sea_query::BinOper::BitAnd, Expr::value(mask))
                .ne(0),
        );
    }
    if let Some(issued_by) = &filter.issued_by {
        condition = condition.add(C::IssuedBy.eq(issued_by.as_str()));
    }
    condition
}

/// Takes SQLite's write lock at the start of a transaction that reads
/// before it writes (a read first would let another writer in between, and
/// SQLite would then refuse our write); PostgreSQL and MySQL lock the rows
/// they read with `FOR UPDATE` instead, so this changes nothing there.
pub(super) async fn lock_for_write(txn: &super::db::Tx) -> Result<()> {
    app_password::Entity::update_many()
        .col_expr(
            app_password::Column::UpdatedAt,
            Expr::col(app_password::Column::UpdatedAt).into(),
        )
        .filter(Expr::cust("1 = 0"))
        .exec(txn)
        .await?;
    Ok(())
}
