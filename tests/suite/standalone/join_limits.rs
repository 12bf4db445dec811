//! What one socket can make the server hold is bounded in bytes: a
//! `join-session` reply carries at most 256 KiB of messages however large
//! they are (JSON writes a control character as six bytes), says `hasMore`,
//! and REST pages the rest with nothing missed or repeated; a socket that
//! asks for large replies and never reads is closed after the write
//! deadline while everyone else carries on.

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::harness::eventually::eventually;
use crate::harness::server::TestServer;
use crate::harness::sio_client::{raw_websocket, seqs, ws_url, Frame};
use crate::harness::tokens::token;
use crate::harness::WAIT;

/// The reply limit of §7, and room for the frame around the messages.
const REPLY_BYTES: usize = 256 * 1024;
const FRAME_OVERHEAD: usize = 8 * 1024;
/// 4,000 control characters: 24,000 bytes of JSON each.
fn heavy_content() -> String {
    "\u{1}".repeat(4000)
}

/// Every message after `after`, paged over REST as a client would.
async fn page_rest(server: &TestServer, customer: &str, session_id: &str, after: i64) -> Vec<i64> {
    let mut got = Vec::new();
    let mut cursor = after;
    loop {
        let path = format!("/api/chat/sessions/{session_id}/messages?afterSeq={cursor}&limit=50");
        let (status, page) = server.rest("GET", &path, Some(customer), None).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().expect("items").clone();
        let page_seqs = seqs(&items);
        got.extend(&page_seqs);
        if page["hasMore"] != json!(true) {
            return got;
        }
        cursor = *page_seqs.last().expect("a page with more has items");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_replies_are_bounded_in_bytes_and_rest_pages_the_rest() {
    const MESSAGES: usize = 60;
    let server = TestServer::start(&[]).await;
    let customer = token("limits-heavy", "customer", &[]);
    let session = server.create_session(&customer, json!({})).await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    server
        .post_messages(&customer, &session_id, MESSAGES, |_| heavy_content())
        .await;

    let mut client = server.connect(&customer).await;
    let id = client.emit_ack(
        "join-session",
        json!({ "sessionId": session_id, "lastSeq": 0 }),
    );
    let event = client
        .next_matching(
            WAIT,
            |f| matches!(f, Frame::Event { name, .. } if name == "session-joined"),
        )
        .await;
    assert!(
        event.raw.len() <= REPLY_BYTES + FRAME_OVERHEAD,
        "the reply weighs {} bytes",
        event.raw.len()
    );
    let ack = client.ack(id, WAIT).await;
    assert_eq!(ack["ok"], json!(true), "{}", short(&ack));
    assert_eq!(ack["hasMore"], json!(true));
    let joined = seqs(ack["messages"].as_array().expect("messages"));
    assert!(!joined.is_empty() && joined.len() < MESSAGES, "{joined:?}");
    assert_eq!(joined, (1..=joined.len() as i64).collect::<Vec<_>>());

    // The rest over REST: every message once, in order.
    let last = *joined.last().expect("at least one message");
    let mut all = joined.clone();
    all.extend(page_rest(&server, &customer, &session_id, last).await);
    assert_eq!(all, (1..=MESSAGES as i64).collect::<Vec<_>>());

    // Without lastSeq: the newest that fit, and hasMore for the older.
    let mut other = server.connect(&customer).await;
    let latest = other.join_session(&session_id, None).await;
    let latest_seqs = seqs(latest["messages"].as_array().expect("messages"));
    assert_eq!(latest_seqs.last(), Some(&(MESSAGES as i64)));
    assert!(latest_seqs.len() < 50, "{latest_seqs:?}");
    assert_eq!(latest["hasMore"], json!(true));
    assert!(latest.to_string().len() <= REPLY_BYTES + FRAME_OVERHEAD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_asks_for_large_replies_and_never_reads_is_closed() {
    let server = TestServer::start(&[("WRITE_TIMEOUT_MS", "500")]).await;
    let customer = token("limits-silent", "customer", &[]);
    let session = server.create_session(&customer, json!({})).await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    server
        .post_messages(&customer, &session_id, 12, |_| heavy_content())
        .await;

    let mut bystander = server
        .connect(&token("limits-bystander", "customer", &[]))
        .await;
    let own = server
        .create_session(&token("limits-bystander", "customer", &[]), json!({}))
        .await;
    let own_id = own["id"].as_str().expect("id").to_owned();
    bystander.join_session(&own_id, None).await;

    // A client with a tiny receive window that never reads past OPEN.
    let mut silent = raw_websocket(server.addr, &ws_url(server.addr), Some(4096)).await;
    let connect = format!("40/chat,{}", json!({ "token": customer }));
    silent
        .send(WsMessage::text(connect))
        .await
        .expect("CONNECT");
    for n in 0..60u64 {
        let join = json!(["join-session", { "sessionId": session_id, "lastSeq": 0 }]);
        silent
            .send(WsMessage::text(format!("42/chat,{n}{join}")))
            .await
            .expect("send a join");
    }

    let drops = "chat_gateway_slow_consumer_drops_total";
    eventually(
        WAIT,
        "the silent socket is closed as a slow consumer",
        || async { server.metric(drops).await >= 1.0 },
    )
    .await;

    // Everyone else carries on.
    let sent = bystander.send_message(&own_id, "still here", "b-1").await;
    assert_eq!(sent["seq"], json!(1));
    let echo = bystander
        .next_event("new-message", |p| p["sessionId"] == own_id.as_str(), WAIT)
        .await;
    assert_eq!(echo["content"], "still here");
}

fn short(value: &Value) -> String {
    value.to_string().chars().take(300).collect()
}
