//! A gateway dies (SIGKILL) in a cluster of two gateways and two workers
//! carrying a steady stream of conversations, customers on the gateway that
//! dies and agents on the other.
//!
//! The customers lose their connections with messages in flight. Like real
//! clients they reconnect (the dead gateway refuses, so they land on the
//! other one), join again with the highest `seq` they have seen, and resend
//! what was not acknowledged with the same `clientMsgId`. Then:
//! - on each connection, the messages arrive once each, in `seq` order and
//!   without a gap from the join's `lastSeq` on; together, each customer's
//!   connections received the whole conversation (a client that keeps what
//!   it showed would show every message once);
//! - the agents, whose gateway stayed up, received every message exactly
//!   once, in order, on their single connection;
//! - the history holds every acknowledged message exactly once, with
//!   gapless `seq`s, resends included.

use std::time::Duration;

use tokio::time::Instant;

use crate::harness::backing::{shared_database_url, shared_redis_url, Database, RedisNamespace};
use crate::harness::processes::{spec, Cluster};
use crate::harness::tokens::SECRET;
use crate::harness::traffic::{Plan, Traffic};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_of_a_killed_gateway_resume_on_the_other_without_gaps_or_repeats() {
    let namespace = RedisNamespace::new(&shared_redis_url()).await;
    let database = Database::create(&shared_database_url()).await;
    let spec = spec(&namespace.url, &database.url, &namespace.prefix, &[]);
    let mut cluster = Cluster::start(spec, 2, 2).await;
    let plan = Plan::default();
    let mut traffic = Traffic::open(&cluster.gateway_addrs(), SECRET, &plan).await;
    let started = traffic.start_and_settle().await;

    let killed_at = Instant::now();
    cluster.gateways[plan.customer_gateway].kill();

    // Every customer is back, on the other gateway, joined again.
    let other = 1 - plan.customer_gateway;
    let reconnected = traffic
        .wait_until(
            "every customer joined again on the other gateway",
            Duration::from_secs(15),
            |t| {
                t.customers().all(|c| {
                    let log = c.log();
                    log.connections.len() == 2 && log.connections[1].gateway == other
                })
            },
        )
        .await;
    let resumed = Instant::now();
    traffic
        .wait_for_acks_since(resumed, 40, Duration::from_secs(20))
        .await;
    let report = traffic.finish(Duration::from_secs(30)).await;
    cluster.assert_none_exited();
    report.assert_delivery_guarantees();
    for conversation in &report.conversations {
        let (label, agent) = &conversation.agent;
        assert_eq!(
            agent.connections.len(),
            1,
            "{label} lost its connection to a gateway that stayed up"
        );
    }
    cluster.stop().await;
    eprintln!(
        "gateway killed {:?} after the start; customers joined again {reconnected:?} later; \
         {} messages acked, {} failed attempts resent, longest wait for an ack {:?}\n{}",
        killed_at - started,
        report.acked(),
        report.failed_attempts(),
        report.longest_wait(),
        report.summary()
    );
}
