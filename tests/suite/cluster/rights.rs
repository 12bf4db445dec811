//! §7 across pods: rights follow changes (a session transferred to another
//! pool through one gateway stops reaching the old pool's agents connected
//! to the other gateway at once: `session-updated` is their last event of
//! it, while the customer's messages reach the new pool's agent), and a
//! user's REST write budget is one for the whole cluster.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::timeout;

use crate::harness::backing::{shared_database_url, shared_redis_url, Database, RedisNamespace};
use crate::harness::http::try_rest;
use crate::harness::processes::{spec, Cluster};
use crate::harness::sio_client::SioClient;
use crate::harness::tokens::token;

const WAIT: Duration = Duration::from_secs(10);

/// The next event named `name` about the session, skipping others.
async fn event_of(client: &mut SioClient, name: &str, session_id: &str) -> Value {
    timeout(WAIT, async {
        loop {
            let (event, payload) = client.recv_event().await.expect("connection open");
            let about = payload["sessionId"] == session_id
                || payload["session"]["id"] == session_id
                || payload["id"] == session_id;
            if event == name && about {
                return payload;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} for {session_id} within {WAIT:?}"))
}

/// Everything already received that mentions the session, once a probe's
/// ack (written after anything sent before it) has come back.
async fn heard_of(client: &mut SioClient, session_id: &str) -> Vec<String> {
    let probe = client
        .request("leave-session", json!({ "sessionId": "probe" }), WAIT)
        .await
        .expect("probe answered");
    assert_eq!(probe["ok"], json!(true));
    let mut heard = Vec::new();
    while let Ok(Some((event, payload))) = timeout(Duration::ZERO, client.recv_event()).await {
        if payload.to_string().contains(session_id) {
            heard.push(format!("{event} {payload}"));
        }
    }
    heard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_on_one_pod_ends_access_on_the_other() {
    // Its keys are deleted when the test ends, after the processes stop.
    let namespace = RedisNamespace::new(&shared_redis_url()).await;
    let database = Database::create(&shared_database_url()).await;
    let spec = spec(
        &namespace.url,
        &database.url,
        &namespace.prefix,
        &[("POOLS", "alpha,beta")],
    );
    let mut cluster = Cluster::start(spec, 2, 1).await;
    let [first, second] = cluster.gateway_addrs()[..] else {
        panic!("two gateways");
    };
    let customer = token("xr-customer", "customer", &[]);
    let owner = token("xr-owner", "agent", &["alpha"]);
    let colleague = token("xr-colleague", "agent", &["alpha"]);
    let newcomer = token("xr-newcomer", "agent", &["beta"]);

    let (status, session) = try_rest(
        first,
        "POST",
        "/api/chat/sessions",
        Some(&customer),
        Some(json!({ "pool": "alpha" })),
        WAIT,
    )
    .await
    .expect("create");
    assert_eq!(status, 201, "{session}");
    let session_id = session["id"].as_str().expect("id").to_owned();
    let mut colleague_socket = SioClient::try_connect(second, &colleague, WAIT)
        .await
        .expect("colleague");
    let newcomer_socket = SioClient::try_connect(first, &newcomer, WAIT)
        .await
        .expect("newcomer");
    let assign = format!("/api/chat/sessions/{session_id}/assign");
    let (status, body) = try_rest(second, "POST", &assign, Some(&owner), Some(json!({})), WAIT)
        .await
        .expect("assign");
    assert_eq!(status, 200, "{body}");
    let mut customer_socket = SioClient::try_connect(first, &customer, WAIT)
        .await
        .expect("customer");
    for client in [&colleague_socket, &customer_socket] {
        let ack = client
            .request("join-session", json!({ "sessionId": session_id }), WAIT)
            .await
            .expect("join answered");
        assert_eq!(ack["ok"], json!(true), "{ack}");
    }
    heard_of(&mut colleague_socket, &session_id).await;

    let transfer = format!("/api/chat/sessions/{session_id}/transfer");
    let (status, moved) = try_rest(
        first,
        "POST",
        &transfer,
        Some(&owner),
        Some(json!({ "pool": "beta" })),
        WAIT,
    )
    .await
    .expect("transfer");
    assert_eq!(status, 200, "{moved}");
    let updated = event_of(&mut colleague_socket, "session-updated", &session_id).await;
    assert_eq!(updated["session"]["pool"], "beta");

    let ack = customer_socket
        .request(
            "send-message",
            json!({ "sessionId": session_id, "content": "anyone in beta?", "clientMsgId": "xr-1" }),
            WAIT,
        )
        .await
        .expect("send answered");
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let join = newcomer_socket
        .request("join-session", json!({ "sessionId": session_id }), WAIT)
        .await
        .expect("newcomer join");
    assert_eq!(join["ok"], json!(true), "{join}");
    event_of(&mut customer_socket, "new-message", &session_id).await;

    let heard = heard_of(&mut colleague_socket, &session_id).await;
    assert!(
        heard.is_empty(),
        "the old pool still hears the session on the other pod: {heard:?}"
    );
    let typing = colleague_socket
        .request(
            "typing",
            json!({ "sessionId": session_id, "isTyping": true }),
            WAIT,
        )
        .await
        .expect("typing answered");
    assert_eq!(typing["error"]["code"], "forbidden", "{typing}");

    cluster.assert_none_exited();
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_s_rest_write_budget_is_shared_by_every_gateway() {
    // Its keys are deleted when the test ends, after the processes stop.
    let namespace = RedisNamespace::new(&shared_redis_url()).await;
    let database = Database::create(&shared_database_url()).await;
    let spec = spec(
        &namespace.url,
        &database.url,
        &namespace.prefix,
        &[("RATE_LIMIT_PER_SEC", "1"), ("RATE_LIMIT_BURST", "4")],
    );
    let mut cluster = Cluster::start(spec, 2, 1).await;
    let [first, second] = cluster.gateway_addrs()[..] else {
        panic!("two gateways");
    };
    let customer = token("xr-budget", "customer", &[]);
    let (status, session) = try_rest(
        first,
        "POST",
        "/api/chat/sessions",
        Some(&customer),
        Some(json!({})),
        WAIT,
    )
    .await
    .expect("create");
    assert_eq!(status, 201, "{session}");
    let path = format!(
        "/api/chat/sessions/{}/messages",
        session["id"].as_str().expect("id")
    );
    let mut statuses = Vec::new();
    // Alternating between the gateways: one budget of four writes in all.
    for n in 0..5 {
        let gateway = if n % 2 == 0 { second } else { first };
        let body = json!({ "content": format!("write {n}"), "clientMsgId": format!("xr-w{n}") });
        let (status, _) = try_rest(gateway, "POST", &path, Some(&customer), Some(body), WAIT)
            .await
            .expect("write answered");
        statuses.push(status);
    }
    assert_eq!(statuses, vec![201, 201, 201, 429, 429], "{statuses:?}");
    cluster.assert_none_exited();
    cluster.stop().await;
}
