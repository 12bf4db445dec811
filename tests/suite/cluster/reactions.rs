//! Reactions and delivery positions across pods: a reaction given through
//! one gateway and a delivery position moved through the other reach the
//! sockets joined on the other pod live, and a later join (on either pod)
//! and REST history carry what was stored.

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
            if event == name && payload["sessionId"] == session_id {
                return payload;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} for {session_id} within {WAIT:?}"))
}

async fn ok_request(client: &SioClient, event: &str, payload: Value) -> Value {
    let ack = client
        .request(event, payload, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{event} answered: {e:?}"));
    assert_eq!(ack["ok"], json!(true), "{event}: {ack}");
    ack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reactions_and_deliveries_cross_pods_and_outlive_the_sockets() {
    // Its keys are deleted when the test ends, after the processes stop.
    let namespace = RedisNamespace::new(&shared_redis_url()).await;
    let database = Database::create(&shared_database_url()).await;
    let spec = spec(&namespace.url, &database.url, &namespace.prefix, &[]);
    let mut cluster = Cluster::start(spec, 2, 1).await;
    let [first, second] = cluster.gateway_addrs()[..] else {
        panic!("two gateways");
    };
    let customer = token("rx-customer", "customer", &[]);
    let owner = token("rx-agent", "agent", &["default"]);

    let (status, session) = try_rest(
        first,
        "POST",
        "/api/chat/sessions",
        Some(&customer),
        Some(json!({ "message": "my parcel is late" })),
        WAIT,
    )
    .await
    .expect("create");
    assert_eq!(status, 201, "{session}");
    let session_id = session["id"].as_str().expect("id").to_owned();
    let assign = format!("/api/chat/sessions/{session_id}/assign");
    let (status, body) = try_rest(second, "POST", &assign, Some(&owner), Some(json!({})), WAIT)
        .await
        .expect("assign");
    assert_eq!(status, 200, "{body}");

    let mut customer_socket = SioClient::try_connect(first, &customer, WAIT)
        .await
        .expect("customer");
    let mut agent_socket = SioClient::try_connect(second, &owner, WAIT)
        .await
        .expect("agent");
    for client in [&customer_socket, &agent_socket] {
        let joined = ok_request(client, "join-session", json!({ "sessionId": session_id })).await;
        assert_eq!(joined["deliveryPositions"], json!([]), "{joined}");
        assert_eq!(joined["messages"][0]["reactions"], json!([]), "{joined}");
    }

    // The customer reacts through the first pod; the agent on the second
    // sees the whole list.
    let ack = ok_request(
        &customer_socket,
        "react",
        json!({ "sessionId": session_id, "seq": 1, "emoji": "👍", "on": true }),
    )
    .await;
    let expected = json!([{ "emoji": "👍", "count": 1, "userIds": ["rx-customer"] }]);
    assert_eq!(ack["reactions"], expected, "{ack}");
    assert_eq!(ack["seq"], json!(1));
    let live = event_of(&mut agent_socket, "message-reactions", &session_id).await;
    assert_eq!(
        live,
        json!({ "sessionId": session_id, "seq": 1, "reactions": expected })
    );

    // The agent confirms delivery through the second pod; the customer on
    // the first hears it.
    let ack = ok_request(
        &agent_socket,
        "mark-delivered",
        json!({ "sessionId": session_id, "upToSeq": 5 }),
    )
    .await;
    assert_eq!(
        ack["upToSeq"],
        json!(1),
        "clamped to the last message: {ack}"
    );
    assert_eq!(ack["userId"], "rx-agent");
    let delivered = event_of(&mut customer_socket, "messages-delivered", &session_id).await;
    assert_eq!(delivered["userId"], "rx-agent");
    assert_eq!(delivered["role"], "agent");
    assert_eq!(delivered["upToSeq"], json!(1));
    assert!(delivered["deliveredAt"].is_string(), "{delivered}");

    // A later join on either pod, and REST history, carry both.
    for gateway in [first, second] {
        let rejoining = SioClient::try_connect(gateway, &customer, WAIT)
            .await
            .expect("customer again");
        let joined = ok_request(
            &rejoining,
            "join-session",
            json!({ "sessionId": session_id }),
        )
        .await;
        assert_eq!(joined["messages"][0]["reactions"], expected, "{joined}");
        assert_eq!(
            joined["deliveryPositions"],
            json!([{ "userId": "rx-agent", "role": "agent", "upToSeq": 1 }]),
            "{joined}"
        );
        assert_eq!(
            joined["readPositions"],
            json!([]),
            "delivery is not reading"
        );
    }
    let history = format!("/api/chat/sessions/{session_id}/messages");
    let (status, page) = try_rest(second, "GET", &history, Some(&customer), None, WAIT)
        .await
        .expect("history");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["reactions"], expected, "{page}");

    cluster.assert_none_exited();
    cluster.stop().await;
}
