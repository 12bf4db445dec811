//! The gateways' pub/sub connections are cut (Redis `CLIENT KILL TYPE
//! pubsub`, as a proxy timeout or a network blip would) three times under
//! a steady stream of conversations, while commands keep flowing.
//!
//! The workers keep committing and publishing, so the events published
//! before a gateway has subscribed again are lost for good. The gateway
//! must notice the reconnect and fill in what its sockets missed from the
//! store: every socket stays connected and receives every message exactly
//! once, in `seq` order, without a gap. Redis is a throwaway one, so that
//! cutting every subscriber touches no other test.

use std::time::Duration;

use chat_shared::testing::ThrowawayRedis;
use fred::types::Value;
use tokio::time::Instant;

use crate::harness::backing::{shared_database_url, unique_name, Database};
use crate::harness::processes::{spec, Cluster};
use crate::harness::redis_admin::RedisAdmin;
use crate::harness::tokens::SECRET;
use crate::harness::traffic::{Plan, Traffic};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sockets_get_the_events_lost_while_their_gateway_was_resubscribing() {
    let redis = ThrowawayRedis::start();
    let database = Database::create(&shared_database_url()).await;
    let spec = spec(&redis.url(), &database.url, &unique_name("ct"), &[]);
    let mut cluster = Cluster::start(spec, 2, 2).await;
    let mut traffic = Traffic::open(&cluster.gateway_addrs(), SECRET, &Plan::default()).await;
    traffic.start_and_settle().await;

    let mut cut = 0;
    for _ in 0..3 {
        let admin = RedisAdmin::connect(&redis.url())
            .await
            .expect("connect to Redis");
        let killed = admin
            .call(&["CLIENT", "KILL", "TYPE", "pubsub"])
            .await
            .expect("CLIENT KILL");
        admin.quit().await;
        let Value::Integer(count) = killed else {
            panic!("CLIENT KILL answered {killed:?}");
        };
        cut += count;
        traffic
            .wait_for_acks_since(Instant::now(), 20, Duration::from_secs(20))
            .await;
    }
    assert!(cut >= 6, "only {cut} subscriber connections were cut");

    let report = traffic.finish(Duration::from_secs(30)).await;
    cluster.assert_none_exited();
    report.assert_delivery_guarantees();
    report.assert_nobody_reconnected("the cut subscriptions");
    cluster.stop().await;
    eprintln!(
        "{cut} subscriber connections cut in three rounds; {} messages acked, \
         {} failed attempts resent, longest wait for an ack {:?}\n{}",
        report.acked(),
        report.failed_attempts(),
        report.longest_wait(),
        report.summary()
    );
}
