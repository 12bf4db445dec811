//! The per-socket `send-message` rate limit: with 1 message per second and a
//! burst of 3, the fourth and fifth of five rapid sends are refused with
//! `rate_limited` (as an ack, or as an `error` event without one) and is
//! never stored; other sockets are limited separately.

use serde_json::json;

use crate::harness::server::TestServer;
use crate::harness::tokens::token;
use crate::harness::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_beyond_the_burst_are_refused_and_never_stored() {
    let server = TestServer::start(&[("RATE_LIMIT_PER_SEC", "1"), ("RATE_LIMIT_BURST", "3")]).await;
    let customer = token("rate-customer", "customer", &[]);
    let session = server.create_session(&customer, json!({})).await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    let mut client = server.connect(&customer).await;

    // Four sends written back to back, then the acks.
    let ids: Vec<u64> = (1..=4)
        .map(|n| {
            client.emit_ack(
                "send-message",
                json!({ "sessionId": session_id, "content": format!("rapid {n}"), "clientMsgId": format!("rate-{n}") }),
            )
        })
        .collect();
    // A fifth right behind them, without an ack callback.
    client.emit(
        "send-message",
        json!({ "sessionId": session_id, "content": "rapid 5", "clientMsgId": "rate-5" }),
    );
    let mut acks = Vec::new();
    for id in ids {
        acks.push(client.ack(id, WAIT).await);
    }
    for (n, ack) in acks[..3].iter().enumerate() {
        assert_eq!(ack["ok"], json!(true), "message {}: {ack}", n + 1);
        assert_eq!(ack["message"]["seq"], json!(n + 1), "{ack}");
    }
    let refused = &acks[3];
    assert_eq!(refused["ok"], json!(false), "{refused}");
    assert_eq!(refused["error"]["code"], "rate_limited", "{refused}");
    assert!(refused["error"]["message"].is_string(), "{refused}");

    // Without an ack callback the refusal is an `error` event.
    let error = client.next_event("error", |_| true, WAIT).await;
    assert_eq!(error["code"], "rate_limited", "{error}");

    // Another socket of the same user has its own bucket.
    let mut other = server.connect(&customer).await;
    let message = other
        .send_message(&session_id, "from another tab", "rate-other")
        .await;
    assert_eq!(message["seq"], json!(4), "the refused messages took no seq");

    // A later REST message comes next in line: the refused ones were never
    // queued for storage.
    let (status, posted) = server
        .rest(
            "POST",
            &format!("/api/chat/sessions/{session_id}/messages"),
            Some(&customer),
            Some(json!({ "content": "over REST", "clientMsgId": "rate-rest" })),
        )
        .await;
    assert_eq!(status, 201, "{posted}");
    assert_eq!(posted["seq"], json!(5));
    let history = server.history(&customer, &session_id).await;
    let stored: Vec<&str> = history
        .iter()
        .map(|m| m["clientMsgId"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        stored,
        ["rate-1", "rate-2", "rate-3", "rate-other", "rate-rest"]
    );
}
