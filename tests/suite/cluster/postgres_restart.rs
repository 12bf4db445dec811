//! PostgreSQL crashes (`pg_ctl stop -m immediate`) and starts again, under
//! a cluster of two gateways and two workers carrying a steady stream of
//! conversations (customers on one gateway, agents on the other).
//!
//! While the store is away nothing can be committed, so nothing may be
//! acknowledged: sends are answered `unavailable` (or not in time) and the
//! clients resend them with the same `clientMsgId`. Once the store is back,
//! sends are acknowledged again without any process being restarted. Then
//! every acknowledged message is stored exactly once, with gapless `seq`s,
//! and every joined socket received each message once, in order.

use std::time::Duration;

use chat_shared::testing::ThrowawayPostgres;
use tokio::task::block_in_place;
use tokio::time::Instant;

use crate::harness::backing::{shared_redis_url, Database, RedisNamespace};
use crate::harness::processes::{spec, Cluster};
use crate::harness::tokens::SECRET;
use crate::harness::traffic::{Plan, Traffic};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_is_acked_while_postgres_is_down_and_sends_resume_after_it_restarts() {
    let namespace = RedisNamespace::new(&shared_redis_url()).await;
    let postgres = block_in_place(|| {
        let server = ThrowawayPostgres::create();
        server.start();
        server
    });
    let database = Database::create(&postgres.url()).await;
    let spec = spec(&namespace.url, &database.url, &namespace.prefix, &[]);
    let mut cluster = Cluster::start(spec, 2, 2).await;
    let mut traffic = Traffic::open(&cluster.gateway_addrs(), SECRET, &Plan::default()).await;
    traffic.start_and_settle().await;

    // The store stays down until every customer has had a message sent
    // during the outage fail.
    block_in_place(|| postgres.stop_immediately());
    let stopped_at = Instant::now();
    traffic
        .wait_until(
            "a failed send for every customer while PostgreSQL is down",
            Duration::from_secs(20),
            |t| {
                t.customers()
                    .all(|c| c.log().failed_first_sent_since(stopped_at) > 0)
            },
        )
        .await;
    let restarting_at = Instant::now();
    block_in_place(|| postgres.start());
    let restarted_at = Instant::now();

    let recovery = traffic
        .wait_for_acks_since(restarted_at, 40, Duration::from_secs(30))
        .await;
    let report = traffic.finish(Duration::from_secs(30)).await;
    cluster.assert_none_exited();
    report.assert_delivery_guarantees();

    // A message first sent once the store was down cannot have been acked
    // before it was started again, and sends failed as `unavailable` or
    // went unanswered, nothing else.
    let mut problems = Vec::new();
    for conversation in &report.conversations {
        let (label, customer) = &conversation.customer;
        for message in &customer.sent {
            if let Some((acked_at, seq)) = message.acked() {
                if message.first_sent >= stopped_at && acked_at < restarting_at {
                    problems.push(format!(
                        "{label}: {} was sent during the outage and acked as seq {seq} before PostgreSQL was back",
                        message.client_msg_id
                    ));
                }
            }
            for (at, why) in message.failures() {
                let expected = why == "unavailable" || why.starts_with("no ack");
                if at >= stopped_at && !expected {
                    problems.push(format!(
                        "{label}: {} failed with {why:?} during the outage",
                        message.client_msg_id
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\n{}",
        problems.join("\n"),
        report.summary()
    );
    cluster.stop().await;
    eprintln!(
        "PostgreSQL down for {:?}; 40 new messages per customer acked {recovery:?} after it came back; \
         {} messages acked, {} failed attempts resent, longest wait for an ack {:?}\n{}",
        restarting_at - stopped_at,
        report.acked(),
        report.failed_attempts(),
        report.longest_wait(),
        report.summary()
    );
}
