//! Every kind of client event has its own per-socket budget (§7): a socket
//! flooding `typing`, `mark-read` or `join-session`/`leave-session` gets
//! `rate_limited` past its burst and nothing else changes; the agent on the
//! other end of a typing flood hears at most what the budget lets through
//! and is never cut off; another kind's budget is untouched.

use std::time::Instant;

use serde_json::{json, Value};

use crate::harness::server::TestServer;
use crate::harness::sio_client::{Frame, SioClient};
use crate::harness::tokens::token;
use crate::harness::WAIT;

/// Sends `count` events of `event` back to back with acks and returns how
/// many were accepted and refused, and how long the flood took.
async fn flood(
    client: &mut SioClient,
    event: &str,
    payload: impl Fn(usize) -> Value,
    count: usize,
) -> (usize, usize, f64) {
    let started = Instant::now();
    let ids: Vec<u64> = (0..count)
        .map(|n| client.emit_ack(event, payload(n)))
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for id in ids {
        let ack = client.ack(id, WAIT).await;
        if ack["ok"] == json!(true) {
            accepted += 1;
        } else {
            assert_eq!(ack["error"]["code"], "rate_limited", "{event}: {ack}");
            refused += 1;
        }
    }
    (accepted, refused, started.elapsed().as_secs_f64())
}

/// At most the burst plus what the rate refilled while the flood lasted.
fn allowed((rate, burst): (u32, u32), seconds: f64) -> usize {
    burst as usize + (f64::from(rate) * seconds).ceil() as usize + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_each_kind_are_refused_past_their_budget() {
    const FLOOD: usize = 120;
    let server =
        TestServer::start(&[("RATE_LIMIT_PER_SEC", "20"), ("RATE_LIMIT_BURST", "40")]).await;
    let customer = token("budget-customer", "customer", &[]);
    let agent = token("budget-agent", "agent", &["default"]);
    let session = server.create_session(&customer, json!({})).await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    server.assign(&agent, &session_id).await;

    let mut listener = server.connect(&agent).await;
    listener.join_session(&session_id, None).await;
    let mut flooder = server.connect(&customer).await;
    flooder.join_session(&session_id, None).await;

    let typing = |n: usize| json!({ "sessionId": session_id, "isTyping": n % 2 == 0 });
    let (accepted, refused, seconds) = flood(&mut flooder, "typing", typing, FLOOD).await;
    assert!(
        accepted <= allowed((10, 20), seconds),
        "typing: {accepted} accepted in {seconds:.2} s"
    );
    assert_eq!(accepted + refused, FLOOD);

    let read = |_| json!({ "sessionId": session_id, "upToSeq": 0 });
    let (accepted, _, seconds) = flood(&mut flooder, "mark-read", read, FLOOD).await;
    assert!(
        accepted <= allowed((10, 20), seconds),
        "mark-read: {accepted} in {seconds:.2} s"
    );

    let membership = |n: usize| {
        let _ = n;
        json!({ "sessionId": session_id })
    };
    let (accepted, _, seconds) = flood(&mut flooder, "leave-session", membership, FLOOD / 2).await;
    assert!(
        accepted <= allowed((10, 50), seconds),
        "leave-session: {accepted} in {seconds:.2} s"
    );

    // Another kind's budget is its own: a message still goes through.
    let mut fresh = server.connect(&customer).await;
    let sent = fresh
        .send_message(&session_id, "after the floods", "budget-1")
        .await;
    assert_eq!(sent["seq"], json!(1));

    // The agent heard at most what the typing budget let through, and is
    // still connected: its message arrives.
    let echo = listener
        .next_event("new-message", |p| p["content"] == "after the floods", WAIT)
        .await;
    assert_eq!(echo["seq"], json!(1));
    let heard_typing = listener
        .drain_backlog()
        .into_iter()
        .filter(|r| matches!(&r.frame, Frame::Event { name, .. } if name == "user-typing"))
        .count();
    assert!(heard_typing <= allowed((10, 20), 60.0), "{heard_typing}");
    assert_eq!(
        server
            .metric("chat_gateway_slow_consumer_drops_total")
            .await,
        0.0
    );
}
