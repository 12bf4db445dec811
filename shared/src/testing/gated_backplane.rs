//! A backplane that holds the subscription of chosen channels, or the
//! publications to them, until a test lets them through, and otherwise is
//! the in-process one. It shows what waits behind a slow subscription and
//! what must not (a server whose joins shared one lock would stall every
//! connect behind a single held channel), and what a gateway does between
//! a command and its publication.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use crate::backplane::memory::MemoryBackplane;
use crate::backplane::{
    Backplane, BackplaneError, CommandLog, DeadLetter, Lease, Leases, Presence, PubSub,
    StreamEntry, StreamInfo, Subscriber, SubscriptionEvent, Throttle,
};

/// Which channels are held, and which held operations (subscriptions, or
/// publications, each kind with a gate of its own) are waiting.
#[derive(Default)]
struct Gate {
    held: Mutex<HashSet<String>>,
    /// The channels with an operation waiting at the gate right now.
    waiting: watch::Sender<HashSet<String>>,
}

impl Gate {
    fn holds(&self, channel: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(channel)
    }

    async fn pass(&self, channel: &str) {
        if !self.holds(channel) {
            return;
        }
        self.waiting.send_modify(|waiting| {
            waiting.insert(channel.to_owned());
        });
        let mut changes = self.waiting.subscribe();
        while self.holds(channel) {
            if changes.changed().await.is_err() {
                break;
            }
        }
        self.waiting.send_modify(|waiting| {
            waiting.remove(channel);
        });
    }

    fn hold(&self, channel: &str) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel.to_owned());
    }

    fn release(&self, channel: &str) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(channel);
        // Wakes the waiters so they look again.
        self.waiting.send_modify(|_| {});
    }

    async fn wait_until_waiting(&self, channel: &str, within: Duration) {
        let mut waiting = self.waiting.subscribe();
        let found = tokio::time::timeout(
            within,
            waiting.wait_for(|waiting| waiting.contains(channel)),
        )
        .await;
        assert!(
            matches!(found, Ok(Ok(_))),
            "nothing for {channel} reached the gate within {within:?}"
        );
    }
}

#[derive(Clone, Default)]
pub struct GatedBackplane {
    inner: Arc<MemoryBackplane>,
    subscriptions: Arc<Gate>,
    publications: Arc<Gate>,
}

impl GatedBackplane {
    pub fn new() -> GatedBackplane {
        GatedBackplane::default()
    }

    /// Subscriptions to `channel` wait from now until `release`.
    pub fn hold(&self, channel: &str) {
        self.subscriptions.hold(channel);
    }

    pub fn release(&self, channel: &str) {
        self.subscriptions.release(channel);
    }

    /// Publications to `channel` wait from now until `release_publications`
    /// (a batch waits whole, so its order stays).
    pub fn hold_publications(&self, channel: &str) {
        self.publications.hold(channel);
    }

    pub fn release_publications(&self, channel: &str) {
        self.publications.release(channel);
    }

    /// Returns once a publication to `channel` waits at its gate; panics
    /// after `within`.
    pub async fn wait_until_publication_waiting(&self, channel: &str, within: Duration) {
        self.publications.wait_until_waiting(channel, within).await;
    }

    /// Returns once a subscription to `channel` waits at the gate; panics
    /// after `within`.
    pub async fn wait_until_waiting(&self, channel: &str, within: Duration) {
        self.subscriptions.wait_until_waiting(channel, within).await;
    }
}

struct GatedSubscriber {
    inner: Box<dyn Subscriber>,
    gate: Arc<Gate>,
}

#[async_trait]
impl Subscriber for GatedSubscriber {
    async fn subscribe(&self, channel: &str) -> Result<(), BackplaneError> {
        self.gate.pass(channel).await;
        self.inner.subscribe(channel).await
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BackplaneError> {
        self.inner.unsubscribe(channel).await
    }
}

// Every concern but pub/sub is the in-process backplane's, forwarded.

#[async_trait]
impl CommandLog for GatedBackplane {
    async fn append_command(&self, partition: u32, payload: Bytes) -> Result<(), BackplaneError> {
        self.inner.append_command(partition, payload).await
    }

    async fn read_new(
        &self,
        partitions: &[u32],
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, BackplaneError> {
        self.inner.read_new(partitions, consumer, max, block).await
    }

    async fn claim_pending(
        &self,
        partition: u32,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackplaneError> {
        self.inner
            .claim_pending(partition, consumer, min_idle, max)
            .await
    }

    async fn ack(&self, partition: u32, ids: &[String]) -> Result<(), BackplaneError> {
        self.inner.ack(partition, ids).await
    }

    async fn dead_letter(&self, entry: &StreamEntry, reason: &str) -> Result<(), BackplaneError> {
        self.inner.dead_letter(entry, reason).await
    }

    async fn dead_letters(&self, partition: u32) -> Result<Vec<DeadLetter>, BackplaneError> {
        self.inner.dead_letters(partition).await
    }

    async fn trim(&self, partition: u32) -> Result<(), BackplaneError> {
        self.inner.trim(partition).await
    }

    async fn stream_info(&self, partition: u32) -> Result<StreamInfo, BackplaneError> {
        self.inner.stream_info(partition).await
    }
}

#[async_trait]
impl Leases for GatedBackplane {
    async fn acquire_lease(
        &self,
        partition: u32,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, BackplaneError> {
        self.inner.acquire_lease(partition, holder, ttl).await
    }

    async fn renew_lease(
        &self,
        lease: Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, BackplaneError> {
        self.inner.renew_lease(lease, holder, ttl).await
    }

    async fn release_lease(&self, lease: Lease, holder: &str) -> Result<(), BackplaneError> {
        self.inner.release_lease(lease, holder).await
    }
}

/// Subscribers come wrapped, so their subscriptions pass the gate.
#[async_trait]
impl PubSub for GatedBackplane {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BackplaneError> {
        self.publications.pass(channel).await;
        self.inner.publish(channel, payload).await
    }

    async fn publish_batch(&self, messages: &[(String, Bytes)]) -> Result<(), BackplaneError> {
        for (channel, _) in messages {
            self.publications.pass(channel).await;
        }
        self.inner.publish_batch(messages).await
    }

    async fn subscriber(
        &self,
    ) -> Result<
        (
            Box<dyn Subscriber>,
            mpsc::UnboundedReceiver<SubscriptionEvent>,
        ),
        BackplaneError,
    > {
        let (inner, events) = self.inner.subscriber().await?;
        let gated = GatedSubscriber {
            inner,
            gate: self.subscriptions.clone(),
        };
        Ok((Box::new(gated), events))
    }
}

#[async_trait]
impl Presence for GatedBackplane {
    async fn presence_heartbeat(
        &self,
        pool: &str,
        user_id: &str,
        instance: &str,
        ttl: Duration,
    ) -> Result<(), BackplaneError> {
        self.inner
            .presence_heartbeat(pool, user_id, instance, ttl)
            .await
    }

    async fn presence_remove(
        &self,
        pool: &str,
        user_id: &str,
        instance: &str,
    ) -> Result<(), BackplaneError> {
        self.inner.presence_remove(pool, user_id, instance).await
    }

    async fn presence_count(&self, pool: &str) -> Result<u64, BackplaneError> {
        self.inner.presence_count(pool).await
    }

    async fn presence_users(&self, pool: &str) -> Result<Vec<String>, BackplaneError> {
        self.inner.presence_users(pool).await
    }
}

#[async_trait]
impl Throttle for GatedBackplane {
    async fn throttle(&self, key: &str, period: Duration) -> Result<bool, BackplaneError> {
        self.inner.throttle(key, period).await
    }

    async fn count_in_window(&self, key: &str, window: Duration) -> Result<u64, BackplaneError> {
        self.inner.count_in_window(key, window).await
    }
}

#[async_trait]
impl Backplane for GatedBackplane {
    async fn ping(&self) -> Result<(), BackplaneError> {
        self.inner.ping().await
    }
}
