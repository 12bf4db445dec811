//! Internal notes and invited colleagues through the public protocol.
//!
//! A customer never receives a note: not live, not in `join-session` (with
//! or without `lastSeq`, with notes between messages), not over REST in any
//! paging mode, not in a gap repaired after a reconnect, not inside
//! `session-updated` or timeline entries; message numbers stay without gaps
//! around notes. Staff get notes live, in their joins and over REST; a
//! note is refused to customers and to agents who may only read, and a
//! resent note is stored once. An invited colleague reads and writes the
//! session until they leave, and then hears nothing more of it.

use serde_json::{json, Value};

use crate::harness::server::TestServer;
use crate::harness::sio_client::{seqs, SioClient};
use crate::harness::tokens::token;
use crate::harness::WAIT;

/// Text every note carries, so that a leak is found wherever it hides.
const SECRET: &str = "STAFF-ONLY-NOTE";

/// Every frame the client holds after a round trip of its own (everything
/// sent to it before the probe's ack has arrived by then), as raw text.
async fn everything_heard(client: &mut SioClient) -> Vec<String> {
    let probe = client
        .emit_with_ack("leave-session", json!({ "sessionId": "probe" }))
        .await;
    assert_eq!(probe["ok"], json!(true));
    client.drain_backlog().into_iter().map(|r| r.raw).collect()
}

/// Panics if anything of a note is in `text`.
fn assert_no_note(who: &str, text: &str) {
    assert!(!text.contains(SECRET), "{who} got a note: {text}");
    assert!(!text.contains("new-note"), "{who} got new-note: {text}");
    assert!(
        !text.contains("\"internal\":true"),
        "{who} got an internal message: {text}"
    );
}

async fn send_note(client: &mut SioClient, session_id: &str, n: usize) -> Value {
    let ack = client
        .emit_with_ack(
            "send-message",
            json!({
                "sessionId": session_id,
                "content": format!("{SECRET} {n}"),
                "clientMsgId": format!("note-{n}"),
                "internal": true,
            }),
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "note {n}: {ack}");
    ack["message"].clone()
}

fn note_seqs(notes: &Value) -> Vec<(i64, i64)> {
    notes
        .as_array()
        .expect("a list of notes")
        .iter()
        .map(|n| {
            assert_eq!(n["internal"], json!(true), "{n}");
            (
                n["seq"].as_i64().expect("seq"),
                n["afterSeq"].as_i64().expect("afterSeq"),
            )
        })
        .collect()
}

async fn rest_json(server: &TestServer, method: &str, path: &str, who: &str) -> (u16, Value) {
    server.rest(method, path, Some(who), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_never_receives_a_note_and_staff_get_every_one() {
    let server = TestServer::start(&[]).await;
    let customer = token("nt-customer", "customer", &[]);
    let owner = token("nt-owner", "agent", &["default"]);
    let reader = token("nt-reader", "agent", &["default"]);
    let outsider = token("nt-outsider", "agent", &["elsewhere"]);
    let admin = token("nt-admin", "admin", &[]);
    let session = server
        .create_session(&customer, json!({ "message": "hello" }))
        .await;
    let id = session["id"].as_str().expect("id").to_owned();
    server.assign(&owner, &id).await;

    let mut customer_socket = server.connect(&customer).await;
    let mut owner_socket = server.connect(&owner).await;
    let mut reader_socket = server.connect(&reader).await;
    let mut admin_socket = server.connect(&admin).await;
    for client in [
        &mut customer_socket,
        &mut owner_socket,
        &mut reader_socket,
        &mut admin_socket,
    ] {
        client.join_session(&id, None).await;
        client.drain_backlog();
    }

    // Notes between messages, over the socket and over REST.
    owner_socket.send_message(&id, "message 2", "m-2").await;
    let first = send_note(&mut owner_socket, &id, 1).await;
    assert_eq!(
        (first["seq"].clone(), first["afterSeq"].clone()),
        (json!(1), json!(2))
    );
    customer_socket.send_message(&id, "message 3", "m-3").await;
    let (status, second) = server
        .rest(
            "POST",
            &format!("/api/chat/sessions/{id}/messages"),
            Some(&admin),
            Some(json!({ "content": format!("{SECRET} 2"), "clientMsgId": "note-2", "internal": true })),
        )
        .await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["internal"], json!(true));
    assert_eq!(
        (second["seq"].clone(), second["afterSeq"].clone()),
        (json!(2), json!(3))
    );
    let fourth = owner_socket.send_message(&id, "message 4", "m-4").await;
    assert_eq!(
        fourth["seq"],
        json!(4),
        "message numbers run on without gaps"
    );

    // Live: staff get both notes, the customer only messages 2..4.
    for (who, client) in [
        ("owner", &mut owner_socket),
        ("reader", &mut reader_socket),
        ("admin", &mut admin_socket),
    ] {
        for n in [1, 2] {
            let note = client
                .next_event("new-note", |p| p["seq"] == json!(n), WAIT)
                .await;
            assert_eq!(note["content"], json!(format!("{SECRET} {n}")), "{who}");
            assert_eq!(note["sessionId"], json!(id), "{who}");
        }
        let heard = everything_heard(client).await;
        assert!(
            !heard
                .iter()
                .any(|raw| raw.contains("new-message") && raw.contains(SECRET)),
            "{who}: a note went out as a message"
        );
    }
    let mut live = Vec::new();
    for expected in [2, 3, 4] {
        let message = customer_socket
            .next_event("new-message", |p| p["seq"] == json!(expected), WAIT)
            .await;
        live.push(message["seq"].as_i64().expect("seq"));
    }
    assert_eq!(live, vec![2, 3, 4]);
    for raw in everything_heard(&mut customer_socket).await {
        assert_no_note("the customer, live", &raw);
    }

    // join-session, with and without lastSeq.
    for last_seq in [None, Some(0), Some(1), Some(3)] {
        let ack = customer_socket.join_session(&id, last_seq).await;
        assert!(
            ack.get("notes").is_none(),
            "no notes key for customers: {ack}"
        );
        let from = last_seq.unwrap_or(0) + 1;
        assert_eq!(
            seqs(ack["messages"].as_array().expect("messages")),
            (from..=4).collect::<Vec<_>>()
        );
        assert_no_note("the customer's join", &ack.to_string());
        for raw in everything_heard(&mut customer_socket).await {
            assert_no_note("the customer's session-joined", &raw);
        }
        let staff = owner_socket.join_session(&id, last_seq).await;
        assert_eq!(note_seqs(&staff["notes"]), vec![(1, 2), (2, 3)]);
        assert_eq!(
            seqs(staff["messages"].as_array().expect("messages")),
            (from..=4).collect::<Vec<_>>()
        );
        assert!(staff["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .all(|m| m["internal"] == json!(false)));
    }
    let admin_join = admin_socket.join_session(&id, None).await;
    assert_eq!(note_seqs(&admin_join["notes"]).len(), 2);
    let reader_join = reader_socket.join_session(&id, None).await;
    assert_eq!(note_seqs(&reader_join["notes"]).len(), 2);

    // REST messages, every paging mode, for the customer and for staff.
    for query in [
        "",
        "?limit=1",
        "?afterSeq=0",
        "?afterSeq=1&limit=2",
        "?beforeSeq=5",
        "?beforeSeq=3&limit=1",
        "?afterSeq=1&beforeSeq=4",
        "?afterSeq=0&beforeSeq=9&limit=200",
    ] {
        for who in [&customer, &owner, &admin] {
            let (status, page) = rest_json(
                &server,
                "GET",
                &format!("/api/chat/sessions/{id}/messages{query}"),
                who,
            )
            .await;
            assert_eq!(status, 200, "{query}: {page}");
            assert_no_note(&format!("GET messages{query}"), &page.to_string());
            let got = seqs(page["items"].as_array().expect("items"));
            assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{query}: {got:?}");
            assert!(
                got.iter().all(|seq| (1..=4).contains(seq)),
                "{query}: {got:?}"
            );
        }
    }
    let (_, everything) = rest_json(
        &server,
        "GET",
        &format!("/api/chat/sessions/{id}/messages?afterSeq=0"),
        &customer,
    )
    .await;
    assert_eq!(
        seqs(everything["items"].as_array().expect("items")),
        vec![1, 2, 3, 4]
    );

    // REST notes: staff who may read; customers and strangers refused.
    let notes_path = format!("/api/chat/sessions/{id}/notes");
    let (status, refused) = rest_json(&server, "GET", &notes_path, &customer).await;
    assert_eq!(
        (status, refused["error"]["code"].clone()),
        (403, json!("forbidden"))
    );
    assert_no_note("the customer's notes request", &refused.to_string());
    let (status, _) = rest_json(&server, "GET", &notes_path, &outsider).await;
    assert_eq!(status, 403);
    for who in [&owner, &reader, &admin] {
        let (status, page) = rest_json(&server, "GET", &notes_path, who).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(note_seqs(&page["items"]), vec![(1, 2), (2, 3)]);
        assert_eq!(page["hasMore"], json!(false));
    }
    let (_, paged) = rest_json(&server, "GET", &format!("{notes_path}?afterSeq=1"), &owner).await;
    assert_eq!(note_seqs(&paged["items"]), vec![(2, 3)]);
    let (_, paged) = rest_json(&server, "GET", &format!("{notes_path}?limit=1"), &owner).await;
    assert_eq!(note_seqs(&paged["items"]), vec![(2, 3)]);
    assert_eq!(paged["hasMore"], json!(true));
    let (_, paged) = rest_json(&server, "GET", &format!("{notes_path}?beforeSeq=2"), &owner).await;
    assert_eq!(note_seqs(&paged["items"]), vec![(1, 2)]);

    // The session, its timeline and its list carry nothing of notes.
    for path in [
        format!("/api/chat/sessions/{id}"),
        format!("/api/chat/sessions/{id}/events"),
        "/api/chat/sessions".to_owned(),
    ] {
        let (status, body) = rest_json(&server, "GET", &path, &customer).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_no_note(&path, &body.to_string());
    }
    assert_eq!(server.session(&customer, &id).await["lastSeq"], json!(4));

    // Who may not write a note, and that nothing is stored for them.
    let refused = customer_socket
        .emit_with_ack(
            "send-message",
            json!({ "sessionId": id, "content": format!("{SECRET} x"), "clientMsgId": "c-note", "internal": true }),
        )
        .await;
    assert_eq!(refused["ok"], json!(false));
    assert_eq!(refused["error"]["code"], json!("forbidden"));
    let (status, _) = server
        .rest(
            "POST",
            &format!("/api/chat/sessions/{id}/messages"),
            Some(&customer),
            Some(json!({ "content": "sneaky", "clientMsgId": "c-note-2", "internal": true })),
        )
        .await;
    assert_eq!(status, 403);
    let refused = reader_socket
        .emit_with_ack(
            "send-message",
            json!({ "sessionId": id, "content": "a reader's note", "clientMsgId": "r-note", "internal": true }),
        )
        .await;
    assert_eq!(refused["error"]["code"], json!("forbidden"), "{refused}");
    let bad = owner_socket
        .emit_with_ack(
            "send-message",
            json!({ "sessionId": id, "content": "x", "clientMsgId": "bad", "internal": "yes" }),
        )
        .await;
    assert_eq!(bad["error"]["code"], json!("invalid_payload"), "{bad}");

    // A resent note is the original, stored once.
    let again = send_note(&mut owner_socket, &id, 1).await;
    assert_eq!(again["id"], first["id"]);
    let (status, again) = server
        .rest(
            "POST",
            &format!("/api/chat/sessions/{id}/messages"),
            Some(&admin),
            Some(json!({ "content": format!("{SECRET} 2"), "clientMsgId": "note-2", "internal": true })),
        )
        .await;
    assert_eq!(status, 200, "a repeat is 200 with the original");
    assert_eq!(again["id"], second["id"]);
    let (_, page) = rest_json(&server, "GET", &notes_path, &owner).await;
    assert_eq!(
        note_seqs(&page["items"]),
        vec![(1, 2), (2, 3)],
        "nothing stored twice or for refusals"
    );

    // A reconnect whose gap spans notes repairs messages only.
    drop(customer_socket);
    owner_socket.send_message(&id, "message 5", "m-5").await;
    send_note(&mut owner_socket, &id, 3).await;
    owner_socket.send_message(&id, "message 6", "m-6").await;
    send_note(&mut owner_socket, &id, 4).await;
    let mut customer_socket = server.connect(&customer).await;
    let rejoined = customer_socket.join_session(&id, Some(4)).await;
    assert_eq!(
        seqs(rejoined["messages"].as_array().expect("messages")),
        vec![5, 6]
    );
    assert!(rejoined.get("notes").is_none());
    assert_no_note("the customer's catch-up", &rejoined.to_string());
    owner_socket.send_message(&id, "message 7", "m-7").await;
    send_note(&mut owner_socket, &id, 5).await;
    owner_socket.send_message(&id, "message 8", "m-8").await;
    customer_socket
        .next_event("new-message", |p| p["seq"] == json!(8), WAIT)
        .await;
    for raw in everything_heard(&mut customer_socket).await {
        assert_no_note("the customer after reconnecting", &raw);
    }
    let (_, page) = rest_json(
        &server,
        "GET",
        &format!("/api/chat/sessions/{id}/messages?afterSeq=0"),
        &customer,
    )
    .await;
    assert_eq!(
        seqs(page["items"].as_array().expect("items")),
        (1..=8).collect::<Vec<_>>()
    );
}

/// Whether anything the client holds mentions the session.
async fn heard_of(client: &mut SioClient, session_id: &str) -> Vec<String> {
    everything_heard(client)
        .await
        .into_iter()
        .filter(|raw| raw.contains(session_id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_colleague_writes_until_they_leave() {
    let server = TestServer::start(&[("POOLS", "alpha,beta")]).await;
    let customer = token("ic-customer", "customer", &[]);
    let owner = token("ic-owner", "agent", &["alpha"]);
    let guest = token("ic-guest", "agent", &["beta"]);
    let bystander = token("ic-bystander", "agent", &["alpha"]);
    let session = server
        .create_session(&customer, json!({ "pool": "alpha", "message": "help" }))
        .await;
    let id = session["id"].as_str().expect("id").to_owned();
    server.assign(&owner, &id).await;
    let mut guest_socket = server.connect(&guest).await;
    let _bystander_online = server.connect(&bystander).await;
    let mut customer_socket = server.connect(&customer).await;
    customer_socket.join_session(&id, None).await;
    let mut owner_socket = server.connect(&owner).await;
    owner_socket.join_session(&id, None).await;

    // Before the invitation the guest may not even read it.
    let refused = guest_socket
        .emit_with_ack("join-session", json!({ "sessionId": id }))
        .await;
    assert_eq!(refused["error"]["code"], json!("forbidden"));

    let path = format!("/api/chat/sessions/{id}/participants");
    for (who, body, status, code) in [
        (
            &customer,
            json!({ "agentId": "ic-guest" }),
            403,
            "forbidden",
        ),
        (
            &bystander,
            json!({ "agentId": "ic-guest" }),
            403,
            "forbidden",
        ),
        (
            &owner,
            json!({ "agentId": "nobody-known" }),
            404,
            "not_found",
        ),
        (&owner, json!({ "agentId": "ic-owner" }), 409, "conflict"),
        (&owner, json!({}), 400, "invalid_payload"),
    ] {
        let (got, answer) = server.rest("POST", &path, Some(who), Some(body)).await;
        assert_eq!(
            (got, answer["error"]["code"].clone()),
            (status, json!(code)),
            "{answer}"
        );
    }
    let (status, invited) = server
        .rest(
            "POST",
            &path,
            Some(&owner),
            Some(json!({ "agentId": "ic-guest" })),
        )
        .await;
    assert_eq!(status, 200, "{invited}");
    let participants = invited["participants"].as_array().expect("participants");
    assert_eq!(participants.len(), 1);
    assert_eq!(participants[0]["userId"], json!("ic-guest"));
    assert_eq!(participants[0]["role"], json!("agent"));
    let (status, again) = server
        .rest(
            "POST",
            &path,
            Some(&owner),
            Some(json!({ "agentId": "ic-guest" })),
        )
        .await;
    assert_eq!(
        (status, again["error"]["code"].clone()),
        (409, json!("conflict"))
    );

    // The guest hears of it on their own sockets, then joins and writes.
    let updated = guest_socket
        .next_event("session-updated", |p| p["session"]["id"] == json!(id), WAIT)
        .await;
    assert_eq!(
        updated["session"]["participants"][0]["userId"],
        json!("ic-guest")
    );
    let entry = owner_socket
        .next_event("session-event", |p| p["kind"] == json!("invited"), WAIT)
        .await;
    assert_eq!(entry["agentId"], json!("ic-guest"));
    assert_eq!(entry["by"]["userId"], json!("ic-owner"));
    let joined = guest_socket.join_session(&id, None).await;
    assert!(joined["notes"].is_array(), "a colleague is staff: {joined}");
    let written = guest_socket
        .send_message(&id, "the guest writes", "g-1")
        .await;
    assert_eq!(written["seq"], json!(2));
    send_note(&mut guest_socket, &id, 1).await;
    owner_socket
        .next_event("new-note", |p| p["senderId"] == json!("ic-guest"), WAIT)
        .await;
    customer_socket
        .next_event("new-message", |p| p["seq"] == json!(2), WAIT)
        .await;
    for raw in everything_heard(&mut customer_socket).await {
        assert_no_note("the customer, with a colleague", &raw);
    }

    // The guest leaves: session-updated is their last event of it.
    let (status, left) = server
        .rest("DELETE", &format!("{path}/ic-guest"), Some(&guest), None)
        .await;
    assert_eq!(status, 200, "{left}");
    assert_eq!(left["participants"], json!([]));
    guest_socket
        .next_event(
            "session-updated",
            |p| p["session"]["id"] == json!(id) && p["session"]["participants"] == json!([]),
            WAIT,
        )
        .await;
    guest_socket.drain_backlog();
    owner_socket
        .send_message(&id, "after the guest left", "o-1")
        .await;
    send_note(&mut owner_socket, &id, 2).await;
    customer_socket
        .next_event("new-message", |p| p["seq"] == json!(3), WAIT)
        .await;
    let heard = heard_of(&mut guest_socket, &id).await;
    assert!(heard.is_empty(), "the guest still hears: {heard:?}");
    let refused = guest_socket
        .emit_with_ack(
            "send-message",
            json!({ "sessionId": id, "content": "still here?", "clientMsgId": "g-2" }),
        )
        .await;
    assert_eq!(refused["error"]["code"], json!("forbidden"));
    let refused = guest_socket
        .emit_with_ack("join-session", json!({ "sessionId": id }))
        .await;
    assert_eq!(refused["error"]["code"], json!("forbidden"));
    let (status, _) = server
        .rest("DELETE", &format!("{path}/ic-guest"), Some(&owner), None)
        .await;
    assert_eq!(status, 404);

    // The timeline names the colleague; the customer's copy holds no note.
    let (_, events) = server
        .rest(
            "GET",
            &format!("/api/chat/sessions/{id}/events"),
            Some(&customer),
            None,
        )
        .await;
    let kinds: Vec<(Value, Value)> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| (e["kind"].clone(), e["agentId"].clone()))
        .collect();
    assert!(
        kinds.contains(&(json!("invited"), json!("ic-guest"))),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(json!("left"), json!("ic-guest"))),
        "{kinds:?}"
    );
    assert_no_note("the timeline", &events.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_five_colleagues_and_none_once_closed() {
    let server = TestServer::start(&[]).await;
    let customer = token("five-customer", "customer", &[]);
    let owner = token("five-owner", "agent", &["default"]);
    let session = server.create_session(&customer, json!({})).await;
    let id = session["id"].as_str().expect("id").to_owned();
    server.assign(&owner, &id).await;
    let mut online = Vec::new();
    for n in 1..=6 {
        // Connecting puts an agent in the directory.
        online.push(
            server
                .connect(&token(&format!("five-{n}"), "agent", &["other"]))
                .await,
        );
    }
    let path = format!("/api/chat/sessions/{id}/participants");
    for n in 1..=5 {
        let (status, body) = server
            .rest(
                "POST",
                &path,
                Some(&owner),
                Some(json!({ "agentId": format!("five-{n}") })),
            )
            .await;
        assert_eq!(status, 200, "{n}: {body}");
    }
    let (status, body) = server
        .rest(
            "POST",
            &path,
            Some(&owner),
            Some(json!({ "agentId": "five-6" })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("conflict"))
    );
    let admin = token("five-admin", "admin", &[]);
    let (status, _) = server
        .rest("DELETE", &format!("{path}/five-1"), Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .rest(
            "POST",
            &format!("/api/chat/sessions/{id}/close"),
            Some(&owner),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .rest(
            "POST",
            &path,
            Some(&owner),
            Some(json!({ "agentId": "five-6" })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("session_closed"))
    );
    // A colleague's rights end with the session.
    let (status, _) = server
        .rest(
            "GET",
            &format!("/api/chat/sessions/{id}"),
            Some(&token("five-2", "agent", &["other"])),
            None,
        )
        .await;
    assert_eq!(status, 403);
}
