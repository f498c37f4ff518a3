//! Writes that successful logins make to their app passwords: usage,
//! and re-hashes.

use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, UpdateMany};
use uuid::Uuid;

use super::audit::insert_events;
use super::entities::app_password;
use super::SqlStore;
use crate::domain::audit::event::AuditEvent;
use crate::domain::login::store::UsageStore;
use crate::domain::login::usage::PendingUse;
use crate::domain::shared::error::Result;
use crate::domain::shared::network::SeenNetworks;

/// The update recording `usage` of one password. The last-used fields move
/// only forward: replicas flush their batches in any order.
fn usage_update(id: Uuid, usage: &PendingUse) -> UpdateMany<app_password::Entity> {
    use app_password::Column;
    let mut update = app_password::Entity::update_many();
    // A warm verifier replaces the one stored: each stands for a success,
    // and whichever replica writes last, both were right.
    if let Some(warm) = &usage.warm {
        update = update
            .col_expr(Column::WarmVerifier, Expr::value(warm.verifier.clone()))
            .col_expr(Column::WarmUntil, Expr::value(warm.until.as_millis()));
    }
    let at = usage.last.at.as_millis();
    let if_newer = |column: Column, value: sea_orm::Value| -> SimpleExpr {
        let newer = Condition::any()
            .add(Column::LastUsedAt.is_null())
            .add(Column::LastUsedAt.lt(at));
        Expr::case(newer, Expr::val(value))
            .finally(Expr::col(column))
            .into()
    };
    update
        // MySQL evaluates assignments left to right, each seeing the ones
        // before it: last_used_at goes last, so every condition reads the
        // old value.
        .col_expr(
            Column::LastUsedIp,
            if_newer(Column::LastUsedIp, usage.last.client_ip.to_string().into()),
        )
        .col_expr(
            Column::LastUsedProtocol,
            if_newer(Column::LastUsedProtocol, usage.last.protocol.code().into()),
        )
        .col_expr(
            Column::LastUsedClient,
            if_newer(
                Column::LastUsedClient,
                usage
                    .last
                    .client
                    .as_ref()
                    .map(|client| client.as_str().to_owned())
                    .into(),
            ),
        )
        .col_expr(Column::LastUsedAt, if_newer(Column::LastUsedAt, at.into()))
        .col_expr(
            Column::UseCount,
            Expr::col(Column::UseCount).add(i64::from(usage.count)),
        )
        .filter(Column::Id.eq(id))
}

impl UsageStore for SqlStore {
    #[tracing::instrument(skip_all, fields(app_password = %id))]
    async fn record_use(
        &self,
        id: Uuid,
        usage: PendingUse,
        seen_networks: Option<SeenNetworks>,
        events: Vec<AuditEvent>,
    ) -> Result<()> {
        let mut update = usage_update(id, &usage);
        let Some(seen_networks) = seen_networks else {
            update.exec(&self.db).await?;
            return Ok(());
        };
        update = update.col_expr(
            app_password::Column::SeenNetworks,
            Expr::value(seen_networks.to_stored()),
        );
        let txn = self.db.begin().await?;
        update.exec(&txn).await?;
        insert_events(&txn, events).await?;
        Ok(txn.commit().await?)
    }

    /// Rows are updated in the order of their ids, whatever the batch's:
    /// two replicas flushing usage of the same passwords at once then lock
    /// the rows in one order, and neither waits for the other in a cycle (a
    /// replica's buffer is a hash map, whose order differs between them).
    #[tracing::instrument(skip_all, fields(passwords = batch.len()))]
    async fn record_uses(&self, batch: &[(Uuid, PendingUse)]) -> Result<()> {
        let mut in_order: Vec<&(Uuid, PendingUse)> = batch.iter().collect();
        in_order.sort_unstable_by_key(|(id, _)| *id);
        let txn = self.db.begin().await?;
        for (id, usage) in in_order {
            usage_update(*id, usage).exec(&txn).await?;
        }
        Ok(txn.commit().await?)
    }

    #[tracing::instrument(skip_all, fields(app_password = %id))]
    async fn replace_hash(&self, id: Uuid, old: &str, new: &str) -> Result<()> {
        app_password::Entity::update_many()
            .col_expr(app_password::Column::SecretHash, Expr::value(new))
            .filter(app_password::Column::Id.eq(id))
            .filter(app_password::Column::SecretHash.eq(old))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}
