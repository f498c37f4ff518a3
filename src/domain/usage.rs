//! Recording what a successful login used: the last-used fields and use
//! count on the app password, and the audit events a success earns (its
//! first use, and its first use from a new network). The common case goes
//! to the usage buffer and is written in batches; see `usage_buffer`.

use super::audit::{AuditEvent, EventType};
use super::error::Result;
use super::network::SeenNetworks;
use super::store::{Credential, Store, Usage};
use super::usage_buffer::{PendingUse, UsageConfig};
use super::Latchkey;

impl<S: Store> Latchkey<S> {
    /// Records a success's usage: at once when it earns an audit event (or
    /// coalescing is off), else in the usage buffer, which a background task
    /// writes once per interval.
    pub(super) async fn record_use(
        &self,
        credential: &Credential,
        usage: Usage,
        actor: &str,
    ) -> Result<()> {
        let (seen_networks, events) = self.success_events(credential, &usage, actor);
        let buffer = &self.inner.usage;
        if seen_networks.is_none() && buffer.config().flush_interval().is_some() {
            buffer.add(credential.app_password_id, PendingUse::one(usage));
            return Ok(());
        }
        self.store()
            .record_use(
                credential.app_password_id,
                PendingUse::one(usage),
                seen_networks,
                events,
            )
            .await
    }

    /// Writes the usage gathered in the buffer, in transactions of a few
    /// hundred rows: each is one commit for many rows, and none holds
    /// SQLite's write lock long enough to stall a login's write. What a
    /// failure leaves unwritten is kept for the next flush. Returns how many
    /// app passwords were written.
    pub async fn flush_usage(&self) -> Result<usize> {
        const PER_TRANSACTION: usize = 256;
        let batch = self.inner.usage.take();
        let mut written = 0;
        for chunk in batch.chunks(PER_TRANSACTION) {
            if let Err(error) = self.store().record_uses(chunk).await {
                self.inner.usage.put_back(batch[written..].to_vec());
                return Err(error);
            }
            written += chunk.len();
        }
        Ok(written)
    }

    /// How coalescing is configured, for the task that flushes.
    pub fn usage_config(&self) -> UsageConfig {
        self.inner.usage.config()
    }

    /// Resolves when the usage buffer has filled and should be flushed early.
    pub async fn usage_buffer_filled(&self) {
        self.inner.usage.filled().await;
    }

    /// The audit events a success earns: the password's first use, or its
    /// first success from a network it was not used from before (the first
    /// use is from a new network by definition, so it is one event, not two).
    /// `None` and no events when nothing is new, which is the common case
    /// and then costs no extra write.
    fn success_events(
        &self,
        credential: &Credential,
        usage: &Usage,
        actor: &str,
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
}
