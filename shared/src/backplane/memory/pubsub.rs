//! In-process pub/sub: each subscriber is an event queue registered under
//! the channels it subscribed to.
//!
//! Publishing sends under the lock, so every subscriber sees the messages
//! in the same order whichever tasks published them; a queue whose
//! receiver is gone is forgotten on the next publish to its channels.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{lock, Inner, MemoryBackplane};
use crate::backplane::{BackplaneError, ChannelMessage, PubSub, Subscriber, SubscriptionEvent};

/// channel → subscriber id → that subscriber's event queue.
#[derive(Default)]
pub(super) struct Channels {
    channels: HashMap<String, HashMap<u64, mpsc::UnboundedSender<SubscriptionEvent>>>,
}

impl MemoryBackplane {
    #[cfg(test)]
    pub(super) fn subscription_count(&self) -> usize {
        lock(&self.inner.pubsub)
            .channels
            .values()
            .map(HashMap::len)
            .sum()
    }
}

#[async_trait]
impl PubSub for MemoryBackplane {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BackplaneError> {
        let mut pubsub = lock(&self.inner.pubsub);
        let Some(subscribers) = pubsub.channels.get_mut(channel) else {
            return Ok(());
        };
        subscribers.retain(|_, sender| {
            let event = SubscriptionEvent::Message(ChannelMessage {
                channel: channel.to_owned(),
                payload: payload.clone(),
            });
            // A failed send means the receiver was dropped: forget it.
            sender.send(event).is_ok()
        });
        if subscribers.is_empty() {
            pubsub.channels.remove(channel);
        }
        Ok(())
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
        let (sender, receiver) = mpsc::unbounded_channel();
        let subscriber = MemorySubscriber {
            id: self
                .inner
                .next_subscriber_id
                .fetch_add(1, Ordering::Relaxed),
            inner: Arc::clone(&self.inner),
            sender,
            channels: Mutex::new(HashSet::new()),
        };
        Ok((Box::new(subscriber), receiver))
    }
}

/// A pub/sub connection of the memory backplane: a registration of one
/// event queue under each subscribed channel.
struct MemorySubscriber {
    id: u64,
    inner: Arc<Inner>,
    sender: mpsc::UnboundedSender<SubscriptionEvent>,
    /// What to unregister on drop. Locked before `pubsub` whenever both are
    /// needed, so concurrent calls on one subscriber apply in order.
    channels: Mutex<HashSet<String>>,
}

#[async_trait]
impl Subscriber for MemorySubscriber {
    async fn subscribe(&self, channel: &str) -> Result<(), BackplaneError> {
        let mut channels = lock(&self.channels);
        channels.insert(channel.to_owned());
        // Inserted even if already listed: a publish may have dropped the
        // registration after the receiver closed. Keyed by subscriber id, so
        // subscribing twice still delivers once.
        lock(&self.inner.pubsub)
            .channels
            .entry(channel.to_owned())
            .or_default()
            .insert(self.id, self.sender.clone());
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BackplaneError> {
        let mut channels = lock(&self.channels);
        channels.remove(channel);
        let mut pubsub = lock(&self.inner.pubsub);
        if let Some(subscribers) = pubsub.channels.get_mut(channel) {
            subscribers.remove(&self.id);
            if subscribers.is_empty() {
                pubsub.channels.remove(channel);
            }
        }
        Ok(())
    }
}

impl Drop for MemorySubscriber {
    fn drop(&mut self) {
        let channels = std::mem::take(&mut *lock(&self.channels));
        let mut pubsub = lock(&self.inner.pubsub);
        for channel in channels {
            if let Some(subscribers) = pubsub.channels.get_mut(&channel) {
                subscribers.remove(&self.id);
                if subscribers.is_empty() {
                    pubsub.channels.remove(&channel);
                }
            }
        }
    }
}
