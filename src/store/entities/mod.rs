//! sea-orm entities, one per table created in `migrations/`.

pub mod account;
pub mod app_password;
pub mod audit_event;
pub mod auth_throttle;
pub mod caller;
pub mod event_feed;
pub mod oauth_revoked_token;
pub mod tenant;
pub mod tenant_domain;
pub mod webhook_cursor;
