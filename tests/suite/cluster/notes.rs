//! Internal notes and invited colleagues across pods, over PostgreSQL and
//! Redis: a note written through one gateway reaches the staff joined on
//! the other and never the customer there (live, in joins with and without
//! `lastSeq`, over REST, in the gap a reconnect repairs); message numbers
//! run on without gaps; a colleague invited and then removed through one
//! gateway loses the session at once on the other.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::backing::{shared_database_url, shared_redis_url, Database, RedisNamespace};
use crate::harness::http::try_rest;
use crate::harness::processes::{spec, Cluster};
use crate::harness::sio_client::{seqs, SioClient};
use crate::harness::tokens::token;

const WAIT: Duration = Duration::from_secs(10);

/// Text every note carries, so that a leak is found wherever it hides.
const SECRET: &str = "CLUSTER-STAFF-NOTE";

/// Every frame the client holds after a round trip of its own.
async fn everything_heard(client: &mut SioClient) -> Vec<String> {
    let probe = client
        .emit_with_ack("leave-session", json!({ "sessionId": "probe" }))
        .await;
    assert_eq!(probe["ok"], json!(true));
    client.drain_backlog().into_iter().map(|r| r.raw).collect()
}

fn assert_no_note(who: &str, text: &str) {
    assert!(!text.contains(SECRET), "{who} got a note: {text}");
    assert!(!text.contains("new-note"), "{who} got new-note: {text}");
    assert!(!text.contains("\"internal\":true"), "{who}: {text}");
}

async fn join(client: &mut SioClient, session_id: &str, last_seq: Option<i64>) -> Value {
    let mut payload = json!({ "sessionId": session_id });
    if let Some(last) = last_seq {
        payload["lastSeq"] = json!(last);
    }
    let ack = client.emit_with_ack("join-session", payload).await;
    assert_eq!(ack["ok"], json!(true), "join: {ack}");
    ack
}

async fn send(
    client: &mut SioClient,
    session_id: &str,
    content: &str,
    id: &str,
    internal: bool,
) -> Value {
    let ack = client
        .emit_with_ack(
            "send-message",
            json!({ "sessionId": session_id, "content": content, "clientMsgId": id, "internal": internal }),
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "send {id}: {ack}");
    ack["message"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notes_reach_staff_on_every_pod_and_never_the_customer() {
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
    let customer = token("xn-customer", "customer", &[]);
    let owner = token("xn-owner", "agent", &["alpha"]);
    let reader = token("xn-reader", "agent", &["alpha"]);
    let guest = token("xn-guest", "agent", &["beta"]);

    let (status, session) = try_rest(
        first,
        "POST",
        "/api/chat/sessions",
        Some(&customer),
        Some(json!({ "pool": "alpha", "message": "hello" })),
        WAIT,
    )
    .await
    .expect("create");
    assert_eq!(status, 201, "{session}");
    let id = session["id"].as_str().expect("id").to_owned();
    let assign = format!("/api/chat/sessions/{id}/assign");
    let (status, body) = try_rest(second, "POST", &assign, Some(&owner), Some(json!({})), WAIT)
        .await
        .expect("assign");
    assert_eq!(status, 200, "{body}");

    // The customer and the reader on the first pod, the owner on the second.
    let mut customer_socket = SioClient::try_connect(first, &customer, WAIT)
        .await
        .expect("customer");
    let mut reader_socket = SioClient::try_connect(first, &reader, WAIT)
        .await
        .expect("reader");
    let mut guest_socket = SioClient::try_connect(first, &guest, WAIT)
        .await
        .expect("guest");
    let mut owner_socket = SioClient::try_connect(second, &owner, WAIT)
        .await
        .expect("owner");
    for client in [&mut customer_socket, &mut reader_socket, &mut owner_socket] {
        join(client, &id, None).await;
        client.drain_backlog();
    }

    // Notes between messages, through the second pod.
    send(&mut owner_socket, &id, "message 2", "m-2", false).await;
    let note = send(&mut owner_socket, &id, &format!("{SECRET} 1"), "n-1", true).await;
    assert_eq!(
        (note["seq"].clone(), note["afterSeq"].clone()),
        (json!(1), json!(2))
    );
    send(&mut owner_socket, &id, "message 3", "m-3", false).await;
    let path = format!("/api/chat/sessions/{id}/messages");
    let (status, rest_note) = try_rest(
        second,
        "POST",
        &path,
        Some(&owner),
        Some(json!({ "content": format!("{SECRET} 2"), "clientMsgId": "n-2", "internal": true })),
        WAIT,
    )
    .await
    .expect("a note over REST");
    assert_eq!(status, 201, "{rest_note}");
    send(&mut owner_socket, &id, "message 4", "m-4", false).await;

    // Staff on the other pod get both; the customer there only messages.
    for n in [1, 2] {
        let got = reader_socket
            .next_event("new-note", |p| p["seq"] == json!(n), WAIT)
            .await;
        assert_eq!(got["content"], json!(format!("{SECRET} {n}")));
    }
    for seq in [2, 3, 4] {
        customer_socket
            .next_event("new-message", |p| p["seq"] == json!(seq), WAIT)
            .await;
    }
    for raw in everything_heard(&mut customer_socket).await {
        assert_no_note("the customer on the other pod", &raw);
    }
    for last_seq in [None, Some(2)] {
        let ack = join(&mut customer_socket, &id, last_seq).await;
        assert!(ack.get("notes").is_none(), "{ack}");
        assert_no_note("the customer's join", &ack.to_string());
        let from = last_seq.unwrap_or(0) + 1;
        assert_eq!(
            seqs(ack["messages"].as_array().expect("messages")),
            (from..=4).collect::<Vec<_>>()
        );
        let staff = join(&mut reader_socket, &id, last_seq).await;
        assert_eq!(staff["notes"].as_array().expect("notes").len(), 2);
    }
    for raw in everything_heard(&mut customer_socket).await {
        assert_no_note("the customer after joining", &raw);
    }
    for (gateway, query) in [
        (first, "?afterSeq=0"),
        (second, ""),
        (first, "?beforeSeq=9&limit=2"),
    ] {
        let (status, page) = try_rest(
            gateway,
            "GET",
            &format!("{path}{query}"),
            Some(&customer),
            None,
            WAIT,
        )
        .await
        .expect("history");
        assert_eq!(status, 200, "{page}");
        assert_no_note("REST messages", &page.to_string());
        let got = seqs(page["items"].as_array().expect("items"));
        assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
    }
    let notes = format!("/api/chat/sessions/{id}/notes");
    let (status, _) = try_rest(first, "GET", &notes, Some(&customer), None, WAIT)
        .await
        .expect("notes");
    assert_eq!(status, 403);
    let (status, page) = try_rest(first, "GET", &notes, Some(&reader), None, WAIT)
        .await
        .expect("notes");
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().expect("items").len(), 2);

    // A reconnect on the other pod whose gap spans notes.
    drop(customer_socket);
    send(&mut owner_socket, &id, "message 5", "m-5", false).await;
    send(&mut owner_socket, &id, &format!("{SECRET} 3"), "n-3", true).await;
    send(&mut owner_socket, &id, "message 6", "m-6", false).await;
    let mut customer_socket = SioClient::try_connect(first, &customer, WAIT)
        .await
        .expect("customer again");
    let rejoined = join(&mut customer_socket, &id, Some(4)).await;
    assert_eq!(
        seqs(rejoined["messages"].as_array().expect("messages")),
        vec![5, 6]
    );
    assert_no_note("the catch-up", &rejoined.to_string());

    // A colleague invited through the second pod, heard on the first.
    let participants = format!("/api/chat/sessions/{id}/participants");
    let (status, invited) = try_rest(
        second,
        "POST",
        &participants,
        Some(&owner),
        Some(json!({ "agentId": "xn-guest" })),
        WAIT,
    )
    .await
    .expect("invite");
    assert_eq!(status, 200, "{invited}");
    guest_socket
        .next_event("session-updated", |p| p["session"]["id"] == json!(id), WAIT)
        .await;
    join(&mut guest_socket, &id, None).await;
    send(&mut guest_socket, &id, "the guest writes", "g-1", false).await;
    send(&mut owner_socket, &id, &format!("{SECRET} 4"), "n-4", true).await;
    guest_socket
        .next_event("new-note", |p| p["seq"] == json!(4), WAIT)
        .await;
    customer_socket
        .next_event("new-message", |p| p["seq"] == json!(7), WAIT)
        .await;

    // Removed through the second pod: nothing more on the first.
    let (status, _) = try_rest(
        second,
        "DELETE",
        &format!("{participants}/xn-guest"),
        Some(&owner),
        None,
        WAIT,
    )
    .await
    .expect("remove");
    assert_eq!(status, 200);
    guest_socket
        .next_event(
            "session-updated",
            |p| p["session"]["participants"] == json!([]),
            WAIT,
        )
        .await;
    guest_socket.drain_backlog();
    send(&mut owner_socket, &id, &format!("{SECRET} 5"), "n-5", true).await;
    send(&mut owner_socket, &id, "message 8", "m-8", false).await;
    reader_socket
        .next_event("new-note", |p| p["seq"] == json!(5), WAIT)
        .await;
    customer_socket
        .next_event("new-message", |p| p["seq"] == json!(8), WAIT)
        .await;
    let heard: Vec<String> = everything_heard(&mut guest_socket)
        .await
        .into_iter()
        .filter(|raw| raw.contains(&id))
        .collect();
    assert!(
        heard.is_empty(),
        "the removed colleague still hears: {heard:?}"
    );
    for raw in everything_heard(&mut customer_socket).await {
        assert_no_note("the customer at the end", &raw);
    }

    cluster.assert_none_exited();
    cluster.stop().await;
}
