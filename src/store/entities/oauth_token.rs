use sea_orm::entity::prelude::*;

/// An access token of `POST /oauth2/token`, by its SHA-256 (hex); never
/// the token.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_token")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub digest: String,
    pub app_password_id: Uuid,
    pub protocol: i32,
    pub client_ip: String,
    pub client_id: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
