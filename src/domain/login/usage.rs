//! Recording what a successful login used: the last-used fields and use
//! count on the app password, and the audit events a success earns (its
//! first use, and its first use from a new network).
//!
//! The usage writes are coalesced.
//! A mail client that reconnects every few seconds would otherwise cost a
//! row write per login, and on SQLite every write queues behind every other.
//! Instead, each success is added here (the latest time, address and
//! protocol, and a count) and a background task writes what has gathered
//! once per interval, in batches, so each app password's row is written at
//! most once per interval however often it is used. A stop flushes what is
//! left; a failed flush puts its batch back to be tried again.
//!
//! What is given up: the last-used fields and use count shown for review
//! may lag by up to one interval, and a process killed outright (not
//! stopped) loses at most one interval of them. Nothing that decides a login
//! is deferred: first use and use from a new network (which are audited)
//! are still written at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::shared::span::as_unit::secs;
use tokio::sync::Notify;
use uuid::Uuid;

use super::model::{Credential, Usage, Warm};
use crate::domain::audit::event::{Actor, AuditEvent, EventType};
use crate::domain::shared::network::SeenNetworks;
use crate::domain::shared::sync::lock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageConfig {
    /// Usage of one app password is written at most once per this many
    /// seconds; 0 writes every login's usage at once, on its request path.
    #[serde(rename = "flush_interval", alias = "flush_interval_secs", with = "secs")]
    pub flush_interval_secs: u64,
    /// When this many app passwords have usage waiting, it is written
    /// early rather than held in memory.
    pub max_pending: usize,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            flush_interval_secs: 60,
            max_pending: 100_000,
        }
    }
}

impl UsageConfig {
    pub fn flush_interval(&self) -> Option<Duration> {
        (self.flush_interval_secs > 0).then(|| Duration::from_secs(self.flush_interval_secs))
    }
}

/// The usage of one app password gathered since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUse {
    /// The most recent login.
    pub last: Usage,
    /// Logins since the last flush.
    pub count: u32,
    /// A warm verifier to store (`login/warm.rs`), written with the usage.
    pub warm: Option<Warm>,
}

impl PendingUse {
    pub fn one(usage: Usage, warm: Option<Warm>) -> Self {
        Self {
            last: usage,
            count: 1,
            warm,
        }
    }

    fn absorb(&mut self, other: PendingUse) {
        if other.last.at >= self.last.at {
            self.last = other.last;
        }
        self.count = self.count.saturating_add(other.count);
        let newer = match (&self.warm, &other.warm) {
            (Some(mine), Some(theirs)) => theirs.until > mine.until,
            (None, Some(_)) => true,
            _ => false,
        };
        if newer {
            self.warm = other.warm;
        }
    }
}

#[derive(Debug)]
pub struct UsageBuffer {
    config: UsageConfig,
    pending: Mutex<HashMap<Uuid, PendingUse>>,
    /// Woken when `max_pending` is reached.
    full: Notify,
}

impl UsageBuffer {
    pub fn new(config: UsageConfig) -> Self {
        Self {
            config,
            pending: Mutex::new(HashMap::new()),
            full: Notify::new(),
        }
    }

    pub fn config(&self) -> UsageConfig {
        self.config
    }

    /// Adds usage to be written later.
    pub fn add(&self, id: Uuid, usage: PendingUse) {
        let mut pending = self.lock();
        match pending.get_mut(&id) {
            Some(existing) => existing.absorb(usage),
            None => {
                pending.insert(id, usage);
            }
        }
        if pending.len() >= self.config.max_pending {
            self.full.notify_one();
        }
    }

    /// Takes everything gathered so far, in the order of the passwords'
    /// ids: the order the store updates rows in (`UsageStore::record_uses`),
    /// so each transaction of a flush is a range of it.
    pub fn take(&self) -> Vec<(Uuid, PendingUse)> {
        let mut batch: Vec<(Uuid, PendingUse)> = self.lock().drain().collect();
        batch.sort_unstable_by_key(|(id, _)| *id);
        batch
    }

    /// Puts back a batch whose write failed, merged with what came since.
    pub fn put_back(&self, batch: Vec<(Uuid, PendingUse)>) {
        for (id, usage) in batch {
            self.add(id, usage);
        }
    }

    /// Resolves when the buffer has filled up and should be written early.
    pub async fn filled(&self) {
        self.full.notified().await;
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, PendingUse>> {
        lock(&self.pending)
    }
}

/// The audit events a success earns: the password's first use, or its
/// first success from a network it was not used from before (the first
/// use is from a new network by definition, so it is one event, not two),
/// with the password's seen networks as they become. `None` and no events
/// when nothing is new, which is the common case and then costs no extra
/// write.
pub fn success_events(
    credential: &Credential,
    usage: &Usage,
    actor: &Actor,
) -> (Option<SeenNetworks>, Vec<AuditEvent>) {
    let network = SeenNetworks::network_of(usage.client_ip);
    let event_type = if credential.use_count == 0 {
        EventType::AppPasswordFirstUse
    } else if !credential.seen_networks.contains(&network) {
        EventType::AppPasswordNewNetwork
    } else {
        return (None, Vec::new());
    };
    let mut event = AuditEvent::new(event_type, usage.at, actor)
        .app_password(&credential.username, credential.app_password_id)
        .detail(network.to_string());
    event.client_ip = Some(usage.client_ip);
    event.protocol = Some(usage.protocol);
    (Some(credential.seen_networks.with(network)), vec![event])
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::domain::shared::protocol::Protocol;
    use crate::domain::shared::time::Timestamp;

    fn usage(at: i64, last_octet: u8) -> PendingUse {
        PendingUse::one(
            Usage {
                at: Timestamp::from_millis(at),
                client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, last_octet)),
                protocol: Protocol::Imap,
                client: None,
            },
            None,
        )
    }

    #[test]
    fn logins_of_one_password_coalesce_into_the_latest_and_a_count() {
        let buffer = UsageBuffer::new(UsageConfig::default());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        buffer.add(a, usage(2, 2));
        buffer.add(a, usage(1, 1));
        buffer.add(a, usage(3, 3));
        buffer.add(b, usage(5, 5));
        let mut batch = buffer.take();
        batch.sort_by_key(|(id, _)| *id);
        assert_eq!(
            batch,
            vec![(a, usage(3, 3).with_count(3)), (b, usage(5, 5))]
        );
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_batch_put_back_merges_with_what_came_since() {
        let buffer = UsageBuffer::new(UsageConfig::default());
        let id = Uuid::now_v7();
        buffer.add(id, usage(1, 1));
        let failed = buffer.take();
        buffer.add(id, usage(4, 4));
        buffer.put_back(failed);
        assert_eq!(buffer.take(), vec![(id, usage(4, 4).with_count(2))]);
    }

    impl PendingUse {
        fn with_count(mut self, count: u32) -> Self {
            self.count = count;
            self
        }
    }
}
