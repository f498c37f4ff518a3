use std::fmt;

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "caller")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub role: String,
    pub key_id: String,
    pub key_hash: KeyDigest,
    pub tls_identity: Option<String>,
    pub created_at: i64,
    pub created_by: String,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The tenant it is scoped to (migration 14); `None`: deployment-wide.
    pub tenant: Option<String>,
    /// Migration 15: the key's life.
    pub expires_at: Option<i64>,
    pub allowed_networks: String,
    pub last_used_ip: Option<String>,
    pub previous_key_id: Option<String>,
    pub previous_key_hash: Option<KeyDigest>,
    pub previous_key_expires_at: Option<i64>,
}

/// The SHA-256 of a caller key; its own type so that `Debug` of a row never
/// prints it.
#[derive(Clone, PartialEq, Eq, DeriveValueType)]
pub struct KeyDigest(pub String);

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDigest(<redacted>)")
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
