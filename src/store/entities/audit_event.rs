use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_event")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub occurred_at: i64,
    pub event_type: String,
    pub actor: String,
    pub username: Option<String>,
    pub app_password_id: Option<Uuid>,
    pub caller_name: Option<String>,
    pub client_ip: Option<String>,
    pub protocol: Option<i32>,
    pub item_count: Option<i64>,
    pub detail: String,
    /// Its place in the change feed; `None` outside it.
    pub seq: Option<i64>,
    /// The history its place belongs to (migration 12): one random
    /// number per transaction that numbers feed events; `None` (read as 0) before that migration
    /// and outside the feed.
    pub feed_mark: Option<i64>,
    /// A feed event committed and not yet numbered (migration 13; only
    /// ever true on PostgreSQL, between a change's commit and the
    /// numbering run that takes it: `store/feed_numbering.rs`).
    pub feed_pending: bool,
    /// The tenant of the caller that caused it (migration 14).
    pub actor_tenant: Option<String>,
    /// The domain of its account (migration 14): what a tenant's change
    /// feed is filtered by, in the query.
    pub account_domain: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
