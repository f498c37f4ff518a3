//! The audit trail: written beside the change it describes, read newest
//! first.

use std::time::Duration;

use super::db::Tx;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, Iterable, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::entities::{audit_event, event_feed, tenant_domain};
use super::{before_cursor, convert, fixed_shape, SqlStore};
use crate::domain::audit::event::{AuditCursor, AuditEvent, AuditFilter};
use crate::domain::audit::feed::{new_mark, FeedEvent, FeedFilter, FeedPage, FeedPosition};
use crate::domain::audit::store::AuditStore;
use crate::domain::shared::error::{Error, Result};
use crate::domain::shared::page::Page;
use crate::domain::shared::time::Timestamp;
use crate::domain::tenants::model::domain_of;

/// Writes `event` in `txn`, the transaction of the change it describes,
/// so that neither can be committed without the other.
pub(super) async fn insert_event(txn: &Tx, event: AuditEvent) -> Result<()> {
    insert_events(txn, vec![event]).await
}

/// An event's row: `seq` its place when numbered now, `pending` when it
/// is in the feed and numbered after the commit.
fn row_of(
    event: AuditEvent,
    seq: Option<i64>,
    mark: i64,
    pending: bool,
) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        occurred_at: Set(event.at.as_millis()),
        event_type: Set(event.event_type.as_str().to_owned()),
        account_domain: Set(event
            .username
            .as_ref()
            .and_then(|u| domain_of(u).map(str::to_owned))),
        actor: Set(event.actor),
        actor_tenant: Set(event.actor_tenant),
        username: Set(event.username.map(|u| u.as_str().to_owned())),
        app_password_id: Set(event.app_password_id),
        caller_name: Set(event.caller_name),
        client_ip: Set(event.client_ip.map(|ip| ip.to_string())),
        protocol: Set(event.protocol.map(|p| p.code())),
        item_count: Set(event.item_count),
        detail: Set(event.detail),
        feed_mark: Set(seq.map(|_| mark)),
        seq: Set(seq),
        feed_pending: Set(pending),
    }
}

/// Writes `events` in `txn` in chunks whose sizes are powers of two (at
/// most 256): any number of events takes few statements, and of at most
/// nine texts, so sqlx's per-connection caches of prepared statements do
/// not fill with one text per count.
///
/// Events in the change feed are written pending, to be numbered after
/// the commit in the order of their ids, which is the order given
/// (`feed_numbering.rs`); or, under the feed row's lock, they get their
/// sequence numbers first, in one step ([`take_seqs`]), in the order given.
pub(super) async fn insert_events(txn: &Tx, events: Vec<AuditEvent>) -> Result<()> {
    let in_feed = events
        .iter()
        .filter(|event| event.event_type.in_feed())
        .count();
    let after_commit = txn.numbers_after_commit();
    let mut next_seq = match i64::try_from(in_feed) {
        Ok(0) => 0,
        Ok(_) if after_commit => {
            txn.wrote_pending_feed();
            0
        }
        Ok(count) => take_seqs(txn, count).await?,
        Err(_) => return Err(Error::internal("too many audit events in one transaction")),
    };
    // One mark for the transaction's feed events: which history their
    // numbers belong to (stored as the same 64 bits, signed).
    let mark = new_mark() as i64;
    let mut rows = events
        .into_iter()
        .map(|event| {
            let in_feed = event.event_type.in_feed();
            if after_commit {
                return row_of(event, None, mark, in_feed);
            }
            let seq = in_feed.then(|| {
                let seq = next_seq;
                next_seq += 1;
                seq
            });
            row_of(event, seq, mark, false)
        })
        .peekable();
    let mut left = rows.len();
    while rows.peek().is_some() {
        let chunk_size = 1usize << left.min(256).ilog2();
        left -= chunk_size;
        let chunk: Vec<_> = rows.by_ref().take(chunk_size).collect();
        audit_event::Entity::insert_many(chunk)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Takes `count` sequence numbers of the change feed for `txn`; returns
/// the first. Raising `event_feed.last_seq` locks its one row until `txn`
/// commits or rolls back: a concurrent transaction taking numbers waits
/// here for this one to end, so numbers are handed out in commit order and
/// a reader that sees number `n` will never later see a smaller one appear
/// (a rollback gives its numbers back to the next taker). On SQLite the
/// write lock serializes writers anyway. On PostgreSQL the transaction
/// also sends a NOTIFY, which is delivered when (and if) it commits.
async fn take_seqs(txn: &Tx, count: i64) -> Result<i64> {
    event_feed::Entity::update_many()
        .col_expr(
            event_feed::Column::LastSeq,
            Expr::col(event_feed::Column::LastSeq).add(count),
        )
        .filter(event_feed::Column::Id.eq(FEED_ROW))
        .exec(txn)
        .await?;
    let feed = event_feed::Entity::find_by_id(FEED_ROW)
        .one(txn)
        .await?
        .ok_or_else(|| Error::internal("the event_feed row is missing (migration 9)"))?;
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("NOTIFY {FEED_CHANNEL}"))
            .await?;
    }
    Ok(feed.last_seq - count + 1)
}

/// Feed events behind the horizon deleted per statement.
const PRUNE_BATCH: u32 = 1000;

/// The one row of `event_feed`.
const FEED_ROW: i32 = 1;
/// The PostgreSQL channel of the feed's wake-ups.
pub(super) const FEED_CHANNEL: &str = "latchkey_feed";

fn feed_position(row: event_feed::Model) -> FeedPosition {
    FeedPosition {
        feed_id: row.feed_id,
        head: u64::try_from(row.last_seq).unwrap_or(0),
        pruned_through: u64::try_from(row.pruned_through).unwrap_or(0),
    }
}

impl AuditStore for SqlStore {
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    async fn record_events(&self, events: Vec<AuditEvent>) -> Result<()> {
        let txn = self.db.begin().await?;
        insert_events(&txn, events).await?;
        Ok(txn.commit().await?)
    }

    #[tracing::instrument(skip_all)]
    async fn list_events(
        &self,
        filter: &AuditFilter,
        after: Option<AuditCursor>,
        limit: u32,
    ) -> Result<Page<AuditEvent>> {
        let mut query = audit_event::Entity::find();
        if let Some(username) = &filter.username {
            query = query.filter(audit_event::Column::Username.eq(username.as_str()));
        }
        if let Some(id) = filter.app_password_id {
            query = query.filter(audit_event::Column::AppPasswordId.eq(id));
        }
        if !filter.event_types.is_empty() {
            query = query.filter(
                audit_event::Column::EventType.is_in(filter.event_types.iter().map(|t| t.as_str())),
            );
        }
        if let Some(from) = filter.from {
            query = query.filter(audit_event::Column::OccurredAt.gte(from.as_millis()));
        }
        if let Some(until) = filter.until {
            query = query.filter(audit_event::Column::OccurredAt.lt(until.as_millis()));
        }
        if let Some(cursor) = after {
            query = query.filter(before_cursor(
                audit_event::Column::OccurredAt,
                audit_event::Column::Id,
                cursor.at.as_millis(),
                cursor.id,
            ));
        }
        let rows = query
            .order_by_desc(audit_event::Column::OccurredAt)
            .order_by_desc(audit_event::Column::Id)
            .limit(u64::from(limit) + 1)
            .all(&self.db)
            .await?;
        let items = rows.into_iter().filter_map(convert::audit_event).collect();
        Ok(Page::from_overfetch(items, limit))
    }

    #[tracing::instrument(skip_all)]
    async fn prune_events(&self, before: Timestamp) -> Result<u64> {
        // The horizon first, in a statement of its own: tokens before it
        // are refused from then on. It is the place before the oldest feed
        // event that is not old yet, so an event stamped early by a
        // replica with a wrong clock cannot take newer ones with it; with
        // none young, the whole feed.
        let seq_of = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let oldest_young: Option<Option<i64>> = audit_event::Entity::find()
            .select_only()
            .column_as(audit_event::Column::Seq.min(), "oldest")
            .filter(audit_event::Column::OccurredAt.gte(before.as_millis()))
            .filter(audit_event::Column::Seq.is_not_null())
            .into_tuple()
            .one(&self.db)
            .await?;
        let horizon = match oldest_young.flatten() {
            Some(oldest) => oldest - 1,
            None => seq_of(self.feed_position().await?.head),
        };
        event_feed::Entity::update_many()
            .col_expr(event_feed::Column::PrunedThrough, Expr::value(horizon))
            .filter(event_feed::Column::Id.eq(FEED_ROW))
            .filter(event_feed::Column::PrunedThrough.lt(horizon))
            .exec(&self.db)
            .await?;
        let pruned_through = seq_of(self.feed_position().await?.pruned_through);
        // Old rows outside the feed or behind the horizon, along the time
        // index; then feed rows behind the horizon that are not old (their
        // clock was behind), by primary key in batches: a range delete on
        // the seq index would lock the gap where MariaDB inserts the rows
        // outside the feed (NULL seq sorts first), and hold up failed logins.
        let by_time = audit_event::Entity::delete_many()
            .filter(audit_event::Column::OccurredAt.lt(before.as_millis()))
            // A pending feed event is waiting for its place, not old.
            .filter(audit_event::Column::FeedPending.eq(false))
            .filter(
                sea_orm::Condition::any()
                    .add(audit_event::Column::Seq.is_null())
                    .add(audit_event::Column::Seq.lte(pruned_through)),
            )
            .exec(&self.db)
            .await?;
        let mut deleted = by_time.rows_affected;
        loop {
            let ids: Vec<i64> = audit_event::Entity::find()
                .select_only()
                .column(audit_event::Column::Id)
                .filter(audit_event::Column::Seq.lte(pruned_through))
                .limit(u64::from(PRUNE_BATCH))
                .into_tuple()
                .all(&self.db)
                .await?;
            if ids.is_empty() {
                break;
            }
            let removed = audit_event::Entity::delete_many()
                .filter(audit_event::Column::Id.is_in(fixed_shape(ids, PRUNE_BATCH)))
                .exec(&self.db)
                .await?;
            deleted += removed.rows_affected;
        }
        Ok(deleted)
    }

    #[tracing::instrument(skip_all)]
    async fn feed_position(&self) -> Result<FeedPosition> {
        event_feed::Entity::find_by_id(FEED_ROW)
            .one(&self.db)
            .await?
            .map(feed_position)
            .ok_or_else(|| Error::internal("the event_feed row is missing (migration 9)"))
    }

    #[tracing::instrument(skip_all)]
    async fn read_feed(
        &self,
        after: u64,
        through: u64,
        filter: &FeedFilter,
        limit: u32,
    ) -> Result<FeedPage> {
        let seq = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let mut wanted = sea_orm::Condition::all().add(
            audit_event::Column::EventType.is_in(filter.event_types.iter().map(|t| t.as_str())),
        );
        if let Some(username) = &filter.username {
            wanted = wanted.add(audit_event::Column::Username.eq(username.as_str()));
        }
        let owned = filter.tenant.as_deref().map(owned_by);
        if let Some(owned) = &owned {
            wanted = wanted.add(owned.clone());
        }
        // The range along the seq index, and in it the two ends (whatever
        // their type: their marks say which history this is) and the
        // events the filter wants.
        let mut select = audit_event::Entity::find();
        if let Some(owned) = owned {
            // The ends are read whatever their domain: for a tenant, the
            // same statement says whether the tenant owned each row's
            // event, by leaving `account_domain` NULL where it did not.
            select = select
                .select_only()
                .columns(
                    audit_event::Column::iter()
                        .filter(|column| !matches!(column, audit_event::Column::AccountDomain)),
                )
                .expr_as(
                    Expr::case(
                        owned,
                        Expr::col((audit_event::Entity, audit_event::Column::AccountDomain)),
                    )
                    .finally(Expr::cust("NULL")),
                    "account_domain",
                );
        }
        let rows = select
            .filter(audit_event::Column::Seq.gte(seq(after)))
            .filter(audit_event::Column::Seq.lte(seq(through)))
            .filter(
                sea_orm::Condition::any()
                    .add(audit_event::Column::Seq.eq(seq(after)))
                    .add(audit_event::Column::Seq.eq(seq(through)))
                    .add(wanted),
            )
            .order_by_asc(audit_event::Column::Seq)
            .limit(u64::from(limit) + 2)
            .all(&self.db)
            .await?;
        let mut page = FeedPage {
            after_mark: None,
            through_mark: None,
            events: Vec::new(),
        };
        for row in rows {
            // A row that does not convert would leave a hole the stream
            // steps over: an error instead (it cannot happen: the query
            // asks for known types, and the ends are feed events).
            let place = row.seq.and_then(|seq| u64::try_from(seq).ok());
            let owned = filter.tenant.is_none() || row.account_domain.is_some();
            let mark = row.feed_mark.unwrap_or(0) as u64;
            let (Some(place), Some(event)) = (place, convert::audit_event(row)) else {
                return Err(Error::internal("a feed event that does not convert"));
            };
            if place == after {
                page.after_mark = Some(mark);
                if after == through {
                    page.through_mark = Some(mark);
                }
                continue;
            }
            if place == through {
                page.through_mark = Some(mark);
            }
            if owned && filter.wants(&event) {
                page.events.push(FeedEvent {
                    seq: place,
                    mark,
                    event,
                });
            }
        }
        if page.events.len() > limit as usize {
            // More than a page: the events stop short of `through`, so its
            // mark is not this page's to give.
            page.events.truncate(limit as usize);
            page.through_mark = None;
        }
        Ok(page)
    }

    async fn wait_for_feed(&self, poll: Duration) {
        self.feed_wakeups.wait(self.db.pool(), poll).await;
    }

    async fn quiet_feed(&self) {
        self.feed_wakeups.stop().await;
    }
}

/// Whether `tenant` owned the event's domain when the event happened, as
/// the statement holding this condition sees `tenant_domain`: the domain
/// is the tenant's now, and was given to it (`added_at`) no later than
/// the event. So a domain's events leave the streams of a tenant that
/// lost it, and a tenant that gains one gets its events from then on, not
/// its earlier history.
fn owned_by(tenant: &str) -> sea_orm::sea_query::SimpleExpr {
    Expr::exists(
        sea_orm::sea_query::Query::select()
            .expr(Expr::val(1))
            .from(tenant_domain::Entity)
            .and_where(tenant_domain::Column::Tenant.eq(tenant))
            .and_where(
                Expr::col((tenant_domain::Entity, tenant_domain::Column::Domain))
                    .equals((audit_event::Entity, audit_event::Column::AccountDomain)),
            )
            .and_where(
                Expr::col((tenant_domain::Entity, tenant_domain::Column::AddedAt)).lte(Expr::col(
                    (audit_event::Entity, audit_event::Column::OccurredAt),
                )),
            )
            .to_owned(),
    )
}
