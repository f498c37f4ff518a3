//! Issuing, introspecting and revoking access tokens (see the module's
//! documentation for what a token is bound to).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::model::{AccessToken, Claims, Grant, Introspection, TokenDigest};
use super::seal::TokenKey;
use super::store::TokenStore;
use crate::domain::shared::error::Result;
use crate::domain::shared::span::as_unit::secs;
use crate::domain::shared::time::Clock;
use crate::domain::tenants::model::Reach;

/// The longest a token may be set to live.
pub const TOKEN_LIFETIME_MAX: Duration = Duration::from_secs(3_600);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// How long an access token lives, in seconds (1 to 3,600). Dovecot
    /// uses its token once, within the login; other clients introspect it
    /// for as long as it lives, so short is safe.
    #[serde(rename = "token_lifetime", alias = "token_lifetime_secs", with = "secs")]
    pub token_lifetime_secs: u64,
    /// A file of at least 32 random bytes, the same on every replica: the
    /// key tokens are sealed with (`seal.rs`). Unset: a key of each
    /// process's own, so only the replica that issued a token reads it.
    pub key_file: Option<PathBuf>,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            token_lifetime_secs: 300,
            key_file: None,
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
        Ok(())
    }

    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(self.token_lifetime_secs)
    }
}

/// Replicas' clocks may disagree by this much: a token another replica
/// issued may carry an issue time this far in this one's future.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Whether a token that opened carries what this code seals: a lifetime
/// within the bound and an issue time not in the future. A token that
/// passes its tag but not this was not sealed here (only a leaked key, or
/// a nonce repeated under it, could make one), and is no token.
fn plausible(claims: &Claims, now: crate::domain::shared::time::Timestamp) -> bool {
    claims.expires_at > claims.issued_at
        && claims.expires_at.since(claims.issued_at) <= TOKEN_LIFETIME_MAX
        && claims.issued_at <= now.saturating_add(CLOCK_SKEW)
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
    lifetime: Duration,
    key: Arc<TokenKey>,
}

impl<S: TokenStore> AccessTokens<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>, lifetime: Duration, key: TokenKey) -> Self {
        Self {
            store,
            clock,
            lifetime,
            key: Arc::new(key),
        }
    }

    /// A token for a login that has just succeeded: sealed, nothing
    /// written.
    pub fn issue(&self, grant: Grant) -> Result<Issued> {
        let now = self.clock.now();
        let token = self.key.seal(&Claims {
            app_password_id: grant.app_password_id,
            protocol: grant.protocol,
            client_ip: grant.client_ip,
            client_id: grant.client_id,
            issued_at: now,
            expires_at: now.saturating_add(self.lifetime),
        })?;
        Ok(Issued {
            token,
            expires_in: self.lifetime,
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
        let now = self.clock.now();
        let Some(claims) = self.live_claims(presented, now) else {
            return Ok(Introspection::Inactive);
        };
        if client_ip.is_some_and(|ip| ip != claims.client_ip) {
            return Ok(Introspection::Inactive);
        }
        let (state, revoked) = self
            .store
            .token_state(claims.app_password_id, &TokenDigest::of(presented))
            .await?;
        let Some(state) = state else {
            return Ok(Introspection::Inactive);
        };
        let password = state.app_password;
        let live = !revoked
            && !state.account_disabled
            && password
                .rules()
                .refusal(now, Some(claims.protocol), Some(claims.client_ip))
                .is_none()
            && reach.reaches(&password.username);
        if !live {
            return Ok(Introspection::Inactive);
        }
        Ok(Introspection::Active {
            username: password.username,
            claims,
        })
    }

    /// Revokes `presented` if it is a live token `client_id` was issued
    /// (RFC 7009), on every replica, until it expires. Any other text, an
    /// expired token or another client's token changes nothing, and the
    /// caller answers alike: a deliberate departure from RFC 7009 §2.1,
    /// which refuses a request for another client's token, so that no
    /// client learns from the answer that a token it holds is another's.
    pub async fn revoke(&self, presented: &str, client_id: &str) -> Result<bool> {
        let Some(claims) = self.live_claims(presented, self.clock.now()) else {
            return Ok(false);
        };
        if claims.client_id != client_id {
            return Ok(false);
        }
        self.store
            .revoke_token(
                &TokenDigest::of(presented),
                claims.app_password_id,
                claims.expires_at,
            )
            .await?;
        Ok(true)
    }

    /// What `presented` carries, if it is a token sealed here, plausible
    /// and unexpired at `now`.
    fn live_claims(
        &self,
        presented: &str,
        now: crate::domain::shared::time::Timestamp,
    ) -> Option<Claims> {
        self.key
            .open(presented)
            .filter(|claims| plausible(claims, now) && claims.expires_at > now)
    }

    /// Forgets revocations of expired tokens, for housekeeping.
    pub async fn prune(&self) -> Result<u64> {
        self.store.prune_revoked_tokens(self.clock.now()).await
    }
}
