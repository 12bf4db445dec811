//! Graceful stop: `RunningChat::stop()` with clients connected and messages
//! in flight closes every WebSocket with "going away" (1001) and returns
//! within a few seconds; after a restart on the same data directory every
//! message that was acknowledged before the stop is in the store, and the
//! history has no gaps.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::server::TestServer;
use crate::harness::sio_client::{Frame, SioClient};
use crate::harness::tokens::token;

/// Reads until the connection ends; returns the messages of successful
/// acks and the close code.
async fn acked_until_closed(client: &mut SioClient) -> (Vec<Value>, Option<u16>) {
    let mut acked = Vec::new();
    loop {
        let received = client
            .next_frame(Duration::from_secs(15))
            .await
            .expect("the connection is closed within 15 s of the stop");
        match received.frame {
            Frame::Ack { payload, .. }
                if payload["ok"] == json!(true) && payload["message"].is_object() =>
            {
                acked.push(payload["message"].clone());
            }
            Frame::Closed(code) => return (acked, code),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_sockets_promptly_and_keeps_every_acked_message() {
    let mut server = TestServer::start(&[]).await;
    let customer = token("stop-customer", "customer", &[]);
    let agent = token("stop-agent", "agent", &["default"]);
    let session = server.create_session(&customer, json!({})).await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    server.assign(&agent, &session_id).await;

    let mut customer_socket = server.connect(&customer).await;
    let mut agent_socket = server.connect(&agent).await;
    let mut idle = server.connect(&token("stop-idle", "customer", &[])).await;
    customer_socket.join_session(&session_id, None).await;
    agent_socket.join_session(&session_id, None).await;

    let mut acked = Vec::new();
    for n in 0..10 {
        acked.push(
            customer_socket
                .send_message(&session_id, &format!("early c{n}"), &format!("ec-{n}"))
                .await,
        );
        acked.push(
            agent_socket
                .send_message(&session_id, &format!("early a{n}"), &format!("ea-{n}"))
                .await,
        );
    }

    // Many more in flight as the stop begins.
    for n in 0..100 {
        customer_socket.emit_ack(
            "send-message",
            json!({ "sessionId": session_id, "content": format!("late c{n}"), "clientMsgId": format!("lc-{n}") }),
        );
        agent_socket.emit_ack(
            "send-message",
            json!({ "sessionId": session_id, "content": format!("late a{n}"), "clientMsgId": format!("la-{n}") }),
        );
    }
    let (stop_took, (late_customer, customer_code), (late_agent, agent_code), idle_code) = tokio::join!(
        server.stop(),
        acked_until_closed(&mut customer_socket),
        acked_until_closed(&mut agent_socket),
        idle.closed(Duration::from_secs(15)),
    );
    assert!(
        stop_took < Duration::from_secs(5),
        "stop() took {stop_took:?}"
    );
    for (who, code) in [
        ("customer", customer_code),
        ("agent", agent_code),
        ("idle", idle_code),
    ] {
        assert_eq!(
            code,
            Some(1001),
            "{who}'s socket was not closed with going away"
        );
    }
    acked.extend(late_customer);
    acked.extend(late_agent);

    server.restart().await;
    let history = server.history(&customer, &session_id).await;
    let seqs: Vec<i64> = history
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=history.len() as i64).collect::<Vec<_>>(),
        "the history has gaps"
    );
    for message in &acked {
        let seq = message["seq"].as_i64().expect("seq");
        assert_eq!(
            history.get(seq as usize - 1),
            Some(message),
            "acknowledged message {seq} is missing or changed after the restart"
        );
    }

    // The restarted server carries on where the stored history ends.
    let mut again = server.connect(&customer).await;
    again.join_session(&session_id, None).await;
    let next = again
        .send_message(&session_id, "after the stop", "after")
        .await;
    assert_eq!(next["seq"], json!(history.len() + 1));
}
