//! Issuing, introspecting and revoking access tokens (see the module's
//! documentation for what a token is bound to).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::model::{AccessToken, Grant, Introspection, StoredToken, TokenDigest};
use super::store::TokenStore;
use crate::domain::shared::error::Result;
use crate::domain::shared::span::as_unit::secs;
use crate::domain::shared::time::Clock;
use crate::domain::tenants::model::Reach;

/// The longest a token may be set to live.
pub const TOKEN_LIFETIME_MAX: Duration = Duration::from_secs(3_600);
/// The most live tokens a password may be set to keep.
pub const TOKENS_PER_PASSWORD_MAX: u32 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// How long an access token lives, in seconds (1 to 3,600). Dovecot
    /// uses its token once, within the login; other clients introspect it
    /// for as long as it lives, so short is safe.
    #[serde(rename = "token_lifetime", alias = "token_lifetime_secs", with = "secs")]
    pub token_lifetime_secs: u64,
    /// Live tokens one app password keeps at most: its newest. A device
    /// signing in every few minutes never needs more than a handful.
    pub tokens_per_password: u32,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            token_lifetime_secs: 300,
            tokens_per_password: 16,
        }
    }
}

impl TokensConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.token_lifetime_secs == 0 || self.token_lifetime_secs > TOKEN_LIFETIME_MAX.as_secs()
        {
            return Err(format!(
                "oauth2.token_lifetime must be 1s to {}s",
                TOKEN_LIFETIME_MAX.as_secs()
            ));
        }
        if self.tokens_per_password == 0 || self.tokens_per_password > TOKENS_PER_PASSWORD_MAX {
            return Err(format!(
                "oauth2.tokens_per_password must be 1 to {TOKENS_PER_PASSWORD_MAX}"
            ));
        }
        Ok(())
    }

    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(self.token_lifetime_secs)
    }
}

/// A token just issued, for its one answer.
#[derive(Debug)]
pub struct Issued {
    pub token: AccessToken,
    pub expires_in: Duration,
}

#[derive(Clone)]
pub struct AccessTokens<S> {
    store: S,
    clock: Arc<dyn Clock>,
    config: TokensConfig,
}

impl<S: TokenStore> AccessTokens<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>, config: TokensConfig) -> Self {
        Self {
            store,
            clock,
            config,
        }
    }

    /// A token for a login that has just succeeded.
    pub async fn issue(&self, grant: Grant) -> Result<Issued> {
        let token = AccessToken::generate()?;
        let now = self.clock.now();
        let lifetime = self.config.lifetime();
        self.store
            .insert_token(
                StoredToken {
                    digest: token.digest(),
                    app_password_id: grant.app_password_id,
                    protocol: grant.protocol,
                    client_ip: grant.client_ip,
                    client_id: grant.client_id,
                    issued_at: now,
                    expires_at: now.saturating_add(lifetime),
                },
                self.config.tokens_per_password,
            )
            .await?;
        Ok(Issued {
            token,
            expires_in: lifetime,
        })
    }

    /// Whether `presented` is a live token, asked by a client that reaches
    /// `reach`, for the client address `client_ip` when the asker names
    /// one. Active only while the login it was issued for would still
    /// pass: see the module's documentation.
    pub async fn introspect(
        &self,
        presented: &str,
        reach: &Reach,
        client_ip: Option<IpAddr>,
    ) -> Result<Introspection> {
        let Some(digest) = TokenDigest::of_presented(presented) else {
            return Ok(Introspection::Inactive);
        };
        let Some(state) = self.store.token_state(&digest).await? else {
            return Ok(Introspection::Inactive);
        };
        let now = self.clock.now();
        let token = state.token;
        let password = state.app_password;
        let live = token.expires_at > now
            && !state.account_disabled
            && password
                .rules()
                .refusal(now, Some(token.protocol), Some(token.client_ip))
                .is_none()
            && reach.reaches(&password.username)
            && client_ip.is_none_or(|ip| ip == token.client_ip);
        if !live {
            return Ok(Introspection::Inactive);
        }
        Ok(Introspection::Active {
            username: password.username,
            protocol: token.protocol,
            client_id: token.client_id,
            client_ip: token.client_ip,
            issued_at: token.issued_at,
            expires_at: token.expires_at,
        })
    }

    /// Revokes `presented` if `client_id` was issued it (RFC 7009). Any
    /// other text, a token already gone, or another client's token changes
    /// nothing, and the caller answers alike.
    pub async fn revoke(&self, presented: &str, client_id: &str) -> Result<bool> {
        let Some(digest) = TokenDigest::of_presented(presented) else {
            return Ok(false);
        };
        self.store.delete_token(&digest, client_id).await
    }

    /// Deletes expired tokens, for housekeeping.
    pub async fn prune(&self) -> Result<u64> {
        self.store.prune_tokens(self.clock.now()).await
    }
}
