//! The agent directory and the transfer rule, through the real server: an
//! agent who connects is in `GET /agents` (online while a socket is open,
//! last seen once it closes); a transfer or an admin assignment goes only
//! to a known agent of the target pool, and a refused one changes nothing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::eventually::eventually;
use crate::harness::server::TestServer;
use crate::harness::tokens::token;

/// `POST /sessions/{id}/{action}` with `body`: status and answer.
async fn post(
    server: &TestServer,
    who: &str,
    session_id: &str,
    action: &str,
    body: Value,
) -> (u16, Value) {
    server
        .rest(
            "POST",
            &format!("/api/chat/sessions/{session_id}/{action}"),
            Some(who),
            Some(body),
        )
        .await
}

async fn agents(server: &TestServer, who: &str, pool: Option<&str>) -> (u16, Value) {
    let path = match pool {
        Some(pool) => format!("/api/chat/agents?pool={pool}"),
        None => "/api/chat/agents".to_owned(),
    };
    server.rest("GET", &path, Some(who), None).await
}

/// The fields of a session a refused command must leave alone.
fn assignment(session: &Value) -> (Value, Value, Value, Value) {
    (
        session["status"].clone(),
        session["agentId"].clone(),
        session["pool"].clone(),
        session["assignedAt"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_and_assignments_go_only_to_known_agents_of_the_pool() {
    let server = TestServer::start(&[]).await;
    let ann = token("ann", "agent", &["billing"]);
    let cy = token("cy", "agent", &["billing"]);
    let bea = token("bea", "agent", &["sales"]);
    let admin = token("root", "admin", &[]);
    // Connecting is what puts an agent in the directory.
    let _sockets = [
        server.connect(&ann).await,
        server.connect(&cy).await,
        server.connect(&bea).await,
    ];
    let customer = token("carla", "customer", &[]);
    let session = server
        .create_session(&customer, json!({ "pool": "billing" }))
        .await;
    let id = session["id"].as_str().expect("id").to_owned();
    let before = server.assign(&ann, &id).await;

    let refusals = [
        (json!({ "agentId": "nobody" }), 404, "not_found"),
        (json!({ "agentId": "ann-typo" }), 404, "not_found"),
        // The customer is a user the store knows, but no agent.
        (json!({ "agentId": "carla" }), 404, "not_found"),
        // Bea serves sales, not billing.
        (json!({ "agentId": "bea" }), 400, "invalid_payload"),
        // Cy serves billing, not sales.
        (
            json!({ "agentId": "cy", "pool": "sales" }),
            400,
            "invalid_payload",
        ),
    ];
    for (body, status, code) in &refusals {
        let (got, answer) = post(&server, &ann, &id, "transfer", body.clone()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (*status, Some(*code)),
            "{body}: {answer}"
        );
        let now = server.session(&customer, &id).await;
        assert_eq!(
            assignment(&now),
            assignment(&before),
            "{body} changed the session"
        );
    }

    // Admin assignments follow the same rule.
    let waiting = server
        .create_session(&customer, json!({ "pool": "billing" }))
        .await;
    let waiting_id = waiting["id"].as_str().expect("id").to_owned();
    for (body, status, code) in [
        (json!({ "agentId": "nobody" }), 404, "not_found"),
        (json!({ "agentId": "bea" }), 400, "invalid_payload"),
    ] {
        let (got, answer) = post(&server, &admin, &waiting_id, "assign", body.clone()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
        let now = server.session(&customer, &waiting_id).await;
        assert_eq!(now["status"], "pending", "{body}: {now}");
        assert_eq!(now["agentId"], Value::Null, "{body}: {now}");
    }
    let (status, assigned) = post(
        &server,
        &admin,
        &waiting_id,
        "assign",
        json!({ "agentId": "cy" }),
    )
    .await;
    assert_eq!(status, 200, "{assigned}");
    assert_eq!(assigned["agentId"], "cy");

    // A known agent of the pool: accepted, named by their directory name.
    let (status, moved) = post(&server, &ann, &id, "transfer", json!({ "agentId": "cy" })).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["status"], "active");
    assert_eq!(moved["agentId"], "cy");
    assert_eq!(moved["agentName"], "cy name");
    // And to another pool, to an agent who serves it.
    let (status, moved) = post(
        &server,
        &cy,
        &id,
        "transfer",
        json!({ "agentId": "bea", "pool": "sales" }),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        (moved["agentId"].as_str(), moved["pool"].as_str()),
        (Some("bea"), Some("sales"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_lists_connected_agents_online_then_last_seen() {
    let server = TestServer::start(&[]).await;
    let ann = token("ann", "agent", &["billing"]);
    let bob = token("bob", "agent", &["sales", "billing"]);
    let sam = token("sam", "agent", &["sales"]);
    let ann_socket = server.connect(&ann).await;
    let bob_socket = server.connect(&bob).await;
    let _sam_socket = server.connect(&sam).await;

    let (status, list) = agents(&server, &ann, Some("billing")).await;
    assert_eq!(status, 200, "{list}");
    let items = list["items"].as_array().expect("items");
    let ids: Vec<&str> = items.iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!(ids, ["ann", "bob"], "billing's agents, by name: {list}");
    assert_eq!(items[0]["name"], "ann name");
    assert_eq!(items[1]["pools"], json!(["billing", "sales"]));
    for item in items {
        assert_eq!(item["online"], true, "{item}");
        assert!(item["lastSeenAt"].is_string(), "{item}");
    }
    let seen_online = items[1]["lastSeenAt"]
        .as_str()
        .expect("lastSeenAt")
        .to_owned();

    // Without a pool: an agent sees the agents of the pools they serve;
    // an admin sees everyone.
    let (status, list) = agents(&server, &ann, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");
    let admin = token("root", "admin", &[]);
    let (status, list) = agents(&server, &admin, None).await;
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(ids, ["ann", "bob", "sam"], "{list}");

    // Bob leaves: still listed, offline, last seen as he left.
    // Timestamps have millisecond resolution: time itself must move on for
    // the departure to be stamped later than the listing above.
    tokio::time::sleep(Duration::from_millis(20)).await;
    bob_socket.close();
    let bob_entry = || async {
        let (_, list) = agents(&server, &ann, Some("billing")).await;
        list["items"]
            .as_array()
            .and_then(|items| items.iter().find(|a| a["id"] == "bob").cloned())
            .unwrap_or(Value::Null)
    };
    eventually(Duration::from_secs(5), "bob offline", || async {
        bob_entry().await["online"] == false
    })
    .await;
    let entry = bob_entry().await;
    let last_seen = entry["lastSeenAt"].as_str().expect("lastSeenAt");
    assert!(
        last_seen > seen_online.as_str(),
        "{last_seen} after {seen_online}"
    );
    let (_, list) = agents(&server, &ann, Some("billing")).await;
    assert_eq!(
        list["items"][0]["online"], true,
        "ann is still online: {list}"
    );
    drop(ann_socket);

    // Customers may not list; agents only the pools they serve.
    let customer = token("carla", "customer", &[]);
    for (who, pool) in [
        (&customer, Some("billing")),
        (&customer, None),
        (&ann, Some("sales")),
    ] {
        let (status, answer) = agents(&server, who, pool).await;
        assert_eq!(status, 403, "{pool:?}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden");
    }
    let (status, answer) = agents(&server, &admin, Some("bad%20pool")).await;
    assert_eq!(status, 400, "{answer}");
}
