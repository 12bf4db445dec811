//! The harness of the cluster tests: real `gateway` and `worker` processes
//! over real Redis and PostgreSQL, a steady stream of conversations through
//! them, and the check of the delivery guarantees afterwards.
//!
//! - [`servers`]: the shared Redis and PostgreSQL (a key prefix and a
//!   database of the test's own) or throwaway ones to crash and restart;
//! - [`processes`]: starting, killing and stopping the cluster's processes,
//!   with their logs kept and printed when a test fails;
//! - [`client`]: tokens, REST calls and a Socket.IO client;
//! - [`traffic`]: customers and agents that behave like real clients, and
//!   the report of what each socket received.
//!
//! Every test runs in isolation from any other running at the same time:
//! free ports, its own key prefix, its own database.
#![allow(dead_code)] // each test binary uses its own subset

pub mod client;
pub mod processes;
pub mod servers;
pub mod traffic;

use std::time::Duration;

use processes::{Cluster, ClusterSpec};
use servers::RedisAdmin;

/// The HS256 secret of the test clusters.
pub const SECRET: &str = "cluster-fault-test-secret-0123456789";

/// The spec of a cluster on `redis_url` and `database_url` under
/// `key_prefix`, with the given setting overrides.
pub fn spec(
    redis_url: &str,
    database_url: &str,
    key_prefix: &str,
    overrides: &[(&str, &str)],
) -> ClusterSpec {
    ClusterSpec {
        redis_url: redis_url.to_owned(),
        database_url: database_url.to_owned(),
        key_prefix: key_prefix.to_owned(),
        jwt_secret: SECRET.to_owned(),
        overrides: overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// Who holds each partition's lease right now (the worker id, without the
/// fencing token), read from Redis.
pub async fn lease_holders(cluster: &Cluster) -> Vec<Option<String>> {
    let url = cluster.spec.redis_url.clone();
    let prefix = cluster.spec.key_prefix.clone();
    let partitions = cluster.spec.partitions();
    tokio::task::spawn_blocking(move || {
        let mut admin = RedisAdmin::connect(&url).expect("connect to Redis");
        (0..partitions)
            .map(|p| {
                let key = format!("{prefix}:lease:{p}");
                let value = admin.call(&["GET", &key]).expect("GET a lease").text()?;
                value.rsplit_once(':').map(|(holder, _)| holder.to_owned())
            })
            .collect()
    })
    .await
    .expect("lease reading task")
}

/// Polls `probe` every 50 ms until it returns Some, for up to `wait`; the
/// value and how long it took, or None.
pub async fn poll<T, F, Fut>(wait: Duration, mut probe: F) -> Option<(T, Duration)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = tokio::time::Instant::now();
    loop {
        if let Some(value) = probe().await {
            return Some((value, started.elapsed()));
        }
        if started.elapsed() >= wait {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
