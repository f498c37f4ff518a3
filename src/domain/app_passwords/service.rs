//! Issuing, reviewing and revoking app passwords.

use std::sync::Arc;

use uuid::Uuid;

use super::model::{
    app_password_not_found, AppPassword, AppPasswordCursor, Expiry, IssueOutcome, IssueRequest,
    Issued, NewAppPassword,
};
use super::store::AppPasswordStore;
use crate::domain::accounts::model::account_not_found;
use crate::domain::accounts::store::AccountStore;
use crate::domain::audit::event::{AuditEvent, EventType};
use crate::domain::secrets::format::Secret;
use crate::domain::secrets::hashing::Hasher;
use crate::domain::shared::error::{Error, Reason, Result};
use crate::domain::shared::page::Page;
use crate::domain::shared::time::{new_id, Clock, Timestamp};
use crate::domain::shared::username::Username;

/// How many times a selector collision is retried before giving up; four
/// collisions in a row would mean the generator is broken.
const SELECTOR_ATTEMPTS: usize = 4;

/// Issuing, reviewing and revoking app passwords; cheap to clone.
#[derive(Clone)]
pub struct AppPasswords<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    store: S,
    hasher: Hasher,
    clock: Arc<dyn Clock>,
    /// Active (unrevoked, unexpired) app passwords one account may hold.
    max_active_per_account: u32,
}

impl<S: AppPasswordStore + AccountStore> AppPasswords<S> {
    pub fn new(
        store: S,
        hasher: Hasher,
        clock: Arc<dyn Clock>,
        max_active_per_account: u32,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                hasher,
                clock,
                max_active_per_account,
            }),
        }
    }

    fn store(&self) -> &S {
        &self.inner.store
    }

    /// The clock the rules run on, for callers that present state "as of
    /// now".
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    pub async fn issue(&self, request: IssueRequest) -> Result<Issued> {
        let now = self.now();
        let expires_at = match request.expiry {
            None => None,
            Some(Expiry::At(at)) if at <= now => {
                return Err(Error::invalid("expire_time", "must be in the future"))
            }
            Some(Expiry::At(at)) => Some(at),
            Some(Expiry::After(ttl)) => Some(
                now.checked_add(ttl)
                    .filter(|at| *at <= Timestamp::LATEST)
                    .ok_or_else(|| Error::invalid("ttl", "must end before the year 10000"))?,
            ),
        };
        if expires_at.is_some_and(|at| at > Timestamp::LATEST) {
            return Err(Error::invalid(
                "expire_time",
                "must be before the year 10000",
            ));
        }
        let cap = self.inner.max_active_per_account;

        // A cheap early refusal, so a disabled or full account costs no
        // hashing; `Store::issue` checks the same again atomically.
        if let Some(account) = self.store().get_account(&request.username, now).await? {
            if account.disabled.is_some() {
                return Err(account_disabled());
            }
            if account.active_app_passwords >= cap {
                return Err(cap_reached(cap));
            }
        }

        for _ in 0..SELECTOR_ATTEMPTS {
            let secret = Secret::generate()?;
            let hasher = &self.inner.hasher;
            let secret_hash = hasher
                .hash(secret.clone(), hasher.default_admission())
                .await?;
            let new = NewAppPassword {
                id: new_id(now),
                username: request.username.clone(),
                selector: secret.selector().to_owned(),
                secret_hash,
                display_name: request.display_name.clone(),
                protocols: request.protocols,
                allowed_networks: request.allowed_networks.clone(),
                issued_by: request.issued_by.clone(),
                created_at: now,
                expires_at,
            };
            let event = AuditEvent::new(EventType::AppPasswordIssued, now, &request.issued_by)
                .app_password(&request.username, new.id)
                .detail(&request.display_name);
            match self.store().issue(new, cap, event).await? {
                IssueOutcome::Issued(app_password) => {
                    return Ok(Issued {
                        app_password: *app_password,
                        secret,
                    })
                }
                IssueOutcome::AccountDisabled => return Err(account_disabled()),
                IssueOutcome::CapReached => return Err(cap_reached(cap)),
                IssueOutcome::SelectorTaken => continue,
            }
        }
        Err(Error::internal("no free selector after repeated attempts"))
    }

    pub async fn get_app_password(&self, username: &Username, id: Uuid) -> Result<AppPassword> {
        self.store()
            .get_app_password(username, id)
            .await?
            .ok_or_else(|| app_password_not_found(username, id))
    }

    pub async fn list_app_passwords(
        &self,
        username: &Username,
        show_revoked: bool,
        after: Option<AppPasswordCursor>,
        limit: u32,
    ) -> Result<Page<AppPassword>> {
        self.store()
            .list_app_passwords(username, show_revoked, after, limit)
            .await?
            .ok_or_else(|| account_not_found(username))
    }

    /// Durable when it returns; every replica refuses the password from then
    /// on, since Authenticate reads the row on every login.
    pub async fn revoke_app_password(
        &self,
        username: &Username,
        id: Uuid,
        reason: &str,
        actor: &str,
    ) -> Result<AppPassword> {
        let event = AuditEvent::new(EventType::AppPasswordRevoked, self.now(), actor)
            .app_password(username, id)
            .detail(reason);
        self.store()
            .revoke_app_password(username, id, reason, event)
            .await?
            .ok_or_else(|| app_password_not_found(username, id))
    }

    pub async fn revoke_account_app_passwords(
        &self,
        username: &Username,
        reason: &str,
        actor: &str,
    ) -> Result<u64> {
        let event = AuditEvent::new(EventType::AccountAppPasswordsRevoked, self.now(), actor)
            .account(username)
            .detail(reason);
        self.store()
            .revoke_account_app_passwords(username, reason, event)
            .await
    }
}

fn account_disabled() -> Error {
    Error::FailedPrecondition(
        Reason::AccountDisabled,
        "the account is disabled".to_owned(),
    )
}

fn cap_reached(cap: u32) -> Error {
    Error::ResourceExhausted(
        Reason::AppPasswordCapReached,
        format!(
            "the account already has the maximum of {cap} active app passwords; revoke one first"
        ),
    )
}
