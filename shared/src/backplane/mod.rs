//! The backplane seam: everything that crosses processes except the record
//! itself. Durable partitioned command streams with consumer-group semantics,
//! pub/sub channels, partition leases with fencing tokens, agent presence and
//! a cluster-wide throttle. `memory` implements it inside one process for
//! standalone mode; a Redis implementation serves the cluster.
//!
//! Every implementation must pass the suite in `conformance`.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BackplaneError {
    #[error("backplane unavailable: {0}")]
    Unavailable(String),
    #[error("backplane protocol error: {0}")]
    Protocol(String),
}

/// A stream entry as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub partition: u32,
    /// Stream-assigned id, increasing within a partition (`<ms>-<n>` in Redis).
    pub id: String,
    pub payload: Bytes,
    /// How many times this entry has been handed to a consumer, this time
    /// included (1 on first delivery).
    pub deliveries: u32,
}

/// How much work a partition's command stream holds, for monitoring. The
/// three numbers are read together but may be a moment old by the time
/// they are looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamInfo {
    /// Entries the stream holds: undelivered, pending, and (in Redis)
    /// processed ones not yet trimmed.
    pub length: u64,
    /// Entries delivered to a worker and not yet acknowledged.
    pub pending: u64,
    /// Entries appended and not yet delivered to any worker: how far the
    /// workers are behind.
    pub lag: u64,
}

/// Proof of owning a partition. The token grows every time the lease
/// changes hands, so a stale owner can be told apart from the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub partition: u32,
    pub token: u64,
}

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
/// the receiver returned by `Backplane::subscriber`, in publish order per
/// publisher.
#[async_trait]
pub trait Subscriber: Send + Sync {
    /// Returns once the subscription is active: a message published after
    /// this returns is received.
    async fn subscribe(&self, channel: &str) -> Result<(), BackplaneError>;
    async fn unsubscribe(&self, channel: &str) -> Result<(), BackplaneError>;
}

#[async_trait]
pub trait Backplane: Send + Sync + 'static {
    /// Appends a command to partition `partition`; durable once this returns.
    async fn append_command(&self, partition: u32, payload: Bytes) -> Result<(), BackplaneError>;

    /// Reads entries never delivered to any consumer from the given
    /// partitions, waiting up to `block` when there are none: at most `max`
    /// from each partition, every partition with entries getting some.
    /// Entries read stay pending until acked. A read dropped before it
    /// returns loses nothing: what it took reaches the consumer's next read
    /// or stays pending.
    async fn read_new(
        &self,
        partitions: &[u32],
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, BackplaneError>;

    /// Takes over entries of `partition` delivered earlier (to any consumer)
    /// and not acked for at least `min_idle`, oldest first.
    async fn claim_pending(
        &self,
        partition: u32,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackplaneError>;

    /// Marks entries processed; they are never delivered again.
    async fn ack(&self, partition: u32, ids: &[String]) -> Result<(), BackplaneError>;

    /// Moves an entry that keeps failing to the partition's dead-letter
    /// stream and acks it.
    async fn dead_letter(&self, entry: &StreamEntry, reason: &str) -> Result<(), BackplaneError>;

    /// Drops acked entries beyond what is needed; never drops unprocessed ones.
    async fn trim(&self, partition: u32) -> Result<(), BackplaneError>;

    /// The partition's backlog: length, pending and undelivered entries.
    async fn stream_info(&self, partition: u32) -> Result<StreamInfo, BackplaneError>;

    /// Takes the partition's lease if it is free or expired.
    async fn acquire_lease(
        &self,
        partition: u32,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, BackplaneError>;

    /// Extends a lease still held with this token; false if it was lost.
    async fn renew_lease(
        &self,
        lease: Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, BackplaneError>;

    /// Gives a lease up at once so another holder can take it.
    async fn release_lease(&self, lease: Lease, holder: &str) -> Result<(), BackplaneError>;

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

    /// Records that `user_id` is present in `pool` through `instance` (a
    /// gateway) for `ttl` from now.
    async fn presence_heartbeat(
        &self,
        pool: &str,
        user_id: &str,
        instance: &str,
        ttl: Duration,
    ) -> Result<(), BackplaneError>;

    /// Removes `user_id`'s presence through `instance` from `pool` now; the
    /// user stays present through other instances.
    async fn presence_remove(
        &self,
        pool: &str,
        user_id: &str,
        instance: &str,
    ) -> Result<(), BackplaneError>;

    /// Counts distinct users of `pool` present through at least one
    /// instance whose presence has not expired.
    async fn presence_count(&self, pool: &str) -> Result<u64, BackplaneError>;

    /// The distinct users of `pool` present through at least one instance
    /// whose presence has not expired, sorted: who is online now, for the
    /// agent directory (one call per list, however long the list).
    async fn presence_users(&self, pool: &str) -> Result<Vec<String>, BackplaneError>;

    /// True for the first caller per `period` for this key, cluster-wide.
    async fn throttle(&self, key: &str, period: Duration) -> Result<bool, BackplaneError>;

    /// Counts one more call under `key` in a window of `window` that starts
    /// with the first call and returns the count so far, cluster-wide: a
    /// rate limit shared by every gateway (REST writes per user).
    async fn count_in_window(&self, key: &str, window: Duration) -> Result<u64, BackplaneError>;

    /// Cheap liveness probe for readiness checks.
    async fn ping(&self) -> Result<(), BackplaneError>;
}
