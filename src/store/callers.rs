//! Queries on latchkey's own callers.

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::audit::insert_event;
use super::entities::caller::{self, KeyDigest};
use super::entities::tenant;
use super::{convert, SqlStore};
use crate::domain::audit::event::AuditEvent;
use crate::domain::callers::model::Caller;
use crate::domain::callers::model::{CreateCallerOutcome, RotateKeyOutcome, StoredCaller};
use crate::domain::callers::store::CallerStore;
use crate::domain::shared::error::{Error, Result};
use crate::domain::shared::network::canonical_ip;
use crate::domain::shared::page::Page;
use crate::domain::shared::time::Timestamp;
use std::net::IpAddr;

fn known_role(row: caller::Model) -> Result<Caller> {
    let role = row.role.clone();
    convert::caller(row)
        .ok_or_else(|| Error::internal(format!("caller row has unknown role {role:?}")))
}

impl CallerStore for SqlStore {
    /// Name and TLS identity are unique; checked inside the transaction
    /// that inserts, and backed by unique indexes should two creations race.
    #[tracing::instrument(skip_all, fields(caller = %new.name))]
    async fn create_caller(
        &self,
        new: Caller,
        key_id: &str,
        key_digest: &str,
        event: AuditEvent,
    ) -> Result<CreateCallerOutcome> {
        let txn = self.db.begin().await?;
        // It reads before it writes: on SQLite, another writer in between
        // (a caller's last use, recorded as its key is checked) would make
        // SQLite refuse the write at once ("database is locked").
        super::app_passwords::lock_for_write(&txn).await?;
        let name_taken = caller::Entity::find()
            .filter(caller::Column::Name.eq(new.name.as_str()))
            .one(&txn)
            .await?
            .is_some();
        if name_taken {
            return Ok(CreateCallerOutcome::NameTaken);
        }
        if let Some(tenant) = &new.tenant {
            // Locked until the commit, so a concurrent DeleteTenant cannot
            // leave this caller scoped to a tenant that is gone.
            let exists = tenant::Entity::find()
                .filter(tenant::Column::Name.eq(tenant.as_str()))
                .lock_exclusive()
                .one(&txn)
                .await?
                .is_some();
            if !exists {
                return Ok(CreateCallerOutcome::TenantNotFound);
            }
        }
        if let Some(identity) = &new.tls_identity {
            let identity_taken = caller::Entity::find()
                .filter(caller::Column::TlsIdentity.eq(identity.as_str()))
                .one(&txn)
                .await?
                .is_some();
            if identity_taken {
                return Ok(CreateCallerOutcome::TlsIdentityTaken);
            }
        }
        let row = caller::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            name: Set(new.name.clone()),
            role: Set(new.role.as_str().to_owned()),
            key_id: Set(key_id.to_owned()),
            key_hash: Set(KeyDigest(key_digest.to_owned())),
            tls_identity: Set(new.tls_identity.clone()),
            created_at: Set(new.created_at.as_millis()),
            created_by: Set(new.created_by.clone()),
            last_used_at: Set(None),
            revoked_at: Set(None),
            tenant: Set(new.tenant.clone()),
            expires_at: Set(new.expires_at.map(Timestamp::as_millis)),
            allowed_networks: Set(new.allowed_networks.to_stored()),
            last_used_ip: Set(None),
            previous_key_id: Set(None),
            previous_key_hash: Set(None),
            previous_key_expires_at: Set(None),
        };
        let inserted = caller::Entity::insert(row)
            .exec_without_returning(&txn)
            .await;
        if let Err(error) = inserted {
            if matches!(
                error.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            ) {
                return Ok(CreateCallerOutcome::NameTaken);
            }
            return Err(error.into());
        }
        insert_event(&txn, event).await?;
        txn.commit().await?;
        Ok(CreateCallerOutcome::Created(Box::new(new)))
    }

    #[tracing::instrument(skip_all)]
    async fn caller_by_key_id(&self, key_id: &str) -> Result<Option<StoredCaller>> {
        // The current key's id, or the one a rotation replaced (both
        // unique, and a new key id is never an old one: 72 random bits).
        let Some(row) = caller::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(caller::Column::KeyId.eq(key_id))
                    .add(caller::Column::PreviousKeyId.eq(key_id)),
            )
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let (key_digest, key_expires_at) = if row.key_id == key_id {
            (row.key_hash.0.clone(), None)
        } else {
            (
                row.previous_key_hash
                    .clone()
                    .map(|d| d.0)
                    .unwrap_or_default(),
                // Without an end, a replaced key is dead: fail closed.
                Some(
                    row.previous_key_expires_at
                        .map_or(Timestamp::from_millis(0), Timestamp::from_millis),
                ),
            )
        };
        Ok(Some(StoredCaller {
            caller: known_role(row)?,
            key_digest,
            key_expires_at,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn callers_by_tls_identity(&self, identities: &[String]) -> Result<Vec<Caller>> {
        let rows = caller::Entity::find()
            .filter(caller::Column::TlsIdentity.is_in(identities.iter().map(String::as_str)))
            .filter(caller::Column::RevokedAt.is_null())
            .order_by_asc(caller::Column::Name)
            .limit(2)
            .all(&self.db)
            .await?;
        rows.into_iter().map(known_role).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn tenant_domains(&self, name: &str) -> Result<Vec<String>> {
        super::tenants::domains_of(&self.db, name).await
    }

    async fn touch_caller(&self, name: &str, now: Timestamp, from: Option<IpAddr>) -> Result<()> {
        let mut update = caller::Entity::update_many()
            .col_expr(caller::Column::LastUsedAt, Expr::value(now.as_millis()));
        if let Some(from) = from {
            update = update.col_expr(
                caller::Column::LastUsedIp,
                Expr::value(canonical_ip(from).to_string()),
            );
        }
        update
            .filter(caller::Column::Name.eq(name))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(caller = %name))]
    async fn rotate_caller_key(
        &self,
        name: &str,
        key_id: &str,
        key_digest: &str,
        old_until: Timestamp,
        event: AuditEvent,
    ) -> Result<RotateKeyOutcome> {
        let txn = self.db.begin().await?;
        super::app_passwords::lock_for_write(&txn).await?;
        let Some(row) = caller::Entity::find()
            .filter(caller::Column::Name.eq(name))
            .lock_exclusive()
            .one(&txn)
            .await?
        else {
            return Ok(RotateKeyOutcome::NotFound);
        };
        if row.revoked_at.is_some() {
            return Ok(RotateKeyOutcome::Revoked);
        }
        let mut active: caller::ActiveModel = row.clone().into();
        active.previous_key_id = Set(Some(row.key_id.clone()));
        active.previous_key_hash = Set(Some(row.key_hash.clone()));
        active.previous_key_expires_at = Set(Some(old_until.as_millis()));
        active.key_id = Set(key_id.to_owned());
        active.key_hash = Set(KeyDigest(key_digest.to_owned()));
        let row = caller::Entity::update(active).exec(&txn).await?;
        insert_event(&txn, event).await?;
        txn.commit().await?;
        Ok(RotateKeyOutcome::Rotated(Box::new(known_role(row)?)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_callers(&self, after: Option<&str>, limit: u32) -> Result<Page<Caller>> {
        let mut query = caller::Entity::find();
        if let Some(after) = after {
            query = query.filter(caller::Column::Name.gt(after));
        }
        let rows = query
            .order_by_asc(caller::Column::Name)
            .limit(u64::from(limit) + 1)
            .all(&self.db)
            .await?;
        let items = rows
            .into_iter()
            .map(known_role)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, limit))
    }

    #[tracing::instrument(skip_all, fields(caller = %name))]
    async fn revoke_caller(&self, name: &str, event: AuditEvent) -> Result<Option<Caller>> {
        let txn = self.db.begin().await?;
        let revoked = caller::Entity::update_many()
            .col_expr(caller::Column::RevokedAt, Expr::value(event.at.as_millis()))
            .filter(caller::Column::Name.eq(name))
            .filter(caller::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        if revoked.rows_affected > 0 {
            insert_event(&txn, event).await?;
        }
        let now_is = caller::Entity::find()
            .filter(caller::Column::Name.eq(name))
            .one(&txn)
            .await?
            .map(known_role)
            .transpose()?;
        txn.commit().await?;
        Ok(now_is)
    }
}
