//! Routing through the real standalone server: `set-status` and its
//! refusals, `agent-updated` to the pool, an admin's capacity over REST,
//! automatic assignment with no click, `queue-position` moving as the
//! queue moves, and an absent agent's chats going back to the queue.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::eventually::eventually;
use crate::harness::server::TestServer;
use crate::harness::sio_client::SioClient;
use crate::harness::tokens::token;

const WAIT: Duration = Duration::from_secs(10);

/// The next `agent-updated` about `agent_id`.
async fn agent_update(socket: &mut SioClient, agent_id: &str) -> Value {
    socket
        .next_event("agent-updated", |p| p["agent"]["id"] == agent_id, WAIT)
        .await["agent"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_set_their_status_and_the_pool_sees_it_live() {
    let server = TestServer::start(&[]).await;
    let ann = token("rt-ann", "agent", &["default"]);
    let bob = token("rt-bob", "agent", &["default"]);
    let customer = token("rt-carla", "customer", &[]);
    let mut ann_socket = server.connect(&ann).await;
    let mut bob_socket = server.connect(&bob).await;
    let mut customer_socket = server.connect(&customer).await;

    let ack = ann_socket
        .emit_with_ack("set-status", json!({ "status": "away" }))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    assert_eq!(ack["agent"]["status"], "away");
    assert_eq!(ack["agent"]["openChats"], json!(0));
    assert_eq!(
        ack["agent"]["capacity"],
        json!(5),
        "the default POOL_CAPACITY"
    );
    let seen = agent_update(&mut bob_socket, "rt-ann").await;
    assert_eq!(seen["status"], "away");

    for (payload, code) in [
        (json!({ "status": "offline" }), "invalid_payload"),
        (json!({ "status": "busy" }), "invalid_payload"),
        (json!({}), "invalid_payload"),
    ] {
        let ack = ann_socket
            .emit_with_ack("set-status", payload.clone())
            .await;
        assert_eq!(ack["error"]["code"], code, "{payload}: {ack}");
    }
    let refused = customer_socket
        .emit_with_ack("set-status", json!({ "status": "online" }))
        .await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");

    // The status outlives the socket; offline is what no socket means.
    drop(ann_socket);
    let gone = agent_update(&mut bob_socket, "rt-ann").await;
    assert_eq!(gone["status"], "offline");
    assert_eq!(gone["online"], json!(false));
    let _again = server.connect(&ann).await;
    let back = agent_update(&mut bob_socket, "rt-ann").await;
    assert_eq!(back["status"], "away", "as they last said: {back}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_set_an_agents_capacity_and_nobody_else_may() {
    let server = TestServer::start(&[]).await;
    let ann = token("cap-ann", "agent", &["default"]);
    let admin = token("cap-root", "admin", &[]);
    let mut ann_socket = server.connect(&ann).await;

    let (status, entry) = server
        .rest(
            "POST",
            "/api/chat/agents/cap-ann/capacity",
            Some(&admin),
            Some(json!({ "capacity": 2 })),
        )
        .await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["capacity"], json!(2));
    // Her own connection announced her first, at the default.
    let seen = ann_socket
        .next_event("agent-updated", |p| p["agent"]["capacity"] == 2, WAIT)
        .await;
    assert_eq!(seen["agent"]["id"], "cap-ann");

    let refusals = [
        (&ann, "cap-ann", json!({ "capacity": 9 }), 403, "forbidden"),
        (&admin, "nobody", json!({ "capacity": 1 }), 404, "not_found"),
        (
            &admin,
            "cap-ann",
            json!({ "capacity": -1 }),
            400,
            "invalid_payload",
        ),
        (&admin, "cap-ann", json!({}), 400, "invalid_payload"),
    ];
    for (who, agent, body, expected, code) in refusals {
        let path = format!("/api/chat/agents/{agent}/capacity");
        let (status, answer) = server.rest("POST", &path, Some(who), Some(body)).await;
        assert_eq!(
            (status, answer["error"]["code"].clone()),
            (expected, json!(code)),
            "{answer}"
        );
    }
    let (status, entry) = server
        .rest(
            "POST",
            "/api/chat/agents/cap-ann/capacity",
            Some(&admin),
            Some(json!({ "capacity": null })),
        )
        .await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["capacity"], json!(5), "back to the pool's default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_agent_gets_a_new_chat_with_no_click_and_the_queue_moves() {
    let server = TestServer::start(&[("ASSIGNMENT", "auto"), ("POOL_CAPACITY", "1")]).await;
    let ann = token("auto-ann", "agent", &["default"]);
    let mut ann_socket = server.connect(&ann).await;
    let customers: Vec<String> = (0..3)
        .map(|i| token(&format!("auto-c{i}"), "customer", &[]))
        .collect();

    // The first goes straight to Ann.
    let first = server.create_session(&customers[0], json!({})).await;
    assert_eq!(first["status"], "active", "{first}");
    assert_eq!(first["agentId"], "auto-ann");
    let told = ann_socket
        .next_event(
            "session-updated",
            |p| p["session"]["id"] == first["id"],
            WAIT,
        )
        .await;
    assert_eq!(told["session"]["status"], "active");

    // The next two wait, in order.
    let second = server.create_session(&customers[1], json!({})).await;
    let third = server.create_session(&customers[2], json!({})).await;
    assert_eq!(second["status"], "pending");
    assert_eq!(third["status"], "pending");
    let mut third_socket = server.connect(&customers[2]).await;
    third_socket
        .join_session(third["id"].as_str().expect("id"), None)
        .await;
    let place = third_socket
        .next_event("queue-position", |p| p["sessionId"] == third["id"], WAIT)
        .await;
    assert_eq!(place["position"], json!(2), "{place}");
    assert!(
        place["estimatedWaitSeconds"].is_i64(),
        "one was assigned: {place}"
    );

    // Ann closes her chat: the second is hers, and the third moves up.
    let path = format!(
        "/api/chat/sessions/{}/close",
        first["id"].as_str().expect("id")
    );
    let (status, body) = server
        .rest("POST", &path, Some(&ann), Some(json!({})))
        .await;
    assert_eq!(status, 200, "{body}");
    let moved = third_socket
        .next_event(
            "queue-position",
            |p| p["sessionId"] == third["id"] && p["position"] == 1,
            WAIT,
        )
        .await;
    assert_eq!(moved["position"], json!(1));
    let second_now = server
        .session(&customers[1], second["id"].as_str().expect("id"))
        .await;
    assert_eq!(second_now["status"], "active", "{second_now}");
    assert_eq!(second_now["agentId"], "auto-ann");

    // Away: Ann keeps her chat and gets no new one when room opens.
    let ack = ann_socket
        .emit_with_ack("set-status", json!({ "status": "away" }))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let path = format!(
        "/api/chat/sessions/{}/close",
        second["id"].as_str().expect("id")
    );
    let (status, _) = server
        .rest("POST", &path, Some(&ann), Some(json!({})))
        .await;
    assert_eq!(status, 200);
    let third_now = server
        .session(&customers[2], third["id"].as_str().expect("id"))
        .await;
    assert_eq!(third_now["status"], "pending", "nobody online: {third_now}");
    // Back online: the waiting one is hers at once.
    let ack = ann_socket
        .emit_with_ack("set-status", json!({ "status": "online" }))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let given = third_socket
        .next_event(
            "session-updated",
            |p| p["session"]["id"] == third["id"],
            WAIT,
        )
        .await;
    assert_eq!(given["session"]["agentId"], "auto-ann", "{given}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_gone_too_long_has_their_chats_returned_to_the_queue() {
    let server = TestServer::start(&[("REASSIGN_AFTER_SECS", "1")]).await;
    let ann = token("gone-ann", "agent", &["default"]);
    let bea = token("gone-bea", "agent", &["default"]);
    let customer = token("gone-carla", "customer", &[]);
    let session = server.create_session(&customer, json!({})).await;
    let id = session["id"].as_str().expect("id").to_owned();
    let kept = server.create_session(&customer, json!({})).await;
    let kept_id = kept["id"].as_str().expect("id").to_owned();
    let ann_socket = server.connect(&ann).await;
    let _bea_socket = server.connect(&bea).await;
    server.assign(&ann, &id).await;
    server.assign(&bea, &kept_id).await;
    drop(ann_socket);

    let returned = eventually(
        Duration::from_secs(20),
        "Ann's chat back in the queue",
        || async {
            let now = server.session(&customer, &id).await;
            (now["status"] == "pending").then_some(now)
        },
    )
    .await;
    assert_eq!(returned["agentId"], Value::Null);
    // Bea is still connected: hers stays.
    let still = server.session(&customer, &kept_id).await;
    assert_eq!(still["status"], "active");
    assert_eq!(still["agentId"], "gone-bea");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_tells_who_took_returned_and_closed_a_chat() {
    let server = TestServer::start(&[]).await;
    let ann = token("tl-ann", "agent", &["default"]);
    let customer = token("tl-carla", "customer", &[]);
    let _ann_socket = server.connect(&ann).await;
    let session = server
        .create_session(&customer, json!({ "message": "hello" }))
        .await;
    let id = session["id"].as_str().expect("id").to_owned();
    let mut customer_socket = server.connect(&customer).await;
    customer_socket.join_session(&id, None).await;

    server.assign(&ann, &id).await;
    let live = customer_socket
        .next_event("session-event", |p| p["sessionId"] == id.as_str(), WAIT)
        .await;
    assert_eq!(live["kind"], "assigned", "{live}");
    assert_eq!(live["by"], json!({ "userId": "tl-ann", "role": "agent" }));
    assert_eq!(live["agentId"], "tl-ann");
    assert_eq!(live["afterSeq"], json!(1), "after the first message");

    let path = format!("/api/chat/sessions/{id}/transfer");
    let (status, body) = server
        .rest("POST", &path, Some(&ann), Some(json!({})))
        .await;
    assert_eq!(status, 200, "{body}");
    let path = format!("/api/chat/sessions/{id}/close");
    let (status, body) = server
        .rest("POST", &path, Some(&customer), Some(json!({})))
        .await;
    assert_eq!(status, 200, "{body}");

    let path = format!("/api/chat/sessions/{id}/events");
    let (status, events) = server.rest("GET", &path, Some(&customer), None).await;
    assert_eq!(status, 200, "{events}");
    let kinds: Vec<&str> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["assigned", "returned", "closed"]);
    assert_eq!(events["items"][2]["by"]["role"], "customer");

    // A join reply carries them too; messages keep their numbers.
    let mut again = server.connect(&customer).await;
    let joined = again.join_session(&id, None).await;
    assert_eq!(
        joined["events"].as_array().map(Vec::len),
        Some(3),
        "{joined}"
    );
    assert_eq!(joined["session"]["lastSeq"], json!(1));
    let stranger = token("tl-stranger", "customer", &[]);
    let (status, _) = server.rest("GET", &path, Some(&stranger), None).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_sees_open_chats_and_agents_in_one_answer() {
    let server = TestServer::start(&[]).await;
    let ann = token("sv-ann", "agent", &["default"]);
    let admin = token("sv-root", "admin", &[]);
    let customer = token("sv-carla", "customer", &[]);
    let _ann_socket = server.connect(&ann).await;
    let waiting = server.create_session(&customer, json!({})).await;
    let taken = server
        .create_session(&customer, json!({ "message": "one" }))
        .await;
    let returned = server.create_session(&customer, json!({})).await;
    let taken_id = taken["id"].as_str().expect("id").to_owned();
    let returned_id = returned["id"].as_str().expect("id").to_owned();
    server.assign(&ann, &taken_id).await;
    server
        .post_messages(&customer, &taken_id, 2, |n| format!("more {n}"))
        .await;
    server.assign(&ann, &returned_id).await;
    let path = format!("/api/chat/sessions/{returned_id}/transfer");
    let (status, _) = server
        .rest("POST", &path, Some(&ann), Some(json!({})))
        .await;
    assert_eq!(status, 200);
    let closed = server.create_session(&customer, json!({})).await;
    let path = format!(
        "/api/chat/sessions/{}/close",
        closed["id"].as_str().expect("id")
    );
    let (status, _) = server
        .rest("POST", &path, Some(&customer), Some(json!({})))
        .await;
    assert_eq!(status, 200);

    let (status, view) = server
        .rest("GET", "/api/chat/supervisor", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{view}");
    let chats = view["chats"].as_array().expect("chats");
    let ids: Vec<&str> = chats
        .iter()
        .map(|c| c["session"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [
            waiting["id"].as_str().expect("id"),
            taken_id.as_str(),
            returned_id.as_str()
        ],
        "open chats only, oldest first"
    );
    assert_eq!(chats[1]["unreadByAgent"], json!(3), "{}", chats[1]);
    assert_eq!(chats[0]["unreadByAgent"], Value::Null);
    assert_eq!(chats[0]["queuedAt"], chats[0]["session"]["createdAt"]);
    assert!(
        chats[2]["queuedAt"].as_str() > chats[2]["session"]["createdAt"].as_str(),
        "a returned chat waits from its return: {}",
        chats[2]
    );
    let agents = view["agents"].as_array().expect("agents");
    assert_eq!(agents.len(), 1, "{view}");
    assert_eq!(agents[0]["id"], "sv-ann");
    assert_eq!(agents[0]["openChats"], json!(1));
    assert_eq!(agents[0]["status"], "online");
    assert_eq!(agents[0]["answeredToday"], json!(0));

    let (status, _) = server
        .rest("GET", "/api/chat/supervisor", Some(&ann), None)
        .await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_lists_waiting_chats_in_order_with_their_place_and_entry_time() {
    let server = TestServer::start(&[]).await;
    let ann = token("q-ann", "agent", &["default"]);
    let admin = token("q-root", "admin", &[]);
    let customer = token("q-carla", "customer", &[]);
    let bill = token("q-bill", "agent", &["billing"]);
    let _ann_socket = server.connect(&ann).await;
    let _bill_socket = server.connect(&bill).await;
    let first = server.create_session(&customer, json!({})).await;
    let returned = server.create_session(&customer, json!({})).await;
    let taken = server.create_session(&customer, json!({})).await;
    let elsewhere = server
        .create_session(&customer, json!({ "pool": "billing" }))
        .await;
    let returned_id = returned["id"].as_str().expect("id").to_owned();
    server.assign(&ann, &returned_id).await;
    let path = format!("/api/chat/sessions/{returned_id}/transfer");
    let (status, _) = server
        .rest("POST", &path, Some(&ann), Some(json!({})))
        .await;
    assert_eq!(status, 200);
    server.assign(&ann, taken["id"].as_str().expect("id")).await;

    let (status, queue) = server
        .rest("GET", "/api/chat/queue", Some(&ann), None)
        .await;
    assert_eq!(status, 200, "{queue}");
    let items = queue["items"].as_array().expect("items");
    let ids: Vec<&str> = items
        .iter()
        .map(|item| item["session"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [first["id"].as_str().expect("id"), returned_id.as_str()],
        "the agent's pool only, waiting only, a returned chat keeps its place"
    );
    assert_eq!(items[0]["position"], json!(1));
    assert_eq!(items[1]["position"], json!(2));
    assert_eq!(items[0]["queuedAt"], items[0]["session"]["createdAt"]);
    assert!(
        items[1]["queuedAt"].as_str() > items[1]["session"]["createdAt"].as_str(),
        "a returned chat waits from its return: {}",
        items[1]
    );

    let (status, all) = server
        .rest("GET", "/api/chat/queue", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{all}");
    let billing: Vec<&Value> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|item| item["session"]["pool"] == "billing")
        .collect();
    assert_eq!(billing.len(), 1, "{all}");
    assert_eq!(billing[0]["session"]["id"], elsewhere["id"]);
    assert_eq!(billing[0]["position"], json!(1), "places count per pool");

    let (status, _) = server
        .rest("GET", "/api/chat/queue?pool=billing", Some(&ann), None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .rest("GET", "/api/chat/queue", Some(&customer), None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .rest(
            "GET",
            "/api/chat/queue?pool=not%20a%20pool",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 400);
}
