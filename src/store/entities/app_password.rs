use std::fmt;

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "app_password")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: i64,
    pub selector: String,
    /// The selector of a version 2 password, unique across the deployment;
    /// NULL for version 1.
    pub public_id: Option<String>,
    pub secret_hash: SecretHash,
    pub display_name: String,
    pub protocols: i64,
    pub allowed_networks: String,
    pub issued_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoke_reason: Option<String>,
    pub last_used_at: Option<i64>,
    pub last_used_ip: Option<String>,
    pub last_used_protocol: Option<i32>,
    pub last_used_client: Option<String>,
    pub use_count: i64,
    pub seen_networks: String,
    pub suspended_at: Option<i64>,
    pub suspend_reason: Option<String>,
    pub idle_timeout_ms: Option<i64>,
    pub idle_expired_at: Option<i64>,
    pub updated_at: Option<i64>,
    pub expiry_noticed_for: Option<i64>,
    pub expired_noticed_at: Option<i64>,
    pub idle_noticed_deadline: Option<i64>,
    pub warm_verifier: Option<String>,
    pub warm_until: Option<i64>,
}

/// The stored argon2id PHC string. Its own type so that the derived `Debug`
/// of models and active models, which a stray log line could print, never
/// shows it.
#[derive(Clone, PartialEq, Eq, DeriveValueType)]
pub struct SecretHash(pub String);

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(<redacted>)")
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::account::Entity",
        from = "Column::AccountId",
        to = "super::account::Column::Id",
        on_delete = "Cascade"
    )]
    Account,
}

impl Related<super::account::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Account.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
