//! The 64 KiB payload limit: a WebSocket text frame of exactly 64 KiB is
//! still read (and answered), one byte more closes that connection only,
//! while the other sockets of the same session and user keep sending and
//! receiving; REST bodies over the limit get 413 `payload_too_large`.

use serde_json::json;

use crate::harness::http::raw_http;
use crate::harness::server::TestServer;
use crate::harness::sio_client::{is_new_message, Frame, SioClient, MAX_PAYLOAD};
use crate::harness::tokens::token;
use crate::harness::WAIT;

/// A `send-message` frame with ack id 1 padded to exactly `size` bytes;
/// its content is far over 4000 characters, so it is refused if read.
fn padded_frame(session_id: &str, size: usize) -> String {
    let prefix = format!("42/chat,1[\"send-message\",{{\"sessionId\":\"{session_id}\",\"clientMsgId\":\"big\",\"content\":\"");
    let suffix = "\"}]";
    let padding = size - prefix.len() - suffix.len();
    let frame = format!("{prefix}{}{suffix}", "a".repeat(padding));
    assert_eq!(frame.len(), size);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_only_its_own_connection() {
    let server = TestServer::start(&[]).await;
    let customer = token("limits-customer", "customer", &[]);
    let agent = token("limits-agent", "agent", &["default"]);
    let session = server.create_session(&customer, json!({})).await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    server.assign(&agent, &session_id).await;

    let mut big = server.connect(&customer).await;
    let mut second = server.connect(&customer).await;
    let mut agent_socket = server.connect(&agent).await;
    for client in [&mut big, &mut second, &mut agent_socket] {
        client.join_session(&session_id, None).await;
    }

    // Exactly the limit is read and refused politely.
    big.send_raw(padded_frame(&session_id, MAX_PAYLOAD));
    let ack = big.ack(1, WAIT).await;
    assert_eq!(ack["ok"], json!(false), "{ack}");
    assert_eq!(ack["error"]["code"], "invalid_payload", "{ack}");

    // One byte more ends this connection.
    big.send_raw(padded_frame(&session_id, MAX_PAYLOAD + 1));
    big.closed(WAIT).await;

    // The others are unaffected.
    let message = agent_socket
        .send_message(&session_id, "still flowing", "limits-1")
        .await;
    for client in [&mut second, &mut agent_socket] {
        let live = client
            .next_matching(WAIT, |f| is_new_message(f, &session_id))
            .await;
        match live.frame {
            Frame::Event { payload, .. } => assert_eq!(payload["id"], message["id"]),
            _ => unreachable!(),
        }
    }
    let reply = second.send_message(&session_id, "me too", "limits-2").await;
    assert_eq!(reply["seq"], json!(2));
    assert!(!second.has_closed() && !agent_socket.has_closed());

    // The closed client can simply reconnect.
    let mut again = SioClient::connect(server.addr, &customer).await;
    let joined = again.join_session(&session_id, Some(0)).await;
    assert_eq!(joined["messages"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_bodies_over_the_limit_get_413() {
    let server = TestServer::start(&[]).await;
    let customer = token("limits-rest", "customer", &[]);
    let session = server.create_session(&customer, json!({})).await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    let authorization = format!("Bearer {customer}");
    let headers = [
        ("Authorization", authorization.as_str()),
        ("Content-Type", "application/json"),
    ];

    let content = "a".repeat(MAX_PAYLOAD + 10);
    let body = json!({ "content": content, "clientMsgId": "too-big" }).to_string();
    for path in [
        format!("/api/chat/sessions/{session_id}/messages"),
        "/api/chat/sessions".to_owned(),
        format!("/api/chat/sessions/{session_id}/close"),
    ] {
        // Raw: the server answers before it has read the body, which a
        // client library reports as a failed write rather than the answer.
        let response = raw_http(server.addr, "POST", &path, &headers, body.as_bytes()).await;
        assert_eq!(response.status, 413, "{path}: {}", response.text());
        let error = response.json();
        assert_eq!(
            error["error"]["code"], "payload_too_large",
            "{path}: {error}"
        );
        assert!(error["error"]["message"].is_string(), "{error}");
    }

    // Nothing was stored or changed.
    assert!(server.history(&customer, &session_id).await.is_empty());
    let (status, current) = server
        .rest(
            "GET",
            &format!("/api/chat/sessions/{session_id}"),
            Some(&customer),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(current["status"], "pending");
}
