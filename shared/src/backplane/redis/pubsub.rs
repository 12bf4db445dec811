//! Pub/sub: PUBLISH on the shared pool, and one dedicated connection per
//! subscriber. On a Redis Cluster the sharded forms (SPUBLISH, SSUBSCRIBE):
//! a channel lives on the shard that owns its slot, so a message crosses
//! one shard instead of every node, and a subscriber holds one connection
//! per master whatever the number of channels.
//!
//! A connection in subscribed mode can do nothing else, so each
//! `subscriber()` opens a fred `SubscriberClient` of its own. Two tasks
//! serve it: one forwards its messages to the listener's queue, the other
//! restores the subscriptions after fred reconnected (a failover is a
//! reconnect to the promoted replica) or a subscribed slot moved to
//! another master, and then tells the listener `Resubscribed`, because whatever was
//! published meanwhile is gone and only the listener can repair it (the
//! gateway reads history). A listener that fell behind the connection's
//! buffer is told the same, for the same reason.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use fred::bytes_utils::Str;
use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, ClusterInterface, EventInterface, PubsubInterface};
use fred::types::config::{Options, Server};
use fred::types::{ClusterHash, Message};
use fred::util::{group_by_hash_slot, redis_keyslot};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{map_error, spawn_detached, Inner};
use crate::backplane::{BackplaneError, ChannelMessage, Subscriber, SubscriptionEvent};

/// Bounds of the pause between attempts to restore subscriptions after a
/// reconnect that was followed by a failure.
const RESUBSCRIBE_RETRY_MIN: Duration = Duration::from_millis(100);
const RESUBSCRIBE_RETRY_MAX: Duration = Duration::from_secs(2);

/// How often a subscriber on a Redis Cluster reads the slots' owners, to
/// notice a subscribed channel's slot moving to another master: one
/// CLUSTER SLOTS per subscriber per period.
const SLOT_CHECK: Duration = Duration::from_secs(2);

type Events = mpsc::UnboundedSender<SubscriptionEvent>;

impl Inner {
    pub(super) async fn publish(
        &self,
        channel: &str,
        payload: Bytes,
    ) -> Result<(), BackplaneError> {
        let client = self.pool.next();
        let published = if self.clustered {
            client.spublish::<(), _, _>(channel, payload).await
        } else {
            client.publish::<(), _, _>(channel, payload).await
        };
        published.map_err(map_error)
    }

    /// One pipeline on one connection: Redis runs the publishes in the
    /// order sent, so subscribers see them in that order, for the cost of a
    /// single round trip. On a cluster the pipeline is split by shard; the
    /// order holds per channel, which always lives on one shard.
    pub(super) async fn publish_batch(
        &self,
        messages: &[(String, Bytes)],
    ) -> Result<(), BackplaneError> {
        if messages.is_empty() {
            return Ok(());
        }
        let pipeline = self.pool.next().pipeline();
        for (channel, payload) in messages {
            let queued = if self.clustered {
                pipeline
                    .spublish::<(), _, _>(channel.as_str(), payload.clone())
                    .await
            } else {
                pipeline
                    .publish::<(), _, _>(channel.as_str(), payload.clone())
                    .await
            };
            queued.map_err(map_error)?;
        }
        pipeline.all::<Vec<i64>>().await.map_err(map_error)?;
        Ok(())
    }

    pub(super) async fn subscriber(
        &self,
    ) -> Result<(RedisSubscriber, mpsc::UnboundedReceiver<SubscriptionEvent>), BackplaneError> {
        let client = self
            .subscriber_builder
            .build_subscriber_client()
            .map_err(map_error)?;
        // The returned handle only reports the end of the connection task.
        let _connection = client.init().await.map_err(map_error)?;
        // Taken after the first connection, whose own "reconnect" event has
        // been sent by then: only later reconnections are reported.
        let messages = client.message_rx();
        let reconnects = client.reconnect_rx();
        let (sender, receiver) = mpsc::unbounded_channel();
        let clustered = self.clustered;
        let owners = ShardOwners::default();
        let tasks = [
            tokio::spawn(forward_messages(messages, sender.clone())),
            tokio::spawn(restore_after_reconnect(
                client.clone(),
                clustered,
                owners.clone(),
                reconnects,
                sender,
            )),
        ];
        Ok((
            RedisSubscriber {
                client,
                clustered,
                owners,
                tasks,
            },
            receiver,
        ))
    }
}

/// A pub/sub connection of its own. Dropping it closes the connection.
pub(super) struct RedisSubscriber {
    client: SubscriberClient,
    /// Sharded subscriptions (SSUBSCRIBE) on a Redis Cluster.
    clustered: bool,
    /// Where each sharded subscription was made, shared with the task
    /// that restores them.
    owners: ShardOwners,
    tasks: [JoinHandle<()>; 2],
}

#[async_trait::async_trait]
impl Subscriber for RedisSubscriber {
    /// The channel is also recorded for restoring after a reconnect.
    async fn subscribe(&self, channel: &str) -> Result<(), BackplaneError> {
        let subscribed = if self.clustered {
            self.client.ssubscribe(channel).await
        } else {
            self.client.subscribe(channel).await
        };
        subscribed.map_err(map_error)?;
        if self.clustered {
            self.owners.record(&self.client, channel);
        }
        self.processed_so_far(channel).await
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BackplaneError> {
        let unsubscribed = if self.clustered {
            self.client.sunsubscribe(channel).await
        } else {
            self.client.unsubscribe(channel).await
        };
        unsubscribed.map_err(map_error)?;
        self.processed_so_far(channel).await
    }
}

impl RedisSubscriber {
    /// fred resolves SUBSCRIBE and UNSUBSCRIBE once they are written, not
    /// when the server has acted on them, so a message published right
    /// after could still miss (or still reach) the connection. The server
    /// answers a connection's commands in order: once a PING sent behind
    /// them is answered, they are in effect. On a cluster the PING goes
    /// to the node of `channel`'s slot, where the (un)subscription went.
    async fn processed_so_far(&self, channel: &str) -> Result<(), BackplaneError> {
        let options = Options {
            cluster_hash: self
                .clustered
                .then(|| ClusterHash::Custom(redis_keyslot(channel.as_bytes()))),
            ..Options::default()
        };
        self.client
            .with_options(&options)
            .ping::<fred::types::Value>(None)
            .await
            .map(|_| ())
            .map_err(map_error)
    }
}

impl Drop for RedisSubscriber {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let client = self.client.clone();
        spawn_detached(async move {
            let _ = client.quit().await;
        });
    }
}

async fn forward_messages(mut messages: Receiver<Message>, events: Events) {
    loop {
        let event = match messages.recv().await {
            Ok(message) => SubscriptionEvent::Message(ChannelMessage {
                channel: message.channel.to_string(),
                payload: message.value.into_bytes().unwrap_or_default(),
            }),
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "subscriber fell behind, messages were dropped");
                SubscriptionEvent::Resubscribed
            }
            Err(RecvError::Closed) => return,
        };
        if events.send(event).is_err() {
            return;
        }
    }
}

async fn restore_after_reconnect(
    client: SubscriberClient,
    clustered: bool,
    owners: ShardOwners,
    mut reconnects: Receiver<Server>,
    events: Events,
) {
    let mut slot_check = tokio::time::interval(SLOT_CHECK);
    slot_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            reconnect = reconnects.recv() => match reconnect {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            _ = slot_check.tick(), if clustered => {
                if !owners.changed(&client).await {
                    continue;
                }
                tracing::info!("a subscribed channel's slot moved to another shard");
            }
        }
        let mut pause = RESUBSCRIBE_RETRY_MIN;
        loop {
            if events.is_closed() {
                return;
            }
            match resubscribe(&client, clustered).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, "restoring subscriptions failed, retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RESUBSCRIBE_RETRY_MAX);
                }
            }
        }
        owners.remember(&client);
        tracing::info!("subscriptions restored");
        if events.send(SubscriptionEvent::Resubscribed).is_err() {
            return;
        }
    }
}

/// Which master served each subscribed channel's slot when it was
/// subscribed. A slot that moves to another master (resharding) takes its
/// channels' subscriptions with it: the old master drops them with an
/// unsolicited SUNSUBSCRIBE, which the client ignores, so only comparing
/// the cluster's routing with this shows it.
#[derive(Clone, Default)]
struct ShardOwners {
    by_slot: Arc<Mutex<BTreeMap<u16, Option<Server>>>>,
}

impl ShardOwners {
    fn owner(client: &SubscriberClient, slot: u16) -> Option<Server> {
        client
            .cached_cluster_state()
            .and_then(|routing| routing.get_server(slot).cloned())
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<u16, Option<Server>>> {
        self.by_slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Just subscribed to `channel`: the client sent it to the master its
    /// routing names (or followed a redirection, which updated it).
    fn record(&self, client: &SubscriberClient, channel: &str) {
        let slot = redis_keyslot(channel.as_bytes());
        self.slots().insert(slot, ShardOwners::owner(client, slot));
    }

    /// Just subscribed to every tracked channel again.
    fn remember(&self, client: &SubscriberClient) {
        let now: BTreeMap<u16, Option<Server>> = tracked_slots(client)
            .into_iter()
            .map(|slot| (slot, ShardOwners::owner(client, slot)))
            .collect();
        *self.slots() = now;
    }

    /// Reads the cluster's routing again and tells whether a subscribed
    /// slot now has another master than where it was subscribed.
    async fn changed(&self, client: &SubscriberClient) -> bool {
        let tracked = tracked_slots(client);
        if tracked.is_empty() {
            return false;
        }
        if let Err(error) = client.sync_cluster().await {
            tracing::debug!(%error, "reading the cluster's slots failed");
            return false;
        }
        let slots = self.slots();
        tracked.into_iter().any(|slot| {
            slots
                .get(&slot)
                .is_some_and(|before| *before != ShardOwners::owner(client, slot))
        })
    }
}

fn tracked_slots(client: &SubscriberClient) -> Vec<u16> {
    client
        .tracked_shard_channels()
        .iter()
        .map(|channel| redis_keyslot(channel.as_bytes()))
        .collect()
}

/// Subscribes again to every channel the client tracks: one command on a
/// single server, one per slot on a cluster (SSUBSCRIBE takes channels of
/// one slot).
async fn resubscribe(client: &SubscriberClient, clustered: bool) -> Result<(), BackplaneError> {
    if !clustered {
        let channels: Vec<Str> = client.tracked_channels().into_iter().collect();
        if channels.is_empty() {
            return Ok(());
        }
        return client.subscribe(channels).await.map_err(map_error);
    }
    let channels = client.tracked_shard_channels();
    for (_, channels) in group_by_hash_slot(channels).map_err(map_error)? {
        client
            .ssubscribe(Vec::from(channels))
            .await
            .map_err(map_error)?;
    }
    Ok(())
}
