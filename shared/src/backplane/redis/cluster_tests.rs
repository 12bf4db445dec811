//! The backplane on a real Redis Cluster of the test's own (three masters,
//! and replicas where a failover is the point): the conformance suite with
//! sharded pub/sub, partitions spread over every shard, reads that span
//! slots, and subscriptions that follow a failover.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::Config;
use fred::types::{ClusterHash, CustomCommand, Value};
use fred::util::redis_keyslot;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{timeout, Instant};

use super::{RedisBackplane, RedisOptions};
use crate::backplane::conformance::{self, ReadWaits};
use crate::backplane::{CommandLog, PubSub, SubscriptionEvent};
use crate::names::Names;
use crate::testing::{wait_until, ThrowawayRedisCluster};

const PROMPTLY: Duration = Duration::from_secs(5);
/// A failover: the node timeout (1 s), the replicas' election, and the
/// clients finding the new master.
const FAILOVER: Duration = Duration::from_secs(20);

async fn connect(cluster: &ThrowawayRedisCluster) -> RedisBackplane {
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let options = RedisOptions {
        command_timeout: Duration::from_secs(2),
        blocking_connections: 32,
        ..RedisOptions::default()
    };
    RedisBackplane::connect(&cluster.url(), Names::new(prefix), options)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the cluster at {}: {e}", cluster.url()))
}

/// A plain connection to each master, to ask what no cluster command
/// answers for the whole cluster.
struct Masters {
    clients: Vec<Client>,
}

impl Masters {
    async fn of(cluster: &ThrowawayRedisCluster) -> Masters {
        let mut ports: Vec<u16> = (0..3u16)
            .map(|shard| cluster.master_of_slot(shard * 6_000))
            .collect();
        ports.dedup();
        let mut clients = Vec::new();
        for port in ports {
            let config = Config::from_url(&format!("redis://127.0.0.1:{port}")).expect("url");
            let client = Client::new(config, None, None, None);
            client.init().await.expect("connect to a master");
            clients.push(client);
        }
        Masters { clients }
    }

    /// Connections blocked in XREADGROUP on every master: the cluster is
    /// this test's own, so every such read is the backplane's.
    async fn blocked_reads(&self) -> usize {
        let mut blocked = 0;
        for client in &self.clients {
            let list: Value = client
                .custom(
                    CustomCommand::new_static("CLIENT", ClusterHash::FirstKey, false),
                    vec!["LIST"],
                )
                .await
                .expect("CLIENT LIST");
            let list = list.into_string().unwrap_or_default();
            blocked += list
                .lines()
                .filter(|line| line.contains("cmd=xreadgroup") && line.contains(" flags=b"))
                .count();
        }
        blocked
    }
}

#[async_trait]
impl ReadWaits for Masters {
    async fn read_waits(&self) -> bool {
        self.blocked_reads().await > 0
    }
}

/// The whole suite, each check under a prefix of its own, with fan-out on
/// sharded pub/sub (which keeps a batch's order per channel only).
#[tokio::test]
async fn conformance_suite_on_a_redis_cluster() {
    let cluster = ThrowawayRedisCluster::start(3, 0);
    let masters = Masters::of(&cluster).await;
    let backplane = connect(&cluster).await;
    conformance::run_all_sharded(&backplane, &masters).await;
}

/// Every shard holds an even share of the partitions' streams, and a read
/// over partitions of every shard brings back what was appended to each.
#[tokio::test]
async fn partitions_spread_over_every_shard_and_are_read_together() {
    let cluster = ThrowawayRedisCluster::start(3, 0);
    let backplane = connect(&cluster).await;
    let partitions: Vec<u32> = (0..16).collect();
    let mut per_master: BTreeMap<u16, usize> = BTreeMap::new();
    for &partition in &partitions {
        let key = backplane.names().command_stream(partition);
        *per_master
            .entry(cluster.master_of_slot(redis_keyslot(key.as_bytes())))
            .or_default() += 1;
    }
    assert_eq!(
        per_master.len(),
        3,
        "16 partitions over 3 masters: {per_master:?}"
    );
    assert!(
        per_master.values().all(|&n| n == 5 || n == 6),
        "uneven: {per_master:?}"
    );

    for &partition in &partitions {
        backplane
            .append_command(partition, Bytes::from(format!("p{partition}")))
            .await
            .expect("append");
    }
    let mut seen: Vec<u32> = Vec::new();
    let deadline = Instant::now() + PROMPTLY;
    while seen.len() < partitions.len() && Instant::now() < deadline {
        let entries = backplane
            .read_new(&partitions, "reader", 10, Duration::from_millis(200))
            .await
            .expect("read across slots");
        for entry in entries {
            assert_eq!(entry.payload, Bytes::from(format!("p{}", entry.partition)));
            seen.push(entry.partition);
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, partitions, "one entry of every partition, once");
}

/// A read across slots that waits on every shard wakes up when one of
/// them gets an entry, and the waits on the others end with it.
#[tokio::test]
async fn a_read_across_slots_wakes_on_any_shard() {
    let cluster = ThrowawayRedisCluster::start(3, 0);
    let masters = Masters::of(&cluster).await;
    let backplane = connect(&cluster).await;
    let partitions: Vec<u32> = (0..8).collect();
    let reader = backplane.clone();
    let wanted = partitions.clone();
    let read = tokio::spawn(async move {
        reader
            .read_new(&wanted, "reader", 10, Duration::from_secs(10))
            .await
    });
    wait_until(PROMPTLY, "a blocked read per slot", || async {
        masters.blocked_reads().await == partitions.len()
    })
    .await;
    backplane
        .append_command(5, Bytes::from_static(b"wake"))
        .await
        .expect("append");
    let entries = timeout(PROMPTLY, read)
        .await
        .expect("the read returned promptly")
        .expect("the read task")
        .expect("read_new");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].partition, 5);
    wait_until(PROMPTLY, "the other waits ended", || async {
        masters.blocked_reads().await == 0
    })
    .await;
}

/// Returns once the subscriber says it resubscribed, skipping messages.
async fn resubscription(events: &mut UnboundedReceiver<SubscriptionEvent>) {
    loop {
        match events.recv().await {
            Some(SubscriptionEvent::Resubscribed) => return,
            Some(SubscriptionEvent::Message(_)) => {}
            None => panic!("the subscription ended"),
        }
    }
}

/// Killing the master of a subscribed channel's slot: once a replica took
/// the slot over, the subscriber is told it resubscribed (so the gateway
/// repairs what it missed) and receives what is published next.
#[tokio::test]
async fn subscriptions_follow_a_failover() {
    let mut cluster = ThrowawayRedisCluster::start(3, 1);
    let backplane = connect(&cluster).await;
    let channel = format!("{}:session:failover", backplane.names().prefix());
    let slot = redis_keyslot(channel.as_bytes());
    let (subscriber, mut events) = backplane.subscriber().await.expect("subscriber");
    subscriber.subscribe(&channel).await.expect("subscribe");
    backplane
        .publish(&channel, Bytes::from_static(b"before"))
        .await
        .expect("publish");
    match timeout(PROMPTLY, events.recv()).await {
        Ok(Some(SubscriptionEvent::Message(message))) => {
            assert_eq!(message.payload, Bytes::from_static(b"before"))
        }
        other => panic!("expected the first message, got {other:?}"),
    }

    let old_master = cluster.master_of_slot(slot);
    cluster.kill(old_master);
    let killed_at = Instant::now();
    let new_master = cluster.wait_until_slot_served(slot, FAILOVER);
    assert_ne!(new_master, old_master);

    let resubscribed = timeout(FAILOVER, resubscription(&mut events)).await;
    assert!(resubscribed.is_ok(), "no resubscription after the failover");

    // The publisher finds the new master too; what it publishes from now
    // on arrives.
    let mut received = false;
    let deadline = Instant::now() + FAILOVER;
    while !received && Instant::now() < deadline {
        if backplane
            .publish(&channel, Bytes::from_static(b"after"))
            .await
            .is_err()
        {
            continue;
        }
        received = matches!(
            timeout(Duration::from_millis(500), events.recv()).await,
            Ok(Some(SubscriptionEvent::Message(message))) if message.payload == Bytes::from_static(b"after")
        );
    }
    assert!(
        received,
        "nothing published after the failover arrived ({:?} after the kill)",
        killed_at.elapsed()
    );
}

/// Resharding moves a subscribed channel's slot to another master, which
/// drops the subscription without a word the client acts on: the
/// subscriber notices from the cluster's routing, subscribes on the new
/// master, says it resubscribed, and receives what is published next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_follow_a_slot_move() {
    let cluster = ThrowawayRedisCluster::start(3, 0);
    let backplane = connect(&cluster).await;
    let channel = format!("{}:pool:resharded", backplane.names().prefix());
    let slot = redis_keyslot(channel.as_bytes());
    let (subscriber, mut events) = backplane.subscriber().await.expect("subscriber");
    subscriber.subscribe(&channel).await.expect("subscribe");

    let from = cluster.master_of_slot(slot);
    let to = (1..3u16)
        .map(|shard| cluster.master_of_slot((slot + shard * 5_500) % 16_384))
        .find(|&port| port != from)
        .expect("another master");
    tokio::task::block_in_place(|| cluster.move_slot(slot, to));

    let resubscribed = timeout(FAILOVER, resubscription(&mut events)).await;
    assert!(
        resubscribed.is_ok(),
        "no resubscription after the slot moved"
    );
    backplane
        .publish(&channel, Bytes::from_static(b"after the move"))
        .await
        .expect("publish to the new master");
    match timeout(PROMPTLY, events.recv()).await {
        Ok(Some(SubscriptionEvent::Message(message))) => {
            assert_eq!(message.payload, Bytes::from_static(b"after the move"))
        }
        other => panic!("expected the message published after the move, got {other:?}"),
    }
}
