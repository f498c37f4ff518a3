use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub username: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    pub disable_reason: Option<String>,
    pub issue_count: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::app_password::Entity")]
    AppPassword,
}

impl Related<super::app_password::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AppPassword.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
