//! Gateways reading from a streaming replica (`DATABASE_READ_URL`) whose
//! replay is paused: what a client was acknowledged is in every history
//! read that follows, through another gateway's REST and another socket's
//! join, served by the primary while the replica lags and by the replica
//! again once it has caught up.

use std::net::SocketAddr;
use std::time::Duration;

use chat_shared::testing::{wait_until, ThrowawayPostgres};
use serde_json::{json, Value};
use tokio::task::block_in_place;

use crate::harness::backing::{shared_redis_url, RedisNamespace};
use crate::harness::http::{get, history, try_rest};
use crate::harness::metrics::metric_value;
use crate::harness::processes::{spec, Cluster};
use crate::harness::sio_client::{seqs, SioClient};
use crate::harness::tokens::token;

const WAIT: Duration = Duration::from_secs(10);

/// How many of `gateway`'s store reads ended as `outcome`.
async fn replica_reads(gateway: SocketAddr, outcome: &str) -> f64 {
    let (status, text) = get(gateway, "/metrics").await.expect("/metrics answers");
    assert_eq!(status, 200, "{text}");
    metric_value(
        &text,
        &format!("chat_store_replica_reads_total{{outcome=\"{outcome}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_acknowledged_message_is_in_history_read_through_a_paused_replica() {
    let namespace = RedisNamespace::new(&shared_redis_url()).await;
    let (primary, replica) = block_in_place(|| {
        let primary = ThrowawayPostgres::create();
        primary.start();
        let replica = ThrowawayPostgres::create_replica_of(&primary);
        (primary, replica)
    });
    let read_url = replica.url();
    let spec = spec(
        &namespace.url,
        &primary.url(),
        &namespace.prefix,
        &[("DATABASE_READ_URL", read_url.as_str())],
    );
    let mut cluster = Cluster::start(spec, 2, 1).await;
    let [first, second] = cluster.gateway_addrs()[..] else {
        panic!("two gateways");
    };
    let customer = token("rr-customer", "customer", &[]);
    let agent = token("rr-agent", "agent", &["default"]);

    let (status, session) = try_rest(
        first,
        "POST",
        "/api/chat/sessions",
        Some(&customer),
        Some(json!({ "subject": "replica" })),
        WAIT,
    )
    .await
    .expect("create answered");
    assert_eq!(status, 201, "{session}");
    let session_id = session["id"].as_str().expect("id").to_owned();

    block_in_place(|| replica.pause_replay());
    let mut sender = SioClient::connect(first, &customer).await;
    sender.join_session(&session_id, None).await;
    let acked = sender
        .send_message(&session_id, "seen by everyone?", "rr-1")
        .await;
    assert_eq!(acked["seq"], json!(1), "{acked}");
    let on_replica = block_in_place(|| {
        replica.query(&format!(
            "SELECT count(*) FROM messages WHERE session_id = '{session_id}'"
        ))
    });
    assert_eq!(
        on_replica, "0",
        "the paused replica must lack the message, or this test proves nothing"
    );

    // Another gateway, over REST and over a socket's join.
    let fallbacks = replica_reads(second, "primary_fallback").await;
    let items = history(second, &agent, &session_id).await;
    assert_eq!(seqs(&items), [1], "{items:?}");
    assert_eq!(items[0]["content"], json!("seen by everyone?"));
    let mut reader = SioClient::connect(second, &agent).await;
    let joined = reader.join_session(&session_id, None).await;
    let messages: Vec<Value> = joined["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(seqs(&messages), [1], "{joined}");
    assert!(
        replica_reads(second, "primary_fallback").await > fallbacks,
        "the lagging replica was asked and passed over"
    );

    block_in_place(|| replica.resume_replay());
    wait_until(WAIT, "history served by the caught-up replica", || async {
        let served = replica_reads(second, "replica").await;
        let items = history(second, &agent, &session_id).await;
        seqs(&items) == [1] && replica_reads(second, "replica").await > served
    })
    .await;

    cluster.assert_none_exited();
    cluster.stop().await;
}
