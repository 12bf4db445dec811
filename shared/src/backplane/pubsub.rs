//! Pub/sub channels: how replies and events reach the gateways.
//!
//! Fire-and-forget, unlike the command streams: a subscriber that is not
//! connected misses what is published, and is told when that may have
//! happened (`Resubscribed`) so it can repair from the store.

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::BackplaneError;

/// A message received on a subscribed channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMessage {
    pub channel: String,
    pub payload: Bytes,
}

/// Signals from a subscription besides messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionEvent {
    Message(ChannelMessage),
    /// The subscription was re-established after a loss (reconnect): some
    /// messages may have been missed, so listeners repair what they can.
    Resubscribed,
}

/// One pub/sub connection. Messages of every subscribed channel arrive on
/// the receiver returned by `PubSub::subscriber`, in publish order per
/// publisher.
#[async_trait]
pub trait Subscriber: Send + Sync {
    /// Returns once the subscription is active: a message published after
    /// this returns is received.
    async fn subscribe(&self, channel: &str) -> Result<(), BackplaneError>;
    async fn unsubscribe(&self, channel: &str) -> Result<(), BackplaneError>;
}

#[async_trait]
pub trait PubSub: Send + Sync {
    /// Publishes to a channel; returns once sent (no delivery guarantee to
    /// subscribers that are not connected).
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BackplaneError>;

    /// Publishes several messages, received by each subscriber in the
    /// order given. Implementations send them in one round trip where they
    /// can; this default publishes them one after the other.
    async fn publish_batch(&self, messages: &[(String, Bytes)]) -> Result<(), BackplaneError> {
        for (channel, payload) in messages {
            self.publish(channel, payload.clone()).await?;
        }
        Ok(())
    }

    /// Opens a pub/sub connection; its events arrive on the receiver.
    async fn subscriber(
        &self,
    ) -> Result<
        (
            Box<dyn Subscriber>,
            mpsc::UnboundedReceiver<SubscriptionEvent>,
        ),
        BackplaneError,
    >;
}
