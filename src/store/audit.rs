//! The audit trail: written beside the change it describes, read newest
//! first.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};

use super::entities::audit_event;
use super::{before_cursor, convert, db_error, SqlStore};
use crate::domain::audit::event::{AuditCursor, AuditEvent, AuditFilter};
use crate::domain::audit::store::AuditStore;
use crate::domain::shared::error::Result;
use crate::domain::shared::page::Page;
use crate::domain::shared::time::Timestamp;

/// Writes `event` on `connection`: pass the transaction of the change it
/// describes, so that neither can be committed without the other.
pub(super) async fn insert_event(
    connection: &impl ConnectionTrait,
    event: AuditEvent,
) -> Result<()> {
    audit_event::Entity::insert(row_of(event))
        .exec_without_returning(connection)
        .await
        .map_err(db_error)?;
    Ok(())
}

fn row_of(event: AuditEvent) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        occurred_at: Set(event.at.as_millis()),
        event_type: Set(event.event_type.as_str().to_owned()),
        actor: Set(event.actor),
        username: Set(event.username.map(|u| u.as_str().to_owned())),
        app_password_id: Set(event.app_password_id),
        caller_name: Set(event.caller_name),
        client_ip: Set(event.client_ip.map(|ip| ip.to_string())),
        protocol: Set(event.protocol.map(|p| p.code())),
        item_count: Set(event.item_count),
        detail: Set(event.detail),
    }
}

/// Writes `events` on `connection` in chunks whose sizes are powers of two
/// (at most 256): any number of events takes few statements, and of at
/// most nine texts, so sqlx's per-connection caches of prepared statements
/// do not fill with one text per count.
pub(super) async fn insert_events(
    connection: &impl ConnectionTrait,
    events: Vec<AuditEvent>,
) -> Result<()> {
    let mut rows = events.into_iter().map(row_of).peekable();
    let mut left = rows.len();
    while rows.peek().is_some() {
        let chunk_size = 1usize << left.min(256).ilog2();
        left -= chunk_size;
        let chunk: Vec<_> = rows.by_ref().take(chunk_size).collect();
        audit_event::Entity::insert_many(chunk)
            .exec_without_returning(connection)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

impl AuditStore for SqlStore {
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    async fn record_events(&self, events: Vec<AuditEvent>) -> Result<()> {
        let txn = self.db.begin().await.map_err(db_error)?;
        for event in events {
            insert_event(&txn, event).await?;
        }
        txn.commit().await.map_err(db_error)
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
            .await
            .map_err(db_error)?;
        let items = rows.into_iter().filter_map(convert::audit_event).collect();
        Ok(Page::from_overfetch(items, limit))
    }

    #[tracing::instrument(skip_all)]
    async fn prune_events(&self, before: Timestamp) -> Result<u64> {
        let deleted = audit_event::Entity::delete_many()
            .filter(audit_event::Column::OccurredAt.lt(before.as_millis()))
            .exec(&self.db)
            .await
            .map_err(db_error)?;
        Ok(deleted.rows_affected)
    }
}
