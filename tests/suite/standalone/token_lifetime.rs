//! A socket's rights last as long as its token (§1): `token-expiring` comes
//! ahead of `exp`, `refresh-token` with a fresh token of the same user and
//! role keeps the socket going (and, with other pools, its rooms follow), and
//! without one the server sends `error` `token_expired` and closes the
//! transport at `exp`.

use std::time::Duration;

use chat_shared::Timestamp;
use serde_json::json;
use tokio::time::Instant;

use crate::harness::server::TestServer;
use crate::harness::sio_client::Frame;
use crate::harness::tokens::{token, token_with_ttl};
use crate::harness::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_is_warned_then_closed_when_its_token_expires() {
    let server = TestServer::start(&[]).await;
    let mut client = server
        .connect(&token_with_ttl("life-short", "customer", &[], 3))
        .await;
    let warning = client.next_event("token-expiring", |_| true, WAIT).await;
    let expires_at = warning["expiresAt"].as_str().expect("expiresAt");
    let expires_at = Timestamp::parse_rfc3339(expires_at).expect("RFC 3339");
    assert!(expires_at.millis() > Timestamp::now().millis() - 1000);

    let error = client.next_event("error", |_| true, WAIT).await;
    assert_eq!(error["code"], "token_expired", "{error}");
    assert!(
        Timestamp::now().millis() >= expires_at.millis(),
        "closed before exp"
    );
    let closed = client.closed(WAIT).await;
    assert!(closed.is_some(), "the transport is closed after the error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_token_keeps_the_socket_past_the_old_expiry() {
    let server = TestServer::start(&[("PING_INTERVAL_MS", "500")]).await;
    let customer = "life-refresh";
    let session = server
        .create_session(&token(customer, "customer", &[]), json!({}))
        .await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    let mut client = server
        .connect(&token_with_ttl(customer, "customer", &[], 3))
        .await;
    client.join_session(&session_id, None).await;
    let ack = client
        .emit_with_ack(
            "refresh-token",
            json!({ "token": token_with_ttl(customer, "customer", &[], 3600) }),
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let renewed =
        Timestamp::parse_rfc3339(ack["expiresAt"].as_str().expect("expiresAt")).expect("RFC 3339");
    assert!(renewed.millis() > Timestamp::now().millis() + 3_000_000);

    // Past the old expiry (pings mark the time): still connected, never
    // told the token expired.
    let old_expiry = Instant::now() + Duration::from_secs(5);
    while Instant::now() < old_expiry {
        let received = client.next_frame(WAIT).await.expect("the connection lives");
        match &received.frame {
            Frame::Closed(code) => panic!("closed ({code:?}) despite the refresh"),
            Frame::Event { name, payload } if name == "error" => {
                panic!("error after the refresh: {payload}")
            }
            _ => {}
        }
    }
    let sent = client
        .send_message(&session_id, "still mine", "life-1")
        .await;
    assert_eq!(sent["seq"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_must_name_the_same_user_and_role_with_a_valid_token() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect(&token("life-owner", "customer", &[])).await;
    for (refresh, code) in [
        (token("someone-else", "customer", &[]), "forbidden"),
        (token("life-owner", "agent", &["default"]), "forbidden"),
        ("not-a-jwt".to_owned(), "unauthorized"),
        (
            token_with_ttl("life-owner", "customer", &[], -600),
            "unauthorized",
        ),
    ] {
        let ack = client
            .emit_with_ack("refresh-token", json!({ "token": refresh }))
            .await;
        assert_eq!(ack["ok"], json!(false), "{ack}");
        assert_eq!(ack["error"]["code"], code, "{ack}");
    }
    let ack = client
        .emit_with_ack("refresh-token", json!({ "token": 5 }))
        .await;
    assert_eq!(ack["error"]["code"], "invalid_payload", "{ack}");
    // Unchanged: still the customer it was.
    let session = server
        .create_session(&token("life-owner", "customer", &[]), json!({}))
        .await;
    let session_id = session["id"].as_str().expect("id");
    let joined = client.join_session(session_id, None).await;
    assert_eq!(joined["session"]["customerId"], "life-owner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_with_other_pools_leaves_sessions_no_longer_readable() {
    let server = TestServer::start(&[("POOLS", "alpha,beta")]).await;
    let customer = token("life-customer", "customer", &[]);
    let session = server
        .create_session(&customer, json!({ "pool": "alpha" }))
        .await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    let mut agent = server
        .connect(&token("life-agent", "agent", &["alpha"]))
        .await;
    agent.join_session(&session_id, None).await;
    agent.next_event("session-joined", |_| true, WAIT).await;
    agent.drain_backlog();

    let ack = agent
        .emit_with_ack(
            "refresh-token",
            json!({ "token": token("life-agent", "agent", &["beta"]) }),
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let updated = agent
        .next_event(
            "session-updated",
            |p| p["session"]["id"] == session_id.as_str(),
            WAIT,
        )
        .await;
    assert_eq!(updated["session"]["pool"], "alpha");
    agent.drain_backlog();

    // The customer writes; the agent, now of another pool, hears nothing of
    // it, while a probe of its own round trip comes back.
    let mut writer = server.connect(&customer).await;
    writer.join_session(&session_id, None).await;
    writer
        .send_message(&session_id, "for alpha only", "life-2")
        .await;
    let probe = agent
        .emit_with_ack("leave-session", json!({ "sessionId": "probe" }))
        .await;
    assert_eq!(probe["ok"], json!(true));
    let heard: Vec<String> = agent
        .drain_backlog()
        .into_iter()
        .filter(|r| r.raw.contains(&session_id))
        .map(|r| r.raw)
        .collect();
    assert!(
        heard.is_empty(),
        "the agent still hears the session: {heard:?}"
    );
    let rejoin = agent
        .emit_with_ack("join-session", json!({ "sessionId": session_id }))
        .await;
    assert_eq!(rejoin["error"]["code"], "forbidden", "{rejoin}");
}
