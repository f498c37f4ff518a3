use sea_orm::entity::prelude::*;

/// A webhook target's cursor and lease (migration 19).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_cursor")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub target: String,
    pub seq: i64,
    pub mark: i64,
    pub holder: Option<String>,
    pub lease_until: i64,
    pub writes: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
