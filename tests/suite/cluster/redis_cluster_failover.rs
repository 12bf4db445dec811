//! A master of a Redis Cluster (three masters, a replica each) crashes
//! under two gateways and two workers carrying a steady stream of
//! conversations; its replica is promoted by the cluster itself.
//!
//! Replication is asynchronous, so the promoted replica may lack the last
//! writes of the dead master: appended commands, acknowledgements, lease
//! renewals, publications. None of that may lose or repeat an
//! acknowledged message or break `seq`: a command that was lost was never
//! acknowledged (its sender resends it with the same `clientMsgId`), one
//! whose acknowledgement was lost is read again and recognised by its
//! `clientMsgId`, a publication that was lost is repaired from the store,
//! and a lease that went back to an earlier state cannot let two workers
//! commit for one session (the store checks each session's version).
//! Then, as after a restart of one Redis: every socket stayed connected
//! and received every message exactly once, in `seq` order, without a
//! gap, and the history holds every acknowledged message once.

use std::time::Duration;

use chat_shared::names::{hash_slot_of_tag, partition_tag};
use chat_shared::testing::ThrowawayRedisCluster;
use tokio::time::Instant;

use crate::harness::backing::{shared_database_url, unique_name, Database};
use crate::harness::processes::{spec, Cluster};
use crate::harness::tokens::SECRET;
use crate::harness::traffic::{Plan, Traffic};

/// Node timeout (1 s), the replicas' election, and every process finding
/// the new master.
const FAILOVER: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_failover_loses_and_repeats_no_acknowledged_message() {
    let mut redis = ThrowawayRedisCluster::start(3, 1);
    let database = Database::create(&shared_database_url()).await;
    let spec = spec(&redis.url(), &database.url, &unique_name("rc"), &[]);
    let mut cluster = Cluster::start(spec, 2, 2).await;
    let mut traffic = Traffic::open(&cluster.gateway_addrs(), SECRET, &Plan::default()).await;
    traffic.start_and_settle().await;

    // The master of partition 0's keys holds a third of the partitions,
    // every one of them busy.
    let slot = hash_slot_of_tag(partition_tag(0));
    let master = redis.master_of_slot(slot);
    let crashed_at = Instant::now();
    redis.kill(master);
    let promoted = tokio::task::block_in_place(|| redis.wait_until_slot_served(slot, FAILOVER));
    let failed_over = crashed_at.elapsed();
    assert_ne!(promoted, master);

    let recovery = traffic
        .wait_for_acks_since(crashed_at + failed_over, 40, FAILOVER)
        .await;
    let report = traffic.finish(Duration::from_secs(30)).await;
    cluster.assert_none_exited();
    report.assert_delivery_guarantees();
    report.assert_nobody_reconnected("the Redis failover");
    cluster.stop().await;
    eprintln!(
        "master {master} killed; replica {promoted} serving its slots {failed_over:?} later; \
         40 new messages per customer acked {recovery:?} after that; {} messages acked, \
         {} failed attempts resent, longest wait for an ack {:?}\n{}",
        report.acked(),
        report.failed_attempts(),
        report.longest_wait(),
        report.summary()
    );
}
