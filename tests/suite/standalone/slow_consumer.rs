//! Slow consumers: with `OUTBOUND_QUEUE=8`, a socket that joins a session
//! and then stops reading (its TCP receive buffer kept small, so the
//! server's writes back up quickly) is cut off once its queue overflows:
//! the slow-consumer counter goes up, the server drops the connection even
//! though the client never reads again, and whatever the client reads later
//! ends in a close. The socket flooding the session stays connected and
//! usable throughout.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use crate::harness::eventually::eventually;
use crate::harness::server::TestServer;
use crate::harness::sio_client::{decode_frame, is_new_message, raw_websocket, ws_url, Frame};
use crate::harness::tokens::token;
use crate::harness::WAIT;

const CUSTOMER_SOCKETS: &str = "chat_gateway_sockets{role=\"customer\"}";
const DROPS: &str = "chat_gateway_slow_consumer_drops_total";

/// Reads text frames until one satisfies `done`.
async fn read_until(ws: &mut WebSocketStream<TcpStream>, done: impl Fn(&Frame) -> bool) -> Frame {
    loop {
        let message = timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("the connection is open")
            .expect("a valid frame");
        if let WsMessage::Text(text) = message {
            let frame = decode_frame(text.as_str());
            if done(&frame) {
                return frame;
            }
        }
    }
}

/// Connects to `/chat` and joins `session_id` over a bare WebSocket whose
/// receive buffer is small; returns it without reading any further.
async fn slow_socket(
    server: &TestServer,
    token: &str,
    session_id: &str,
) -> WebSocketStream<TcpStream> {
    let mut ws = raw_websocket(server.addr, &ws_url(server.addr), Some(4096)).await;
    read_until(&mut ws, |f| matches!(f, Frame::Open(_))).await;
    ws.send(WsMessage::text(format!(
        "40/chat,{}",
        json!({ "token": token })
    )))
    .await
    .expect("send CONNECT");
    read_until(
        &mut ws,
        |f| matches!(f, Frame::Event { name, .. } if name == "connected"),
    )
    .await;
    let join = json!(["join-session", { "sessionId": session_id }]);
    ws.send(WsMessage::text(format!("42/chat,0{join}")))
        .await
        .expect("send join");
    let ack = read_until(&mut ws, |f| matches!(f, Frame::Ack { id: 0, .. })).await;
    let Frame::Ack { payload, .. } = ack else {
        unreachable!()
    };
    assert_eq!(payload["ok"], json!(true), "{payload}");
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stops_reading_is_cut_off_and_the_sender_is_not() {
    let server = TestServer::start(&[("OUTBOUND_QUEUE", "8")]).await;
    let customer = token("slow-customer", "customer", &[]);
    let agent = token("slow-agent", "agent", &["default"]);
    let session = server.create_session(&customer, json!({})).await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    server.assign(&agent, &session_id).await;

    let mut sender = server.connect(&agent).await;
    let mut slow = slow_socket(&server, &customer, &session_id).await;
    assert_eq!(server.metric(CUSTOMER_SOCKETS).await, 1.0);
    assert_eq!(server.metric(DROPS).await, 0.0);

    // Flood the session with large messages (4000 four-byte characters,
    // about 16 KB a frame) until the server gives up on the slow socket.
    // The sender has not joined the session, so only its acks queue up for
    // it, never more than six at a time: well under its own limit of eight.
    let content = "\u{1F4AC}".repeat(4000);
    let mut sent = 0u64;
    let mut in_flight = std::collections::VecDeque::new();
    while sent < 2000 {
        in_flight.push_back(sender.emit_ack(
            "send-message",
            json!({ "sessionId": session_id, "content": content, "clientMsgId": format!("flood-{sent}") }),
        ));
        sent += 1;
        if in_flight.len() >= 6 {
            let ack = sender
                .ack(in_flight.pop_front().expect("in flight"), WAIT)
                .await;
            assert_eq!(ack["ok"], json!(true), "{ack}");
        }
        if server.metric(DROPS).await >= 1.0 {
            break;
        }
    }
    for id in in_flight {
        let ack = sender.ack(id, WAIT).await;
        assert_eq!(ack["ok"], json!(true), "{ack}");
    }
    assert_eq!(
        server.metric(DROPS).await,
        1.0,
        "the slow socket was not cut off after {sent} messages"
    );

    // The server lets go of the slow socket without waiting for it to read.
    eventually(
        Duration::from_secs(5),
        "the cut-off socket is still being served",
        || async { server.metric(CUSTOMER_SOCKETS).await == 0.0 },
    )
    .await;

    // The sender was never disturbed: it joins and talks normally.
    assert!(!sender.has_closed());
    let joined = sender.join_session(&session_id, Some(sent as i64)).await;
    assert_eq!(joined["messages"], json!([]));
    let last = sender
        .send_message(&session_id, "still here", "flood-last")
        .await;
    assert_eq!(last["seq"], json!(sent + 1));
    sender
        .next_matching(WAIT, |f| matches!(f, Frame::Event { name, payload } if name == "new-message" && payload["id"] == last["id"]))
        .await;

    // What the slow client finally reads stops short and ends in a close.
    let mut live = 0u64;
    let ended = timeout(Duration::from_secs(10), async {
        while let Some(item) = slow.next().await {
            match item {
                Ok(WsMessage::Text(text)) => {
                    if is_new_message(&decode_frame(text.as_str()), &session_id) {
                        live += 1;
                    }
                }
                Ok(WsMessage::Close(frame)) => return Some(frame.map(|f| u16::from(f.code))),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the slow client's stream ends");
    assert!(
        live < sent,
        "the slow client got everything ({live}) yet was cut off"
    );
    if let Some(code) = ended {
        assert_eq!(
            code,
            Some(1001),
            "a cut-off socket is told to go away and reconnect"
        );
    }

    // Everything was stored all the same.
    let history: Vec<Value> = server.history(&customer, &session_id).await;
    assert_eq!(history.len() as u64, sent + 1);
}
