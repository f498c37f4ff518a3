//! OAuth 2.0 access tokens (issue 27): what `POST /oauth2/token` hands a
//! client after a login succeeds through the password grant, and what
//! `/oauth2/introspect` and `/oauth2/revoke` answer about.
//!
//! A token is a bearer of one login, never more: it carries, sealed
//! (`seal.rs`: AES-256-GCM under a key the replicas share), the app
//! password that signed in, the protocol, the client address, the OAuth
//! client that asked and its expiry, `oauth2.token_lifetime` after issue
//! (5 minutes unless set; at most an hour). It is *active* only while
//! every one of those still holds: unexpired, not revoked by its client,
//! and the password still signs in for that protocol from that address
//! (not revoked, suspended, expired or idle-expired), its account not
//! disabled, and the introspecting client reaching the account. So a
//! revocation, suspension or disablement ends every token of the password
//! at once, on every replica, with nothing to hunt down.
//!
//! Nothing is written when a token is issued: a login through the OAuth
//! door costs what a login through any other door costs (Dovecot asks for
//! a token at every sign-in and never uses it again). What is stored is
//! only what must be shared: a token its client revoked (RFC 7009), as its
//! SHA-256, until it would have expired; housekeeping forgets it then. So
//! the tokens alive at once are bounded by logins × lifetime, and the rows
//! by revocations × lifetime.

pub mod model;
pub mod seal;
pub mod service;
pub mod store;

pub use model::{AccessToken, Claims, Grant, Introspection};
pub use service::{AccessTokens, TokensConfig};
