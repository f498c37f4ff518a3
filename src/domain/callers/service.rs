//! Managing and recognising latchkey's own callers.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::cache::{CachedCaller, CallerCache, CallerCacheConfig, CredentialId};
use super::key::CallerKey;
use super::model::{
    Caller, CreateCallerOutcome, NewCaller, Recognised, Role, RotateKeyOutcome,
    ROTATION_OVERLAP_MAX,
};
use super::store::CallerStore;
use crate::domain::audit::event::{Actor, AuditEvent, EventType};
use crate::domain::shared::error::{Error, Reason, Result};
use crate::domain::shared::page::Page;
use crate::domain::shared::time::{Clock, Timestamp};
use crate::domain::tenants::model::Reach;

/// A caller's `last_used_at` is refreshed at most this often, so that
/// recognising a caller on every request does not also write on every
/// request.
const LAST_USED_RESOLUTION: Duration = Duration::from_secs(60);

/// Recognising callers (for the authentication layer) and managing them
/// (for CallerService and the CLI), over one caller cache so that a
/// revocation here drops the cached row at once; cheap to clone.
#[derive(Clone)]
pub struct Callers<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    store: S,
    clock: Arc<dyn Clock>,
    cache: CallerCache,
}

impl<S: CallerStore> Callers<S> {
    pub fn new(store: S, clock: Arc<dyn Clock>, cache: CallerCacheConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                cache: CallerCache::new(cache),
            }),
        }
    }

    fn store(&self) -> &S {
        &self.inner.store
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// The caller a presented bearer key belongs to, if it is valid, not
    /// revoked or expired (nor, for a key a rotation replaced, past its
    /// overlap), and `peer` (the connection's address) is among its
    /// allowed networks. The caller's row comes from the caller cache when
    /// it was read within its TTL; every check runs either way. A key
    /// refused for any of these is answered as an unknown one: a stolen
    /// key used from elsewhere learns nothing of itself.
    pub async fn caller_by_key(
        &self,
        presented: &str,
        peer: Option<IpAddr>,
    ) -> Result<Option<Recognised>> {
        let Some(key) = CallerKey::parse(presented) else {
            return Ok(None);
        };
        let now = self.now();
        let id = CredentialId::KeyId(key.key_id().to_owned());
        let read = || async {
            let Some(stored) = self.store().caller_by_key_id(key.key_id()).await? else {
                return Ok(None);
            };
            let reach = self.reach_of(&stored.caller).await?;
            Ok(Some(CachedCaller {
                caller: stored.caller,
                key_digest: Some(stored.key_digest),
                key_expires_at: stored.key_expires_at,
                reach,
            }))
        };
        let Some(cached) = self.cached_caller(id, now, read).await? else {
            return Ok(None);
        };
        // The caller's own address first: a key used from elsewhere is
        // not compared at all.
        if !from_allowed_network(&cached.caller, peer) {
            return Ok(None);
        }
        let key_matches = cached
            .key_digest
            .as_deref()
            .is_some_and(|digest| key.matches(digest));
        let key_alive = cached.key_expires_at.is_none_or(|until| now < until);
        if !key_matches || !key_alive || !cached.caller.usable_at(now) {
            return Ok(None);
        }
        self.touch(&cached.caller, peer, now).await;
        Ok(Some(Recognised {
            caller: cached.caller,
            reach: cached.reach,
        }))
    }

    /// What `caller` reaches: everything, or its tenant's domains as
    /// stored now.
    async fn reach_of(&self, caller: &Caller) -> Result<Reach> {
        let Some(tenant) = &caller.tenant else {
            return Ok(Reach::Deployment);
        };
        let domains = self.store().tenant_domains(tenant).await?;
        Ok(Reach::Tenant {
            name: tenant.clone(),
            domains: Arc::from(domains),
        })
    }

    /// The caller a verified TLS client certificate maps to: the one caller
    /// whose TLS identity is among the certificate's identities (subject
    /// CN, SANs). A certificate that names two callers is refused: which
    /// one it means cannot be told, and picking one would grant a role
    /// nobody chose.
    pub async fn caller_by_tls_identities(
        &self,
        identities: &[String],
        peer: Option<IpAddr>,
    ) -> Result<Option<Recognised>> {
        if identities.is_empty() {
            return Ok(None);
        }
        let now = self.now();
        let id = CredentialId::Certificate(identities.to_vec());
        let read = || async {
            let mut callers = self.store().callers_by_tls_identity(identities).await?;
            if callers.len() > 1 {
                tracing::warn!(
                    callers = ?callers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
                    "a client certificate names more than one caller; refused"
                );
                return Ok(None);
            }
            let Some(caller) = callers.pop() else {
                return Ok(None);
            };
            let reach = self.reach_of(&caller).await?;
            Ok(Some(CachedCaller {
                caller,
                key_digest: None,
                key_expires_at: None,
                reach,
            }))
        };
        let Some(CachedCaller { caller, reach, .. }) = self.cached_caller(id, now, read).await?
        else {
            return Ok(None);
        };
        if !from_allowed_network(&caller, peer) || !caller.usable_at(now) {
            return Ok(None);
        }
        self.touch(&caller, peer, now).await;
        Ok(Some(Recognised { caller, reach }))
    }

    /// The caller's row for `id` from the caller cache if it was read
    /// within its TTL; otherwise `read` from the store and remembered.
    async fn cached_caller<F, Fut>(
        &self,
        id: CredentialId,
        now: Timestamp,
        read: F,
    ) -> Result<Option<CachedCaller>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<CachedCaller>>>,
    {
        if let Some(cached) = self.inner.cache.get(&id, now) {
            return Ok(Some(cached));
        }
        let Some(cached) = read().await? else {
            return Ok(None);
        };
        self.inner.cache.put(id, cached.clone(), now);
        Ok(Some(cached))
    }

    /// Records the caller's last use, at most once per resolution. Best
    /// effort: a failed write is logged and the request goes on, since
    /// who the caller is was already established.
    async fn touch(&self, caller: &Caller, peer: Option<IpAddr>, now: Timestamp) {
        let stale = caller
            .last_used_at
            .is_none_or(|at| now.since(at) >= LAST_USED_RESOLUTION)
            || (peer.is_some() && caller.last_used_ip != peer);
        if stale {
            self.inner.cache.touched(&caller.name, now, peer);
            if let Err(error) = self.store().touch_caller(&caller.name, now, peer).await {
                tracing::warn!(caller = %caller.name, %error, "recording a caller's last use failed");
            }
        }
    }

    /// Creates a caller; the key is returned once and only its digest kept.
    /// A tenant scopes it to that tenant's domains; operators are
    /// deployment-wide, never scoped (they manage tenants and callers,
    /// which belong to no tenant), and so are reporters (a leak report
    /// names passwords by their secrets alone, in any tenant).
    pub async fn create_caller(
        &self,
        new: NewCaller,
        actor: &Actor,
    ) -> Result<(Caller, CallerKey)> {
        if new.tenant.is_some() && matches!(new.role, Role::Operator | Role::Reporter) {
            return Err(Error::invalid(
                "tenant",
                format!(
                    "{} is deployment-wide and cannot be scoped to a tenant; \
                     scope an issuer, authenticator or notifier",
                    match new.role {
                        Role::Reporter => "a reporter (it names passwords by secret alone)",
                        _ => "an operator",
                    }
                ),
            ));
        }
        if new.limits.expires_at.is_some_and(|at| at <= self.now()) {
            return Err(Error::invalid("expire_time", "must be in the future"));
        }
        let key = CallerKey::generate()?;
        let caller = self.create_with_key(new, &key, actor).await?;
        Ok((caller, key))
    }

    /// Makes sure an operator exists for the key an automated deployment
    /// provides (`callers.bootstrap_operator_key_file`): created as
    /// `name` on the first start, left as it is on every later one.
    /// Returns whether it was created. A caller of that name with another
    /// key is not replaced: that needs a person.
    pub async fn bootstrap_operator(
        &self,
        name: &str,
        key: &CallerKey,
        actor: &Actor,
    ) -> Result<bool> {
        if let Some(stored) = self.store().caller_by_key_id(key.key_id()).await? {
            if key.matches(&stored.key_digest) && stored.caller.name == name {
                return Ok(false);
            }
            return Err(Error::FailedPrecondition(
                Reason::BootstrapKeyConflict,
                format!("the bootstrap key's id is taken by another caller than {name}"),
            ));
        }
        match self
            .create_with_key(NewCaller::plain(name.to_owned(), Role::Operator), key, actor)
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::AlreadyExists(..)) => Err(Error::FailedPrecondition(
                Reason::BootstrapKeyConflict,
                format!(
                    "callers/{name} exists with another key; revoke it, or bootstrap under another name"
                ),
            )),
            Err(error) => Err(error),
        }
    }

    async fn create_with_key(
        &self,
        new: NewCaller,
        key: &CallerKey,
        actor: &Actor,
    ) -> Result<Caller> {
        let NewCaller {
            name,
            role,
            tls_identity,
            tenant,
            limits,
        } = new;
        let now = self.now();
        let caller = Caller {
            name: name.clone(),
            role,
            tls_identity,
            created_at: now,
            created_by: actor.name.clone(),
            last_used_at: None,
            revoked_at: None,
            tenant: tenant.clone(),
            expires_at: limits.expires_at,
            allowed_networks: limits.allowed_networks,
            last_used_ip: None,
            previous_key_expires_at: None,
        };
        let detail = match &tenant {
            Some(tenant) => format!("{role} tenants/{tenant}"),
            None => role.as_str().to_owned(),
        };
        let mut event = AuditEvent::new(EventType::CallerCreated, now, actor).detail(detail);
        event.caller_name = Some(name.clone());
        match self
            .store()
            .create_caller(caller, key.key_id(), &key.digest(), event)
            .await?
        {
            CreateCallerOutcome::Created(caller) => Ok(*caller),
            CreateCallerOutcome::NameTaken => Err(Error::AlreadyExists(
                Reason::CallerNameTaken,
                format!("callers/{name} already exists"),
            )),
            CreateCallerOutcome::TlsIdentityTaken => Err(Error::AlreadyExists(
                Reason::TlsIdentityTaken,
                "another caller already has this TLS identity".to_owned(),
            )),
            CreateCallerOutcome::TenantNotFound => Err(Error::NotFound {
                reason: Reason::TenantNotFound,
                resource: format!("tenants/{}", tenant.unwrap_or_default()),
            }),
        }
    }

    pub async fn list_callers(&self, after: Option<&str>, limit: u32) -> Result<Page<Caller>> {
        self.store().list_callers(after, limit).await
    }

    /// Gives the caller a new key, returned once. The old key keeps
    /// working for `overlap` (at most [`ROTATION_OVERLAP_MAX`]; zero ends
    /// it at once), so a service can roll the new one out to its replicas
    /// with no window without a valid key; then it dies. A key rotated
    /// before its predecessor's overlap ended ends that one at once.
    pub async fn rotate_key(
        &self,
        name: &str,
        overlap: Duration,
        actor: &Actor,
    ) -> Result<(Caller, CallerKey)> {
        if overlap > ROTATION_OVERLAP_MAX {
            return Err(Error::invalid(
                "overlap",
                format!(
                    "must be at most {} hours",
                    ROTATION_OVERLAP_MAX.as_secs() / 3600
                ),
            ));
        }
        let now = self.now();
        let key = CallerKey::generate()?;
        let old_until = now.saturating_add(overlap);
        let mut event = AuditEvent::new(EventType::CallerKeyRotated, now, actor)
            .detail(format!("old key works until {}", old_until.to_rfc3339()));
        event.caller_name = Some(name.to_owned());
        let outcome = self
            .store()
            .rotate_caller_key(name, key.key_id(), &key.digest(), old_until, event)
            .await?;
        self.inner.cache.forget(name);
        match outcome {
            RotateKeyOutcome::Rotated(caller) => Ok((*caller, key)),
            RotateKeyOutcome::NotFound => Err(Error::NotFound {
                reason: Reason::CallerNotFound,
                resource: format!("callers/{name}"),
            }),
            RotateKeyOutcome::Revoked => Err(Error::FailedPrecondition(
                Reason::CallerRevoked,
                format!("callers/{name} is revoked; create a new caller"),
            )),
        }
    }

    /// Effective at once on this replica, and on every other once its
    /// cached copy of the caller's row is older than the caller cache's TTL.
    pub async fn revoke_caller(&self, name: &str, actor: &Actor) -> Result<Caller> {
        let mut event = AuditEvent::new(EventType::CallerRevoked, self.now(), actor);
        event.caller_name = Some(name.to_owned());
        let revoked = self.store().revoke_caller(name, event).await?;
        self.inner.cache.forget(name);
        revoked.ok_or_else(|| Error::NotFound {
            reason: Reason::CallerNotFound,
            resource: format!("callers/{name}"),
        })
    }
}

/// Whether `peer` may use `caller`: any address when it lists no
/// networks; otherwise only one of them, and never an unknown address.
fn from_allowed_network(caller: &Caller, peer: Option<IpAddr>) -> bool {
    if caller.allowed_networks.is_unrestricted() {
        return true;
    }
    let allowed = peer.is_some_and(|peer| caller.allowed_networks.permits(peer));
    if !allowed {
        tracing::warn!(
            caller = %caller.name,
            peer = ?peer,
            "a caller's credential was used from outside its allowed networks; refused"
        );
    }
    allowed
}
