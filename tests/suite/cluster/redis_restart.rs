//! Redis crashes (SIGKILL) and comes back on the same port with its
//! append-only file, under a cluster of two gateways and two workers
//! carrying a steady stream of conversations (customers on one gateway,
//! agents on the other).
//!
//! Nobody restarts a gateway or a worker: they must reconnect by
//! themselves. While Redis is away, sends fail (the clients resend them
//! with the same `clientMsgId`); once it is back they are acknowledged
//! again. Events published while a gateway's subscription was down are
//! lost, so the gateway must fill in what its sockets missed from the store
//! once it has subscribed again. Then:
//! - every socket stayed connected and received every message exactly
//!   once, in `seq` order, without a gap;
//! - every message acknowledged before the crash is still there (it was
//!   committed to PostgreSQL), and the history holds every acknowledged
//!   message exactly once with gapless `seq`s.

use std::time::Duration;

use chat_shared::testing::ThrowawayRedis;
use tokio::time::Instant;

use crate::harness::backing::{shared_database_url, unique_name, Database};
use crate::harness::processes::{spec, Cluster};
use crate::harness::tokens::SECRET;
use crate::harness::traffic::{Plan, Traffic};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_recovers_from_a_redis_crash_and_every_socket_gets_every_message() {
    let mut redis = ThrowawayRedis::start();
    let database = Database::create(&shared_database_url()).await;
    let spec = spec(&redis.url(), &database.url, &unique_name("ct"), &[]);
    let mut cluster = Cluster::start(spec, 2, 2).await;
    let mut traffic = Traffic::open(&cluster.gateway_addrs(), SECRET, &Plan::default()).await;
    traffic.start_and_settle().await;

    // Redis stays down until every customer has seen a send fail.
    let crashed_at = Instant::now();
    redis.kill();
    traffic
        .wait_until(
            "a failed send for every customer while Redis is down",
            Duration::from_secs(20),
            |t| {
                t.customers()
                    .all(|c| c.log().failures_since(crashed_at) > 0)
            },
        )
        .await;
    // Waits for the server to load its data; other tasks go on meanwhile.
    tokio::task::block_in_place(|| redis.restart());
    let restarted_at = Instant::now();

    let recovery = traffic
        .wait_for_acks_since(restarted_at, 40, Duration::from_secs(30))
        .await;
    let report = traffic.finish(Duration::from_secs(30)).await;
    cluster.assert_none_exited();
    report.assert_delivery_guarantees();
    report.assert_nobody_reconnected("the Redis outage");
    cluster.stop().await;
    eprintln!(
        "Redis down for {:?}; 40 new messages per customer acked {recovery:?} after it came back; \
         {} messages acked, {} failed attempts resent, longest wait for an ack {:?}\n{}",
        restarted_at - crashed_at,
        report.acked(),
        report.failed_attempts(),
        report.longest_wait(),
        report.summary()
    );
}
