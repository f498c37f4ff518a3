//! OAuth 2.0 access tokens (issue 27): what `POST /oauth2/token` hands a
//! client after a login succeeds through the password grant, and what
//! `/oauth2/introspect` and `/oauth2/revoke` answer about.
//!
//! A token is a bearer of one login, never more: it is bound to the app
//! password that signed in, the protocol, the client address and the OAuth
//! client that asked, and lives `oauth2.token_lifetime` (5 minutes unless
//! set; at most an hour). It is *active* only while every one of those
//! still holds: the password still signs in for that protocol from that
//! address (not revoked, suspended, expired or idle-expired), its account
//! is not disabled, and the introspecting client reaches the account. So a
//! revocation, suspension or disablement ends every token of the password
//! at once, on every replica, with nothing to hunt down.
//!
//! Tokens are kept in the database (`oauth_token`), so any replica
//! introspects or revokes what another issued, and only as a SHA-256 of
//! the token: 256 random bits need no salt or stretching, and the table
//! signs nobody in. A password keeps at most `oauth2.tokens_per_password`
//! live tokens (its newest; issuing one more drops the oldest), and
//! housekeeping deletes expired rows.

pub mod model;
pub mod service;
pub mod store;

pub use model::{AccessToken, Grant, Introspection};
pub use service::{AccessTokens, TokensConfig};
