//! A worker dies (SIGKILL) in a cluster of two gateways and two workers
//! carrying a steady stream of conversations, customers on one gateway and
//! agents on the other.
//!
//! The surviving worker must take the dead one's partitions over once their
//! leases run out, within 3 s of the kill with the default lease lifetime
//! (including the commands it had read but not finished),
//! sends must be acknowledged again without anyone restarting anything, and
//! in the end every acknowledged message must have reached every joined
//! socket exactly once, in `seq` order, and be in the history exactly once.
//! While the partitions have no owner (at least two thirds of a lease
//! lifetime), sends are answered `unavailable` (the gateways wait 1 s here);
//! the clients resend them with the same `clientMsgId`, which must not
//! store them twice.

use std::time::Duration;

use chat_shared::names::partition_of;
use tokio::time::Instant;

use crate::harness::backing::{shared_database_url, shared_redis_url, Database, RedisNamespace};
use crate::harness::eventually::{eventually, try_eventually};
use crate::harness::processes::{spec, Cluster};
use crate::harness::redis_admin::lease_holders;
use crate::harness::tokens::SECRET;
use crate::harness::traffic::{Plan, Traffic};

/// How soon after a worker's death its partitions must be served again,
/// with the default `LEASE_TTL_MS`.
const FAILOVER_BOUND: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_surviving_worker_takes_over_and_every_acked_message_arrives_once_in_order() {
    let namespace = RedisNamespace::new(&shared_redis_url()).await;
    let database = Database::create(&shared_database_url()).await;
    let spec = spec(
        &namespace.url,
        &database.url,
        &namespace.prefix,
        &[("REQUEST_TIMEOUT_MS", "1000")],
    );
    let partitions = spec.partitions();
    let mut cluster = Cluster::start(spec, 2, 2).await;
    let mut traffic = Traffic::open(&cluster.gateway_addrs(), SECRET, &Plan::default()).await;
    let started = traffic.start_and_settle().await;

    // Once the partitions are shared out between the two workers, the one
    // holding the partitions of most conversations goes.
    let ids: Vec<String> = cluster
        .workers
        .iter()
        .map(|w| w.worker_id.clone().expect("worker id"))
        .collect();
    let (url, prefix) = (&cluster.spec.redis_url, &cluster.spec.key_prefix);
    let holders = eventually(
        Duration::from_secs(15),
        "the partitions shared out between the two workers",
        || async {
            let holders = lease_holders(url, prefix, partitions).await;
            let shared = ids
                .iter()
                .all(|id| holders.iter().any(|h| h.as_deref() == Some(id.as_str())));
            let all_held = holders.iter().all(Option::is_some);
            if shared && all_held {
                Ok(holders)
            } else {
                Err(holders)
            }
        },
    )
    .await;
    let owned_conversations = |id: &str| {
        traffic
            .conversations
            .iter()
            .filter(|c| {
                holders[partition_of(&c.session_id, partitions) as usize].as_deref() == Some(id)
            })
            .count()
    };
    let victim = (0..ids.len())
        .max_by_key(|&i| owned_conversations(&ids[i]))
        .expect("two workers");
    let survivor = ids[1 - victim].clone();
    let stranded = owned_conversations(&ids[victim]);
    assert!(
        stranded > 0,
        "no conversation on either worker: {holders:?}"
    );
    let killed_at = Instant::now();
    cluster.workers[victim].kill();

    // Every lease ends up with the survivor: the dead worker's leases
    // expire within a lifetime, and the survivor's next lease check (every
    // third of a lifetime) takes them.
    let (url, prefix) = (&cluster.spec.redis_url, &cluster.spec.key_prefix);
    try_eventually(Duration::from_secs(15), || async {
        let holders = lease_holders(url, prefix, partitions).await;
        if holders
            .iter()
            .all(|h| h.as_deref() == Some(survivor.as_str()))
        {
            Ok(())
        } else {
            Err(holders)
        }
    })
    .await
    .unwrap_or_else(|holders| {
        panic!(
            "the survivor did not take every partition: {holders}\n{}",
            traffic.summary()
        )
    });
    let takeover = killed_at.elapsed();
    assert!(
        takeover <= FAILOVER_BOUND,
        "the takeover took {takeover:?} after the kill, more than {FAILOVER_BOUND:?}"
    );

    // Sends are acknowledged again in every conversation, those of the
    // partitions taken over included.
    let recovered = Instant::now();
    traffic
        .wait_for_acks_since(recovered, 40, Duration::from_secs(20))
        .await;
    let report = traffic.finish(Duration::from_secs(30)).await;
    cluster.assert_none_exited();
    report.assert_delivery_guarantees();
    cluster.stop().await;
    eprintln!(
        "worker killed {:?} after the start; {stranded} of {} conversations stranded; \
         partitions taken over {takeover:?} after the kill; {} messages acked, {} failed attempts resent, \
         longest wait for an ack {:?}\n{}",
        killed_at - started,
        traffic.conversations.len(),
        report.acked(),
        report.failed_attempts(),
        report.longest_wait(),
        report.summary()
    );
}
